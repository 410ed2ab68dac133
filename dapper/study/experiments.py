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
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dapper.augment import METHODS, AugmentSettings
from dapper.classify import EMBEDDED_MODEL, FineTuneSettings
from dapper.params import NOT_GIVEN
from dapper.study.ceiling import TWIN_SHARES, RenderedSet, RendererSettings, renderer_condition, renderer_condition_name
from dapper.synthetic_filter import FilterSettings, keep_by_classifier, keep_by_nearest_shot

__all__ = [
    "CONDITIONS", "RESIDUAL_CONDITIONS", "TUNED_CONDITIONS", "CONDITION_METHOD", "condition_compose",
    "condition_tuned", "REQUIRED_COLUMNS", "COLUMNS",
    "StudyConfig", "study_config", "ScenarioData", "load_scenario", "condition_ids", "make_folds", "real_subset",
    "run_seed", "RunSpec", "plan_runs", "results_path", "append_row", "read_results", "finished_runs", "StudyInputs",
    "prepare_inputs", "run_one", "five_fold_runs", "study_tables", "study_statements", "main",
    "projection_settings", "classifier_weights_path", "config_from_params", "pose_instruments", "study_device",
    "fit_run", "FittedRun", "checking_annotator", "prepared_config", "archive_superseded", "code_version",
    "synthetic_label_agreement", "label_agreement_statement", "study_executor", "generator_resolution",
    "run_steps", "GAIN_GOAL", "SAVING_GOAL", "points", "percent", "label_noise_relation", "label_noise_statement",
    "tuned_synthetic", "RENDERER_CONDITIONS", "NOISE_CONDITIONS", "run_synthetic", "FILTERED_CONDITIONS",
    "filtered_base", "filter_settings", "ceiling_condition",
]

CONDITIONS = ("real", "real+affine", "real+perturb", "real+rotate", "real+perturb+rotate")
# Beyond the paper: the same edits applied to the real image as a residual (see dapper.augment).
RESIDUAL_CONDITIONS = ("real+perturb(residual)", "real+rotate(residual)", "real+perturb+rotate(residual)")
# Beyond the paper: the edits drawn by a generator pivotally tuned, per fold and shot level, on each class's
# training shots at once (dapper.inversion.pivotal), so that edits start from the real vehicles. Costly:
# run at the shot levels StudyConfig.tuned_shots only.
TUNED_CONDITIONS = ("real+perturb(tuned)", "real+rotate(tuned)")
# The method's own filter (dapper.synthetic_filter): the paper's synthetic images, each kept only when the method's
# own instruments assign it to its label. Any condition with synthetic images can be filtered: "real+rotate(filtered)",
# "real+rotate(renderer, twins 40%, filtered)" (on the ceiling, where the label noise is known).
FILTERED_CONDITIONS = ("real+perturb(filtered)", "real+rotate(filtered)", "real+perturb+rotate(filtered)")
CONDITION_METHOD = {"real+perturb": "perturb", "real+rotate": "rotate", "real+perturb+rotate": "perturb+rotate",
                    "real+perturb(residual)": "perturb", "real+rotate(residual)": "rotate",
                    "real+perturb+rotate(residual)": "perturb+rotate",
                    "real+perturb(tuned)": "perturb", "real+rotate(tuned)": "rotate",
                    "real+perturb(filtered)": "perturb", "real+rotate(filtered)": "rotate",
                    "real+perturb+rotate(filtered)": "perturb+rotate"}
PIVOTAL_RECIPE_FILES = ("dapper/inversion/pivotal.py", "dapper/inversion/perceptual.py")
# The embedded world's ceiling (dapper.study.ceiling): the renderer draws the synthetic images, as a perfect
# generator would; named "(renderer)", toycars only, never part of the method. The noise curve's conditions
# swap a share of those images for the look-alike twin's render, at StudyConfig.noise_shots only.
RENDERER_CONDITIONS = tuple(renderer_condition_name(m) for m in METHODS)
NOISE_CONDITIONS = tuple(renderer_condition_name(m, q) for q in TWIN_SHARES if q > 0 for m in METHODS)
CEILING_RECIPE_FILES = ("dapper/study/ceiling.py", "dapper/data/toycars.py")
FILTER_FILES = ("dapper/synthetic_filter.py",)


def condition_compose(condition: str) -> str:
    """How a generative condition composes its synthetic images: "generated" or "residual"."""
    return "residual" if condition.endswith("(residual)") else "generated"


def filtered_base(condition: str) -> str | None:
    """The condition a filtered one filters (``"real+rotate(filtered)"`` -> ``"real+rotate"``,
    ``"real+rotate(renderer, filtered)"`` -> ``"real+rotate(renderer)"``); None when not filtered."""
    if condition.endswith("(filtered)"):
        return condition[:-len("(filtered)")]
    if condition.endswith(", filtered)"):
        return condition[:-len(", filtered)")] + ")"
    return None


def ceiling_condition(condition: str) -> tuple[str, float] | None:
    """:func:`dapper.study.ceiling.renderer_condition` of a condition or of the one it filters."""
    return renderer_condition(filtered_base(condition) or condition)


def condition_tuned(condition: str) -> bool:
    """Whether a condition's synthetic images come from a generator tuned on its run's shots."""
    return condition.endswith("(tuned)")


REQUIRED_COLUMNS = ["dataset", "condition", "shots_per_class", "fold", "seed", "accuracy", "n_real", "n_synthetic"]
EXTRA_COLUMNS = ["scenario", "accuracy_fold", "accuracy_views", "n_test", "n_test_views", "steps", "profile",
                 "study_id", "generator", "seconds", "cpu_seconds", "finished_at", "device"]
# The code a row's number comes from: a change to any of these files (the fine-tuning recipe, its
# loop, the classifier's data handling; the augmentation for the generative conditions) gives new
# study ids, so rows made by other code are never reused.
RECIPE_FILES = ("dapper/classify.py", "dapper/fitting.py")
# (with how a pose direction asks for degrees: its response, each image's own)
GENERATIVE_RECIPE_FILES = ("dapper/augment.py", "dapper/directions/calibrate.py", "dapper/directions/methods.py")
COLUMNS = REQUIRED_COLUMNS + EXTRA_COLUMNS
SCENARIOS = ("diverse", "homogeneous")
# The paper's claims, the study's goals: accuracy over real-only at the fewest shots, real data saved.
GAIN_GOAL, SAVING_GOAL = 0.06, 0.30


@dataclass
class StudyConfig:
    """Everything a five-fold study depends on. ``folds=None`` runs all ``n_folds`` folds; a
    subset (quick profile) runs those folds of the same split."""

    profile: str = "full"
    dataset: str = "toycars"
    scenarios: tuple[str, ...] = SCENARIOS
    n_per_class: int = 40
    n_folds: int = 5
    folds: tuple[int, ...] | None = None
    shots: tuple[int, ...] = (2, 4, 8, 16, 32)
    conditions: tuple[str, ...] = CONDITIONS
    seed: int = 0
    n_test_views: int = 30
    image_size: int = 64
    # method v2: each image asked for its degrees through its own response (its turn read by the method's pose
    # annotator); rotations the annotator reads missing their degrees are halved, then dropped
    augment: AugmentSettings = field(default_factory=lambda: AugmentSettings(pose_check=True, response="image"))
    finetune: FineTuneSettings = field(default_factory=FineTuneSettings)
    # keyword arguments of dapper.inversion.projection.ProjectionSettings; 100 steps reach within ~1 dB of
    # the default 200 at half the cost (about 2 CPU seconds per 64 px image)
    projection: dict | None = field(default_factory=lambda: {"steps": 100})
    # the tuned conditions: keyword arguments of dapper.inversion.pivotal.PivotalSettings (100 steps took
    # the toycars pivots' loss from 0.23 to 0.08 in notebook 03), and the shot levels they run at
    pivotal: dict = field(default_factory=lambda: {"steps": 100})
    tuned_shots: tuple[int, ...] = (2,)
    # the ceiling's renderer (keyword arguments of dapper.study.ceiling.RendererSettings) and the shot levels
    # of the label-noise curve's conditions (a twin share above 0)
    renderer: dict = field(default_factory=dict)
    noise_shots: tuple[int, ...] = (2, 8)
    # the filtered conditions' filter: keyword arguments of dapper.synthetic_filter.FilterSettings
    filter: dict = field(default_factory=dict)
    classifier: str = EMBEDDED_MODEL
    classifier_weights: str | None = "default"
    network: str | None = None
    data_root: str | None = None
    workers: int = 2
    direction_profile: str | None = None  # profile of the pose direction (default: the study's)
    # real mode's models (dapper.params.REAL_MODE_MODELS; None: the embedded world's) and classes
    classes: tuple[str, ...] | None = None
    vehicle_detector: str | None = None
    pose_annotator: str | None = None
    vgg16_weights: str | None = None
    lpips_weights: str | None = None
    device: str | None = None  # every stage's device; None: CUDA when present, else the CPU
    # where the grid's runs and the projection's batches run (dapper.executor): "local" or "ray"
    executor: str = "local"
    ray_address: str | None = None  # ray.init's address; None: a local Ray on this machine

    @property
    def fold_ids(self) -> tuple[int, ...]:
        return tuple(range(self.n_folds)) if self.folds is None else tuple(self.folds)

    def identity(self) -> dict:
        """The settings that change a row's result (not which rows are run, nor how many workers)."""
        d = asdict(self)
        for k in ("folds", "shots", "conditions", "scenarios", "workers", "profile", "device", "executor",
                  "ray_address", "tuned_shots", "noise_shots"):
            d.pop(k)
        for k in OPTIONAL_FIELDS:  # unset: the study id is what it was before these settings existed
            if d[k] is None:
                d.pop(k)
        return d


