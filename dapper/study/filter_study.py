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

import time

import pandas as pd

from dapper.augment import describe_settings
from dapper.study.config import FILTERED_CONDITIONS, filter_settings, study_config
from dapper.study.inputs import prepare_inputs
from dapper.study.noise_curve import call_record, ceiling_path, quick_noise_shots, refuse_smaller_profile, write_outputs
from dapper.study.results_file import results_path
from dapper.study.runs import five_fold_runs
from dapper.study.statements import percent, study_statements
from dapper.study.tables import study_tables, synthetic_label_agreement
from dapper.synthetic_filter import FILTERS, describe_filter
from dapper.utils import reports_dir

__all__ = ["filter_config", "run_filter_study", "filter_statements", "RESULT_FILES", "result_files",
           "CEILING_TWINS"]

RESULT_FILES = {"rows": "five_fold_filter.csv", "tests": "five_fold_filter_tests.csv",
                "summary": "five_fold_filter_summary.csv", "savings": "five_fold_filter_savings.csv",
                "agreement": "five_fold_filter_agreement.csv", "run": "five_fold_filter_run.json",
                "statements": "fig6d_filter.md", "figure": "fig6d_filter.png"}


def result_files(by: str) -> dict:
    """:data:`RESULT_FILES` of the method's default filter (``classifier``); another filter's carry its
    name (``five_fold_filter_nearest.csv``, ...), so the two never share a rows file."""
    if by == "classifier":
        return dict(RESULT_FILES)
    return {k: v.replace("filter", f"filter_{by}", 1) for k, v in RESULT_FILES.items()}
# the ceiling's rotations with this share of twins: label noise near the generator's (the oracle assigns
# 22-39% of the generator's paper-style images to their label)
CEILING_TWINS = "real+rotate(renderer, twins 60%)"


def filter_config(profile: str = "full", **overrides):
    """The five-fold study's config with real-only, real+affine, the paper's perturbation and rotation
    with and without the filter, and the ceiling's noisy rotation with and without it."""
    conditions = ("real", "real+affine", "real+perturb", "real+rotate") + FILTERED_CONDITIONS[:2] + (
        CEILING_TWINS, CEILING_TWINS[:-1] + ", filtered)")
    return study_config(profile, "toycars", **{"conditions": conditions, **quick_noise_shots(profile), **overrides})


def filter_statements(tables: dict, agreement: pd.DataFrame, config) -> str:
    """The filter's outcome in sentences: what it keeps and how much label agreement that buys
    (``agreement``, from :func:`synthetic_label_agreement`), then the study's verdicts against its goals
    (:func:`dapper.study.experiments.study_statements`); generated, never typed."""
    lines = [f"Filter: {describe_filter(filter_settings(config))}. Synthetic images: "
             f"{describe_settings(config.augment)}.", ""]
    for r in agreement[agreement["condition"].str.contains("filtered")].itertuples():
        lines.append(f"- {r.scenario}, {r.condition}: the filter keeps {percent(r.share_kept, 0)} of "
                     f"{int(r.n_before)} images; the oracle assigns {percent(r.oracle_class_kept_before, 0)} of "
                     f"them to their label before the filter and {percent(r.oracle_class_kept, 0)} after.")
    lines += ["", study_statements(tables, hardness_rule=config.profile == "full")]
    return "\n".join(lines)


def run_filter_study(config, progress: bool = True, replace_full: bool = False) -> dict:
    """Run the rows (resumable), measure agreement before and after the filter at the fewest shots,
    write every file of :data:`RESULT_FILES`; returns the tables. A smaller profile's call refuses to
    replace a full run's tables unless ``replace_full``."""
    files = result_files(filter_settings(config).by)
    refuse_smaller_profile(reports_dir("results"), files, config.profile, replace_full)
    t0, cpu0 = time.time(), time.process_time()
    inputs = prepare_inputs(config, progress=progress)
    # the unfiltered conditions are the five-fold study's, the ceiling's and the other filter's runs (same
    # ids): read from their files, not repeated
    siblings = [results_path(), ceiling_path()] + [reports_dir("results") / result_files(by)["rows"]
                                                   for by in FILTERS]
    rows = five_fold_runs(config, inputs=inputs, path=reports_dir("results") / files["rows"], progress=progress,
                          adopt_from=siblings)
    tables = study_tables(rows)
    agreement = synthetic_label_agreement(inputs, shots=min(config.shots))
    out = {"summary": tables["summary"], "savings": tables["savings"], "agreement": agreement,
           "tests": pd.concat([tables["vs_real"]] + ([tables["vs_affine"]] if "vs_affine" in tables else []),
                              ignore_index=True)}
    text = filter_statements(tables, agreement, config)
    call = call_record(config, inputs, rows, t0, cpu0, filter=filter_settings(config).to_dict(),
                       generator=inputs.generator)
    out["run"] = write_outputs(reports_dir("results"), files, out, text, call)
    out.update(statements=text, tables=tables)
    return out
