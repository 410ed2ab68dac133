"""The method's choice of pose direction and of the layers its edits touch, made with the method's
own instruments only: the pose annotator and the vehicle detector on generated images (the paper's
pipeline), plus image statistics anyone can compute. The evaluation oracles never enter here; they
judge the choice afterwards (:mod:`dapper.study.direction_eval`).

* :func:`measure_candidates`: for each candidate direction, edits of generated latents near the
  reference view along a sweep of coefficients, read by the annotator (degrees per unit, linearity,
  jumps) and the detector (still a vehicle?), with the colour drift inside a saliency mask and the
  W distance moved.
* :func:`select_direction`: a fixed rule on those columns alone (:data:`SELECTION_COLUMNS`).
* :func:`choose_layer_split`: how many of the coarse W+ rows an edit needs: the fewest rows from the
  top whose edit turns the vehicle, as the annotator reads it, within 10% of what an edit of every
  row does. Rows after the split keep the projection's styles (the fine detail that carries
  identity).
* :func:`choose_direction`: the three above in order on a second sample set, with the chosen
  direction's measured response and its split variant calibrated (a :class:`DirectionChoice`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import torch

from dapper.data.images import to_uint8

from .calibrate import annotate_edits, calibrate_direction, calibration_latents, with_response
from .methods import Direction, annotate_samples, edit_images, srgb_to_lab, w_spread, yaw_sequence_metrics

__all__ = ["SELECTION_COLUMNS", "SELECTION_RULE", "Selection", "measure_candidates", "select_direction",
           "choose_layer_split", "DirectionChoice", "choose_direction", "foreground_mask", "masked_mean_lab"]

SELECTION_COLUMNS = ("annotator_deg_per_unit", "annotator_r2", "annotator_jump_share", "detector_kept_at_30",
                     "colour_drift_at_30", "w_shift_at_30")
SELECTION_RULE = ("among candidates calibrated in degrees whose edits the annotator reads turning by at least half "
                  "the intended degrees (median step slope along the sweep, so that a front/back jump is no turn), "
                  "the best mean rank over: annotator degrees per unit closest to 1, fewest "
                  "orientation jumps, highest linearity (R^2), most edits at +-30 deg the vehicle detector still "
                  "accepts, least colour drift in the vehicle mask, smallest W shift at 30 deg")


def foreground_mask(images_uint8: np.ndarray, threshold: float = 18.0) -> np.ndarray:
    """A plain saliency mask when no true mask exists: pixels whose Lab colour differs from the
    median colour of the image border by more than ``threshold`` (Delta E), inside the central
    90%. bool [N, H, W]."""
    lab = srgb_to_lab(images_uint8 / 255.0)
    n, h, w, _ = lab.shape
    border = np.concatenate([lab[:, 0], lab[:, -1], lab[:, :, 0], lab[:, :, -1]], 1)
    ref = np.median(border, 1)
    mask = np.linalg.norm(lab - ref[:, None, None], axis=-1) > threshold
    m = int(0.05 * h)
    mask[:, :m], mask[:, h - m:], mask[:, :, :m], mask[:, :, w - m:] = False, False, False, False
    return mask


def masked_mean_lab(images_uint8: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean CIE Lab colour inside each mask: float [N, 3] (NaN where a mask is empty)."""
    lab = srgb_to_lab(images_uint8 / 255.0)
    out = np.full((len(lab), 3), np.nan)
    for i in range(len(lab)):
        if masks[i].any():
            out[i] = lab[i][masks[i]].mean(0)
    return out