OPTIONAL_FIELDS = ("classes", "vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")


def config_from_params(profile: str, dataset: str, data_root=None, network=None, classifier_weights=NOT_GIVEN,
                       vehicle_detector=NOT_GIVEN, pose_annotator=NOT_GIVEN, vgg16_weights=NOT_GIVEN,
                       lpips_weights=NOT_GIVEN, classes=None, classifier=None, **overrides) -> StudyConfig:
    """The study's settings from a notebook's parameters (checked with :func:`dapper.params.check_params`).
    Real mode: images at the generator's resolution and the timm model ``classifier`` (None: the
    paper's ``resnext50_32x4d``) from ``classifier_weights`` (``"scratch"``: random initialisation).
    A model the notebook passes is used, None meaning the embedded world's (real mode requires each
    one passed, see ``check_params``); one it does not pass is not checked: a notebook passes every
    model its stages use (one that never fine-tunes has no ``classifier_weights``, and
    :func:`classifier_weights_path` refuses a real-mode run without them)."""
    from dapper.params import check_params

    models = {k: v for k, v in dict(classifier_weights=classifier_weights, vehicle_detector=vehicle_detector,
                                    pose_annotator=pose_annotator, vgg16_weights=vgg16_weights,
                                    lpips_weights=lpips_weights).items() if v is not NOT_GIVEN}
    check_params(profile, dataset, data_root, network, classes, classifier=classifier, **models)
    o = {k: None if models.get(k) is None else str(models[k])
         for k in ("vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")}
    o.update(data_root=None if data_root is None else str(data_root), network=None if network is None else str(network),
             classes=None if classes is None else tuple(classes))
    if dataset == "stanford_cars":
        from dapper.classify import REAL_MODEL

        o.update(image_size=generator_resolution(network), classifier=classifier or REAL_MODEL)
    elif classifier is not None:
        o["classifier"] = classifier
    if models.get("classifier_weights") is not None:
        o["classifier_weights"] = str(models["classifier_weights"])
    o.update(overrides)
    return study_config(profile, dataset, **o)


@functools.lru_cache(maxsize=8)
def _resolution(path: str, stamp: tuple) -> int:
    from dapper.stylegan2 import load_generator

    return int(load_generator(path).img_resolution)


def generator_resolution(network) -> int:
    """The image size of the generator in the checkpoint ``network``, read once per file version
    in a process (a notebook that builds two configs loads a 512 px checkpoint once)."""
    path = Path(network).expanduser().resolve()
    st = path.stat()
    return _resolution(str(path), (st.st_mtime_ns, st.st_size))


def study_config(profile: str = "full", dataset: str = "toycars", **overrides) -> StudyConfig:
    """The study's settings for a profile: ``full`` (5 folds, 5 shot levels, both scenarios; about
    an hour on 2 CPU cores with a cold cache) or ``quick`` (2 of the 5 folds, real mode 1; 2 shot levels, the
    diverse scenario, shorter fine-tuning: a couple of minutes)."""
    from dapper.params import check_params

    check_params(profile, dataset)
    cfg = StudyConfig(profile=profile, dataset=dataset)
    # bf16 autocast fine-tuning: real mode's ResNeXt-50 steps 1.9x faster on a CPU with avx512_bf16
    # (bench/real_quick.py), the embedded study's runs 1.33x (bench/finetune_bf16.py), accuracy alike
    cfg.finetune = dataclasses.replace(cfg.finetune, bf16=True)
    if dataset == "stanford_cars":
        cfg.scenarios = ("diverse",)
        cfg.shots = (2, 4, 8, 16, 24)
    if profile == "quick":
        cfg.scenarios = ("diverse",)
        cfg.n_per_class = 20
        cfg.folds = (0, 1)
        cfg.shots = (2, 4)
        cfg.n_test_views = 10
        cfg.augment = dataclasses.replace(cfg.augment, k=2)
        cfg.finetune = dataclasses.replace(cfg.finetune, min_steps=20, max_steps=40)
        cfg.projection = {"steps": 10}  # the encoder's guess, briefly refined: a smoke test
        if dataset == "stanford_cars":
            # real mode's smoke test: a step of an ImageNet classifier at its input size (ResNeXt-50:
            # 224 px) and a 128-512 px generated image cost many times the embedded ones
            # (bench/real_quick.py times the quick profile against its budget at 128 px): one fold
            cfg.folds = (0,)
            cfg.augment = dataclasses.replace(cfg.augment, k=1)
            cfg.finetune = dataclasses.replace(cfg.finetune, batch_size=16, min_steps=10, max_steps=10)
    for k, v in overrides.items():
        if not hasattr(cfg, k):
            raise TypeError(f"StudyConfig has no setting {k!r}")
        setattr(cfg, k, v)
    return cfg


# ---------------------------------------------------------------------------------------------
# Data, folds and subsets
# ---------------------------------------------------------------------------------------------


@dataclass
class ScenarioData:
    """One scenario's images. images: uint8 [N, S, S, 3]; labels: int64 [N]; keys: content keys
    [N]; views_images/views_labels: an extra fixed full-diversity test set (or empty)."""

    dataset: str
    scenario: str
    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    class_names: list[str]
    views_images: np.ndarray
    views_labels: np.ndarray


def _cached_arrays(name: str, make) -> dict:
    from dapper.utils import atomic_save, cache_dir

    path = cache_dir("study", "pools") / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    arrays = make()
    atomic_save(path, lambda p: np.savez(p, **arrays))
    return arrays


def load_scenario(config: StudyConfig, scenario: str, workers: int = 1) -> ScenarioData:
    """The pool the folds split, and the extra test views, for ``scenario`` (rendered once, cached)."""
    from dapper.augment import image_keys

    if config.dataset == "toycars":
        from dapper.data import toycars

        homogeneous = scenario == "homogeneous"
        tag = f"v{toycars.RENDER_VERSION}-{config.image_size}px-seed{config.seed}"

        def pool():
            p = toycars.target_pool(config.n_per_class, seed=config.seed, size=config.image_size,
                                    homogeneous=homogeneous, workers=workers)
            return {"images": p.images, "labels": p.labels}

        def views():
            p = toycars.target_test_views(config.n_test_views, seed=config.seed, size=config.image_size,
                                          workers=workers)
            return {"images": p.images, "labels": p.labels}

        a = _cached_arrays(f"toycars-{scenario}-{config.n_per_class}-{tag}", pool)
        v = (_cached_arrays(f"toycars-views-{config.n_test_views}-{tag}", views) if config.n_test_views
             else {"images": np.zeros((0, config.image_size, config.image_size, 3), np.uint8),
                   "labels": np.zeros(0, np.int64)})
        names = list(toycars.TARGET_CLASSES)
    elif config.dataset == "stanford_cars":
        if scenario != "diverse":
            raise ValueError("Stanford Cars has one scenario: the photos as they come ('diverse')")
        from dapper.data.stanford_cars import DEFAULT_CLASSES, load_pool

        p = load_pool(config.data_root, classes=config.classes or DEFAULT_CLASSES, size=config.image_size)
        a = {"images": p.images, "labels": p.labels}
        v = {"images": np.zeros((0, *p.images.shape[1:]), np.uint8), "labels": np.zeros(0, np.int64)}
        names = list(p.class_names)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}")
    return ScenarioData(config.dataset, scenario, a["images"], a["labels"].astype(np.int64), image_keys(a["images"]),
                        names, v["images"], v["labels"].astype(np.int64))


