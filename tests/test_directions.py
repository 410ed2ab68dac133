"""dapper.directions: editing, the methods' linear algebra, circular yaw and the evaluation measures.

Everything runs on a tiny generator (16 px) and synthetic latents made here; no checkpoint is read.
"""

import numpy as np
import pytest
import torch
from study_fakes import AcceptingDetector, RednessAnnotator

from dapper import directions as D
from dapper.directions import calibrate as DC
from dapper.directions import methods as DM
from dapper.study import direction_eval as DE


@pytest.fixture(scope="module")
def G(tiny_generator):
    return tiny_generator()


def _samples(w, yaw, accepted=None) -> D.PoseSamples:
    n = len(w)
    rng = np.random.default_rng(1)
    return D.PoseSamples(
        w=w.astype(np.float32), accepted=np.ones(n, bool) if accepted is None else accepted,
        score=np.ones(n, np.float32), box=np.tile(np.float32([2, 4, 14, 12]), (n, 1)),
        yaw=(np.asarray(yaw) % 360).astype(np.float32), elevation=np.zeros(n, np.float32),
        colour_lab=rng.normal(50, 10, (n, 3)).astype(np.float32), size=rng.uniform(0.3, 0.6, n).astype(np.float32))


def test_apply_direction_edits_only_its_rows_and_is_linear(G):
    ws = torch.randn(3, G.num_ws, G.w_dim)
    d = D.Direction(np.random.default_rng(0).standard_normal(G.w_dim), (1, 4), "test", scale=0.7)
    out = D.apply_direction(ws, d, [-2.0, 0.0, 1.0, 3.0])
    assert out.shape == (3, 4, G.num_ws, G.w_dim)
    delta = out - ws[:, None]
    untouched = [r for r in range(G.num_ws) if not 1 <= r < 4]
    assert delta[:, :, untouched].abs().max() == 0
    assert torch.allclose(delta[:, 1], torch.zeros_like(delta[:, 1]))
    step = torch.from_numpy(d.step())
    for j, c in enumerate([-2.0, 0.0, 1.0, 3.0]):
        assert torch.allclose(delta[:, j, 1:4], c * step.expand(3, 3, -1), atol=1e-6)
    assert abs(np.linalg.norm(d.vector) - 1) < 1e-6


def test_direction_units_and_roundtrip(tmp_path):
    d = D.Direction(np.arange(1.0, 5.0), (0, 2), "paper", scale=0.2, units="paper", degrees_per_unit=4.0,
                    metadata={"paper_scale": 0.2})
    deg = d.in_degrees()
    assert deg.units == "degrees" and deg.degrees_per_unit == 1.0
    assert np.isclose(deg.scale, 0.05)  # 4 deg per 0.2 W -> one degree per 0.05 W
    back = deg.in_paper_units()
    assert np.isclose(back.scale, 0.2) and np.isclose(back.degrees_per_unit, 4.0)
    moved = deg.with_layers(0, 1)
    assert moved.units == "uncalibrated" and moved.degrees_per_unit is None and moved.scale == deg.scale
    d2 = D.Direction.load(deg.save(tmp_path / "d.json"))
    assert d2.layers == (0, 2) and np.allclose(d2.vector, deg.vector) and d2.scale == deg.scale
    with pytest.raises(ValueError):
        D.Direction(np.zeros(4), (0, 1), "x")
    with pytest.raises(ValueError):
        D.Direction(np.ones(3), (0, 1), "x").in_degrees()


def test_style_layers_follow_official_row_order(G):
    rows = [(r, name) for r, name, _ in D.style_layers(G)]
    # 16 px: b4.conv1 0, b4.torgb 1, b8.conv0 1, b8.conv1 2, b8.torgb 3, b16.conv0 3, conv1 4, torgb 5
    assert rows == [(0, "b4.conv1"), (1, "b4.torgb"), (1, "b8.conv0"), (2, "b8.conv1"), (3, "b8.torgb"),
                    (3, "b16.conv0"), (4, "b16.conv1"), (5, "b16.torgb")]
    assert G.num_ws == 6
    assert D.coarse_layers(G) == (0, 3)


