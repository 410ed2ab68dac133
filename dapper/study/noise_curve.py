"""How good must the generator be? The world's ceiling and a measured label-noise curve.

Two measurements of the embedded world, run as their own command (``python -m dapper noise-curve``)
into their own rows file (``five_fold_ceiling.csv``, the columns of ``five_fold.csv``), so the
five-fold study's file and budget stay as they are and the report reads these files:

* **the ceiling**: the renderer conditions (:mod:`dapper.study.ceiling`: the renderer draws what the
  generator would, with the method's counts and degrees) against real-only and real+affine on both
  pools at every shot level, with the same folds, real subsets, seeds and fine-tuning;
* **the label-noise curve**: the same conditions with a share ``q`` of their images swapped for the
  look-alike twin's render (still labelled as the original class) at ``StudyConfig.noise_shots``.
  Each point is placed at the identity oracle's *measured* agreement with its labels (the oracle
  only measures), and per pool, shot level and method a least-squares line through the fold-level
  gains over real-only says at which agreement the gain crosses 0 and reaches the goal
  (:data:`dapper.study.experiments.GAIN_GOAL`). Intervals resample whole folds (paired across
  conditions, as the runs are); a line that does not rise in a resample never reaches a gain above its
  start, which counts as an infinite agreement needed. Above 100% the goal is out of reach even
  for a perfect generator.

Nothing here feeds the method: the renderer and the oracle bound and measure it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dapper.study.ceiling import renderer_condition
from dapper.study.config import CONDITION_METHOD, GAIN_GOAL, NOISE_CONDITIONS, RENDERER_CONDITIONS, study_config
from dapper.study.inputs import prepare_inputs
from dapper.study.results_file import results_path
from dapper.study.runs import five_fold_runs
from dapper.study.statements import percent, points
from dapper.study.stats import mean_interval
from dapper.study.tables import study_tables, synthetic_label_agreement
from dapper.utils import atomic_save, reports_dir

__all__ = ["ceiling_config", "ceiling_path", "noise_curve", "ceiling_shares", "noise_curve_statements",
           "run_noise_curve", "refuse_smaller_profile", "read_results", "quick_noise_shots", "agreement_needed_text",
           "call_record", "write_outputs", "generator_points", "RESULT_FILES"]

RESULT_FILES = {"rows": "five_fold_ceiling.csv", "tests": "five_fold_ceiling_tests.csv",
                "summary": "five_fold_ceiling_summary.csv", "agreement": "five_fold_ceiling_agreement.csv",
                "points": "five_fold_noise_points.csv", "curve": "five_fold_noise_curve.csv",
                "shares": "five_fold_ceiling_shares.csv", "run": "five_fold_ceiling_run.json",
                "statements": "fig6c_noise_curve.md"}


def ceiling_config(profile: str = "full", **overrides):
    """The study's config (:func:`dapper.study.experiments.study_config`) with real-only, real+affine,
    the renderer conditions and the noise curve's; the quick profile keeps its pool, folds and shots and
    runs the curve at its fewest shots."""
    overrides = {"conditions": ("real", "real+affine") + RENDERER_CONDITIONS + NOISE_CONDITIONS, **overrides}
    return study_config(profile, "toycars", **{**quick_noise_shots(profile), **overrides})


def quick_noise_shots(profile: str) -> dict:
    """The quick profile runs a noise curve at its fewest shots only (a setting for :func:`study_config`)."""
    return {"noise_shots": (min(study_config("quick").shots),)} if profile == "quick" else {}


def ceiling_path() -> Path:
    return reports_dir("results") / RESULT_FILES["rows"]


def _fold_gains(rows: pd.DataFrame) -> pd.DataFrame:
    """Per scenario, shots, fold and condition: accuracy minus real-only's in the same fold."""
    wide = rows.pivot_table(index=["scenario", "shots_per_class", "fold"], columns="condition", values="accuracy")
    if "real" not in wide.columns:
        return pd.DataFrame(columns=["scenario", "shots_per_class", "fold", "condition", "gain"])
    gains = wide.drop(columns="real").sub(wide["real"], axis=0)
    out = gains.stack().rename("gain").reset_index()
    return out


