"""Each image asked for its degrees through its own response (``AugmentSettings.response == "image"``):
how far an edit turns depends on the view it starts from, so one median response misses some images."""

import hashlib
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from study_fakes import LatentWorld

from dapper import augment as A
from dapper import directions as D


class _TwoCoordinateWorld(LatentWorld):
    """:class:`LatentWorld` whose image carries the first two coordinates of its mean W row (over 100)."""

    def synthesis(self, ws, noise_mode="const"):
        m = ws.mean(1)[:, :2] / 100  # [N, 2]
        out = torch.zeros(len(ws), 3, 4, 4)
        out[:, 0] = m[:, :1, None]
        out[:, 1] = m[:, 1:2, None]
        return out


def _turn(w0, w1):
    """The toy's turn: ``w1`` sets how steep a vehicle turns (1 degree per unit at 0, 3 at 20); a
    vehicle with ``w1`` of 30 or more reads as flipped front to back once it turns past 25 degrees."""
    w0, w1 = np.asarray(w0, np.float64), np.asarray(w1, np.float64)
    turn = (1.0 + w1 / 10.0) * w0
    return np.where((w1 >= 30) & (np.abs(turn) > 25), turn + 180, turn)


class _ViewAnnotator:
    """Reads the toy's yaw: 40 + turn; a vehicle with ``w1 == -10`` never turns (reads 40)."""

    def predict(self, images):
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
        x = x.permute(0, 3, 1, 2).double() / 127.5 - 1 if x.dtype == torch.uint8 else x.double()
        w0, w1 = x[:, 0, 0, 0].numpy() * 100, x[:, 1, 0, 0].numpy() * 100
        return (40 + _turn(w0, w1)) % 360


def _world(w1s):
    """The toy, its annotator, latents at 0 with the given steepness and the direction moving w0 with a
    measured response (the median over the latents)."""
    G, ann = _TwoCoordinateWorld(), _ViewAnnotator()
    ws = torch.zeros(len(w1s), G.num_ws, G.w_dim)
    ws[:, :, 1] = torch.tensor(w1s, dtype=torch.float32)[:, None]
    d = D.Direction(np.eye(4)[0], (0, G.num_ws), "planted", scale=1.0, units="degrees", degrees_per_unit=1.0)
    return G, ann, ws, D.with_response(G, d, ann, ws, reach=2.0, steps=21)


def _made(ws, direction, coefficient):
    w = D.apply_direction(ws, direction, [coefficient])[0, 0]
    return float(_turn(float(w[:, 0].mean()), float(w[:, 1].mean())))


def test_each_image_is_asked_through_its_own_response():
    G, ann, ws, d = _world([0.0, 10.0, 20.0])
    own, n_kept = D.own_responses(G, d, ann, ws)
    assert n_kept == 0 and len(own) == 3
    assert all(o.metadata["response"]["by"] == "annotator, own image" for o in own)
    assert np.allclose(own[0].vector, d.vector) and own[0].layers == d.layers
    for want in (-30.0, -10.0, 20.0):
        shared = [abs(_made(ws[i:i + 1], d, float(d.coefficients_for([want])[0])) - want) for i in range(3)]
        mine = [abs(_made(ws[i:i + 1], o, float(o.coefficients_for([want])[0])) - want) for i, o in enumerate(own)]
        assert max(mine) < 1.0, (want, mine)
        assert max(shared) >= 0.45 * abs(want), (want, shared)  # the median response misses the gentle and the steep


def test_readings_past_a_flip_are_left_out_and_a_vehicle_that_never_turns_keeps_the_direction():
    G, ann, ws, d = _world([0.0, 30.0, -10.0])
    own, n_kept = D.own_responses(G, d, ann, ws)
    assert n_kept == 1 and own[2] is d  # no turn either way: the direction's response
    c, deg = own[1].response()
    assert deg.max() <= 25.0 + 1e-9 and deg.min() >= -25.0 - 1e-9  # nothing past the flip
    assert abs(_made(ws[1:2], own[1], float(own[1].coefficients_for([20.0])[0])) - 20.0) < 1.0
    assert len(c) < len(d.response()[0])
    # wrapped readings: +170 -> -170 is a flip of the reading, so is -20 -> +160
    keep = D.calibrate._until_flip(np.array([160.0, -20.0, -10.0, 0.0, 10.0, 170.0, -170.0]), 3)
    assert keep.tolist() == [False, True, True, True, True, False, False]
    with pytest.raises(ValueError, match="measured response"):
        D.own_responses(G, d.replace(metadata={}), ann, ws)


