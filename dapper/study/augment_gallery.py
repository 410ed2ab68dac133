"""Notebook 03's gallery (figure 3): the rows it shows and what the oracles read in its images.

Each real training image gets the row of its reconstruction, ``k`` synthetic images per method of
:data:`dapper.augment.METHODS` (rotations left to right from the most negative turn) and ``k``
affine augmentations as the study's ``real+affine`` condition makes them, at the classifier's input
size. :func:`gallery_oracles` adds the oracles' reading of every synthetic image to the manifest
(``reports/results/fig3_augmentation_gallery.csv``): identity kept, and the yaw change against the
reconstruction (toycars only; the oracles only measure).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from dapper import classify
from dapper.augment import METHODS, SyntheticSet
from dapper.judges import oracles
from dapper.study.config import StudyConfig
from dapper.utils import seed_everything

__all__ = ["GalleryOracles", "reconstruction_images", "gallery_groups", "gallery_oracles"]


def reconstruction_images(reconstructions: torch.Tensor) -> np.ndarray:
    """Projection reconstructions float [N, 3, R, R] in [-1, 1] -> uint8 [N, R, R, 3]."""
    return ((reconstructions.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gallery_groups(config: StudyConfig, images: np.ndarray, reconstructions: np.ndarray,
                   synthetic: SyntheticSet) -> tuple[dict, dict]:
    """The gallery's rows beside the N real ``images`` uint8 [N, H, W, 3]: ``({group: uint8 [N, k, h, w, 3]},
    {group: one note per column})``. ``reconstructions``: uint8 [N, R, R, 3] (:func:`reconstruction_images`);
    ``synthetic``: ``config.augment.k`` images per method per real image, in the real images' order. A
    rotation group gets its columns' degrees as notes when every row has the same. The affine group
    draws from torch's global generator, seeded with ``config.seed`` first (so the same gallery twice)."""
    k, n = config.augment.k, len(images)
    groups, notes = {"reconstruction": reconstructions[:, None]}, {}
    for method in METHODS:
        part = synthetic.select(methods=[method])
        manifest = part.manifest.reset_index(drop=True)
        rows = part.images.reshape(n, k, *part.images.shape[1:])
        if "rotate" in method:  # left to right from the most negative rotation
            order = manifest["degrees"].to_numpy().reshape(n, k).argsort(1)
            rows = np.take_along_axis(rows, order[:, :, None, None, None], 1)
            degrees = np.take_along_axis(manifest["degrees"].to_numpy().reshape(n, k), order, 1)
            if (degrees == degrees[0]).all():
                notes[method] = [f"{d:+.0f} deg" for d in degrees[0]]
        groups[method] = rows
    seed_everything(config.seed)
    # the affine row at the classifier's input size (its timm data config), as the study feeds it
    x = classify.prepare_images(images, classify.data_config(classify.create_classifier(10, config.classifier,
                                                                                        weights=None)))
    ft = config.finetune
    transform = classify.affine_transform(tuple(x.shape[-2:]), ft.affine_policy, ft.affine_crop_scale,
                                          ft.affine_magnitude)
    groups["affine (baseline)"] = torch.stack([classify.affine_augment(x, transform) for _ in range(k)],
                                              1).permute(0, 1, 3, 4, 2).numpy()
    return groups, notes


@dataclass
class GalleryOracles:
    """``rows``: the synthetic images' manifest with ``oracle_class_kept`` and (pose oracle there)
    ``oracle_yaw_change`` in degrees (-180, 180]; ``table``: their mean and std per method;
    ``reconstruction_kept``: the share of reconstructions the identity oracle reads as their class;
    ``lines``: what a reader is told (a missing pose oracle, the reconstructions' share)."""

    rows: pd.DataFrame
    table: pd.DataFrame | None = None
    reconstruction_kept: float | None = None
    lines: list[str] = field(default_factory=list)


def gallery_oracles(synthetic: SyntheticSet, reconstructions: np.ndarray, keys, labels,
                    with_oracles: bool = True) -> GalleryOracles:
    """The oracles' reading of the gallery. ``reconstructions`` uint8 [N, R, R, 3] of the real images
    with content ``keys`` [N] and classes ``labels`` [N]; ``with_oracles=False`` (real mode: no
    oracles) gives the manifest alone."""
    rows = synthetic.manifest.copy()
    if not with_oracles:
        return GalleryOracles(rows)
    lines = []
    identity = oracles.load_identity_oracle()
    pred, _ = oracles.predict_identity(synthetic.images, identity)
    rows["oracle_class_kept"] = pred == synthetic.labels
    recon_pred, _ = oracles.predict_identity(reconstructions, identity)
    try:
        pose = oracles.load_pose_oracle()
    except FileNotFoundError as exc:
        lines.append(f"pose oracle not available: {exc}")
        pose = None
    if pose is not None:
        yaw = oracles.predict_yaw(synthetic.images, pose)
        base = dict(zip(keys, oracles.predict_yaw(reconstructions, pose)))
        rows["oracle_yaw_change"] = (yaw - rows["source_key"].map(base).to_numpy() + 180) % 360 - 180
    cols = [c for c in ("oracle_class_kept", "oracle_yaw_change") if c in rows]
    table = rows.groupby("method")[cols].agg(["mean", "std"]) if cols else None
    kept = float(np.mean(recon_pred == np.asarray(labels)))
    lines.append(f"identity oracle on the reconstructions: {kept:.0%} of the class kept")
    return GalleryOracles(rows, table, kept, lines)
