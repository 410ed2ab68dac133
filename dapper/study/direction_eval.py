"""How pose directions edit held-out images, measured by the independent oracles: degrees per unit,
linearity, monotonicity, orientation jumps, identity kept, colour drift in the vehicle mask and, on
toycars, fidelity to the true re-render. The study's judgement of the method: nothing here feeds it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dapper.data import toycars
from dapper.data.images import to_uint8
from dapper.directions import PAPER_COEFFICIENTS, Direction, edit_images, unwrap_deg, yaw_sequence_metrics
from dapper.directions.select import foreground_mask, masked_mean_lab
from dapper.inversion.perceptual import load_perceptual
from dapper.inversion.projection import project_images
from dapper.judges import oracles
from dapper.study.dataset_images import ImagePick, pick_images

EVAL_COEFFICIENTS = tuple(range(-30, 31, 5))
# Held-out target images for the evaluation come from a stream no notebook trains on.
EVAL_SEED = 808



def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def evaluate_directions(G, directions: dict[str, Direction], ws, coefficients=EVAL_COEFFICIENTS,
                        metas: list | None = None, labels=None, masks=None, pose_oracle=None, identity_oracle=None,
                        yaw_reader=None, measured_by: str | None = None, perceptual=None, batch_size: int = 64,
                        progress: bool = True):
    """Edit held-out latents ``ws`` [N, num_ws, w_dim] along every direction at ``coefficients``
    (each in its direction's units) and measure the edits with the oracles.

    ``metas``: toycars meta dicts of the images that were projected (enables masks from the true
    re-render at the reached yaw and fidelity); ``labels``: true classes; ``masks``: bool
    [N, R, R] vehicle masks of the unedited images when no metas exist (else a saliency mask,
    :func:`foreground_mask`). ``yaw_reader(images) -> degrees`` replaces the pose oracle (real
    mode, where no independent oracle exists; ``measured_by`` names it in the table); identity is
    then measured only if ``identity_oracle`` is given. Columns named ``oracle_*`` hold whatever
    read the yaw. ``perceptual``: a :class:`dapper.inversion.perceptual.PerceptualDistance` (None: the
    shipped one if present) adds an LPIPS-style distance to the true re-render (toycars only; at
    coefficient 0 and the two ends).
    Returns ``(summary, per_image)``: two pandas DataFrames; ``per_image`` has one row per
    (direction, image, coefficient) with the measured yaw and class (see
    :func:`per_coefficient_table`).
    """
    coeffs = np.asarray(coefficients, dtype=np.float64)
    k0 = int(np.argmin(np.abs(coeffs)))
    ws = torch.as_tensor(ws, dtype=torch.float32)
    measured_by = measured_by or ("oracles" if yaw_reader is None else "yaw_reader (not an independent oracle)")
    if yaw_reader is None:  # the toycars world: both independent oracles measure
        pose_oracle = oracles.load_pose_oracle() if pose_oracle is None else pose_oracle
        identity_oracle = oracles.load_identity_oracle() if identity_oracle is None else identity_oracle
        yaw_reader = lambda x: oracles.predict_yaw(x, pose_oracle)  # noqa: E731
    if metas is not None and perceptual is None:
        try:
            perceptual = load_perceptual(device=next(G.parameters()).device)
        except FileNotFoundError:
            perceptual = None
    rows, per_image = [], []
    items = directions.items()
    if progress:
        items = tqdm(list(items), desc="evaluate", unit="dir")
    ends = [int(np.argmin(coeffs)), int(np.argmax(coeffs))]
    at20 = [int(np.argmin(np.abs(coeffs - s * 20))) for s in (-1, 1)]
    for name, d in items:
        images = edit_images(G, ws, d, coeffs, batch_size)  # [N, K, C, R, R]
        n, k = images.shape[:2]
        flat = images.reshape(n * k, *images.shape[2:])
        yaw = np.asarray(yaw_reader(flat)).reshape(n, k)
        m = yaw_sequence_metrics(coeffs, yaw)
        cls = None
        if identity_oracle is not None:
            cls = oracles.predict_identity(flat, identity_oracle)[0].reshape(n, k)
        u8 = to_uint8(flat)
        u8 = u8.reshape(n, k, *u8.shape[1:])
        drift, psnr, lpips = np.full((n, k), np.nan), np.full((n, k), np.nan), np.full((n, k), np.nan)
        if metas is not None:
            res = G.img_resolution
            for i in range(n):
                gts = [toycars.render_same_vehicle(metas[i], float(yaw[i, j]), size=res) for j in range(k)]
                gt_img = np.stack([g.image for g in gts])
                gt_mask = np.stack([g.mask for g in gts])
                ref_mask = toycars.render_same_vehicle(metas[i], metas[i]["yaw"], size=res).mask
                lab = masked_mean_lab(u8[i], gt_mask)
                lab0 = masked_mean_lab(u8[i, k0:k0 + 1], ref_mask[None])[0]
                drift[i] = np.linalg.norm(lab - lab0, axis=1)
                psnr[i] = _psnr(u8[i], gt_img)
                if perceptual is not None:  # the costliest measure: only where the summary reports it
                    dev = next(perceptual.parameters()).device
                    sel = [k0] + ends
                    gt_t = torch.from_numpy(gt_img[sel]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
                    with torch.no_grad():
                        lpips[i, sel] = perceptual(images[i, sel].to(dev), gt_t.to(dev)).cpu().numpy()
        else:
            base_masks = masks if masks is not None else foreground_mask(u8[:, k0])
            for i in range(n):
                mm = foreground_mask(u8[i]) if masks is None else np.repeat(base_masks[i][None], k, 0)
                lab = masked_mean_lab(u8[i], mm)
                drift[i] = np.linalg.norm(lab - lab[k0], axis=1)
        kept = (cls == cls[:, k0:k0 + 1]) if cls is not None else None
        row = {
            "direction": name, "method": d.method, "layers": f"{d.layers[0]}-{d.layers[1]}", "units": d.units,
            "measured_by": measured_by,
            "w_shift_at_30": float(abs(d.scale) * 30),
            "capped": bool(d.metadata.get("calibration", {}).get("capped", False)),
            "annotator_deg_per_unit": d.degrees_per_unit,
            "oracle_deg_per_unit": float(np.median(m["slope"])),
            "oracle_deg_per_unit_iqr": float(np.subtract(*np.percentile(m["slope"], [75, 25]))),
            "yaw_span_deg": float(np.median(m["span"])),
            "r2": float(np.median(m["r2"])), "monotone_share": float(m["monotone"].mean()),
            "jump_share": float((m["n_jumps"] > 0).mean()), "jumps_per_image": float(m["n_jumps"].mean()),
            "identity_kept_at_20": float(kept[:, at20].mean()) if kept is not None else np.nan,
            "identity_kept_at_30": float(kept[:, ends].mean()) if kept is not None else np.nan,
            "identity_kept_min": float(kept.mean(0).min()) if kept is not None else np.nan,
            "true_class_at_0": float((cls[:, k0] == np.asarray(labels)).mean()) if (
                cls is not None and labels is not None) else np.nan,
            "true_class_at_30": float((cls[:, ends] == np.asarray(labels)[:, None]).mean()) if (
                cls is not None and labels is not None) else np.nan,
            "colour_drift_at_30": float(np.nanmean(drift[:, ends])),
            "fidelity_psnr_at_0": float(np.nanmean(psnr[:, k0])) if metas is not None else np.nan,
            "fidelity_psnr_at_30": float(np.nanmean(psnr[:, ends])) if metas is not None else np.nan,
            "fidelity_perceptual_at_0": float(np.nanmean(lpips[:, k0])) if perceptual is not None else np.nan,
            "fidelity_perceptual_at_30": float(np.nanmean(lpips[:, ends])) if perceptual is not None else np.nan,
            "n_images": int(n),
        }
        rows.append(row)
        for i in range(n):
            for j in range(k):
                per_image.append({"direction": name, "image": i, "coefficient": float(coeffs[j]),
                                  "yaw": float(yaw[i, j]), "class": int(cls[i, j]) if cls is not None else -1,
                                  "colour_drift": float(drift[i, j]), "psnr": float(psnr[i, j]),
                                  "perceptual": float(lpips[i, j])})
    return pd.DataFrame(rows), pd.DataFrame(per_image)


def per_coefficient_table(per_image):
    """Per (direction, coefficient): identity kept (share of images whose oracle class equals
    their class at coefficient 0), median yaw change from coefficient 0 (unwrapped), mean colour
    drift, PSNR and perceptual distance to the true re-render. From :func:`evaluate_directions`."""
    rows = []
    for name, df in per_image.groupby("direction", sort=False):
        piv = df.pivot(index="image", columns="coefficient")
        coeffs = np.asarray(piv["yaw"].columns, dtype=np.float64)
        k0 = int(np.argmin(np.abs(coeffs)))
        yaw = unwrap_deg(piv["yaw"].to_numpy())
        cls = piv["class"].to_numpy()

        def mean_at(col, j, piv=piv):
            v = piv[col].to_numpy()[:, j]
            return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan

        for j, c in enumerate(coeffs):
            rows.append({"direction": name, "coefficient": c,
                         "identity_kept": float((cls[:, j] == cls[:, k0]).mean()) if (cls >= 0).all() else np.nan,
                         "yaw_change_median": float(np.median(yaw[:, j] - yaw[:, k0])),
                         "colour_drift": mean_at("colour_drift", j), "psnr": mean_at("psnr", j),
                         "perceptual": mean_at("perceptual", j)})
    return pd.DataFrame(rows)


def rank_by_oracles(summary, min_rotation: float = 0.5) -> tuple[str, str]:
    """The direction the oracles' measures rank best in an :func:`evaluate_directions` summary,
    and why: hindsight for the report, set beside the method's own choice
    (:func:`dapper.directions.select_direction`), never used to choose.

    Eligible: calibrated in degrees, not capped, and the oracle sees at least ``min_rotation``
    of the intended rotation. Among those, the mean rank over: no jumps (jump share), identity
    kept at +-30, closeness of oracle degrees per unit to 1, linearity R^2, colour drift and (when
    measured) fidelity PSNR at +-30. Returns (direction name, one-sentence reason).
    """
    df = summary[(summary.units == "degrees") & ~summary.capped & (summary.oracle_deg_per_unit >= min_rotation)].copy()
    if df.empty:
        return "", "no direction turns the vehicles by at least half the intended degrees"
    ranks = [df.jump_share.rank(), df.oracle_deg_per_unit.sub(1).abs().rank(), (-df.r2).rank(),
             df.colour_drift_at_30.rank()]
    if df.identity_kept_at_30.notna().any():
        ranks.append((-df.identity_kept_at_30).rank())
    if df.fidelity_psnr_at_30.notna().any():
        ranks.append((-df.fidelity_psnr_at_30).rank())
    df["mean_rank"] = sum(ranks) / len(ranks)
    best = df.sort_values(["mean_rank", "jump_share"]).iloc[0]
    reason = (f"{best.direction}: best mean rank by the oracles ({best.mean_rank:.1f}) among {len(df)} directions "
              "that turn; "
              f"{best.oracle_deg_per_unit:.2f} oracle deg/unit, R^2 {best.r2:.2f}, jumps {best.jump_share:.0%}, "
              f"identity kept at +-30 {best.identity_kept_at_30:.0%}")
    return str(best.direction), reason



# ---------------------------------------------------------------------------------------------
# Held-out images to edit, and Figure 5
# ---------------------------------------------------------------------------------------------


@dataclass
class HeldoutTargets:
    """Latents of held-out target images and what is known about them.

    ws: float32 [N, num_ws, w_dim]; images: uint8 [N, R, R, 3] (the real images, or the generated
    ones when nothing was projected); labels: int64 [N] or None; metas: toycars meta dicts (for
    true re-renders) or None; masks: bool [N, R, R] vehicle masks or None; source: in words.
    """

    ws: torch.Tensor
    images: np.ndarray
    labels: np.ndarray | None
    metas: list | None
    masks: np.ndarray | None
    source: str


def heldout_targets(G, dataset: str = "toycars", n_per_class: int = 1, data_root=None,
                    projection_settings=None, progress: bool = True, classes=None,
                    executor="local") -> HeldoutTargets:
    """Held-out target images projected into W (``dapper.inversion.projection.project_images``).

    toycars: ``n_per_class`` front-right three-quarter views per class (the kind of image the
    study augments), from a render stream (``EVAL_SEED``) that no notebook trains on.
    stanford_cars: the first ``n_per_class`` images per class (of ``classes``, default the ten) of
    ``data_root``, letterboxed into the generator's content box and projected with the bars masked out.
    ``executor``: where the projection's batches run (:mod:`dapper.executor`).
    """
    picked = pick_images(dataset, ImagePick(n_per_class, seed=EVAL_SEED, homogeneous=True), G=G, data_root=data_root,
                         classes=classes, progress=progress)
    images, labels, metas, masks = picked.images, picked.labels, picked.metas, picked.vehicle_masks
    content = picked.content_masks  # the photo, not the letterbox bars (None: toycars)
    if dataset == "toycars":
        what = f"{len(images)} held-out toycars target views (seed {EVAL_SEED}, front-right three-quarter)"
    else:
        what = f"{len(images)} Stanford Cars images ({n_per_class} per class)"

    real = dataset == "stanford_cars"  # photos already on the canvas: not letterboxed twice, bars masked
    proj = project_images(G, images, masks=content if real else None, on_canvas=real,
                          settings=projection_settings, progress=progress, executor=executor)
    return HeldoutTargets(torch.as_tensor(proj.ws, dtype=torch.float32).cpu(), images, labels, metas, masks,
                          f"projections of {what}")


def rotation_table(G, ws, directions: dict, coefficients=PAPER_COEFFICIENTS, yaw_reader=None):
    """Edited images and their measured yaw for Figure 5.

    ws [R, num_ws, w_dim]; ``directions``: panel title -> Direction, or a list of R copies of one
    direction, each row asked through its own (:func:`dapper.directions.own_responses`, as the study's
    augmentation asks). A direction calibrated in degrees is asked for ``coefficients`` degrees
    through its measured response (``Direction.coefficients_for``); others move by the coefficients
    in their own units. Returns (images uint8 [P, R, K, H, W, 3] for P panels, DataFrame with panel,
    row, coefficient, units, the direction's coefficient used, yaw).
    """
    if yaw_reader is None:
        oracle = oracles.load_pose_oracle()
        yaw_reader = lambda x: oracles.predict_yaw(x, oracle)  # noqa: E731
    panels, rows = [], []
    for title, each in directions.items():
        per_row = isinstance(each, (list, tuple))  # one direction per row: coefficients [R, K]
        d = each[0] if per_row else each
        if per_row:
            if len(each) != len(ws):
                raise ValueError(f"panel {title!r}: {len(each)} directions for {len(ws)} rows")
            if d.units != "degrees":
                raise ValueError(f"panel {title!r}: a direction per row asks for degrees, not {d.units!r}")
            used = np.stack([o.coefficients_for(coefficients) for o in each])
        else:
            used = d.coefficients_for(coefficients) if d.units == "degrees" else np.asarray(coefficients, float)
        images = edit_images(G, ws, d, used)
        n, k = images.shape[:2]
        flat = images.reshape(n * k, *images.shape[2:])
        yaw = np.asarray(yaw_reader(flat)).reshape(n, k)
        u8 = to_uint8(flat)
        panels.append(u8.reshape(n, k, *u8.shape[1:]))
        for i in range(n):
            for j, c in enumerate(coefficients):
                rows.append({"panel": title, "direction": d.method, "layers": f"{d.layers[0]}-{d.layers[1]}",
                             "units": d.units, "row": i, "coefficient": float(c),
                             "direction_coefficient": float(used[i, j] if used.ndim == 2 else used[j]),
                             "yaw": float(yaw[i, j])})
    return np.stack(panels), pd.DataFrame(rows)