def test_apply_direction_takes_coefficients_per_latent():
    d = D.Direction(np.eye(4)[0], (0, 1), "planted", scale=1.0)
    ws = torch.zeros(2, 2, 4)
    out = D.apply_direction(ws, d, np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert out.shape == (2, 2, 2, 4)
    assert out[:, :, 0, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]] and out[:, :, 1].abs().sum() == 0
    assert torch.equal(D.apply_direction(ws, d, [1.0, 2.0]), D.apply_direction(ws, d, np.array([[1.0, 2.0]] * 2)))
    with pytest.raises(ValueError, match="per-latent"):
        D.apply_direction(ws, d, np.ones((3, 2)))


def test_the_augmentation_asks_each_image_through_its_own_response(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path))
    G, ann, ws, d = _world([0.0, 20.0])
    keys = ["gentle", "steep"]
    settings = A.AugmentSettings(k=4, coefficients=(-20.0, -10.0, 10.0, 20.0), response="image")
    with pytest.raises(ValueError, match="pose_annotator"):
        A.augment_images(G, ws, keys, [0, 1], methods=["rotate"], settings=settings, direction=d, cache=False)
    out = A.augment_images(G, ws, keys, [0, 1], methods=["rotate"], settings=settings, direction=d,
                           pose_annotator=ann, cache=False)
    m = out.manifest
    assert sorted(m.degrees.round(6).unique()) == [-20.0, -10.0, 10.0, 20.0]
    read = ann.predict(out.images) - 40
    assert np.allclose(read, m.degrees.to_numpy(), atol=1.0)  # every image turned as asked ...
    by_image = m.assign(per_degree=m.coefficient / m.degrees).groupby("source_key").per_degree.mean()
    assert by_image["gentle"] > 2.5 * by_image["steep"]  # ... by coefficients of its own
    # the direction's one response misses, and the two settings never share a cache
    plain = A.augment_images(G, ws, keys, [0, 1], methods=["rotate"], settings=A.AugmentSettings(
        k=4, coefficients=(-20.0, -10.0, 10.0, 20.0)), direction=d, cache=False)
    assert np.abs(ann.predict(plain.images) - 40 - plain.manifest.degrees.to_numpy()).max() > 5.0
    assert settings.signature() != A.AugmentSettings(k=4, coefficients=settings.coefficients).signature()
    # the default keeps the signature it had before there was a choice (earlier caches stay valid)
    before = {k: v for k, v in asdict(A.AugmentSettings()).items() if k != "response"}
    assert A.AugmentSettings().signature() == hashlib.sha1(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    # pose-checked and cached: the same images from the cache
    checked = A.AugmentSettings(k=4, coefficients=(-20.0, 20.0), response="image", pose_check=True)
    first = A.augment_images(G, ws, keys, [0, 1], methods=["rotate"], settings=checked, direction=d, pose_annotator=ann,
                               w_std=torch.ones(4))
    again = A.augment_images(G, ws, keys, [0, 1], methods=["rotate"], settings=checked, direction=d, pose_annotator=ann,
                               w_std=torch.ones(4))
    assert (first.manifest.pose_factor == 1.0).all()
    assert np.array_equal(first.images, again.images)


def test_the_settings_describe_themselves():
    text = A.describe_settings(A.AugmentSettings(k=3, pose_check=True, response="image"), (0, 3))
    assert text.startswith("3 per real image and method; perturbation of strength 0.5")
    assert "-30, -20, +20, +30 annotator degrees along the pose direction on rows 0-3" in text
    assert "each image asked through its own response" in text and "pose-checked" in text
    plain = A.describe_settings(A.AugmentSettings(layers=(0, 4), units="coefficient"))
    assert "W+ rows 0-4" in plain and "direction units" in plain
    assert "response" not in plain and "pose-checked" not in plain


def test_figure5_asks_each_view_through_its_own_response():
    from dapper.study import direction_eval as DE

    G, ann, ws, d = _world([0.0, 20.0])
    own, _ = D.own_responses(G, d, ann, ws)
    images, table = DE.rotation_table(G, ws, {"one": d, "own": own}, (-20, 0, 20), yaw_reader=ann.predict)
    assert images.shape[:3] == (2, 2, 3)
    mine = table[table.panel == "own"]
    assert np.allclose(mine.yaw - 40, mine.coefficient, atol=1.0)  # every view turned as asked
    shared = table[table.panel == "one"]
    assert np.abs(shared.yaw - 40 - shared.coefficient).max() > 5.0
    per_view = mine[mine.coefficient == 20].direction_coefficient.to_numpy()
    assert per_view[0] > 2.5 * per_view[1]  # the gentle view needed the larger edit
    with pytest.raises(ValueError, match="directions for 2 rows"):
        DE.rotation_table(G, ws, {"own": own[:1]}, (-20, 0, 20), yaw_reader=ann.predict)


def test_an_images_synthetic_set_does_not_depend_on_its_batch_and_the_manifest_says_how_it_was_asked():
    G, ann, ws, d = _world([0.0, 20.0, 30.0, -10.0])
    keys = ["gentle", "steep", "flips", "still"]
    settings = A.AugmentSettings(k=4, coefficients=(-20.0, -10.0, 10.0, 20.0), response="image")
    kw = dict(methods=["rotate"], settings=settings, direction=d, pose_annotator=ann, cache=False)
    together = A.augment_images(G, ws, keys, [0, 1, 2, 3], batch_size=4, **kw)  # chunks of one image
    alone = A.augment_images(G, ws[1:2], keys[1:2], [1], **kw)
    mine = together.manifest.source_key == "steep"
    assert np.array_equal(together.images[mine.to_numpy()], alone.images)
    cols = ["coefficient", "degrees", "asked_degrees", "response"]
    assert together.manifest[mine][cols].reset_index(drop=True).equals(alone.manifest[cols])
    m = together.manifest.set_index("source_key")
    assert (m.loc[["gentle", "steep", "flips"], "response"] == "own").all()
    assert (m.loc["still", "response"] == "direction").all()  # never turned: the direction's response
    assert sorted(m.asked_degrees.unique()) == [-20.0, -10.0, 10.0, 20.0]
    plain = A.augment_images(G, ws, keys, [0, 1, 2, 3], **dict(kw, settings=A.AugmentSettings(
        k=4, coefficients=(-20.0, 20.0))))
    assert (plain.manifest.response == "direction").all()
    raw = A.AugmentSettings(units="coefficient", response="image")
    assert raw.signature() == A.AugmentSettings(units="coefficient").signature()  # no degrees: no own response


def test_the_identity_table_says_how_many_images_had_their_own_response(monkeypatch):
    from dapper.judges import oracles
    from dapper.study import augment_eval as AE

    G, ann, ws, d = _world([0.0, 20.0, -10.0, 10.0])
    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None, batch_size=256: (
        np.zeros(len(images), np.int64), None))
    monkeypatch.setattr(oracles, "predict_yaw", lambda images, model=None, batch_size=256: ann.predict(images))
    t = AE.augment_identity(G, {"W": ws}, np.zeros(4, np.int64), {"d": (d, (0, G.num_ws))}, torch.ones(4),
                            strengths=(0.5,), coefficients=(-20, 20), identity_oracle=object(), pose_oracle=object(),
                            response_annotator=ann)
    own = t[t.variant == "d, own response"]
    assert np.allclose(own.own_response_share, 0.75)  # the one that never turns keeps the direction's
    assert t[t.variant == "d"].own_response_share.isna().all()