def measure_candidates(G, directions: dict[str, Direction], ws, annotator, detector,
                       coefficients=tuple(range(-30, 31, 10)), batch_size: int = 64):
    """The method's measures of each candidate's edits of ``ws`` [N, num_ws, w_dim] (generated
    latents, e.g. :func:`dapper.directions.calibration_latents` of a sample set the directions were
    not fitted on) at ``coefficients`` (each in its direction's units): a pandas DataFrame with one
    row per direction, the columns of :data:`SELECTION_COLUMNS` plus ``direction``, ``units``,
    ``capped``, ``annotator_monotone_share`` and ``n_images``. The candidates are compared as
    straight moves in W (the calibration's average unit), not through their measured response:
    the augmentation's edit at +-30 degrees may be longer or shorter than the one measured here."""
    coeffs = np.asarray(coefficients, dtype=np.float64)
    k0 = int(np.argmin(np.abs(coeffs)))
    ends = [int(np.argmin(coeffs)), int(np.argmax(coeffs))]
    ws = torch.as_tensor(ws, dtype=torch.float32)
    rows = []
    for name, d in directions.items():
        images = edit_images(G, ws, d, coeffs, batch_size)  # [N, K, C, R, R]
        n, k = images.shape[:2]
        flat = images.reshape(n * k, *images.shape[2:])
        yaw = np.asarray(annotator.predict(flat)).reshape(n, k)
        score, _ = detector.predict(flat)
        accepted = (np.asarray(score) >= getattr(detector, "threshold", 0.5)).reshape(n, k)
        m = yaw_sequence_metrics(coeffs, yaw)
        u8 = to_uint8(flat).reshape(n, k, *images.shape[3:], images.shape[2])
        mask = foreground_mask(u8[:, k0])
        drift = np.stack([np.linalg.norm(masked_mean_lab(u8[:, j], mask) - masked_mean_lab(u8[:, k0], mask), axis=1)
                          for j in ends], 1)
        rows.append({
            "direction": name, "units": d.units,
            "capped": bool(d.metadata.get("calibration", {}).get("capped", False)),
            "annotator_deg_per_unit": float(np.median(m["step_slope"])),
            "annotator_r2": float(np.median(m["r2"])),
            "annotator_monotone_share": float(m["monotone"].mean()),
            "annotator_jump_share": float((m["n_jumps"] > 0).mean()),
            "detector_kept_at_30": float(accepted[:, ends].mean()),
            "colour_drift_at_30": float(np.nanmean(drift)),
            "w_shift_at_30": float(abs(d.scale) * np.abs(coeffs[ends]).mean()),
            "n_images": int(n),
        })
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Selection:
    """The chosen direction's name (empty when none qualifies), the reason in words, and the table
    it was chosen from with each candidate's ``mean_rank`` (NaN: not eligible)."""

    name: str
    reason: str
    table: object


def select_direction(measures, min_rotation: float = 0.5) -> Selection:
    """Apply :data:`SELECTION_RULE` to a :func:`measure_candidates` table. Only the columns in
    :data:`SELECTION_COLUMNS` (and ``direction``, ``units``, ``capped``) are read; any other
    column, an oracle's included, is dropped before ranking."""
    missing = [c for c in SELECTION_COLUMNS if c not in measures.columns]
    if missing:
        raise ValueError(f"the selection needs the method's measures {missing} (measure_candidates)")
    df = measures[["direction", "units", "capped", *SELECTION_COLUMNS]].copy()
    eligible = (df.units == "degrees") & ~df.capped.astype(bool) & (df.annotator_deg_per_unit >= min_rotation)
    df["mean_rank"] = np.nan
    if not eligible.any():
        return Selection("", f"no direction turns the vehicles by at least {min_rotation:.0%} of the intended "
                             "degrees as the annotator reads them", df)
    e = df[eligible]
    ranks = [e.annotator_deg_per_unit.sub(1).abs().rank(), e.annotator_jump_share.rank(), (-e.annotator_r2).rank(),
             (-e.detector_kept_at_30).rank(), e.colour_drift_at_30.rank(), e.w_shift_at_30.rank()]
    df.loc[eligible, "mean_rank"] = sum(ranks) / len(ranks)
    best = df[eligible].sort_values(["mean_rank", "annotator_jump_share", "direction"]).iloc[0]
    reason = (f"{best.direction}: best mean rank ({best.mean_rank:.1f}) of {int(eligible.sum())} eligible directions "
              f"by the method's own measures: {best.annotator_deg_per_unit:.2f} annotator deg/unit, R^2 "
              f"{best.annotator_r2:.2f}, jumps {best.annotator_jump_share:.0%}, detector keeps "
              f"{best.detector_kept_at_30:.0%} at +-30, colour drift {best.colour_drift_at_30:.1f}, W shift "
              f"{best.w_shift_at_30:.2f}")
    return Selection(str(best.direction), reason, df)


