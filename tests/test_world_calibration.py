"""World calibration: the table's columns and goals, its statements, and the committed table."""

import numpy as np
import pandas as pd
import pytest

from dapper.data import toycars
from dapper.study import world_calibration as wc

CONTRACT = {"identity_oracle_64px", "identity_oracle_32px", "identity_oracle_16px",
            "pose_oracle_median_yaw_error_deg", "pose_oracle_front_back_flips", "classifier_diverse_32_shots",
            "classifier_diverse_32_minus_2_shots", "classifier_diverse_minus_homogeneous_32_shots"}


def _planted(acc16=0.4):
    identity = [{"size": s, "accuracy": a, "pair_accuracy": min(1.0, a + 0.05), "n": 2000, "per_class": []}
                for s, a in ((64, 0.99), (48, 0.99), (32, 0.95), (24, 0.8), (16, acc16))]
    pose = {"median_yaw_error_deg": 1.2, "front_back_flips": 0.0, "n": 2000}
    classifier = {"classifier_diverse_2_shots": 0.3, "classifier_diverse_32_shots": 0.8,
                  "classifier_homogeneous_32_shots": 0.5, "classifier_diverse_32_minus_2_shots": 0.5,
                  "classifier_diverse_minus_homogeneous_32_shots": 0.3, "classifier_folds": 5}
    return wc.calibration_table(identity, pose, classifier)


def test_table_columns_goals_and_met():
    table = _planted()
    assert list(table.columns) == ["world", "measure", "value", "goal", "met", "n"]
    assert set(table["world"]) == {toycars.WORLD_TAG}
    assert CONTRACT <= set(table["measure"])
    goals = dict(zip(table["measure"], table["goal"]))
    assert goals["identity_oracle_64px"] == ">= 0.98" and goals["identity_oracle_16px"] == "<= 0.6"
    assert goals["classifier_diverse_32_shots"] == ">= 0.7"
    assert table.set_index("measure").loc[list(CONTRACT), "met"].all()
    missed = _planted(acc16=0.7).set_index("measure")
    assert not missed.loc["identity_oracle_16px", "met"]
    assert missed.loc["identity_oracle_32px", "met"]


def test_statement_is_generated_from_the_table():
    text = wc.statement(_planted(acc16=0.7))
    assert "99.0% of held-out views at 64 px" in text and "70.0% at 16 px" in text
    assert "missed: identity_oracle_16px" in text
    assert "calibration goals are met." in wc.statement(_planted())


def test_read_table_refuses_another_world(tmp_path):
    table = _planted()
    table["world"] = "toycars-v1-r2"
    path = tmp_path / "calibration.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ValueError, match="rerun"):
        wc.read_table(path)
    with pytest.raises(FileNotFoundError, match="python -m dapper world-calibration"):
        wc.read_table(tmp_path / "missing.csv")


def test_committed_table_is_consistent():
    """The committed calibration is of this world, has every contract row, and its ``met`` column
    follows from its values and goals (nothing typed by hand)."""
    table = wc.read_table()
    assert CONTRACT <= set(table["measure"])
    for _, row in table.iterrows():
        if isinstance(row["goal"], str) and row["goal"]:
            assert str(row["met"]).lower() == str(wc.goal_met(row["measure"], row["value"])).lower(), row["measure"]
    shares = ("identity_oracle", "classifier_diverse_2_", "classifier_diverse_32_shots")
    accuracies = table[table["measure"].str.startswith(shares)]
    assert np.all((accuracies["value"] >= 0) & (accuracies["value"] <= 1))


def test_pair_views_shape():
    views = wc.pair_views(yaws=(30.0,), size=32)
    assert views.shape == (5, 1, 2, 32, 32, 3) and views.dtype == np.uint8
    assert not np.array_equal(views[0, 0, 0], views[0, 0, 1])


def test_classifier_measures_from_rows():
    rows = pd.DataFrame([{"scenario": sc, "shots_per_class": k, "fold": f, "accuracy": acc}
                         for sc, k, acc in (("diverse", 2, 0.3), ("diverse", 32, 0.8), ("homogeneous", 32, 0.6),
                                            ("homogeneous", 2, 0.2))
                         for f in range(5)])
    m = wc.classifier_measures(rows)
    assert m["classifier_diverse_32_minus_2_shots"] == pytest.approx(0.5)
    assert m["classifier_diverse_minus_homogeneous_32_shots"] == pytest.approx(0.2)
    assert m["classifier_folds"] == 5
