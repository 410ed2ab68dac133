"""The direction study of notebook 02: the oracles' measures of the method's choice and of every
candidate, the goals a direction is held to, the report's prose and Figure 5's data.

Notebook 02 and ``python -m dapper directions`` run the same calls and write the same files::

    choice = dd.choose_direction(G, directions, samples, detector, annotator, reference_yaw, settings)
    summary, per_image = evaluate_choice(G, choice, targets, settings, dataset, annotator, generator=...)
    write_evaluation(summary, per_image)          # directions.csv, directions_by_coefficient.csv
    lines = report_lines(summary, choice, dataset)  # the goals met or not, hindsight, the asked degrees
    write_report(lines, generator, targets.source, instruments_used)   # fig5_rotation.md
    save_chosen_directions(G, choice, profile)    # for notebooks 03 and 06
    fig5 = figure5_data(G, choice, targets, annotator, dataset)
    write_figure5(fig5)                           # rotation.csv, the median turns in fig5_rotation.md

The measures are :mod:`dapper.study.direction_eval`'s, the choice :mod:`dapper.directions`'; this
module holds the study's rules: which directions are evaluated, at which coefficients, the goals
(:data:`IDENTITY_KEPT_GOAL`, :data:`MAX_JUMP_SHARE`, :data:`DEGREES_PER_UNIT_GOAL`), which views
and panels Figure 5 shows, and the files' names and columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dapper.directions import PAPER_COEFFICIENTS, DirectionChoice, own_responses, save_chosen_direction
from dapper.study.direction_eval import (
    HeldoutTargets,
    evaluate_directions,
    per_coefficient_table,
    rank_by_oracles,
    rotation_table,
)
from dapper.utils import display_path, reports_dir, weights_hash

__all__ = ["DIRECTION_FILES", "SUMMARY_COLUMNS", "IDENTITY_KEPT_GOAL", "MAX_JUMP_SHARE", "DEGREES_PER_UNIT_GOAL",
           "ASKED_DEGREES", "PAPER_DIRECTION", "PAPER_UNITS_DIRECTION", "FIGURE5_MARK", "Figure5Data",
           "generator_line", "candidates_table", "evaluation_coefficients", "evaluated_directions",
           "evaluate_choice", "write_evaluation", "summary_view", "goal_verdicts", "report_lines", "write_report",
           "save_chosen_directions", "figure5_rows", "figure5_panels", "figure5_data", "median_turns",
           "write_figure5"]

DIRECTION_FILES = {"summary": "directions.csv", "per_coefficient": "directions_by_coefficient.csv",
                   "report": "fig5_rotation.md", "rotation": "rotation.csv"}
"""The results files, in ``reports_dir("results")``."""

SUMMARY_COLUMNS = ("direction", "chosen_by_method", "oracle_deg_per_unit", "r2", "monotone_share", "jump_share",
                   "identity_kept_at_20", "identity_kept_at_30", "colour_drift_at_30", "fidelity_psnr_at_0",
                   "fidelity_psnr_at_30", "fidelity_perceptual_at_30", "w_shift_at_30", "capped")
"""The summary's columns a reader is shown (``directions.csv`` holds them all)."""

# The goals a direction is held to, at the evaluation's ends (+-30 units)
IDENTITY_KEPT_GOAL = 0.9
"""Identity kept (the identity oracle's class unchanged) at +-30: at least this share."""
MAX_JUMP_SHARE = 0.0
"""Share of images with an orientation jump within +-30: at most this (no jumps)."""
DEGREES_PER_UNIT_GOAL = (0.8, 1.25)
"""Calibrated in degrees: the oracle reads between these degrees per annotator degree."""

ASKED_DEGREES = (-30, -20, -10, 10, 20, 30)
"""The turns (annotator degrees) the report says the augmentation asks the chosen directions for."""

PAPER_DIRECTION = "paper/all"
PAPER_UNITS_DIRECTION = "paper/all (paper units)"
FIGURE5_MARK = "Figure 5, median"
"""The start of fig5_rotation.md's line of median turns (replaced, not repeated, on a rerun)."""


