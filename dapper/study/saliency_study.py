"""The saliency study: the real-only and the augmented classifier of each fold, their maps compared.

Notebook 05 and ``python -m dapper saliency`` run the same calls and write the same files::

    config = saliency_config("quick", "toycars", augmented="real+perturb+rotate")
    settings = saliency_settings(config, condition="real+perturb+rotate", method="gradcam")
    inputs = prepare_inputs(config)
    study = run_saliency_study(inputs, settings)      # per image, per fold, per layer
    summary = write_saliency_outputs(study, settings, inputs)   # saliency.csv, saliency_per_image.csv
    saliency_text(summary, study, settings)           # Markdown read off the summary
    figure7_data(inputs, study, settings)             # what figure 7 draws (plots.fig7_gradcam)

A finished study is kept (``saliency_per_image.csv`` and figure 7's arrays in ``saliency_study.npz``, under a
key hashing the two conditions' study ids, the folds and every setting): a rerun with the same key reads it
instead of training again, and ``prepare_inputs(config, skip_images=skip_if_stored(config, settings))`` then
makes no synthetic image. A new generator, direction, setting or code changes the key.

The measures and their statistics are :mod:`dapper.study.saliency`'s; this module holds the
study's rules: which shot level, folds and layers, how many images get ROAD, which images figure 7
shows, and the settings columns every row of ``saliency.csv`` carries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dapper.classify import create_classifier
from dapper.study.config import StudyConfig, config_from_params, model_sources
from dapper.study.inputs import StudyInputs
from dapper.study.results_file import read_results
from dapper.study.saliency import (
    CAM_METHODS,
    ClassifierPair,
    cam_maps,
    compare_classifiers,
    describe_summary,
    figure_selection,
    object_masks,
    saliency_summary,
    stage_layers,
    train_pair,
)
from dapper.utils import atomic_save, json_digest, reports_dir

__all__ = ["SALIENCY_FILES", "SUMMARY_COLUMNS", "SaliencySettings", "SaliencyStudy", "Figure7Data", "saliency_config",
           "saliency_settings", "describe_plan", "run_saliency_study", "study_rows", "saliency_settings_columns",
           "write_saliency_outputs", "summary_view", "saliency_text", "figure7_data", "STORE_FILE", "study_key",
           "stored_study", "skip_if_stored"]

SALIENCY_FILES = {"summary": "saliency.csv", "per_image": "saliency_per_image.csv"}
"""The results files, in ``reports_dir("results")``."""

STORE_FILE = "saliency_study.npz"
"""Beside them: figure 7's arrays, the study's key and the hash of the per-image file it belongs to."""

SUMMARY_COLUMNS = ("scenario", "layer", "measure", "n_images", "mean_real", "mean_augmented", "chance", "diff",
                   "diff_ci_low", "diff_ci_high", "p_t", "p_wilcoxon", "significant")
"""The summary's columns a reader is shown (``saliency.csv`` holds them all)."""


@dataclass(frozen=True)
class SaliencySettings:
    """The study's rules for one config. ``cam_layers``: layer name -> the target layers handed to
    :func:`dapper.study.saliency.cam_maps` (None: its default, the last stage); ``primary``: the last
    feature stage, the only layer ROAD runs at; ``road_images``: ROAD on the first that many images
    of each test fold; ``maps_per_class``: None maps every test image, else the first that many of
    each class (figure 7's rule); ``fig_per_class``: figure 7's images per class."""

    condition: str
    method: str
    shots: int
    folds: tuple[int, ...]
    primary: str
    cam_layers: dict
    pointing_tolerance: float
    road_percentiles: tuple[float, ...]
    road_images: int
    maps_per_class: int | None
    fig_per_class: int = 1

    def __post_init__(self):
        if self.method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {self.method!r}; choose from {', '.join(CAM_METHODS)}")
        if self.primary not in self.cam_layers:
            raise ValueError(f"the primary layer {self.primary!r} is not among the layers {list(self.cam_layers)}")


