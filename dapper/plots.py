"""The study's figures: one function per figure, each returning the matplotlib Figure.

The seaborn style is set once, by :func:`use_style` (every figure function calls it; it only
acts the first time). Functions draw what they are given and save it when given a ``path``;
they never compute results.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from dapper.data import toycars
from dapper.data.images import to_uint8
from dapper.utils import atomic_save

__all__ = ["use_style", "CONDITION_COLOURS", "fig0_world_calibration", "fig1_reconstructions",
           "fig3_augmentation_gallery", "fig5_rotation", "fig6_accuracy_vs_shots", "fig6_gain_vs_label_agreement",
           "fig6c_noise_curve", "fig7_gradcam",
           "fig7_saliency_differences", "fig_source_gan", "fig0_datasets", "fig_explorer_pose_edits"]

_STYLE_SET = False

# One colour per study condition, the same in every figure.
CONDITION_COLOURS = {
    "real": "#4d4d4d",
    "real+affine": "#1f77b4",
    "real+perturb": "#ff7f0e",
    "real+rotate": "#2ca02c",
    "real+perturb+rotate": "#d62728",
}


def _paper_condition(condition: str) -> str:
    """The paper's condition a variant draws with (its colour): ``real+rotate(tuned)``,
    ``real+rotate(filtered)`` and ``real+rotate(renderer, twins 40%)`` -> ``real+rotate``."""
    return condition.split("(", 1)[0]


def use_style() -> None:
    """Apply the study's seaborn style (once per process)."""
    global _STYLE_SET
    if _STYLE_SET:
        return

    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)
    _STYLE_SET = True


def _save(fig, path) -> None:
    if path is None:
        return

    atomic_save(Path(path), lambda p: fig.savefig(p, dpi=150, bbox_inches="tight"))


def fig3_augmentation_gallery(sources: np.ndarray, groups: Mapping[str, np.ndarray],
                              row_labels: Sequence[str] | None = None,
                              column_notes: Mapping[str, Sequence[str]] | None = None, path=None,
                              title: str | None = None):
    """Figure 3: each source image (one row) beside its synthetic images, grouped by method.

    sources: uint8 [N, H, W, 3]; groups: method name -> uint8 [N, k, H, W, 3] (k may differ per
    method); row_labels: N strings at the left; column_notes: method -> k short notes printed
    above the first row (e.g. rotation in degrees).
    """
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


def _legend_below(fig, axes, ncol: int) -> None:
    """One legend of every panel's entries (each label once) below the panels, where no curve runs
    under it; the figure grows by its rows and is laid out above it."""
    legend = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    rows = -(-len(legend) // ncol)
    fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.22 * rows)
    fig.legend(list(legend.values()), list(legend), fontsize=8, loc="lower center", ncol=min(ncol, len(legend)),
               frameon=False)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))


