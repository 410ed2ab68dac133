"""Where the classifiers look: Grad-CAM maps and measures of them, real-only against augmented.

The paper shows one pair of Grad-CAM maps and says the augmented classifier attends to the car
rather than the ground. This module turns that into numbers, per test image and per classifier:

``energy``
    share of the map's mass inside the object mask: ``sum(cam * mask) / sum(cam)``, in [0, 1].
    A map spread evenly over the picture scores the mask's area fraction (``mask_fraction``,
    reported beside it as the chance level).
``pointing``
    pointing game: 1 if the map's peak lies on the object (within ``tolerance`` pixels of a mask
    pixel), else 0. A peak thrown at random hits with probability ``mask_fraction`` (tolerance 0).
``road_morf``, ``road_lerf``, ``road``
    ROAD (Rong et al. 2022, ``pytorch_grad_cam.metrics.road``): change of the softmax probability
    of the explained class when the most (``morf``, lower is better) or least (``lerf``, higher is
    better) relevant pixels are removed by noisy linear imputation, averaged over removal
    levels; ``road = (lerf - morf) / 2`` (higher: the map is more faithful to the classifier).
    ROAD measures how faithful a map is to its model, not whether the model looks at the car.

Maps are pytorch-grad-cam's: ReLU of the weighted activations of the target layer, min-max
normalised per image to [0, 1] and resized (bilinear) to the classifier's input size.

    cams = cam_maps(model, images)                         # [N, H, W] in [0, 1]
    per_image = compare_classifiers(model_real, model_aug, images, labels, masks)
    summary = saliency_summary(per_image)                  # 95% intervals, paired tests
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import distance_transform_edt
from scipy.stats import binomtest

from dapper.classify import autocast, data_config, normalise, prepare_images
from dapper.data import toycars
from dapper.data.stanford_cars import DEFAULT_CLASSES, load_pool
from dapper.study.config import content_size
from dapper.study.folds import RunSpec, run_seed
from dapper.study.runs import fit_run, prepared_config
from dapper.study.stats import Interval, holm, mean_interval, paired_test

__all__ = [
    "CAM_METHODS", "METRICS", "default_target_layer", "stage_layers", "resolve_target_layers", "model_input",
    "prepare_masks",
    "cam_maps", "energy_share", "pointing_points", "pointing_game", "road_scores", "classifier_metrics",
    "compare_classifiers", "saliency_summary", "figure_selection", "ClassifierPair", "train_pair",
    "object_masks", "describe_summary",
]

METRICS = ("energy", "pointing", "road_morf", "road_lerf", "road")
"""Per-image measures, in the order tables list them."""

DEFAULT_ROAD_PERCENTILES = (10, 30, 50, 70, 90)
"""ROAD removal levels as pytorch-grad-cam's percentiles: level ``p`` removes the pixels at or
above the map's ``p``-th percentile (most relevant first), i.e. the top ``100 - p`` percent."""


def _cam_classes() -> dict:
    import pytorch_grad_cam as pgc

    return {
        "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "hirescam": pgc.HiResCAM,
        "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
        "eigengradcam": pgc.EigenGradCAM, "scorecam": pgc.ScoreCAM, "ablationcam": pgc.AblationCAM,
    }


CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam",
               "scorecam", "ablationcam")


# ---------------------------------------------------------------------------------------------
# Maps
# ---------------------------------------------------------------------------------------------


