"""The embedded world's ceiling: synthetic images drawn by the renderer, the perfect generator.

The method's synthetic images come from a generator that may lose the vehicle's identity. Here the
toycars renderer draws them instead, from each real shot's own render arguments
(:func:`dapper.data.toycars.target_item`), with the same counts and degrees as the method asks:

* ``rotate``: the same car, background, light and camera distance at ``yaw + d``, ``d`` drawn from
  the method's rotation amounts (:attr:`dapper.augment.AugmentSettings.coefficients`, degrees) as
  the method draws them (``k`` per image: a random order of the amounts, repeated when ``k`` is
  larger);
* ``perturb``: what a W perturbation is meant to vary and nothing of the class's shape: paint drawn
  from the street palette every look-alike pair shares (:func:`dapper.data.toycars.sample_paint`),
  a new background (ground, sky and clutter; the sky also lights the body), and a few degrees of
  pose (yaw within ``+-yaw_jitter_deg``, elevation within ``+-elevation_jitter_deg``). The body,
  its instance jitter and the camera distance stay;
* ``perturb+rotate``: each perturbed render turned by one of the rotation amounts.

**Label noise, measured.** Every synthetic image also has its *twin* render: the look-alike
class's body (:data:`dapper.data.toycars.PAIRS`) with the same paint, pose, distance and
background. A condition at twin share ``q`` trains on the twin render wherever the image's own
uniform draw ``u < q``, still labelled with the original class, so the sets are nested in ``q``
(an image swapped at 20% is swapped at 40% too) and the curve compares like with like.

These conditions are named ``(renderer)`` everywhere (``real+rotate(renderer)``,
``real+rotate(renderer, twins 40%)``). They exist only in the embedded world, bound what a perfect
generator could give, and never feed the method. Randomness is a pure function of
``(settings.seed, image key, method)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from dapper.augment import METHODS, AugmentSettings, SyntheticSet, check_no_leakage
from dapper.data import toycars

__all__ = ["RendererSettings", "RenderedSet", "renderer_condition", "renderer_condition_name", "pool_items",
           "render_ceiling_set", "TWIN_SHARES"]

# The label-noise curve's twin shares (issue: q in {0, 0.2, 0.4, 0.6, 0.8}).
TWIN_SHARES = (0.0, 0.2, 0.4, 0.6, 0.8)
_NAME = re.compile(r"^real\+(perturb|rotate|perturb\+rotate)\(renderer(?:, twins (\d+)%)?\)$")


def renderer_condition(condition: str) -> tuple[str, float] | None:
    """``(method, twin share)`` of a renderer condition (``"real+rotate(renderer, twins 40%)"`` ->
    ``("rotate", 0.4)``); None for any other condition."""
    m = _NAME.match(condition)
    if m is None:
        return None
    return m.group(1), (0.0 if m.group(2) is None else int(m.group(2)) / 100)


def renderer_condition_name(method: str, twin_share: float = 0.0) -> str:
    """The condition :func:`renderer_condition` reads back."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    pct = round(100 * float(twin_share))
    if not 0 <= pct < 100 or abs(pct - 100 * twin_share) > 1e-6:
        raise ValueError(f"twin share {twin_share!r} must be a whole percent in [0, 1)")
    return f"real+{method}(renderer)" if pct == 0 else f"real+{method}(renderer, twins {pct}%)"


@dataclass(frozen=True)
class RendererSettings:
    """What the renderer's perturbation varies (the module docstring): yaw within
    ``+-yaw_jitter_deg``, elevation within ``+-elevation_jitter_deg`` (kept within
    ``elevation_range``), a new background and paint from the shared palette."""

    yaw_jitter_deg: float = 5.0
    elevation_jitter_deg: float = 2.0
    elevation_range: tuple[float, float] = (3.0, 30.0)

    def __post_init__(self):
        if self.yaw_jitter_deg < 0 or self.elevation_jitter_deg < 0:
            raise ValueError("the renderer's pose jitter must be >= 0 degrees")
        lo, hi = self.elevation_range
        if not lo < hi:
            raise ValueError(f"elevation_range {self.elevation_range} must be (low, high) with low < high")

    def describe(self) -> str:
        """What a renderer perturbation varies, in words (for captions: generated, never typed)."""
        return (f"paint drawn from the palette every pair shares, a new background (the sky also lights the body), "
                f"yaw within +-{self.yaw_jitter_deg:g} deg and elevation within +-{self.elevation_jitter_deg:g} deg; "
                "body, instance and camera distance kept")

    def to_dict(self) -> dict:
        return asdict(self)


def pool_items(n_per_class: int, seed: int, homogeneous: bool) -> list[dict]:
    """The render arguments of every image of a target pool, in the pool's order (class by class),
    as :func:`dapper.data.toycars.target_pool` draws them."""
    return [toycars.target_item(c, i, seed, homogeneous)
            for c in range(len(toycars.TARGET_CLASSES)) for i in range(n_per_class)]


def _twin(label: int) -> int:
    for a, b in toycars.PAIRS:
        if label in (a, b):
            return b if label == a else a
    raise ValueError(f"class {label} has no look-alike twin in toycars.PAIRS")


def _rng(seed: int, key: str, method: str, stream: int) -> np.random.Generator:
    bits = int(hashlib.sha1(str(key).encode()).hexdigest()[:15], 16)
    return np.random.default_rng([int(seed), bits, METHODS.index(method), int(stream)])