def test_sefa_vectors_are_orthonormal_eigenvectors(G):
    vals, vecs = D.sefa_basis(G, (0, 3))
    assert np.allclose(vecs.T @ vecs, np.eye(G.w_dim), atol=1e-8)
    assert np.all(np.diff(vals) <= 1e-9)  # descending
    mats = [aff.weight.detach().double() * aff.weight_gain for r, _, aff in D.style_layers(G) if r < 3]
    a = torch.cat(mats).numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    assert np.allclose(a.T @ a @ vecs[:, :3], vecs[:, :3] * vals[:3], atol=1e-8)
    d = D.sefa_direction(G, _samples(np.random.default_rng(0).standard_normal((200, 16)),
                                     np.random.default_rng(1).uniform(0, 80, 200)), (0, 3))
    assert d.layers == (0, 3) and any(abs(abs(d.vector @ vecs[:, j]) - 1) < 1e-6 for j in range(8))


def _planted(n=1500, dim=16, ref=40.0, seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(dim)
    if sparse:
        u[dim // 2:] = 0
    u /= np.linalg.norm(u)
    w = rng.standard_normal((n, dim))
    yaw = ref + 40 * (w @ u) + rng.normal(0, 2, n)  # degrees, a linear attribute of W
    return w, yaw % 360, u


@pytest.mark.parametrize("ref", [40.0, 0.0, 350.0])
def test_ridge_direction_recovers_planted_attribute(ref):
    # ref 0 and 350: the yaw crosses 360 -> 0, so regressing the raw angle would fail.
    w, yaw, u = _planted(ref=ref)
    d = D.paper_pose_direction(samples=_samples(w, yaw), threshold_quantile=0.0, reference_yaw=ref)
    assert d.vector @ u > 0.97
    assert d.units == "paper" and d.metadata["paper_scale"] > 0
    # One paper unit raises the predicted yaw by one degree: the true slope is 40 deg per W unit.
    assert 20 < 1.0 / d.scale < 60
    local = D.paper_pose_direction(samples=_samples(w, yaw), threshold_quantile=0.0, reference_yaw=ref, window=60,
                                   method="ridge-local")
    assert local.vector @ u > 0.97 and local.method == "ridge-local" and local.metadata["n_fit"] < len(w)
    ws, yaw_s, u_s = _planted(sparse=True, seed=3)
    ds = D.paper_pose_direction(samples=_samples(ws, yaw_s), threshold_quantile=0.5)
    assert ds.vector @ u_s > 0.97
    assert np.count_nonzero(ds.vector) == 8  # the thresholded half is exactly zero


def test_baselines_find_planted_attribute(G):
    w, yaw, u = _planted(n=2000, dim=16)
    s = _samples(w, yaw)
    ig = D.interfacegan_direction(s, 40.0, (0, 2), conditions=())
    assert ig.vector @ u > 0.9
    # Conditional projection leaves the edit orthogonal to the condition normal.
    s.colour_lab[:, 0] = 50 + 10 * w[:, 0]
    igc = D.interfacegan_direction(s, 40.0, (0, 2), conditions=("lightness",))
    n_light = DM._svm_normal(w.astype(np.float64), s.colour_lab[:, 0].astype(np.float64), 0.2)
    assert abs(igc.vector @ n_light) < 1e-6
    # PCA: make u the top component, then GANSpace picks it.
    w2 = w + 3 * (w @ u)[:, None] * u[None]
    gs = D.ganspace_direction(_samples(w2, (40 + 10 * (w2 @ u)) % 360), (0, 2))
    assert abs(gs.vector @ u) > 0.99 and gs.metadata["component"] == 0
    r = D.random_direction(16, (0, 2), seed=1, samples=s)
    assert r.metadata["abs_corr_with_yaw_offset"] < 0.9


def test_circular_angles():
    assert np.isclose(D.wrap_deg(359 - 1), -2) and np.isclose(D.wrap_deg(1 - 359), 2)
    assert np.isclose(D.circular_mean_deg([359, 1]) % 360, 0, atol=1e-9) or np.isclose(
        D.circular_mean_deg([359, 1]), 360, atol=1e-9)
    assert np.isclose(D.circular_mean_deg([80, 100]), 90)
    m = D.yaw_sequence_metrics([-2, -1, 0, 1, 2], [[350, 355, 0, 5, 10]])
    assert np.isclose(m["slope"][0], 5) and np.isclose(m["r2"][0], 1) and m["monotone"][0] and m["n_jumps"][0] == 0


def test_sequence_metrics_jumps_and_linearity():
    c = np.arange(-30, 31, 5)
    smooth = 40 + 1.0 * c
    jumpy = smooth.copy()
    jumpy[8:] += 60  # one step of 65 deg where the others are 5
    flat = np.full_like(smooth, 40.0) + np.random.default_rng(0).normal(0, 1, len(c))
    back = 40 + 1.0 * np.abs(c)  # turns one way, then back: not monotone
    m = D.yaw_sequence_metrics(c, np.stack([smooth, jumpy, flat, back]))
    assert np.allclose(m["slope"][0], 1) and np.isclose(m["r2"][0], 1)
    assert m["n_jumps"].tolist() == [0, 1, 0, 0]  # the flat one's noise stays under the floor
    assert m["r2"][1] < 0.95 and m["r2"][2] < 0.5
    assert m["monotone"].tolist() == [True, True, False, False]
    # A front/back flip of 180 deg counts as a jump after unwrapping.
    flip = smooth.copy()
    flip[10:] += 180
    assert D.yaw_sequence_metrics(c, flip[None])["n_jumps"][0] == 1
    # The step slope is the turn without the jump: what calibration and selection read, where the
    # least squares slope takes a flip for a fast turn.
    m = D.yaw_sequence_metrics(c, np.stack([smooth, jumpy, flip]))
    assert np.allclose(m["step_slope"], 1.0)
    assert abs(m["slope"][2] - m["step_slope"][2]) > 2.0


def test_fit_calibrate_and_evaluate_end_to_end(G):
    ann = RednessAnnotator()
    s = D.annotate_samples(G, 300, AcceptingDetector(), ann, seed=0, progress=False)
    assert len(s) == 300 and s.accepted.all() and s.w.shape == (300, G.w_dim)
    s2 = D.annotate_samples(G, 300, AcceptingDetector(), ann, seed=0, progress=False)  # from the cache
    assert np.array_equal(s.w, s2.w)
    ref = D.circular_mean_deg(s.yaw)
    dirs = D.fit_directions(G, s, ann, reference_yaw=ref, n_calibration=8, max_shift_factor=2.0, progress=False)
    assert {"paper/all", "sefa/coarse", "random/all", "paper/all (paper units)"} <= set(dirs)
    d = dirs["paper/all"]
    assert d.units == "degrees" and d.metadata["calibration"]["by"] == "annotator"
    ws = D.calibration_latents(s, 4, ref, num_ws=G.num_ws)
    # Calibrated (not capped at the W budget): the annotator reads about +-10 degrees at +-10 units.
    assert not d.metadata["calibration"]["capped"]
    y = DC.annotate_edits(G, ws, d, [-10, 0, 10], ann, 64)
    assert 4 < np.median(D.yaw_sequence_metrics([-10, 0, 10], y)["slope"]) * 10 < 16
    summary, per_image = DE.evaluate_directions(
        G, {k: dirs[k] for k in ("paper/all", "random/all")}, ws, coefficients=(-10, 0, 10),
        yaw_reader=ann.predict, progress=False)
    assert list(summary.direction) == ["paper/all", "random/all"]
    assert len(per_image) == 2 * 4 * 3
    assert summary.identity_kept_at_30.isna().all()  # no identity oracle given
    table = DE.per_coefficient_table(per_image)
    assert len(table) == 2 * 3 and table.identity_kept.isna().all()
    assert (table[table.coefficient == 0].yaw_change_median == 0).all()
    name, reason = DE.rank_by_oracles(summary)
    assert name in set(summary.direction) | {""}
    assert reason.startswith(f"{name}:") if name else "no direction" in reason
    # a subset of the candidates: the paper's always comes with them, fitted as in the full set
    some = D.fit_directions(G, s, ann, reference_yaw=ref, n_calibration=8, max_shift_factor=2.0, progress=False,
                            methods=("ridge-local",))
    assert set(some) == {"paper/all", "paper/coarse", "ridge-local/all", "ridge-local/coarse",
                         "paper/all (paper units)"}
    assert np.allclose(some["ridge-local/coarse"].vector, dirs["ridge-local/coarse"].vector)
    with pytest.raises(ValueError, match="unknown direction methods"):
        D.fit_directions(G, s, ann, reference_yaw=ref, methods=("paper", "stylespace"), progress=False)


# ---------------------------------------------------------------------------------------------
# The method's labelling models (dapper.judges.annotators): interface and training-data plumbing
# ---------------------------------------------------------------------------------------------


def test_annotator_interfaces_take_both_image_layouts():
    from dapper.judges import annotators as A

    torch.manual_seed(0)
    pose = A.PoseAnnotator(A.AnnotatorNet(A.POSE_OUTPUTS, (4, 8, 8, 8), 8).eval())
    det = A.VehicleDetector(A.AnnotatorNet(A.DETECTOR_OUTPUTS, (4, 8, 8, 8), 8).eval())
    u8 = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    f = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.allclose(pose.predict(u8), pose.predict(f), atol=1e-4)
    yaw, elev = pose.predict_pose(f)
    assert yaw.shape == (3,) and ((0 <= yaw) & (yaw < 360)).all() and elev.shape == (3,)
    score, box = det.predict(u8)
    assert score.shape == (3,) and box.shape == (3, 4) and ((0 <= score) & (score <= 1)).all()
    assert (box >= 0).all() and (box <= 32).all()  # pixels of the 32 px input
    assert det.accepts(f, threshold=0.0).all()


def test_annotator_augmentation_moves_boxes_and_yaw_with_the_image():
    from dapper.judges import annotators as A

    x = -torch.ones(64, 3, 64, 64)
    x[:, :, 20:30, 5:25] = 1.0  # a bright box at (5, 20, 25, 30)
    boxes = torch.tensor([[5.0, 20.0, 25.0, 30.0]]).repeat(64, 1)
    yaw = torch.full((64,), 30.0)
    out, b, y = A._augment(x, boxes, yaw, torch.Generator().manual_seed(0))
    flipped = y != 30.0
    assert flipped.any() and (~flipped).any()
    assert torch.allclose(y[flipped], torch.tensor(330.0))  # a mirror turns yaw into 360 - yaw
    for i in range(64):
        x0, y0, x1, y1 = (int(v) for v in b[i])
        inside = out[i, 0, y0 + 1:y1 - 1, x0 + 1:x1 - 1].mean()
        assert inside > 0.5, (i, b[i])
    neg = A.make_negatives(x[:10], x[:2], torch.Generator().manual_seed(1))
    assert neg.shape == (10, 3, 64, 64) and neg.abs().max() <= 1.0 + 1e-6


class _PixelDistance(torch.nn.Module):
    """Stands in for dapper.inversion.perceptual: mean squared difference per pair."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x, y):
        return (x - y).square().flatten(1).mean(1)


def test_evaluation_with_true_rerenders(G):
    from dapper.data import toycars
    from dapper.judges import oracles

    pool = toycars.target_pool(1, seed=3, size=16, homogeneous=True, classes=[0, 1])
    torch.manual_seed(0)
    identity = oracles.OracleNet(10, width=8).eval()
    d = D.Direction(np.random.default_rng(0).standard_normal(G.w_dim), (0, 3), "test", scale=0.05, units="degrees")
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    summary, per_image = DE.evaluate_directions(
        G, {"d": d}, ws, coefficients=(-20, 0, 20), metas=pool.metas, labels=pool.labels,
        yaw_reader=RednessAnnotator().predict, identity_oracle=identity, perceptual=_PixelDistance(), progress=False)
    row = summary.iloc[0]
    assert 0 <= row.identity_kept_at_30 <= 1 and 0 <= row.true_class_at_0 <= 1
    assert np.isfinite([row.colour_drift_at_30, row.fidelity_psnr_at_30, row.fidelity_perceptual_at_30]).all()
    table = DE.per_coefficient_table(per_image)
    assert np.allclose(table[table.coefficient == 0].identity_kept, 1.0)
    assert np.isfinite(table.psnr).all() and np.isfinite(table.perceptual).all()  # 0 and both ends


def test_fit_ridge_picks_the_penalty_with_the_least_leave_one_out_error():
    """Brute-force leave-one-out (refit without each point) agrees with fit_ridge's choice and fit."""
    from sklearn.linear_model import Ridge

    from dapper.directions import fit_ridge

    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 5))
    y = x @ rng.normal(size=(5, 2)) + rng.normal(size=(30, 2)) * 2.0
    alphas = (0.01, 1.0, 30.0, 1000.0)
    loo = []
    for alpha in alphas:
        err = [(Ridge(alpha=alpha).fit(np.delete(x, i, 0), np.delete(y, i, 0)).predict(x[i:i + 1]) - y[i]) ** 2
               for i in range(len(x))]
        loo.append(float(np.mean(err)))
    coef, intercept, alpha = fit_ridge(x, y, alphas)
    assert alpha == alphas[int(np.argmin(loo))]
    full = Ridge(alpha=alpha).fit(x, y)
    assert np.allclose(coef, full.coef_.T) and np.allclose(intercept, full.intercept_)
    assert coef.shape == (5, 2) and intercept.shape == (2,)


