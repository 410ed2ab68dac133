"""dapper.study.augment_eval on a tiny generator, with stand-in oracles planted in the module."""

import numpy as np
import pandas as pd
import pytest
import torch

from dapper import directions as D
from dapper.judges import oracles
from dapper.study import augment_eval as AE


class _Annotator:
    def predict(self, images):
        x = torch.as_tensor(images).float()
        return ((40 + 200 * (x[:, 0, :, :8].mean((1, 2)) - x[:, 0, :, 8:].mean((1, 2)))) % 360).numpy()


class _Detector:
    threshold = 0.5

    def predict(self, images):
        return np.ones(len(images)), np.tile([2.0, 3.0, 14.0, 13.0], (len(images), 1))


@pytest.fixture
def planted(monkeypatch):
    # identity: which of two colour channels is brighter; pose: the annotator's reading
    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None, batch_size=256: (
        (torch.as_tensor(images).float()[:, 1].mean((1, 2)) > torch.as_tensor(images).float()[:, 2].mean((1, 2)))
        .long().numpy(), None))
    monkeypatch.setattr(oracles, "predict_yaw", lambda images, model=None, batch_size=256: _Annotator().predict(images))


def test_augment_identity_table(tiny_generator, planted):
    G = tiny_generator()
    ann = _Annotator()
    s = D.annotate_samples(G, 300, _Detector(), ann, seed=0, progress=False)
    ref = D.circular_mean_deg(s.yaw)
    dirs = D.fit_directions(G, s, ann, reference_yaw=ref, n_calibration=8, max_shift_factor=2.0, progress=False)
    ws = D.calibration_latents(s, 6, ref, num_ws=G.num_ws)
    labels = oracles.predict_identity(G.synthesis(ws, noise_mode="const"))[0]
    assert dirs["paper/all"].response() is None  # the candidates are compared as straight moves
    paper = D.with_response(G, dirs["paper/all"], ann, ws, max_shift=2.0 * D.w_spread(s))  # as notebook 02 does
    rows02 = D.calibrate_direction(G, paper.with_layers(0, 2), ann, ws, max_shift=2.0 * D.w_spread(s))
    variants = {"all rows": (paper, (0, G.num_ws)), "rows 0-2": (rows02, (0, 2))}
    table = AE.augment_identity(G, {"W": ws, "W+": ws + 0.01 * torch.randn_like(ws)}, labels, variants,
                                torch.ones(G.w_dim), strengths=(0.0, 0.5), coefficients=(-20, -10, 10, 20),
                                identity_oracle=object(), pose_oracle=object())
    assert len(table) == 2 * 2 * (2 + 4)
    still = table[(table.edit == "perturb") & (table.amount == 0.0)]
    assert (still.identity_kept_vs_projection == 1.0).all() and (still.oracle_yaw_change_median == 0).all()
    assert (still.psnr_to_projection > 60).all()
    w_all = table[(table.space == "W") & (table.variant == "all rows")]
    assert (w_all[w_all.edit == "perturb"].study_setting.tolist() == [False, True])
    turn = w_all[w_all.edit == "rotate"].set_index("amount")
    assert turn.loc[20.0, "oracle_yaw_change_median"] > 0 > turn.loc[-20.0, "oracle_yaw_change_median"]
    assert np.isclose(turn.loc[20.0, "oracle_deg_per_unit"], turn.loc[20.0, "oracle_yaw_change_median"] / 20)
    # the degrees are asked through the calibration's measured response: each row's coefficient makes its
    # degrees by that response (or the furthest it reaches)
    c, d = paper.response()
    assert np.allclose(paper.degrees_for(turn.coefficient), np.clip(turn.index.to_numpy(), d[0], d[-1]), atol=1e-6)
    assert (np.sign(turn.coefficient) == np.sign(turn.index)).all()
    assert 0.3 < turn.loc[20.0, "oracle_deg_per_unit"] < 3  # oracle = annotator here: roughly calibrated
    assert (w_all.projection_identity_kept == 1.0).all()  # labels are what the oracle says of the projection
    lines = AE.goal_lines(table)
    assert len(lines) == 4 and all(("NOT met" in line) or ("met" in line) for line in lines)


class _HalfBlindAnnotator(_Annotator):
    """The method's annotator reading every other image of each call as facing 40 degrees: those
    rotations look like no turn at the full edit's check and are never kept whole."""

    def predict(self, images):
        yaw = super().predict(images)
        yaw[1::2] = 40.0
        return yaw


