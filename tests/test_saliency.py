"""dapper.study.saliency: maps, energy share, pointing game, ROAD, paired comparison of two classifiers."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from dapper.study import saliency as S


class RedSpotNet(nn.Module):
    """A CNN whose evidence for class 0 is the red channel wherever it is: a 1x1 convolution
    copies red (class 0) and green (class 1), a ReLU, global average pooling, identity head. Its
    Grad-CAM for class 0 is the red channel itself, so planted red squares are where it looks."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.features.weight[1, 1] = 1.0
        self.act = nn.ReLU()
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(2))
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.act(self.features(x)).mean((2, 3)))


def tiny_cnn(n_classes=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, n_classes)).eval()


def planted(n=4, size=16, seed=0):
    """Images in [-1, 1] with one bright red square each (the object) on a dark background."""
    rng = np.random.default_rng(seed)
    x = torch.full((n, 3, size, size), -1.0)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        r, c = rng.integers(0, size - 5, 2)
        x[i, 0, r:r + 5, c:c + 5] = 1.0
        masks[i, r:r + 5, c:c + 5] = True
    return x, masks


# ---------------------------------------------------------------------------------------------
# Maps


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "scorecam"])
def test_cam_maps_shape_and_range(method):
    model = tiny_cnn()
    x = torch.rand(3, 3, 12, 12) * 2 - 1
    for targets in (None, [0, 1, 2]):
        cams = S.cam_maps(model, x, method=method, targets=targets)
        assert cams.shape == (3, 12, 12) and cams.dtype == np.float32
        assert cams.min() >= 0 and cams.max() <= 1
    assert not model.training  # left as found, hooks released
    assert not model[2]._forward_hooks


def test_cam_of_a_known_model_lands_on_the_planted_object():
    model = RedSpotNet().eval()
    x, masks = planted()
    cams = S.cam_maps(model, x, target_layers=[model.act], targets=[0] * len(x))
    assert np.allclose(S.energy_share(cams, masks), 1.0, atol=1e-6)
    assert (S.pointing_game(cams, masks) == 1).all()


def test_default_target_layer_is_the_last_stage_of_the_timm_resnext():
    from dapper.classify import create_classifier

    model = create_classifier(4, weights=None).eval()
    assert S.default_target_layer(model) is model.layer4
    assert S.resolve_target_layers(model, "layer3") == [model.layer3]
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)  # uint8 NHWC path
    cams = S.cam_maps(model, images, target_layers="layer3", targets=[1, 2])
    assert cams.shape == (2, 64, 64) and 0 <= cams.min() and cams.max() <= 1


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="gradcam"):
        S.cam_maps(tiny_cnn(), torch.zeros(1, 3, 8, 8), method="nope")


# ---------------------------------------------------------------------------------------------
# Energy share and pointing game on planted maps


def test_energy_share():
    masks = np.zeros((3, 10, 10), bool)
    masks[:, 2:6, 3:8] = True  # 20 of 100 pixels
    inside = masks.astype(float) * np.random.default_rng(0).random((3, 10, 10))
    uniform = np.ones((3, 10, 10))
    assert np.allclose(S.energy_share(inside, masks), 1.0)
    assert np.allclose(S.energy_share(uniform, masks), 0.2)
    assert np.allclose(S.energy_share(1.0 - masks, masks), 0.0)
    assert np.isnan(S.energy_share(np.zeros((10, 10)), masks[0]))[0]