def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line; nan when x does not vary."""
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    slope, icpt = np.polyfit(x, y, 1)
    return float(icpt), float(slope)


def _crossing(icpt: float, slope: float, gain: float) -> float:
    """The agreement at which the line reaches ``gain``; inf when it never rises to it."""
    if not (math.isfinite(icpt) and math.isfinite(slope)):
        return math.nan
    if slope <= 0:
        return -math.inf if icpt >= gain else math.inf
    return (gain - icpt) / slope


def noise_curve(rows: pd.DataFrame, agreement: pd.DataFrame, gains=(0.0, GAIN_GOAL), confidence: float = 0.95,
                n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The label-noise curve from the runs' ``rows`` (five-fold rows with real-only and renderer
    conditions) and the oracle's ``agreement`` (``scenario``, ``condition``, ``shots_per_class``,
    ``oracle_class_kept``).

    Returns ``(points, curve)``: ``points`` one row per scenario, shots and renderer condition
    (``method``, ``twin_share``, ``oracle_class_kept``, mean ``gain`` over folds and its t-interval);
    ``curve`` one row per scenario, shots, method and target gain with the line (``intercept``,
    ``slope`` in gain per unit of agreement, Pearson ``r`` of the fold-level points), the agreement
    at which it reaches the target (``agreement_needed`` with ``_low``/``_high`` from ``n_boot``
    resamples of whole folds), ``reachable`` (needed <= 1) and ``within_measured`` (needed within the
    agreements measured; else an extrapolation)."""
    g = _fold_gains(rows)
    g = g[g["condition"].map(lambda c: renderer_condition(c) is not None)]
    g = g.assign(method=g["condition"].map(lambda c: renderer_condition(c)[0]),
                 twin_share=g["condition"].map(lambda c: renderer_condition(c)[1]))
    g = g.merge(agreement[["scenario", "condition", "shots_per_class", "oracle_class_kept"]],
                on=["scenario", "condition", "shots_per_class"], how="inner")
    pts = []
    for key, part in g.groupby(["scenario", "shots_per_class", "method", "twin_share", "condition"], sort=False):
        iv = mean_interval(part["gain"], confidence)
        pts.append({**dict(zip(["scenario", "shots_per_class", "method", "twin_share", "condition"], key)),
                    "oracle_class_kept": float(part["oracle_class_kept"].iloc[0]), "gain": iv.mean,
                    "gain_low": iv.low, "gain_high": iv.high, "n_folds": iv.n})
    rng = np.random.default_rng(seed)
    curve = []
    for key, part in g.groupby(["scenario", "shots_per_class", "method"], sort=False):
        if part["twin_share"].nunique() < 2:
            continue
        x, y = part["oracle_class_kept"].to_numpy(float), part["gain"].to_numpy(float)
        icpt, slope = _line(x, y)
        folds = np.sort(part["fold"].unique())
        boots = []
        for _ in range(n_boot):
            pick = rng.choice(folds, len(folds), replace=True)
            sample = pd.concat([part[part["fold"] == f] for f in pick])
            boots.append(_line(sample["oracle_class_kept"].to_numpy(float), sample["gain"].to_numpy(float)))
        r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(x) > 0 and np.ptp(y) > 0 else math.nan
        for target in gains:
            need = _crossing(icpt, slope, target)
            b = np.array([_crossing(bi, bs, target) for bi, bs in boots])
            b = b[~np.isnan(b)]
            a = (1 - confidence) / 2
            low, high = ((np.quantile(b, a, method="inverted_cdf"), np.quantile(b, 1 - a, method="inverted_cdf"))
                         if len(b) else (math.nan, math.nan))
            curve.append({**dict(zip(["scenario", "shots_per_class", "method"], key)), "target_gain": target,
                          "intercept": icpt, "slope": slope, "r": r, "n_points": len(part), "n_folds": len(folds),
                          "agreement_needed": need, "agreement_needed_low": float(low),
                          "agreement_needed_high": float(high), "reachable": bool(need <= 1.0),
                          "within_measured": bool(x.min() <= need <= x.max()),
                          "measured_min": float(x.min()), "measured_max": float(x.max()), "n_boot": n_boot})
    return pd.DataFrame(pts), pd.DataFrame(curve)


