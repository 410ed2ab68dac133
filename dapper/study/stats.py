"""Statistics of the five-fold study: intervals over folds, paired tests, data saving, curve area.

All functions compute only (no I/O). Accuracies are fractions in [0, 1]; shots are real images per
class (> 0). With five folds every interval is wide and the smallest two-sided Wilcoxon p-value
is 0.0625: the tables say so rather than hide it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["Interval", "mean_interval", "PairedTest", "paired_test", "shots_needed", "real_data_saving",
           "learning_curve_area", "summarise", "compare_conditions", "savings_table", "curve_areas"]


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and two-sided Student-t interval of the mean (NaNs dropped; n < 2 gives a NaN interval)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    m = float(v.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(m, m - half, m + half, n)


@dataclass(frozen=True)
class PairedTest:
    """``b - a`` over paired folds: mean difference with its t-interval, paired t-test and
    Wilcoxon signed-rank p-values (two-sided), and how many pairs b won."""

    diff: Interval
    p_t: float
    p_wilcoxon: float
    wins: int
    n: int


def paired_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedTest:
    """Compare condition ``b`` with ``a`` on the same folds (pairs with a NaN are dropped)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in shape: {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = b - a
    n = len(d)
    p_t = p_w = math.nan
    if n >= 2:
        if np.all(d == d[0]):
            p_t = 1.0 if d[0] == 0 else 0.0  # no spread: the test statistic is undefined
        else:
            p_t = float(stats.ttest_rel(b, a).pvalue)
        if np.any(d != 0):
            p_w = float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        else:
            p_w = 1.0
    return PairedTest(mean_interval(d, confidence), p_t, p_w, int((d > 0).sum()), n)


def holm(p: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values for one family of tests (NaNs are left out of the family
    and stay NaN). Controls the chance of any false positive in the family at the nominal level."""
    p = np.asarray(p, np.float64)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok])]):
        running = max(running, min(1.0, (len(ok) - rank) * p[i]))
        out[i] = running
    return out


def shots_needed(shots: Sequence[float], accuracy: Sequence[float], target: float) -> float:
    """Real images per class the learning curve needs to reach ``target`` accuracy.

    The curve (``accuracy`` at ``shots``) is made monotone (running maximum, so a dip never
    creates a second crossing) and interpolated linearly in log-shots. Returns the first
    crossing; ``shots[0]`` if already reached at the fewest shots, ``inf`` if never reached
    within the measured range (no extrapolation).
    """
    s = np.asarray(shots, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.argsort(s)
    s, acc = s[order], acc[order]
    keep = np.isfinite(acc)
    s, acc = s[keep], acc[keep]
    if len(s) == 0 or not math.isfinite(target):
        return math.nan
    env = np.maximum.accumulate(acc)
    if target <= env[0]:
        return float(s[0])
    if target > env[-1]:
        return math.inf
    i = int(np.argmax(env >= target))  # first point at or above the target
    x0, x1 = math.log(s[i - 1]), math.log(s[i])
    y0, y1 = env[i - 1], env[i]
    t = (target - y0) / (y1 - y0)
    return float(math.exp(x0 + t * (x1 - x0)))


def real_data_saving(shots_used: float, accuracy_reached: float, real_shots: Sequence[float],
                     real_accuracy: Sequence[float]) -> float:
    """Share of real data saved: ``1 - shots_used / shots_needed``, where ``shots_needed`` is what
    real-only training needs (on its learning curve) to match ``accuracy_reached``.

    Positive: the augmented run matched real-only with less real data; 0: no saving; negative: it
    needed more. NaN where the real-only curve never reaches the accuracy (no extrapolation) or
    where the accuracy is below the curve's first point (the saving cannot be resolved).
    """
    s = np.asarray(real_shots, dtype=np.float64)
    acc = np.asarray(real_accuracy, dtype=np.float64)[np.argsort(s)]
    acc = acc[np.isfinite(acc)]
    if len(acc) == 0 or not math.isfinite(accuracy_reached) or accuracy_reached < acc[0]:
        return math.nan
    needed = shots_needed(real_shots, real_accuracy, accuracy_reached)
    if not math.isfinite(needed):
        return math.nan
    return float(1.0 - shots_used / needed)


def learning_curve_area(shots: Sequence[float], accuracy: Sequence[float]) -> float:
    """Area under the learning curve in log-shots, divided by the log-shots range: the mean
    accuracy over the measured range when every doubling of data weighs the same (in [0, 1])."""
    s = np.asarray(shots, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    order = np.argsort(s)
    x, y = np.log(s[order]), acc[order]
    if len(x) < 2 or not np.all(np.isfinite(y)):
        return math.nan
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


# ---------------------------------------------------------------------------------------------
# Tables from the results file (pandas data frames with the five_fold.csv columns)
# ---------------------------------------------------------------------------------------------

GROUP = ["dataset", "scenario"]


def _groups(df):
    keys = [k for k in GROUP if k in df.columns]
    return keys, (df.groupby(keys, sort=False) if keys else [((), df)])


def summarise(df, confidence: float = 0.95):
    """Mean accuracy and its t-interval over folds per (dataset, scenario, condition, shots)."""
    keys = [k for k in GROUP if k in df.columns] + ["condition", "shots_per_class"]
    rows = []
    for key, g in df.groupby(keys, sort=False):
        iv = mean_interval(g["accuracy"], confidence)
        rows.append({**dict(zip(keys, key)), "mean": iv.mean, "ci_low": iv.low, "ci_high": iv.high,
                     "n_folds": iv.n, "n_real": int(g["n_real"].median()),
                     "n_synthetic": int(g["n_synthetic"].median())})
    return pd.DataFrame(rows)


def _pivot(g):
    return g.pivot_table(index=["shots_per_class", "fold"], columns="condition", values="accuracy")


def compare_conditions(df, baseline: str = "real", confidence: float = 0.95):
    """Paired comparison of every condition with ``baseline`` at each shot level (same folds)."""
    keys, groups = _groups(df)
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        wide = _pivot(g)
        if baseline not in wide.columns:
            continue
        for shots, part in wide.groupby(level="shots_per_class"):
            for cond in wide.columns:
                if cond == baseline:
                    continue
                test = paired_test(part[baseline].to_numpy(), part[cond].to_numpy(), confidence)
                rows.append({**dict(zip(keys, key)), "condition": cond, "baseline": baseline,
                             "shots_per_class": shots, "diff": test.diff.mean, "diff_low": test.diff.low,
                             "diff_high": test.diff.high, "p_ttest": test.p_t, "p_wilcoxon": test.p_wilcoxon,
                             "wins": test.wins, "n_pairs": test.n})
    return pd.DataFrame(rows)


def savings_table(df, baseline: str = "real", confidence: float = 0.95):
    """Real-data saving of each condition at each shot level, against the ``baseline`` curve.

    ``saving`` uses the fold-mean curves; ``saving_low/high`` is the t-interval of the per-fold
    savings (each fold against its own real-only curve; folds where it is undefined are dropped,
    ``n_defined`` says how many remain). ``shots_needed`` is what real-only needs for the same
    mean accuracy (inf: beyond the largest measured level).
    """
    keys, groups = _groups(df)
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        wide = _pivot(g)
        if baseline not in wide.columns:
            continue
        mean_curve = wide[baseline].groupby(level="shots_per_class").mean()
        shots = mean_curve.index.to_numpy(dtype=float)
        for cond in wide.columns:
            if cond == baseline:
                continue
            for s in shots:
                acc = float(wide[cond].xs(s, level="shots_per_class").mean())
                needed = shots_needed(shots, mean_curve.to_numpy(), acc)
                saving = real_data_saving(s, acc, shots, mean_curve.to_numpy())
                per_fold = []
                for fold, fold_rows in wide.groupby(level="fold"):
                    f = fold_rows.droplevel("fold")
                    if s not in f.index or not np.isfinite(f.loc[s, cond]):
                        continue
                    per_fold.append(real_data_saving(s, f.loc[s, cond], f.index.to_numpy(dtype=float),
                                                     f[baseline].to_numpy()))
                iv = mean_interval(per_fold, confidence)
                rows.append({**dict(zip(keys, key)), "condition": cond, "shots_per_class": s, "accuracy": acc,
                             "shots_needed": needed, "saving": saving, "saving_low": iv.low,
                             "saving_high": iv.high, "n_defined": iv.n})
    return pd.DataFrame(rows)


def curve_areas(df, confidence: float = 0.95):
    """Area under the learning curve (log-shots, normalised) per condition: t-interval over folds."""
    keys, groups = _groups(df)
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        wide = _pivot(g)
        for cond in wide.columns:
            per_fold = []
            for _, f in wide[cond].groupby(level="fold"):
                f = f.droplevel("fold")
                per_fold.append(learning_curve_area(f.index.to_numpy(dtype=float), f.to_numpy()))
            iv = mean_interval(per_fold, confidence)
            rows.append({**dict(zip(keys, key)), "condition": cond, "aulc": iv.mean, "aulc_low": iv.low,
                         "aulc_high": iv.high, "n_folds": iv.n})
    return pd.DataFrame(rows)
