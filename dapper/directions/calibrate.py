"""Calibration of pose directions in degrees of yaw as the method's pose annotator reads them, and
every method fitted on one set of samples."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.isotonic import IsotonicRegression
from tqdm.auto import tqdm

from .methods import (
    DEFAULT_REFERENCE_YAW,
    Direction,
    PoseSamples,
    coarse_layers,
    edit_images,
    ganspace_direction,
    interfacegan_direction,
    paper_pose_direction,
    random_direction,
    sefa_direction,
    w_spread,
    wrap_deg,
    yaw_sequence_metrics,
)


def calibration_latents(samples: PoseSamples, n: int, reference_yaw: float = DEFAULT_REFERENCE_YAW,
                        window: float = 45.0, num_ws: int = 1) -> torch.Tensor:
    """W+ [n, num_ws, w_dim] of accepted samples nearest the reference yaw (within ``window``)."""
    keep = np.flatnonzero(samples.near(reference_yaw, window))
    if len(keep) < n:
        order = np.argsort(np.abs(wrap_deg(samples.yaw - reference_yaw)) + 1e3 * ~samples.accepted)
        keep = order[:n]
    w = torch.from_numpy(samples.w[keep[:n]].astype(np.float32))
    return w.unsqueeze(1).repeat(1, num_ws, 1)


def _median_slope(coefficients, yaw: np.ndarray) -> float:
    """The median over the vehicles of each one's step slope (a jump does not count as turning)."""
    return float(np.median(yaw_sequence_metrics(coefficients, yaw)["step_slope"]))


def annotator_response(G, direction: Direction, annotator, ws, coefficients, batch_size: int = 64,
                       increasing: bool = True) -> dict:
    """The turn the annotator reads along ``direction`` at ``coefficients`` (ascending, holding 0):
    for each, the median over the vehicles ``ws`` of the yaw change from the unedited image
    (wrapped, so a front/back flip is one outlying reading, not a turn), made monotone (rising, or
    falling with ``increasing=False``) by isotonic regression with 0 held at 0. Returns
    ``{"coefficients", "degrees", "read", "n_images", "by"}``, the form of
    ``Direction.metadata["response"]`` (``read``: the medians before the monotone fit)."""
    c = np.asarray(coefficients, dtype=np.float64)
    if not (np.diff(c) > 0).all() or 0.0 not in c:
        raise ValueError(f"the response sweep must be ascending and hold 0, got {c.tolist()}")
    yaw = annotate_edits(G, ws, direction, c, annotator, batch_size)
    j0 = int(np.flatnonzero(c == 0)[0])
    read = np.median(wrap_deg(yaw - yaw[:, [j0]]), axis=0)
    return {"coefficients": c.tolist(), "degrees": _monotone(c, read, increasing).tolist(), "read": read.tolist(),
            "n_images": int(len(ws)), "by": "annotator"}


def _monotone(c: np.ndarray, read: np.ndarray, increasing: bool) -> np.ndarray:
    """Isotonic fit of the turns ``read`` at ``c`` (ascending, holding 0) with 0 held at 0."""
    j0 = int(np.flatnonzero(c == 0)[0])
    weight = np.ones_like(c)
    weight[j0] = 1e6  # the unedited image turns by nothing
    fit = IsotonicRegression(increasing=increasing).fit_transform(c, read, sample_weight=weight)
    fit[j0] = 0.0
    return fit


def _until_flip(read: np.ndarray, j0: int, max_step: float = 90.0) -> np.ndarray:
    """Which of one image's readings (turns at a sweep ascending through ``j0``) to keep: from 0
    outwards on each side, every one before the first step of more than ``max_step`` degrees (a
    front/back flip of the reading, not a turn)."""
    keep = np.zeros(len(read), dtype=bool)
    keep[j0] = True
    for side in (range(j0 + 1, len(read)), range(j0 - 1, -1, -1)):
        prev = read[j0]
        for j in side:
            if abs(read[j] - prev) > max_step:
                break
            keep[j], prev = True, read[j]
    return keep