def choose_layer_split(G, direction: Direction, annotator, ws, keep: float = 0.9, coefficient: float = 20.0,
                       batch_size: int = 64) -> tuple[int, dict]:
    """The fewest W+ rows ``(0, stop)`` an edit along ``direction`` needs: the smallest ``stop``
    whose edit turns the vehicles ``ws`` [N, num_ws, w_dim] by between ``keep`` and ``1 / keep``
    times what the all-row edit turns them (when no ``stop`` does, the one closest to it in ratio).
    The turn is the median over the vehicles of the annotator's degrees per unit along
    ``-coefficient .. +coefficient`` (five steps; the median step slope, so a jump is no turn) times
    ``2 * coefficient``. Returns ``(stop, {stop: turn in degrees})``. The annotator reads the pose;
    nothing here knows the vehicles' identity."""
    num_ws = int(G.num_ws)
    coeffs = np.linspace(-coefficient, coefficient, 5)
    turn = {}
    for stop in range(1, num_ws + 1):
        yaw = annotate_edits(G, ws, direction.replace(layers=(0, stop)), coeffs, annotator, batch_size)
        turn[stop] = float(np.median(yaw_sequence_metrics(coeffs, yaw)["step_slope"]) * 2 * coefficient)
    full = turn[num_ws]
    if full == 0:
        return num_ws, turn
    ratio = {s: t / full for s, t in turn.items()}
    inside = [s for s in range(1, num_ws + 1) if keep <= ratio[s] <= 1 / keep]
    if inside:
        return inside[0], turn
    return min(turn, key=lambda s: (abs(np.log(max(ratio[s], 1e-6))), s)), turn


@dataclasses.dataclass
class DirectionChoice:
    """The method's whole choice (:func:`choose_direction`): ``selection`` (:func:`select_direction`'s),
    ``name`` the chosen direction (the paper's, ``"paper/all"``, when none qualifies), ``split`` the
    rows ``0 .. split`` its edit needs and ``turn`` the annotator's turn per stop
    (:func:`choose_layer_split`), ``split_name`` the direction on those rows (``name`` when the split
    keeps every row), and ``directions``: every candidate, the chosen one carrying its measured
    response, plus the split variant calibrated on its rows."""

    selection: Selection
    name: str
    split: int
    turn: dict
    split_name: str
    num_ws: int
    directions: dict

    @property
    def split_share(self) -> float:
        """The split edit's turn over the all-row edit's (NaN when the all-row edit turns nothing)."""
        full = self.turn[self.num_ws]
        return self.turn[self.split] / full if full else float("nan")

    def describe(self) -> list[str]:
        """The choice in two lines: why this direction, and the rows it needs."""
        s = self.selection
        return [s.reason if s.name else f"{s.reason}; the paper's direction is used",
                f"rows 0-{self.split} of {self.num_ws} turn the vehicles {self.turn[self.split]:.1f} deg from -20 to "
                f"+20 units, {self.split_share:.0%} of the all-row edit ({self.turn[self.num_ws]:.1f} deg)"]

    def ranked(self):
        """The selection's table, best mean rank first (ineligible candidates last), rounded for reading."""
        return self.selection.table.sort_values("mean_rank").round(3)


def choose_direction(G, directions: dict[str, Direction], samples, detector, annotator, reference_yaw: float,
                     settings: dict, progress: bool = True) -> DirectionChoice:
    """The method's choice among ``directions`` (:func:`dapper.directions.fit_directions`' candidates,
    fitted on ``samples``) with its own instruments only: a second sample set (``settings["n_selection"]``
    generated images, seed ``settings["sample_seed"] + 1``, never the fitting set) gives the latents
    nearest ``reference_yaw``; the candidates calibrated in degrees are measured on them
    (:func:`measure_candidates`) and :func:`select_direction` picks one; the chosen direction gets the
    annotator's response on those latents (``settings["response_steps"]`` coefficients), and
    :func:`choose_layer_split` the rows it needs, calibrated on its own when fewer than every row.
    ``settings``: :func:`dapper.directions.profile_settings`. ``directions`` is left as it was."""
    selection_samples = annotate_samples(G, settings["n_selection"], detector, annotator, settings["sample_seed"] + 1,
                                         progress=progress)
    ws = calibration_latents(selection_samples, settings["n_calibration"], reference_yaw, num_ws=G.num_ws)
    candidates = {k: d for k, d in directions.items() if d.units == "degrees"}
    selection = select_direction(measure_candidates(G, candidates, ws, annotator, detector))
    chosen = selection.name or "paper/all"
    out = dict(directions)
    # the chosen direction's response, on the selection latents (the split's calibration measures its own)
    out[chosen] = with_response(G, out[chosen], annotator, ws, max_shift=w_spread(samples),
                                steps=settings["response_steps"])
    split, turn = choose_layer_split(G, out[chosen], annotator, ws)
    split_name = f"{chosen.split('/')[0]}/rows 0-{split}"
    if split < G.num_ws:
        out[split_name] = calibrate_direction(G, out[chosen].with_layers(0, split), annotator, ws,
                                              max_shift=w_spread(samples), rounds=settings["calibration_rounds"],
                                              response_steps=settings["response_steps"])
    else:
        split_name = chosen
    return DirectionChoice(selection, chosen, split, turn, split_name, int(G.num_ws), out)