def _paper_direction(G):
    """The annotator, the paper's direction fitted and calibrated on 300 samples, six latents near its view."""
    ann = _Annotator()
    s = D.annotate_samples(G, 300, _Detector(), ann, seed=0, progress=False)
    ref = D.circular_mean_deg(s.yaw)
    paper = D.fit_directions(G, s, ann, reference_yaw=ref, n_calibration=8, max_shift_factor=2.0,
                             methods=("paper",), progress=False)["paper/all"]
    return ann, paper, D.calibration_latents(s, 6, ref, num_ws=G.num_ws)


def test_pose_checked_rows(tiny_generator, planted):
    G = tiny_generator()
    ann, paper, ws = _paper_direction(G)
    labels = oracles.predict_identity(G.synthesis(ws, noise_mode="const"))[0]

    def table(annotator):
        return AE.augment_identity(G, {"W": ws}, labels, {"all rows": (paper, (0, G.num_ws))}, torch.ones(G.w_dim),
                                   strengths=(0.5,), coefficients=(-20, -10, 10, 20), identity_oracle=object(),
                                   pose_oracle=object(), pose_annotator=annotator)

    sighted, half = table(ann), table(_HalfBlindAnnotator())
    assert half.variant.tolist() == ["all rows"] * 5 + ["all rows, pose-checked"] * 4
    plain = half[(half.variant == "all rows") & (half.edit == "rotate")].set_index("amount")
    checked = half[half.variant == "all rows, pose-checked"].set_index("amount")
    seen = sighted[sighted.variant == "all rows, pose-checked"].set_index("amount")
    assert plain.pose_kept.isna().all()  # the unchecked rows have no such value
    assert seen.pose_kept.max() > 0  # a sighted annotator lets some edits through whole ...
    assert (checked.pose_kept <= seen.pose_kept).all()  # ... the half-blind one never more
    assert (checked.pose_kept <= 0.5).all()
    # dropped edits are the projection itself: closer to it than the unchecked edits
    assert (checked.psnr_to_projection >= plain.psnr_to_projection - 1e-6).all()


def test_one_generator_per_class(tiny_generator, planted):
    G = tiny_generator()
    ann, paper, ws = _paper_direction(G)
    labels = np.array([0, 1, 0, 1, 1, 0])
    kw = dict(strengths=(0.5,), coefficients=(-20, 20), identity_oracle=object(), pose_oracle=object())
    variants = {"all rows": (paper, (0, G.num_ws))}
    one = AE.augment_identity(G, {"W": ws}, labels, variants, torch.ones(G.w_dim), **kw)
    same = AE.augment_identity({0: G, 1: G}, {"W": ws}, labels, variants, torch.ones(G.w_dim), **kw)
    # each image drawn by its class's generator, here the same one (batches differ: float noise only)
    pd.testing.assert_frame_equal(one, same, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="no generator for the classes"):
        AE.augment_identity({0: G}, {"W": ws}, labels, variants, torch.ones(G.w_dim), **kw)
    with pytest.raises(ValueError, match="one generator"):
        AE.augment_identity({0: G, 1: G}, {"W": ws}, labels, variants, torch.ones(G.w_dim), pose_annotator=ann, **kw)
    # tuned on each class's views: a generator per class, each closer to its own images
    images = ((G.synthesis(ws.flip(0), noise_mode="const") + 1) * 127.5).round().clamp(0, 255).byte()
    images = images.permute(0, 2, 3, 1).numpy()
    from dapper.inversion.pivotal import PivotalSettings

    tuned, infos = AE.pivotal_generators(G, images, ws, labels, PivotalSettings(steps=20, lr=3e-3,
                                                                                 perceptual_weight=0.0))
    assert set(tuned) == {0, 1} and [i["label"] for i in infos] == [0, 1] and [i["n_images"] for i in infos] == [3, 3]
    assert all(i["loss_after"] < i["loss_before"] for i in infos)
    table = AE.augment_identity(tuned, {"W": ws}, labels, variants, torch.ones(G.w_dim), **kw)
    assert len(table) == len(one)


