"""The tuned conditions' images: for each run and class, a copy of the generator pivotally tuned on
that class's training shots (never a test image) draws the edits (:func:`tuned_synthetic`); the
tunings are cached and can be filled by parallel processes first."""

from __future__ import annotations

import copy

import numpy as np

from dapper.augment import SyntheticSet, augment_images, check_no_leakage
from dapper.executor import ProcessExecutor
from dapper.inversion.latents import w_statistics
from dapper.inversion.perceptual import load_perceptual
from dapper.inversion.pivotal import PivotalSettings, tune_generator_cached
from dapper.study.config import StudyConfig, pivotal_settings
from dapper.study.folds import ScenarioData


def _tune_chunk(shared, jobs) -> int:
    G, settings = shared
    settings = PivotalSettings(**settings)
    perceptual = None
    if settings.perceptual_weight > 0:
        perceptual = load_perceptual(settings.vgg16_weights, settings.lpips_weights)
    for images, ws, *masks in jobs:  # (images, ws) or (images, ws, masks of the photos on the canvas)
        tune_generator_cached(G, images, ws, settings, perceptual=perceptual, masks=masks[0] if masks else None)
    return len(jobs)


def tune_in_parallel(config: StudyConfig, G, jobs: list, workers: int) -> None:
    """Fill the pivotal tuning cache using ``workers`` single-thread processes (a tuning on a
    class's few shots keeps two threads of one process only partly busy)."""
    if workers <= 1 or len(jobs) < 2 * workers:
        return

    chunks = [jobs[i::workers] for i in range(workers)]
    G = copy.deepcopy(G).cpu()  # the caller's stays where it is
    shared = (G, pivotal_settings(config).to_dict())
    for _ in ProcessExecutor(workers, threads=1).map(_tune_chunk, chunks, shared=shared):
        pass


def class_rows(labels: np.ndarray, idx: np.ndarray) -> list[np.ndarray]:
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
    idx = np.asarray(idx)
    check_no_leakage([d.keys[i] for i in idx], test_keys, fold=fold)
    settings = pivotal_settings(config)
    if perceptual is None and settings.perceptual_weight > 0:
        perceptual = load_perceptual(config.vgg16_weights, config.lpips_weights, device=next(G.parameters()).device)
    aug = config.augment
    # the tuned copies keep G's mapping, so G's spread of W is theirs
    w_std = w_statistics(G, aug.w_samples, seed=aug.seed).std
    parts = []
    for rows in class_rows(d.labels, idx):
        masks = None if d.masks is None else d.masks[idx[rows]]  # real photos: the bars never count
        G_c, _ = tune_generator_cached(G, d.images[idx[rows]], ws[rows], settings, perceptual=perceptual, masks=masks)
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