def default_target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last convolutional stage: timm's last ``feature_info`` module (``layer4`` of a
    ResNet/ResNeXt), else the model's last ``Conv2d``.

    On the embedded 64 px ResNeXt that stage is 2 x 2 cells, so its maps locate at quadrant
    level; ``"layer3"`` (4 x 4) is the finer choice there.
    """
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.info[-1]
        return model.get_submodule(last["module"])
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise ValueError("the model has no Conv2d layer; pass target_layers")
    return convs[-1]


def stage_layers(model: torch.nn.Module) -> list[str]:
    """Module names of the model's feature stages (timm's ``feature_info``), finest first: for a
    ResNet/ResNeXt ``[..., "layer3", "layer4"]``. Empty for a model without ``feature_info``."""
    info = getattr(model, "feature_info", None)
    if not info:
        return []
    return [f["module"] for f in (info if isinstance(info, list) else info.info)]


def resolve_target_layers(model: torch.nn.Module, target_layers=None) -> list[torch.nn.Module]:
    """``None``: [:func:`default_target_layer`]; a module name (``"layer3"``, ``"layer4.0.conv3"``) or a
    list of names and/or modules: those layers of ``model``."""
    if target_layers is None:
        return [default_target_layer(model)]
    if isinstance(target_layers, (str, torch.nn.Module)):
        target_layers = [target_layers]
    return [model.get_submodule(t) if isinstance(t, str) else t for t in target_layers]


def model_input(model: torch.nn.Module, images, config: dict | None = None) -> torch.Tensor:
    """The classifier's input tensor, float [N, 3, h, w], on the classifier's device.

    images: uint8 ``[N, H, W, 3]`` (numpy, as datasets give them) or uint8 ``[N, 3, h, w]``
    (from :func:`dapper.classify.prepare_images`) are resized/cropped by timm's eval transform
    and normalised with the model's mean/std (``config``: its timm data config); a float tensor
    is taken to be in the classifier's input format already (the embedded model's is [-1, 1]).
    """
    device = next(model.parameters()).device
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        if images.ndim != 4:
            raise ValueError(f"expected images [N, H, W, 3] or [N, 3, H, W], got {tuple(images.shape)}")
        return images.to(device)
    config = config or data_config(model)
    x = images
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"expected uint8 images [N, H, W, 3], got {x.dtype} {x.shape}")
        x = prepare_images(x, config) if x.shape[-1] == 3 else torch.from_numpy(x)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected uint8 images [N, 3, H, W], got {x.dtype} {tuple(x.shape)}")
    return normalise(x, config).to(device)


def prepare_masks(masks: np.ndarray, config: dict) -> np.ndarray:
    """bool [N, H, W] masks -> bool [N, h, w] through the same eval transform as the images
    (:func:`dapper.classify.prepare_images`), so that masks and maps stay aligned."""
    masks = np.asarray(masks, bool)
    as_img = np.repeat((masks * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return (prepare_images(as_img, config)[:, 0] >= 128).numpy()


def _targets(targets, n: int, softmax: bool = False) -> list | None:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget

    if targets is None:
        return None
    targets = list(targets) if not isinstance(targets, (np.ndarray, torch.Tensor)) else targets.tolist()
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} images")
    if all(callable(t) for t in targets):
        return targets
    kind = ClassifierOutputSoftmaxTarget if softmax else ClassifierOutputTarget
    return [kind(int(t)) for t in targets]


def cam_maps(model: torch.nn.Module, images, target_layers=None, method: str = "gradcam", targets=None,
             batch_size: int = 64, config: dict | None = None, **cam_kwargs) -> np.ndarray:
    """Class activation maps, float32 ``[N, h, w]`` in [0, 1] at the classifier's input size.

    images: see :func:`model_input` (uint8 images, or float NCHW in the classifier's input format).
    target_layers: see :func:`resolve_target_layers` (default: the last convolutional stage).
    method: one of :data:`CAM_METHODS` (``"gradcam"``, ``"gradcam++"``, ``"scorecam"``...).
    targets: ``None`` (each image's predicted class), class indices ``[N]`` (e.g. the true
    labels) or pytorch-grad-cam target callables. A map that is zero everywhere (no positive
    evidence for the class at that layer) stays zero.
    """
    classes = _cam_classes()
    if method not in classes:
        raise ValueError(f"unknown CAM method {method!r}; choose from {', '.join(CAM_METHODS)}")
    x = model_input(model, images, config)
    layers = resolve_target_layers(model, target_layers)
    targets = _targets(targets, len(x))
    was_training = model.training
    cam = classes[method](model=model, target_layers=layers, **cam_kwargs)
    out = []
    try:
        with torch.enable_grad():
            for a in range(0, len(x), batch_size):
                t = None if targets is None else targets[a:a + batch_size]
                out.append(np.asarray(cam(input_tensor=x[a:a + batch_size], targets=t), np.float32))
    finally:
        # Always unhook: the CAM object's context manager would also swallow IndexErrors.
        cam.activations_and_grads.release()
        model.train(was_training)
    if not out:
        return np.zeros((0, *x.shape[-2:]), np.float32)
    return np.clip(np.concatenate(out), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Measures of one map against one object mask
# ---------------------------------------------------------------------------------------------


def _check(cams: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cams = np.asarray(cams, np.float64)
    masks = np.asarray(masks, bool)
    if cams.ndim == 2:
        cams, masks = cams[None], masks[None]
    if cams.shape != masks.shape or cams.ndim != 3:
        raise ValueError(f"maps {cams.shape} and masks {masks.shape} must both be [N, H, W]")
    return cams, masks


def energy_share(cams: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's mass inside its mask, float64 ``[N]`` in [0, 1]; NaN for an all-zero map.

    cams: float ``[N, H, W]`` >= 0; masks: bool ``[N, H, W]`` (True on the object).
    """
    cams, masks = _check(cams, masks)
    total = cams.sum((1, 2))
    inside = (cams * masks).sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def pointing_points(cams: np.ndarray) -> np.ndarray:
    """Each map's peak as int ``[N, 2]`` (row, col); ``-1`` for an all-zero map.

    A flat top is resolved to the maximal pixel nearest the map's centre of mass, not to the
    first in memory order. Flat tops are common: bilinear upsampling of a coarse map (2 x 2 cells
    on the 64 px embedded model) repeats each border cell over a whole corner block, and the
    block's inner corner, next to the cell's centre, is where the map's mass points.
    """
    cams = np.asarray(cams, np.float64)
    if cams.ndim == 2:
        cams = cams[None]
    out = np.full((len(cams), 2), -1, np.int64)
    grid_r, grid_c = np.indices(cams.shape[1:])
    for i, c in enumerate(cams):
        top = c.max()
        if not top > 0:
            continue
        rows, cols = np.nonzero(c >= top - 1e-6 * top)
        cy, cx = (c * grid_r).sum() / c.sum(), (c * grid_c).sum() / c.sum()
        j = int(np.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
        out[i] = rows[j], cols[j]
    return out


def pointing_game(cams: np.ndarray, masks: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Pointing-game hits, float64 ``[N]`` of 0/1 (NaN for an all-zero map or an empty mask).

    Hit: the map's peak (:func:`pointing_points`) lies within ``tolerance`` pixels (Euclidean) of
    a mask pixel; ``tolerance=0`` asks for the peak to be on the object itself.
    """
    cams, masks = _check(cams, masks)
    points = pointing_points(cams)
    out = np.full(len(cams), np.nan)
    for i, (m, (r, c)) in enumerate(zip(masks, points)):
        if r < 0 or not m.any():
            continue
        if tolerance <= 0:
            out[i] = float(m[r, c])
        else:
            out[i] = float(distance_transform_edt(~m)[r, c] <= tolerance)
    return out


def road_scores(model: torch.nn.Module, images, cams: np.ndarray, targets,
                percentiles: Sequence[float] = DEFAULT_ROAD_PERCENTILES, seed: int = 0,
                batch_size: int = 32, config: dict | None = None) -> dict[str, np.ndarray]:
    """ROAD of each map for ``model``: ``{"road_morf", "road_lerf", "road"}``, float64 ``[N]`` each.

    Scores are changes of the softmax probability of ``targets`` (class indices ``[N]``) after
    imputing the removed pixels, averaged over ``percentiles`` (see
    :data:`DEFAULT_ROAD_PERCENTILES`); ``road = (road_lerf - road_morf) / 2``. The imputation's
    noise is drawn from torch's generator seeded with ``seed`` (restored afterwards).
    cams: float ``[N, h, w]`` in [0, 1] at the classifier's input size.
    """
    from pytorch_grad_cam.metrics.road import ROADLeastRelevantFirstAverage, ROADMostRelevantFirstAverage

    x = model_input(model, images, config)
    cams = np.asarray(cams, np.float32)
    if cams.shape != (len(x), *x.shape[-2:]):
        raise ValueError(f"maps {cams.shape} do not match the model's input {tuple(x.shape)}")
    tg = _targets(targets, len(x), softmax=True)
    if tg is None:
        raise ValueError("road_scores needs targets (the class each map explains)")
    pct = [float(p) for p in percentiles]
    morf_avg, lerf_avg = ROADMostRelevantFirstAverage(pct), ROADLeastRelevantFirstAverage(pct)
    was_training = model.training
    model.eval()
    morf, lerf = [], []
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(seed))
            for a in range(0, len(x), batch_size):
                sl = slice(a, a + batch_size)
                morf.append(morf_avg(x[sl], cams[sl], tg[sl], model))
                lerf.append(lerf_avg(x[sl], cams[sl], tg[sl], model))
    finally:
        model.train(was_training)
    if not morf:
        empty = np.zeros(0)
        return {"road_morf": empty, "road_lerf": empty, "road": empty}
    morf_v = np.concatenate(morf).astype(np.float64)
    lerf_v = np.concatenate(lerf).astype(np.float64)
    return {"road_morf": morf_v, "road_lerf": lerf_v, "road": (lerf_v - morf_v) / 2}


# ---------------------------------------------------------------------------------------------
# One classifier, then two on the same images
# ---------------------------------------------------------------------------------------------


def classifier_metrics(model: torch.nn.Module, images, labels, masks, target_layers=None, method: str = "gradcam",
                       tolerance: float = 0.0, road_percentiles: Sequence[float] = DEFAULT_ROAD_PERCENTILES,
                       road_subset=None, seed: int = 0, config: dict | None = None,
                       return_cams: bool = False, bf16: bool = False):
    """Per-image measures of one classifier's maps of the true class. ``bf16``: its predictions
    under bf16 autocast, as the study evaluates it (``FineTuneSettings.bf16``); maps in fp32.

    images: uint8 ``[N, H, W, 3]`` (or see :func:`model_input`); labels: int ``[N]``; masks: bool
    ``[N, H, W]`` at the images' size (moved through the same transform as the images when they
    are uint8 ``[N, H, W, 3]``). road_subset: ``None`` (ROAD for every image), an int (ROAD for
    the first that many) or indices; other images get NaN ROAD (ROAD's imputation is the slow part).
    Returns a data frame with ``pred``, ``correct``, ``p_true`` (softmax) and :data:`METRICS`
    columns (and the maps float32 ``[N, h, w]`` when ``return_cams``).
    """
    labels = np.asarray(labels, np.int64)
    masks = np.asarray(masks, bool)
    n = len(labels)
    x = model_input(model, images, config)
    if not (isinstance(images, torch.Tensor) and images.is_floating_point()) and masks.shape[-2:] != x.shape[-2:]:
        masks = prepare_masks(masks, config or data_config(model))
    if masks.shape != (n, *x.shape[-2:]):
        raise ValueError(f"masks {masks.shape} do not match the model's input {tuple(x.shape)}")
    cams = cam_maps(model, x, target_layers, method, targets=labels)
    with torch.no_grad(), autocast(x.device, bf16):
        model.eval()
        logits = torch.cat([model(x[a:a + 256]).float().cpu() for a in range(0, n, 256)]) if n else torch.zeros(0, 1)
    prob = torch.softmax(logits, 1)
    pred = logits.argmax(1).numpy()
    df = pd.DataFrame({
        "pred": pred, "correct": (pred == labels).astype(float),
        "p_true": prob[torch.arange(n), torch.as_tensor(labels)].numpy().astype(np.float64) if n else np.zeros(0),
        "energy": energy_share(cams, masks), "pointing": pointing_game(cams, masks, tolerance),
    })
    for k in ("road_morf", "road_lerf", "road"):
        df[k] = np.nan
    if road_subset is None:
        idx = np.arange(n)
    elif isinstance(road_subset, (int, np.integer)):
        idx = np.arange(min(int(road_subset), n))
    else:
        idx = np.asarray(road_subset, np.int64)
    if len(idx):
        r = road_scores(model, x[torch.as_tensor(idx)], cams[idx], labels[idx], road_percentiles, seed)
        for k, v in r.items():
            df.loc[idx, k] = v
    return (df, cams) if return_cams else df


def compare_classifiers(model_real: torch.nn.Module, model_aug: torch.nn.Module, images, labels, masks,
                        names: tuple[str, str] = ("real", "augmented"), keys: Sequence[str] | None = None,
                        **kwargs):
    """Both classifiers' measures on the same images, one row per image (wide).

    Columns: ``image`` (``keys`` or the position), ``label``, ``mask_fraction`` (the object's
    share of the picture: the chance level of ``energy`` and of ``pointing`` at tolerance 0), then
    ``<measure>_<name>`` for each classifier and each of ``pred, correct, p_true`` and
    :data:`METRICS`. Keyword arguments go to :func:`classifier_metrics` (``target_layers`` as a
    name such as ``"layer3"`` applies to both models; ROAD uses the same ``seed`` for both, so
    both see the same imputation noise).
    """
    labels = np.asarray(labels, np.int64)
    masks = np.asarray(masks, bool)
    per = {}
    for name, model in zip(names, (model_real, model_aug)):
        per[name] = classifier_metrics(model, images, labels, masks, **kwargs)
    # The chance level, on the grid the maps live on.
    float_input = isinstance(images, torch.Tensor) and images.is_floating_point()
    size = tuple(data_config(model_real)["input_size"][1:]) if not float_input else masks.shape[-2:]
    grid = masks if masks.shape[-2:] == size else prepare_masks(masks, data_config(model_real))
    out = pd.DataFrame({"image": list(keys) if keys is not None else np.arange(len(labels)), "label": labels,
                        "mask_fraction": grid.reshape(len(labels), -1).mean(1) if len(labels) else np.zeros(0)})
    for name in names:
        for col in per[name].columns:
            out[f"{col}_{name}"] = per[name][col].to_numpy()
    return out


# ---------------------------------------------------------------------------------------------
# Statistics: intervals and paired tests, per image and per fold
# ---------------------------------------------------------------------------------------------


def _mean_interval(values: np.ndarray, confidence: float):
    """Student-t interval of the mean; Wilson's score interval for 0/1 values (a hit rate),
    which stays inside [0, 1] and does not collapse at 0 or 1 hits."""
    v = np.asarray(values, np.float64)
    if len(v) == 0 or not np.isin(v, (0.0, 1.0)).all():
        return mean_interval(v, confidence)

    n = len(v)
    ci = binomtest(int(v.sum()), n).proportion_ci(confidence, method="wilson")
    return Interval(float(v.mean()), float(ci.low), float(ci.high), n)


def saliency_summary(per_image, names: tuple[str, str] = ("real", "augmented"), confidence: float = 0.95,
                     alpha: float = 0.05, metrics: Sequence[str] = METRICS, by: Sequence[str] = ("scenario",)):
    """One row per (group, measure): both classifiers' means with 95% intervals (Student t;
    Wilson for the pointing game's 0/1 hits), the paired
    difference ``augmented - real`` with its interval, paired t and Wilcoxon signed-rank p-values,
    and whether the difference is significant.

    per_image: rows from :func:`compare_classifiers` (several folds stacked; a ``fold`` column is
    used when present). The unit is the test image: an image measured in several folds (a fixed
    extra test set) is averaged over them first, so n counts distinct images. ``significant``:
    both the paired t-test and the Wilcoxon test reject at ``alpha`` after Holm's correction over
    the measures of the group. Images with a NaN in either classifier are dropped pairwise;
    ``n_missing_<name>`` counts them (an all-zero map: no positive evidence for the true class at
    that layer; or no ROAD measured). Fold-level columns (``*_folds``) repeat the test on per-fold
    means (the classifiers are trained once per fold, so folds are the replications of training;
    with five folds the smallest Wilcoxon p is 0.0625).
    """
    a, b = names
    df = per_image.copy()
    by = [c for c in by if c in df.columns]
    groups = df.groupby(by, sort=False) if by else [((), df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        unit = g.groupby("image", sort=False).mean(numeric_only=True) if "image" in g.columns else g
        part = []
        for m in metrics:
            ca, cb = f"{m}_{a}", f"{m}_{b}"
            if ca not in unit.columns or cb not in unit.columns:
                continue
            fa, fb = np.isfinite(unit[ca].to_numpy(float)), np.isfinite(unit[cb].to_numpy(float))
            keep = fa & fb
            if not keep.any():
                continue  # not measured in this group (e.g. ROAD at a secondary layer)
            va, vb = unit[ca].to_numpy(float)[keep], unit[cb].to_numpy(float)[keep]
            ia, ib = _mean_interval(va, confidence), _mean_interval(vb, confidence)
            t = paired_test(va, vb, confidence)
            row = dict(zip(by, key))
            row.update({
                "measure": m, "n_images": int(keep.sum()), f"n_missing_{a}": int((~fa).sum()),
                f"n_missing_{b}": int((~fb).sum()),
                f"mean_{a}": ia.mean, f"ci_low_{a}": ia.low, f"ci_high_{a}": ia.high,
                f"mean_{b}": ib.mean, f"ci_low_{b}": ib.low, f"ci_high_{b}": ib.high,
                "diff": t.diff.mean, "diff_ci_low": t.diff.low, "diff_ci_high": t.diff.high,
                "p_t": t.p_t, "p_wilcoxon": t.p_wilcoxon, "wins": t.wins,
            })
            if m in ("energy", "pointing") and "mask_fraction" in unit.columns:
                row["chance"] = float(unit["mask_fraction"].to_numpy(float)[keep].mean()) if keep.any() else math.nan
            if "fold" in g.columns:
                fm = g.groupby("fold")[[ca, cb]].mean()
                tf = paired_test(fm[ca].to_numpy(float), fm[cb].to_numpy(float), confidence)
                row.update({"n_folds": tf.n, "diff_folds": tf.diff.mean, "diff_ci_low_folds": tf.diff.low,
                            "diff_ci_high_folds": tf.diff.high, "p_t_folds": tf.p_t,
                            "p_wilcoxon_folds": tf.p_wilcoxon})
            part.append(row)
        if part:
            p_t = holm([r["p_t"] for r in part])
            p_w = holm([r["p_wilcoxon"] for r in part])
            for r, pt, pw in zip(part, p_t, p_w):
                r["p_t_holm"], r["p_wilcoxon_holm"] = pt, pw
                r["significant"] = bool(np.isfinite(pt) and np.isfinite(pw) and pt < alpha and pw < alpha)
            rows.extend(part)
    return pd.DataFrame(rows)


_MEASURE_WORDS = {
    "energy": "share of Grad-CAM energy inside the vehicle",
    "pointing": "pointing-game hit rate",
    "road_morf": "ROAD, most relevant removed first (lower: more faithful)",
    "road_lerf": "ROAD, least relevant removed first (higher: more faithful)",
    "road": "ROAD combined (higher: more faithful)",
}


def describe_summary(summary, names: tuple[str, str] = ("real", "augmented"),
                     labels: tuple[str, str] = ("real-only", "augmented")) -> str:
    """Markdown sentences read off a :func:`saliency_summary` table (no claim that is not in it)."""
    a, b = names
    lines = []
    scen_col = "scenario" if "scenario" in summary.columns else None
    for scen, g in (summary.groupby(scen_col, sort=False) if scen_col else [(None, summary)]):
        head = f"**{scen}** scenario" if scen is not None else "**All images**"
        n = int(g["n_images"].max()) if len(g) else 0
        lines.append(f"{head} ({n} test images):")
        for r in g.itertuples(index=False):
            r = r._asdict()
            verdict = "significant" if r["significant"] else "not significant"
            chance = ""
            if np.isfinite(r.get("chance", np.nan)):
                what = "a uniform map would score" if r["measure"] == "energy" else "a peak put at random would hit"
                chance = f"; {what} {r['chance']:.3f}"
            fold = ""
            if "p_wilcoxon_folds" in r and r.get("n_folds", 0) >= 2:
                fold = (f"; over {r['n_folds']} folds the mean difference is {r['diff_folds']:+.3f} "
                        f"(Wilcoxon p = {r['p_wilcoxon_folds']:.3g})")
            lines.append(
                f"- {_MEASURE_WORDS.get(r['measure'], r['measure'])}: {labels[0]} {r[f'mean_{a}']:.3f} "
                f"[{r[f'ci_low_{a}']:.3f}, {r[f'ci_high_{a}']:.3f}], {labels[1]} {r[f'mean_{b}']:.3f} "
                f"[{r[f'ci_low_{b}']:.3f}, {r[f'ci_high_{b}']:.3f}]{chance}; difference {r['diff']:+.3f} "
                f"[{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}] (n = {r['n_images']}, paired t p = "
                f"{r['p_t']:.3g}, Wilcoxon p = {r['p_wilcoxon']:.3g}; Holm-corrected: {verdict}){fold}.")
        where = g[g["measure"].isin(["energy", "pointing"])]
        moved = where[where["significant"]]
        if len(where) and moved.empty:
            bound = ""
            energy = where[where["measure"] == "energy"]
            if len(energy) and np.isfinite(energy["diff_ci_low"].iloc[0]):
                e = energy.iloc[0]
                bound = (f" The 95% interval of the energy difference, [{e['diff_ci_low']:+.3f}, "
                         f"{e['diff_ci_high']:+.3f}], leaves room only for shifts of at most "
                         f"{max(abs(e['diff_ci_low']), abs(e['diff_ci_high'])):.3f} of the map's mass.")
            lines.append(f"\n*Augmentation does not measurably move attention here:* neither the energy inside the "
                         f"vehicle nor the pointing game differs significantly between the {labels[0]} and the "
                         f"{labels[1]} classifier.{bound}")
        elif len(moved):
            parts = [f"{_MEASURE_WORDS[r.measure]} {'rises' if r.diff > 0 else 'falls'} by {abs(r.diff):.3f}"
                     for r in moved.itertuples()]
            lines.append(f"\n*Augmentation moves attention here:* {'; '.join(parts)} with the {labels[1]} classifier.")
        lines.append("")
    return "\n".join(lines).strip()


# ---------------------------------------------------------------------------------------------
# Figure 7's images: a fixed rule, not a choice
# ---------------------------------------------------------------------------------------------


def figure_selection(labels: np.ndarray, test_idx: np.ndarray, per_class: int = 1) -> np.ndarray:
    """Figure 7's rule: the first ``per_class`` test images of every class in the order of the
    test fold (ascending pool index), classes in label order. Returns pool indices."""
    labels = np.asarray(labels)
    test_idx = np.sort(np.asarray(test_idx))
    out = []
    for c in np.unique(labels[test_idx]):
        out.extend(test_idx[labels[test_idx] == c][:per_class].tolist())
    return np.asarray(out, np.int64)


# ---------------------------------------------------------------------------------------------
# The two classifiers of one fold, and the object masks of the test images
# ---------------------------------------------------------------------------------------------


@dataclass
class ClassifierPair:
    """The real-only and the augmented classifier of one (scenario, fold, shots), trained exactly
    as the five-fold study trains them (same real subset, seed, settings and synthetic images)."""

    real: torch.nn.Module
    augmented: torch.nn.Module
    scenario: str
    fold: int
    shots: int
    seed: int
    condition: str
    n_real: int
    n_synthetic: int
    config: dict  # the classifiers' timm data config


def train_pair(inputs, scenario: str, fold: int, shots: int, condition: str = "real+perturb+rotate",
               device=None) -> ClassifierPair:
    """Fine-tune the ``real`` and the ``condition`` classifier of one fold exactly as the study's
    :func:`dapper.study.experiments.run_one` does (same real subset, seed, settings, synthetic images),
    keeping the models (the study keeps only their accuracy).

    inputs: :class:`dapper.study.experiments.StudyInputs` whose config lists ``condition`` (its
    synthetic images are made by ``prepare_inputs``); both models come from
    :func:`dapper.study.experiments.fit_run`, the function behind every row of the study.
    """
    seed = run_seed(inputs.config.seed, fold, shots)
    fitted = {cond: fit_run(inputs, RunSpec(scenario, cond, shots, fold, seed), device)
              for cond in ("real", condition)}
    config = prepared_config(inputs, scenario)
    return ClassifierPair(fitted["real"].model, fitted[condition].model, scenario, fold, shots, seed, condition,
                          len(fitted["real"].real_idx), fitted[condition].n_synthetic, config)


def object_masks(config, data, idx: Sequence[int], views: bool = False) -> np.ndarray:
    """Object masks, bool ``[len(idx), S, S]``, of images ``idx`` of a scenario's pool (or of its
    extra test views): toycars' rendered vehicle masks, Stanford Cars' bounding boxes.

    config: the :class:`dapper.study.experiments.StudyConfig`; data: the scenario's
    :class:`dapper.study.experiments.ScenarioData`. The images are re-rendered (toycars, only those
    asked for) or re-read (Stanford Cars) and checked pixel for pixel against ``data``'s.
    """
    idx = np.asarray(idx, np.int64)
    expected = (data.views_images if views else data.images)[idx]
    if data.dataset == "toycars":
        if views:
            n, homogeneous, stream = config.n_test_views, False, 1
        else:
            n, homogeneous, stream = config.n_per_class, data.scenario == "homogeneous", 0
        items = [toycars.target_item(int(j) // n, int(j) % n, config.seed, homogeneous, stream) for j in idx]
        renders = toycars.render_items(items, size=config.image_size)
        images = np.stack([r.image for r in renders]) if len(renders) else expected
        masks = (np.stack([r.mask for r in renders]) if len(renders)
                 else np.zeros((0, *expected.shape[1:3]), bool))
    elif data.dataset == "stanford_cars":
        if views:
            raise ValueError("Stanford Cars has no extra test views")

        # the study's pool exactly (folds.load_scenario): its classes, letterboxed into the generator's box
        pool = load_pool(config.data_root, classes=config.classes or DEFAULT_CLASSES, size=config.image_size,
                         content_size=content_size(config))
        images, masks = pool.images[idx], pool.bbox_masks[idx]
    else:
        raise ValueError(f"unknown dataset {data.dataset!r}")
    if images.shape != expected.shape or not np.array_equal(images, expected):
        raise RuntimeError("object masks do not belong to the study's images (the renderer or the pool "
                           "changed since the pool was cached?): clear the study's pool cache and rerun")
    return masks

