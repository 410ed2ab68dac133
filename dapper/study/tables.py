"""The study's statistics from its rows: intervals, paired tests with Holm's correction, savings,
curve areas, and the identity oracle's agreement with the synthetic images' labels (it only measures)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
from scipy import stats as st

from dapper.augment import SyntheticSet
from dapper.data import toycars
from dapper.judges import oracles
from dapper.study import stats
from dapper.study.ceiling import renderer_condition
from dapper.study.config import (
    CONDITION_METHOD,
    StudyConfig,
    ceiling_condition,
    condition_compose,
    condition_tuned,
    filtered_base,
)
from dapper.study.folds import RunSpec, plan_runs, real_subset, run_seed
from dapper.study.gan_eval import pair_hits
from dapper.study.inputs import StudyInputs
from dapper.study.runs import run_synthetic


def study_tables(rows, confidence: float = 0.95) -> dict:
    """The study's statistics from its rows: ``summary`` (mean and t-interval per condition and
    shots), ``vs_real`` and ``vs_affine`` (paired tests per shot level), ``savings`` (real data
    saved at equal accuracy) and ``areas`` (area under the learning curve)."""
    rows = rows.copy()
    if "scenario" not in rows.columns:
        rows["scenario"] = "diverse"
    tables = {"summary": stats.summarise(rows, confidence),
              "vs_real": stats.compare_conditions(rows, "real", confidence),
              "savings": stats.savings_table(rows, "real", confidence),
              "areas": stats.curve_areas(rows, confidence)}
    if "real+affine" in set(rows["condition"]):
        tables["vs_affine"] = stats.compare_conditions(rows[rows["condition"] != "real"], "real+affine", confidence)
    for key in ("vs_real", "vs_affine"):
        if key in tables:
            tables[key] = _with_holm(tables[key])
    return tables


def _with_holm(table):
    """Add ``p_ttest_holm``/``p_wilcoxon_holm``: Holm-adjusted over every comparison of a scenario
    (all conditions and shot levels against the same baseline form one family), so a single
    small p among many tests is not read as a finding."""
    table = table.copy()
    for col in ("p_ttest", "p_wilcoxon"):
        table[f"{col}_holm"] = float("nan")
        for _, idx in table.groupby("scenario").groups.items():
            table.loc[idx, f"{col}_holm"] = stats.holm(table.loc[idx, col].to_numpy(float))
    return table


def synthetic_label_agreement(inputs: StudyInputs, identity_oracle=None, shots: int | None = None):
    """How many of each generative condition's synthetic images the independent identity oracle
    still assigns to their label (and to their look-alike pair), per scenario: a gain or a loss of
    a condition can then be read against the label noise it adds. ``shots``: only the images the
    runs at that shot level train on, each counted once per run that trains on it, as the runs see
    them (None: every image any run uses, once; a filtered condition's at its fewest shots, as its
    filter depends on the run). toycars only (a DataFrame with scenario, condition, n_images,
    oracle_class_kept, oracle_pair_kept; a filtered condition adds ``n_before``, ``share_kept`` and
    ``oracle_class_kept_before``, the same before its filter); empty in real mode."""
    if inputs.config.dataset != "toycars":
        return pd.DataFrame(columns=["scenario", "condition", "n_images", "oracle_class_kept", "oracle_pair_kept"])

    identity_oracle = oracles.load_identity_oracle() if identity_oracle is None else identity_oracle

    def judged(sets) -> dict | None:
        sets = [x for x in sets if x is not None and len(x)]
        if not sets:
            return None
        part = SyntheticSet.concat(sets)
        pred = oracles.predict_identity(part.images, identity_oracle)[0]
        return {"n_images": len(part), "oracle_class_kept": float((pred == part.labels).mean()),
                "oracle_pair_kept": float(pair_hits(pred, part.labels, toycars.PAIRS).mean())}

    rows = []
    for scenario in inputs.config.scenarios:
        for cond in [c for c in inputs.config.conditions
                     if c in CONDITION_METHOD or ceiling_condition(c)]:
            before = None
            if filtered_base(cond) is not None or renderer_condition(cond) is not None:
                levels = _shots_of(inputs.config, cond)
                at = (min(levels) if levels else None) if shots is None and filtered_base(cond) else shots
                if ceiling_condition(cond) is not None and scenario not in inputs.rendered:
                    continue
                if at is None:  # a renderer condition's images, every one once
                    r = inputs.rendered[scenario]
                    method, share = renderer_condition(cond)
                    sets = [r.select(r.clean.manifest["source_key"].unique(), method, share)]
                else:
                    specs = [RunSpec(scenario, cond, at, f, run_seed(inputs.config.seed, f, at))
                             for f in inputs.config.fold_ids if at in levels]
                    sets = [run_synthetic(inputs, sp) for sp in specs]
                    if filtered_base(cond) is not None:
                        before = judged([run_synthetic(inputs, sp, before_filter=True) for sp in specs])
            else:
                how = dict(methods=[CONDITION_METHOD[cond]], compose=condition_compose(cond))
                if condition_tuned(cond):  # every run's tuned set (an image of several runs counts in each)
                    sets = [v.select(**how) for (sc, _, n), v in inputs.tuned.items()
                            if sc == scenario and shots in (None, n)]
                elif scenario not in inputs.synthetic:
                    sets = []
                elif shots is None:
                    sets = [inputs.synthetic[scenario].select(**how)]
                else:  # each run's images
                    d, folds = inputs.data[scenario], inputs.folds[scenario]
                    sets = [inputs.synthetic[scenario].select(
                        [d.keys[i] for i in real_subset(d.labels, folds[f][0], shots, f, inputs.config.seed)], **how)
                            for f in inputs.config.fold_ids]
            row = judged(sets)
            if row is None and before is not None:  # the filter kept none
                row = {"n_images": 0, "oracle_class_kept": math.nan, "oracle_pair_kept": math.nan}
            if row is None:
                continue
            if before is not None:
                row.update(n_before=before["n_images"], share_kept=row["n_images"] / before["n_images"],
                           oracle_class_kept_before=before["oracle_class_kept"])
            rows.append({"scenario": scenario, "condition": cond, **row})
    return pd.DataFrame(rows)


def _shots_of(config: StudyConfig, condition: str) -> list[int]:
    """The shot levels :func:`plan_runs` runs ``condition`` at."""
    return sorted({s.shots for s in plan_runs(dataclasses.replace(config, conditions=(condition,)))})


def label_noise_relation(vs_real, agreement, shots: int | None = None, confidence: float = 0.95):
    """Does a generative condition's gain follow the share of its synthetic images the oracle keeps
    in their class? Per scenario, at ``shots`` (default: each scenario's fewest): the conditions'
    differences over real-only (:func:`study_tables`' ``vs_real``) against their label agreement
    (:func:`synthetic_label_agreement` at those shots), and the least-squares line through them.

    Returns ``(points, fits)``: ``points`` one row per scenario and condition (``diff``,
    ``diff_low``, ``diff_high``, ``oracle_class_kept``); ``fits`` one row per scenario with ``n``,
    Pearson ``r`` and its ``p``, ``slope`` (points of accuracy per share kept), and the line's value
    where every image keeps its class (``at_full``, an extrapolation, with its ``confidence``
    interval ``at_full_low``/``at_full_high`` for the line's mean)."""
    v = vs_real[(vs_real["condition"].isin(list(CONDITION_METHOD)))]
    rows, fits = [], []
    for sc, part in v.groupby("scenario", sort=False):
        at = int(part["shots_per_class"].min()) if shots is None else int(shots)
        a = agreement[agreement["scenario"] == sc][["condition", "oracle_class_kept"]]
        m = part[part["shots_per_class"] == at].merge(a, on="condition")
        m = m[["scenario", "condition", "shots_per_class", "diff", "diff_low", "diff_high", "oracle_class_kept"]]
        m = m[np.isfinite(m["diff"].to_numpy(float)) & np.isfinite(m["oracle_class_kept"].to_numpy(float))]
        rows.append(m)
        x, y = m["oracle_class_kept"].to_numpy(float), m["diff"].to_numpy(float)
        if len(m) < 3 or np.ptp(x) == 0:
            continue
        fit = st.linregress(x, y)
        n = len(x)
        resid = y - (fit.intercept + fit.slope * x)
        s = math.sqrt(float(resid @ resid) / (n - 2))
        se = s * math.sqrt(1 / n + (1 - x.mean()) ** 2 / float(((x - x.mean()) ** 2).sum()))
        at_full = fit.intercept + fit.slope
        t = st.t.ppf(0.5 + confidence / 2, n - 2)
        fits.append({"scenario": sc, "shots_per_class": at, "n": n, "r": fit.rvalue, "p": fit.pvalue,
                     "slope": fit.slope, "at_full": at_full, "at_full_low": at_full - t * se,
                     "at_full_high": at_full + t * se, "kept_min": x.min(), "kept_max": x.max()})
    points = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return points, pd.DataFrame(fits)
