"""The study's data: each scenario's images, the stratified folds, the nested real subsets every
condition shares, the runs' seeds and the grid of runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold

from dapper.augment import image_keys
from dapper.data import toycars
from dapper.study.config import StudyConfig, ceiling_condition, condition_tuned, content_size, filtered_base
from dapper.study.dataset_images import ImagePick, pick_images
from dapper.utils import cache_dir, cached_arrays


@dataclass
class ScenarioData:
    """One scenario's images. images: uint8 [N, S, S, 3]; labels: int64 [N]; keys: content keys
    [N]; views_images/views_labels: an extra fixed full-diversity test set (or empty); masks: the
    photo's pixels on the canvas (real photos letterboxed into the generator's content box)."""

    dataset: str
    scenario: str
    images: np.ndarray
    labels: np.ndarray
    keys: list[str]
    class_names: list[str]
    views_images: np.ndarray
    views_labels: np.ndarray
    # bool [N, S, S]: where each image shows the photo, not the letterbox bars (None: everywhere)
    masks: np.ndarray | None = None


def _cached_arrays(name: str, make) -> dict:
    return cached_arrays(cache_dir("study", "pools") / f"{name}.npz", make)


def load_scenario(config: StudyConfig, scenario: str, workers: int = 1) -> ScenarioData:
    """The pool the folds split, and the extra test views, for ``scenario`` (rendered once, cached)."""
    if config.dataset == "toycars":
        tag = f"v{toycars.RENDER_VERSION}-{config.image_size}px-seed{config.seed}"

        def picked(pick: ImagePick) -> dict:
            p = pick_images("toycars", pick, canvas=(config.image_size, None), workers=workers)
            return {"images": p.images, "labels": p.labels}

        pool = ImagePick(config.n_per_class, seed=config.seed, homogeneous=scenario == "homogeneous")
        a = _cached_arrays(f"toycars-{scenario}-{config.n_per_class}-{tag}", lambda: picked(pool))
        views = ImagePick(config.n_test_views, seed=config.seed, views=True) if config.n_test_views else None
        v = (_cached_arrays(f"toycars-views-{config.n_test_views}-{tag}", lambda: picked(views)) if views
             else {"images": np.zeros((0, config.image_size, config.image_size, 3), np.uint8),
                   "labels": np.zeros(0, np.int64)})
        names = list(toycars.TARGET_CLASSES)
    elif config.dataset == "stanford_cars":
        if scenario != "diverse":
            raise ValueError("Stanford Cars has one scenario: the photos as they come ('diverse')")
        # letterboxed once, into the generator's content box; the masks keep the bars out of every loss
        p = pick_images("stanford_cars", ImagePick(), canvas=(config.image_size, content_size(config)),
                        data_root=config.data_root, classes=config.classes)
        a = {"images": p.images, "labels": p.labels, "masks": p.content_masks}
        v = {"images": np.zeros((0, *p.images.shape[1:]), np.uint8), "labels": np.zeros(0, np.int64)}
        names = p.class_names
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}")
    return ScenarioData(config.dataset, scenario, a["images"], a["labels"].astype(np.int64), image_keys(a["images"]),
                        names, v["images"], v["labels"].astype(np.int64), a.get("masks"))


def make_folds(labels: np.ndarray, n_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds: ``[(train_idx, test_idx), ...]``, each class spread evenly; a pure function
    of (labels, n_folds, seed)."""
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