def ceiling_shares(ceiling_vs_real: pd.DataFrame, study_vs_real: pd.DataFrame) -> pd.DataFrame:
    """Each generative condition's gain over real-only (the five-fold study's ``vs_real``) as a share
    of its method's renderer ceiling's gain (the ceiling's ``vs_real``), per scenario and shot level
    both measured. Each gain is against its own file's real-only runs; a share is defined only where
    the ceiling gains (``ceiling_gain > 0``)."""
    ceil = ceiling_vs_real[ceiling_vs_real["condition"].isin(RENDERER_CONDITIONS)]
    ceil = ceil.assign(method=ceil["condition"].map(lambda c: renderer_condition(c)[0]))
    gen = study_vs_real[study_vs_real["condition"].isin(list(CONDITION_METHOD))]
    gen = gen.assign(method=gen["condition"].map(CONDITION_METHOD))
    m = gen.merge(ceil[["scenario", "shots_per_class", "method", "diff", "diff_low", "diff_high"]],
                  on=["scenario", "shots_per_class", "method"], suffixes=("", "_ceiling"))
    m = m.rename(columns={"diff": "gain", "diff_low": "gain_low", "diff_high": "gain_high",
                          "diff_ceiling": "ceiling_gain", "diff_low_ceiling": "ceiling_gain_low",
                          "diff_high_ceiling": "ceiling_gain_high"})
    share = np.where(m["ceiling_gain"] > 0, m["gain"] / m["ceiling_gain"].where(m["ceiling_gain"] > 0), np.nan)
    return m.assign(share_of_ceiling=share)[["scenario", "shots_per_class", "condition", "method", "gain",
                                             "gain_low", "gain_high", "ceiling_gain", "ceiling_gain_low",
                                             "ceiling_gain_high", "share_of_ceiling"]]


def agreement_needed_text(row) -> str:
    """A curve row's agreement needed with its interval, in words: ``never`` where the line does not
    rise to the target, ``<=0%`` where it is above it at every agreement."""
    def one(v):
        return "never" if v == math.inf else "<=0%" if v <= 0 else percent(v, 0)
    return f"{one(row.agreement_needed)} [{one(row.agreement_needed_low)}, {one(row.agreement_needed_high)}]"