def test_pointing_game():
    masks = np.zeros((4, 12, 12), bool)
    masks[:, 6:10, 6:10] = True
    cams = np.zeros((4, 12, 12))
    cams[0, 7, 8] = 1.0  # on the object
    cams[1, 1, 1] = 1.0  # far off
    cams[2, 4, 7] = 1.0  # two pixels above the object
    cams[3, :6, :6] = 1.0  # a flat top off the object (the first maximum in memory order is (0, 0))
    cams[3, 5, 5] = 1.0
    hits = S.pointing_game(cams, masks)
    assert hits.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert S.pointing_game(cams, masks, tolerance=2.0).tolist() == [1.0, 0.0, 1.0, 0.0]
    # A flat top resolves to its maximal pixel nearest the map's centre of mass, not its first pixel.
    assert S.pointing_points(cams[3:]).tolist() == [[2, 2]]
    coarse = np.zeros((12, 12))
    coarse[:6, :6] = 1.0  # an upsampled 2 x 2 map: the top-left cell's block, fading towards the others
    coarse[:6, 6:] = coarse[6:, :6] = 0.5
    coarse[6:, 6:] = 0.25
    assert S.pointing_points(coarse).tolist() == [[4, 4]]  # mass centre (4.5, 4.5); ties go to the first
    assert np.isnan(S.pointing_game(np.zeros((12, 12)), masks[0]))[0]


# ---------------------------------------------------------------------------------------------
# ROAD


def test_road_runs_and_is_reproducible():
    model = tiny_cnn()
    x = torch.rand(3, 3, 8, 8) * 2 - 1
    cams = S.cam_maps(model, x, targets=[0, 1, 2])
    r1 = S.road_scores(model, x, cams, [0, 1, 2], percentiles=(30, 70), seed=1)
    r2 = S.road_scores(model, x, cams, [0, 1, 2], percentiles=(30, 70), seed=1)
    assert set(r1) == {"road_morf", "road_lerf", "road"}
    for k in r1:
        assert r1[k].shape == (3,) and np.isfinite(r1[k]).all()
        assert np.array_equal(r1[k], r2[k])
        assert (np.abs(r1[k]) <= 1).all()  # probability changes
    assert np.allclose(r1["road"], (r1["road_lerf"] - r1["road_morf"]) / 2)


def test_road_rewards_the_map_that_points_at_the_evidence():
    model = RedSpotNet().eval()
    x, masks = planted(n=3, size=12)
    good = masks.astype(np.float32)
    bad = 1.0 - good
    r_good = S.road_scores(model, x, good, [0] * 3, percentiles=(50, 80))
    r_bad = S.road_scores(model, x, bad, [0] * 3, percentiles=(50, 80))
    assert (r_good["road"] > r_bad["road"]).all()


# ---------------------------------------------------------------------------------------------
# Two classifiers, statistics


def test_compare_classifiers_columns():
    x, masks = planted(n=4, size=12)
    df = S.compare_classifiers(tiny_cnn(2, 0), RedSpotNet().eval(), x, [0, 1, 0, 1], masks,
                               road_percentiles=(50,), road_subset=2)
    for m in S.METRICS + ("pred", "correct", "p_true"):
        assert f"{m}_real" in df.columns and f"{m}_augmented" in df.columns
    assert np.allclose(df["mask_fraction"], 25 / 144)
    assert df["road_real"].notna().sum() == 2 and df["road_augmented"].isna().sum() == 2
    assert (df.loc[df.label == 0, "energy_augmented"] > 0.99).all()