@dataclass
class SaliencyStudy:
    """What :func:`run_saliency_study` measured: ``per_image`` (one row per scenario, fold, layer and
    test image: :func:`dapper.study.saliency.compare_classifiers`' columns after ``dataset, scenario,
    fold, shots_per_class, seed, condition, layer, pool_index``), the trained ``pairs`` by (scenario,
    fold), and ``accuracy``: both classifiers' accuracy on the mapped images per (scenario, fold)."""

    per_image: pd.DataFrame
    pairs: dict
    accuracy: pd.DataFrame
    figure7: Figure7Data | None = None  # figure 7's maps, made with the pairs (figure7_data)
    stored: bool = False  # read back from the results folder (stored_study): no pairs


@dataclass
class Figure7Data:
    """Figure 7's inputs (:func:`dapper.plots.fig7_gradcam`): ``images`` uint8 [N, H, W, 3], ``cams``
    ``"<classifier> - <layer>"`` -> float [N, h, w] in [0, 1], ``masks`` bool [N, H, W], one row label
    and per map one note per image, and the caption."""

    images: np.ndarray
    cams: dict
    masks: np.ndarray
    row_labels: list
    notes: dict
    caption: str


def saliency_config(profile: str, dataset: str, data_root=None, network=None, *, augmented: str,
                    classes=None, classifier=None, seed: int = 0, executor: str = "local", ray_address=None,
                    **models) -> StudyConfig:
    """The study's config for the notebook's parameters: one shot level (8, the middle of the learning
    curve, else the profile's top: quick's 4), ``real`` against ``augmented``, every fold (quick: fold 0).
    ``models``: the real-mode model parameters of :func:`dapper.study.config.config_from_params`."""
    common = dict(classes=classes, classifier=classifier, seed=seed, executor=executor, ray_address=ray_address,
                  **models)
    base = config_from_params(profile, dataset, data_root, network, **common)
    shots = 8 if 8 in base.shots else max(base.shots)
    folds = base.fold_ids[:1] if profile == "quick" else base.fold_ids
    return config_from_params(profile, dataset, data_root, network, **common, folds=folds, shots=(shots,),
                              conditions=("real", augmented))


def saliency_settings(config: StudyConfig, condition: str, method: str = "gradcam") -> SaliencySettings:
    """The study's rules for ``config`` (from :func:`saliency_config`) by its profile and dataset."""
    if condition not in config.conditions:
        raise ValueError(f"condition {condition!r} is not among the config's conditions {config.conditions}")
    quick, real_mode = config.profile == "quick", config.dataset != "toycars"
    stages = stage_layers(create_classifier(2, config.classifier, weights=None))
    if len(stages) < 2:
        raise ValueError(f"classifier={config.classifier!r} has no timm feature stages to take Grad-CAM maps at")
    primary = stages[-1]
    # real mode's quick smoke test takes the primary layer's maps only (at 224 px each map costs a
    # classifier's forward and backward pass)
    cam_layers = {primary: None} if quick and real_mode else {primary: None, stages[-2]: stages[-2]}
    return SaliencySettings(
        condition=condition, method=method, shots=max(config.shots), folds=config.fold_ids, primary=primary,
        cam_layers=cam_layers, pointing_tolerance=0.0,
        road_percentiles=(20, 50, 80) if quick else (10, 30, 50, 70, 90),
        # real mode's quick smoke test skips ROAD: at the classifier's 224 px each image costs many imputations
        road_images=16 if not quick else 0 if real_mode else 8,
        # real mode's quick smoke test maps the first 7 test images of each class, not the whole fold
        maps_per_class=7 if quick and real_mode else None)


def describe_plan(config: StudyConfig, settings: SaliencySettings) -> str:
    return (f"scenarios {config.scenarios}, folds {config.fold_ids}, {settings.shots} real images per class, "
            f"'real' vs '{settings.condition}', {settings.method}")


def _test_images(inputs: StudyInputs, scenario: str, fold: int) -> tuple[bool, np.ndarray, np.ndarray]:
    """(views, pool indices, labels of the pool they index): the homogeneous scenario is tested on its
    fixed full-diversity views, every other on the fold's held-out images."""
    d = inputs.data[scenario]
    views = scenario == "homogeneous" and len(d.views_labels) > 0
    idx = np.arange(len(d.views_labels)) if views else inputs.folds[scenario][fold][1]
    return views, idx, d.views_labels if views else d.labels


