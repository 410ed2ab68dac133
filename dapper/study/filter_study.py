"""The method's own filter, measured: ``python -m dapper filter-study``.

The paper's generative conditions with and without the filter of :mod:`dapper.synthetic_filter`
(each synthetic image kept only when the method's own instruments assign it to its label; never an
oracle), against real-only and real+affine, on both pools at every shot level, with the five-fold
study's folds, subsets, seeds and fine-tuning, on the shipped generator. Beside them, on the
embedded world's ceiling where the label noise is known (:mod:`dapper.study.ceiling`), the renderer's
rotations with a share of twins swapped in, with and without the filter, at the noise curve's shot
levels: what the filter removes when the truth is known.

Rows go to their own file, ``five_fold_filter.csv`` (the columns of ``five_fold.csv``), so the
five-fold study's file stays one study. The oracle reads the synthetic images before and after the
filter (it measures; the filter never sees it): ``five_fold_filter_agreement.csv`` gives per
condition the share kept and the label agreement before and after.
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from dapper.augment import describe_settings
from dapper.study.experiments import (
    FILTERED_CONDITIONS,
    filter_settings,
    five_fold_runs,
    percent,
    prepare_inputs,
    study_config,
    study_statements,
    study_tables,
    synthetic_label_agreement,
)
from dapper.study.noise_curve import record_call
from dapper.synthetic_filter import describe_filter
from dapper.utils import atomic_save, reports_dir

__all__ = ["filter_config", "run_filter_study", "filter_statements", "main", "RESULT_FILES", "CEILING_TWINS"]

RESULT_FILES = {"rows": "five_fold_filter.csv", "tests": "five_fold_filter_tests.csv",
                "summary": "five_fold_filter_summary.csv", "savings": "five_fold_filter_savings.csv",
                "agreement": "five_fold_filter_agreement.csv", "run": "five_fold_filter_run.json",
                "statements": "fig6d_filter.md"}
# the ceiling's rotations with this share of twins: label noise near the generator's (the oracle assigns
# 22-39% of the generator's paper-style images to their label)
CEILING_TWINS = "real+rotate(renderer, twins 60%)"


def filter_config(profile: str = "full", **overrides):
    """The five-fold study's config with real-only, real+affine, the paper's perturbation and rotation
    with and without the filter, and the ceiling's noisy rotation with and without it."""
    conditions = ("real", "real+affine", "real+perturb", "real+rotate") + FILTERED_CONDITIONS[:2] + (
        CEILING_TWINS, CEILING_TWINS[:-1] + ", filtered)")
    cfg = study_config(profile, "toycars", conditions=conditions)
    if profile == "quick":
        cfg.noise_shots = (min(cfg.shots),)
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"StudyConfig has no setting {k!r}")
        setattr(cfg, k, v)
    return cfg


def filter_statements(tables: dict, agreement: pd.DataFrame, config) -> str:
    """The filter's outcome in sentences: what it keeps and how much label agreement that buys
    (``agreement``, from :func:`synthetic_label_agreement`), then the study's verdicts against its goals
    (:func:`dapper.study.experiments.study_statements`); generated, never typed."""
    lines = [f"Filter: {describe_filter(filter_settings(config))}. Synthetic images: "
             f"{describe_settings(config.augment)}.", ""]
    for r in agreement[agreement["condition"].str.contains("filtered")].itertuples():
        lines.append(f"- {r.scenario}, {r.condition}: the filter keeps {percent(r.share_kept, 0)} of "
                     f"{r.n_before} images; the oracle assigns {percent(r.oracle_class_kept_before, 0)} of them to "
                     f"their label before the filter and {percent(r.oracle_class_kept, 0)} after.")
    lines += ["", study_statements(tables, hardness_rule=config.profile == "full")]
    return "\n".join(lines)


def run_filter_study(config, progress: bool = True) -> dict:
    """Run the rows (resumable), measure agreement before and after the filter at the fewest shots,
    write every file of :data:`RESULT_FILES`; returns the tables."""
    t0, cpu0 = time.time(), time.process_time()
    inputs = prepare_inputs(config, progress=progress)
    rows = five_fold_runs(config, inputs=inputs, path=reports_dir("results") / RESULT_FILES["rows"],
                          progress=progress)
    tables = study_tables(rows)
    agreement = synthetic_label_agreement(inputs, shots=min(config.shots))
    out = {"summary": tables["summary"], "savings": tables["savings"], "agreement": agreement,
           "tests": pd.concat([tables["vs_real"]] + ([tables["vs_affine"]] if "vs_affine" in tables else []),
                              ignore_index=True)}
    results = reports_dir("results")
    for name, df in out.items():
        atomic_save(results / RESULT_FILES[name], lambda p, df=df: df.to_csv(p, index=False, float_format="%.6g"))
    text = filter_statements(tables, agreement, config)
    atomic_save(results / RESULT_FILES["statements"], lambda p: p.write_text(text + "\n"))
    call = {"profile": config.profile, "filter": filter_settings(config).to_dict(), "generator": inputs.generator,
            "runs_total": int(len(rows)), "runs_made": int(inputs.timings.get("n_runs", 0)),
            "wall_seconds": round(time.time() - t0, 1), "cpu_seconds_main": round(time.process_time() - cpu0, 1),
            "stages": {k: round(v, 1) for k, v in inputs.timings.items()}, "workers": config.workers}
    run = record_call(results / RESULT_FILES["run"], call)
    out.update(statements=text, run=run, tables=tables)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dapper filter-study",
                                     description="The paper's synthetic images with and without the method's own "
                                                 "filter, on the generator and on the world's ceiling.")
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--filter", default="classifier", choices=("classifier", "nearest"))
    parser.add_argument("--min-confidence", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = filter_config(args.profile, workers=args.workers,
                           filter={"by": args.filter, "min_confidence": args.min_confidence})
    out = run_filter_study(config)
    from dapper.plots import fig6_accuracy_vs_shots

    fig6_accuracy_vs_shots(out["summary"], path=reports_dir("figures") / "fig6d_filter.png")
    print(out["statements"])
    last = out["run"]["last"]
    print(f"{last['runs_made']} runs made in {last['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