def make_folds(labels: np.ndarray, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds: ``[(train_idx, test_idx), ...]``, each class spread evenly; a pure function
    of (labels, n_folds, seed)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.sort(tr), np.sort(te)) for tr, te in skf.split(np.zeros(len(labels)), labels)]


def real_subset(labels: np.ndarray, train_idx: np.ndarray, shots: int, fold: int, seed: int = 0) -> np.ndarray:
    """``shots`` training images per class for a fold: the first ``shots`` of a fixed per-class
    random order, so subsets are nested across shot levels and identical across conditions."""
    labels = np.asarray(labels)
    out = []
    for c in np.unique(labels[train_idx]):
        members = train_idx[labels[train_idx] == c]
        rng = np.random.default_rng([int(seed), int(fold), int(c), 0x5407])
        order = members[rng.permutation(len(members))]
        if shots > len(order):
            raise ValueError(f"class {c} has {len(order)} training images in fold {fold}, fewer than {shots} shots")
        out.append(order[:shots])
    return np.sort(np.concatenate(out))


def run_seed(seed: int, fold: int, shots: int) -> int:
    """The seed of every run of (fold, shots): the same for all conditions (paired)."""
    return int(seed) * 100_000 + int(fold) * 1_000 + int(shots)


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    condition: str
    shots: int
    fold: int
    seed: int


def run_steps(config: StudyConfig, spec: RunSpec, n_classes: int) -> int:
    """Optimiser steps of one fine-tuning run (they depend on its real images only)."""
    return config.finetune.steps(spec.shots * n_classes)


def plan_runs(config: StudyConfig) -> list[RunSpec]:
    """All runs of a study, cheapest shot levels first within each scenario (a tuned condition at
    the shot levels ``config.tuned_shots`` only, a renderer condition with twins at ``config.noise_shots``)."""
    def runs_at(cond: str, s: int) -> bool:
        noisy = (ceiling_condition(cond) or ("", 0.0))[1] > 0
        tuned = condition_tuned(filtered_base(cond) or cond)
        return (not tuned or s in config.tuned_shots) and (not noisy or s in config.noise_shots)

    return [RunSpec(sc, cond, s, f, run_seed(config.seed, f, s))
            for sc in config.scenarios for s in config.shots for f in config.fold_ids for cond in config.conditions
            if runs_at(cond, s)]


# ---------------------------------------------------------------------------------------------
# Results file: one row per finished run, appended under a lock
# ---------------------------------------------------------------------------------------------


def results_path() -> Path:
    from dapper.utils import reports_dir

    return reports_dir("results") / "five_fold.csv"


