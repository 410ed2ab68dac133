"""dapper.augment: leakage guard, whitened perturbation, rotation bookkeeping, manifest, dataset files."""

import numpy as np
import pytest
import torch
from study_fakes import FakeDirection, FakeGenerator, FlipAnnotator, LatentWorld, fake_apply_direction

from dapper import augment as A
from dapper.data.images import to_uint8
from dapper.inversion.latents import w_statistics
from dapper.stylegan2 import synthesize
from dapper.utils import weights_hash


def _inputs(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = FakeGenerator().eval()
    ws = G.mapping(torch.randn(n, G.z_dim, generator=g))
    keys = [f"{i:016x}" for i in range(100, 100 + n)]
    labels = np.arange(n) % 2
    return G, ws, keys, labels


def _augment(G, ws, keys, labels, **kw):
    kw.setdefault("settings", A.AugmentSettings(k=3, strength=0.5))
    return A.augment_images(G, ws, keys, labels, direction=FakeDirection(), apply_direction=fake_apply_direction,
                            **kw)


def test_guard_raises_when_a_source_is_a_test_image():
    G, ws, keys, labels = _inputs()
    with pytest.raises(A.LeakageError, match="fold 3"):
        _augment(G, ws, keys, labels, fold=3, test_keys=["ffff", keys[2]], cache=False)
    A.check_no_leakage(keys, ["not-a-training-key"])  # disjoint: fine
    synthetic = _augment(G, ws, keys, labels, fold=0, test_keys=["ffff"], cache=False)
    with pytest.raises(A.LeakageError):
        synthetic.select(source_keys=keys[:2], test_keys=[keys[1]])
    assert len(synthetic.select(source_keys=keys[:2], test_keys=[keys[3]])) == 2 * 3 * 3


def test_perturbation_is_in_whitened_w_units():
    G = FakeGenerator()
    stats = w_statistics(G, n=20000, seed=1)
    mean, std = stats.mean, stats.std
    # mapping is z * w_scale + w_shift with z ~ N(0, 1): the spread per dimension is w_scale.
    assert torch.allclose(std, G.w_scale, rtol=0.03)
    assert torch.allclose(mean, G.w_shift, atol=0.05)
    ws = G.mapping(torch.randn(5000, G.z_dim))
    eps = torch.randn(5000, G.w_dim)
    out = A.perturb_ws(ws, std, 0.7, eps)
    whitened = (out - ws) / std
    assert torch.allclose(whitened.std((0,)), torch.full((G.num_ws, G.w_dim), 0.7), rtol=0.05)
    assert torch.allclose(whitened[:, 0], whitened[:, 2])  # one offset per image: a move in W
    only_first = A.perturb_ws(ws, std, 0.7, eps, layers=(0, 1))
    assert torch.equal(only_first[:, 1:], ws[:, 1:]) and not torch.equal(only_first[:, 0], ws[:, 0])


def test_rotation_uses_calibrated_coefficients_and_per_image_randomness():
    G, ws, keys, labels = _inputs(n=3)
    settings = A.AugmentSettings(k=4, coefficients=(-30.0, -20.0, 20.0, 30.0), units="degrees")
    lat, params = A.synthetic_latents(ws, keys, "rotate", settings, None, FakeDirection(degrees_per_unit=2.0),
                                      fake_apply_direction)
    assert lat.shape == (3, 4, G.num_ws, G.w_dim)
    for i in range(3):
        degrees = sorted(p["degrees"] for p in params[i])
        assert degrees == [-30.0, -20.0, 20.0, 30.0]  # k equals the set: every coefficient once
        for j, p in enumerate(params[i]):
            assert p["coefficient"] == pytest.approx(p["degrees"] / 2.0)
            shift = lat[i, j] - ws[i]
            assert torch.allclose(shift[:, 0], torch.full((G.num_ws,), p["coefficient"]))
            assert torch.allclose(shift[:, 1:], torch.zeros(G.num_ws, G.w_dim - 1))
    # An image's synthetic latents do not depend on which other images share the batch.
    alone, _ = A.synthetic_latents(ws[1:2], keys[1:2], "perturb+rotate", settings, torch.ones(G.w_dim),
                                   FakeDirection(), fake_apply_direction)
    together, _ = A.synthetic_latents(ws, keys, "perturb+rotate", settings, torch.ones(G.w_dim), FakeDirection(),
                                      fake_apply_direction)
    assert torch.allclose(alone[0], together[1])


def test_manifest_records_provenance_and_cache_reuses_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    G, ws, keys, labels = _inputs()
    s1 = _augment(G, ws, keys, labels, fold=2, test_keys=["abc"])
    m = s1.manifest
    assert list(m.columns) == A.MANIFEST_COLUMNS
    assert len(s1) == len(keys) * len(A.METHODS) * 3 == len(m) == len(s1.images)
    assert s1.images.dtype == np.uint8 and s1.images.shape[1:] == (8, 8, 3)
    assert set(m["source_key"]) == set(keys) and set(m["fold"]) == {2}
    assert set(m["method"]) == set(A.METHODS)
    assert (m.groupby(["source_key", "method"]).size() == 3).all()
    assert set(m["generator_hash"]) == {weights_hash(G)}
    label_of = dict(zip(keys, labels))
    assert all(label_of[k] == lab for k, lab in zip(m["source_key"], s1.labels))
    assert (m.loc[m["method"] == "perturb", "strength"] == 0.5).all()
    assert (m.loc[m["method"] == "rotate", "strength"] == 0.0).all()
    assert (m.loc[m["method"] == "perturb", "coefficient"] == 0.0).all()
    assert (m.loc[m["method"] != "perturb", "coefficient"] != 0.0).all()
    assert m["direction_id"].nunique() == 1 and m["direction_id"].iloc[0]
    # Second call: every image comes from the cache, identical.
    s2 = _augment(G, ws[:2], keys[:2], labels[:2], methods=["perturb"], fold=2)
    assert np.array_equal(s2.images, s1.select(keys[:2], ["perturb"]).images)
    # Different generator weights: a different cache entry and hash.
    with torch.no_grad():
        G.out.bias.add_(0.5)
    s3 = _augment(G, ws[:1], keys[:1], labels[:1], methods=["perturb"])
    assert s3.manifest["generator_hash"].iloc[0] != m["generator_hash"].iloc[0]


def test_dataset_files_round_trip(tmp_path):
    G, ws, keys, labels = _inputs(n=2)
    syn = _augment(G, ws, keys, labels, methods=["perturb"], cache=False)
    out = A.write_dataset(tmp_path / "ds", syn, class_names=["a", "b"])
    back = A.read_dataset(out)
    assert np.array_equal(back.images, syn.images) and np.array_equal(back.labels, syn.labels)
    assert list(back.manifest["source_key"]) == list(syn.manifest["source_key"])
    assert len(list((out / "images").rglob("*.png"))) == len(syn)


def test_command_line_writes_a_dataset(tmp_path, monkeypatch):
    import dapper.stylegan2 as sg

    G, ws, keys, labels = _inputs(n=3)
    monkeypatch.setattr(sg, "load_generator", lambda path, device="cpu", cpu_bf16=None: G, raising=False)
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    np.savez(tmp_path / "p.npz", ws=ws.numpy(), keys=np.array(keys), labels=labels, test_keys=np.array(["zz"]))
    from dapper.cli import main

    assert main(["augment", "--network", "x", "--projections", str(tmp_path / "p.npz"), "--out", str(tmp_path / "o"),
                 "--methods", "perturb", "--k", "2", "--no-png"]) == 0
    back = A.read_dataset(tmp_path / "o")
    assert len(back) == 6 and set(back.manifest["method"]) == {"perturb"}
    np.savez(tmp_path / "bad.npz", ws=ws.numpy(), keys=np.array(keys), test_keys=np.array([keys[0]]))
    with pytest.raises(A.LeakageError):
        main(["augment", "--network", "x", "--projections", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "o2"),
              "--methods", "perturb"])


