"""Source-GAN metrics on planted data."""

import numpy as np

from dapper.study.gan_eval import frechet_distance, yaw_coverage


def test_frechet_distance_zero_for_same_set_and_grows_with_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2000, 8))
    b = rng.normal(size=(2000, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    near = frechet_distance(a, b)
    far = frechet_distance(a, b + 1.0)
    assert near < 0.1 and abs(far - 8.0) < 0.5  # mean shift of 1 in 8 dims adds 8


def test_yaw_coverage():
    full, counts = yaw_coverage(np.arange(0, 360, 0.5))
    assert full == 1.0 and counts.sum() == 720
    half, _ = yaw_coverage(np.arange(0, 180, 0.5))
    assert half == 0.5
    wrapped, _ = yaw_coverage(np.array([-5.0, 365.0]))
    assert wrapped == 2 / 36


def test_frechet_terms_split_the_distance():
    from dapper.study.gan_eval import frechet_terms

    rng = np.random.default_rng(1)
    a = rng.normal(size=(3000, 4))
    b = 2.0 * rng.normal(size=(3000, 4)) + 0.5
    mean_term, cov_term = frechet_terms(a, b)
    assert abs(mean_term + cov_term - frechet_distance(a, b)) < 1e-9
    # mean shift 0.5 in 4 dims; std 1 vs 2 in 4 dims: sum (1 - 2)^2 = 4
    assert abs(mean_term - 1.0) < 0.15 and abs(cov_term - 4.0) < 0.4


def test_resample_removes_fine_detail_only():
    from dapper.study.gan_eval import resample

    flat = np.full((2, 16, 16, 3), 77, np.uint8)
    assert np.array_equal(resample(flat, 8), flat)
    checker = (np.indices((16, 16)).sum(0) % 2 * 255).astype(np.uint8)
    checker = np.repeat(checker[None, :, :, None], 3, axis=3)
    assert resample(checker, 8).std() < 0.1 * checker.std()  # one-pixel pattern gone
    assert resample(checker, 12).std() < 0.1 * checker.std()  # at 3/4 too (needs the antialiased shrink)
    smooth = np.repeat(np.linspace(0, 255, 16).astype(np.uint8)[None, None, :, None], 16, axis=1)
    smooth = np.repeat(smooth, 3, axis=3)
    assert np.abs(resample(smooth, 8).astype(int) - smooth).mean() < 4  # a slow ramp survives
    assert resample(checker, 8).shape == checker.shape and resample(checker, 8).dtype == np.uint8


def test_evaluate_and_write_results_end_to_end(tiny_generator, tmp_path):
    import pandas as pd

    from dapper import plots
    from dapper.study.gan_eval import evaluate, write_results

    G = tiny_generator()
    result = evaluate(G, n=48, with_projection=False)
    assert set(result["fd_source_resampled"]) == {12, 8}  # 3/4 and 1/2 of 16 px
    assert abs(result["fd_mean_term"] + result["fd_covariance_term"] - result["fd_generated_vs_source"]) < 1e-6
    csv = write_results(result, "some/where/tiny.safetensors", out_dir=tmp_path)
    df = pd.read_csv(csv).set_index("metric")
    plots.fig_source_gan(result, path=tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0
    halves = df.loc["fd_source_halves", "value"]
    for size in (12, 8):
        assert np.isclose(df.loc[f"fd_ratio_source_resampled_{size}px", "value"],
                          df.loc[f"fd_source_resampled_{size}px", "value"] / halves)
    assert np.isclose(df.loc["fd_ratio", "value"], df.loc["fd_generated_vs_source", "value"] / halves)
    assert str(df.loc["fd_ratio", "met"]) in ("True", "False") and "identity_kept_after_projection" not in df.index


def test_identity_shares_count_twin_confusions_apart():
    from dapper.study.gan_eval import identity_shares

    labels = np.array([0, 0, 1, 1, 2, 2, 4])
    pred = np.array([0, 1, 1, 3, 3, 2, 4])  # 0->1 and 2->3 are twin mix-ups, 1->3 is not
    out = identity_shares(pred, labels, n_classes=5, pairs=((0, 1), (2, 3)))
    assert out["kept"] == 4 / 7 and out["pair_kept"] == 6 / 7
    assert np.allclose(out["per_class"][[0, 1, 2, 4]], [0.5, 0.5, 0.5, 1.0]) and np.isnan(out["per_class"][3])
    assert out["hits"].tolist() == [True, False, True, False, False, True, True]
    assert out["pair_hits"].tolist() == [True, True, True, False, True, True, True]


def test_identity_after_projection_runs_on_a_tiny_generator(tiny_generator, monkeypatch):
    import warnings

    from dapper.study import gan_eval
    from dapper.study.gan_eval import identity_after_projection

    # An oracle that names the originals right and every reconstruction as the next class: nothing
    # is kept, and the twin of an even class is the next one (pairs (0, 1), (2, 3), ...).
    calls = []

    def fake_identity(images, model=None, batch_size=256):
        calls.append(len(images))
        labels = np.repeat(np.arange(10), len(images) // 10)
        pred = labels if len(calls) == 1 else (labels + 1) % 10
        return pred, np.eye(10)[pred]

    monkeypatch.setattr(gan_eval.oracles, "predict_identity", fake_identity)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no encoder for this generator: projection starts at the mean w
        out = identity_after_projection(tiny_generator(track_w_avg=True), n_per_class=1, steps=2,
                                        spaces=("w", "w+"))
    assert calls == [10, 10, 10]  # the originals once, then each space's reconstructions
    assert set(out) == {"w", "w+", "oracle_on_originals"} and out["oracle_on_originals"] == 1.0
    for space in ("w", "w+"):
        assert set(out[space]) == {"kept", "per_class", "pair_kept", "hits", "pair_hits"}
        assert out[space]["kept"] == 0.0 and out[space]["pair_kept"] == 0.5
        assert np.array_equal(out[space]["per_class"], np.zeros(10))
    # pivotal tuning per view around the W pivot, judged like the projections (W projected once)
    from dapper.inversion.pivotal import PivotalSettings

    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = identity_after_projection(tiny_generator(track_w_avg=True), n_per_class=1, steps=2, spaces=("w+",),
                                        pivotal=PivotalSettings(steps=2, perceptual_weight=0.0))
    assert calls == [10, 10, 10, 10]  # originals, W+, the W pivots, their tuned redraws
    assert set(out) == {"w", "w+", "pivotal", "oracle_on_originals"}
    piv = out["pivotal"]
    assert piv["pivot"] == "w" and piv["kept"] == 0.0 and piv["cpu_seconds_per_view"] > 0
    assert piv["settings"]["steps"] == 2 and len(piv["hits"]) == 10


def test_goal_forecast_follows_the_fitted_line_to_the_goal():
    import pandas as pd

    from dapper.study.gan_eval import GOALS, goal_forecast

    kimg = np.array([100.0, 200.0, 400.0, 800.0])
    logit = -1.0 + 0.5 * np.log2(kimg / 100)  # a share that gains 0.5 logit per doubling
    share = 1 / (1 + np.exp(-logit))
    legs = pd.DataFrame({"kimg": kimg, "cpu_hours": kimg / 50, "n_projected": 10**6,
                         "fd_ratio": 40.0 * (kimg / 100) ** -1.0, "fd_ratio_source_48px": 2.0,
                         "identity_kept_w": share, "identity_kept_wplus": share[::-1],
                         "pair_kept_w": share})
    f = goal_forecast(legs).set_index("metric")
    goal = GOALS["identity_kept_w"]
    expect = 100 * 2 ** ((np.log(goal / (1 - goal)) + 1.0) / 0.5)
    assert np.isclose(f.loc["identity_kept_w", "kimg_at_goal"], expect, rtol=1e-3)
    assert np.isclose(f.loc["identity_kept_w", "cpu_hours_at_goal"], expect / 50, rtol=1e-3)
    assert abs(f.loc["identity_kept_w", "holdout_error"]) < 1e-3  # an exact line predicts its last leg
    assert np.isclose(f.loc["fd_ratio", "kimg_at_goal"], 100 * 40 / 2.0, rtol=1e-3)  # ratio 1/kimg
    assert f.loc["identity_kept_wplus", "kimg_at_goal"] == np.inf  # falling: never reaches its goal
    one = goal_forecast(legs.iloc[:1]).set_index("metric")
    assert np.isnan(one.loc["identity_kept_w", "kimg_at_goal"]) and np.isnan(one.loc["fd_ratio", "holdout_error"])
    assert goal_forecast(legs.iloc[:0]).empty


def test_a_met_goal_is_reached_now_whatever_the_line_does():
    import pandas as pd

    from dapper.study.gan_eval import GOALS, goal_forecast, stop_rule

    kimg = np.array([100.0, 200.0, 400.0])
    high = GOALS["identity_kept_wplus"] + np.array([0.06, 0.04, 0.02])  # met at every leg, yet falling
    legs = pd.DataFrame({"kimg": kimg, "cpu_hours": kimg / 50, "n_projected": 100, "fd_ratio": [3.0, 2.0, 1.5],
                         "fd_ratio_source_48px": 2.0, "identity_kept_w": [0.3, 0.4, 0.5],
                         "identity_kept_wplus": high, "pair_kept_w": [0.99, 0.98, 0.985]})
    f = goal_forecast(legs).set_index("metric")
    for metric in ("identity_kept_wplus", "pair_kept_w", "fd_ratio"):  # fd_ratio: 1.5 <= its goal 2.0
        assert f.loc[metric, "kimg_at_goal"] == 400.0 and f.loc[metric, "cpu_hours_at_goal"] == 8.0
    assert 400.0 < f.loc["identity_kept_w", "kimg_at_goal"] < np.inf  # not met: still extrapolated
    one = goal_forecast(legs.iloc[-1:]).set_index("metric")
    assert one.loc["identity_kept_wplus", "kimg_at_goal"] == 400.0  # one leg suffices to know a goal is met
    rule = stop_rule(f.reset_index())
    assert rule["metric"] == "identity_kept_w"  # the met goals are 0 hours away, never the farthest
