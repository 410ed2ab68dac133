"""The five-fold study: accuracy against real images per class, with and without augmentation.

Stratified 5-fold cross validation over the target pool. In each fold, for each number of real
images per class (``shots``), the same real subset (nested: the 2 images of a class are among its
4, ...) trains the pretrained classifier under every condition:

====================== =====================================================================
``real``               the real images only
``real+affine``        the classic strong baseline: random crops, flips and RandAugment (classify.describe_affine)
``real+perturb``       plus ``k`` random W perturbations of each real image's projection
``real+rotate``        plus ``k`` pose-direction rotations of each
``real+perturb+rotate`` plus ``k`` images both perturbed and rotated
``...(residual)``      the same edits added to the real image as a difference (beyond the paper)
====================== =====================================================================

Folds, real subsets, seeds and the number of optimiser steps are identical across conditions, so
conditions are compared pairwise, fold by fold. Synthetic images come only from the fold's
training images (:func:`dapper.augment.check_no_leakage` runs for every fold and every run).

Scenarios (toycars): ``diverse``: the pool has every pose, colour and background, the held-out
fold is the test set; ``homogeneous``: the pool is a curated narrow set (front-right
three-quarter views, three colours) while the test set is full-diversity views of the same classes
(:func:`dapper.data.toycars.target_test_views`); this is where pose augmentation should help.

Each finished (scenario, condition, shots, fold) row is appended at once to
``reports_dir("results")/five_fold.csv`` (columns :data:`COLUMNS`; file lock, so parallel
processes can share it); a rerun skips rows already there with the same ``study_id``, a hash of
everything the row depends on: data, folds, fine-tuning and pretrained weights for every
condition, plus generator, projection and augmentation settings for the generative ones and the
pose direction for the rotating ones (so a new generator reruns only the rows it changes).

    config = study_config("full")
    rows = five_fold_runs(config)          # resumable, parallel
    tables = study_tables(rows)            # intervals, paired tests, savings, curve areas

The study lives in rooms of one job each, and this module is its front door (every name below is
importable from here; ``python -m dapper experiments`` is :mod:`dapper.cli.experiments`):
:mod:`~dapper.study.config` (conditions, goals, :class:`StudyConfig`, profiles),
:mod:`~dapper.study.folds` (images, folds, real subsets, the grid), :mod:`~dapper.study.ids` (study
ids), :mod:`~dapper.study.results_file` (the rows file), :mod:`~dapper.study.inputs` (what every run
shares), :mod:`~dapper.study.tuned` (the pivotally tuned generators' images),
:mod:`~dapper.study.runs` (a run and the grid of runs), :mod:`~dapper.study.tables` (statistics)
and :mod:`~dapper.study.statements` (sentences).
"""

from __future__ import annotations

from dapper.study.config import (  # noqa: F401
    CONDITION_METHOD,
    CONDITIONS,
    FILTERED_CONDITIONS,
    GAIN_GOAL,
    NOISE_CONDITIONS,
    RENDERER_CONDITIONS,
    RESIDUAL_CONDITIONS,
    SAVING_GOAL,
    TUNED_CONDITIONS,
    StudyConfig,
    ceiling_condition,
    condition_compose,
    condition_tuned,
    config_from_params,
    filter_settings,
    filtered_base,
    generator_resolution,
    model_sources,
    projection_settings,
    study_config,
    study_device,
    study_executor,
)
from dapper.study.folds import (  # noqa: F401
    RunSpec,
    ScenarioData,
    load_scenario,
    make_folds,
    plan_runs,
    real_subset,
    run_seed,
    run_steps,
)
from dapper.study.ids import classifier_weights_path, code_version, condition_ids  # noqa: F401
from dapper.study.inputs import StudyInputs, checking_annotator, pose_instruments, prepare_inputs  # noqa: F401
from dapper.study.outputs import STUDY_FILES, write_study_outputs  # noqa: F401
from dapper.study.results_file import (  # noqa: F401
    COLUMNS,
    REQUIRED_COLUMNS,
    append_row,
    archive_superseded,
    finished_runs,
    read_results,
    results_path,
)
from dapper.study.runs import (  # noqa: F401
    FittedRun,
    fit_run,
    five_fold_runs,
    prepared_config,
    run_one,
    run_synthetic,
    study_inputs,
)
from dapper.study.statements import label_agreement_statement, label_noise_statement, percent, points, study_statements  # noqa: F401
from dapper.study.tables import label_noise_relation, study_tables, synthetic_label_agreement  # noqa: F401
from dapper.study.tuned import tuned_synthetic  # noqa: F401

__all__ = [
    "CONDITIONS",
    "RESIDUAL_CONDITIONS",
    "TUNED_CONDITIONS",
    "CONDITION_METHOD",
    "condition_compose",
    "condition_tuned",
    "REQUIRED_COLUMNS",
    "COLUMNS",
    "StudyConfig",
    "study_config",
    "ScenarioData",
    "load_scenario",
    "condition_ids",
    "make_folds",
    "real_subset",
    "run_seed",
    "RunSpec",
    "plan_runs",
    "results_path",
    "append_row",
    "read_results",
    "finished_runs",
    "StudyInputs",
    "prepare_inputs",
    "study_inputs",
    "run_one",
    "five_fold_runs",
    "study_tables",
    "study_statements",
    "projection_settings",
    "classifier_weights_path",
    "config_from_params",
    "pose_instruments",
    "study_device",
    "fit_run",
    "FittedRun",
    "checking_annotator",
    "prepared_config",
    "archive_superseded",
    "code_version",
    "synthetic_label_agreement",
    "label_agreement_statement",
    "study_executor",
    "generator_resolution",
    "run_steps",
    "GAIN_GOAL",
    "SAVING_GOAL",
    "points",
    "percent",
    "label_noise_relation",
    "label_noise_statement",
    "tuned_synthetic",
    "RENDERER_CONDITIONS",
    "NOISE_CONDITIONS",
    "run_synthetic",
    "FILTERED_CONDITIONS",
    "filtered_base",
    "filter_settings",
    "ceiling_condition",
    "model_sources",
    "write_study_outputs",
    "STUDY_FILES",
    "SCENARIO_TITLES",
]

# how the figures name the two pools
SCENARIO_TITLES = {"diverse": "diverse pool, held-out fold",
                   "homogeneous": "curated narrow pool, full-diversity test views"}