def append_row(path: str | Path, row: dict) -> None:
    """Append ``row`` to the CSV at ``path`` (header first if the file is new), holding an
    exclusive lock so that parallel processes never interleave lines."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            f.seek(0)
            first = f.readline()
            header = next(csv.reader([first])) if first.strip() else None
            columns = header or COLUMNS
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            f.seek(0, os.SEEK_END)
            if header is None:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in columns})
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def read_results(path: str | Path | None = None, study_id: str | dict | None = None):
    """The results file as a data frame; empty if missing. ``study_id``: keep only that study's rows
    (a string, or a dict condition -> id as in :attr:`StudyInputs.ids`)."""
    import pandas as pd

    path = Path(path) if path is not None else results_path()
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_csv(path, dtype={"study_id": str, "generator": str})
    if study_id is not None and "study_id" in df.columns:
        if isinstance(study_id, dict):
            keep = df["study_id"] == df["condition"].map(study_id)
        else:
            keep = df["study_id"] == study_id
        df = df[keep].reset_index(drop=True)
    return df


def _row_key(scenario, condition, shots, fold) -> tuple:
    return (str(scenario), str(condition), int(shots), int(fold))


def archive_path(path: str | Path) -> Path:
    """Where :func:`archive_superseded` keeps the rows it takes out of ``path``."""
    path = Path(path)
    return path.with_name(path.stem + "_archive" + path.suffix)


def archive_superseded(path: str | Path, ids: dict, profile: str, dataset: str) -> int:
    """Move the rows of ``path`` that this study (``ids``: condition -> study id) supersedes, rows of
    the same profile, dataset and condition made with other settings, code or models, to
    :func:`archive_path` (appended), so the results file holds one study. Returns how many moved.
    Rows of other profiles or datasets stay."""
    import fcntl

    import pandas as pd

    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "r+", newline="") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            df = pd.read_csv(f, dtype={"study_id": str, "generator": str})
            if df.empty or "study_id" not in df.columns:
                return 0
            mine = (df.get("profile", pd.Series(profile, index=df.index)).astype(str) == profile) & (
                df["dataset"].astype(str) == dataset) & df["condition"].isin(list(ids))
            old = mine & (df["study_id"] != df["condition"].map(ids))
            if not old.any():
                return 0
            archive = archive_path(path)
            # archive first, then replace the file atomically: a crash in between duplicates rows in
            # the archive and never loses one (the study runs start only after this)
            df[old].to_csv(archive, mode="a", header=not archive.exists() or archive.stat().st_size == 0, index=False)
            from dapper.utils import atomic_save

            atomic_save(path, lambda p: df[~old].to_csv(p, index=False))
            return int(old.sum())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def finished_runs(path: str | Path, study_id: str | dict) -> set[tuple]:
    """Keys ``(scenario, condition, shots, fold)`` of the rows the study already wrote."""
    import pandas as pd

    df = read_results(path, study_id)
    # Rows without a scenario come from the plain cross-validation over the pool.
    scenario = df["scenario"].astype(object) if "scenario" in df.columns else pd.Series("diverse", index=df.index)
    scenario[scenario.isna()] = "diverse"
    df = df.assign(scenario=scenario)
    return {_row_key(r.scenario, r.condition, r.shots_per_class, r.fold) for r in df.itertuples()}


# ---------------------------------------------------------------------------------------------
# Inputs shared by every run: images, folds, projections, synthetic images
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyInputs:
    """What runs need, prepared once (and handed to worker processes)."""

    config: StudyConfig
    ids: dict  # condition -> study id of its rows (see condition_ids)
    generator: str
    data: dict  # scenario -> ScenarioData
    folds: dict  # scenario -> list of (train_idx, test_idx)
    # scenario -> dapper.augment.SyntheticSet of every training image any run uses (one copy per
    # image; each run selects its real subset's images and checks them against its test fold)
    synthetic: dict
    timings: dict = field(default_factory=dict)
    # (scenario, fold, shots) -> SyntheticSet of the tuned conditions: the run's shots, each class's drawn by
    # the generator tuned on that class's shots of that run
    tuned: dict = field(default_factory=dict)
    # scenario -> dapper.study.ceiling.RenderedSet: the renderer's images of every training image any run uses
    # (the ceiling's conditions; toycars only)
    rendered: dict = field(default_factory=dict)

    @property
    def study_id(self) -> str:
        """The id of the real-only rows (what every condition shares)."""
        return self.ids["real"]


class _StageClock:
    """Adds each stage's wall seconds to ``timings[stage]`` and this process's CPU seconds (all
    its threads) to ``timings[stage + "_cpu"]``: CPU time says what the stage costs even when
    other jobs share the machine."""

    def __init__(self, timings: dict):
        self.timings = timings
        self.start()

    def start(self) -> None:
        self.wall, self.cpu = time.time(), time.process_time()

    def stop(self, stage: str) -> None:
        self.timings[stage] = self.timings.get(stage, 0.0) + time.time() - self.wall
        self.timings[stage + "_cpu"] = self.timings.get(stage + "_cpu", 0.0) + time.process_time() - self.cpu
        self.start()


def _file_hash(path) -> str:
    from dapper.utils import file_sha256

    return "none" if path is None else file_sha256(path)[:16]


def classifier_weights_path(config: StudyConfig):
    """The classifier's starting weights: the shipped toycars ResNeXt by default, the file named in
    ``classifier_weights``, or None for ``"scratch"`` (random initialisation, asked for by name)."""
    from dapper.classify import PRETRAINED_PATH

    if config.classifier_weights == "scratch":
        return None
    if config.classifier_weights in ("default", None):
        if config.classifier != EMBEDDED_MODEL:
            raise ValueError(f"{config.classifier} needs classifier_weights: a local file of its ImageNet weights, "
                             "or 'scratch' to train it from random initialisation")
        return PRETRAINED_PATH
    return config.classifier_weights


def code_version(files) -> str:
    """sha256 (16 hex digits) of the source files ``files`` (paths from the repository root)."""
    from dapper.utils import repo_root

    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (repo_root() / name).read_bytes())
    return h.hexdigest()[:16]


def condition_ids(config: StudyConfig, generator: str, direction_id: str) -> dict[str, str]:
    """Study id per condition: a hash of what that condition's rows depend on, the code that makes
    them included (:data:`RECIPE_FILES`)."""
    ident = config.identity()
    ident["classifier_weights"] = _file_hash(classifier_weights_path(config))
    ident["code"] = code_version(RECIPE_FILES)
    generative = {k: ident.pop(k) for k in ("augment", "projection", "network")}
    generative["augment_code"] = code_version(GENERATIVE_RECIPE_FILES)
    ident.pop("pivotal")  # the tuned conditions' only, as the settings they mean
    filtering = {"filter": FilterSettings(**ident.pop("filter")).to_dict(), "filter_code": code_version(FILTER_FILES)}
    renderer = {"renderer": RendererSettings(**ident.pop("renderer")).to_dict(),
                "renderer_code": code_version(CEILING_RECIPE_FILES),
                "synthetic_counts": {k: asdict(config.augment)[k] for k in ("k", "coefficients", "seed")}}
    pivotal = {"pivotal": pivotal_settings(config).to_dict(), "pivotal_code": code_version(PIVOTAL_RECIPE_FILES)}
    ids = {}
    extra = [c for c in config.conditions if ceiling_condition(c) is not None or filtered_base(c)]
    for cond in dict.fromkeys(CONDITIONS + RESIDUAL_CONDITIONS + TUNED_CONDITIONS + RENDERER_CONDITIONS
                              + FILTERED_CONDITIONS + tuple(extra)):
        d = dict(ident)
        base = filtered_base(cond) or cond
        if base != cond:
            d.update(filtering, filtered=base)
        if renderer_condition(base) is not None:
            d.update(renderer)
        if base in CONDITION_METHOD:
            d.update(generative, generator=generator)
            if "rotate" in cond:
                d["direction"] = direction_id
        if condition_tuned(base):
            d.update(pivotal)
        ids[cond] = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return ids


def projection_settings(config: StudyConfig):
    from dapper.inversion.projection import ProjectionSettings

    lpips = {k: getattr(config, k) for k in ("vgg16_weights", "lpips_weights") if getattr(config, k) is not None}
    return ProjectionSettings(**{**(config.projection or {}), **lpips})


def study_device(config: StudyConfig):
    """The device every stage of the study runs on (``config.device``, else CUDA when present)."""
    from dapper.utils import get_device

    return get_device(config.device)


def pose_instruments(config: StudyConfig, device="cpu") -> tuple:
    """(vehicle detector, pose estimator) the config names (:mod:`dapper.instruments`); None for
    each left unset (the embedded world's then, loaded where needed)."""
    from dapper import instruments

    detector = None if config.vehicle_detector is None else instruments.load_vehicle_detector(
        config.vehicle_detector, device=device)
    annotator = None if config.pose_annotator is None else instruments.load_pose_estimator(
        config.pose_annotator, device=device)
    return detector, annotator


def checking_annotator(annotator, device="cpu"):
    """The pose annotator the augmentation's pose check reads: ``annotator`` (the config's, from
    :func:`pose_instruments`), else the embedded world's, as the pose direction's own fit does."""
    if annotator is not None:
        return annotator
    from dapper.judges.annotators import load_pose_annotator

    return load_pose_annotator(device=device)


def _project_chunk(args) -> int:
    import torch

    from dapper.inversion.projection import project_images

    G, images, settings = args
    torch.set_num_threads(1)
    project_images(G, images, settings=settings, cache=True, progress=False)
    return len(images)


def _project_in_parallel(G, images: np.ndarray, settings, workers: int) -> None:
    """Fill the projection cache using ``workers`` single-thread processes (one process with two
    threads spends about twice the CPU time on these small batches)."""
    if workers <= 1 or len(images) < 2 * workers:
        return
    import multiprocessing as mp

    chunks = [c for c in np.array_split(np.asarray(images), workers) if len(c)]
    with mp.get_context("spawn").Pool(len(chunks)) as pool:
        list(pool.imap_unordered(_project_chunk, [(G, c, settings) for c in chunks]))


def pivotal_settings(config: StudyConfig):
    """The tuned conditions' :class:`dapper.inversion.pivotal.PivotalSettings`: ``config.pivotal``
    with the config's perceptual network (the projection's)."""
    from dapper.inversion.pivotal import PivotalSettings

    return PivotalSettings(**{**config.pivotal, "vgg16_weights": config.vgg16_weights,
                              "lpips_weights": config.lpips_weights})


def _tune_chunk(args) -> int:
    import torch

    from dapper.inversion.pivotal import PivotalSettings, tune_generator_cached

    G, jobs, settings = args
    torch.set_num_threads(1)
    settings = PivotalSettings(**settings)
    perceptual = None
    if settings.perceptual_weight > 0:
        from dapper.inversion.perceptual import load_perceptual

        perceptual = load_perceptual(settings.vgg16_weights, settings.lpips_weights)
    for images, ws in jobs:
        tune_generator_cached(G, images, ws, settings, perceptual=perceptual)
    return len(jobs)


def _tune_in_parallel(config: StudyConfig, G, jobs: list, workers: int) -> None:
    """Fill the pivotal tuning cache using ``workers`` single-thread processes (a tuning on a
    class's few shots keeps two threads of one process only partly busy)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        return
    import copy
    import multiprocessing as mp

    chunks = [jobs[i::workers] for i in range(workers)]
    G = copy.deepcopy(G).cpu()  # the caller's stays where it is
    with mp.get_context("spawn").Pool(workers) as pool:
        list(pool.imap_unordered(_tune_chunk, [(G, c, pivotal_settings(config).to_dict()) for c in chunks]))


def prepare_inputs(config: StudyConfig, progress: bool = True, G=None, direction=None, project=None,
                   apply_direction=None) -> StudyInputs:
    """Render/load the pools, split folds, project the training images the generative conditions
    use (cached by image hash) and make their synthetic images (cached per image), checking for
    every fold that no synthetic image derives from a test image.

    ``G``, ``direction``, ``project`` (``project(G, images) -> ws``) and ``apply_direction`` stand
    in for the shipped generator, the fitted pose direction, :func:`dapper.inversion.projection.project_images`
    and :func:`dapper.directions.apply_direction` (tests use small fakes).
    """
    import torch

    from dapper import augment
    from dapper.augment import SyntheticSet, augment_images
    from dapper.utils import weights_hash

    timings: dict[str, float] = {}
    clock = _StageClock(timings)
    data = {sc: load_scenario(config, sc, workers=min(2, os.cpu_count() or 1)) for sc in config.scenarios}
    folds = {sc: make_folds(d.labels, config.n_folds, config.seed) for sc, d in data.items()}
    clock.stop("data")

    shared = [c for c in config.conditions if c in CONDITION_METHOD and not condition_tuned(c)]
    tuned_conds = [c for c in config.conditions if c in CONDITION_METHOD and condition_tuned(c)]
    methods = [m for m in METHODS if any(CONDITION_METHOD[c] == m for c in shared)]
    tuned_methods = [m for m in METHODS if any(CONDITION_METHOD[c] == m for c in tuned_conds)]
    tuned_shots = [s for s in config.shots if s in config.tuned_shots] if tuned_conds else []
    if tuned_conds and not tuned_shots:
        import warnings

        warnings.warn(f"the tuned conditions run at tuned_shots {config.tuned_shots}, none of the study's shots "
                      f"{config.shots}: they make no rows", stacklevel=2)
    if not tuned_shots:
        tuned_methods = []
    composes = sorted({condition_compose(c) for c in shared})
    need_rotation = any("rotate" in m for m in methods + tuned_methods)
    device = study_device(config)
    if G is None and (methods or tuned_methods):
        from dapper.stylegan2 import load_generator
        from dapper.utils import default_generator_path

        G = load_generator(config.network or default_generator_path(), device=device).eval()
    g_hash = weights_hash(G) if G is not None else "none"
    d_id = ""
    pose_annotator = None
    if need_rotation:
        detector, pose_annotator = pose_instruments(config, device=next(G.parameters()).device)
        if direction is None:
            from dapper.directions import load_or_fit_pose_direction

            direction = load_or_fit_pose_direction(G, config.direction_profile or config.profile,
                                                   detector=detector, annotator=pose_annotator, dataset=config.dataset)
        if apply_direction is None:
            from dapper.directions import apply_direction
        d_id = augment.direction_id(direction, apply_direction, (1, G.num_ws, G.w_dim))
        if config.augment.pose_check or config.augment.response == "image":
            pose_annotator = checking_annotator(pose_annotator, next(G.parameters()).device)
            d_id += "-" + augment.annotator_id(pose_annotator)
    clock.stop("generator+direction")
    ids = condition_ids(config, g_hash, d_id)

    synthetic, tuned = {}, {}
    if methods or tuned_methods:
        executor = study_executor(config)
        if project is None:
            from dapper.inversion.projection import project_images

            settings = projection_settings(config)

            def project(G, images):
                if executor.name == "local" and device.type == "cpu":
                    # CPU processes fill the cache; one GPU does better alone
                    _project_in_parallel(G, images, settings, config.workers)
                return project_images(G, images, settings=settings, cache=True, progress=progress,
                                      device=device, executor=executor).ws

        top = max(config.shots)
        for sc, d in data.items():
            used = {f: real_subset(d.labels, folds[sc][f][0], top, f, config.seed) for f in config.fold_ids}
            union = np.unique(np.concatenate(list(used.values())))
            clock.start()
            ws_union = torch.as_tensor(np.asarray(project(G, d.images[union]))).float()
            clock.stop("projection")
            row_of = {int(i): r for r, i in enumerate(union)}
            clock.start()
            parts = []
            for f, new, test_keys in (_first_training_images(config, d, folds[sc], used) if methods else ()):
                ws = ws_union[[row_of[int(i)] for i in new]]
                parts.append(augment_images(
                    G, ws, [d.keys[i] for i in new], d.labels[new], methods, config.augment, direction,
                    test_keys=test_keys, apply_direction=apply_direction, progress=progress, compose=composes,
                    images=d.images[new] if "residual" in composes else None, pose_annotator=pose_annotator))
            if parts:
                synthetic[sc] = SyntheticSet.concat(parts)
            clock.stop("augment")
            runs = {(f, shots): real_subset(d.labels, folds[sc][f][0], shots, f, config.seed)
                    for f in config.fold_ids for shots in tuned_shots}
            if tuned_shots and executor.name == "local" and device.type == "cpu":
                # every class of every run, tuned in parallel into the cache the loop below reads
                jobs = [(d.images[idx[rows]], ws_union[[row_of[int(i)] for i in idx[rows]]])
                        for idx in runs.values() for rows in _class_rows(d.labels, idx)]
                clock.start()
                _tune_in_parallel(config, G, jobs, config.workers)
                clock.stop("pivotal tuning")
            perceptual = None
            if tuned_shots and pivotal_settings(config).perceptual_weight > 0:
                from dapper.inversion.perceptual import load_perceptual

                perceptual = load_perceptual(config.vgg16_weights, config.lpips_weights, device=device)
            bar = None
            if progress and tuned_shots:
                from tqdm.auto import tqdm

                bar = tqdm(total=len(config.fold_ids) * len(tuned_shots) * len(d.class_names), unit="class",
                           desc=f"pivotal tuning per run and class ({sc})")
            for f in config.fold_ids:
                test_keys = [d.keys[i] for i in folds[sc][f][1]]
                for shots in tuned_shots:
                    idx = runs[(f, shots)]
                    tuned[(sc, f, shots)] = tuned_synthetic(
                        config, G, d, idx, ws_union[[row_of[int(i)] for i in idx]], tuned_methods, direction,
                        test_keys, f, apply_direction, pose_annotator, clock, bar, perceptual)
            if bar is not None:
                bar.close()
    clock.start()
    rendered = _rendered_sets(config, data, folds)
    clock.stop("renderer")
    return StudyInputs(config, ids, g_hash, data, folds, synthetic, timings, tuned, rendered)


def _rendered_sets(config: StudyConfig, data: dict, folds: dict) -> dict:
    """The ceiling's synthetic images (:func:`dapper.study.ceiling.render_ceiling_set`) of every training
    image the config's renderer conditions use, per scenario, each made in the first fold that trains
    on it with that fold's test images checked; empty when no renderer condition is asked for."""
    from dapper.study.ceiling import pool_items, render_ceiling_set

    wanted = [ceiling_condition(c) for c in config.conditions if ceiling_condition(c) is not None]
    if not wanted:
        return {}
    if config.dataset != "toycars":
        raise ValueError(f"the (renderer) conditions are the embedded world's ceiling: {config.dataset} has no "
                         "renderer; leave them out of `conditions`")
    methods = [m for m in METHODS if any(m == w[0] for w in wanted)]
    settings = RendererSettings(**config.renderer)
    workers = min(2, os.cpu_count() or 1)
    out = {}
    for sc, d in data.items():
        items = pool_items(config.n_per_class, config.seed, sc == "homogeneous")
        out[sc] = RenderedSet.concat(
            render_ceiling_set([items[i] for i in new], d.images[new], [d.keys[i] for i in new], methods,
                               config.augment, settings, workers, test_keys=test_keys, fold=f)
            for f, new, test_keys in _first_training_images(config, d, folds[sc]))
    return out


def _first_training_images(config: StudyConfig, d: ScenarioData, folds: list, used: dict | None = None):
    """Per fold of ``config``: ``(fold, new, test_keys)``, the pool rows ``new`` (ints) that fold trains on
    at the largest shot level and no earlier fold did, and its test images' keys; folds with nothing
    new are skipped. An image's synthetic set does not depend on the fold, so it is made once, in the
    first fold that trains on it; every fold's training images are checked against its test fold
    here. ``used``: fold -> its training rows, when already drawn."""
    from dapper.augment import check_no_leakage

    made = set()
    for f in config.fold_ids:
        idx = used[f] if used is not None else real_subset(d.labels, folds[f][0], max(config.shots), f, config.seed)
        test_keys = [d.keys[i] for i in folds[f][1]]
        check_no_leakage([d.keys[i] for i in idx], test_keys, fold=f)
        new = [int(i) for i in idx if d.keys[i] not in made]
        if new:
            made.update(d.keys[i] for i in new)
            yield f, new, test_keys


def filter_settings(config: StudyConfig) -> FilterSettings:
    """The filtered conditions' :class:`dapper.synthetic_filter.FilterSettings`."""
    return FilterSettings(**config.filter)


def _filter_mask(inputs: StudyInputs, spec: RunSpec, syn, device=None) -> np.ndarray:
    """Which of a run's synthetic images ``syn`` the method's own filter keeps (bool [M]): the
    real-only classifier of the same run (:func:`fit_run` of ``real``: its shots, seed and recipe), or
    the pretrained classifier's features against the run's real shots. Never an oracle."""
    from dapper.classify import create_classifier, predict, prepare_images

    settings = filter_settings(inputs.config)
    p = _prepared(inputs, spec.scenario)
    n_classes = len(inputs.data[spec.scenario].class_names)
    syn_x = prepare_images(syn.images, p["config"])
    bf16 = inputs.config.finetune.bf16
    if settings.by == "classifier":
        model = _real_only_model(inputs, spec, device)
        return keep_by_classifier(predict(model, syn_x, bf16=bf16), syn.labels, settings.min_confidence)
    d = inputs.data[spec.scenario]
    real_idx = real_subset(d.labels, inputs.folds[spec.scenario][spec.fold][0], spec.shots, spec.fold,
                          inputs.config.seed)
    features = create_classifier(0, inputs.config.classifier, classifier_weights_path(inputs.config))
    features = features.to(study_device(inputs.config) if device is None else device)
    return keep_by_nearest_shot(predict(features, syn_x, bf16=bf16), syn.labels,
                                predict(features, p["x"][real_idx], bf16=bf16), d.labels[real_idx], n_classes)


_REAL_ONLY: dict = {}  # per process: the last few real-only classifiers the filter read, by run


def _real_only_model(inputs: StudyInputs, spec: RunSpec, device=None):
    """The real-only classifier of ``spec``'s run (:func:`fit_run` of ``real``: same shots, seed and
    recipe), fitted once per process for every filtered condition of that run and for the label
    agreement (fitting is deterministic, so a kept model is the one a refit would give). Keeps four."""
    key = (inputs.ids["real"], spec.scenario, spec.fold, spec.shots, spec.seed, str(device))
    if key not in _REAL_ONLY:
        while len(_REAL_ONLY) >= 4:
            _REAL_ONLY.pop(next(iter(_REAL_ONLY)))
        _REAL_ONLY[key] = fit_run(inputs, dataclasses.replace(spec, condition="real"), device).model
    return _REAL_ONLY[key]


def run_synthetic(inputs: StudyInputs, spec: RunSpec, device=None, before_filter: bool = False):
    """The synthetic images (a :class:`dapper.augment.SyntheticSet`) one run trains on beside its real
    shots; None for a condition without any. Checked against the run's test fold. A filtered
    condition's are its base condition's that the method's own filter keeps (``before_filter``: all of
    them); the filter trains on ``device``."""
    base = filtered_base(spec.condition)
    if base is not None:
        syn = run_synthetic(inputs, dataclasses.replace(spec, condition=base))
        if before_filter or syn is None:
            return syn
        keep = _filter_mask(inputs, spec, syn, device)
        idx = np.flatnonzero(keep)
        return type(syn)(syn.images[idx], syn.labels[idx], syn.manifest.iloc[idx].reset_index(drop=True))
    d = inputs.data[spec.scenario]
    train_idx, test_idx = inputs.folds[spec.scenario][spec.fold]
    keys = [d.keys[i] for i in real_subset(d.labels, train_idx, spec.shots, spec.fold, inputs.config.seed)]
    test_keys = [d.keys[i] for i in test_idx]
    ceiling = renderer_condition(spec.condition)
    if ceiling is not None:
        method, share = ceiling
        return inputs.rendered[spec.scenario].select(keys, method, share, test_keys=test_keys, fold=spec.fold)
    method = CONDITION_METHOD.get(spec.condition)
    if method is None:
        return None
    pool = (inputs.tuned[(spec.scenario, spec.fold, spec.shots)] if condition_tuned(spec.condition)
            else inputs.synthetic[spec.scenario])
    return pool.select(keys, [method], test_keys=test_keys, fold=spec.fold, compose=condition_compose(spec.condition))


def _class_rows(labels: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
    """Positions in a run's real images ``idx`` of each class, in class order: the pivots of each
    tuning (the parallel fill of the cache and :func:`tuned_synthetic` must tune exactly the same)."""
    run_labels = labels[np.asarray(idx)]
    return [np.flatnonzero(run_labels == c) for c in np.unique(run_labels)]


def tuned_synthetic(config: StudyConfig, G, d: ScenarioData, idx, ws, methods, direction, test_keys, fold,
                    apply_direction=None, pose_annotator=None, clock=None, bar=None, perceptual=None):
    """The tuned conditions' synthetic images of one run (its real images ``idx``, projected to ``ws``):
    for each class a copy of ``G`` pivotally tuned on that class's images at once
    (:func:`dapper.inversion.pivotal.tune_generator_cached`, never on ``test_keys``) draws its edits.
    ``clock``: a stage clock the tuning and the drawing add their time to; ``bar``: a progress bar
    moved on by one per class; ``perceptual``: the loaded network :func:`pivotal_settings` names
    (None: loaded here)."""
    from dapper.augment import SyntheticSet, augment_images, check_no_leakage
    from dapper.inversion.latents import w_statistics
    from dapper.inversion.pivotal import tune_generator_cached

    idx = np.asarray(idx)
    check_no_leakage([d.keys[i] for i in idx], test_keys, fold=fold)
    settings = pivotal_settings(config)
    if perceptual is None and settings.perceptual_weight > 0:
        from dapper.inversion.perceptual import load_perceptual

        perceptual = load_perceptual(config.vgg16_weights, config.lpips_weights, device=next(G.parameters()).device)
    aug = config.augment
    # the tuned copies keep G's mapping, so G's spread of W is theirs
    w_std = w_statistics(G, aug.w_samples, seed=aug.seed).std
    parts = []
    for rows in _class_rows(d.labels, idx):
        G_c, _ = tune_generator_cached(G, d.images[idx[rows]], ws[rows], settings, perceptual=perceptual)
        if clock is not None:
            clock.stop("pivotal tuning")
        parts.append(augment_images(
            G_c, ws[rows], [d.keys[i] for i in idx[rows]], d.labels[idx[rows]], methods, aug, direction, fold=fold,
            test_keys=test_keys, apply_direction=apply_direction, w_std=w_std, pose_annotator=pose_annotator,
            progress=False, make_all=False))  # each tuned copy draws only what its conditions use
        if clock is not None:
            clock.stop("augment (tuned)")
        if bar is not None:
            bar.update(1)
    return SyntheticSet.concat(parts)


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

_PREPARED: dict = {}  # per process: (scenario, kind) -> prepared classifier tensors


def prepared_config(inputs: StudyInputs, scenario: str) -> dict:
    """The classifier's data config the study prepares a scenario's images with."""
    return _prepared(inputs, scenario)["config"]


def _prepared(inputs: StudyInputs, scenario: str):
    import torch

    from dapper.classify import create_classifier, data_config, prepare_images

    key = (inputs.study_id, scenario)
    if key not in _PREPARED:
        d = inputs.data[scenario]
        cfg = data_config(create_classifier(len(d.class_names), inputs.config.classifier,
                                            classifier_weights_path(inputs.config)))
        views = prepare_images(d.views_images, cfg) if len(d.views_images) else None
        _PREPARED[key] = {"x": prepare_images(d.images, cfg), "y": torch.from_numpy(d.labels), "views": views,
                          "views_y": torch.from_numpy(d.views_labels), "config": cfg}
    return _PREPARED[key]


@dataclass
class FittedRun:
    """A classifier fine-tuned as the study fine-tunes one run, and what it was fitted on."""

    model: object
    real_idx: np.ndarray
    test_idx: np.ndarray
    n_synthetic: int
    steps: int
    device: object


def fit_run(inputs: StudyInputs, spec: RunSpec, device=None) -> FittedRun:
    """Fine-tune the classifier of one (scenario, condition, shots, fold), exactly as the study does
    (the one function behind :func:`run_one` and :func:`dapper.study.saliency.train_pair`): the
    fold's nested real subset, the condition's synthetic images of those (its composition), the
    study's settings and seed, on ``device`` (default: :func:`study_device`)."""
    import dataclasses as dc

    import torch

    from dapper.classify import prepare_images, train_classifier

    cfg = inputs.config
    device = study_device(cfg) if device is None else device
    d = inputs.data[spec.scenario]
    train_idx, test_idx = inputs.folds[spec.scenario][spec.fold]
    real_idx = real_subset(d.labels, train_idx, spec.shots, spec.fold, cfg.seed)
    p = _prepared(inputs, spec.scenario)
    real_x, real_y = p["x"][real_idx], p["y"][real_idx]
    syn_x = syn_y = None
    n_syn = 0
    syn = run_synthetic(inputs, spec, device)
    if syn is not None and len(syn):
        syn_x = prepare_images(syn.images, p["config"])
        syn_y = torch.from_numpy(syn.labels)
        n_syn = len(syn)
    settings = dc.replace(cfg.finetune, affine=spec.condition == "real+affine")
    model = train_classifier(real_x, real_y, len(d.class_names), syn_x, syn_y, settings, seed=spec.seed,
                             model_name=cfg.classifier, weights=classifier_weights_path(cfg), device=device)
    return FittedRun(model.eval(), real_idx, test_idx, n_syn, settings.steps(len(real_idx)), device)


def run_one(inputs: StudyInputs, spec: RunSpec, device=None) -> dict:
    """Fine-tune (:func:`fit_run`) and test one (scenario, condition, shots, fold); returns the
    results row."""
    import datetime

    from dapper.classify import accuracy

    t0, cpu0 = time.time(), time.process_time()
    cfg = inputs.config
    d = inputs.data[spec.scenario]
    p = _prepared(inputs, spec.scenario)
    fitted = fit_run(inputs, spec, device)
    model, real_idx, test_idx, n_syn = fitted.model, fitted.real_idx, fitted.test_idx, fitted.n_synthetic
    method = CONDITION_METHOD.get(spec.condition)
    bf16 = cfg.finetune.bf16
    acc_fold = accuracy(model, p["x"][test_idx], p["y"][test_idx], bf16=bf16)
    acc_views = accuracy(model, p["views"], p["views_y"], bf16=bf16) if p["views"] is not None else math.nan
    primary = acc_views if spec.scenario == "homogeneous" else acc_fold
    return {
        "dataset": cfg.dataset, "condition": spec.condition, "shots_per_class": spec.shots, "fold": spec.fold,
        "seed": spec.seed, "accuracy": round(primary, 6), "n_real": len(real_idx), "n_synthetic": n_syn,
        "scenario": spec.scenario, "accuracy_fold": round(acc_fold, 6),
        "accuracy_views": round(acc_views, 6) if math.isfinite(acc_views) else "",
        "n_test": len(test_idx), "n_test_views": len(d.views_labels), "steps": fitted.steps,
        "profile": cfg.profile, "study_id": inputs.ids[spec.condition], "device": str(fitted.device),
        "generator": ("renderer" if ceiling_condition(spec.condition)
                      else inputs.generator if method is not None else ""),
        "seconds": round(time.time() - t0, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def study_executor(config: StudyConfig):
    """The executor (:mod:`dapper.executor`) the config names."""
    from dapper.executor import get_executor

    return get_executor(config.executor, config.ray_address)


def _grid_task(inputs: StudyInputs, job: tuple) -> dict:
    """One grid cell as an executor's task: ``job = (spec, threads)``; returns its row."""
    import torch

    spec, threads = job
    torch.set_num_threads(threads)
    return run_one(inputs, spec)


_WORKER: dict = {}


def _worker_init(inputs: StudyInputs, path: str, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _WORKER["inputs"], _WORKER["path"] = inputs, path


def _worker_run(spec: RunSpec) -> dict:
    row = run_one(_WORKER["inputs"], spec)
    append_row(_WORKER["path"], row)
    return row


def five_fold_runs(config: StudyConfig, inputs: StudyInputs | None = None, path: str | Path | None = None,
                   workers: int | None = None, progress: bool = True, threads: int = 1, executor=None):
    """Run every planned run not yet in the results file; return the study's rows (data frame).

    Each row is appended as soon as its run ends, so an interrupted study resumes where it
    stopped. ``workers > 1`` runs in that many processes (spawned, ``threads`` torch threads each).
    ``executor`` (default: the config's, see :mod:`dapper.executor`): with Ray every run is a task
    asking for ``threads`` CPUs and, when the study is not pinned to the CPU and the cluster has
    GPUs, one GPU; this process appends the rows as the tasks finish (same file, lock and resume
    rules; ``workers`` does not apply).
    """

    inputs = inputs or prepare_inputs(config, progress=progress)
    path = Path(path) if path is not None else results_path()
    moved = archive_superseded(path, inputs.ids, config.profile, config.dataset)
    if moved and progress:
        print(f"{moved} superseded rows moved to {archive_path(path).name}")
    done = finished_runs(path, inputs.ids)
    todo = [s for s in plan_runs(config) if _row_key(s.scenario, s.condition, s.shots, s.fold) not in done]
    workers = config.workers if workers is None else workers
    if study_device(config).type == "cuda":  # one GPU: runs one after another, each on it
        workers = 1
    workers = max(1, min(workers, len(todo)))
    from dapper.executor import get_executor

    executor = study_executor(config) if executor is None else get_executor(executor)
    t = time.time()
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="five-fold runs", unit="run")
    if executor.name != "local" and todo:
        on_cpu = config.device is not None and str(config.device).startswith("cpu")
        gpus = 0 if on_cpu or not executor.gpus_available() else 1
        # longest first (a run's steps depend on its real images only): a first-come queue then
        # finishes soonest (dapper.study.cluster_plan)
        n_classes = {sc: len(d.class_names) for sc, d in inputs.data.items()}
        todo = sorted(todo, key=lambda s: -run_steps(config, s, n_classes[s.scenario]))
        for _, row in executor.map(_grid_task, [(s, threads) for s in todo], shared=inputs, num_cpus=threads,
                                   num_gpus=gpus):
            append_row(path, row)
            if bar is not None:
                bar.update(1)
    elif workers == 1:
        from dapper.utils import torch_threads

        with torch_threads(threads):
            for spec in todo:
                append_row(path, run_one(inputs, spec))
                if bar is not None:
                    bar.update(1)
    elif todo:
        import multiprocessing as mp

        # Spawned workers (not forked): a fork after torch has used its OpenMP pool can hang.
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_worker_init, initargs=(inputs, str(path), threads)) as pool:
            for _ in pool.imap_unordered(_worker_run, todo):
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    inputs.timings["runs"] = time.time() - t
    inputs.timings["n_runs"] = len(todo)
    return read_results(path, inputs.ids)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def study_tables(rows, confidence: float = 0.95) -> dict:
    """The study's statistics from its rows: ``summary`` (mean and t-interval per condition and
    shots), ``vs_real`` and ``vs_affine`` (paired tests per shot level), ``savings`` (real data
    saved at equal accuracy) and ``areas`` (area under the learning curve)."""
    from dapper.study import stats

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
    from dapper.study import stats

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
    import pandas as pd

    if inputs.config.dataset != "toycars":
        return pd.DataFrame(columns=["scenario", "condition", "n_images", "oracle_class_kept", "oracle_pair_kept"])
    from dapper.augment import SyntheticSet
    from dapper.data import toycars
    from dapper.judges import oracles
    from dapper.study.gan_eval import pair_hits

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


def label_agreement_statement(table) -> str:
    """One sentence per scenario from :func:`synthetic_label_agreement` (generated, never typed)."""
    lines = []
    for sc, df in table.groupby("scenario", sort=False):
        parts = ", ".join(f"{r.condition} {100 * r.oracle_class_kept:.0f}% (pair {100 * r.oracle_pair_kept:.0f}%)"
                          for r in df.itertuples())
        lines.append(f"- {sc}: the identity oracle assigns the synthetic images of {parts} to their label.")
    return "\n".join(lines)


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
    import pandas as pd
    from scipy import stats as st

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


def label_noise_statement(fits, gain_goal: float = GAIN_GOAL) -> str:
    """One sentence per scenario from :func:`label_noise_relation`'s fits (generated, never typed)."""
    lines = []
    for r in fits.itertuples():
        trend = ("does not clearly follow" if not r.p < 0.05 else "rises with" if r.slope > 0 else "falls with")
        lines.append(
            f"- {r.scenario}, {r.shots_per_class} shots: across the {r.n} generative conditions the gain over "
            f"real-only {trend} the share of synthetic images the oracle keeps "
            f"in their class (Pearson r = {r.r:.2f}, p = {r.p:.2g}; {points(r.slope / 10)} points per 10 points "
            f"kept, over {100 * r.kept_min:.0f}-{100 * r.kept_max:.0f}% kept). Extrapolated to every image "
            f"keeping its class, the line gives {points(r.at_full)} points [{points(r.at_full_low)}, "
            f"{points(r.at_full_high)}]"
            + (f", short of the +{100 * gain_goal:.0f}-point goal even at its interval's top end."
               if r.at_full_high < gain_goal else f", the +{100 * gain_goal:.0f}-point goal "
               + ("below its interval." if r.at_full_low > gain_goal else "within its interval."))
            + " (The conditions share their real images and folds, so they are not independent points.)")
    return "\n".join(lines)


def points(x) -> str:
    """A difference of shares in percentage points, signed (``+6.5``); ``n/a`` when not finite."""
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):+.1f}"


def percent(x, digits: int = 1) -> str:
    """A share in percent (``43.5%``); ``n/a`` when missing or not finite."""
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.{digits}f}%"