def test_residual_composition_adds_the_edit_to_the_real_image():
    G, ws, keys, labels = _inputs(n=3)
    recon = to_uint8(synthesize(G, ws))
    both = _augment(G, ws, keys, labels, methods=["perturb"], cache=False, compose=["generated", "residual"],
                    images=recon)
    gen = both.select(compose="generated")
    res = both.select(compose="residual")
    assert len(gen) == len(res) == 3 * 3
    # When the real image is the reconstruction itself, the residual is the generated image
    # (up to the uint8 rounding of the difference).
    assert np.abs(gen.images.astype(int) - res.images.astype(int)).max() <= 1
    real = np.full_like(recon, 100)
    res2 = _augment(G, ws, keys, labels, methods=["perturb"], cache=False, compose="residual", images=real)
    change = gen.images.astype(int) - np.repeat(recon, 3, axis=0).astype(int)
    assert np.array_equal(res2.images, np.clip(100 + change, 0, 255).astype(np.uint8))
    assert set(res2.manifest["compose"]) == {"residual"}
    with pytest.raises(ValueError, match="real images"):
        _augment(G, ws, keys, labels, methods=["perturb"], cache=False, compose="residual")




def test_pose_check_keeps_halves_or_drops_each_rotation():
    G = LatentWorld()
    base = torch.zeros(4, 2, 4)
    edited = base.clone()
    edited[0, :, 0] = 10.0  # turns 10 as meant: kept
    edited[1, :, 0] = 30.0  # flips at 30; its half turns 15 as meant: halved
    edited[2, :, 1] = 30.0  # moves a coordinate the annotator does not read: no turn, dropped
    images, factor = A.pose_checked_edits(G, base, edited, [10.0, 30.0, 30.0, 0.0], FlipAnnotator())
    assert factor.tolist() == [1.0, 0.5, 0.0, 1.0]  # an edit of 0 degrees is nothing to check
    assert torch.allclose(images[:, 0, 0, 0] * 100, torch.tensor([10.0, 15.0, 0.0, 0.0]), atol=1e-3)
    # The tolerance: 30 degrees meant, 20 read, misses by 10 (within half of 30) and is kept;
    # a reading of no turn is never kept, however small the turn meant.
    edited[1, :, 0] = 20.0
    assert A.pose_checked_edits(G, base, edited, [10.0, 30.0, 30.0, 0.0], FlipAnnotator(),
                                tolerance=0.5)[1][1] == 1.0
    assert A.pose_checked_edits(G, base, edited, [10.0, 30.0, 30.0, 0.0], FlipAnnotator(),
                                tolerance=0.2, min_deg=0.0)[1][1] == 0.0  # 6 deg allowed: 10 and 5 miss
    small = base[:1].clone()
    small[:, :, 0] = 0.5  # meant to turn 4 degrees, turns 0.5: inside the 5 degree floor, but nearer no turn
    assert A.pose_checked_edits(G, base[:1], small, [4.0], FlipAnnotator())[1].tolist() == [0.0]
    small[:, :, 0] = 3.0  # turns 3 of the 4: kept
    assert A.pose_checked_edits(G, base[:1], small, [4.0], FlipAnnotator())[1].tolist() == [1.0]
    with pytest.raises(ValueError, match="calibrated in degrees"):
        A.pose_checked_edits(G, base[:1], small, [float("nan")], FlipAnnotator())


