"""The study's outcome in sentences, generated from its tables (a measured number is never typed)."""

from __future__ import annotations

import math

from dapper.study.config import GAIN_GOAL, SAVING_GOAL


def label_agreement_statement(table) -> str:
    """One sentence per scenario from :func:`synthetic_label_agreement` (generated, never typed)."""
    lines = []
    for sc, df in table.groupby("scenario", sort=False):
        parts = ", ".join(f"{r.condition} {100 * r.oracle_class_kept:.0f}% (pair {100 * r.oracle_pair_kept:.0f}%)"
                          for r in df.itertuples())
        lines.append(f"- {sc}: the identity oracle assigns the synthetic images of {parts} to their label.")
    return "\n".join(lines)


def label_noise_statement(fits, gain_goal: float = GAIN_GOAL) -> str:
    """One sentence per scenario from :func:`label_noise_relation`'s fits (generated, never typed)."""
    lines = []
    for r in fits.itertuples():
        trend = ("does not clearly follow" if not r.p < 0.05 else "rises with" if r.slope > 0 else "falls with")
        lines.append(
            f"- {r.scenario}, {r.shots_per_class} shots: across the {r.n} generative conditions the gain over "
            f"real-only {trend} the share of synthetic images the oracle keeps "
            f"in their class (Pearson r = {r.r:.2f}, p = {r.p:.2g}; {points(r.slope / 10)} points per 10 points "
            f"kept, over {100 * r.kept_min:.0f}-{100 * r.kept_max:.0f}% kept). Extrapolated to every image "
            f"keeping its class, the line gives {points(r.at_full)} points [{points(r.at_full_low)}, "
            f"{points(r.at_full_high)}]"
            + (f", short of the +{100 * gain_goal:.0f}-point goal even at its interval's top end."
               if r.at_full_high < gain_goal else f", the +{100 * gain_goal:.0f}-point goal "
               + ("below its interval." if r.at_full_low > gain_goal else "within its interval."))
            + " (The conditions share their real images and folds, so they are not independent points.)")
    return "\n".join(lines)


def points(x) -> str:
    """A difference of shares in percentage points, signed (``+6.5``); ``n/a`` when not finite."""
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):+.1f}"


def percent(x, digits: int = 1) -> str:
    """A share in percent (``43.5%``); ``n/a`` when missing or not finite."""
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.{digits}f}%"


