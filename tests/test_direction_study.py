"""dapper.study.direction_study and dapper.directions.choose_direction: notebook 02's pipeline after the
fit (the method's choice, the oracles' evaluation, the goals and the report, Figure 5's data and files)
on a tiny generator with a fake annotator and detector, as the notebook and ``python -m dapper directions``
run it."""

import numpy as np
import pandas as pd
import pytest
import torch
from study_fakes import AcceptingDetector, RednessAnnotator

from dapper import cli
from dapper import directions as dd
from dapper.study import direction_study as ds
from dapper.study.direction_eval import HeldoutTargets, rank_by_oracles

SETTINGS = dict(dd.PROFILES["quick"], n_samples=300, n_selection=120, n_calibration=8, calibration_rounds=1,
                response_steps=5, methods=("ridge-local",))


@pytest.fixture(scope="module")
def fitted(tiny_generator):
    torch.set_grad_enabled(False)
    G = tiny_generator()
    ann, det = RednessAnnotator(), AcceptingDetector()
    samples = dd.annotate_samples(G, SETTINGS["n_samples"], det, ann, SETTINGS["sample_seed"], progress=False)
    ref = dd.circular_mean_deg(samples.yaw)
    directions = dd.fit_directions(G, samples, ann, ref, n_calibration=SETTINGS["n_calibration"],
                                   calibration_rounds=1, methods=SETTINGS["methods"], max_shift_factor=2.0,
                                   progress=False)
    choice = dd.choose_direction(G, directions, samples, det, ann, ref, SETTINGS, progress=False)
    yield G, ann, det, samples, ref, directions, choice
    torch.set_grad_enabled(True)


def test_the_choice_is_the_notebooks_steps(fitted):
    G, ann, det, samples, ref, directions, choice = fitted
    # the steps notebook 02 ran in its cell, one by one
    sel_samples = dd.annotate_samples(G, SETTINGS["n_selection"], det, ann, SETTINGS["sample_seed"] + 1,
                                      progress=False)
    ws = dd.calibration_latents(sel_samples, SETTINGS["n_calibration"], ref, num_ws=G.num_ws)
    candidates = {k: d for k, d in directions.items() if d.units == "degrees"}
    selection = dd.select_direction(dd.measure_candidates(G, candidates, ws, ann, det))
    chosen = selection.name or "paper/all"
    with_response = dd.with_response(G, directions[chosen], ann, ws, max_shift=dd.w_spread(samples),
                                     steps=SETTINGS["response_steps"])
    split, turn = dd.choose_layer_split(G, with_response, ann, ws)
    assert (choice.name, choice.split, choice.turn) == (chosen, split, turn)
    assert choice.selection.reason == selection.reason
    assert choice.directions[chosen].metadata["response"] == with_response.metadata["response"]
    assert "response" not in directions[chosen].metadata  # the candidates are left as they were
    split_name = f"{chosen.split('/')[0]}/rows 0-{split}" if split < G.num_ws else chosen
    assert choice.split_name == split_name and split_name in choice.directions
    assert list(choice.directions)[:len(directions)] == list(directions)  # the same order, the split last
    if split < G.num_ws:
        assert choice.directions[split_name].layers == (0, split)
    reason, rows = choice.describe()
    assert reason == (selection.reason if selection.name else f"{selection.reason}; the paper's direction is used")
    assert rows.startswith(f"rows 0-{split} of {G.num_ws} turn the vehicles {turn[split]:.1f} deg from -20 to +20")
    assert list(choice.ranked().direction) == list(choice.selection.table.sort_values("mean_rank").direction)
    assert set(ds.candidates_table(directions).columns) == {"direction", "units", "W shift at 30 units", "capped"}


def _targets(G, n=6):
    ws = G.mapping(torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(5)), None)
    return HeldoutTargets(ws, np.zeros((n, 16, 16, 3), np.uint8), None, None, None, "6 fake targets")


