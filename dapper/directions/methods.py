"""Pose directions in W: the paper's supervised direction and four baselines, and the edits they make.

The paper (Manjunath et al., 2020) samples 25,000 generated images, keeps those a vehicle detector
accepts, labels their pose with an estimator trained on outside data, fits a linear model from W
to pose, thresholds its weights and moves projected images along them with coefficients
-30, -20, 0, 20, 30. Here:

* :func:`annotate_samples` generates and labels the images (detector and pose annotator of
  :mod:`dapper.judges.annotators`, never the oracles);
* :func:`paper_pose_direction`: ridge regression from W to ``(sin yaw, cos yaw)`` (yaw is
  circular: 359 and 1 degrees are neighbours), whose angle gradient at a *reference yaw* (the view
  the edited images show) is thresholded and used as the direction;
* beyond the paper, ``ridge-local``: the same ridge fit only on samples near the reference view,
  unthresholded;
* baselines on the same samples: :func:`interfacegan_direction` (linear SVM on the extremes of the
  yaw offset, colour and size projected out), :func:`sefa_direction` (closed form from the style
  affine weights), :func:`ganspace_direction` (PCA on W), :func:`random_direction`;
* every direction can edit only a range of W+ rows (``layers``).

Units. A :class:`Direction` is a unit vector ``v`` times ``scale``; coefficient ``c`` moves the
edited rows by ``c * scale * v``. Three scales are used: ``"w"`` (one unit = a W distance of 1),
``"paper"`` (one unit = the step that raises the paper's linear pose predictor by one degree at
the reference yaw; the paper's -30..30 are read in these units) and ``"degrees"`` (one unit = one
degree of yaw measured by the annotator on generated samples, :mod:`dapper.directions.calibrate`).

Yaw convention of :mod:`dapper.data.toycars`: 0 front, 90 right side (nose to the image's right),
180 rear, 270 left side; positive coefficients increase yaw.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV
from sklearn.svm import LinearSVC
from tqdm.auto import tqdm

from dapper.stylegan2 import synthesize
from dapper.utils import atomic_save, cache_dir, instrument_id, read_cached_arrays, weights_hash

PAPER_COEFFICIENTS = (-30, -20, 0, 20, 30)
# The view the edited images show: the toycars training pool holds front-right three-quarter
# views (yaw 28-52 deg); catalogue photos such as Stanford Cars' are mostly of that kind too.
DEFAULT_REFERENCE_YAW = 40.0


# ---------------------------------------------------------------------------------------------
# Angles
# ---------------------------------------------------------------------------------------------


def wrap_deg(x):
    """Angle(s) in degrees -> the same angle in [-180, 180)."""
    return (np.asarray(x, dtype=np.float64) + 180.0) % 360.0 - 180.0


def circular_mean_deg(yaw) -> float:
    """Mean direction of angles in degrees, in [0, 360) (359 and 1 average to 0, not 180)."""
    r = np.deg2rad(np.asarray(yaw, dtype=np.float64))
    return float(np.rad2deg(math.atan2(np.sin(r).mean(), np.cos(r).mean())) % 360.0)


def unwrap_deg(yaw, axis: int = -1) -> np.ndarray:
    """Remove 360-degree wraps along ``axis`` so consecutive readings differ by < 180 degrees."""
    return np.unwrap(np.asarray(yaw, dtype=np.float64), period=360.0, axis=axis)


# ---------------------------------------------------------------------------------------------
# Directions and editing
# ---------------------------------------------------------------------------------------------


@dataclass
class Direction:
    """A latent direction: ``vector`` (unit norm, float32 [w_dim]) times ``scale``, applied to the
    W+ rows ``layers = (start, stop)``.

    ``units``: what one coefficient unit is (``"w"``, ``"paper"`` or ``"degrees"``, see the module
    docstring; ``"uncalibrated"`` after moving a calibrated step to other rows).
    ``degrees_per_unit``: yaw change per unit measured by the annotator on generated samples (1.0
    once calibrated; None if never measured). ``metadata``: how it was made (method settings,
    sample counts, calibration, other scales such as ``paper_scale``) and, once calibrated, the
    annotator's ``response``: the median yaw change it read at each coefficient of a sweep
    (``{"coefficients": [...], "degrees": [...]}``, monotone), which :meth:`coefficients_for`
    inverts: a turn that is steep near 0 and saturates further out is then still asked for in
    degrees.
    """

    vector: np.ndarray
    layers: tuple[int, int]
    method: str
    scale: float = 1.0
    units: str = "w"
    degrees_per_unit: float | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        v = np.asarray(self.vector, dtype=np.float64).reshape(-1)
        norm = np.linalg.norm(v)
        if not np.isfinite(norm) or norm == 0:
            raise ValueError("a direction needs a finite, non-zero vector")
        self.vector = (v / norm).astype(np.float32)
        self.layers = (int(self.layers[0]), int(self.layers[1]))
        if not 0 <= self.layers[0] < self.layers[1]:
            raise ValueError(f"layers must be (start, stop) with 0 <= start < stop, got {self.layers}")

    @property
    def w_dim(self) -> int:
        return int(self.vector.shape[0])

    def step(self) -> np.ndarray:
        """The W offset of one coefficient unit: float32 [w_dim]."""
        return (self.vector * np.float32(self.scale)).astype(np.float32)

    def replace(self, **changes) -> Direction:
        changes["metadata"] = dict(changes.get("metadata", self.metadata))  # a copy, never shared
        return dataclasses.replace(self, **changes)

    def with_layers(self, start: int, stop: int) -> Direction:
        """The same step applied to other W+ rows. Degrees do not carry over (fewer rows turn the
        car less), so the result is ``"uncalibrated"``: run :func:`calibrate_direction` again."""
        units = self.units if self.units in ("w", "paper") else "uncalibrated"
        out = self.replace(layers=(start, stop), degrees_per_unit=None, units=units)
        out.metadata.pop("response", None)
        return out

    def response(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The annotator's measured response ``(coefficients, degrees)`` in this direction's units,
        coefficients ascending and holding 0, degrees never decreasing and 0 there; None when there is
        none (never measured, no turn either way, or a turn against the coefficient's sign)."""
        r = self.metadata.get("response")
        if not r:
            return None
        c = np.asarray(r["coefficients"], dtype=np.float64)
        d = np.asarray(r["degrees"], dtype=np.float64)
        if (len(c) < 3 or c.shape != d.shape or not (np.diff(c) > 0).all() or not (np.diff(d) >= 0).all()
                or 0.0 not in c or not (d[-1] > 0 > d[0])):
            return None
        return c, d

    def coefficients_for(self, degrees) -> np.ndarray:
        """The coefficients that turn the vehicle by ``degrees`` (annotator degrees): by the measured
        :meth:`response` when there is one, the smallest edit that turns that far (interpolated
        between the sweep's coefficients; a turn beyond what the sweep reached is asked for where it
        first reached its furthest), else ``degrees / degrees_per_unit``."""
        degrees = np.asarray(degrees, dtype=np.float64)
        table = self.response()
        if table is not None:
            c, d = table
            j0 = int(np.flatnonzero(c == 0)[0])
            sides = ((c[j0:], d[j0:] - d[j0]), (-c[j0::-1], d[j0] - d[j0::-1]))  # each from 0 outwards, ascending
            out = np.zeros(degrees.shape)
            for i, t in np.ndenumerate(degrees):
                cs, ds = sides[0] if t >= 0 else sides[1]
                out[i] = _smallest_reaching(cs, ds, abs(float(t))) * (1.0 if t >= 0 else -1.0)
            return out
        if not self.degrees_per_unit:
            raise ValueError("direction is not calibrated: run calibrate_direction first")
        return degrees / float(self.degrees_per_unit)

    def degrees_for(self, coefficients) -> np.ndarray:
        """The turn in annotator degrees that ``coefficients`` make by the measured
        :meth:`response` (else ``coefficients * degrees_per_unit``; NaN when never calibrated)."""
        coefficients = np.asarray(coefficients, dtype=np.float64)
        table = self.response()
        if table is not None:
            return np.interp(coefficients, *table)
        return coefficients * (np.nan if self.degrees_per_unit is None else float(self.degrees_per_unit))

    def in_degrees(self) -> Direction:
        """Rescaled so one unit is one annotator degree (needs ``degrees_per_unit``)."""
        if self.degrees_per_unit is None:
            raise ValueError("direction is not calibrated: run calibrate_direction first")
        if self.units == "degrees":
            return self.replace()
        return self._rescaled(self.scale / self.degrees_per_unit, "degrees", 1.0)

    def in_paper_units(self) -> Direction:
        """Rescaled to the paper's units (see the module docstring), from ``metadata['paper_scale']``."""
        paper = self.metadata.get("paper_scale")
        if paper is None:
            raise ValueError(f"direction {self.method!r} has no paper_scale in its metadata")
        dpu = None if self.degrees_per_unit is None else self.degrees_per_unit * paper / self.scale
        return self._rescaled(float(paper), "paper", dpu)

    def _rescaled(self, scale: float, units: str, degrees_per_unit) -> Direction:
        """The same step in other units; a measured response moves to the new units' coefficients
        (dropped when they point the other way)."""
        out = self.replace(scale=scale, units=units, degrees_per_unit=degrees_per_unit)
        r = out.metadata.pop("response", None)
        ratio = self.scale / scale
        if r and ratio > 0:
            out.metadata["response"] = {**r, "coefficients": [float(c) * ratio for c in r["coefficients"]]}
        return out

    def to_dict(self) -> dict:
        return {"vector": [float(x) for x in self.vector], "layers": list(self.layers), "method": self.method,
                "scale": float(self.scale), "units": self.units,
                "degrees_per_unit": None if self.degrees_per_unit is None else float(self.degrees_per_unit),
                "metadata": _jsonable(self.metadata)}

    @classmethod
    def from_dict(cls, d: dict) -> Direction:
        return cls(np.asarray(d["vector"], np.float32), tuple(d["layers"]), d["method"], float(d["scale"]),
                   d.get("units", "w"), d.get("degrees_per_unit"), dict(d.get("metadata", {})))

    def save(self, path) -> Path:
        """JSON file (a few kB: the vector is ``w_dim`` floats), written atomically."""
        return atomic_save(Path(path), lambda p: p.write_text(json.dumps(self.to_dict(), indent=1) + "\n"))

    @classmethod
    def load(cls, path) -> Direction:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _smallest_reaching(cs: np.ndarray, ds: np.ndarray, t: float) -> float:
    """On one side of a response (``cs`` from 0 outwards, ``ds`` the turns there, both ascending from
    0): the smallest coefficient that turns ``t`` >= 0, linear between the sweep's points; where the
    sweep never turns that far, the first point of its furthest turn."""
    if t <= 0:
        return 0.0
    j = int(np.searchsorted(ds, t, side="left"))
    if j >= len(ds):
        return float(cs[int(np.argmax(ds >= ds[-1]))])
    c0, c1, d0, d1 = cs[j - 1], cs[j], ds[j - 1], ds[j]  # d0 < t <= d1
    return float(c0 + (t - d0) / (d1 - d0) * (c1 - c0))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def apply_direction(ws, direction: Direction, coefficients) -> torch.Tensor:
    """Move latents along ``direction``: ws [N, num_ws, w_dim] -> [N, K, num_ws, w_dim].

    Output ``[:, k]`` is ``ws + coefficients[k] * direction.step()`` on the rows
    ``direction.layers`` and ``ws`` unchanged on every other row; ``coefficients`` [N, K] gives each
    latent its own (``[i, k]``). ``ws`` may be a tensor or an array; the result is a float32 tensor
    on the same device as ``ws``.
    """
    ws = torch.as_tensor(ws, dtype=torch.float32)
    if ws.ndim != 3 or ws.shape[2] != direction.w_dim:
        raise ValueError(f"ws must be [N, num_ws, {direction.w_dim}], got {tuple(ws.shape)}")
    start, stop = direction.layers
    if stop > ws.shape[1]:
        raise ValueError(f"direction edits rows {direction.layers} but ws has {ws.shape[1]} rows")
    c = np.asarray(coefficients, dtype=np.float32)
    if c.ndim == 2 and c.shape[0] != len(ws):
        raise ValueError(f"per-latent coefficients must be [N={len(ws)}, K], got {c.shape}")
    coeffs = torch.as_tensor(c if c.ndim == 2 else c.reshape(1, -1), device=ws.device)  # [N or 1, K]
    row_mask = torch.zeros(ws.shape[1], device=ws.device)
    row_mask[start:stop] = 1.0
    step = torch.as_tensor(direction.step(), device=ws.device)
    offset = coeffs[:, :, None, None] * (row_mask.view(-1, 1) * step.view(1, -1))  # [N or 1, K, num_ws, w_dim]
    return ws.unsqueeze(1) + offset