def study_statements(tables: dict, gain_goal: float = GAIN_GOAL, saving_goal: float = SAVING_GOAL,
                     hardness_rule: bool = True) -> str:
    """Markdown sentences stating the study's outcome from its tables, every number with its
    95% interval; nothing is written here that the tables do not hold. Goals (the paper's claims):
    ``gain_goal`` accuracy over real-only at the fewest shots, ``saving_goal`` real data saved.
    ``hardness_rule``: judge the task by the 20-point rule (only meaningful when the largest shot
    level is all of a fold's training data, as in the full profile)."""
    summ, vs, sav, areas = tables["summary"], tables["vs_real"], tables["savings"], tables["areas"]
    vs_aff = tables.get("vs_affine")
    lines = []
    for sc in dict.fromkeys(summ["scenario"]):
        s = summ[summ["scenario"] == sc]
        real = s[s["condition"] == "real"].sort_values("shots_per_class")
        if real.empty:
            continue
        few, most = real.iloc[0], real.iloc[-1]
        lo_shots, hi_shots = int(few["shots_per_class"]), int(most["shots_per_class"])
        gap = most["mean"] - few["mean"]
        n_folds = int(few['n_folds'])
        lines.append(f"**{sc}** ({n_folds} fold{'' if n_folds == 1 else 's'}). Real-only accuracy rises from "
                     f"{percent(few['mean'])} [{percent(few['ci_low'])}, {percent(few['ci_high'])}] at {lo_shots} "
                     f"images per class to {percent(most['mean'])} [{percent(most['ci_low'])}, "
                     f"{percent(most['ci_high'])}] at {hi_shots} "
                     f"({points(gap)} points" + (f"; the task {'is' if gap >= 0.2 else 'is not'} hard enough by the "
                                               "study's 20-point rule)." if hardness_rule else ")."))
        v = vs[(vs["scenario"] == sc) & (vs["shots_per_class"] == lo_shots)]
        family = int(vs.loc[vs["scenario"] == sc, "p_ttest"].notna().sum())  # holm leaves NaN p out
        for r in v.itertuples():
            holm = (f" (Holm-adjusted over the scenario's {family} comparisons: p={r.p_ttest_holm:.3g})"
                    if hasattr(r, "p_ttest_holm") and family > 1 else "")
            tests = (f"paired t p={r.p_ttest:.3g}{holm}, Wilcoxon p={r.p_wilcoxon:.3g}, better in {r.wins} of "
                     f"{r.n_pairs} folds" if r.n_pairs > 1 else
                     f"one fold, so no paired test ({'better' if r.wins else 'not better'} in it)")
            lines.append(f"- {r.condition} at {lo_shots} shots: {points(r.diff)} points over real-only "
                         f"[{points(r.diff_low)}, {points(r.diff_high)}], {tests}.")
        for cond in [c for c in dict.fromkeys(vs[vs["scenario"] == sc]["condition"]) if c != "real+affine"]:
            rows = vs[(vs["scenario"] == sc) & (vs["condition"] == cond)]
            best = rows.loc[rows["diff"].idxmax()] if len(rows) else None
            sv = sav[(sav["scenario"] == sc) & (sav["condition"] == cond)]
            sv_def = sv[sv["saving"].notna()]
            parts = []
            if best is not None:
                parts.append(f"best difference {points(best['diff'])} points [{points(best['diff_low'])}, "
                             f"{points(best['diff_high'])}] at {int(best['shots_per_class'])} shots")
            if len(sv_def):
                b = sv_def.loc[sv_def["saving"].idxmax()]
                parts.append(f"largest real-data saving {percent(b['saving'])} at {int(b['shots_per_class'])} shots "
                             f"(real-only needs {b['shots_needed']:.1f} per class for the same accuracy; per-fold "
                             f"interval [{percent(b['saving_low'])}, {percent(b['saving_high'])}], "
                             f"{int(b['n_defined'])} folds defined)")
            else:
                parts.append("no shot level where a saving is defined (its accuracy is below real-only's first "
                             "point or beyond its last)")
            if vs_aff is not None and len(vs_aff):
                a = vs_aff[(vs_aff["scenario"] == sc) & (vs_aff["condition"] == cond)
                           & (vs_aff["shots_per_class"] == lo_shots)]
                if len(a):
                    a = a.iloc[0]
                    parts.append(f"vs real+affine at {lo_shots} shots {points(a['diff'])} points "
                                 f"[{points(a['diff_low'])}, {points(a['diff_high'])}]")
            ar = areas[(areas["scenario"] == sc) & (areas["condition"] == cond)]
            ar_real = areas[(areas["scenario"] == sc) & (areas["condition"] == "real")]
            if len(ar) and len(ar_real):
                parts.append(f"area under the learning curve {percent(ar.iloc[0]['aulc'])} "
                             f"[{percent(ar.iloc[0]['aulc_low'])}, {percent(ar.iloc[0]['aulc_high'])}] vs real-only "
                             f"{percent(ar_real.iloc[0]['aulc'])}")
            low = rows[rows["shots_per_class"] == lo_shots]
            gain_ok = bool(len(low)) and low.iloc[0]["diff_low"] >= gain_goal
            gain_point = bool(len(low)) and low.iloc[0]["diff"] >= gain_goal
            save_ok = bool(len(sv_def)) and sv_def["saving"].max() >= saving_goal
            verdict = ("meets" if gain_ok else "reaches in its mean only" if gain_point else "does not reach")
            lines.append(f"- {cond}: " + "; ".join(parts) + f". It {verdict} the goal of {points(gain_goal)} points "
                         f"at the fewest shots, and {'reaches' if save_ok else 'does not reach'} "
                         f"{percent(saving_goal)} real data saved.")
        lines.append("")
    return "\n".join(lines).strip()