def noise_curve_statements(tests: pd.DataFrame, curve: pd.DataFrame, shares: pd.DataFrame | None = None,
                           generator_agreement: pd.DataFrame | None = None, generator: str = "") -> str:
    """Markdown sentences from the ceiling's paired tests (:func:`study_tables`' ``vs_real`` of its
    rows), the curve (:func:`noise_curve`), the shares of the ceiling (:func:`ceiling_shares`) and the
    generator's measured agreement at the study's fewest shots (:func:`generator_points`; ``generator``:
    the hash of the generator the study measured); generated, never typed."""
    lines = []
    for sc, part in tests.groupby("scenario", sort=False):
        few = int(part["shots_per_class"].min())
        ceil = part[(part["shots_per_class"] == few) & part["condition"].isin(RENDERER_CONDITIONS + ("real+affine",))]
        bits = [f"{r.condition} {points(r.diff)} [{points(r.diff_low)}, {points(r.diff_high)}]"
                + (f" (Holm p = {r.p_ttest_holm:.2g})" if math.isfinite(getattr(r, "p_ttest_holm", math.nan)) else "")
                for r in ceil.itertuples()]
        lines.append(f"- **{sc}**, {few} shots, the world's ceiling (the renderer as a perfect generator) over "
                     f"real-only: " + "; ".join(bits) + ".")
        for shots, cpart in curve[curve["scenario"] == sc].groupby("shots_per_class", sort=False):
            texts = []
            for method, mpart in cpart.groupby("method", sort=False):
                at = {round(float(r.target_gain), 4): r for r in mpart.itertuples()}
                zero, goal = at.get(0.0), at.get(round(GAIN_GOAL, 4))
                t = f"{method}: gain 0 at {agreement_needed_text(zero)}" if zero else method
                if goal is not None:
                    t += (f", {points(GAIN_GOAL)} points at {agreement_needed_text(goal)}"
                          + ("" if goal.reachable else " (beyond full agreement: out of reach)")
                          + ("" if goal.within_measured or not goal.reachable else " (an extrapolation)"))
                texts.append(t)
            lines.append(f"  - {int(shots)} shots, the oracle's label agreement the line through the twin-swapped "
                         f"renders asks for: " + "; ".join(texts) + ".")
    if shares is not None and len(shares):
        few = shares[shares["shots_per_class"] == shares["shots_per_class"].min()]
        best = few.loc[few["share_of_ceiling"].idxmax()] if few["share_of_ceiling"].notna().any() else None
        parts = [f"{r.condition} ({r.scenario}) {percent(r.share_of_ceiling, 0)}" for r in few.itertuples()
                 if math.isfinite(r.share_of_ceiling)]
        lines.append(f"- Share of its ceiling's gain at {int(few['shots_per_class'].min())} shots: "
                     + (", ".join(parts) if parts else "none defined (no ceiling gains)")
                     + (f". The best, {best.condition} on the {best.scenario} pool, captures "
                        f"{percent(best.share_of_ceiling, 0)} (goal 80%)." if best is not None else "."))
    if generator_agreement is not None and len(generator_agreement):
        g = generator_agreement
        top = g.loc[g["oracle_class_kept"].idxmax()]
        lines.append(f"- The generator's synthetic images keep their label for the oracle in "
                     f"{percent(g['oracle_class_kept'].min(), 0)}-{percent(g['oracle_class_kept'].max(), 0)} of "
                     f"cases across the study's generative conditions at {int(g['shots_per_class'].min())} shots "
                     f"(best: {top.condition}, {top.scenario}; the five-fold study's rows"
                     + (f", generator {generator[:12]}" if generator else "") + ").")
    if shares is not None and len(shares) or generator_agreement is not None and len(generator_agreement):
        lines.append("- The generative conditions' gains are the five-fold study's (`five_fold.csv`), each against its "
                     "own real-only runs; the ceiling's and the curve's are this command's.")
    return "\n".join(lines)


def run_noise_curve(config, progress: bool = True, n_boot: int = 2000, replace_full: bool = False) -> dict:
    """Run the ceiling's and the curve's rows (resumable: rows already in ``five_fold_ceiling.csv``
    are kept), measure the oracle's agreement, and write every table of :data:`RESULT_FILES`.
    A smaller profile's call refuses to replace a full run's tables unless ``replace_full``
    (:func:`refuse_smaller_profile`). Returns the tables."""
    refuse_smaller_profile(reports_dir("results"), RESULT_FILES, config.profile, replace_full)
    t0, cpu0 = time.time(), time.process_time()
    inputs = prepare_inputs(config, progress=progress)
    path = ceiling_path()
    # the real-only and affine runs are the five-fold study's own (same ids): read, not repeated
    rows = five_fold_runs(config, inputs=inputs, path=path, progress=progress, adopt_from=(results_path(),))
    # the ceiling's comparisons form their own family (Holm): the noise curve's conditions are read as a curve
    clean = rows["condition"].map(lambda c: (renderer_condition(c) or ("", 0.0))[1] == 0)
    tables = study_tables(rows[clean])
    levels = sorted(set(config.noise_shots) | {min(config.shots)})
    agreement = pd.concat([synthetic_label_agreement(inputs, shots=s).assign(shots_per_class=s) for s in levels],
                          ignore_index=True)
    pts, curve = noise_curve(rows, agreement, n_boot=n_boot)
    tests = pd.concat([tables["vs_real"]] + ([tables["vs_affine"]] if "vs_affine" in tables else []),
                      ignore_index=True)
    out = {"summary": tables["summary"], "tests": tests, "agreement": agreement, "points": pts, "curve": curve}
    study = reports_dir("results")
    if (study / "five_fold_tests.csv").exists():
        study_tests = pd.read_csv(study / "five_fold_tests.csv")
        out["shares"] = ceiling_shares(tables["vs_real"], study_tests[study_tests["baseline"] == "real"])
    gen = generator_points(study)
    text = noise_curve_statements(tables["vs_real"], curve, out.get("shares"), gen, _study_generator(study))
    out["run"] = write_outputs(study, RESULT_FILES, out, text, call_record(config, inputs, rows, t0, cpu0))
    out["statements"] = text
    return out