def _pair_rows(inputs: StudyInputs, settings: SaliencySettings, pair: ClassifierPair, idx: np.ndarray, views: bool,
               masks: np.ndarray) -> list[pd.DataFrame]:
    """One fold's rows, one frame per layer."""
    config, d = inputs.config, inputs.data[pair.scenario]
    images = (d.views_images if views else d.images)[idx]
    labels = (d.views_labels if views else d.labels)[idx]
    keys = [f"views:{i}" if views else d.keys[i] for i in idx]
    frames = []
    for layer, target in settings.cam_layers.items():
        df = compare_classifiers(
            pair.real.cpu(), pair.augmented.cpu(), images, labels, masks, keys=keys, target_layers=target,
            method=settings.method, tolerance=settings.pointing_tolerance,
            road_percentiles=settings.road_percentiles,
            road_subset=settings.road_images if layer == settings.primary else 0, seed=config.seed,
            bf16=config.finetune.bf16)
        df.insert(0, "pool_index", idx)
        for k, v in reversed({"dataset": config.dataset, "scenario": pair.scenario, "fold": pair.fold,
                              "shots_per_class": settings.shots, "seed": pair.seed, "condition": settings.condition,
                              "layer": layer}.items()):
            df.insert(0, k, v)
        frames.append(df)
    return frames


def run_saliency_study(inputs: StudyInputs, settings: SaliencySettings, device=None,
                       progress: bool = False, folder=None) -> SaliencyStudy:
    """Train each (scenario, fold)'s pair (:func:`dapper.study.saliency.train_pair`) and measure both
    classifiers' maps at every layer on the fold's test images (or their first per class,
    ``settings.maps_per_class``), then figure 7's maps. The homogeneous scenario's object masks of its
    fixed views are made once. The study stored in ``folder`` (default ``reports_dir("results")``)
    under this very key (:func:`stored_study`) is read instead."""
    stored = stored_study(inputs.config, inputs.ids, settings, folder)
    if stored is not None:
        return stored
    if inputs.skipped:
        raise RuntimeError(f"no stored saliency study with this key, and the inputs were prepared without synthetic "
                           f"images ({inputs.skipped}): prepare them with images")
    config = inputs.config
    rows, pairs, mask_cache = [], {}, {}
    runs = [(scenario, fold) for scenario in config.scenarios for fold in config.fold_ids]
    for scenario, fold in tqdm(runs, desc="saliency", unit="fold", disable=not progress):
        d = inputs.data[scenario]
        views, idx, pool_labels = _test_images(inputs, scenario, fold)
        pair = train_pair(inputs, scenario, fold, settings.shots, settings.condition, device=device)
        pairs[(scenario, fold)] = pair
        if settings.maps_per_class:
            idx = figure_selection(pool_labels, idx, per_class=settings.maps_per_class)
        if (scenario, views) not in mask_cache or not views:
            mask_cache[(scenario, views)] = object_masks(config, d, idx, views=views)
        rows += _pair_rows(inputs, settings, pair, idx, views, mask_cache[(scenario, views)])
    per_image = pd.concat(rows, ignore_index=True)
    return SaliencyStudy(per_image, pairs, _accuracy(per_image, settings),
                         _figure7(inputs, per_image, pairs, settings))


def _accuracy(per_image: pd.DataFrame, settings: SaliencySettings) -> pd.DataFrame:
    return (per_image[per_image.layer == settings.primary].groupby(["scenario", "fold"])
            [["correct_real", "correct_augmented"]].mean())


def study_key(config: StudyConfig, ids: dict, settings: SaliencySettings) -> str:
    """What a stored study must match: the profile, dataset, scenarios, folds and seed, the study ids of
    ``real`` and the augmented condition (data, models, settings, code) and every saliency setting."""
    what = {"profile": config.profile, "dataset": config.dataset, "scenarios": list(config.scenarios),
            "folds": list(config.fold_ids), "seed": config.seed,
            "ids": {c: ids.get(c) for c in ("real", settings.condition)}, "settings": dataclasses.asdict(settings)}
    return json_digest(what, default=str)


def _file_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _store_paths(folder) -> tuple[Path, Path]:
    folder = Path(reports_dir("results") if folder is None else folder)
    return folder / STORE_FILE, folder / SALIENCY_FILES["per_image"]


