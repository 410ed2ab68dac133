"""One place that picks a dataset's images and the generator they are made for.

Notebooks 01 and 06, notebook 02's held-out targets (:func:`dapper.study.direction_eval.heldout_targets`)
and the study's pools (:func:`dapper.study.folds.load_scenario`) all call :func:`pick_images`::

    picked = pick_images("toycars", ImagePick(n_per_class=1, views=True))      # loads the shipped generator
    picked = pick_images("stanford_cars", ImagePick(n_per_class=1), network="cars.pkl", data_root="cars/")
    picked = pick_images(dataset, ImagePick(n_per_class=5, seed=808, homogeneous=True), G=G)  # a loaded one
    picked = pick_images(dataset, ImagePick(n_per_class=32), canvas=(64, None))  # no generator: size given

The images are made for a canvas: the generator's resolution and, in real mode, the part of its
canvas that holds picture (its ``content_box``): photos are letterboxed into it, and
``content_masks`` keep the bars out of every loss. toycars renders fill the canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dapper import stylegan2
from dapper.data import stanford_cars, toycars
from dapper.utils import default_generator_path

__all__ = ["ImagePick", "PickedImages", "source_generator", "pick_images"]

REAL_MODE_NEEDS = ("dataset='stanford_cars' needs network= (a StyleGAN2 car checkpoint, .pkl/.pt) "
                   "and data_root= (the Stanford Cars folder)")


@dataclass(frozen=True)
class ImagePick:
    """Which of a dataset's images, in the dataset's own order (classes in label order).

    ``n_per_class``: toycars: renders per class (required); Stanford Cars: the first that many photos
    of each class (None: every photo, in the pool's order). ``n_classes``: only the first that many
    classes (None: all). toycars only: ``seed`` (the render stream), ``views`` (the full-diversity
    held-out views, :func:`dapper.data.toycars.target_test_views`, instead of the pool,
    :func:`dapper.data.toycars.target_pool`) and ``homogeneous`` (the pool's front-right
    three-quarter views)."""

    n_per_class: int | None = None
    seed: int = 0
    views: bool = False
    homogeneous: bool = False
    n_classes: int | None = None

    def __post_init__(self):
        for name in ("n_per_class", "n_classes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
                raise ValueError(f"{name}={value!r}: expected a positive whole number or None")
        if self.views and self.homogeneous:
            raise ValueError("the held-out views (views=True) vary fully; homogeneous is the pool's")


@dataclass
class PickedImages:
    """A dataset's picked images and the generator they are made for.

    images: uint8 [N, S, S, 3]; labels: int64 [N] (index into ``class_names``); content_masks: bool
    [N, S, S], where each image shows the photo, not the letterbox bars (None: toycars, everywhere);
    vehicle_masks: bool [N, S, S], the vehicle's pixels (toycars) or its annotated box (Stanford
    Cars); metas: toycars meta dicts (for true re-renders) or None; ``G`` and ``generator_path``: the
    generator loaded or given (None for a ``canvas`` pick; ``generator_path`` None for a given one).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    content_masks: np.ndarray | None
    vehicle_masks: np.ndarray | None
    metas: list | None
    G: object | None = None
    generator_path: str | Path | None = None


def source_generator(network=None, device="cpu") -> tuple:
    """``(G, path)``: the generator of the checkpoint ``network``, else the shipped source GAN
    (:func:`dapper.utils.default_generator_path`), loaded on ``device`` in eval mode; a user's
    checkpoint runs its highest resolutions in bfloat16 on the CPU (``load_generator``'s ``"auto"``)."""
    path = network or default_generator_path()
    return stylegan2.load_generator(path, device=device, cpu_bf16="auto"), path  # readers load on first use


def _content_size(G) -> tuple[int, int]:
    x0, y0, x1, y1 = G.content_box
    return x1 - x0, y1 - y0


def _toycars(pick: ImagePick, size: int, workers: int):
    if pick.n_per_class is None:
        raise ValueError("toycars images are rendered: say how many per class (n_per_class)")
    classes = None if pick.n_classes is None else range(pick.n_classes)
    if pick.views:
        pool = toycars.target_test_views(pick.n_per_class, seed=pick.seed, size=size, workers=workers, classes=classes)
    else:
        pool = toycars.target_pool(pick.n_per_class, seed=pick.seed, size=size, homogeneous=pick.homogeneous,
                                   workers=workers, classes=classes)
    return pool.images, pool.labels, list(pool.class_names), None, pool.masks, pool.metas


def _stanford_cars(pick: ImagePick, size: int, content_size, data_root, classes, progress: bool):
    pool = stanford_cars.load_pool(data_root, classes=classes or stanford_cars.DEFAULT_CLASSES, size=size,
                                   content_size=content_size, progress=progress)
    arrays = [pool.images, pool.labels, pool.content_masks, pool.bbox_masks]
    if pick.n_per_class is not None or pick.n_classes is not None:
        kept = np.unique(pool.labels)[:pick.n_classes]
        keep = np.concatenate([np.flatnonzero(pool.labels == c)[:pick.n_per_class] for c in kept])
        arrays = [a[keep] for a in arrays]
    images, labels, content, vehicle = arrays
    return images, labels, list(pool.class_names), content, vehicle, None


def pick_images(dataset: str, pick: ImagePick, *, G=None, network=None, device="cpu", canvas=None, data_root=None,
                classes=None, workers: int = 1, progress: bool = True) -> PickedImages:
    """The images ``pick`` names of ``dataset`` (``"toycars"`` or ``"stanford_cars"``), made for a
    generator's canvas, and the generator.

    The canvas is ``G``'s when a generator is given (its resolution and, in real mode, its
    ``content_box``); else ``canvas = (size, content_size)`` without any generator (``content_size``
    ``(w, h)`` or None: the whole canvas); else the generator ``network`` names (the shipped one when
    None, toycars only: real mode needs ``network`` and ``data_root``) is loaded on ``device``.
    ``data_root``, ``classes`` (class names; None: the ten default ones): Stanford Cars only;
    ``workers``: toycars' render processes; ``progress``: Stanford Cars' loading bar.
    """
    if dataset not in ("toycars", "stanford_cars"):
        raise ValueError(f"unknown dataset {dataset!r}")
    if G is not None and canvas is not None:
        raise ValueError("give the generator (G) or a canvas, not both")
    real = dataset == "stanford_cars"
    path = None
    if canvas is None:
        if G is None:
            if real and (network is None or data_root is None):
                raise ValueError(REAL_MODE_NEEDS)
            G, path = source_generator(network, device)
        canvas = (G.img_resolution, _content_size(G) if real else None)
    size, content_size = canvas
    if real:
        arrays = _stanford_cars(pick, size, content_size, data_root, classes, progress)
    else:
        arrays = _toycars(pick, size, workers)
    return PickedImages(*arrays, G=G, generator_path=path)
