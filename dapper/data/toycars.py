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

from ._toycars_geometry import (
    BODY_TYPES,
    SOURCE_BODY_TYPES,
    VehicleSpec,
    build_geometry,
    sample_spec,
)
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
    "source_batch", "source_dataset", "source_item", "RENDER_VERSION", "FOV_DEG",
]

# Bump whenever a change alters pixels, so cached shards are never mixed across versions.
RENDER_VERSION = 1
SHARD_SIZE = 5000


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
        distance = fit_distance(spec)
    target = geom.bounds.mean(0)
    cam = make_camera(target, float(yaw), float(elevation), float(distance), res)
    style = background_style(background_seed)
    bg, _ = draw_background(style, cam, res)
    draw_shadow(bg, geom, cam)
    layer = Image.new("RGBA", (res, res), (0, 0, 0, 0))
    draw_vehicle(layer, geom, cam, style.sky)
    bg.paste(layer, (0, 0), layer)
    image = np.asarray(bg.reduce(ss), dtype=np.float32)
    alpha = np.asarray(layer.getchannel("A").reduce(ss))
    # Sensor-like grain, fixed by the background seed so re-renders at another yaw match.
    rng = np.random.default_rng([int(background_seed), 13])
    grain = rng.standard_normal((size, size, 1), dtype=np.float32)
    grain = grain + 0.4 * rng.standard_normal((size, size, 3), dtype=np.float32)
    image = np.clip(image + style.noise * grain, 0, 255).astype(np.uint8)
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
    fill = float(rng.uniform(0.75, 0.95))
    distance = fit_distance(spec, fill)
    return {"spec": spec, "yaw": yaw, "elevation": elevation, "distance": distance,
            "background_seed": int(rng.integers(2**31 - 1))}


def _render_source_range(args) -> tuple:
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


def _pool(workers: int):
    import multiprocessing as mp

    # fork is cheap and the workers never touch torch; fall back to spawn where fork is missing.
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method).Pool(workers)


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

    if workers <= 1 or len(tasks) == 1:
        collect(map(_render_source_range, tasks))
    else:
        with _pool(workers) as pool:
            collect(pool.imap(_render_source_range, tasks))
    return images, meta


def source_batch(n: int, seed: int, size: int = 64, workers: int = 1) -> tuple[np.ndarray, list]:
    """``n`` random source vehicles: (uint8 [n, size, size, 3], list of meta dicts).

    Image ``i`` is :func:`source_item` ``(seed, i)``, so this matches :func:`source_dataset` for
    the same seed and size. No pickups.
    """
    images = np.empty((n, size, size, 3), np.uint8)
    metas = []
    if workers > 1 and n >= 400:
        images, _ = _render_ranges(seed, 0, n, size, workers)
        return images, [_source_meta(seed, i, size) for i in range(n)]
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
    from dapper.utils import cache_dir

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
    from dapper.utils import atomic_save

    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    folder = source_cache_dir(seed, size)
    n_shards = math.ceil(n / SHARD_SIZE)
    missing = [k for k in range(n_shards) if not (folder / f"shard_{k:05d}.npy").exists()
               or not (folder / f"shard_{k:05d}.npz").exists()]
    bar = None
    if missing and progress:
        from tqdm.auto import tqdm

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
