"""Notebook 01's table, figure 1's choice and caption, and its statements, on a made-up projection."""

from types import SimpleNamespace

import numpy as np
import pandas as pd

from dapper.study import inversion_study as inv


def fake_projection(n: int):
    return SimpleNamespace(
        reconstructions=np.zeros((n, 8, 8, 3), np.uint8),
        metrics={"psnr": np.linspace(20, 30, n), "perceptual": np.full(n, 0.2), "steps": np.full(n, 10),
                 "seconds": np.full(n, 0.12345), "failed": [""] * (n - 1) + ["diverged"]})


def test_the_table_caption_and_statements_come_from_the_projection(tmp_path, monkeypatch):
    labels = np.array([0, 0, 1, 1])
    names = ["sedan A", "pickup B"]
    # the oracle: right on the originals, right on the first reconstruction of each class only
    calls = iter([np.array([0, 1, 1, 0]), labels])
    monkeypatch.setattr(inv, "predict_identity", lambda images: (next(calls), None))
    table = inv.projection_table(fake_projection(4), np.zeros((4, 8, 8, 3), np.uint8), labels, names, "toycars")
    assert table["oracle_identity_kept"].tolist() == [True, False, True, False]
    assert table["oracle_correct_on_original"].all() and table["seconds"].tolist() == [0.123] * 4
    summary = inv.write_projection_table(table, folder=tmp_path)
    assert pd.read_csv(tmp_path / "projection.csv").shape == (4, 8) and list(summary.index) == names
    first, notes = inv.figure1_data(table, labels, "toycars")
    assert first == [0, 2] and notes == ["20.0 dB ✓", "26.7 dB ✓"]
    caption = inv.write_figure1_caption(table, "toycars", folder=tmp_path)
    assert "mean PSNR 25.0 dB" in caption and "identity kept 50%" in caption
    assert (tmp_path / "fig1_reconstructions.md").read_text() == caption + "\n"
    lines = inv.projection_statements(table, "toycars")
    assert "1 of 4 projections failed" in lines[0] and lines[2].startswith("Pickups")


def test_real_photos_have_no_oracle_columns():
    labels = np.array([0, 1])
    table = inv.projection_table(fake_projection(2), np.zeros((2, 8, 8, 3), np.uint8), labels, ["a", "b"],
                                 "stanford_cars")
    assert table["oracle_identity_kept"].isna().all() and "oracle_correct_on_original" not in table
    assert "identity kept" not in inv.figure1_caption(table, "stanford_cars")
    assert inv.figure1_data(table, labels, "stanford_cars")[1] == ["20.0 dB", "30.0 dB"]
    assert len(inv.projection_statements(table, "stanford_cars")) == 1