# ---------------------------------------------------------------------------------------------
# The method's own choice (dapper.directions.select): annotator and detector only
# ---------------------------------------------------------------------------------------------


def _planted_measures():
    import pandas as pd

    # "a" is what the method's instruments favour; "b" is what the oracles would pick.
    return pd.DataFrame({
        "direction": ["a", "b", "capped", "still"], "units": ["degrees"] * 4, "capped": [False, False, True, False],
        "annotator_deg_per_unit": [1.0, 0.7, 1.0, 0.1], "annotator_r2": [0.95, 0.6, 0.99, 0.2],
        "annotator_jump_share": [0.0, 0.4, 0.0, 0.0], "detector_kept_at_30": [1.0, 0.8, 1.0, 1.0],
        "colour_drift_at_30": [2.0, 6.0, 1.0, 0.5], "w_shift_at_30": [1.0, 1.5, 3.0, 0.1],
        "oracle_deg_per_unit": [0.3, 1.0, 1.0, 1.0], "identity_kept_at_30": [0.1, 0.99, 1.0, 1.0],
        "jump_share": [0.9, 0.0, 0.0, 0.0], "fidelity_psnr_at_30": [10.0, 30.0, 40.0, 40.0]})


def test_selection_reads_the_methods_measures_never_the_oracles():
    df = _planted_measures()
    sel = D.select_direction(df)
    assert sel.name == "a" and sel.reason.startswith("a:")
    assert np.isnan(sel.table.set_index("direction").loc[["capped", "still"], "mean_rank"]).all()
    # Scrambling or dropping every oracle column changes nothing; the oracles alone cannot select.
    oracle_cols = ["oracle_deg_per_unit", "identity_kept_at_30", "jump_share", "fidelity_psnr_at_30"]
    scrambled = df.copy()
    scrambled[oracle_cols] = scrambled[oracle_cols].iloc[::-1].to_numpy()
    assert D.select_direction(scrambled).name == "a" == D.select_direction(df.drop(columns=oracle_cols)).name
    assert set(sel.table.columns) == {"direction", "units", "capped", "mean_rank", *D.SELECTION_COLUMNS}
    with pytest.raises(ValueError, match="method's measures"):
        D.select_direction(df[["direction", "units", "capped", *oracle_cols]])
    # And an oracle ranking on the same table would have chosen otherwise (the plant is not trivial).
    assert df.sort_values("identity_kept_at_30", ascending=False).direction.iloc[0] != "a"


