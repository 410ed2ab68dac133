"""Notebook 01's measurements of projection: the per-image table, figure 1's choice of images, its
caption and the statements read off the table (``projection.csv``, ``fig1_reconstructions.md``).

The identity oracle only measures here (toycars); real photos have no oracle, and the table says so
with empty columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dapper.judges.oracles import predict_identity
from dapper.utils import reports_dir

__all__ = ["INVERSION_FILES", "projection_table", "write_projection_table", "projection_summary",
           "figure1_data", "figure1_caption", "write_figure1_caption", "projection_statements"]

INVERSION_FILES = {"table": "projection.csv", "caption": "fig1_reconstructions.md"}
"""The results files, in ``reports_dir("results")``."""


def projection_table(proj, images: np.ndarray, labels: np.ndarray, class_names, dataset: str) -> pd.DataFrame:
    """One row per projected image: its class, PSNR, perceptual distance, steps, seconds and failure,
    and (toycars) whether the identity oracle names the true class on the reconstruction and on the
    original. ``proj``: :func:`dapper.inversion.projection.project_images`'s result for ``images``."""
    table = pd.DataFrame({"class": [class_names[c] for c in labels], "psnr": proj.metrics["psnr"],
                          "perceptual": proj.metrics["perceptual"]})
    if dataset == "toycars":
        kept, _ = predict_identity(proj.reconstructions)
        orig, _ = predict_identity(images)
        table["oracle_identity_kept"] = kept == labels
        table["oracle_correct_on_original"] = orig == labels
    else:
        table["oracle_identity_kept"] = np.nan  # no oracle for real photos
    table["steps"] = proj.metrics["steps"]
    table["seconds"] = np.round(proj.metrics["seconds"], 3)
    table["failed"] = proj.metrics["failed"]
    return table


def write_projection_table(table: pd.DataFrame, folder=None) -> pd.DataFrame:
    """Write ``projection.csv``; return the per-class means a reader is shown."""
    folder = reports_dir("results") if folder is None else folder
    table.to_csv(folder / INVERSION_FILES["table"], index=False)
    return projection_summary(table)


def projection_summary(table: pd.DataFrame) -> pd.DataFrame:
    return table.groupby("class", sort=False)[["psnr", "perceptual", "oracle_identity_kept", "steps"]].mean()


def figure1_data(table: pd.DataFrame, labels: np.ndarray, dataset: str) -> tuple[list[int], list[str]]:
    """Figure 1's images, the first of each class (look-alike pairs side by side), and the note
    under each: its PSNR and (toycars) whether the oracle still names its class."""
    first = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)]
    notes = [f"{table.psnr[i]:.1f} dB" + ("" if dataset != "toycars" else (" ✓" if table.oracle_identity_kept[i]
                                                                          else " ✗"))
             for i in first]
    return first, notes


def figure1_caption(table: pd.DataFrame, dataset: str) -> str:
    oracle = dataset == "toycars"
    return ("Figure 1. Held-out target images (top) and their projections into W (bottom), one per class; "
            "PSNR inside the picture"
            + (", ✓ when the oracle still names the true class" if oracle else "")
            + f". Over all {len(table)} images: mean PSNR {table.psnr.mean():.1f} dB, "
            + f"mean {table.steps.mean():.0f} steps"
            + (f", identity kept {table.oracle_identity_kept.mean():.0%}" if oracle else "") + ".")


def write_figure1_caption(table: pd.DataFrame, dataset: str, folder=None) -> str:
    """Write ``fig1_reconstructions.md`` (the caption); return it."""
    folder = reports_dir("results") if folder is None else folder
    caption = figure1_caption(table, dataset)
    (folder / INVERSION_FILES["caption"]).write_text(caption + "\n")
    return caption


def projection_statements(table: pd.DataFrame, dataset: str) -> list[str]:
    """The statements the notebook prints, computed from the table (nothing typed in by hand)."""
    by_class = table.groupby("class", sort=False)
    per_class = by_class.psnr.mean()
    lines = [f"Mean PSNR {table.psnr.mean():.1f} dB (per class {per_class.min():.1f}-{per_class.max():.1f}; "
             f"lowest: {per_class.idxmin()}); {int(table.failed.astype(bool).sum())} of {len(table)} projections "
             "failed."]
    if dataset == "toycars":
        pickup = table["class"].str.contains("pickup", case=False)
        lines.append(f"Oracle identity kept: {table.oracle_identity_kept.mean():.0%} of all reconstructions "
                     f"(oracle correct on {table.oracle_correct_on_original.mean():.0%} of the originals).")
        if pickup.any() and (~pickup).any():
            kept = table.oracle_identity_kept
            lines.append(f"Pickups (a body the generator never saw): identity kept {kept[pickup].mean():.0%}, "
                         f"PSNR {table.psnr[pickup].mean():.1f} dB; other classes {kept[~pickup].mean():.0%}, "
                         f"{table.psnr[~pickup].mean():.1f} dB.")
    return lines
