"""How many synthetic images, and how much of each batch: ``python -m dapper settings-sweep``.

Two settings of the method, measured on the embedded world's ceiling (:mod:`dapper.study.ceiling`)
first, where the synthetic images are as good as the world allows, clean and with a known share of
twins swapped in (label noise near the generator's):

* ``synthetic_share``: the share of every fine-tuning batch drawn from the synthetic images
  (:class:`dapper.classify.FineTuneSettings`; the study's default 0.5);
* ``k``: synthetic images per real one and method (:class:`dapper.augment.AugmentSettings`; the
  study's default 4; DA-Fusion draws 20 per image, He et al. hundreds per class).

Every setting of the grid runs the five-fold study's folds, subsets, seeds and fine-tuning with
real-only and the renderer's perturbation and rotation, clean and with twins, into a rows file of
its own (its study id differs). A setting is **chosen on training folds only**: for each test fold,
the setting with the best mean gain over real-only on the other folds (whose test images are this
fold's training images, never its test images), per pool, shot level and condition; that choice's
gain on the held-out fold is its honest score, set against the default's on the same folds.

Nothing here reads an oracle, and the renderer only bounds the method: the chosen setting is the
method's only when it also holds on the generator's images.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time

import pandas as pd

from dapper.study.ceiling import renderer_condition_name
from dapper.study.inputs import prepare_inputs
from dapper.study.noise_curve import call_record, ceiling_config, write_outputs
from dapper.study.runs import five_fold_runs
from dapper.study.statements import points
from dapper.study.stats import mean_interval
from dapper.utils import reports_dir

__all__ = ["SHARES", "KS", "DEFAULT", "SWEEP_CONDITIONS", "sweep_config", "setting_name", "fold_gains",
           "nested_choice", "sweep_statements", "run_sweep", "RESULT_FILES"]

SHARES = (0.25, 0.5, 0.75)
KS = (4, 16)
DEFAULT = (0.5, 4)
SWEEP_CONDITIONS = ("real", renderer_condition_name("perturb+rotate"), renderer_condition_name("perturb+rotate", 0.6))
SWEEP_SHOTS = (2, 8)
RESULT_FILES = {"gains": "five_fold_settings_gains.csv", "settings": "five_fold_settings.csv",
                "chosen": "five_fold_settings_chosen.csv", "run": "five_fold_settings_run.json",
                "statements": "fig6e_settings.md"}
ROWS_FOLDER = "settings_sweep"


def setting_name(share: float, k: int) -> str:
    return f"share{share:g}_k{k}"


def sweep_config(share: float, k: int, profile: str = "full", **overrides):
    """The ceiling's config (:func:`dapper.study.noise_curve.ceiling_config`) with one setting of the
    grid, real-only and the renderer's perturbation and rotation, clean and with 60% twins."""
    base = ceiling_config(profile, **overrides)
    shots = tuple(s for s in base.shots if s in SWEEP_SHOTS) or (min(base.shots),)
    return ceiling_config(profile, conditions=SWEEP_CONDITIONS, shots=shots, noise_shots=shots,
                          finetune=dataclasses.replace(base.finetune, synthetic_share=share),
                          augment=dataclasses.replace(base.augment, k=k), **overrides)


def fold_gains(rows: pd.DataFrame, setting: str) -> pd.DataFrame:
    """Per scenario, shots, fold and synthetic condition: accuracy minus real-only's in the same fold."""
    wide = rows.pivot_table(index=["scenario", "shots_per_class", "fold"], columns="condition", values="accuracy")
    gains = wide.drop(columns="real").sub(wide["real"], axis=0).stack().rename("gain").reset_index()
    return gains.assign(setting=setting)


def nested_choice(gains: pd.DataFrame, default: str) -> pd.DataFrame:
    """For each scenario, shots, condition and held-out fold, the setting with the best mean gain on
    the other folds and its gain on the held-out one, beside the default's. One row per held-out fold."""
    out = []
    for key, part in gains.groupby(["scenario", "shots_per_class", "condition"], sort=False):
        wide = part.pivot_table(index="fold", columns="setting", values="gain")
        for fold in wide.index:
            train = wide.drop(index=fold).mean()
            chosen = str(train.idxmax())
            out.append({**dict(zip(["scenario", "shots_per_class", "condition"], key)), "fold": int(fold),
                        "chosen": chosen, "gain_chosen": float(wide.loc[fold, chosen]),
                        "gain_default": float(wide.loc[fold, default]) if default in wide else math.nan})
    return pd.DataFrame(out)