@dataclass
class Figure5Data:
    """Figure 5's inputs (:func:`dapper.plots.fig5_rotation`): ``images`` uint8 [P, R, K, H, W, 3] for
    P panels of R views at the K ``coefficients``, ``table`` (``rotation.csv``: panel, direction,
    layers, units, row, coefficient, direction_coefficient, yaw), the views' indices among the
    targets (``rows``), what read the yaw (``reader``, in words) and the figure's ``yaw_label``."""

    images: np.ndarray
    table: pd.DataFrame
    coefficients: tuple
    rows: list
    reader: str
    yaw_label: str


def generator_line(G, path) -> str:
    """The generator in one line: its file, weights hash, resolution and W+ rows."""
    return f"generator: {display_path(path)} (hash {weights_hash(G)[:16]}), {G.img_resolution} px, num_ws={G.num_ws}"


def candidates_table(directions: dict) -> pd.DataFrame:
    """One row per fitted direction: its units, the W shift at 30 units and whether the calibration
    was capped at the W budget."""
    return pd.DataFrame([{"direction": k, "units": d.units, "W shift at 30 units": abs(d.scale) * 30,
                          "capped": d.metadata.get("calibration", {}).get("capped")}
                         for k, d in directions.items()]).round(3)


def evaluation_coefficients(settings: dict) -> tuple:
    """-30..30 in the profile's ``eval_step`` (:func:`dapper.directions.profile_settings`)."""
    return tuple(range(-30, 31, settings["eval_step"]))


def evaluated_directions(choice: DirectionChoice, settings: dict) -> dict:
    """Every candidate, or (``settings["evaluate_all"]`` false: real mode's quick profile) only those
    the report speaks of: the method's choice, its split variant and the paper's."""
    if settings["evaluate_all"]:
        return choice.directions
    reported = {choice.name, choice.split_name, PAPER_DIRECTION, PAPER_UNITS_DIRECTION}
    return {k: v for k, v in choice.directions.items() if k in reported}


def evaluate_choice(G, choice: DirectionChoice, targets: HeldoutTargets, settings: dict, dataset: str, annotator,
                    generator: str, **oracles) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`dapper.study.direction_eval.evaluate_directions` of :func:`evaluated_directions` on the
    held-out ``targets`` at :func:`evaluation_coefficients`: in the toycars world the oracles read
    (``oracles``: ``pose_oracle``/``identity_oracle`` instead of the shipped ones), in real mode the
    annotator. The summary starts with the columns ``generator`` (``generator``, in words),
    ``targets`` (their source) and ``chosen_by_method``. Returns ``(summary, per_image)``."""
    real = dataset != "toycars"
    summary, per_image = evaluate_directions(
        G, evaluated_directions(choice, settings), targets.ws, evaluation_coefficients(settings),
        metas=targets.metas, labels=targets.labels, masks=targets.masks,
        yaw_reader=annotator.predict if real else None, measured_by="annotator (real mode)" if real else None,
        **oracles)
    summary.insert(0, "generator", generator)
    summary.insert(1, "targets", targets.source)
    summary.insert(2, "chosen_by_method", summary.direction.isin({choice.name, choice.split_name}))
    return summary, per_image


def write_evaluation(summary: pd.DataFrame, per_image: pd.DataFrame, folder=None) -> None:
    """``directions.csv`` (the summary) and ``directions_by_coefficient.csv``
    (:func:`dapper.study.direction_eval.per_coefficient_table`) in ``folder`` (default
    ``reports_dir("results")``)."""
    folder = reports_dir("results") if folder is None else Path(folder)
    summary.to_csv(folder / DIRECTION_FILES["summary"], index=False)
    per_coefficient_table(per_image).to_csv(folder / DIRECTION_FILES["per_coefficient"], index=False)


def summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's :data:`SUMMARY_COLUMNS`, rounded for reading."""
    return summary[list(SUMMARY_COLUMNS)].round(2)