def _views(item: dict, key: str, method: str, aug: AugmentSettings, settings: RendererSettings) -> list[dict]:
    """The ``aug.k`` render arguments of ``method`` for one real image (its ``item``), each with
    the degrees it turns (``degrees``) and the twin draw ``u``."""
    rng = _rng(aug.seed, key, method, 0)
    amounts = np.asarray(aug.coefficients, dtype=np.float64)
    turns = (amounts[np.resize(rng.permutation(len(amounts)), aug.k)] if "rotate" in method
             else np.zeros(aug.k))
    u = _rng(aug.seed, key, method, 1).uniform(size=aug.k)
    out = []
    for j in range(aug.k):
        view = {"spec": item["spec"], "yaw": item["yaw"], "elevation": item["elevation"],
                "distance": item["distance"], "background_seed": item["background_seed"], "label": item["label"]}
        if "perturb" in method:
            view["spec"] = item["spec"].replace(colour=toycars.sample_paint(rng))
            view["yaw"] = item["yaw"] + rng.uniform(-settings.yaw_jitter_deg, settings.yaw_jitter_deg)
            view["elevation"] = float(np.clip(
                item["elevation"] + rng.uniform(-settings.elevation_jitter_deg, settings.elevation_jitter_deg),
                *settings.elevation_range))
            view["background_seed"] = int(rng.integers(2**31 - 1))
        view["yaw"] = float(view["yaw"] + turns[j])
        out.append({**view, "degrees": float(turns[j]), "u": float(u[j]), "index": j})
    return out


@dataclass
class RenderedSet:
    """The renderer's synthetic images of some real images: ``clean`` (a
    :class:`dapper.augment.SyntheticSet`, manifest ``compose == "renderer"`` and the twin draw
    ``u``) and ``twin_images`` uint8 [M, H, W, 3], row by row the look-alike twin's render."""

    clean: SyntheticSet
    twin_images: np.ndarray

    def __len__(self) -> int:
        return len(self.clean)

    def select(self, source_keys, method: str, twin_share: float = 0.0, test_keys=(), fold=None) -> SyntheticSet:
        """The images of ``method`` made from ``source_keys``, the twin's render in place of each whose
        draw ``u < twin_share`` (label unchanged; manifest column ``twin``). Raises
        :class:`dapper.augment.LeakageError` if a source is one of ``test_keys``."""
        m = self.clean.manifest
        keep = (m["source_key"].isin(set(map(str, source_keys))) & (m["method"] == method)).to_numpy()
        check_no_leakage(m.loc[keep, "source_key"], test_keys, fold)
        idx = np.flatnonzero(keep)
        swap = m["u"].to_numpy(float)[idx] < float(twin_share)
        images = self.clean.images[idx].copy()
        images[swap] = self.twin_images[idx[swap]]
        manifest = m.iloc[idx].reset_index(drop=True).assign(twin=swap)
        return SyntheticSet(images, self.clean.labels[idx], manifest)

    @staticmethod
    def concat(parts) -> RenderedSet:
        parts = list(parts)
        return RenderedSet(SyntheticSet.concat([p.clean for p in parts]),
                           np.concatenate([p.twin_images for p in parts]))


def render_ceiling_set(items: list[dict], images: np.ndarray, keys: list[str], methods, aug: AugmentSettings,
                       settings: RendererSettings, workers: int = 1, test_keys=(), fold=None) -> RenderedSet:
    """The renderer's synthetic images (and their twins) of real images: ``items`` [N] their render
    arguments (:func:`pool_items`), ``images`` uint8 [N, S, S, 3] the images themselves (each item
    must render to its image: a guard against a pool and items out of step), ``keys`` [N] their
    content keys. ``aug.k`` images per method and image; raises
    :class:`dapper.augment.LeakageError` when a source is one of ``test_keys``."""
    check_no_leakage(keys, test_keys, fold)
    if not len(items):
        size = images.shape[1] if images.ndim == 4 else 64
        empty = np.zeros((0, size, size, 3), np.uint8)
        return RenderedSet(SyntheticSet(empty, np.zeros(0, np.int64), pd.DataFrame()), empty)
    size = int(images.shape[1])
    if len(items) != len(images) or len(keys) != len(images):
        raise ValueError(f"{len(items)} render arguments and {len(keys)} keys for {len(images)} images")
    check = toycars.render_items(items, size, workers)
    bad = [k for k, r, im in zip(keys, check, images) if not np.array_equal(r.image, im)]
    if bad:
        raise ValueError(f"{len(bad)} of {len(images)} images are not what their render arguments draw (first: "
                         f"{bad[0]}); the pool and its items are out of step (a pool of another seed or size?)")
    views, rows = [], []
    for item, key in zip(items, keys):
        for method in methods:
            for v in _views(item, key, method, aug, settings):
                views.append(v)
                rows.append({"synthetic_key": f"{key}-renderer-{method}-{v['index']}", "source_key": key,
                             "label": int(item["label"]), "fold": fold, "method": method, "index": v["index"],
                             "degrees": v["degrees"], "asked_degrees": v["degrees"], "yaw": v["yaw"] % 360.0,
                             "elevation": v["elevation"], "background_seed": v["background_seed"],
                             "colour": tuple(round(c, 4) for c in v["spec"].colour), "u": v["u"],
                             "seed": aug.seed, "compose": "renderer"})
    twins = [{**v, "spec": toycars.target_spec(_twin(v["label"]), v["spec"].colour)} for v in views]
    drawn = toycars.render_items(views + twins, size, workers)
    n = len(views)
    clean = SyntheticSet(np.stack([r.image for r in drawn[:n]]), np.array([v["label"] for v in views], np.int64),
                         pd.DataFrame(rows))
    return RenderedSet(clean, np.stack([r.image for r in drawn[n:]]))