def test_selection_says_so_when_nothing_turns():
    df = _planted_measures()
    df["annotator_deg_per_unit"] = 0.1
    sel = D.select_direction(df)
    assert sel.name == "" and "no direction turns" in sel.reason


def test_measures_and_layer_split_on_a_tiny_generator(G):
    ann = RednessAnnotator()
    s = D.annotate_samples(G, 300, AcceptingDetector(), ann, seed=0, progress=False)
    ref = D.circular_mean_deg(s.yaw)
    # the fake annotator reads the tiny generator's vehicles very unevenly: a median over 24 of them is steady
    dirs = D.fit_directions(G, s, ann, reference_yaw=ref, n_calibration=24, max_shift_factor=2.0, progress=False)
    ws = D.calibration_latents(s, 24, ref, num_ws=G.num_ws)
    cands = {k: dirs[k] for k in ("paper/all", "random/all")}
    table = D.measure_candidates(G, cands, ws, ann, AcceptingDetector())
    assert list(table.direction) == ["paper/all", "random/all"]
    assert set(D.SELECTION_COLUMNS) <= set(table.columns) and (table.n_images == 24).all()
    assert (table.detector_kept_at_30 == 1.0).all()  # the fake detector accepts everything
    paper = table.set_index("direction").loc["paper/all"]
    assert 0.5 < paper.annotator_deg_per_unit < 1.5  # calibrated in annotator degrees
    assert np.isclose(paper.w_shift_at_30, abs(cands["paper/all"].scale) * 30)
    stop, turn = D.choose_layer_split(G, dirs["paper/all"], ann, ws, keep=0.9)
    assert set(turn) == set(range(1, G.num_ws + 1)) and 1 <= stop <= G.num_ws
    ratio = {s: t / turn[G.num_ws] for s, t in turn.items()}
    inside = [s for s in turn if 0.9 <= ratio[s] <= 1 / 0.9]
    assert inside and stop == min(inside)  # the all-row edit itself is always inside


def test_profile_settings_per_world():
    from dapper import directions as dd

    assert dd.profile_settings("quick") == dd.PROFILES["quick"]
    assert dd.profile_settings("full", "stanford_cars") == dd.PROFILES["full"]
    real = dd.profile_settings("quick", "stanford_cars")  # fewer, costlier generated images in real mode
    assert real["n_samples"] < dd.PROFILES["quick"]["n_samples"] and real == dd.REAL_QUICK_PROFILE
    assert set(real["methods"]) < set(dd.DIRECTION_METHODS) and dd.PROFILES["quick"]["methods"] is None
    assert real["n_selection"] < dd.PROFILES["quick"]["n_selection"]
    real["n_samples"] = 1  # a copy: the table stays as it is
    assert dd.REAL_QUICK_PROFILE["n_samples"] != 1
    with pytest.raises(ValueError, match="profile="):
        dd.profile_settings("medium")