def fig6_accuracy_vs_shots(summary, path=None,
                      scenario_titles: Mapping[str, str] | None = None):
    """Figure 6: mean accuracy over folds against real images per class (log scale), one line per
    condition with its 95% interval as error bars, one panel per scenario.

    summary: data frame with ``scenario`` (optional), ``condition``, ``shots_per_class``, ``mean``,
    ``ci_low``, ``ci_high`` (as from :func:`dapper.study.stats.summarise`); accuracies in [0, 1] are
    drawn in percent.
    """
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
            base = _paper_condition(cond)
            marker, ls = ("o", "-") if base == cond else ("s", "--") if cond.endswith("(residual)") else ("^", ":")
            ax.errorbar(x, y, yerr=err, marker=marker, ms=4, capsize=3, lw=1.6, label=cond,
                        color=CONDITION_COLOURS.get(base), ls=ls)
        ax.set_xscale("log", base=2)
        ticks = sorted(part["shots_per_class"].unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("real images per class")
        ax.set_ylabel("accuracy (%), mean over folds, 95% interval")
        ax.set_title((scenario_titles or {}).get(sc, sc), fontsize=10)
    _legend_below(fig, axes[0], 5)
    _save(fig, path)
    return fig


def fig6_gain_vs_label_agreement(points, fits=None, path=None, gain_goal: float | None = None,
                                 scenario_titles: Mapping[str, str] | None = None):
    """Figure 6b: each generative condition's difference over real-only at the fewest shots (its
    95% interval as an error bar) against the share of its synthetic images the identity oracle
    keeps in their class, one panel per scenario, with the least-squares line of ``fits``
    (:func:`dapper.study.experiments.label_noise_relation`) drawn dashed up to every image kept, and
    the gain goal (``gain_goal``, a share) dotted."""
    use_style()
    scenarios = list(dict.fromkeys(points["scenario"]))
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.2 * len(scenarios), 4.0), squeeze=False)
    for ax, sc in zip(axes[0], scenarios):
        part = points[points["scenario"] == sc]
        for r in part.itertuples():
            base = _paper_condition(r.condition)
            marker = "o" if base == r.condition else "s" if r.condition.endswith("(residual)") else "^"
            ax.errorbar(100 * r.oracle_class_kept, 100 * r.diff, yerr=[[100 * (r.diff - r.diff_low)],
                                                                       [100 * (r.diff_high - r.diff)]],
                        marker=marker, ms=6, capsize=3, ls="none", color=CONDITION_COLOURS.get(base),
                        label=r.condition)
        title = f"{(scenario_titles or {}).get(sc, sc)}, {int(part['shots_per_class'].iloc[0])} shots"
        if fits is not None and len(fits) and sc in set(fits["scenario"]):
            f = fits[fits["scenario"] == sc].iloc[0]
            x = np.linspace(float(f.kept_min), 1.0, 20)
            ax.plot(100 * x, 100 * (f.at_full + f.slope * (x - 1.0)), ls="--", lw=1, color="#555555",
                    label="least squares, extended to every image kept (x)")
            title += f" (r = {f.r:.2f})"
            ax.errorbar([100.0], [100 * f.at_full], yerr=[[100 * (f.at_full - f.at_full_low)],
                                                          [100 * (f.at_full_high - f.at_full)]],
                        marker="x", ms=6, capsize=3, color="#555555", ls="none")
        ax.axhline(0, lw=0.8, color="black")
        if gain_goal is not None:
            ax.axhline(100 * gain_goal, lw=0.8, ls=":", color="black", label="the goal")
        ax.set_xlabel("synthetic images the oracle keeps in their class (%)")
        ax.set_ylabel("accuracy over real-only (points), 95% interval")
        ax.set_title(title, fontsize=10)
    _legend_below(fig, axes[0], 4)
    _save(fig, path)
    return fig