def stored_study(config: StudyConfig, ids: dict, settings: SaliencySettings, folder=None) -> SaliencyStudy | None:
    """The study kept in ``folder`` (:func:`write_saliency_outputs`) when its key is this one and its
    per-image file is the one it was kept with; else None. It has no classifier pairs."""
    store, per_path = _store_paths(folder)
    if not store.exists() or not per_path.exists():
        return None
    with np.load(store, allow_pickle=False) as z:
        if str(z["key"]) != study_key(config, ids, settings) or str(z["per_image_sha256"]) != _file_hash(per_path):
            return None
        meta = json.loads(str(z["meta"]))
        cams = {k: z[f"cam_{i}"] for i, k in enumerate(meta["cam_keys"])}
        fig = Figure7Data(z["images"], cams, z["masks"], meta["row_labels"], meta["notes"], meta["caption"])
    per_image = pd.read_csv(per_path)
    return SaliencyStudy(per_image, {}, _accuracy(per_image, settings), fig, stored=True)


def skip_if_stored(config: StudyConfig, settings: SaliencySettings, folder=None):
    """``prepare_inputs``' ``skip_images``: no synthetic image when the study with these ids is stored."""
    def skip(ids: dict) -> str | None:
        if stored_study(config, ids, settings, folder) is None:
            return None
        return (f"the saliency study of these study ids and settings is stored in {STORE_FILE} and "
                f"{SALIENCY_FILES['per_image']}: no synthetic image is needed")
    return skip