def edit_images(G, ws, direction: Direction, coefficients, batch_size: int = 64) -> torch.Tensor:
    """Images of ``ws`` [N, num_ws, w_dim] moved along ``direction``: [N, K, C, R, R] in [-1, 1]."""
    edited = apply_direction(ws, direction, coefficients)
    n, k = edited.shape[:2]
    images = synthesize(G, edited.reshape(n * k, *edited.shape[2:]), batch_size)
    return images.reshape(n, k, *images.shape[1:])


# ---------------------------------------------------------------------------------------------
# The generator: hash, style layers
# ---------------------------------------------------------------------------------------------


def style_layers(G) -> list[tuple[int, str, torch.nn.Module]]:
    """(W+ row, layer name, affine module) for every style-modulated layer of ``G.synthesis``, in
    the official order: block ``b<res>`` uses rows ``k .. k + num_conv`` (its ``torgb`` the row
    after its convolutions, shared with the next block's first convolution)."""
    out, w_idx = [], 0
    syn = G.synthesis
    for res in syn.block_resolutions:
        block = getattr(syn, f"b{res}")
        convs = ([] if res == 4 else ["conv0"]) + ["conv1"]
        for j, name in enumerate(convs):
            out.append((w_idx + j, f"b{res}.{name}", getattr(block, name).affine))
        if hasattr(block, "torgb"):
            out.append((w_idx + block.num_conv, f"b{res}.torgb", block.torgb.affine))
        w_idx += block.num_conv
    return out