def fig6c_noise_curve(points, curve, generator_points=None, path=None, gain_goal: float | None = None,
                      scenario_titles: Mapping[str, str] | None = None):
    """Figure 6c: the label-noise curve. Each renderer condition at each twin share (``points`` of
    :func:`dapper.study.noise_curve.noise_curve`): its gain over real-only (95% interval) against the
    share of its images the identity oracle assigns to their label, with the least-squares line of
    ``curve`` per method; ``generator_points`` (the study's generative conditions: ``scenario``,
    ``condition``, ``shots_per_class``, ``diff``, ``diff_low``, ``diff_high``, ``oracle_class_kept``)
    placed at their measured agreement in the panels of their shot level. One panel per scenario
    (rows) and shot level (columns)."""
    use_style()
    scenarios = list(dict.fromkeys(points["scenario"]))
    shots = sorted(points["shots_per_class"].unique())
    fig, axes = plt.subplots(len(scenarios), len(shots), figsize=(4.8 * len(shots), 3.9 * len(scenarios)),
                             squeeze=False, sharex=True)
    methods = list(dict.fromkeys(points["method"]))
    for i, sc in enumerate(scenarios):
        for j, n in enumerate(shots):
            ax = axes[i][j]
            part = points[(points["scenario"] == sc) & (points["shots_per_class"] == n)]
            for m in methods:
                p = part[part["method"] == m].sort_values("oracle_class_kept")
                colour = CONDITION_COLOURS.get(f"real+{m}")
                if p.empty:
                    continue
                x, y = 100 * p["oracle_class_kept"].to_numpy(float), 100 * p["gain"].to_numpy(float)
                err = np.vstack([np.nan_to_num(y - 100 * p["gain_low"].to_numpy(float)),
                                 np.nan_to_num(100 * p["gain_high"].to_numpy(float) - y)])
                ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=2, ls="none", color=colour,
                            label=f"real+{m}(renderer), twins swapped in at 0-80%")
                c = curve[(curve["scenario"] == sc) & (curve["shots_per_class"] == n) & (curve["method"] == m)]
                if len(c):
                    f = c.iloc[0]
                    xs = np.linspace(float(f.measured_min), 1.0, 20)
                    ax.plot(100 * xs, 100 * (f.intercept + f.slope * xs), lw=1, ls="--", color=colour)
            if generator_points is not None and len(generator_points):
                g = generator_points[(generator_points["scenario"] == sc) & (generator_points["shots_per_class"] == n)]
                for r in g.itertuples():
                    base = _paper_condition(r.condition)
                    marker = "D" if base == r.condition else "s" if r.condition.endswith("(residual)") else "^"
                    ax.errorbar(100 * r.oracle_class_kept, 100 * r.diff,
                                yerr=[[100 * (r.diff - r.diff_low)], [100 * (r.diff_high - r.diff)]], marker=marker,
                                ms=6, mfc="white", capsize=2, ls="none", color=CONDITION_COLOURS.get(base),
                                label=f"{r.condition} (generator)")
            ax.axhline(0, lw=0.8, color="black")
            if gain_goal is not None:
                ax.axhline(100 * gain_goal, lw=0.8, ls=":", color="black", label="the goal")
            ax.set_title(f"{(scenario_titles or {}).get(sc, sc)}, {int(n)} shots", fontsize=10)
            ax.set_xlabel("synthetic images the oracle assigns to their label (%)")
            ax.set_ylabel("accuracy over real-only (points)")
    _legend_below(fig, [a for row in axes for a in row], 3)
    _save(fig, path)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 7 and the saliency measures (saliency helper; dapper.study.saliency computes what they draw)

