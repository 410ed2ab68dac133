"""Synthetic training images from projected real images: random W perturbation, pose rotation, both.

For each real *training* image, given its projection ``ws`` ``[num_ws, w_dim]`` in the frozen
generator's latent space, :func:`augment_images` makes ``k`` new images per method:

* ``perturb``: ``w + strength * std * eps`` with ``eps ~ N(0, I)`` drawn per image, ``std`` the
  per-dimension standard deviation of W estimated from mapping samples (so ``strength`` is in
  whitened W units: 1.0 moves each coordinate by one W standard deviation). The same offset is
  added to every ``ws`` row (a move in W), or only to rows ``layers = (start, stop)`` (W+).
* ``rotate``: the pose direction added with the coefficients of the set (the paper: -30, -20,
  20, 30; the unedited 0 is the reconstruction itself), in degrees by default or as raw
  coefficients. Degrees go through the direction's calibration: the annotator's measured response
  (``Direction.coefficients_for``: a turn that is steep near 0 and saturates still makes the degrees
  asked for), else its ``degrees_per_unit``. With ``settings.response == "image"`` each image is asked
  through its own response, read by the pose annotator on its projection
  (:func:`dapper.directions.own_responses`): how far an edit turns depends on the view it starts from.
* ``perturb+rotate``: each perturbed latent also rotated.

**Pose check** (``settings.pose_check``, method v2): the method's own pose annotator reads each
rotated image and the image it was rotated from; an edit whose read turn misses the intended degrees
by more than ``pose_tolerance`` of them (at least ``pose_tolerance_min_deg``), a front/back flip or
no turn at all, is redone at half the amount, then dropped for the unrotated latent
(:func:`pose_checked_edits`). The manifest's ``pose_factor`` says which (1, 0.5 or 0; empty when
unchecked) and its coefficient and degrees are those of the edit made. Only the annotator judges,
and it reads the generated image: a residual image of a dropped edit is the real image itself.

Each synthetic image is either the generator's image of the edited latent (``compose=
"generated"``, the paper) or the real image plus the change the edit makes to the generator's
reconstruction, ``clip(x + G(w') - G(w))`` (``compose="residual"``): when the generator cannot
redraw a class's fine details, the residual keeps the real ones and adds only what the edit changed.

Randomness is a pure function of ``(settings.seed, image key, method)``, so an image's synthetic
set is the same whichever fold or batch it is made in, and is cached per image.

The study's rule: synthetic images for a fold come only from that fold's training images.
:func:`check_no_leakage` raises :class:`LeakageError` when any source is a test-fold image; every
entry point that knows the test keys calls it before making or handing out images.

Command line (``python -m dapper augment``): reads projections from an ``.npz`` (``ws``
``[N, num_ws, w_dim]``, ``keys`` ``[N]``, optional ``labels`` ``[N]`` and ``test_keys``) and
writes a dataset folder: ``images/<label>/<synthetic_key>.png``, ``images.npy``,
``manifest.csv`` (source key, fold, method, parameters, generator hash) and ``info.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm.auto import tqdm

from dapper.data.images import to_uint8
from dapper.directions import apply_direction as default_apply_direction
from dapper.directions import load_or_fit_pose_direction, own_responses, wrap_deg
from dapper.inversion.latents import w_statistics
from dapper.judges.annotators import load_pose_annotator
from dapper.stylegan2 import synthesize
from dapper.utils import atomic_save, cache_dir, image_key, instrument_id, read_cached_arrays, weights_hash

__all__ = [
    "METHODS", "AugmentSettings", "LeakageError", "check_no_leakage", "image_keys",
    "perturb_ws", "synthetic_latents", "pose_checked_edits", "annotator_id", "SyntheticSet",
    "augment_images", "write_dataset", "read_dataset", "direction_id", "describe_settings", "turns_each",
    "read_projections", "pose_models",
]

METHODS = ("perturb", "rotate", "perturb+rotate")
COMPOSITIONS = ("generated", "residual")
RESPONSES = ("direction", "image")  # AugmentSettings.response
MANIFEST_COLUMNS = ["synthetic_key", "source_key", "label", "fold", "method", "index", "strength", "layer_start",
                    "layer_stop", "coefficient", "degrees", "asked_degrees", "response", "pose_factor", "seed",
                    "generator_hash", "direction_id", "compose"]
# Bumped when how an image's own response is read changes (dapper.directions.own_responses), so that
# synthetic sets made through an earlier reading are never reused
OWN_RESPONSE_VERSION = 1


class LeakageError(ValueError):
    """A synthetic image would derive from a test-fold image."""


def check_no_leakage(source_keys: Iterable[str], test_keys: Iterable[str], fold=None) -> None:
    """Raise :class:`LeakageError` if any source image key is also a test-fold image key."""
    leaked = sorted(set(map(str, source_keys)) & set(map(str, test_keys)))
    if leaked:
        where = "" if fold is None else f" of fold {fold}"
        shown = ", ".join(leaked[:5]) + (" ..." if len(leaked) > 5 else "")
        raise LeakageError(f"{len(leaked)} synthetic source image(s) are test images{where}: {shown}; "
                           "synthetic images may only come from the fold's training images")


def image_keys(images: np.ndarray) -> list[str]:
    """:func:`dapper.utils.image_key` of each image in uint8 [N, H, W, 3]."""
    return [image_key(im) for im in images]


def perturb_ws(ws: torch.Tensor, std: torch.Tensor, strength: float, eps: torch.Tensor,
               layers: tuple[int, int] | None = None) -> torch.Tensor:
    """``ws + strength * std * eps`` on the rows ``layers = (start, stop)`` (all rows when None).

    ws: float [N, num_ws, w_dim]; std: [w_dim]; eps: [N, w_dim] (one offset per image, shared by the
    rows it touches). Returns a new tensor of the shape of ``ws``.
    """
    if ws.ndim != 3 or eps.shape != (ws.shape[0], ws.shape[2]):
        raise ValueError(f"ws must be [N, num_ws, w_dim] and eps [N, w_dim], got {tuple(ws.shape)} and "
                         f"{tuple(eps.shape)}")
    start, stop = (0, ws.shape[1]) if layers is None else layers
    if not 0 <= start < stop <= ws.shape[1]:
        raise ValueError(f"layers {layers} must be a range within the {ws.shape[1]} rows of ws")
    out = ws.clone()
    out[:, start:stop] += (strength * std.to(ws) * eps.to(ws))[:, None, :]
    return out


@dataclass(frozen=True)
class AugmentSettings:
    """What :func:`augment_images` makes: ``k`` images per method per real image.

    strength: perturbation size in whitened W units; layers: ``(start, stop)`` rows of ``ws``
    to perturb (None: all, a move in W); coefficients: rotation amounts, in degrees when
    ``units == "degrees"`` (converted through the direction's measured response,
    ``Direction.coefficients_for``, or else its ``degrees_per_unit``) else raw direction
    coefficients. With ``k`` below the number of coefficients each image gets a random subset;
    above it, they repeat (with fresh perturbations for ``perturb+rotate``). ``response``: in degrees,
    ask every image through the direction's measured response (``"direction"``) or through each
    image's own, read by the pose annotator on its projection (``"image"``, which needs the annotator;
    a direction without a measured response asks every image through its calibration).
    """

    k: int = 4
    strength: float = 0.5
    layers: tuple[int, int] | None = None
    coefficients: tuple[float, ...] = (-30.0, -20.0, 20.0, 30.0)
    units: str = "degrees"
    seed: int = 0
    w_samples: int = 10000
    noise_mode: str = "const"
    pose_check: bool = False
    pose_tolerance: float = 0.5
    pose_tolerance_min_deg: float = 5.0
    response: str = "direction"

    def __post_init__(self):
        if self.units not in ("degrees", "coefficient"):
            raise ValueError(f"units must be 'degrees' or 'coefficient', got {self.units!r}")
        if self.response not in RESPONSES:
            raise ValueError(f"response must be one of {RESPONSES}, got {self.response!r}")
        if self.k < 1 or self.strength < 0:
            raise ValueError(f"k must be >= 1 and strength >= 0, got k={self.k}, strength={self.strength}")
        if not (self.pose_tolerance > 0 and self.pose_tolerance_min_deg >= 0):
            raise ValueError(f"pose_tolerance must be > 0 and pose_tolerance_min_deg >= 0, got "
                             f"{self.pose_tolerance} and {self.pose_tolerance_min_deg}")

    def signature(self) -> str:
        """Hash of everything that changes the generated images (for cache keys)."""
        fields = asdict(self)
        if fields["response"] == "direction" or self.units != "degrees":  # no own response: as before there was
            del fields["response"]                                          # a choice, so earlier caches stay valid
        else:
            fields["own_response_version"] = OWN_RESPONSE_VERSION
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def pose_checked_edits(G, base: torch.Tensor, edited: torch.Tensor, degrees, annotator,
                       tolerance: float = 0.5, min_deg: float = 5.0, base_yaw=None, batch_size: int = 64,
                       noise_mode: str = "const", edited_images=None,
                       half_degrees=None) -> tuple[torch.Tensor, np.ndarray]:
    """Rotations the pose annotator agrees with (the module docstring's pose check).

    base, edited: latents [M, num_ws, w_dim] before and after a rotation meant to turn each vehicle
    by ``degrees`` [M] (in the annotator's degrees: the direction is calibrated by it). An edit is
    kept when the annotator's yaw of it minus that of the base is within ``max(min_deg, tolerance *
    |degrees|)`` of ``degrees`` and nearer to it than to no turn; otherwise the half edit is tried,
    and when that misses too the base is kept. ``base_yaw`` [M] and ``edited_images`` [M, C, R, R]:
    the annotator's yaw of the base images and the images of ``edited``, when already made.
    ``half_degrees`` [M]: the turn the half edit means to make (default ``degrees / 2``; a direction
    whose turn is not linear knows better, ``Direction.degrees_for``). Returns the images (float [M,
    C, R, R] in [-1, 1]) and each edit's factor (1, 0.5 or 0). Edits of 0 degrees are kept as they
    are.
    """
    degrees = np.asarray(degrees, dtype=np.float64)
    if not np.isfinite(degrees).all():
        raise ValueError("the pose check needs the degrees each edit means to turn: a direction calibrated in degrees")
    m = len(base)
    half_degrees = degrees / 2 if half_degrees is None else np.asarray(half_degrees, dtype=np.float64)
    if edited.shape != base.shape or not degrees.shape == half_degrees.shape == (m,):
        raise ValueError(f"edited {tuple(edited.shape)} must match base {tuple(base.shape)} and degrees "
                         f"{degrees.shape} / half_degrees {half_degrees.shape} be [{m}]")
    if base_yaw is None:
        base_yaw = annotator.predict(synthesize(G, base, batch_size, noise_mode))
    base_yaw = np.asarray(base_yaw, np.float64)
    images = synthesize(G, edited, batch_size, noise_mode) if edited_images is None else edited_images.clone()
    factor = np.ones(m)
    pending = np.flatnonzero(degrees != 0)
    for f in (1.0, 0.5):
        if not len(pending):
            break
        if f != 1.0:
            lat = base[pending] + f * (edited[pending] - base[pending])
            images[pending] = synthesize(G, lat, batch_size, noise_mode)
        yaw = np.asarray(annotator.predict(images[pending]), np.float64)
        want = (degrees if f == 1.0 else half_degrees)[pending]
        turn = wrap_deg(yaw - base_yaw[pending])
        miss = np.abs(wrap_deg(turn - want))
        ok = (miss <= np.maximum(min_deg, tolerance * np.abs(want))) & (miss < np.abs(turn))
        factor[pending[ok]] = f
        pending = pending[~ok]
    if len(pending):
        images[pending] = synthesize(G, base[pending], batch_size, noise_mode)
        factor[pending] = 0.0
    return images, factor


def describe_settings(settings: AugmentSettings, layers: tuple[int, int] | None = None) -> str:
    """The synthetic images ``settings`` make, in words (for captions: generated, never typed);
    ``layers``: the rows the pose direction moves, when known."""
    rows = ("every W+ row (a move in W)" if settings.layers is None
            else f"W+ rows {settings.layers[0]}-{settings.layers[1]}")
    turns = ", ".join(f"{c:+g}" for c in sorted(settings.coefficients))
    text = (f"{settings.k} per real image and method; perturbation of strength {settings.strength:g} W standard "
            f"deviations on {rows}; rotation by {turns} "
            + ("annotator degrees" if settings.units == "degrees" else "direction units"))
    if layers is not None:
        text += f" along the pose direction on rows {layers[0]}-{layers[1]}"
    if settings.units == "degrees":
        text += (", each image asked through its own response (the pose annotator reads the image's own sweep; an "
                 "image it does not read turning both ways, through the direction's measured response)"
                 if settings.response == "image" else ", asked through the direction's measured response")
    if settings.pose_check:
        text += (f"; pose-checked: an edit the annotator reads more than {settings.pose_tolerance:.0%} (at least "
                 f"{settings.pose_tolerance_min_deg:g} deg) off its degrees is halved, then replaced by the unrotated "
                 "image")
    return text


def _method_rng(seed: int, key: str, method: str) -> np.random.Generator:
    key_bits = int(hashlib.sha1(str(key).encode()).hexdigest()[:15], 16)
    return np.random.default_rng([int(seed), key_bits, METHODS.index(method)])


def _turns(direction, coefficients) -> np.ndarray:
    """Annotator degrees the direction's ``coefficients`` turn (its measured response when it has
    one, else ``degrees_per_unit``; NaN when never calibrated)."""
    c = np.asarray(coefficients, dtype=np.float64)
    if hasattr(direction, "degrees_for"):
        return direction.degrees_for(c)
    per_unit = getattr(direction, "degrees_per_unit", None)
    return c * (math.nan if per_unit is None else float(per_unit))


def _per_image(direction, n: int) -> list:
    """``direction`` for each of ``n`` images: a list of one per image as it is, else repeated."""
    if isinstance(direction, (list, tuple)):
        if len(direction) != n:
            raise ValueError(f"{len(direction)} directions for {n} images")
        return list(direction)
    return [direction] * n


def _has_response(direction) -> bool:
    """Whether ``direction`` carries a measured response to ask for degrees through."""
    return getattr(direction, "response", lambda: None)() is not None


def _all_one(directions: Sequence) -> bool:
    """Whether every entry is the same direction object (one response read for all)."""
    return all(d is directions[0] for d in directions)


def _response_kind(direction) -> str | None:
    """How ``direction`` asks for degrees, for the manifest: ``"own"`` (an image's own response,
    :func:`dapper.directions.own_responses`), ``"direction"`` (the direction's measured one),
    ``"unit"`` (its average unit) or None (uncalibrated)."""
    if _has_response(direction):
        by = str(direction.metadata["response"].get("by", ""))
        return "own" if by.endswith("own image") else "direction"
    return "unit" if getattr(direction, "degrees_per_unit", None) else None


def turns_each(directions: Sequence, coefficients) -> np.ndarray:
    """:func:`_turns` of ``coefficients`` [M], the i-th through ``directions[i]`` (read together when
    they are all one direction)."""
    c = np.asarray(coefficients, dtype=np.float64)
    if _all_one(directions):
        return _turns(directions[0], c)
    return np.array([float(_turns(d, ci)) for d, ci in zip(directions, c)])


def _raw_coefficients(settings: AugmentSettings, direction) -> tuple[np.ndarray, np.ndarray]:
    """The direction's coefficients of the settings' rotations and the annotator degrees each turns
    (NaN when the direction was never calibrated). In degrees, a direction with a measured response
    (``Direction.coefficients_for``) is asked through it, so a nonlinear turn still makes the
    degrees asked for; otherwise through ``degrees_per_unit``."""
    per_unit = getattr(direction, "degrees_per_unit", None)
    per_unit = math.nan if per_unit is None else float(per_unit)
    values = np.asarray(settings.coefficients, dtype=np.float64)
    if settings.units == "degrees":
        if not math.isfinite(per_unit) or per_unit == 0:
            raise ValueError("rotation in degrees needs a calibrated direction (degrees_per_unit); "
                             "use units='coefficient' for raw coefficients")
        coeffs = direction.coefficients_for(values) if hasattr(direction, "coefficients_for") else values / per_unit
    else:
        coeffs = values
    return coeffs, _turns(direction, coeffs)


def synthetic_latents(ws: torch.Tensor, keys: Sequence[str], method: str, settings: AugmentSettings,
                      std: torch.Tensor | None = None, direction=None,
                      apply_direction: Callable | None = None, return_base: bool = False):
    """The ``k`` latents of ``method`` for each image: ws [N, num_ws, w_dim] -> [N, k, num_ws, w_dim],
    with the parameters of each (``params[i][j]``: strength, layers, coefficient, degrees,
    pose_factor). With ``return_base`` also the latents before any rotation (same shape).
    ``direction`` may be a list, one per image: the same direction, each asked through its own
    response (:func:`dapper.directions.own_responses`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    n, k = len(ws), settings.k
    perturb = "perturb" in method
    rotate = "rotate" in method
    if perturb and std is None:
        raise ValueError("perturbation needs the W standard deviation (w_statistics)")
    rngs = [_method_rng(settings.seed, key, method) for key in keys]
    base = ws[:, None].expand(n, k, *ws.shape[1:]).reshape(n * k, *ws.shape[1:])
    params = [[{"strength": 0.0, "layer_start": None, "layer_stop": None, "coefficient": 0.0, "degrees": 0.0,
                "asked_degrees": None, "response": None, "pose_factor": None} for _ in range(k)] for _ in range(n)]
    if perturb:
        eps = torch.from_numpy(np.stack([r.standard_normal((k, ws.shape[2])) for r in rngs]).astype(np.float32))
        base = perturb_ws(base, std, settings.strength, eps.reshape(n * k, -1), settings.layers)
        start, stop = settings.layers if settings.layers is not None else (0, ws.shape[1])
        for row in params:
            for p in row:
                p.update(strength=settings.strength, layer_start=start, layer_stop=stop)
    unrotated = base
    if rotate:
        if direction is None:
            raise ValueError("rotation needs a pose direction")
        if apply_direction is None:
            apply_direction = default_apply_direction
        each = _per_image(direction, n)
        table = [_raw_coefficients(settings, d) for d in each]
        coeffs = np.stack([t[0] for t in table])  # [N, n_c]
        turns = np.stack([t[1] for t in table])
        n_c = coeffs.shape[1]
        choice = np.stack([np.resize(r.permutation(n_c), k) for r in rngs])  # [N, k]
        shared = _all_one(each)  # one response: the same coefficients for every latent
        edited = apply_direction(base, each[0], [float(c) for c in coeffs[0]] if shared
                                 else np.repeat(coeffs, k, axis=0))  # [N*k, n_c, L, D]
        if edited.shape[:2] != (n * k, n_c):
            raise ValueError(f"apply_direction gave {tuple(edited.shape)}, expected [{n * k}, {n_c}, ...]")
        pick = torch.from_numpy(choice.reshape(-1)).long()
        base = edited[torch.arange(n * k), pick]
        asked = np.asarray(settings.coefficients, dtype=np.float64)
        for i, row in enumerate(params):
            how = _response_kind(each[i])
            for j, p in enumerate(row):
                p.update(coefficient=float(coeffs[i, choice[i, j]]), degrees=float(turns[i, choice[i, j]]),
                         asked_degrees=float(asked[choice[i, j]]) if settings.units == "degrees" else None,
                         response=how)
    out = base.reshape(n, k, *ws.shape[1:])
    return (out, params, unrotated.reshape(n, k, *ws.shape[1:])) if return_base else (out, params)


@dataclass
class SyntheticSet:
    """Synthetic images with their provenance: images uint8 [M, H, W, 3], labels int64 [M],
    manifest (pandas DataFrame, one row per image, columns ``MANIFEST_COLUMNS``)."""

    images: np.ndarray
    labels: np.ndarray
    manifest: object = field(repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def concat(parts: Sequence[SyntheticSet]) -> SyntheticSet:
        """One set holding every part's images, in order."""
        parts = list(parts)
        return SyntheticSet(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                            pd.concat([p.manifest for p in parts], ignore_index=True))

    def select(self, source_keys: Iterable[str] | None = None, methods: Iterable[str] | None = None,
               test_keys: Iterable[str] = (), fold=None, compose: str | None = None) -> SyntheticSet:
        """The images made from ``source_keys`` by ``methods`` (and ``compose``); raises
        LeakageError if any of them comes from ``test_keys``."""
        m = self.manifest
        keep = np.ones(len(m), bool)
        if source_keys is not None:
            keep &= m["source_key"].isin(set(map(str, source_keys))).to_numpy()
        if methods is not None:
            keep &= m["method"].isin(list(methods)).to_numpy()
        if compose is not None:
            # Sets made before compositions existed hold generated images only.
            made = m["compose"].to_numpy() if "compose" in m.columns else np.full(len(m), "generated")
            keep &= made == compose
        check_no_leakage(m.loc[keep, "source_key"], test_keys, fold)
        idx = np.flatnonzero(keep)
        return SyntheticSet(self.images[idx], self.labels[idx], m.iloc[idx].reset_index(drop=True))


def _empty_set(resolution: int) -> SyntheticSet:
    return SyntheticSet(np.zeros((0, resolution, resolution, 3), np.uint8), np.zeros(0, np.int64),
                        pd.DataFrame(columns=MANIFEST_COLUMNS))


def annotator_id(annotator) -> str:
    """A short id of a pose annotator for cache keys: its checkpoint's hash when it records one (the
    embedded annotators; ids as before), else :func:`dapper.utils.instrument_id` (a user's
    estimator: its source and weights, never its spec string)."""
    config = getattr(annotator, "config", None) or {}
    what = config["sha256"] if config.get("sha256") else instrument_id(annotator)
    return hashlib.sha1(str(what).encode()).hexdigest()[:8]


def direction_id(direction, apply_direction, ws_shape) -> str:
    if direction is None:
        return ""
    # Whatever the direction's representation, its unit edit of a zero latent identifies it.
    zero = torch.zeros(1, *ws_shape[1:])
    delta = apply_direction(zero, direction, [1.0])[0, 0]
    h = hashlib.sha1(delta.detach().cpu().float().contiguous().numpy().tobytes())
    h.update(repr(getattr(direction, "degrees_per_unit", None)).encode())
    response = getattr(direction, "metadata", {}).get("response")
    if response:  # the degrees asked for go through it
        h.update(json.dumps([response["coefficients"], response["degrees"]]).encode())
    return h.hexdigest()[:12]


def augment_images(G: torch.nn.Module, ws: torch.Tensor, keys: Sequence[str], labels: Sequence[int],
                   methods: Sequence[str] = METHODS, settings: AugmentSettings | None = None, direction=None,
                   fold=None, test_keys: Iterable[str] = (), apply_direction: Callable | None = None,
                   w_std: torch.Tensor | None = None, cache: bool = True, batch_size: int = 64,
                   progress: bool = False, compose: str | Sequence[str] = "generated",
                   images: np.ndarray | None = None, pose_annotator=None, make_all: bool = True) -> SyntheticSet:
    """Synthetic images from real training images (see the module docstring).

    ws: float [N, num_ws, w_dim] projections of the images whose content keys are ``keys`` [N]
    (:func:`dapper.utils.image_key`) and classes ``labels`` [N]. ``test_keys``: the keys of the fold's test
    images; any overlap with ``keys`` raises :class:`LeakageError` before anything is made.
    ``cache``: per-image results are stored under ``cache_dir("synthetic", ...)`` keyed by
    generator hash, settings, direction and (with the pose check) the annotator, and reused (only
    uncached images are synthesised).
    ``compose``: ``"generated"``, ``"residual"`` or both (a list); residual needs the real
    ``images`` (uint8 [N, R, R, 3] at the generator's resolution). ``pose_annotator``: the method's
    pose annotator (``predict(images) -> yaw``), needed by ``settings.pose_check`` and
    ``settings.response == "image"``. ``make_all``: with the cache, make every method the inputs allow,
    so that a later call asking for another finds it (False: only ``methods``, for a generator no
    other call will use).
    Returns ``len(compose) * len(methods) * k`` images per real image, labelled with its class.
    """
    settings = settings or AugmentSettings()
    keys = [str(k) for k in keys]
    labels = np.asarray(labels, dtype=np.int64)
    if not len(ws) == len(keys) == len(labels):
        raise ValueError(f"ws, keys and labels differ in length: {len(ws)}, {len(keys)}, {len(labels)}")
    check_no_leakage(keys, test_keys, fold)
    methods = list(methods)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {METHODS}")
    composes = [compose] if isinstance(compose, str) else list(compose)
    for c in composes:
        if c not in COMPOSITIONS:
            raise ValueError(f"unknown composition {c!r}; choose from {COMPOSITIONS}")
    if "residual" in composes:
        if images is None:
            raise ValueError("compose='residual' needs the real images")
        images = np.asarray(images)
        if images.shape != (len(keys), G.img_resolution, G.img_resolution, 3):
            raise ValueError(f"images must be uint8 [{len(keys)}, {G.img_resolution}, {G.img_resolution}, 3], "
                             f"got {tuple(images.shape)}")
    if not keys or not methods:
        return _empty_set(G.img_resolution)
    if any("rotate" in m for m in methods) and apply_direction is None:
        apply_direction = default_apply_direction
    ws = torch.as_tensor(ws).float().cpu()
    g_hash = weights_hash(G)
    d_id = direction_id(direction, apply_direction, ws.shape) if any("rotate" in m for m in methods) else ""
    if settings.pose_check and any("rotate" in m for m in methods) and pose_annotator is None:
        raise ValueError("settings.pose_check needs the method's pose annotator (pose_annotator=)")
    # each image through its own response needs one to read it at (a direction without: its calibration)
    own = settings.response == "image" and settings.units == "degrees" and _has_response(direction)
    if own and any("rotate" in m for m in methods) and pose_annotator is None:
        raise ValueError("settings.response='image' reads each image's turn with the method's pose annotator "
                         "(pose_annotator=)")
    reads = (settings.pose_check or own) and pose_annotator is not None
    a_id = f"-{annotator_id(pose_annotator)}" if reads else ""
    folder = cache_dir("synthetic", f"{g_hash}-{settings.signature()}-{d_id or 'none'}{a_id}") if cache else None
    # The cache holds every method the inputs allow, so that a later call asking for another
    # method finds it; without a cache only what was asked is made.
    can_rotate = direction is not None and (pose_annotator is not None or not (settings.pose_check or own))
    compute = [m for m in METHODS if can_rotate or "rotate" not in m] if cache and make_all else methods
    compute = sorted(set(compute) | set(methods), key=METHODS.index)

    per_image: dict[str, dict] = {}
    todo = []
    for i, key in enumerate(keys):
        path = folder / f"{key}.npz" if folder is not None else None
        found = read_cached_arrays(path) if path is not None else None
        if found is not None and "params" in found:
            stored = {m: a for m, a in found.items() if m in METHODS}
            params = json.loads(str(found["params"]))
            recon = found.get("reconstruction")
            if all(m in stored for m in methods) and (recon is not None or "residual" not in composes):
                per_image[key] = {"images": stored, "params": params, "reconstruction": recon}
                continue
        todo.append(i)
    if todo and w_std is None and any("perturb" in m for m in compute):
        w_std = w_statistics(G, settings.w_samples, seed=settings.seed, g_hash=g_hash).std
    if todo:
        bar = None
        if progress:
            bar = tqdm(total=len(todo), desc="synthetic images", unit="img")
        chunk = max(1, batch_size // (settings.k * len(METHODS)))
        for a in range(0, len(todo), chunk):
            idx = todo[a:a + chunk]
            sub_keys = [keys[i] for i in idx]
            made = {}
            made_params = {}
            recon_float = synthesize(G, ws[idx], batch_size, settings.noise_mode)
            recon = to_uint8(recon_float)
            chunk_direction = direction
            if own and any("rotate" in m for m in compute):
                chunk_direction, _ = own_responses(G, direction, pose_annotator, ws[idx], batch_size)
            each = [d for d in _per_image(chunk_direction, len(idx)) for _ in range(settings.k)]  # per latent
            for m in compute:
                if settings.pose_check and "rotate" in m:
                    lat, params, unrotated = synthetic_latents(ws[idx], sub_keys, m, settings, w_std, chunk_direction,
                                                               apply_direction, return_base=True)
                    wanted = np.array([p["degrees"] for row in params for p in row])
                    base_yaw = (np.repeat(np.asarray(pose_annotator.predict(recon_float)), settings.k)
                                if m == "rotate" else None)  # the unrotated latents are the projections
                    made_coeffs = np.array([p["coefficient"] for row in params for p in row])
                    checked, factor = pose_checked_edits(
                        G, unrotated.reshape(-1, *lat.shape[2:]), lat.reshape(-1, *lat.shape[2:]), wanted,
                        pose_annotator, settings.pose_tolerance, settings.pose_tolerance_min_deg, base_yaw,
                        batch_size, settings.noise_mode, half_degrees=turns_each(each, made_coeffs / 2))
                    imgs = to_uint8(checked)
                    edits = made_coeffs * factor  # the edits made; their turns read off the response at once
                    for p, f, c, t in zip((p for row in params for p in row), factor, edits, turns_each(each, edits)):
                        p.update(pose_factor=float(f), coefficient=float(c), degrees=float(t))
                else:
                    lat, params = synthetic_latents(ws[idx], sub_keys, m, settings, w_std, chunk_direction,
                                                    apply_direction)
                    imgs = to_uint8(synthesize(G, lat.reshape(-1, *lat.shape[2:]), batch_size, settings.noise_mode))
                made[m] = imgs.reshape(len(idx), settings.k, *imgs.shape[1:])
                made_params[m] = params
            for j, key in enumerate(sub_keys):
                entry = {"images": {m: made[m][j] for m in made},
                         "params": {m: made_params[m][j] for m in made}, "reconstruction": recon[j]}
                per_image[key] = entry
                if folder is not None:
                    arrays = dict(entry["images"], params=np.array(json.dumps(entry["params"])),
                                  reconstruction=recon[j])
                    atomic_save(folder / f"{key}.npz", lambda p, arrays=arrays: np.savez(p, **arrays))
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()

    out_images, out_labels, rows = [], [], []
    for i, (key, label) in enumerate(zip(keys, labels)):
        entry = per_image[key]
        for c in composes:
            for m in methods:
                generated = entry["images"][m]
                if c == "residual":
                    change = generated.astype(np.int16) - entry["reconstruction"].astype(np.int16)
                    generated = np.clip(images[i].astype(np.int16)[None] + change, 0, 255).astype(np.uint8)
                for j in range(settings.k):
                    p = entry["params"][m][j]
                    out_images.append(generated[j])
                    out_labels.append(int(label))
                    suffix = "" if c == "generated" else f"-{c}"
                    rows.append({"synthetic_key": f"{key}-{m}-{j}{suffix}", "source_key": key, "label": int(label),
                                 "fold": fold, "method": m, "index": j, **p, "seed": settings.seed,
                                 "generator_hash": g_hash, "direction_id": d_id, "compose": c})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return SyntheticSet(np.stack(out_images), np.asarray(out_labels, np.int64), manifest)


def write_dataset(out_dir: str | Path, synthetic: SyntheticSet, class_names: Sequence[str] | None = None,
                  info: dict | None = None, png: bool = True) -> Path:
    """Write ``synthetic`` as a dataset folder: ``images.npy`` (uint8 [M, H, W, 3]),
    ``manifest.csv``, ``info.json`` and, with ``png``, ``images/<class>/<synthetic_key>.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if png:
        for im, label, key in zip(synthetic.images, synthetic.labels, synthetic.manifest["synthetic_key"]):
            name = class_names[label] if class_names is not None else f"{int(label):03d}"
            folder = out / "images" / str(name).replace("/", "_")
            folder.mkdir(parents=True, exist_ok=True)
            atomic_save(folder / f"{key}.png", lambda p, im=im: Image.fromarray(im).save(p))
    atomic_save(out / "images.npy", lambda p: np.save(p, synthetic.images))
    atomic_save(out / "manifest.csv", lambda p: synthetic.manifest.to_csv(p, index=False))
    record = {"count": len(synthetic), "columns": MANIFEST_COLUMNS,
              "class_names": list(class_names) if class_names is not None else None, **(info or {})}
    atomic_save(out / "info.json", lambda p: p.write_text(json.dumps(record, indent=1, default=str) + "\n"))
    return out


def read_dataset(folder: str | Path) -> SyntheticSet:
    """Read a folder written by :func:`write_dataset`."""
    folder = Path(folder)
    manifest = pd.read_csv(folder / "manifest.csv", dtype={"source_key": str, "synthetic_key": str})
    images = np.load(folder / "images.npy")
    return SyntheticSet(images, manifest["label"].to_numpy(np.int64), manifest)


def read_projections(path: str | Path) -> tuple[torch.Tensor, list[str], np.ndarray, list[str]]:
    """Projections saved as ``.npz``: ``ws`` float32 [N, num_ws, w_dim], ``keys`` [N] (image content
    keys), ``labels`` int [N] (zeros when the file has none) and the ``test_keys`` no synthetic image
    may come from ([] when none)."""
    with np.load(path, allow_pickle=False) as f:
        ws = torch.from_numpy(f["ws"]).float()
        keys = [str(k) for k in f["keys"]]
        labels = f["labels"] if "labels" in f.files else np.zeros(len(keys), np.int64)
        test_keys = [str(k) for k in f["test_keys"]] if "test_keys" in f.files else []
    return ws, keys, labels, test_keys


def pose_models(G, methods: Sequence[str], settings: AugmentSettings, profile: str = "quick", device=None):
    """``(direction, annotator)`` that :func:`augment_images` needs for ``methods``: the pose direction
    (stored, else fitted under ``profile``) when a method rotates, and the embedded pose annotator when
    rotations are checked or asked through each image's own response; None for what is not needed."""
    direction = annotator = None
    if any("rotate" in m for m in methods):
        direction = load_or_fit_pose_direction(G, profile)
        if settings.pose_check or settings.response == "image":
            annotator = load_pose_annotator(device=device)
    return direction, annotator