class _StillAnnotator:
    config = {"sha256": "still"}

    def predict(self, images):
        return np.zeros(len(images))


def test_augment_images_with_the_pose_check_records_what_it_did(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path))
    G, ws, keys, labels = _inputs(n=3)
    settings = A.AugmentSettings(k=2, strength=0.5, pose_check=True)
    with pytest.raises(ValueError, match="pose annotator"):
        _augment(G, ws, keys, labels, settings=settings)
    synthetic = _augment(G, ws, keys, labels, settings=settings, pose_annotator=_StillAnnotator())
    m = synthetic.manifest
    rot = m[m.method.str.contains("rotate")]
    # An annotator that never sees a turn rejects every rotation: the unrotated latents are kept, and said so.
    assert (rot.pose_factor == 0).all() and (rot.degrees == 0).all() and (rot.coefficient == 0).all()
    assert m[m.method == "perturb"].pose_factor.isna().all()
    recon = to_uint8(synthesize(G, ws))
    rotate = synthetic.select(methods=["rotate"])
    assert np.array_equal(rotate.images, np.repeat(recon, 2, axis=0))
    # Unchecked, the same settings rotate; the check and its annotator are part of the cache key.
    plain = _augment(G, ws, keys, labels, settings=A.AugmentSettings(k=2, strength=0.5))
    assert (plain.manifest.query("method == 'rotate'").degrees.abs() > 0).all()
    assert plain.manifest.pose_factor.isna().all()


class _NamedFlipAnnotator(FlipAnnotator):
    config = {"sha256": "flip"}


def test_augment_images_keeps_halves_and_caches_per_annotator(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path))
    G = LatentWorld()
    ws = torch.zeros(2, G.num_ws, G.w_dim)
    keys, labels = ["0a", "0b"], np.array([0, 1])
    settings = A.AugmentSettings(k=4, coefficients=(-30.0, -20.0, 20.0, 30.0), pose_check=True)
    kw = dict(methods=["rotate"], settings=settings, direction=FakeDirection(w_dim=G.w_dim, degrees_per_unit=1.0),
              apply_direction=fake_apply_direction, w_std=torch.ones(G.w_dim))
    flip = A.augment_images(G, ws, keys, labels, pose_annotator=_NamedFlipAnnotator(), **kw)
    m = flip.manifest.set_index("synthetic_key")
    # +-20 turns as meant; +-30 flips and its half, +-15, is kept
    for key, row in m.iterrows():
        assert row.pose_factor == (1.0 if abs(row.coefficient) == 20 else 0.5), (key, row.coefficient)
        assert abs(row.degrees) in (20.0, 15.0) and row.degrees == row.coefficient
    made = np.sort((flip.images[:, 0, 0, 0] / 127.5 - 1) * 100)  # uint8 images: within 0.4 degrees
    assert np.allclose(made, sorted([-20.0, -15.0, 15.0, 20.0] * 2), atol=0.5)
    # Another annotator is another cache entry, never the first one's images.
    still = A.augment_images(G, ws, keys, labels, pose_annotator=_StillAnnotator(), **kw)
    assert (still.manifest.pose_factor == 0).all()