def fig7_gradcam(images: np.ndarray, cams: Mapping[str, np.ndarray], masks: np.ndarray | None = None,
                      row_labels: Sequence[str] | None = None, notes: Mapping[str, Sequence[str]] | None = None,
                      groups_per_row: int = 2, alpha: float = 0.45, path=None, title: str | None = None,
                      caption: str | None = None):
    """Figure 7: each test image beside its class activation maps, one map per classifier.

    images: uint8 [N, H, W, 3]; cams: classifier name -> float [N, h, w] in [0, 1] (drawn over
    the image, stretched to its size, jet colour map); masks: bool [N, H, W] object masks, drawn
    as a white outline; row_labels: N strings above each image; notes: name -> N strings under
    each map (e.g. its energy share and prediction). ``groups_per_row`` images share a figure row.
    """
    use_style()
    n = len(images)
    names = list(cams)
    per = 1 + len(names)
    n_rows = max(1, -(-n // groups_per_row))
    n_cols = per * groups_per_row
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.6 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    h, w = images.shape[1:3]
    extent = (-0.5, w - 0.5, h - 0.5, -0.5)
    for i in range(n):
        r, g = divmod(i, groups_per_row)
        ax0 = axes[r, g * per]
        ax0.imshow(images[i], extent=extent)
        if masks is not None:
            ax0.contour(masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.6)
        ax0.set_title(row_labels[i] if row_labels is not None else "image", fontsize=7)
        for j, name in enumerate(names):
            ax = axes[r, g * per + 1 + j]
            ax.imshow(images[i], extent=extent)
            ax.imshow(cams[name][i], cmap="jet", alpha=alpha, vmin=0, vmax=1, extent=extent, interpolation="bilinear")
            if masks is not None:
                ax.contour(masks[i].astype(float), levels=[0.5], colors="white", linewidths=0.6)
            ax.set_title(name, fontsize=7)
            if notes is not None and name in notes:
                ax.text(0.5, -0.04, notes[name][i], transform=ax.transAxes, ha="center", va="top", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.95 if title else 0.97, wspace=0.05, hspace=0.4)
    if caption:
        fig.text(0.01, 0.0, textwrap.fill(caption, width=int(18 * n_cols)), ha="left", va="top", fontsize=7)
    _save(fig, path)
    return fig


def fig7_saliency_differences(summary, names: Sequence[str] = ("real", "augmented"), path=None,
                              measure_labels: Mapping[str, str] | None = None):
    """Paired differences ``names[1] - names[0]`` of each saliency measure with 95% intervals
    (one marker per scenario), next to each classifier's mean.

    summary: data frame from :func:`dapper.study.saliency.saliency_summary` (columns ``measure``,
    ``diff``, ``diff_ci_low``, ``diff_ci_high``, ``mean_<name>``, ``ci_low_<name>``,
    ``ci_high_<name>``, ``significant``, optionally ``scenario``).
    """
    use_style()
    s = summary.copy()
    if "scenario" not in s.columns:
        s["scenario"] = "all"
    measures = list(dict.fromkeys(s["measure"]))
    scenarios = list(dict.fromkeys(s["scenario"]))
    short = {"energy": "energy in object", "pointing": "pointing game", "road_morf": "ROAD MoRF (lower better)",
             "road_lerf": "ROAD LeRF (higher better)", "road": "ROAD (higher better)"}
    labels = [(measure_labels or short).get(m, m) for m in measures]
    fig, (ax_m, ax_d) = plt.subplots(1, 2, figsize=(9.5, 0.55 * len(measures) * len(scenarios) + 1.4), sharey=True)
    step = 0.8 / max(1, len(scenarios) * len(names))
    for k, sc in enumerate(scenarios):
        part = s[s["scenario"] == sc].set_index("measure")
        for j, name in enumerate(names):
            y = np.arange(len(measures)) + (k * len(names) + j) * step - 0.4 + step / 2
            m = part.reindex(measures)
            lo = (m[f"mean_{name}"] - m[f"ci_low_{name}"]).to_numpy(float)
            hi = (m[f"ci_high_{name}"] - m[f"mean_{name}"]).to_numpy(float)
            ax_m.errorbar(m[f"mean_{name}"], y, xerr=np.vstack([np.nan_to_num(lo), np.nan_to_num(hi)]), fmt="o",
                          ms=4, capsize=2, color=CONDITION_COLOURS.get("real" if j == 0 else "real+perturb+rotate"),
                          label=f"{name} ({sc})" if len(scenarios) > 1 else name)
        y = np.arange(len(measures)) + k * step * len(names) - 0.4 + step
        m = part.reindex(measures)
        if "chance" in m.columns:
            ax_m.scatter(m["chance"], y, marker="|", s=120, color="#888888", zorder=3,
                         label="uniform map (chance)" if k == 0 else None)
        err = np.vstack([np.nan_to_num((m["diff"] - m["diff_ci_low"]).to_numpy(float)),
                         np.nan_to_num((m["diff_ci_high"] - m["diff"]).to_numpy(float))])
        sig = m["significant"].fillna(False).to_numpy(bool)
        ax_d.errorbar(m["diff"], y, xerr=err, fmt="none", ecolor="#555555", capsize=2)
        ax_d.scatter(m["diff"][sig], y[sig], marker="o", color="#d62728", zorder=3,
                     label="significant (Holm, t and Wilcoxon)" if k == 0 else None)
        ax_d.scatter(m["diff"][~sig], y[~sig], marker="o", facecolors="white", edgecolors="#555555", zorder=3,
                     label="not significant" if k == 0 else None)
        if len(scenarios) > 1:
            for yy in y:
                ax_d.text(1.01, yy, sc, transform=ax_d.get_yaxis_transform(), fontsize=6, va="center")
    ax_d.axvline(0, color="black", lw=0.8)
    ax_m.set_yticks(np.arange(len(measures)), labels)
    ax_m.invert_yaxis()
    ax_m.set_xlabel("mean over test images, 95% interval")
    ax_d.set_xlabel(f"{names[1]} - {names[0]}, paired, 95% interval")
    ax_m.legend(fontsize=7, loc="best")
    ax_d.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    return fig


def fig0_world_calibration(identity_rows: Sequence[Mapping], pairs: np.ndarray, first_names: Sequence[str],
                      second_names: Sequence[str], yaws: Sequence[float], goals: Mapping[int, float] | None = None,
                      path=None, world: str = ""):
    """Figure 0 (world calibration): the identity oracle's accuracy against resolution, and each
    look-alike pair side by side at a few yaws at native resolution.

    identity_rows: dicts with ``size``, ``accuracy``, ``pair_accuracy``; pairs: uint8
    [n_pairs, n_yaws, 2, H, W, 3]; goals: size -> bound drawn as a marker (>= at the sizes the
    classes must resolve, <= at the one where they must not).
    """
    use_style()
    n_pairs, n_yaws = pairs.shape[:2]
    fig = plt.figure(figsize=(13.5, 0.6 + 1.25 * n_pairs))
    # curve, a column for the pair names, then the images
    grid = fig.add_gridspec(n_pairs, 2 + 2 * n_yaws, width_ratios=[4.5, 1.9] + [1] * (2 * n_yaws), wspace=0.05)
    ax = fig.add_subplot(grid[:, 0])
    sizes = [r["size"] for r in identity_rows]
    ax.plot(sizes, [r["accuracy"] for r in identity_rows], "o-", label="class (10-way)")
    ax.plot(sizes, [r["pair_accuracy"] for r in identity_rows], "s--", label="look-alike pair (5-way)")
    for size, bound in (goals or {}).items():
        ax.plot([size], [bound], marker="_", ms=18, mew=2, color="#d62728")
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="resolution the views were resampled to (px)", ylabel="identity oracle accuracy",
           ylim=(0, 1.02), xticks=sizes, title=f"identity against resolution {world}".strip())
    ax.invert_xaxis()
    ax.legend(loc="lower left", fontsize=8)
    for p in range(n_pairs):
        names = fig.add_subplot(grid[p, 1])
        names.set_axis_off()
        names.text(0.97, 0.5, f"A: {first_names[p]}\nB: {second_names[p]}", ha="right", va="center", fontsize=7.5,
                   transform=names.transAxes)
        for j in range(n_yaws):
            for k in range(2):
                a = fig.add_subplot(grid[p, 2 + 2 * j + k])
                a.imshow(pairs[p, j, k], interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if p == 0:
                    a.set_title(f"{yaws[j]:.0f}\N{DEGREE SIGN}" + (" A" if k == 0 else " B"), fontsize=8)
    _save(fig, path)
    return fig


def fig5_rotation(images: np.ndarray, table, coefficients=(-30, -20, 0, 20, 30), titles=None, yaw_label="oracle yaw",
                  path=None):
    """Figure 5: per panel, rows of vehicles at the coefficients, measured yaw under each image.
    images uint8 [P, R, K, H, W, 3] and the table from :func:`dapper.study.direction_eval.rotation_table`."""
    use_style()

    p, r, k = images.shape[:3]
    titles = titles or list(dict.fromkeys(table.panel))
    ratios = ([1] * k + [0.25]) * p
    fig, axes = plt.subplots(r, p * k + (p - 1), figsize=(1.2 * (p * k + 0.25 * (p - 1)), 1.35 * r + 0.9),
                             squeeze=False, gridspec_kw={"width_ratios": ratios[:-1], "wspace": 0.05, "hspace": 0.35})
    for ax in axes.ravel():
        ax.axis("off")
    for pi, title in enumerate(titles):
        sub = table[table.panel == title]
        units = {"paper": "paper units", "w": "W distance"}.get(sub.units.iloc[0], sub.units.iloc[0])
        for ri in range(r):
            for j, c in enumerate(coefficients):
                ax = axes[ri, pi * (k + 1) + j]
                ax.imshow(images[pi, ri, j], interpolation="nearest")
                yaw = sub[(sub.row == ri) & (sub.coefficient == float(c))].yaw.iloc[0]
                ax.set_title(f"{yaw:.0f}°", fontsize=8, y=-0.2)
                if ri == 0:
                    ax.text(0.5, 1.08, f"{c:+g}" if c else "0", transform=ax.transAxes, ha="center", fontsize=9)
        axes[0, pi * (k + 1) + k // 2].text(0.5, 1.3, f"{title}\n(coefficients in {units})",
                                           transform=axes[0, pi * (k + 1) + k // 2].transAxes,
                                           ha="center", va="bottom", fontsize=9)
    fig.suptitle(f"Rotation along pose directions; under each image: {yaw_label} (deg)", fontsize=10, y=1.0)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.04, top=1 - 1.0 / (1.35 * r + 0.9))
    _save(fig, path)
    return fig


def fig1_reconstructions(originals, reconstructions, titles, notes=None, path=None):
    """Originals (top row) beside their projections (bottom row): the paper's Figure 1.

    originals, reconstructions: float [K, 3, R, R] in [-1, 1] (or uint8 [K, R, R, 3]); titles: K
    column titles; notes: optional K strings under each reconstruction (e.g. PSNR). Returns a
    matplotlib Figure, saved to ``path`` when given.
    """
    import torch

    use_style()

    def u8(x):
        return to_uint8(x) if isinstance(x, torch.Tensor) else np.asarray(x)

    top, bottom = u8(originals), u8(reconstructions)
    k = len(top)
    fig, axes = plt.subplots(2, k, figsize=(1.45 * k, 3.4), squeeze=False)
    for j in range(k):
        for i, (row, label) in enumerate(((top, "original"), (bottom, "projection"))):
            ax = axes[i, j]
            ax.imshow(row[j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, fontsize=9)
        axes[0, j].set_title(titles[j].replace(" ", "\n", 1), fontsize=7.5)
        if notes is not None:
            axes[1, j].set_xlabel(notes[j], fontsize=7.5)
    fig.tight_layout()
    _save(fig, path)
    return fig


def fig_source_gan(result: dict, log=None, path=None):
    """The source generator at a glance: 32 samples with the FD ratio, the pose oracle's yaw
    histogram of generated against source images, and the training losses from ``log`` (a
    ``source_gan_log.csv``; per-class identity kept when there is none). ``result``: what
    :func:`dapper.study.gan_eval.evaluate` returns."""
    use_style()

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw=dict(width_ratios=[1.6, 1, 1]))
    s = result["samples"][:32]
    h, w = s.shape[1:3]
    grid = s.reshape(4, 8, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(4 * h, 8 * w, 3)
    axes[0].imshow(grid)
    axes[0].set_axis_off()
    refs = ", ".join(f"{fd / result['fd_source_halves']:.0f} at {size} px"
                     for size, fd in sorted(result["fd_source_resampled"].items(), reverse=True))
    axes[0].set_title(f"generated (truncation 1), FD ratio {result['fd_ratio']:.1f}"
                      + (f"\nsource renders resampled: {refs}" if refs else ""), fontsize=10)
    bins = len(result["yaw_hist_source"])
    centres = (np.arange(bins) + 0.5) * 360 / bins
    axes[1].bar(centres, result["yaw_hist_source"], width=0.9 * 360 / bins, alpha=0.5, label="source renders")
    axes[1].bar(centres, result["yaw_hist_generated"], width=0.5 * 360 / bins, alpha=0.8, label="generated")
    axes[1].set_xlabel("yaw by pose oracle (deg)")
    axes[1].set_ylabel("images")
    axes[1].set_title(f"pose coverage {result['pose_coverage_generated']:.0%} of {bins} bins")
    axes[1].legend()
    if log is not None and Path(log).exists():
        df = pd.read_csv(log)
        axes[2].plot(df["kimg"], df["loss_g"], label="G loss")
        axes[2].plot(df["kimg"], df["loss_d"], label="D loss")
        if "device" in df:  # a run continued on another device (e.g. CPU, then a GPU leg)
            # a leg starts where the one before it ended (its first logged row comes a snapshot later)
            starts = df["device"].ne(df["device"].shift())
            begin = df["kimg"].shift(fill_value=0.0)[starts]
            for kimg, dev in zip(begin, df["device"][starts]):
                axes[2].axvline(kimg, color="grey", lw=0.8, ls=":")
                axes[2].annotate(f" {dev}", (kimg, 1), xycoords=("data", "axes fraction"), va="top", fontsize=8)
        axes[2].set_xlabel("kimg")
        axes[2].set_title("training losses")
        axes[2].legend()
    elif "identity_kept_per_class" in result:
        axes[2].barh(toycars.TARGET_CLASSES, result["identity_kept_per_class"])
        axes[2].set_xlim(0, 1)
    else:
        axes[2].set_axis_off()
    fig.tight_layout()
    _save(fig, path)
    return fig


def fig0_datasets(source, targets: np.ndarray, class_names: Sequence[str], columns: Sequence[str], path=None,
                  target_title: str = "target classes, pairs in consecutive rows"):
    """The datasets: source images (uint8 [N, R, R, 3], N a multiple of 8; None when the generator's
    training set is not at hand, as in real mode) in a grid of 8 columns, beside the target classes
    (uint8 [C, K, S, S, 3]: one row per class, column ``k`` labelled ``columns[k]``, look-alike
    pairs in consecutive rows)."""
    use_style()
    c, k, size = targets.shape[:3]
    rows = targets.transpose(0, 2, 1, 3, 4).reshape(c * size, k * size, 3)
    panels = 1 if source is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 9), squeeze=False)
    axes = axes[0]
    if source is not None:
        r = source.shape[1]
        grid = source.reshape(-1, 8, r, r, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 8 * r, 3)
        axes[0].imshow(grid)
        axes[0].set_title("source set (unlabeled, no pickups)")
        axes[0].set_axis_off()
    ax = axes[-1]
    ax.imshow(rows)
    ax.set_yticks([size * (i + 0.5) for i in range(c)], list(class_names))
    ax.set_xticks([size * (i + 0.5) for i in range(k)], list(columns))
    ax.set_title(target_title)
    ax.grid(False)
    fig.tight_layout()
    _save(fig, path)
    return fig


def fig_explorer_pose_edits(rows: Mapping[str, Sequence[tuple[str, np.ndarray]]], title: str, path=None):
    """Rows of labelled images (name -> [(column label, uint8 [R, R, 3]), ...], the same columns in
    every row), e.g. target, reconstruction and pose edits of the latent explorer."""
    use_style()
    names = list(rows)
    n_cols = len(rows[names[0]])
    fig, axes = plt.subplots(len(names), n_cols, figsize=(1.3 * n_cols, 1.4 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for ax, (label, img) in zip(axes[i], rows[name]):
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(label, fontsize=8)
        axes[i, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return fig