def coarse_layers(G, max_resolution: int = 8) -> tuple[int, int]:
    """W+ rows (start, stop) that style the blocks up to ``max_resolution`` px, which carry the
    viewpoint (rows 0-2 of a 64 px generator: 4 px and 8 px convolutions)."""
    rows = [i for i, name, _ in style_layers(G)
            if int(name.split(".")[0][1:]) <= max_resolution and "torgb" not in name]
    return (0, max(rows) + 1)


# ---------------------------------------------------------------------------------------------
# Labelled samples
# ---------------------------------------------------------------------------------------------


@dataclass
class PoseSamples:
    """Generated images' latents and what the method's own models say about them.

    w: float32 [N, w_dim] (the W row every layer gets); accepted: bool [N] (detector);
    score: float32 [N]; box: float32 [N, 4] pixels (x0, y0, x1, y1); yaw, elevation: float32 [N]
    degrees (annotator); colour_lab: float32 [N, 3] mean CIE Lab in the middle of the box;
    size: float32 [N] box height / image height.
    """

    w: np.ndarray
    accepted: np.ndarray
    score: np.ndarray
    box: np.ndarray
    yaw: np.ndarray
    elevation: np.ndarray
    colour_lab: np.ndarray
    size: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.w)

    def subset(self, keep) -> PoseSamples:
        keep = np.asarray(keep)
        return PoseSamples(**{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)
                              if f.name != "metadata"}, metadata=dict(self.metadata))

    def near(self, reference_yaw: float, window: float = 90.0) -> np.ndarray:
        """bool [N]: accepted and annotated within ``window`` degrees of ``reference_yaw``."""
        return self.accepted & (np.abs(wrap_deg(self.yaw - reference_yaw)) <= window)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1], [..., 3] -> CIE Lab (D65) [..., 3]."""
    rgb = np.asarray(rgb, dtype=np.float64)
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _box_centre_colour(images: torch.Tensor, box: np.ndarray) -> np.ndarray:
    """Mean Lab colour of the middle half (in each axis) of each box: [N, 3]."""
    rgb = ((images.permute(0, 2, 3, 1).numpy() + 1) / 2).clip(0, 1)
    out = np.zeros((len(images), 3))
    h, w = rgb.shape[1:3]
    for i, (x0, y0, x1, y1) in enumerate(box):
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, 4), max(y1 - y0, 4)
        xa, xb = int(np.clip(cx - bw / 4, 0, w - 1)), int(np.clip(cx + bw / 4, 1, w))
        ya, yb = int(np.clip(cy - bh / 4, 0, h - 1)), int(np.clip(cy + bh / 4, 1, h))
        out[i] = rgb[i, ya:max(yb, ya + 1), xa:max(xb, xa + 1)].reshape(-1, 3).mean(0)
    return srgb_to_lab(out)


@torch.no_grad()
def annotate_samples(G, n: int, detector, annotator, seed: int = 0, truncation_psi: float = 1.0,
                     batch_size: int = 128, progress: bool = True, cache: bool = True) -> PoseSamples:
    """Generate ``n`` images from random z (``seed``), run the vehicle detector and the pose
    annotator on them, keep the latents and the labels (not the images).

    Cached in ``cache_dir("directions", <generator hash>)`` keyed by n, seed, psi and the two
    models' contents (:func:`dapper.utils.instrument_id`: weights and code, never names); a run
    resumes from nothing (it is one pass, minutes at most on a CPU).
    """
    key = json.dumps({"n": n, "seed": seed, "psi": truncation_psi,
                      "det": instrument_id(detector), "ann": instrument_id(annotator),
                      "thr": getattr(detector, "threshold", 0.5)}, sort_keys=True, default=str)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = cache_dir("directions", weights_hash(G)[:16]) / f"samples-{n}-{seed}-{digest}.npz"
    found = read_cached_arrays(path) if cache else None
    if found is not None:
        return PoseSamples(**found, metadata=json.loads(key))
    device = next(G.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    parts = {k: [] for k in ("w", "accepted", "score", "box", "yaw", "elevation", "colour_lab", "size")}
    bar = None
    if progress:
        bar = tqdm(total=n, desc="generate + annotate", unit="img")
    for a in range(0, n, batch_size):
        m = min(batch_size, n - a)
        z = torch.randn(m, G.z_dim, generator=gen).to(device)
        c = torch.zeros(m, G.c_dim, device=device)
        ws = G.mapping(z, c, truncation_psi=truncation_psi)
        images = G.synthesis(ws, noise_mode="const").float().clamp(-1, 1).cpu()
        score, box = detector.predict(images)
        yaw, elev = (annotator.predict_pose(images) if hasattr(annotator, "predict_pose")
                     else (annotator.predict(images), np.full(m, np.nan)))
        parts["w"].append(ws[:, 0].float().cpu().numpy())
        parts["accepted"].append(score >= getattr(detector, "threshold", 0.5))
        parts["score"].append(score)
        parts["box"].append(box)
        parts["yaw"].append(yaw)
        parts["elevation"].append(elev)
        parts["colour_lab"].append(_box_centre_colour(images, box))
        parts["size"].append((box[:, 3] - box[:, 1]) / images.shape[-2])
        if bar is not None:
            bar.update(m)
    if bar is not None:
        bar.close()
    dtypes = {"accepted": bool}
    arrays = {k: np.concatenate(v).astype(dtypes.get(k, np.float32)) for k, v in parts.items()}
    if cache:
        atomic_save(path, lambda p: np.savez(p, **arrays))
    return PoseSamples(**arrays, metadata=json.loads(key))


# ---------------------------------------------------------------------------------------------
# Methods
# ---------------------------------------------------------------------------------------------


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas=(0.1, 1.0, 10.0, 100.0, 1000.0)) -> tuple:
    """Ridge regression with the penalty chosen by exact leave-one-out error (all targets
    together; scikit-learn's ``RidgeCV``): x [N, D], y [N, T] -> (weights [D, T], intercept [T], alpha)."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    fit = RidgeCV(alphas=tuple(alphas)).fit(x, y)
    return fit.coef_.T.reshape(x.shape[1], y.shape[1]), np.atleast_1d(fit.intercept_), float(fit.alpha_)


def threshold_weights(v: np.ndarray, quantile: float) -> np.ndarray:
    """Zero the entries whose |value| is below the ``quantile`` of |v| (0: keep all; 0.5: keep
    the larger half). The largest entry always survives."""
    v = np.asarray(v, np.float64)
    if quantile <= 0:
        return v.copy()
    cut = np.quantile(np.abs(v), min(quantile, 1.0))
    out = np.where(np.abs(v) >= cut, v, 0.0)
    if not out.any():
        out[np.argmax(np.abs(v))] = v[np.argmax(np.abs(v))]
    return out


def paper_pose_direction(G=None, n_samples: int = 25000, detector=None, annotator=None,
                         threshold_quantile: float = 0.5, reference_yaw: float = DEFAULT_REFERENCE_YAW,
                         layers: tuple[int, int] | None = None, samples: PoseSamples | None = None, seed: int = 0,
                         truncation_psi: float = 1.0, window: float | None = None, method: str = "paper",
                         progress: bool = True) -> Direction:
    """The paper's supervised pose direction.

    Sample ``n_samples`` images (or use ``samples``), keep those the detector accepts, annotate
    yaw, fit ridge regression W -> (sin yaw, cos yaw), and take the gradient of the predicted
    angle ``atan2(sin, cos)`` at the reference yaw psi: ``g = cos(psi) a - sin(psi) b`` for the
    sin and cos weight vectors a, b (one vector for every image: a linear edit cannot follow the
    whole circle, so it is made for the views that get edited). Entries of ``g`` below
    ``threshold_quantile`` of ``|g|`` are zeroed, as in the paper. ``scale`` is set to the paper's
    unit: one unit raises the predicted yaw of images near psi by one degree.

    ``window`` (beyond the paper, with ``method="ridge-local"``): fit only on accepted samples
    annotated within ``window`` degrees of psi, where a linear model of yaw can hold.
    """
    if samples is None:
        samples = annotate_samples(G, n_samples, detector, annotator, seed, truncation_psi, progress=progress)
    keep = samples.accepted if window is None else samples.near(reference_yaw, window)
    if keep.sum() < 20:
        raise ValueError(f"only {int(keep.sum())} of {len(samples)} samples passed the vehicle detector")
    w = samples.w[keep].astype(np.float64)
    rad = np.deg2rad(samples.yaw[keep].astype(np.float64))
    coef, intercept, alpha = fit_ridge(w, np.stack([np.sin(rad), np.cos(rad)], 1))
    a, b = coef[:, 0], coef[:, 1]
    psi = math.radians(reference_yaw)
    g = math.cos(psi) * a - math.sin(psi) * b
    v = threshold_weights(g, threshold_quantile)
    v = v / np.linalg.norm(v)
    # Predicted (sin, cos) near psi lie on a circle of radius r < 1 (ridge shrinks): the angle
    # moves by (g . dw) / r radians for a step dw.
    near = samples.near(reference_yaw, 30.0)[keep]
    pred = w @ coef + intercept
    r = float(np.median(np.hypot(pred[near, 0], pred[near, 1]))) if near.sum() >= 5 else float(
        np.median(np.hypot(pred[:, 0], pred[:, 1])))
    deg_per_w = math.degrees(float(g @ v) / r)
    paper_scale = 1.0 / deg_per_w
    r2 = 1 - ((pred - np.stack([np.sin(rad), np.cos(rad)], 1)) ** 2).sum() / (
        (np.stack([np.sin(rad), np.cos(rad)], 1) - [np.sin(rad).mean(), np.cos(rad).mean()]) ** 2).sum()
    layers = layers or (0, G.num_ws if G is not None else 1)
    return Direction(v, layers, method, paper_scale, "paper", None, {
        "paper_scale": paper_scale, "reference_yaw": reference_yaw, "threshold_quantile": threshold_quantile,
        "ridge_alpha": alpha, "ridge_r2_sincos": float(r2), "predicted_radius": r,
        "n_samples": int(len(samples)), "n_fit": int(keep.sum()), "window": window,
        "about": "ridge W -> (sin, cos) yaw; angle gradient at reference_yaw; weights thresholded"})


def _yaw_offset_target(samples: PoseSamples, reference_yaw: float, window: float = 90.0):
    """Accepted samples within ``window`` of the reference yaw and their signed offset from it."""
    keep = samples.near(reference_yaw, window)
    return keep, wrap_deg(samples.yaw[keep] - reference_yaw)


def _orient(v: np.ndarray, samples: PoseSamples, reference_yaw: float) -> tuple[np.ndarray, float]:
    """Sign ``v`` so that moving along it raises yaw near the reference; returns (v, corr)."""
    keep, delta = _yaw_offset_target(samples, reference_yaw)
    proj = samples.w[keep].astype(np.float64) @ v
    corr = float(np.corrcoef(proj, delta)[0, 1]) if keep.sum() > 2 and proj.std() > 0 else 0.0
    return (v if corr >= 0 else -v), abs(corr)


def _svm_normal(w: np.ndarray, attribute: np.ndarray, extremes: float, seed: int = 0) -> np.ndarray | None:
    """InterFaceGAN boundary: linear SVM separating the top and bottom ``extremes`` fractions of
    ``attribute``; returns the unit normal pointing to larger values (None if it cannot vary)."""
    lo, hi = np.quantile(attribute, [extremes, 1 - extremes])
    if not hi > lo:
        return None  # the attribute does not vary: nothing to separate
    neg, pos = attribute <= lo, attribute > hi - 1e-12 * abs(hi)
    x = np.concatenate([w[neg], w[pos]])
    y = np.concatenate([np.zeros(neg.sum()), np.ones(pos.sum())])
    svm = LinearSVC(C=1.0, max_iter=20000, random_state=seed).fit(x, y)
    n = svm.coef_.reshape(-1).astype(np.float64)
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else None


def interfacegan_direction(samples: PoseSamples, reference_yaw: float = DEFAULT_REFERENCE_YAW,
                           layers: tuple[int, int] = (0, 1), extremes: float = 0.2,
                           conditions=("lightness", "chroma_a", "chroma_b", "size"), window: float = 90.0) -> Direction:
    """InterFaceGAN (Shen et al., 2020): the normal of a linear SVM that separates the most
    negative and most positive yaw offsets from the reference (accepted samples within
    ``window`` degrees of it), with the condition attributes' SVM normals projected out
    (conditional manipulation: the edit leaves paint colour (Lab from the box centre) and vehicle
    size (box height) unchanged to first order)."""
    keep, delta = _yaw_offset_target(samples, reference_yaw, window)
    if keep.sum() < 20:
        raise ValueError(f"only {int(keep.sum())} accepted samples lie within {window} deg of {reference_yaw}")
    w = samples.w[keep].astype(np.float64)
    n = _svm_normal(w, delta, extremes)
    if n is None:
        raise ValueError("the annotated yaw offsets do not vary")
    attrs = {"lightness": samples.colour_lab[:, 0], "chroma_a": samples.colour_lab[:, 1],
             "chroma_b": samples.colour_lab[:, 2], "size": samples.size}
    acc = samples.accepted
    normals = [_svm_normal(samples.w[acc].astype(np.float64), attrs[c][acc], extremes) for c in conditions]
    used = [c for c, m in zip(conditions, normals) if m is not None]
    normals = [m for m in normals if m is not None]
    if normals:
        basis = np.stack(normals, 1)  # [D, k]
        n = n - basis @ np.linalg.lstsq(basis, n, rcond=None)[0]
    n, corr = _orient(n / np.linalg.norm(n), samples, reference_yaw)
    return Direction(n, layers, "interfacegan", 1.0, "w", None, {
        "reference_yaw": reference_yaw, "extremes": extremes, "conditions": used, "window": window,
        "n_fit": int(keep.sum()), "abs_corr_with_yaw_offset": corr})


def sefa_basis(G, layers: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """SeFa (Shen and Zhou, 2021): eigenvectors of A^T A where A stacks the style affine weights
    (each output row unit-normalised) of the layers reading W+ rows ``layers``.
    Returns (eigenvalues [w_dim] descending, eigenvectors [w_dim, w_dim] as columns)."""
    start, stop = layers
    mats = [aff.weight.detach().cpu().double() * aff.weight_gain
            for row, _, aff in style_layers(G) if start <= row < stop]
    if not mats:
        raise ValueError(f"no style layer reads W+ rows {layers}")
    a = torch.cat(mats, 0)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    vals, vecs = torch.linalg.eigh(a.T @ a)  # ascending
    return vals.flip(0).numpy(), vecs.flip(1).numpy()


def sefa_direction(G, samples: PoseSamples, layers: tuple[int, int] | None = None,
                   reference_yaw: float = DEFAULT_REFERENCE_YAW, n_candidates: int = 8) -> Direction:
    """The SeFa eigenvector (among the top ``n_candidates``) whose projection correlates best
    with the annotated yaw offset (SeFa itself is unsupervised; the labels only pick and sign)."""
    layers = layers or (0, G.num_ws)
    vals, vecs = sefa_basis(G, layers)
    best = max(range(min(n_candidates, vecs.shape[1])), key=lambda j: _orient(vecs[:, j], samples, reference_yaw)[1])
    v, corr = _orient(vecs[:, best], samples, reference_yaw)
    return Direction(v, layers, "sefa", 1.0, "w", None, {
        "eigen_index": int(best), "eigenvalue": float(vals[best]), "n_candidates": n_candidates,
        "abs_corr_with_yaw_offset": corr, "reference_yaw": reference_yaw})


def ganspace_direction(samples: PoseSamples, layers: tuple[int, int] = (0, 1),
                       reference_yaw: float = DEFAULT_REFERENCE_YAW, n_candidates: int = 20) -> Direction:
    """GANSpace (Harkonen et al., 2020): principal components of W (all samples), the one among
    the first ``n_candidates`` that correlates best with the annotated yaw offset, applied to
    the W+ rows ``layers``."""
    w = samples.w.astype(np.float64)
    w = w - w.mean(0)
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    k = min(n_candidates, vt.shape[0])
    best = max(range(k), key=lambda j: _orient(vt[j], samples, reference_yaw)[1])
    v, corr = _orient(vt[best], samples, reference_yaw)
    explained = s**2 / (s**2).sum()
    return Direction(v, layers, "ganspace", 1.0, "w", None, {
        "component": int(best), "explained_variance": float(explained[best]), "n_candidates": k,
        "abs_corr_with_yaw_offset": corr, "reference_yaw": reference_yaw})


def random_direction(w_dim: int, layers: tuple[int, int] = (0, 1), seed: int = 0, samples: PoseSamples | None = None,
                     reference_yaw: float = DEFAULT_REFERENCE_YAW) -> Direction:
    """A random unit direction (signed to raise yaw when ``samples`` are given): the floor."""
    v = np.random.default_rng(seed).standard_normal(w_dim)
    corr = None
    if samples is not None:
        v, corr = _orient(v / np.linalg.norm(v), samples, reference_yaw)
    return Direction(v, layers, "random", 1.0, "w", None, {"seed": seed, "abs_corr_with_yaw_offset": corr})



def yaw_sequence_metrics(coefficients, yaw, jump_factor: float = 3.0, min_jump_deg: float = 10.0) -> dict:
    """Per-image measures of yaw read along a sweep of coefficients.

    coefficients [K] ascending; yaw [N, K] degrees (any wrap). Returns arrays [N]: ``slope``
    (degrees per unit, least squares on the unwrapped yaw), ``step_slope`` (the median over the
    sweep's steps of each step's degrees per unit: a jump, say a front/back flip, moves the least
    squares slope a lot and this one hardly at all), ``r2`` (linearity; 0 when the yaw does
    not move), ``monotone`` (every step goes the way of the slope), ``n_jumps`` (steps whose
    change exceeds ``jump_factor`` times the image's median absolute step and ``min_jump_deg``,
    the floor keeping reading noise of a direction that hardly turns from counting as jumps),
    ``span`` (unwrapped yaw at the last coefficient minus the first).
    """
    c = np.asarray(coefficients, dtype=np.float64)
    y = unwrap_deg(np.atleast_2d(yaw))
    cc = c - c.mean()
    slope = (y - y.mean(1, keepdims=True)) @ cc / (cc @ cc)
    fit = y.mean(1, keepdims=True) + slope[:, None] * cc[None]
    ss_tot = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    ss_res = ((y - fit) ** 2).sum(1)
    r2 = np.where(ss_tot > 1e-9, 1 - ss_res / np.maximum(ss_tot, 1e-9), 0.0)
    steps = np.diff(y, axis=1)
    monotone = (steps * np.sign(slope)[:, None] > 0).all(1) & (slope != 0)
    med = np.median(np.abs(steps), axis=1, keepdims=True)
    jumps = (np.abs(steps) > np.maximum(jump_factor * med, min_jump_deg)).sum(1)
    step_slope = np.median(steps / np.diff(c)[None], axis=1) if len(c) > 1 else np.zeros(len(y))
    return {"slope": slope, "step_slope": step_slope, "r2": r2, "monotone": monotone, "n_jumps": jumps,
            "span": y[:, -1] - y[:, 0]}


def w_spread(samples: PoseSamples) -> float:
    """RMS distance of the sampled W from their mean: the size of a 'different car' step."""
    w = samples.w.astype(np.float64)
    return float(np.sqrt(((w - w.mean(0)) ** 2).sum(1).mean()))
