"""What every run of the study shares, prepared once (:func:`prepare_inputs`): each scenario's images
and folds, projections, the pose direction, the synthetic images of every fold's training images,
the renderer's and the pivotally tuned ones, and the study ids."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from dapper import augment, instruments
from dapper.augment import METHODS, SyntheticSet, augment_images, check_no_leakage
from dapper.directions import apply_direction as default_apply_direction
from dapper.directions import load_or_fit_pose_direction
from dapper.executor import ProcessExecutor
from dapper.inversion.perceptual import load_perceptual
from dapper.inversion.projection import project_images
from dapper.judges.annotators import load_pose_annotator
from dapper.study.ceiling import RenderedSet, RendererSettings, pool_items, render_ceiling_set
from dapper.study.config import (
    CONDITION_METHOD,
    StudyConfig,
    ceiling_condition,
    condition_compose,
    condition_tuned,
    pivotal_settings,
    projection_settings,
    study_device,
    study_executor,
)
from dapper.study.dataset_images import source_generator
from dapper.study.folds import ScenarioData, load_scenario, make_folds, real_subset
from dapper.study.ids import condition_ids
from dapper.study.tuned import class_rows, tune_in_parallel, tuned_synthetic
from dapper.utils import weights_hash


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
    # why the synthetic images (projections, edits, tuned and rendered sets) were not made, when
    # prepare_inputs' ``skip_images`` said nothing needs them (None: made as asked)
    skipped: str | None = None

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


def pose_instruments(config: StudyConfig, device="cpu") -> tuple:
    """(vehicle detector, pose estimator) the config names (:mod:`dapper.instruments`); None for
    each left unset (the embedded world's then, loaded where needed)."""
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

    return load_pose_annotator(device=device)


def _project_chunk(G, args) -> int:
    images, masks, settings = args
    project_images(G, images, masks=masks, settings=settings, cache=True, progress=False,
                   on_canvas=masks is not None)
    return len(images)


def project_in_parallel(G, images: np.ndarray, settings, workers: int, masks: np.ndarray | None = None) -> None:
    """Fill the projection cache using ``workers`` single-thread processes (one process with two
    threads spends about twice the CPU time on these small batches). ``masks``: the photos'
    pixels of images already on the generator's canvas (see :func:`prepare_inputs`)."""
    if workers <= 1 or len(images) < 2 * workers:
        return

    parts = np.array_split(np.arange(len(images)), workers)
    jobs = [(np.asarray(images)[c], None if masks is None else np.asarray(masks)[c], settings)
            for c in parts if len(c)]
    for _ in ProcessExecutor(len(jobs), threads=1).map(_project_chunk, jobs, shared=G):
        pass


def prepare_inputs(config: StudyConfig, progress: bool = True, G=None, direction=None, project=None,
                   apply_direction=None, skip_images=None) -> StudyInputs:
    """Render/load the pools, split folds, project the training images the generative conditions
    use (cached by image hash) and make their synthetic images (cached per image), checking for
    every fold that no synthetic image derives from a test image.

    ``G``, ``direction``, ``project`` (``project(G, images[, masks=]) -> ws``; masks given for real photos on
    the generator's canvas) and ``apply_direction`` stand
    in for the shipped generator, the fitted pose direction, :func:`dapper.inversion.projection.project_images`
    and :func:`dapper.directions.apply_direction` (tests use small fakes).

    ``skip_images``: ``skip_images(ids) -> reason or None``, asked once the study ids are known; a reason
    leaves every synthetic image unmade (``StudyInputs.skipped`` says why): what a report over finished
    rows does (:func:`dapper.study.experiments.study_inputs`). Runs then refuse these inputs.
    """
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
        warnings.warn(f"the tuned conditions run at tuned_shots {config.tuned_shots}, none of the study's shots "
                      f"{config.shots}: they make no rows", stacklevel=2)
    if not tuned_shots:
        tuned_methods = []
    composes = sorted({condition_compose(c) for c in shared})
    need_rotation = any("rotate" in m for m in methods + tuned_methods)
    device = study_device(config)
    if G is None and (methods or tuned_methods):
        G, _ = source_generator(config.network, device)
    g_hash = weights_hash(G) if G is not None else "none"
    d_id = ""
    pose_annotator = None
    if need_rotation:
        detector, pose_annotator = pose_instruments(config, device=next(G.parameters()).device)
        if direction is None:
            direction = load_or_fit_pose_direction(G, config.direction_profile or config.profile,
                                                   detector=detector, annotator=pose_annotator, dataset=config.dataset)
        if apply_direction is None:
            apply_direction = default_apply_direction
        d_id = augment.direction_id(direction, apply_direction, (1, G.num_ws, G.w_dim))
        if config.augment.pose_check or config.augment.response == "image":
            pose_annotator = checking_annotator(pose_annotator, next(G.parameters()).device)
            d_id += "-" + augment.annotator_id(pose_annotator)
    clock.stop("generator+direction")
    ids = condition_ids(config, g_hash, d_id)
    skipped = skip_images(ids) if skip_images is not None else None
    if skipped:
        return StudyInputs(config, ids, g_hash, data, folds, {}, timings, skipped=skipped)

    synthetic, tuned = {}, {}
    if methods or tuned_methods:
        executor = study_executor(config)
        if project is None:
            settings = projection_settings(config)

            def project(G, images, masks=None):
                # masks: real photos already letterboxed onto the generator's canvas, bars masked
                if executor.name == "local" and device.type == "cpu":
                    # CPU processes fill the cache; one GPU does better alone
                    project_in_parallel(G, images, settings, config.workers, masks)
                return project_images(G, images, masks=masks, settings=settings, cache=True, progress=progress,
                                      device=device, executor=executor, on_canvas=masks is not None).ws

        top = max(config.shots)
        for sc, d in data.items():
            used = {f: real_subset(d.labels, folds[sc][f][0], top, f, config.seed) for f in config.fold_ids}
            union = np.unique(np.concatenate(list(used.values())))
            clock.start()
            on_canvas = {} if d.masks is None else {"masks": d.masks[union]}
            ws_union = torch.as_tensor(np.asarray(project(G, d.images[union], **on_canvas))).float()
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
                        + (() if d.masks is None else (d.masks[idx[rows]],))
                        for idx in runs.values() for rows in class_rows(d.labels, idx)]
                clock.start()
                tune_in_parallel(config, G, jobs, config.workers)
                clock.stop("pivotal tuning")
            perceptual = None
            if tuned_shots and pivotal_settings(config).perceptual_weight > 0:
                perceptual = load_perceptual(config.vgg16_weights, config.lpips_weights, device=device)
            bar = None
            if progress and tuned_shots:
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
    made = set()
    for f in config.fold_ids:
        idx = used[f] if used is not None else real_subset(d.labels, folds[f][0], max(config.shots), f, config.seed)
        test_keys = [d.keys[i] for i in folds[f][1]]
        check_no_leakage([d.keys[i] for i in idx], test_keys, fold=f)
        new = [int(i) for i in idx if d.keys[i] not in made]
        if new:
            made.update(d.keys[i] for i in new)
            yield f, new, test_keys