def synthetic_per_image(shift, n=60, folds=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        base = rng.uniform(0.2, 0.8)
        rows.append({"image": f"img{i}", "fold": i % folds, "scenario": "diverse", "mask_fraction": 0.3,
                     "energy_real": base + rng.normal(0, 0.05),
                     "energy_augmented": base + shift + rng.normal(0, 0.05),
                     "pointing_real": float(rng.random() < 0.5), "pointing_augmented": float(rng.random() < 0.5),
                     "road_real": rng.normal(0, 0.1), "road_augmented": rng.normal(0, 0.1)})
    return pd.DataFrame(rows)


def test_paired_comparison_detects_a_planted_difference_and_not_a_null_one():
    planted_df = S.saliency_summary(synthetic_per_image(0.1), metrics=("energy", "pointing", "road"))
    row = planted_df.set_index("measure").loc["energy"]
    assert row["significant"] and row["diff_ci_low"] < 0.1 < row["diff_ci_high"]
    assert row["n_images"] == 60 and row["n_folds"] == 3 and row["chance"] == pytest.approx(0.3)
    assert row["p_t_holm"] >= row["p_t"]
    hits = planted_df.set_index("measure").loc["pointing"]  # 0/1 hits: Wilson interval inside [0, 1]
    assert 0 <= hits["ci_low_real"] < hits["mean_real"] < hits["ci_high_real"] <= 1
    # Wilson's score interval, as published: 3 hits of 10 -> [0.1078, 0.6032] at 95%
    wilson = S._mean_interval(np.array([1.0] * 3 + [0.0] * 7), 0.95)
    assert (wilson.low, wilson.high) == pytest.approx((0.10779, 0.60322), abs=1e-5)
    null = S.saliency_summary(synthetic_per_image(0.0, seed=1), metrics=("energy", "pointing", "road"))
    assert not null["significant"].any()
    text = S.describe_summary(null)
    assert "does not measurably move attention" in text
    assert "does not" not in S.describe_summary(planted_df)


def test_summary_counts_an_image_seen_in_several_folds_once():
    df = synthetic_per_image(0.1, n=20, folds=1)
    twice = pd.concat([df, df.assign(fold=1)])
    s = S.saliency_summary(twice, metrics=("energy",))
    assert s["n_images"].iloc[0] == 20 and s["n_folds"].iloc[0] == 2


def test_figure_selection_is_the_first_test_images_of_each_class():
    labels = np.array([0, 1, 0, 1, 2, 2, 0, 1, 2])
    test_idx = np.array([8, 6, 5, 3, 2, 1])
    assert S.figure_selection(labels, test_idx).tolist() == [2, 1, 5]
    assert S.figure_selection(labels, test_idx, per_class=2).tolist() == [2, 6, 1, 3, 5, 8]


# ---------------------------------------------------------------------------------------------
# The study's classifiers and masks


def test_train_pair_trains_what_the_study_trains_and_masks_match(tmp_path, monkeypatch):
    from study_fakes import tiny_study_inputs

    from dapper.study import experiments as E

    cfg, inputs = tiny_study_inputs(tmp_path, monkeypatch)
    pair = S.train_pair(inputs, "diverse", 0, 1, condition="real+perturb")
    assert pair.n_real == 10 and pair.n_synthetic == 10 * cfg.augment.k
    d = inputs.data["diverse"]
    test_idx = inputs.folds["diverse"][0][1]
    from dapper.classify import accuracy, prepare_images

    x = prepare_images(d.images[test_idx], pair.config)
    y = torch.from_numpy(d.labels[test_idx])
    for cond, model in (("real", pair.real), ("real+perturb", pair.augmented)):
        spec = next(s for s in E.plan_runs(cfg) if s.condition == cond)
        assert accuracy(model, x, y) == pytest.approx(E.run_one(inputs, spec)["accuracy_fold"])
    masks = S.object_masks(cfg, d, test_idx[:3])
    assert masks.shape == (3, 32, 32) and masks.any((1, 2)).all()
    broken = E.ScenarioData(**{**d.__dict__, "images": d.images[::-1].copy()})
    with pytest.raises(RuntimeError, match="masks"):
        S.object_masks(cfg, broken, test_idx[:3])


def test_figure_functions_draw_and_save(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from dapper import plots

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    masks = np.zeros((3, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    cams = {"real-only": rng.random((3, 16, 16)), "augmented": rng.random((3, 16, 16))}
    plots.fig7_gradcam(images, cams, masks, row_labels=["a", "b", "c"], notes={"augmented": ["x", "y", "z"]},
                            caption="rule", path=tmp_path / "fig7.png")
    summary = S.saliency_summary(synthetic_per_image(0.1), metrics=("energy", "pointing", "road"))
    plots.fig7_saliency_differences(summary, path=tmp_path / "diff.png")
    assert (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "diff.png").stat().st_size > 0