def goal_verdicts(row) -> dict:
    """Each goal (in words) -> True (met), False (not met) or None (not measured: real mode has no
    identity oracle), for one row of the summary."""
    lo, hi = DEGREES_PER_UNIT_GOAL
    identity = None if pd.isna(row.identity_kept_at_30) else bool(row.identity_kept_at_30 >= IDENTITY_KEPT_GOAL)
    return {f"identity kept >= {IDENTITY_KEPT_GOAL:.0%} at +-30": identity,
            "no jumps within +-30": bool(row.jump_share <= MAX_JUMP_SHARE),
            f"calibrated in degrees (oracle {lo:g}-{hi:g} deg per unit)": bool(lo <= row.oracle_deg_per_unit <= hi)}


def _asked_line(name: str, d) -> str:
    """What the augmentation asks direction ``d`` for to turn :data:`ASKED_DEGREES`."""
    if d.response() is None:
        return (f"{name}: the annotator read no turn both ways along its response sweep; degrees use the average "
                "unit.")
    coefs = d.coefficients_for(ASKED_DEGREES)
    made = d.degrees_for(coefs)
    short = [f"{a:+d} makes {m:+.0f}" for a, m in zip(ASKED_DEGREES, made) if abs(m - a) > 0.5]
    return (f"{name}: to turn {', '.join(f'{a:+d}' for a in ASKED_DEGREES)} annotator degrees the augmentation asks "
            f"for coefficients {', '.join(f'{c:+.1f}' for c in coefs)} (the calibration's average unit would ask for "
            f"{', '.join(f'{a / d.degrees_per_unit:+.1f}' for a in ASKED_DEGREES)})"
            + (f"; beyond the reach of its response sweep, {', '.join(short)} deg" if short else "") + ".")


def report_lines(summary: pd.DataFrame, choice: DirectionChoice, dataset: str) -> list[str]:
    """The report read off the summary: the method's choice and its rows, each reported direction
    against the goals (:func:`goal_verdicts`), the oracles' hindsight ranking (toycars only), the
    coefficients the augmentation asks the chosen directions for, and the paper's unit in degrees."""
    by_name = summary.set_index("direction")
    lines = [f"The method chose {choice.selection.reason}." if choice.selection.name
             else f"The method found no direction ({choice.selection.reason}); the paper's is used.",
             f"Its edit needs rows 0-{choice.split} of {choice.num_ws} ({choice.split_share:.0%} of the all-row turn, "
             "as the annotator reads it); the rest keep the projection's styles."]
    verdict = {True: "met", False: "NOT met", None: "not measured"}
    for name in dict.fromkeys([choice.name, choice.split_name, PAPER_DIRECTION]):
        r = by_name.loc[name]
        lines.append(f"{name}: identity kept at +-30 {r.identity_kept_at_30:.0%}; "
                     + "; ".join(f"{g}: {verdict[ok]}" for g, ok in goal_verdicts(r).items()) + ".")
    hindsight, why = rank_by_oracles(summary)
    if hindsight and dataset == "toycars":
        lines.append(f"In hindsight the oracles would rank {hindsight} first"
                     + (" too." if hindsight == choice.name else f", not the method's choice ({why})."))
    for name in dict.fromkeys([choice.name, choice.split_name]):
        lines.append(_asked_line(name, choice.directions[name]))
    pu = choice.directions[PAPER_UNITS_DIRECTION]
    lines.append(f"One paper unit = {pu.degrees_per_unit:.2f} annotator degrees (a W step of {abs(pu.scale):.3f}); "
                 f"the paper's +-30 turns about +-{30 * pu.degrees_per_unit:.0f} deg here.")
    return lines


def write_report(lines: list[str], generator: str, targets_source: str, instruments_used: str, folder=None) -> Path:
    """``fig5_rotation.md``: the generator, the targets and the instruments in words, then ``lines``
    (:func:`report_lines`) as one paragraph; in ``folder`` (default ``reports_dir("results")``)."""
    path = (reports_dir("results") if folder is None else Path(folder)) / DIRECTION_FILES["report"]
    path.write_text(f"Generator {generator}; {targets_source}; {instruments_used}. " + " ".join(lines) + "\n")
    return path


