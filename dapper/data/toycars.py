"""``toycars``: the study's embedded vehicle world, with ground truth the real world lacks.

A procedural renderer draws parametric 3D vehicles (numpy + Pillow, no GPU) and returns, with each
image, its mask, bounding box and every parameter that made it (body, pose, colour). On top of it:

* the *source set*: an unlabeled stream of random vehicles from a broad prior that excludes
  pickups (as LSUN cars does), cached as shards: :func:`source_dataset`, :func:`source_batch`;
* the *target set*: ten look-alike classes in five pairs (one pair of pickups, a body the source
  never shows): :data:`TARGET_CLASSES`, :data:`PAIRS`, :func:`target_pool`,
  :func:`target_test_views`;
* :func:`render_same_vehicle`: the same vehicle, background and light at another yaw, the ground
  truth for rotation fidelity.

Pose convention (degrees): ``yaw = 0`` shows the nose (front view), ``yaw = 90`` the car's right
side with the nose to the image's right, ``180`` the rear, ``270`` the left side (nose to the
left). ``elevation`` is the camera's angle above the horizontal; ``distance`` is metres from the
camera to the middle of the car. The sun is fixed relative to the camera.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from dapper.executor import ProcessExecutor
from dapper.utils import atomic_save, cache_dir

from ._toycars_geometry import BODY_TYPES, SOURCE_BODY_TYPES, VehicleSpec, build_geometry
from ._toycars_priors import PAINT_PALETTE, PAINT_WEIGHTS, sample_paint, sample_spec
from ._toycars_raster import (
    FOV_DEG,
    background_style,
    draw_background,
    draw_shadow,
    draw_vehicle,
    fit_distance,
    make_camera,
)

__all__ = [
    "BODY_TYPES", "SOURCE_BODY_TYPES", "VehicleSpec", "Render", "render", "render_same_vehicle",
    "source_batch", "source_dataset", "source_item", "RENDER_VERSION", "WORLD_VERSION", "WORLD_TAG",
    "check_world", "FOV_DEG", "TARGET_CLASSES", "PAIRS", "TargetPool", "target_spec", "target_item",
    "target_pool", "target_test_views", "render_items", "render_background", "sample_spec", "fit_distance",
    "PAINT_PALETTE", "PAINT_WEIGHTS",
]

# Bump whenever a change alters pixels, so cached shards are never mixed across versions.
RENDER_VERSION = 3
# The world's version: v2 frames every view to the car and gives the look-alike pairs differences
# that survive half resolution. Every shipped model trained on the world records this tag, and
# loaders refuse a model of another world.
WORLD_VERSION = 2
WORLD_TAG = f"toycars-v{WORLD_VERSION}-r{RENDER_VERSION}"
SHARD_SIZE = 5000


def check_world(config: dict, path, command: str) -> None:
    """Refuse a model trained on another version of this world: ``config`` (the model's JSON) must
    carry ``"world": WORLD_TAG``; ``command`` is how to retrain it."""
    found = config.get("world", "toycars-v1 (no world tag)")
    if found != WORLD_TAG:
        raise ValueError(f"{path} was trained on the world {found}, but this is {WORLD_TAG}; "
                         f"retrain it with `{command}`")


@dataclass
class Render:
    """One rendered view.

    image: uint8 (H, W, 3); mask: bool (H, W), True on the vehicle; bbox: (x0, y0, x1, y1) pixel
    box of the mask, x1/y1 exclusive ((0, 0, 0, 0) if the vehicle is out of view); meta: plain
    dict (JSON-able) with ``spec`` (all body parameters and colour), ``body``, ``yaw``,
    ``elevation``, ``distance``, ``colour``, ``background_seed``, ``size`` and, for target
    vehicles, ``class_name`` and ``label``.
    """

    image: np.ndarray
    mask: np.ndarray
    bbox: tuple
    meta: dict = field(default_factory=dict)


def _supersampling(size: int) -> int:
    return 4 if size <= 96 else 3


def render(
    spec: VehicleSpec,
    yaw: float,
    elevation: float = 12.0,
    distance: float | None = None,
    background_seed: int = 0,
    size: int = 64,
) -> Render:
    """Draw ``spec`` seen from ``yaw``/``elevation`` (degrees) at ``distance`` metres.

    ``distance=None`` frames the car by :func:`fit_distance` (a side view spans ~88% of the width).
    The background depends only on ``background_seed`` and ``elevation`` (not on yaw).
    """
    if isinstance(spec, dict):
        spec = VehicleSpec.from_dict(spec)
    ss = _supersampling(size)
    res = size * ss
    geom = build_geometry(spec)
    if distance is None:
        distance = fit_distance(spec, yaw=yaw, elevation=elevation)
    target = geom.bounds.mean(0)
    cam = make_camera(target, float(yaw), float(elevation), float(distance), res)
    style = background_style(background_seed)
    bg, _ = draw_background(style, cam, res)
    draw_shadow(bg, geom, cam)
    layer = Image.new("RGBA", (res, res), (0, 0, 0, 0))
    draw_vehicle(layer, geom, cam, style.sky)
    bg.paste(layer, (0, 0), layer)
    image = _with_grain(np.asarray(bg.reduce(ss), dtype=np.float32), style, background_seed)
    alpha = np.asarray(layer.getchannel("A").reduce(ss))
    mask = alpha >= 128
    meta = {
        "body": spec.body,
        "yaw": float(yaw) % 360.0,
        "elevation": float(elevation),
        "distance": float(distance),
        "colour": [float(c) for c in spec.colour],
        "background_seed": int(background_seed),
        "size": int(size),
        "spec": spec.to_dict(),
    }
    return Render(image, mask, mask_bbox(mask), meta)


def _with_grain(image: np.ndarray, style, background_seed: int) -> np.ndarray:
    """float [S, S, 3] -> uint8 with sensor-like grain, fixed by the background seed so that
    re-renders at another yaw (and the empty scene) match."""
    size = image.shape[0]
    rng = np.random.default_rng([int(background_seed), 13])
    grain = rng.standard_normal((size, size, 1), dtype=np.float32)
    grain = grain + 0.4 * rng.standard_normal((size, size, 3), dtype=np.float32)
    return np.clip(image + style.noise * grain, 0, 255).astype(np.uint8)


def render_background(background_seed: int, elevation: float = 12.0, size: int = 64) -> np.ndarray:
    """The scene of :func:`render` with no vehicle: the same sky, ground, clutter and grain a render
    with this background seed and elevation has (they do not depend on yaw). uint8 [size, size, 3]."""
    ss = _supersampling(size)
    res = size * ss
    cam = make_camera(np.array([0.0, 0.0, 0.75]), 0.0, float(elevation), 7.0, res)
    style = background_style(background_seed)
    bg, _ = draw_background(style, cam, res)
    return _with_grain(np.asarray(bg.reduce(ss), dtype=np.float32), style, background_seed)


def mask_bbox(mask: np.ndarray) -> tuple:
    """(x0, y0, x1, y1) of the True pixels, x1/y1 exclusive; zeros for an empty mask."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)


def render_same_vehicle(meta: dict, yaw: float, size: int | None = None) -> Render:
    """Re-render the vehicle described by ``meta`` (from any :class:`Render`) at another yaw,
    with the same body, colour, elevation, distance and background. Class fields are kept."""
    r = render(
        VehicleSpec.from_dict(meta["spec"]), yaw, meta["elevation"], meta["distance"],
        meta["background_seed"], size or meta["size"],
    )
    for k in ("class_name", "label"):
        if k in meta:
            r.meta[k] = meta[k]
    return r


# ---------------------------------------------------------------------------------------------
# Source set
# ---------------------------------------------------------------------------------------------

SOURCE_BODY_WEIGHTS = {"sedan": 0.26, "hatchback": 0.15, "coupe": 0.08, "wagon": 0.1, "suv": 0.22,
                       "van": 0.09, "sports": 0.1}


def source_item(seed: int, index: int) -> dict:
    """The parameters of source image ``index`` for ``seed`` (a pure function of both):
    ``spec``, ``yaw``, ``elevation``, ``distance``, ``background_seed``."""
    rng = np.random.default_rng([int(seed), int(index), 0x50C])
    names = list(SOURCE_BODY_WEIGHTS)
    p = np.array([SOURCE_BODY_WEIGHTS[n] for n in names])
    body = names[rng.choice(len(names), p=p / p.sum())]
    spec = sample_spec(rng, body)
    yaw = float(rng.uniform(0, 360))
    elevation = float(3 + 27 * rng.beta(1.6, 2.4))
    fill = float(rng.uniform(0.72, 0.92))
    distance = fit_distance(spec, fill, yaw, elevation)
    return {"spec": spec, "yaw": yaw, "elevation": elevation, "distance": distance,
            "background_seed": int(rng.integers(2**31 - 1))}


def _render_source_range(_shared, args) -> tuple:
    seed, start, stop, size = args
    n = stop - start
    images = np.empty((n, size, size, 3), np.uint8)
    meta = _empty_meta(n)
    for i in range(n):
        item = source_item(seed, start + i)
        r = render(item["spec"], item["yaw"], item["elevation"], item["distance"], item["background_seed"], size)
        images[i] = r.image
        _fill_meta(meta, i, r)
    return images, meta


def _empty_meta(n: int) -> dict:
    return {
        "yaw": np.zeros(n, np.float32), "elevation": np.zeros(n, np.float32),
        "distance": np.zeros(n, np.float32), "body": np.zeros(n, np.int8),
        "colour": np.zeros((n, 3), np.float32), "bbox": np.zeros((n, 4), np.int16),
        "background_seed": np.zeros(n, np.int64),
    }


def _fill_meta(meta: dict, i: int, r: Render) -> None:
    meta["yaw"][i] = r.meta["yaw"]
    meta["elevation"][i] = r.meta["elevation"]
    meta["distance"][i] = r.meta["distance"]
    meta["body"][i] = BODY_TYPES.index(r.meta["body"])
    meta["colour"][i] = r.meta["colour"]
    meta["bbox"][i] = r.bbox
    meta["background_seed"][i] = r.meta["background_seed"]


def _renderers(workers: int) -> ProcessExecutor:
    # fork is cheap and the renderer never touches torch
    return ProcessExecutor(workers, threads=None, start="fork")


def _render_ranges(seed: int, start: int, stop: int, size: int, workers: int, chunk: int = 200, bar=None):
    tasks = [(seed, a, min(a + chunk, stop), size) for a in range(start, stop, chunk)]
    images = np.empty((stop - start, size, size, 3), np.uint8)
    meta = _empty_meta(stop - start)

    def collect(results):
        for (s, a, b, _), (im, me) in zip(tasks, results):
            images[a - start:b - start] = im
            for k in meta:
                meta[k][a - start:b - start] = me[k]
            if bar is not None:
                bar.update(b - a)

    collect(r for _, r in _renderers(workers).map(_render_source_range, tasks, ordered=True))
    return images, meta


def source_batch(n: int, seed: int, size: int = 64, workers: int = 1) -> tuple[np.ndarray, list]:
    """``n`` random source vehicles: (uint8 [n, size, size, 3], list of meta dicts).

    Image ``i`` is :func:`source_item` ``(seed, i)``, so this matches :func:`source_dataset` for
    the same seed and size. No pickups.
    """
    images = np.empty((n, size, size, 3), np.uint8)
    metas = []
    if workers > 1 and n >= 400:
        images, arrays = _render_ranges(seed, 0, n, size, workers)
        metas = [_source_meta(seed, i, size) for i in range(n)]
        for m, box in zip(metas, arrays["bbox"].tolist()):
            m["bbox"] = box
        return images, metas
    for i in range(n):
        item = source_item(seed, i)
        r = render(item["spec"], item["yaw"], item["elevation"], item["distance"], item["background_seed"], size)
        images[i] = r.image
        r.meta["bbox"] = list(r.bbox)
        metas.append(r.meta)
    return images, metas


def _source_meta(seed: int, i: int, size: int) -> dict:
    item = source_item(seed, i)
    spec = item["spec"]
    return {"body": spec.body, "yaw": item["yaw"] % 360.0, "elevation": item["elevation"],
            "distance": item["distance"], "colour": list(spec.colour),
            "background_seed": item["background_seed"], "size": size, "spec": spec.to_dict()}


def source_cache_dir(seed: int = 0, size: int = 64) -> Path:
    return cache_dir("toycars", f"source-v{RENDER_VERSION}-seed{seed}-{size}px")


def source_dataset(
    n: int,
    size: int = 64,
    seed: int = 0,
    progress: bool = True,
    workers: int | None = None,
    return_meta: bool = False,
):
    """The first ``n`` source images for ``seed``: uint8 [n, size, size, 3].

    Rendered in parallel in shards of ``SHARD_SIZE`` images cached under
    ``cache_dir("toycars", "source-v<version>-seed<seed>-<size>px")`` as ``shard_<k>.npy``
    (memory-mappable) with per-image pose/colour/bbox in ``shard_<k>.npz``. Shard ``k`` always
    holds images ``k*SHARD_SIZE ...`` so a larger ``n`` reuses what a smaller one rendered, and an
    interrupted run resumes at the first missing shard. When ``n`` fits in one shard the result
    is a read-only memory map. ``return_meta=True`` also returns a dict of arrays (``yaw``,
    ``elevation``, ``distance``, ``body`` (index into ``BODY_TYPES``), ``colour``, ``bbox``,
    ``background_seed``).
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    folder = source_cache_dir(seed, size)
    n_shards = math.ceil(n / SHARD_SIZE)
    missing = [k for k in range(n_shards) if not (folder / f"shard_{k:05d}.npy").exists()
               or not (folder / f"shard_{k:05d}.npz").exists()]
    bar = None
    if missing and progress:
        bar = tqdm(total=len(missing) * SHARD_SIZE, desc=f"toycars source ({len(missing)} shards)", unit="img")
    for k in missing:
        images, meta = _render_ranges(seed, k * SHARD_SIZE, (k + 1) * SHARD_SIZE, size, workers, bar=bar)
        # Meta first: a shard counts as done only once its .npy exists.
        atomic_save(folder / f"shard_{k:05d}.npz", lambda p, meta=meta: np.savez(p, **meta))
        atomic_save(folder / f"shard_{k:05d}.npy", lambda p, images=images: np.save(p, images))
    if bar is not None:
        bar.close()
    if not (folder / "info.json").exists():
        info = {"render_version": RENDER_VERSION, "seed": seed, "size": size, "shard_size": SHARD_SIZE,
                "body_types": list(BODY_TYPES), "fov_deg": FOV_DEG,
                "note": "image i of shard k is dapper.data.toycars.source_item(seed, k*shard_size+i)"}
        atomic_save(folder / "info.json", lambda p: p.write_text(json.dumps(info, indent=1)))

    shards = [np.load(folder / f"shard_{k:05d}.npy", mmap_mode="r") for k in range(n_shards)]
    if n_shards == 1:
        images = shards[0][:n]
    else:
        images = np.empty((n, size, size, 3), np.uint8)
        for k, s in enumerate(shards):
            a = k * SHARD_SIZE
            b = min(n, a + SHARD_SIZE)
            images[a:b] = s[: b - a]
    if not return_meta:
        return images
    metas = [dict(np.load(folder / f"shard_{k:05d}.npz")) for k in range(n_shards)]
    meta = {key: np.concatenate([m[key] for m in metas])[:n] for key in metas[0]}
    return images, meta


# ---------------------------------------------------------------------------------------------
# Target set: ten look-alike classes in five pairs
# ---------------------------------------------------------------------------------------------

# Base bodies of the five makers.
_SEDAN = dict(
    body="sedan", length=4.70, width=1.82, clearance=0.16, wheel_radius=0.33, front_overhang=0.95,
    rear_overhang=1.08, nose_height=0.66, nose_length=0.18, hood_front_height=0.76, belt_height=0.92,
    tail_height=0.84, deck_height=0.95, x_windshield_base=0.68, x_roof_front=-0.05, x_roof_rear=-1.02,
    x_rear_window_base=-1.5, roof_height=1.44, tumblehome=0.79, window_splits=(0.5,), c_pillar=0.16,
    head_shape=1, tail_shape=0, grille_shape=0, spokes=5, rim_fraction=0.68,
)
_SUV = dict(
    body="suv", length=4.55, width=1.88, clearance=0.22, wheel_radius=0.38, tyre_width=0.25,
    front_overhang=0.9, rear_overhang=0.95, nose_height=0.82, nose_length=0.14, hood_front_height=0.96,
    belt_height=1.04, tail_height=1.02, deck_height=1.04, x_windshield_base=0.72, x_roof_front=0.1,
    x_roof_rear=-2.05, x_rear_window_base=-2.2, roof_height=1.68, roof_crown=0.02, tumblehome=0.85,
    window_splits=(0.42, 0.76), c_pillar=0.12, head_shape=0, tail_shape=0, grille_shape=2, spokes=5,
    rim_fraction=0.7, dark_bumpers=True,
)
_HATCH = dict(
    body="hatchback", length=3.98, width=1.74, clearance=0.15, wheel_radius=0.31, front_overhang=0.82,
    rear_overhang=0.64, nose_height=0.68, nose_length=0.2, hood_front_height=0.8, belt_height=0.93,
    tail_height=0.91, deck_height=0.93, x_windshield_base=0.7, x_roof_front=0.0, x_roof_rear=-1.62,
    x_rear_window_base=-1.93, roof_height=1.48, tumblehome=0.8, window_splits=(0.46, 0.84),
    c_pillar=0.22, head_shape=0, tail_shape=2, grille_shape=3, spokes=7, rim_fraction=0.64,
)
_SPORTS = dict(
    body="sports", length=4.45, width=1.9, clearance=0.11, wheel_radius=0.34, tyre_width=0.26,
    front_overhang=1.0, rear_overhang=0.9, nose_height=0.42, nose_length=0.4, hood_front_height=0.6,
    belt_height=0.76, tail_height=0.7, deck_height=0.8, x_windshield_base=0.55, x_roof_front=-0.4,
    x_roof_rear=-1.25, x_rear_window_base=-1.75, roof_height=1.2, roof_crown=0.02, tumblehome=0.7,
    window_splits=(), c_pillar=0.25, head_shape=1, tail_shape=0, grille_shape=3, spokes=5,
    rim_fraction=0.72,
)
_PICKUP = dict(
    body="pickup", length=5.3, width=1.92, clearance=0.25, wheel_radius=0.39, tyre_width=0.26,
    front_overhang=0.95, rear_overhang=1.2, nose_height=0.96, nose_length=0.12, hood_front_height=1.08,
    belt_height=1.14, tail_height=1.14, deck_height=1.14, x_windshield_base=1.2, x_roof_front=0.6,
    x_roof_rear=-0.2, x_rear_window_base=-0.25, roof_height=1.84, roof_crown=0.02, tumblehome=0.88,
    window_splits=(), c_pillar=0.08, head_shape=0, tail_shape=2, grille_shape=0, spokes=6,
    rim_fraction=0.66, dark_bumpers=False,
)

# World v2: the second member of each pair differs from the first in several shape attributes of
# a few pixels at 64 px that still show at 32 px (roof line and greenhouse, length and wheelbase,
# ride height, light clusters, grille, wheel design), the way Acura TL/TSX or BMW X3/X5 differ. A
# pair shares its body type, palette and trim colours, so nothing but shape tells its members apart
# and the pairs are not resolvable at quarter resolution (16 px), where only a few pixels of colour
# remain per part.
_TARGET_DEFS = (
    ("Vela S4 Sedan", _SEDAN, {}),
    ("Vela S5 Sedan", _SEDAN, dict(length=4.86, rear_overhang=1.12, front_overhang=0.98, x_windshield_base=0.74,
                                   x_roof_front=0.02, x_roof_rear=-0.88, x_rear_window_base=-1.72,
                                   window_splits=(0.42, 0.8), head_shape=1, head_size=1.15, tail_shape=2,
                                   grille_shape=1, grille_size=1.2, spokes=10)),
    ("Borea X3 SUV", _SUV, dict(cladding_height=0.2)),
    ("Borea X5 SUV", _SUV, dict(length=4.72, rear_overhang=1.0, front_overhang=0.93, x_windshield_base=0.78,
                                x_roof_front=0.16, x_roof_rear=-2.13, x_rear_window_base=-2.27, roof_height=1.72,
                                wheel_radius=0.39, cladding_height=0.2, window_splits=(0.36, 0.64, 0.86),
                                tail_shape=2, head_shape=3, head_size=1.1, spokes=10, grille_size=1.3)),
    ("Corsa 5-door Hatchback", _HATCH, {}),
    ("Corsa 3-door Hatchback", _HATCH, dict(window_splits=(0.7,), c_pillar=0.36, length=3.92, x_roof_rear=-1.5,
                                            spokes=0, tail_shape=3, head_shape=2, head_size=1.15)),
    ("Falco GT Coupe", _SPORTS, {}),
    ("Falco GTS Coupe", _SPORTS, dict(spoiler=True, head_shape=3, roof_height=1.16, clearance=0.095, tail_shape=3,
                                      spokes=10, grille_shape=0, c_pillar=0.34)),
    ("Dune Regular Cab Pickup", _PICKUP, {}),
    ("Dune Crew Cab Pickup", _PICKUP, dict(length=5.4, rear_overhang=1.22, x_windshield_base=1.28,
                                           x_roof_front=0.68, x_roof_rear=-0.48, x_rear_window_base=-0.53,
                                           window_splits=(0.55,), grille_shape=3, head_shape=1, tail_shape=0,
                                           spokes=10)),
)
TARGET_CLASSES = tuple(name for name, _, _ in _TARGET_DEFS)
"""Ten target class names; classes ``2k`` and ``2k + 1`` are look-alikes of one maker."""
PAIRS = tuple((2 * k, 2 * k + 1) for k in range(len(TARGET_CLASSES) // 2))
"""Index pairs of look-alike classes; the last pair is the pickups the source set never shows."""

# Homogeneous training views: a narrow band of front-right three-quarter views, three colours.
HOMOGENEOUS_YAW = (28.0, 52.0)
HOMOGENEOUS_ELEVATION = (8.0, 16.0)
HOMOGENEOUS_COLOURS = ("white", "silver", "red")


def target_spec(label: int, colour=None) -> VehicleSpec:
    """The fixed body of target class ``label`` (0-9), painted ``colour`` (RGB in [0, 1])."""
    name, base, changes = _TARGET_DEFS[label]
    spec = VehicleSpec(**{**base, **changes})
    if colour is not None:
        spec.colour = tuple(float(c) for c in colour)
    return spec


def _jitter(spec: VehicleSpec, rng: np.random.Generator) -> VehicleSpec:
    # Instances of one model differ a hair (tolerances, tyres, load), never enough to cross a pair.
    k = 1.0 + rng.normal(0, 0.004)
    return spec.replace(length=spec.length * k, front_overhang=spec.front_overhang * k,
                        rear_overhang=spec.rear_overhang * k, x_windshield_base=spec.x_windshield_base * k,
                        x_roof_front=spec.x_roof_front * k, x_roof_rear=spec.x_roof_rear * k,
                        x_rear_window_base=spec.x_rear_window_base * k,
                        clearance=spec.clearance + float(rng.normal(0, 0.005)))


def target_item(label: int, index: int, seed: int = 0, homogeneous: bool = False, stream: int = 0) -> dict:
    """Render arguments of target instance ``index`` of class ``label`` (a pure function)."""
    rng = np.random.default_rng([int(seed), int(label), int(index), 0x7A6, int(homogeneous), int(stream)])
    if homogeneous:
        name = HOMOGENEOUS_COLOURS[rng.integers(len(HOMOGENEOUS_COLOURS))]
        colour = np.clip(np.array(PAINT_PALETTE[name]) + rng.normal(0, 0.015, 3), 0, 1)
        yaw = rng.uniform(*HOMOGENEOUS_YAW)
        elevation = rng.uniform(*HOMOGENEOUS_ELEVATION)
        fill = rng.uniform(0.84, 0.9)
    else:
        colour = sample_paint(rng)
        yaw = rng.uniform(0, 360)
        elevation = 3 + 27 * rng.beta(1.6, 2.4)
        fill = rng.uniform(0.72, 0.92)
    spec = _jitter(target_spec(label, colour), rng)
    return {"spec": spec, "yaw": float(yaw), "elevation": float(elevation),
            "distance": fit_distance(spec, float(fill), float(yaw), float(elevation)),
            "background_seed": int(rng.integers(2**31 - 1)),
            "label": int(label)}


@dataclass
class TargetPool:
    """Rendered target instances, grouped by class.

    images: uint8 [N, S, S, 3]; labels: int64 [N] (index into ``class_names``); yaw, elevation:
    float32 [N] degrees; colour: float32 [N, 3] in [0, 1]; masks: bool [N, S, S]; bboxes: int32
    [N, 4] (x0, y0, x1, y1); metas: per-image dicts accepted by :func:`render_same_vehicle`.
    """

    images: np.ndarray
    labels: np.ndarray
    yaw: np.ndarray
    elevation: np.ndarray
    colour: np.ndarray
    masks: np.ndarray
    bboxes: np.ndarray
    metas: list
    class_names: tuple = TARGET_CLASSES

    def __len__(self) -> int:
        return len(self.labels)


def _render_item_chunk(_shared, args) -> list:
    items, size = args
    out = []
    for it in items:
        r = render(it["spec"], it["yaw"], it["elevation"], it["distance"], it["background_seed"], size)
        r.meta["label"] = it["label"]
        r.meta["class_name"] = TARGET_CLASSES[it["label"]]
        r.meta["bbox"] = list(r.bbox)
        out.append(r)
    return out


def render_items(items: list, size: int = 64, workers: int = 1) -> list:
    """Render a list of :func:`target_item`-style dicts, in parallel when ``workers > 1``."""
    chunk = 100
    tasks = [(items[a:a + chunk], size) for a in range(0, len(items), chunk)]
    return [r for _, rs in _renderers(workers).map(_render_item_chunk, tasks, ordered=True) for r in rs]


def _pool_from_renders(renders: list) -> TargetPool:
    n = len(renders)
    size = renders[0].image.shape[0] if n else 0
    return TargetPool(
        images=np.stack([r.image for r in renders]) if n else np.zeros((0, size, size, 3), np.uint8),
        labels=np.array([r.meta["label"] for r in renders], np.int64),
        yaw=np.array([r.meta["yaw"] for r in renders], np.float32),
        elevation=np.array([r.meta["elevation"] for r in renders], np.float32),
        colour=np.array([r.meta["colour"] for r in renders], np.float32).reshape(n, 3),
        masks=np.stack([r.mask for r in renders]) if n else np.zeros((0, size, size), bool),
        bboxes=np.array([r.bbox for r in renders], np.int32).reshape(n, 4),
        metas=[r.meta for r in renders],
    )


def target_pool(n_per_class: int, seed: int = 0, size: int = 64, homogeneous: bool = False,
                workers: int = 1, classes=None) -> TargetPool:
    """``n_per_class`` instances of each target class (the pool 5-fold CV splits).

    ``homogeneous=True`` keeps to front-right three-quarter views (yaw 28-52 deg, elevation
    8-16 deg, tight framing) in three colours (white, silver, red), like a curated training set;
    otherwise poses, colours, framing and backgrounds vary fully. ``classes`` limits to some
    labels. Deterministic in (seed, size, homogeneous).
    """
    labels = range(len(TARGET_CLASSES)) if classes is None else classes
    items = [target_item(c, i, seed, homogeneous) for c in labels for i in range(n_per_class)]
    return _pool_from_renders(render_items(items, size, workers))


def target_test_views(n_per_class: int, seed: int = 0, size: int = 64, workers: int = 1,
                      classes=None) -> TargetPool:
    """Full-diversity held-out views of every target class (any yaw, colour, background),
    drawn from a random stream disjoint from :func:`target_pool`'s."""
    labels = range(len(TARGET_CLASSES)) if classes is None else classes
    items = [target_item(c, i, seed, False, stream=1) for c in labels for i in range(n_per_class)]
    return _pool_from_renders(render_items(items, size, workers))