def call_record(config, inputs, rows, t0: float, cpu0: float, **extra) -> dict:
    """What a command's call cost: rows in its file and made now, wall and main-process CPU seconds
    since ``t0``/``cpu0`` and the stages of :func:`prepare_inputs` (``inputs.timings``)."""
    return {"profile": config.profile, **extra, "runs_total": int(len(rows)),
            "runs_made": int(inputs.timings.get("n_runs", 0)), "runs_adopted": int(inputs.timings.get("n_adopted", 0)),
            "wall_seconds": round(time.time() - t0, 1),
            "cpu_seconds_main": round(time.process_time() - cpu0, 1),
            "stages": {k: round(v, 1) for k, v in inputs.timings.items()}, "workers": config.workers}


def refuse_smaller_profile(results: Path, files: dict, profile: str, replace_full: bool = False) -> None:
    """Raise ValueError, before anything runs, when ``results`` holds tables that a full-profile call
    wrote (its ``files["run"]`` record) and this call's ``profile`` is another: a quick check must not
    overwrite the full study's tables. ``replace_full`` allows it."""
    path = results / files["run"]
    if replace_full or profile == "full" or not path.exists():
        return
    try:
        last = json.loads(path.read_text()).get("last", {}).get("profile")
    except (json.JSONDecodeError, AttributeError):
        return  # an unreadable record protects nothing; the call rewrites it
    if last == "full":
        raise ValueError(f"{path.parent} holds a full-profile run's tables ({path.name}); a {profile!r} call would "
                         f"overwrite them. Pass --profile full, point DAPPER_REPORTS at another folder, or pass "
                         f"--replace-full to overwrite them.")


def write_outputs(results: Path, files: dict, tables: dict, text: str, call: dict) -> dict:
    """Write each data frame of ``tables`` to its file in ``files`` (``results``, atomically), ``text``
    to ``files["statements"]`` and the call's time to ``files["run"]`` (JSON: ``last`` this call,
    ``made`` the last call that made rows, so a call that only rebuilds the tables keeps the time the
    rows took). Returns that record."""
    for name, df in tables.items():
        if isinstance(df, pd.DataFrame):
            atomic_save(results / files[name], lambda p, df=df: df.to_csv(p, index=False, float_format="%.6g"))
    atomic_save(results / files["statements"], lambda p: p.write_text(text + "\n"))
    path = results / files["run"]
    old = json.loads(path.read_text()) if path.exists() else {}
    record = {"made": call if call["runs_made"] or "made" not in old else old["made"], "last": call}
    atomic_save(path, lambda p: p.write_text(json.dumps(record, indent=1)))
    return record


def read_results(results: Path) -> dict | None:
    """What :func:`run_noise_curve` wrote under ``results`` (``points``, ``curve``, ``statements``) and
    the study's generative conditions at their measured agreement (``generator``); None when the
    command has not run there."""
    files = {k: results / RESULT_FILES[k] for k in ("points", "curve", "statements")}
    if not all(p.exists() and p.stat().st_size for p in files.values()):
        return None
    return {"points": pd.read_csv(files["points"]), "curve": pd.read_csv(files["curve"]),
            "statements": files["statements"].read_text(), "generator": generator_points(results)}


def _study_generator(results: Path) -> str:
    """The generator hash of the five-fold study's generative rows (empty when none)."""
    path = results / "five_fold.csv"
    if not path.exists():
        return ""
    gens = pd.read_csv(path, usecols=lambda c: c == "generator", dtype=str)
    found = sorted(set(gens["generator"].dropna())) if "generator" in gens else []
    return ", ".join(g[:12] for g in found)


def generator_points(results: Path) -> pd.DataFrame | None:
    """The five-fold study's generative conditions at their measured label agreement and gain over
    real-only at its fewest shots (its ``five_fold_label_noise.csv``: ``scenario``, ``condition``,
    ``shots_per_class``, ``diff`` and its interval, ``oracle_class_kept``); None without it."""
    path = results / "five_fold_label_noise.csv"
    return pd.read_csv(path) if path.exists() and path.stat().st_size else None
