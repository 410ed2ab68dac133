"""The world's ceiling (renderer conditions) and the label-noise curve, on tiny data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from dapper.augment import AugmentSettings, LeakageError
from dapper.data import toycars
from dapper.study import experiments as ex
from dapper.study.ceiling import (
    RenderedSet,
    RendererSettings,
    pool_items,
    render_ceiling_set,
    renderer_condition,
    renderer_condition_name,
)
from dapper.study.inputs import _rendered_sets
from dapper.study.noise_curve import ceiling_shares, noise_curve, noise_curve_statements
from dapper.utils import image_key

SIZE = 32
AUG = AugmentSettings(k=3, coefficients=(-30.0, 20.0, 30.0), seed=5)


def test_renderer_conditions_are_named_and_read_back():
    assert renderer_condition("real+rotate(renderer)") == ("rotate", 0.0)
    assert renderer_condition("real+perturb+rotate(renderer, twins 40%)") == ("perturb+rotate", 0.4)
    assert renderer_condition("real+rotate") is None and renderer_condition("real+rotate(tuned)") is None
    for m in ("perturb", "rotate", "perturb+rotate"):
        for q in (0.0, 0.2, 0.8):
            assert renderer_condition(renderer_condition_name(m, q)) == (m, q)
    with pytest.raises(ValueError, match="whole percent"):
        renderer_condition_name("rotate", 0.123)
    with pytest.raises(ValueError, match="unknown method"):
        renderer_condition_name("flip", 0.2)
    with pytest.raises(ValueError, match="jitter"):
        RendererSettings(yaw_jitter_deg=-1)


@pytest.fixture(scope="module")
def tiny():
    items = [pool_items(3, 0, False)[i] for i in (0, 7)]  # class 0 and class 2, diverse views
    renders = toycars.render_items(items, SIZE)
    images = np.stack([r.image for r in renders])
    keys = [image_key(im) for im in images]
    rendered = render_ceiling_set(items, images, keys, ("perturb", "rotate", "perturb+rotate"), AUG,
                                  RendererSettings(), test_keys=["someone-else"], fold=0)
    return items, images, keys, rendered


def test_the_renderer_draws_each_shot_turned_perturbed_and_as_its_twin(tiny):
    items, images, keys, rendered = tiny
    m = rendered.clean.manifest
    assert len(rendered) == 2 * 3 * AUG.k and rendered.twin_images.shape == rendered.clean.images.shape
    assert (m["compose"] == "renderer").all() and list(rendered.clean.labels) == list(m["label"])
    for item, key in zip(items, keys):
        rot = m[(m["source_key"] == key) & (m["method"] == "rotate")]
        # the method's amounts, each once (k equals their number), the same car turned by them
        assert sorted(rot["degrees"]) == sorted(AUG.coefficients)
        for r in rot.itertuples():
            meta = toycars.render(item["spec"], item["yaw"], item["elevation"], item["distance"],
                                  item["background_seed"], SIZE).meta
            want = toycars.render_same_vehicle(meta, item["yaw"] + r.degrees).image
            assert np.array_equal(rendered.clean.images[r.Index], want)
        per = m[(m["source_key"] == key) & (m["method"] == "perturb")]
        assert (per["degrees"] == 0).all()
        assert (abs(((per["yaw"] - item["yaw"] + 180) % 360) - 180) <= RendererSettings().yaw_jitter_deg + 1e-9).all()
        assert (per["background_seed"] != item["background_seed"]).all()
        # the twin: the look-alike's body in the same paint, pose and scene
        twin = {0: 1, 2: 3}[item["label"]]
        r = per.iloc[0]
        view = toycars.render(toycars.target_spec(twin, r.colour), r.yaw, r.elevation, item["distance"],
                              int(r.background_seed), SIZE)
        assert np.array_equal(rendered.twin_images[per.index[0]], view.image)
        assert not np.array_equal(rendered.twin_images[per.index[0]], rendered.clean.images[per.index[0]])


def test_twin_shares_swap_nested_images_and_keep_the_label(tiny):
    _, _, keys, rendered = tiny
    clean = rendered.select(keys, "rotate", 0.0)
    assert not clean.manifest["twin"].any()
    before = np.zeros(len(clean), bool)
    for q in (0.2, 0.4, 0.6, 0.8, 0.99):
        s = rendered.select(keys, "rotate", q)
        swapped = s.manifest["twin"].to_numpy()
        assert np.array_equal(swapped, s.manifest["u"].to_numpy() < q)
        assert (swapped >= before).all()  # an image swapped at a smaller share stays swapped
        assert np.array_equal(s.labels, clean.labels)
        for i in range(len(s)):
            same_as_clean = np.array_equal(s.images[i], clean.images[i])
            assert same_as_clean != swapped[i]
        before = swapped
    assert before.sum() > 0
    with pytest.raises(LeakageError):
        rendered.select(keys, "rotate", 0.2, test_keys=[keys[0]])


def test_the_renderer_refuses_images_its_items_do_not_draw_and_test_images(tiny):
    items, images, keys, _ = tiny
    wrong = images.copy()
    wrong[1] = 255 - wrong[1]
    with pytest.raises(ValueError, match="out of step"):
        render_ceiling_set(items, wrong, keys, ("rotate",), AUG, RendererSettings())
    with pytest.raises(LeakageError):
        render_ceiling_set(items, images, keys, ("rotate",), AUG, RendererSettings(), test_keys=[keys[1]])


def test_renderer_conditions_only_in_the_embedded_world_and_noise_only_at_its_shots():
    cfg = ex.study_config("quick", conditions=("real",) + ex.RENDERER_CONDITIONS + ex.NOISE_CONDITIONS[:3],
                          shots=(2, 4), noise_shots=(4,))
    runs = ex.plan_runs(cfg)
    noisy = {r.shots for r in runs if (renderer_condition(r.condition) or ("", 0.0))[1] > 0}
    assert noisy == {4}
    assert {r.shots for r in runs if r.condition == "real+rotate(renderer)"} == {2, 4}
    real_mode = ex.study_config("quick", "toycars", conditions=("real", "real+rotate(renderer)"))
    real_mode.dataset = "stanford_cars"
    with pytest.raises(ValueError, match="renderer"):
        _rendered_sets(real_mode, {}, {})


def test_the_renderer_settings_change_only_the_renderer_conditions_ids():
    base = ex.study_config("full")
    other = ex.study_config("full", renderer={"yaw_jitter_deg": 9.0}, noise_shots=(2,))
    a, b = ex.condition_ids(base, "g", "d"), ex.condition_ids(other, "g", "d")
    for cond in ("real", "real+affine", "real+perturb", "real+rotate"):
        assert a[cond] == b[cond]
    assert a["real+perturb(renderer)"] != b["real+perturb(renderer)"]


def _planted_rows(slope: float, icpt: float, agreement: dict, fold_noise: float = 0.01):
    """Rows whose gain over real-only is icpt + slope * agreement in every fold, plus a fold effect."""
    rng = np.random.default_rng(0)
    rows = []
    for fold in range(5):
        real = 0.4 + 0.02 * fold
        rows.append({"scenario": "diverse", "condition": "real", "shots_per_class": 2, "fold": fold,
                     "accuracy": real})
        wobble = rng.normal(0, fold_noise)
        for cond, a in agreement.items():
            rows.append({"scenario": "diverse", "condition": cond, "shots_per_class": 2, "fold": fold,
                         "accuracy": real + icpt + slope * a + wobble})
    return pd.DataFrame(rows)


def test_the_noise_curve_finds_the_planted_crossings():
    agreement = {renderer_condition_name("rotate", q): 0.98 - 0.95 * q for q in (0, 0.2, 0.4, 0.6, 0.8)}
    rows = _planted_rows(slope=0.2, icpt=-0.1, agreement=agreement)
    agree = pd.DataFrame([{"scenario": "diverse", "condition": c, "shots_per_class": 2, "oracle_class_kept": a}
                          for c, a in agreement.items()])
    pts, curve = noise_curve(rows, agree, n_boot=200)
    assert len(pts) == 5 and set(pts["twin_share"]) == {0, 0.2, 0.4, 0.6, 0.8}
    c = curve.set_index("target_gain")
    assert math.isclose(c.loc[0.0, "agreement_needed"], 0.5, abs_tol=0.03)  # the folds wobble together
    assert c.loc[0.0, "agreement_needed_low"] <= 0.5 <= c.loc[0.0, "agreement_needed_high"]
    assert c.loc[0.0, "within_measured"] and c.loc[0.0, "reachable"]
    # +6 points needs 0.8 agreement on this line
    assert math.isclose(c.loc[ex.GAIN_GOAL, "agreement_needed"], 0.8, abs_tol=0.03)
    text = noise_curve_statements(pd.DataFrame([{"scenario": "diverse", "shots_per_class": 2,
                                                 "condition": "real+rotate(renderer)", "diff": 0.096,
                                                 "diff_low": 0.05, "diff_high": 0.14, "p_ttest_holm": 0.01}]), curve)
    assert "50%" in text and "80%" in text

    # a curve that tops out below the goal: the goal is out of reach even for a perfect generator
    flat = _planted_rows(slope=0.04, icpt=-0.01, agreement=agreement)
    _, curve = noise_curve(flat, agree, n_boot=100)
    goal = curve.set_index("target_gain").loc[ex.GAIN_GOAL]
    assert goal["agreement_needed"] > 1 and not goal["reachable"]


def test_each_generative_condition_is_read_as_a_share_of_its_ceiling():
    ceiling = pd.DataFrame([{"scenario": "diverse", "shots_per_class": 2, "condition": "real+rotate(renderer)",
                             "diff": 0.10, "diff_low": 0.05, "diff_high": 0.15},
                            {"scenario": "diverse", "shots_per_class": 2, "condition": "real+perturb(renderer)",
                             "diff": -0.02, "diff_low": -0.05, "diff_high": 0.01}])
    study = pd.DataFrame([{"scenario": "diverse", "shots_per_class": 2, "condition": c, "diff": d,
                           "diff_low": d - 0.03, "diff_high": d + 0.03}
                          for c, d in (("real+rotate", 0.04), ("real+rotate(residual)", 0.09),
                                       ("real+perturb", 0.01))])
    s = ceiling_shares(ceiling, study).set_index("condition")
    assert math.isclose(s.loc["real+rotate", "share_of_ceiling"], 0.4)
    assert math.isclose(s.loc["real+rotate(residual)", "share_of_ceiling"], 0.9)
    assert math.isnan(s.loc["real+perturb", "share_of_ceiling"])  # its ceiling does not gain


def test_rendered_sets_concatenate(tiny):
    _, _, keys, rendered = tiny
    both = RenderedSet.concat([rendered, rendered])
    assert len(both) == 2 * len(rendered) and len(both.twin_images) == len(both)


# ---------------------------------------------------------------------------------------------
# The method's own filter


def test_the_filters_keep_what_their_instrument_assigns_to_the_label():
    import torch

    from dapper.synthetic_filter import FilterSettings, keep_by_classifier, keep_by_nearest_shot, twin_of

    assert list(twin_of([0, 1, 2, 3, 4], 5)) == [1, 0, 3, 2, 4]  # a last class without a partner is its own
    logits = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.1, 0.0]])
    assert list(keep_by_classifier(logits, [0, 0, 1])) == [True, False, True]
    assert list(keep_by_classifier(logits, [0, 0, 1], min_confidence=0.6)) == [True, False, False]
    real = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # classes 0, 1 (its twin) and 2
    syn = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.2, 1.0]])
    assert list(keep_by_nearest_shot(syn, [0, 0, 2], real, [0, 1, 2], 4)) == [True, False, True]  # 3 has no shot
    with pytest.raises(ValueError, match="unknown filter"):
        FilterSettings(by="oracle")
    with pytest.raises(ValueError, match="do not match"):
        keep_by_classifier(logits, [0, 1])


def test_the_filter_reads_no_oracle(monkeypatch, tmp_path):
    """Planted case: on the ceiling with 80% of the images swapped for the twin's render, both filters
    must work with every oracle entry point broken (any read fails the test)."""
    from dapper.classify import FineTuneSettings
    from dapper.judges import oracles

    cond = "real+rotate(renderer, twins 80%, filtered)"
    for by in ("classifier", "nearest"):
        cfg = ex.study_config("quick", n_per_class=6, folds=(0,), shots=(3,), noise_shots=(3,), n_test_views=0,
                              conditions=("real", cond), workers=1, filter={"by": by},
                              finetune=FineTuneSettings(min_steps=8, max_steps=8, batch_size=16))
        inputs = ex.prepare_inputs(cfg, progress=False)
        spec = ex.plan_runs(cfg)[1]
        assert spec.condition == cond
        for name in [n for n in dir(oracles) if n.startswith(("load_", "predict_", "train_"))]:
            monkeypatch.setattr(oracles, name, lambda *a, **k: pytest.fail("the filter read an oracle"))
        before = ex.run_synthetic(inputs, spec, before_filter=True)
        after = ex.run_synthetic(inputs, spec)
        assert 0 < len(before) and len(after) <= len(before)
        assert set(after.manifest["synthetic_key"]) <= set(before.manifest["synthetic_key"])
        row = ex.run_one(inputs, spec)
        assert row["n_synthetic"] == len(after) and row["generator"] == "renderer"
        monkeypatch.undo()
    ids = ex.condition_ids(cfg, "g", "d")
    other = ex.condition_ids(dataclasses.replace(cfg, filter={"by": "classifier"}), "g", "d")
    assert ids[cond] != other[cond] and ids["real"] == other["real"]


def test_a_call_that_only_rebuilds_tables_keeps_the_time_the_rows_took(tmp_path):
    from dapper.study.filter_study import result_files
    from dapper.study.noise_curve import write_outputs

    files = result_files("nearest")
    assert files["rows"] == "five_fold_filter_nearest.csv"
    assert result_files("classifier")["rows"] == "five_fold_filter.csv"
    table = pd.DataFrame({"a": [1.5]})
    first = write_outputs(tmp_path, files, {"summary": table}, "text", {"runs_made": 10, "wall_seconds": 99.0})
    assert first["made"]["wall_seconds"] == 99.0
    again = write_outputs(tmp_path, files, {"summary": table}, "text", {"runs_made": 0, "wall_seconds": 5.0})
    assert again["made"]["wall_seconds"] == 99.0 and again["last"]["wall_seconds"] == 5.0
    assert pd.read_csv(tmp_path / files["summary"]).equals(table)
    assert (tmp_path / files["statements"]).read_text() == "text\n"


def test_a_quick_call_refuses_to_replace_a_full_runs_tables(tmp_path, monkeypatch):
    from dapper.cli import filter_study as filter_cli
    from dapper.cli import noise_curve as noise_cli
    from dapper.study.filter_study import result_files
    from dapper.study.noise_curve import RESULT_FILES, refuse_smaller_profile, write_outputs

    results = tmp_path / "results"
    table = pd.DataFrame({"a": [1.5]})
    for files in (RESULT_FILES, result_files("nearest")):
        refuse_smaller_profile(results, files, "quick")  # nothing there yet: nothing to protect
        write_outputs(results, files, {"summary": table}, "full", {"runs_made": 3, "profile": "full"})
        with pytest.raises(ValueError, match="full-profile run's tables"):
            refuse_smaller_profile(results, files, "quick")
        refuse_smaller_profile(results, files, "full")
        refuse_smaller_profile(results, files, "quick", replace_full=True)
    refuse_smaller_profile(results, result_files("classifier"), "quick")  # another filter's tables are its own
    # the commands refuse before anything runs, and leave the tables as they were
    monkeypatch.setenv("DAPPER_REPORTS", str(tmp_path))
    monkeypatch.setattr(noise_cli, "run_noise_curve", lambda *a, **k: pytest.fail("ran"))
    monkeypatch.setattr(filter_cli, "run_filter_study", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(SystemExit) as exit_:
        noise_cli.main(["--profile", "quick"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit):
        filter_cli.main(["--filter", "nearest"])
    assert (results / RESULT_FILES["statements"]).read_text() == "full\n"


def test_the_filter_statements_say_what_it_keeps_and_what_that_buys():
    from dapper.study.filter_study import filter_config, filter_statements

    cfg = filter_config("quick")
    agreement = pd.DataFrame([{"scenario": "diverse", "condition": "real+rotate(filtered)", "n_images": 30,
                               "n_before": 120, "share_kept": 0.25, "oracle_class_kept_before": 0.3,
                               "oracle_class_kept": 0.6, "oracle_pair_kept": 0.9}])
    rows = pd.DataFrame([{"scenario": "diverse", "condition": c, "shots_per_class": s, "fold": f,
                          "accuracy": 0.3 + 0.1 * (s == 4) + 0.01 * f + (0.05 if c != "real" else 0), "n_real": 20,
                          "n_synthetic": 0, "dataset": "toycars", "seed": 0}
                         for c in ("real", "real+affine", "real+rotate(filtered)") for s in (2, 4) for f in (0, 1)])
    text = filter_statements(ex.study_tables(rows), agreement, cfg)
    assert "keeps 25% of 120 images" in text and "30% of them to their label before the filter and 60% after" in text
    assert "classifier fine-tuned on the run's real shots alone" in text


def test_the_settings_sweep_chooses_on_the_other_folds_only():
    import pandas as pd

    from dapper.study.settings_sweep import fold_gains, nested_choice, setting_name, sweep_config

    # setting b is better on folds 0-3; on fold 4 alone a is far better: the choice for fold 4 must
    # still be b (fold 4's own result is never read for it), while for folds 0-3 fold 4 is training
    # data, whose large gain makes a the choice
    rows = []
    for fold in range(5):
        rows.append({"scenario": "diverse", "shots_per_class": 2, "fold": fold, "condition": "real", "accuracy": 0.5})
        rows.append({"scenario": "diverse", "shots_per_class": 2, "fold": fold, "condition": "syn",
                     "accuracy": 0.5 + (0.02 if fold < 4 else 0.3)})
    a = fold_gains(pd.DataFrame(rows), "a")
    b = a.assign(setting="b", gain=[0.05, 0.05, 0.05, 0.05, 0.0])
    choice = nested_choice(pd.concat([a, b]), default="a").set_index("fold")
    assert list(choice["chosen"]) == ["a", "a", "a", "a", "b"]
    assert choice.loc[4, "gain_chosen"] == 0.0 and np.isclose(choice.loc[4, "gain_default"], 0.3)
    assert np.allclose(choice.loc[[0, 1, 2, 3], "gain_chosen"], 0.02)
    # each setting's config differs in the finetuning share and k only, so its rows go to a file of their own
    c1, c2 = sweep_config(0.25, 16, "quick"), sweep_config(0.5, 4, "quick")
    assert (c1.finetune.synthetic_share, c1.augment.k, c2.finetune.synthetic_share, c2.augment.k) == (0.25, 16, 0.5, 4)
    assert c1.conditions == c2.conditions and setting_name(0.25, 16) == "share0.25_k16"
