"""The study's figures: one function per figure, each returning the matplotlib Figure.

The seaborn style is set once, by :func:`use_style` (every figure function calls it; it only
acts the first time). Functions draw what they are given and save it when given a ``path``;
they never compute results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["use_style", "CONDITION_COLOURS", "augmentation_gallery", "accuracy_vs_shots"]

_STYLE_SET = False

# One colour per study condition, the same in every figure.
CONDITION_COLOURS = {
    "real": "#4d4d4d",
    "real+affine": "#1f77b4",
    "real+perturb": "#ff7f0e",
    "real+rotate": "#2ca02c",
    "real+perturb+rotate": "#d62728",
}


def use_style() -> None:
    """Apply the study's seaborn style (once per process)."""
    global _STYLE_SET
    if _STYLE_SET:
        return
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    _STYLE_SET = True


def _save(fig, path) -> None:
    if path is None:
        return
    from dapper.utils import atomic_save

    atomic_save(Path(path), lambda p: fig.savefig(p, dpi=150, bbox_inches="tight"))


def augmentation_gallery(sources: np.ndarray, groups: Mapping[str, np.ndarray], row_labels: Sequence[str] | None = None,
                         column_notes: Mapping[str, Sequence[str]] | None = None, path=None, title: str | None = None):
    """Figure 3: each source image (one row) beside its synthetic images, grouped by method.

    sources: uint8 [N, H, W, 3]; groups: method name -> uint8 [N, k, H, W, 3] (k may differ per
    method); row_labels: N strings at the left; column_notes: method -> k short notes printed
    above the first row (e.g. rotation in degrees).
    """
    import matplotlib.pyplot as plt

    use_style()
    n = len(sources)
    widths = [1] + [g.shape[1] for g in groups.values()]
    n_cols = sum(widths) + len(groups)  # a thin gap column before each group
    fig, axes = plt.subplots(n, n_cols, figsize=(0.95 * n_cols, 1.0 * n + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1] + sum(([0.15] + [1] * w for w in widths[1:]), [])})
    for ax in axes.flat:
        ax.set_axis_off()
    for i in range(n):
        axes[i, 0].imshow(sources[i])
        if row_labels is not None:
            axes[i, 0].text(-0.08, 0.5, row_labels[i], transform=axes[i, 0].transAxes, ha="right", va="center",
                            fontsize=7)
        col = 1
        for name, imgs in groups.items():
            col += 1
            for j in range(imgs.shape[1]):
                axes[i, col + j].imshow(imgs[i, j])
                if i == 0:
                    note = column_notes.get(name, [None] * imgs.shape[1])[j] if column_notes else None
                    label = name if j == 0 else ""
                    axes[0, col + j].set_title(label + ("\n" if label or note else "") + (note or ""), fontsize=7,
                                               loc="left")
            col += imgs.shape[1]
    axes[0, 0].set_title("source", fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.04, hspace=0.06)
    _save(fig, path)
    return fig


def accuracy_vs_shots(summary, path=None,
                      scenario_titles: Mapping[str, str] | None = None):
    """Figure 6: mean accuracy over folds against real images per class (log scale), one line per
    condition with its 95% interval as error bars, one panel per scenario.

    summary: data frame with ``scenario`` (optional), ``condition``, ``shots_per_class``, ``mean``,
    ``ci_low``, ``ci_high`` (as from :func:`dapper.stats.summarise`); accuracies in [0, 1] are
    drawn in percent.
    """
    import matplotlib.pyplot as plt

    use_style()
    summary = summary.copy()
    if "scenario" not in summary.columns:
        summary["scenario"] = "diverse"
    scenarios = list(dict.fromkeys(summary["scenario"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.0), squeeze=False, sharey=False)
    conditions = list(dict.fromkeys(summary["condition"]))
    offsets = dict(zip(conditions, np.linspace(-0.06, 0.06, len(conditions))))  # keep error bars apart
    for ax, sc in zip(axes[0], scenarios):
        part = summary[summary["scenario"] == sc]
        for cond in conditions:
            c = part[part["condition"] == cond].sort_values("shots_per_class")
            if c.empty:
                continue
            x = c["shots_per_class"].to_numpy(float) * 2 ** offsets[cond]
            y = 100 * c["mean"].to_numpy(float)
            lo = 100 * c["ci_low"].to_numpy(float)
            hi = 100 * c["ci_high"].to_numpy(float)
            err = np.vstack([np.nan_to_num(y - lo), np.nan_to_num(hi - y)])
            ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, lw=1.6, label=cond,
                        color=CONDITION_COLOURS.get(cond))
        ax.set_xscale("log", base=2)
        ticks = sorted(part["shots_per_class"].unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("real images per class")
        ax.set_ylabel("accuracy (%), mean over folds, 95% interval")
        ax.set_title((scenario_titles or {}).get(sc, sc), fontsize=10)
    axes[0, -1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    return fig