def test_evaluation_report_and_figure5_files(fitted, tmp_path):
    G, ann, _, _, _, _, choice = fitted
    targets = _targets(G)
    summary, per_image = ds.evaluate_choice(G, choice, targets, SETTINGS, "stanford_cars", ann, generator="g.pkl",
                                            progress=False)
    assert list(summary.columns[:3]) == ["generator", "targets", "chosen_by_method"]
    assert (summary.generator == "g.pkl").all() and (summary.targets == "6 fake targets").all()
    assert list(summary.direction) == list(choice.directions)  # the quick profile evaluates every candidate
    assert set(summary.direction[summary.chosen_by_method]) == {choice.name, choice.split_name}
    assert (summary.measured_by == "annotator (real mode)").all()
    assert sorted(per_image.coefficient.unique()) == [-30, -20, -10, 0, 10, 20, 30]
    ds.write_evaluation(summary, per_image, folder=tmp_path)
    assert len(pd.read_csv(tmp_path / "directions.csv")) == len(summary)
    assert set(pd.read_csv(tmp_path / "directions_by_coefficient.csv").direction) == set(choice.directions)
    assert list(ds.summary_view(summary).columns) == list(ds.SUMMARY_COLUMNS)

    lines = ds.report_lines(summary, choice, "stanford_cars")
    assert lines[0].startswith("The method chose" if choice.selection.name else "The method found no direction")
    assert lines[1].startswith(f"Its edit needs rows 0-{choice.split} of {G.num_ws}")
    assert "identity kept >= 90% at +-30: not measured" in lines[2]  # real mode: no identity oracle
    assert not any(line.startswith("In hindsight") for line in lines) and all(lines)
    assert lines[-1].startswith("One paper unit = ")
    hindsight, _ = rank_by_oracles(summary)
    with_hindsight = ds.report_lines(summary, choice, "toycars")
    assert any(line.startswith("In hindsight") for line in with_hindsight) == bool(hindsight)
    md = ds.write_report(lines, "g.pkl", targets.source, "vehicle filter: x; pose: y", folder=tmp_path)
    assert md.read_text() == "Generator g.pkl; 6 fake targets; vehicle filter: x; pose: y. " + " ".join(lines) + "\n"

    fig5 = ds.figure5_data(G, choice, targets, ann, "stanford_cars")
    panels = list(dict.fromkeys(fig5.table.panel))
    assert panels[:2] == ["paper (paper units)", f"chosen: {choice.name}"]
    assert fig5.images.shape[:3] == (len(panels), 5, len(dd.PAPER_COEFFICIENTS))
    assert (fig5.rows, fig5.yaw_label) == ([0, 1, 2, 3, 4], "annotator yaw")
    for _ in range(2):  # a rerun replaces the line of median turns
        turns = ds.write_figure5(fig5, folder=tmp_path)
    text = md.read_text().splitlines()
    assert len(text) == 2 and text[0] == "Generator g.pkl; 6 fake targets; vehicle filter: x; pose: y. " + " ".join(
        lines)
    assert text[1] == ("Figure 5, median annotator (in-sample for the own-response panel) turn per amount asked "
                       "(the paper's panel in its units) over 5 views: " + "; ".join(turns) + ".")
    assert len(turns) == len(panels) and len(pd.read_csv(tmp_path / "rotation.csv")) == len(fig5.table)


def test_real_modes_quick_profile_evaluates_the_reported_directions_only(fitted):
    *_, choice = fitted
    some = ds.evaluated_directions(choice, dict(SETTINGS, evaluate_all=False))
    assert set(some) == {choice.name, choice.split_name, "paper/all", "paper/all (paper units)"} & set(
        choice.directions)
    assert ds.evaluation_coefficients({"eval_step": 5}) == tuple(range(-30, 31, 5))


def test_the_goals_and_their_words():
    row = pd.Series({"identity_kept_at_30": 0.95, "jump_share": 0.0, "oracle_deg_per_unit": 1.0})
    goals = ds.goal_verdicts(row)
    assert list(goals) == ["identity kept >= 90% at +-30", "no jumps within +-30",
                           "calibrated in degrees (oracle 0.8-1.25 deg per unit)"]
    assert list(goals.values()) == [True, True, True]
    assert list(ds.goal_verdicts(row.copy().replace({0.95: np.nan})).values())[0] is None
    assert ds.goal_verdicts(pd.Series({**row, "identity_kept_at_30": 0.89}))["identity kept >= 90% at +-30"] is False
    assert ds.goal_verdicts(pd.Series({**row, "jump_share": 0.1}))["no jumps within +-30"] is False
    for dpu, met in ((0.79, False), (0.8, True), (1.25, True), (1.26, False)):
        assert list(ds.goal_verdicts(pd.Series({**row, "oracle_deg_per_unit": dpu})).values())[2] is met


def test_figure5_views_and_median_turns():
    assert ds.figure5_rows(1) == [0] and ds.figure5_rows(3) == [0, 1, 2]
    assert ds.figure5_rows(10) == [0, 2, 4, 6, 8] and ds.figure5_rows(50) == [0, 10, 20, 30, 40]
    table = pd.DataFrame({"panel": ["a"] * 6, "row": [0, 0, 0, 1, 1, 1], "coefficient": [-20.0, 0.0, 20.0] * 2,
                          "yaw": [350.0, 10.0, 30.0, 100.0, 120.0, 150.0]})
    assert ds.median_turns(table) == ["a: -20 -> -20, +20 -> +25"]


def test_the_chosen_directions_are_stored_for_the_later_notebooks(fitted):
    G, *_, choice = fitted
    ds.save_chosen_directions(G, choice, "quick")
    chosen = dd.load_or_fit_pose_direction(G, "quick", method="chosen")
    split = dd.load_or_fit_pose_direction(G, "quick", method="chosen-split")
    assert chosen.metadata["chosen_as"] == choice.name and split.metadata["chosen_as"] == choice.split_name
    assert np.allclose(split.vector, choice.directions[choice.split_name].vector)


def test_the_command_takes_the_notebooks_parameters(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["directions", "--help"])
    assert done.value.code == 0
    usage = capsys.readouterr().out
    assert "--classifier" not in usage  # notebook 02 fine-tunes no classifier