def _summaries(gains: pd.DataFrame, choice: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    settings = []
    for key, part in gains.groupby(["scenario", "shots_per_class", "condition", "setting"], sort=False):
        iv = mean_interval(part["gain"])
        settings.append({**dict(zip(["scenario", "shots_per_class", "condition", "setting"], key)), "gain": iv.mean,
                         "gain_low": iv.low, "gain_high": iv.high, "n_folds": iv.n})
    chosen = []
    for key, part in choice.groupby(["scenario", "shots_per_class", "condition"], sort=False):
        iv, dv = mean_interval(part["gain_chosen"]), mean_interval(part["gain_chosen"] - part["gain_default"])
        counts = part["chosen"].value_counts()
        chosen.append({**dict(zip(["scenario", "shots_per_class", "condition"], key)), "gain_chosen": iv.mean,
                       "gain_chosen_low": iv.low, "gain_chosen_high": iv.high,
                       "gain_default": float(part["gain_default"].mean()), "chosen_minus_default": dv.mean,
                       "chosen_minus_default_low": dv.low, "chosen_minus_default_high": dv.high,
                       "most_chosen": str(counts.index[0]), "times_chosen": int(counts.iloc[0]), "n_folds": len(part)})
    return pd.DataFrame(settings), pd.DataFrame(chosen)


def sweep_statements(settings: pd.DataFrame, chosen: pd.DataFrame, default: str) -> str:
    """The sweep's outcome in sentences, generated from its tables."""
    lines = [f"Settings sweep on the world's ceiling (the renderer's perturbation and rotation; synthetic share "
             f"of a batch x images per real one and method; default {default}), chosen per held-out fold on the "
             f"other folds only:", ""]
    for r in chosen.itertuples():
        best = settings[(settings.scenario == r.scenario) & (settings.shots_per_class == r.shots_per_class)
                        & (settings.condition == r.condition)].sort_values("gain", ascending=False).iloc[0]
        lines.append(f"- {r.scenario}, {int(r.shots_per_class)} shots, {r.condition}: the choice made on training "
                     f"folds gains {points(r.gain_chosen)} [{points(r.gain_chosen_low)}, {points(r.gain_chosen_high)}] "
                     f"points over real-only on the held-out folds, the default {points(r.gain_default)}; chosen "
                     f"minus default {points(r.chosen_minus_default)} [{points(r.chosen_minus_default_low)}, "
                     f"{points(r.chosen_minus_default_high)}] (chose {r.most_chosen} in {r.times_chosen} of "
                     f"{r.n_folds} folds). Best over all folds (in hindsight): {best.setting}, {points(best.gain)}.")
    return "\n".join(lines)


def run_sweep(profile: str = "full", workers: int = 2, progress: bool = True, shares=SHARES, ks=KS) -> dict:
    """Run every setting's rows (resumable, each into its own file) and write :data:`RESULT_FILES`."""
    t0, cpu0 = time.time(), time.process_time()
    results = reports_dir("results")
    folder = results / ROWS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    gains, made, timings = [], 0, {}
    for share, k in itertools.product(shares, ks):
        config = sweep_config(share, k, profile, workers=workers)
        inputs = prepare_inputs(config, progress=progress)
        rows = five_fold_runs(config, inputs=inputs, path=folder / f"five_fold_{setting_name(share, k)}.csv",
                              progress=progress)
        made += int(inputs.timings.get("n_runs", 0))
        timings[setting_name(share, k)] = {k2: round(v, 1) for k2, v in inputs.timings.items()}
        gains.append(fold_gains(rows, setting_name(share, k)))
    gains = pd.concat(gains, ignore_index=True)
    default = setting_name(*DEFAULT)
    choice = nested_choice(gains, default)
    settings, chosen = _summaries(gains, choice)
    text = sweep_statements(settings, chosen, default)
    call = call_record(config, inputs, gains, t0, cpu0, settings=[setting_name(s, k) for s, k in
                                                                 itertools.product(shares, ks)])
    call.update(runs_made=made, stages=timings)
    out = {"gains": gains, "settings": settings, "chosen": chosen}
    out["run"] = write_outputs(results, RESULT_FILES, out, text, call)
    out["statements"] = text
    return out