def own_responses(G, direction: Direction, annotator, ws, batch_size: int = 64) -> tuple[list[Direction], int]:
    """One copy of ``direction`` per latent of ``ws`` [N, num_ws, w_dim], each carrying the
    annotator's response read on that image alone, at the coefficients of the direction's own
    response (:meth:`Direction.response`): a turn depends on the view it starts from, so a vehicle
    is asked for its degrees through its own. Readings past a front/back flip are left out, and the
    rest made monotone as :func:`annotator_response` does; an image whose turn is not read both ways
    keeps the direction's response. Returns ``(directions, n_kept)``, ``n_kept`` the images that
    kept the direction's."""
    table = direction.response()
    if table is None:
        raise ValueError("a per-image response needs a direction with a measured response (with_response)")
    c = table[0]
    j0 = int(np.flatnonzero(c == 0)[0])
    yaw = annotate_edits(G, ws, direction, c, annotator, batch_size)
    increasing = (direction.degrees_per_unit or 0.0) >= 0
    out, n_kept = [], 0
    for row in wrap_deg(yaw - yaw[:, [j0]]):
        keep = _until_flip(row, j0)
        own = direction.replace()
        own.metadata["response"] = {"coefficients": c[keep].tolist(), "degrees": _monotone(c[keep], row[keep],
                                                                                       increasing).tolist(),
                                    "read": row[keep].tolist(), "n_images": 1, "by": "annotator, own image"}
        if own.response() is None:
            own, n_kept = direction, n_kept + 1
        out.append(own)
    return out, n_kept


def calibrate_direction(G, direction: Direction, annotator, ws, target_degrees: float = 30.0,
                        max_shift: float | None = None, probe_shift: float = 1.0, n_coefficients: int = 5,
                        rounds: int = 2, batch_size: int = 64, response_reach: float = 1.5,
                        response_steps: int = 13) -> Direction:
    """Measure how many degrees of yaw (read by the annotator) one coefficient unit turns the
    vehicles ``ws`` [M, num_ws, w_dim] and return the direction in degrees.

    A first pass probes coefficients up to a W shift of ``probe_shift``; ``rounds`` more repeat at
    the coefficient expected to turn ``target_degrees`` (never beyond a W shift of ``max_shift``) and
    its median per-image slope sets the unit. When ``max_shift`` stops a direction from reaching
    ``target_degrees`` it is scaled to ``max_shift`` at ``target_degrees`` units instead and
    ``metadata['calibration']['capped']`` is True (its degrees are then fewer than nominal).

    The turn is rarely linear (steep near 0, saturating further out), so the result also carries
    the annotator's response over ``response_steps`` coefficients within ``+-response_reach *
    target_degrees`` of the new units (no further than ``max_shift``; :func:`annotator_response`),
    which ``Direction.coefficients_for`` inverts. ``response_steps=0`` leaves it out.
    """
    probe = probe_shift / abs(direction.scale)
    coeffs = np.linspace(-probe, probe, n_coefficients)
    dpu = _median_slope(coeffs, annotate_edits(G, ws, direction, coeffs, annotator, batch_size))
    limit = np.inf if max_shift is None else max_shift / abs(direction.scale)  # in the direction's units
    for _ in range(rounds):  # refine at the size of the real edit (yaw is not linear in W far out)
        reach = min(target_degrees / max(abs(dpu), 1e-9), limit)
        coeffs = np.linspace(-reach, reach, n_coefficients)
        dpu_new = _median_slope(coeffs, annotate_edits(G, ws, direction, coeffs, annotator, batch_size))
        if dpu_new != 0:
            dpu = dpu_new
    capped = target_degrees / max(abs(dpu), 1e-9) > limit
    if capped or dpu == 0:
        # signed so that a positive coefficient turns the vehicle the positive way, as uncapped
        sign = (1.0 if dpu >= 0 else -1.0) * (1.0 if direction.scale >= 0 else -1.0)
        scale = sign * (max_shift if max_shift is not None else probe_shift) / target_degrees
        out = direction.replace(scale=scale, units="degrees", degrees_per_unit=float(dpu * scale / direction.scale))
    else:
        out = direction.replace(degrees_per_unit=float(dpu)).in_degrees()
    out.metadata.setdefault("paper_scale", direction.metadata.get("paper_scale"))
    out.metadata["calibration"] = {
        "by": "annotator", "n_images": int(len(ws)), "target_degrees": target_degrees,
        "degrees_per_unit_before": float(dpu), "units_before": direction.units, "scale_before": float(direction.scale),
        "w_shift_at_target": float(abs(out.scale) * target_degrees), "max_shift": max_shift, "capped": bool(capped)}
    return with_response(G, out, annotator, ws, max_shift, target_degrees, response_reach, response_steps, batch_size)