def study_statements(tables: dict, gain_goal: float = GAIN_GOAL, saving_goal: float = SAVING_GOAL,
                     hardness_rule: bool = True) -> str:
    """Markdown sentences stating the study's outcome from its tables, every number with its
    95% interval; nothing is written here that the tables do not hold. Goals (the paper's claims):
    ``gain_goal`` accuracy over real-only at the fewest shots, ``saving_goal`` real data saved.
    ``hardness_rule``: judge the task by the 20-point rule (only meaningful when the largest shot
    level is all of a fold's training data, as in the full profile)."""
    summ, vs, sav, areas = tables["summary"], tables["vs_real"], tables["savings"], tables["areas"]
    vs_aff = tables.get("vs_affine")
    lines = []
    for sc in dict.fromkeys(summ["scenario"]):
        s = summ[summ["scenario"] == sc]
        real = s[s["condition"] == "real"].sort_values("shots_per_class")
        if real.empty:
            continue
        few, most = real.iloc[0], real.iloc[-1]
        lo_shots, hi_shots = int(few["shots_per_class"]), int(most["shots_per_class"])
        gap = most["mean"] - few["mean"]
        n_folds = int(few['n_folds'])
        lines.append(f"**{sc}** ({n_folds} fold{'' if n_folds == 1 else 's'}). Real-only accuracy rises from "
                     f"{percent(few['mean'])} [{percent(few['ci_low'])}, {percent(few['ci_high'])}] at {lo_shots} "
                     f"images per class to {percent(most['mean'])} [{percent(most['ci_low'])}, "
                     f"{percent(most['ci_high'])}] at {hi_shots} "
                     f"({points(gap)} points" + (f"; the task {'is' if gap >= 0.2 else 'is not'} hard enough by the "
                                               "study's 20-point rule)." if hardness_rule else ")."))
        v = vs[(vs["scenario"] == sc) & (vs["shots_per_class"] == lo_shots)]
        family = int(vs.loc[vs["scenario"] == sc, "p_ttest"].notna().sum())  # holm leaves NaN p out
        for r in v.itertuples():
            holm = (f" (Holm-adjusted over the scenario's {family} comparisons: p={r.p_ttest_holm:.3g})"
                    if hasattr(r, "p_ttest_holm") and family > 1 else "")
            tests = (f"paired t p={r.p_ttest:.3g}{holm}, Wilcoxon p={r.p_wilcoxon:.3g}, better in {r.wins} of "
                     f"{r.n_pairs} folds" if r.n_pairs > 1 else
                     f"one fold, so no paired test ({'better' if r.wins else 'not better'} in it)")
            lines.append(f"- {r.condition} at {lo_shots} shots: {points(r.diff)} points over real-only "
                         f"[{points(r.diff_low)}, {points(r.diff_high)}], {tests}.")
        for cond in [c for c in dict.fromkeys(vs[vs["scenario"] == sc]["condition"]) if c != "real+affine"]:
            rows = vs[(vs["scenario"] == sc) & (vs["condition"] == cond)]
            best = rows.loc[rows["diff"].idxmax()] if len(rows) else None
            sv = sav[(sav["scenario"] == sc) & (sav["condition"] == cond)]
            sv_def = sv[sv["saving"].notna()]
            parts = []
            if best is not None:
                parts.append(f"best difference {points(best['diff'])} points [{points(best['diff_low'])}, "
                             f"{points(best['diff_high'])}] at {int(best['shots_per_class'])} shots")
            if len(sv_def):
                b = sv_def.loc[sv_def["saving"].idxmax()]
                parts.append(f"largest real-data saving {percent(b['saving'])} at {int(b['shots_per_class'])} shots "
                             f"(real-only needs {b['shots_needed']:.1f} per class for the same accuracy; per-fold "
                             f"interval [{percent(b['saving_low'])}, {percent(b['saving_high'])}], "
                             f"{int(b['n_defined'])} folds defined)")
            else:
                parts.append("no shot level where a saving is defined (its accuracy is below real-only's first "
                             "point or beyond its last)")
            if vs_aff is not None and len(vs_aff):
                a = vs_aff[(vs_aff["scenario"] == sc) & (vs_aff["condition"] == cond)
                           & (vs_aff["shots_per_class"] == lo_shots)]
                if len(a):
                    a = a.iloc[0]
                    parts.append(f"vs real+affine at {lo_shots} shots {points(a['diff'])} points "
                                 f"[{points(a['diff_low'])}, {points(a['diff_high'])}]")
            ar = areas[(areas["scenario"] == sc) & (areas["condition"] == cond)]
            ar_real = areas[(areas["scenario"] == sc) & (areas["condition"] == "real")]
            if len(ar) and len(ar_real):
                parts.append(f"area under the learning curve {percent(ar.iloc[0]['aulc'])} "
                             f"[{percent(ar.iloc[0]['aulc_low'])}, {percent(ar.iloc[0]['aulc_high'])}] vs real-only "
                             f"{percent(ar_real.iloc[0]['aulc'])}")
            low = rows[rows["shots_per_class"] == lo_shots]
            gain_ok = bool(len(low)) and low.iloc[0]["diff_low"] >= gain_goal
            gain_point = bool(len(low)) and low.iloc[0]["diff"] >= gain_goal
            save_ok = bool(len(sv_def)) and sv_def["saving"].max() >= saving_goal
            verdict = ("meets" if gain_ok else "reaches in its mean only" if gain_point else "does not reach")
            lines.append(f"- {cond}: " + "; ".join(parts) + f". It {verdict} the goal of {points(gain_goal)} points "
                         f"at the fewest shots, and {'reaches' if save_ok else 'does not reach'} "
                         f"{percent(saving_goal)} real data saved.")
        lines.append("")
    return "\n".join(lines).strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dapper experiments", description="Run the five-fold study.")
    parser.add_argument("--profile", default="quick", choices=("quick", "full"))
    parser.add_argument("--dataset", default="toycars")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--network", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=None, help="results CSV (default: reports_dir('results')/five_fold.csv)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="ray: every run and projection batch is a Ray task (pip install -e \".[ray]\")")
    parser.add_argument("--ray-address", default=None,
                        help="the Ray cluster to join ('auto', 'ray://head:10001'); default: a local Ray")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (CPUs per Ray task)")
    args = parser.parse_args(argv)
    from dapper.executor import check_executor

    check_executor(args.executor, args.ray_address)
    config = study_config(args.profile, args.dataset, data_root=args.data_root, network=args.network,
                          workers=args.workers, executor=args.executor, ray_address=args.ray_address)
    rows = five_fold_runs(config, path=args.out, threads=args.threads)
    tables = study_tables(rows)
    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(tables["summary"].to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