def test_own_response_rows(tiny_generator, planted):
    G = tiny_generator()
    ann, paper, ws = _paper_direction(G)
    paper = D.with_response(G, paper, ann, ws, steps=9)
    labels = oracles.predict_identity(G.synthesis(ws, noise_mode="const"))[0]
    kw = dict(strengths=(0.5,), coefficients=(-20, 20), identity_oracle=object(), pose_oracle=object())
    variants = {"all rows": (paper, (0, G.num_ws))}
    t = AE.augment_identity(G, {"W": ws}, labels, variants, torch.ones(G.w_dim), pose_annotator=ann,
                            response_annotator=ann, **kw)
    assert t.variant.tolist() == (["all rows"] * 3 + ["all rows, pose-checked"] * 2 + ["all rows, own response"] * 2
                                  + ["all rows, own response, pose-checked"] * 2)
    own = t[t.variant == "all rows, own response"].set_index("amount")
    shared = t[t.variant == "all rows"].query("edit == 'rotate'").set_index("amount")
    # the planted oracle reads what the annotator reads: each image's own response lands at least as near
    miss = lambda rows: (rows.oracle_yaw_change_median - rows.index).abs()  # noqa: E731
    assert (miss(own) <= miss(shared) + 1.0).all() and (miss(own) < 4.0).all()
    assert own.flip_share.notna().all() and (own.coefficient != 0).all()
    with pytest.raises(ValueError, match="one generator"):
        AE.augment_identity({0: G, 1: G}, {"W": ws}, np.array([0, 1] * 3), variants, torch.ones(G.w_dim),
                            response_annotator=ann, **kw)


# ---------------------------------------------------------------------------------------------
# Notebook 03's identity study and gallery (dapper.study.augment_gallery)