def with_response(G, direction: Direction, annotator, ws, max_shift: float | None = None, target_degrees: float = 30.0,
                  reach: float = 1.5, steps: int = 13, batch_size: int = 64) -> Direction:
    """``direction`` (calibrated in degrees) with the annotator's response over ``steps``
    coefficients within ``+-reach * target_degrees`` (no further than a W shift of ``max_shift``)
    measured on the vehicles ``ws`` (:func:`annotator_response`) in ``metadata["response"]``;
    ``steps=0`` removes it. ``Direction.coefficients_for`` then asks for degrees through it."""
    if direction.units != "degrees":
        raise ValueError(f"a response is measured in degrees: calibrate the direction first ({direction.units!r})")
    out = direction.replace()
    out.metadata.pop("response", None)
    if steps:
        r = reach * target_degrees
        if max_shift is not None:
            r = min(r, max_shift / abs(out.scale))
        sweep = np.linspace(-r, r, 2 * (steps // 2) + 1)  # odd: 0 is in it
        sweep[len(sweep) // 2] = 0.0
        out.metadata["response"] = annotator_response(G, out, annotator, ws, sweep, batch_size,
                                                      increasing=(out.degrees_per_unit or 0.0) >= 0)
    return out


def annotate_edits(G, ws, direction, coeffs, annotator, batch_size: int = 64) -> np.ndarray:
    """Yaw the annotator reads on the edits of ``ws`` along ``direction`` at ``coeffs``: [N, K] degrees."""
    images = edit_images(G, ws, direction, coeffs, batch_size)
    n, k = images.shape[:2]
    return annotator.predict(images.reshape(n * k, *images.shape[2:])).reshape(n, k)


# ---------------------------------------------------------------------------------------------
# Everything on one set of samples
# ---------------------------------------------------------------------------------------------


DIRECTION_METHODS = ("paper", "ridge-local", "interfacegan", "sefa", "ganspace", "random")  # fit_directions' candidates


def fit_directions(G, samples: PoseSamples, annotator, reference_yaw: float = DEFAULT_REFERENCE_YAW,
                   layer_ranges: dict | None = None, n_calibration: int = 24, threshold_quantile: float = 0.5,
                   max_shift_factor: float = 1.0, calibration_rounds: int = 2,
                   progress: bool = True, methods=None, response_steps: int = 0) -> dict[str, Direction]:
    """Every method (or those of ``methods``, names from :data:`DIRECTION_METHODS`; the paper's always) on the
    same samples, for every layer range, calibrated in annotator degrees.

    ``layer_ranges``: name -> (start, stop); default ``{"all": (0, num_ws), "coarse":
    coarse_layers(G)}``. Keys of the result are ``"<method>/<range>"``; ``"paper/all (paper units)"``
    is the paper's direction left in its own units. Edits never move W more than
    ``max_shift_factor`` times the spread of W (:func:`w_spread`) at 30 degrees. The candidates are
    compared as straight moves, so their annotator response is measured only with ``response_steps``
    (0 by default: :func:`with_response` adds it to the one chosen).
    """
    methods = DIRECTION_METHODS if methods is None else tuple(methods)
    unknown = sorted(set(methods) - set(DIRECTION_METHODS))
    if unknown:
        raise ValueError(f"unknown direction methods {unknown}; known: {', '.join(DIRECTION_METHODS)}")
    layer_ranges = layer_ranges or {"all": (0, G.num_ws), "coarse": coarse_layers(G)}
    ws = calibration_latents(samples, n_calibration, reference_yaw, num_ws=G.num_ws)
    max_shift = max_shift_factor * w_spread(samples)
    fitters = {
        "paper": lambda lr: paper_pose_direction(G, samples=samples, threshold_quantile=threshold_quantile,
                                                 reference_yaw=reference_yaw, layers=lr),
        "ridge-local": lambda lr: paper_pose_direction(G, samples=samples, threshold_quantile=0.0,
                                                       reference_yaw=reference_yaw, layers=lr, window=60.0,
                                                       method="ridge-local"),
        "interfacegan": lambda lr: interfacegan_direction(samples, reference_yaw, lr),
        "sefa": lambda lr: sefa_direction(G, samples, lr, reference_yaw),
        "ganspace": lambda lr: ganspace_direction(samples, lr, reference_yaw),
        "random": lambda lr: random_direction(G.w_dim, lr, 0, samples, reference_yaw),
    }
    raw = {}
    for name, lr in layer_ranges.items():
        for method in dict.fromkeys(("paper",) + methods):  # the paper's is the reference row
            raw[f"{method}/{name}"] = fitters[method](lr)
    out = {}
    items = raw.items()
    if progress:
        items = tqdm(list(items), desc="calibrate", unit="dir")
    for key, d in items:
        out[key] = calibrate_direction(G, d, annotator, ws, max_shift=max_shift, rounds=calibration_rounds,
                                       response_steps=response_steps)
    paper_all = f"paper/{next(iter(layer_ranges))}"
    out[f"{paper_all} (paper units)"] = out[paper_all].in_paper_units()
    return out