def save_chosen_directions(G, choice: DirectionChoice, profile: str) -> tuple[Path, Path]:
    """Store the chosen direction and its split variant for ``G`` and ``profile``
    (:func:`dapper.directions.save_chosen_direction`: notebooks 03/06 and the augmentation read them)."""
    reason = choice.selection.reason
    return (save_chosen_direction(G, choice.directions[choice.name], profile, choice.name, reason=reason),
            save_chosen_direction(G, choice.directions[choice.split_name], profile, choice.split_name,
                                  variant="split", reason=reason))


def figure5_rows(n: int) -> list[int]:
    """Figure 5's views among ``n`` targets: at most five, evenly spaced from the first."""
    return list(range(n))[:: max(1, n // 5)][:5]


def figure5_panels(G, choice: DirectionChoice, ws, annotator) -> dict:
    """Panel title -> direction (or one per view): the paper's in its units, the method's choice on
    every row and on the rows it kept, and the kept rows with each view of ``ws`` asked through its
    own response (:func:`dapper.directions.own_responses`), as the study's augmentation asks."""
    d = choice.directions
    panels = {"paper (paper units)": d[PAPER_UNITS_DIRECTION], f"chosen: {choice.name}": d[choice.name]}
    if choice.split_name != choice.name:
        panels[f"chosen: {choice.split_name}"] = d[choice.split_name]
    if d[choice.split_name].response() is not None:
        panels[f"chosen: {choice.split_name}, own response"] = own_responses(G, d[choice.split_name], annotator,
                                                                             ws)[0]
    return panels


def figure5_data(G, choice: DirectionChoice, targets: HeldoutTargets, annotator, dataset: str,
                 yaw_reader=None) -> Figure5Data:
    """Figure 5: :func:`figure5_rows` of the targets edited along :func:`figure5_panels` at the
    paper's coefficients (:func:`dapper.study.direction_eval.rotation_table`); the pose oracle reads
    the yaw in the toycars world (``yaw_reader`` instead of the shipped one), the annotator in real mode."""
    rows = figure5_rows(len(targets.ws))
    ws = targets.ws[rows]
    real = dataset != "toycars"
    images, table = rotation_table(G, ws, figure5_panels(G, choice, ws, annotator), PAPER_COEFFICIENTS,
                                   yaw_reader=annotator.predict if real else yaw_reader)
    return Figure5Data(images, table, PAPER_COEFFICIENTS, rows,
                       reader="annotator (in-sample for the own-response panel)" if real else "oracle",
                       yaw_label="annotator yaw" if real else "oracle yaw")


def median_turns(table: pd.DataFrame) -> list[str]:
    """Per panel of a rotation table, the median turn the reader sees per asked amount (from the
    unedited view, wrapped to +-180 degrees), one line each."""
    turns = []
    for title, part in table.groupby("panel", sort=False):
        yaw = part.pivot(index="row", columns="coefficient", values="yaw")
        turn = ((yaw.sub(yaw[0.0], axis=0) + 180) % 360 - 180).median()
        turns.append(f"{title}: " + ", ".join(f"{c:+g} -> {t:+.0f}" for c, t in turn.items() if c != 0))
    return turns


def write_figure5(fig5: Figure5Data, folder=None) -> list[str]:
    """``rotation.csv``, and the median turns (:func:`median_turns`) as the last line of
    ``fig5_rotation.md`` (replacing the line a run before wrote), in ``folder`` (default
    ``reports_dir("results")``). Returns the turns."""
    folder = reports_dir("results") if folder is None else Path(folder)
    fig5.table.to_csv(folder / DIRECTION_FILES["rotation"], index=False)
    turns = median_turns(fig5.table)
    md = folder / DIRECTION_FILES["report"]
    kept = [line for line in (md.read_text().splitlines() if md.exists() else [])
            if not line.startswith(FIGURE5_MARK)]
    md.write_text("\n".join(kept + [f"{FIGURE5_MARK} {fig5.reader} turn per amount asked (the paper's panel in its "
                                    f"units) over {len(fig5.rows)} views: " + "; ".join(turns) + "."]) + "\n")
    return turns