def _write_store(study: SaliencyStudy, settings: SaliencySettings, inputs: StudyInputs, folder) -> None:
    store, per_path = _store_paths(folder)
    fig = study.figure7
    keys = list(fig.cams)
    meta = {"cam_keys": keys, "row_labels": list(fig.row_labels), "notes": {k: list(fig.notes[k]) for k in keys},
            "caption": fig.caption}
    arrays = {"key": np.array(study_key(inputs.config, inputs.ids, settings)),
              "per_image_sha256": np.array(_file_hash(per_path)), "meta": np.array(json.dumps(meta)),
              "images": np.asarray(fig.images), "masks": np.asarray(fig.masks),
              **{f"cam_{i}": np.asarray(fig.cams[k]) for i, k in enumerate(keys)}}

    def write(p):
        with open(p, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_save(store, write)


def study_rows(inputs: StudyInputs, settings: SaliencySettings) -> pd.DataFrame | None:
    """The five-fold study's rows (notebook 04) of the same fold, shots and conditions, for comparing
    accuracies; None when the study has no rows with these settings yet."""
    done = read_results(study_id=inputs.study_id)
    if not len(done):
        return None
    mine = done[(done.shots_per_class == settings.shots) & done.condition.isin(["real", settings.condition])
                & done.fold.isin(list(settings.folds))]
    return mine[["scenario", "condition", "fold", "accuracy_fold", "accuracy_views"]]


def saliency_settings_columns(settings: SaliencySettings, inputs: StudyInputs) -> dict:
    """The columns every row of ``saliency.csv`` carries: what the numbers were measured with."""
    config = inputs.config
    return {"dataset": config.dataset, "profile": config.profile, "condition": settings.condition,
            "method": settings.method, "shots_per_class": settings.shots, "folds": " ".join(map(str, config.fold_ids)),
            "seed": config.seed, "pointing_tolerance_px": settings.pointing_tolerance,
            "road_percentiles": " ".join(map(str, settings.road_percentiles)),
            "road_images_per_fold": settings.road_images, "maps_per_class": settings.maps_per_class or "all",
            "study_id": inputs.study_id, "generator": inputs.generator, **model_sources(config)}


def write_saliency_outputs(study: SaliencyStudy, settings: SaliencySettings, inputs: StudyInputs,
                           folder=None) -> pd.DataFrame:
    """Write ``saliency.csv`` (the summary per scenario, layer and measure, with
    :func:`saliency_settings_columns`) and ``saliency_per_image.csv`` to ``folder`` (default
    ``reports_dir("results")``), then keep figure 7's arrays with the study's key (:data:`STORE_FILE`;
    a study read from there is not written again); returns the summary without the settings columns."""
    folder = Path(reports_dir("results") if folder is None else folder)
    summary = saliency_summary(study.per_image, by=("scenario", "layer"))
    table = summary.assign(**saliency_settings_columns(settings, inputs))
    atomic_save(folder / SALIENCY_FILES["summary"], lambda p: table.to_csv(p, index=False))
    if not study.stored:
        atomic_save(folder / SALIENCY_FILES["per_image"], lambda p: study.per_image.to_csv(p, index=False))
        if study.figure7 is not None:
            _write_store(study, settings, inputs, folder)
    return summary


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's :data:`SUMMARY_COLUMNS`, rounded for reading."""
    return summary[[c for c in SUMMARY_COLUMNS if c in summary.columns]].round(4)


def saliency_text(summary: pd.DataFrame, study: SaliencyStudy, settings: SaliencySettings) -> str:
    """Markdown read off the summary, one section per layer, then the accuracy on the mapped images."""
    text = []
    for layer in settings.cam_layers:
        text.append(f"#### Target layer `{layer}`" + (" (primary)" if layer == settings.primary else "") + "\n\n"
                    + describe_summary(summary[summary.layer == layer]))
    acc_line = ", ".join(f"{sc} fold {f}: real-only {r.correct_real:.2f}, augmented {r.correct_augmented:.2f}"
                         for (sc, f), r in study.accuracy.iterrows())
    n_folds = len(settings.folds)
    text.append(f"Accuracy on these images ({acc_line}). The per-image tests treat the test images as the sample and "
                f"the {n_folds} trained pair(s) of classifiers as fixed; "
                + ("the fold-level columns of `saliency.csv` repeat the tests over folds, the replications of "
                   "training." if n_folds > 1
                   else "with one fold there is no test over training runs (profile 'full' has five)."))
    return "\n\n".join(text)


def figure7_data(inputs: StudyInputs, study: SaliencyStudy, settings: SaliencySettings) -> Figure7Data:
    """Figure 7 by its rule, fixed before any map is seen: the first scenario, its first fold, the
    first ``settings.fig_per_class`` test images of every class in fold order, classes in label order;
    maps of the true class by both classifiers at every layer; under each map whether the classifier
    is right and the map's energy share on the object (read from ``study.per_image``). The study's own
    (made with its pairs, or stored with it) when it has them."""
    if study.figure7 is not None:
        return study.figure7
    return _figure7(inputs, study.per_image, study.pairs, settings)


def _figure7(inputs: StudyInputs, per_image: pd.DataFrame, pairs: dict, settings: SaliencySettings) -> Figure7Data:
    config = inputs.config
    scenario, fold = config.scenarios[0], config.fold_ids[0]
    d, pair = inputs.data[scenario], pairs[(scenario, fold)]
    views, test_idx, labels_all = _test_images(inputs, scenario, fold)
    chosen = figure_selection(labels_all, test_idx, per_class=settings.fig_per_class)
    images = (d.views_images if views else d.images)[chosen]
    masks = object_masks(config, d, chosen, views=views)
    cams, notes = {}, {}
    for layer, target in settings.cam_layers.items():
        part = per_image[(per_image.scenario == scenario) & (per_image.fold == fold) & (per_image.layer == layer)]
        part = part.set_index("pool_index").loc[chosen]
        for name, model, label in (("real", pair.real, "real-only"), ("augmented", pair.augmented, "augmented")):
            key = f"{label} - {layer}"
            cams[key] = cam_maps(model.cpu(), images, target, settings.method, targets=labels_all[chosen])
            notes[key] = [("\u2713" if ok else "\u2717") + (f" {e:.2f}" if np.isfinite(e) else " no map")
                          for ok, e in zip(part[f"correct_{name}"], part[f"energy_{name}"])]
    caption = (f"Figure 7. {settings.method} maps of the true class, real-only vs '{settings.condition}' classifier "
               f"({config.dataset}, {scenario} scenario, fold {fold}, {settings.shots} real images per class, seed "
               f"{pair.seed}). Images: the first test image of each class in fold order (no selection by result). "
               f"White outline: the object mask. Under each map: \u2713/\u2717 the classifier's prediction is "
               f"right/wrong, then the map's energy share on the object ('no map': no positive evidence for the true "
               f"class at that layer).")
    return Figure7Data(images, cams, masks, [d.class_names[c] for c in labels_all[chosen]], notes, caption)