def test_identity_study_wires_the_notebooks_variants_and_writes_its_files(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from study_fakes import FakeGenerator

    from dapper.study.config import study_config

    G, config = FakeGenerator(8), study_config("quick")
    paper, split = SimpleNamespace(layers=(0, 3)), SimpleNamespace(layers=(0, 2))
    calls = []
    monkeypatch.setattr(AE, "heldout_targets", lambda G, dataset, n, projection_settings, executor: SimpleNamespace(
        ws=torch.zeros(2, 3, 8) + (projection_settings.space == "w+"), images=np.zeros((2, 8, 8, 3), np.uint8),
        labels=np.array([0, 1])))
    monkeypatch.setattr(AE, "load_or_fit_pose_direction", lambda G, profile, method="chosen", **kw: (
        split if method == "chosen-split" else paper))
    monkeypatch.setattr(AE, "w_statistics", lambda G, n, seed: SimpleNamespace(std=torch.ones(8)))
    monkeypatch.setattr(AE, "checking_annotator", lambda annotator: "annotator")

    def identity(G, spaces, labels, variants, w_std, **kw):
        calls.append((G, sorted(spaces), dict(variants), kw))
        return pd.DataFrame({"space": list(spaces), "variant": list(variants)[0], "edit": "perturb", "amount": 0.5,
                             "study_setting": True, "identity_kept": 1.0})

    monkeypatch.setattr(AE, "augment_identity", identity)
    infos = [{"label": 0, "n_images": 1, "cpu_seconds": 2.0, "loss_before": 0.3, "loss_after": 0.1}] * 2
    monkeypatch.setattr(AE, "pivotal_generators", lambda G, images, ws, labels, settings, progress: (
        {0: G, 1: G}, infos) if settings.steps == 20 else pytest.fail("quick tunes 20 steps"))
    study = AE.identity_study(G, config, instruments=(None, None), progress=False)
    (_, spaces, variants, kw), (tuned, tuned_spaces, tuned_variants, _) = calls
    assert spaces == ["W", "W+"] and tuned_spaces == ["W"] and set(tuned) == {0, 1}
    assert variants == {"all rows (paper)": (paper, (0, G.num_ws)), "rows 0-2 (method)": (split, (0, 2))}
    assert list(tuned_variants) == ["all rows (paper), pivotal-tuned", "rows 0-2 (method), pivotal-tuned"]
    assert kw["pose_annotator"] == "annotator" and kw["study_strength"] == config.augment.strength
    table = study.table
    assert list(table.columns[:3]) == ["generator", "generator_hash", "kimg"] and len(table) == 3
    assert table.pivotal_steps.tolist()[-1] == 20 and table.pivotal_cpu_seconds_per_class.tolist()[-1] == 2.0
    assert study.pivotal_summary() == ("pivotal tuning: 20 steps on each class's 1 views, 2 CPU-seconds per class; "
                                       "loss 0.300 -> 0.100")
    assert AE.identity_study(G, config, instruments=(None, None), pivotal_steps=0).pivotal_summary() is None
    text = AE.write_identity_outputs(table, folder=tmp_path)
    assert (tmp_path / "augment_identity.md").read_text() == text + "\n"
    assert list(pd.read_csv(tmp_path / "augment_identity.csv").columns) == list(table.columns)
    with pytest.raises(ValueError, match="toycars"):
        AE.identity_study(G, study_config("quick", "stanford_cars"))


def _gallery_set(n=2, k=2):
    """k images per method per source; each image's pixels say (source, method, position)."""
    from dapper.augment import METHODS, SyntheticSet

    rows, images = [], []
    for i in range(n):
        for m, method in enumerate(METHODS):
            for j in range(k):
                degrees = (20.0 - 40.0 * j) if method == "rotate" else (10.0 * (i + 1) * (1 - 2 * j))
                rows.append({"source_key": f"s{i}", "method": method, "degrees": degrees, "label": i})
                images.append(np.full((8, 8, 3), 100 * i + 10 * m + j, np.uint8))
    manifest = pd.DataFrame(rows)
    return SyntheticSet(np.stack(images), manifest.label.to_numpy(), manifest)


def test_gallery_groups_order_rotations_by_degrees():
    from dapper.study import augment_gallery as AG
    from dapper.study.config import study_config

    config = study_config("quick")  # k = 2
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    recon = AG.reconstruction_images(torch.tensor([[[[-1.5, 0.0], [0.5, 1.0]]] * 3, [[[1.0, -1.0], [0.0, 2.0]]] * 3]))
    assert recon.dtype == np.uint8 and recon[0, :, :, 0].tolist() == [[0, 128], [191, 255]]
    groups, notes = AG.gallery_groups(config, images, recon, _gallery_set())
    assert list(groups) == ["reconstruction", "perturb", "rotate", "perturb+rotate", "affine (baseline)"]
    assert groups["reconstruction"].shape == (2, 1, 2, 2, 3)
    assert groups["perturb"][:, :, 0, 0, 0].tolist() == [[0, 1], [100, 101]]
    assert groups["rotate"][:, :, 0, 0, 0].tolist() == [[11, 10], [111, 110]]  # -20 deg first
    assert notes == {"rotate": ["-20 deg", "+20 deg"]}  # perturb+rotate's degrees differ by row: no notes
    affine = groups["affine (baseline)"]
    assert affine.shape[:2] == (2, 2) and affine.shape[-1] == 3 and affine.dtype == np.uint8
    assert np.array_equal(AG.gallery_groups(config, images, recon, _gallery_set())[0]["affine (baseline)"], affine)


def test_gallery_oracles_add_their_columns(planted, monkeypatch):
    from dapper.study import augment_gallery as AG

    synthetic = _gallery_set()
    recon = np.zeros((2, 8, 8, 3), np.uint8)
    assert AG.gallery_oracles(synthetic, recon, ["s0", "s1"], [0, 1], with_oracles=False).rows.equals(
        synthetic.manifest)
    monkeypatch.setattr(oracles, "load_identity_oracle", lambda: object())
    monkeypatch.setattr(oracles, "load_pose_oracle", lambda: object())
    # the yaw a uint8 image's mean pixel value, plus 50 degrees for the second source's reconstruction
    monkeypatch.setattr(oracles, "predict_yaw", lambda images, model=None, batch_size=256: (
        np.asarray(images, np.float64).mean((1, 2, 3)) + (50.0 * np.arange(len(images)) if len(images) == 2 else 0)))
    found = AG.gallery_oracles(synthetic, recon, ["s0", "s1"], [0, 1])
    assert {"oracle_class_kept", "oracle_yaw_change"} <= set(found.rows.columns)
    made = synthetic.images[:, 0, 0, 0].astype(float) - np.where(synthetic.manifest.source_key == "s1", 50, 0)
    assert np.allclose(found.rows.oracle_yaw_change, (made + 180) % 360 - 180)
    assert list(found.table.index) == ["perturb", "perturb+rotate", "rotate"]
    assert found.lines == [f"identity oracle on the reconstructions: {found.reconstruction_kept:.0%} of the class kept"]

    def missing():
        raise FileNotFoundError("no pose oracle here")

    monkeypatch.setattr(oracles, "load_pose_oracle", missing)
    found = AG.gallery_oracles(synthetic, recon, ["s0", "s1"], [0, 1])
    assert "oracle_yaw_change" not in found.rows and found.lines[0] == "pose oracle not available: no pose oracle here"
