"""The annotator's measured response of a pose direction: calibration, its inverse, and its use by the
augmentation and the pose check (a turn that is steep near 0 and saturates is still asked for in degrees)."""

import numpy as np
import pytest
import torch
from study_fakes import FlipAnnotator, LatentWorld

from dapper import augment as A
from dapper import directions as D


def _turn(w0):
    """The toy's turn, like a real generator's: one way steep near 0 (3 degrees per W unit) and
    saturating at 60 degrees, the other way 1 degree per unit."""
    w0 = np.asarray(w0, dtype=np.float64)
    return np.where(w0 > 0, 60.0 * np.tanh(w0 / 20.0), w0)


class _SaturatingAnnotator:
    """Reads the toy's yaw 40 + turn(w0); with ``flips`` the first vehicles read 180 degrees off."""

    def __init__(self, flips: int = 0):
        self.flips = flips

    def predict(self, images):
        x = torch.as_tensor(images).double()
        w0 = x[:, 0, 0, 0].numpy() * 100
        yaw = 40 + _turn(w0)
        yaw[: self.flips] += 180
        return yaw % 360


def _planted(**metadata) -> D.Direction:
    return D.Direction(np.eye(4)[0], (0, 2), "planted", scale=0.5, units="degrees", degrees_per_unit=1.0,
                       metadata=metadata)


def test_response_is_inverted_and_kept_through_units(tmp_path):
    table = {"coefficients": [-40.0, -20.0, 0.0, 20.0, 40.0], "degrees": [-35.0, -25.0, 0.0, 30.0, 40.0]}
    d = _planted(response=table, paper_scale=0.25)
    assert np.allclose(d.coefficients_for([-25.0, 15.0, 30.0, 35.0]), [-20.0, 10.0, 20.0, 30.0])
    assert np.allclose(d.degrees_for([-20.0, 10.0, 30.0]), [-25.0, 15.0, 35.0])
    # beyond what it reached, a turn is asked for at the end of the sweep, and degrees_for says what that makes
    assert np.allclose(d.coefficients_for([-90.0, 90.0]), [-40.0, 40.0])
    assert np.allclose(d.degrees_for(d.coefficients_for([90.0])), [40.0])
    # the paper's units move the coefficients, not the turns; a move to other rows drops the response
    paper = d.in_paper_units()
    assert np.allclose(paper.coefficients_for([30.0]), [20.0 * 0.5 / 0.25])
    assert d.with_layers(0, 1).response() is None and "response" in d.metadata
    loaded = D.Direction.load(d.save(tmp_path / "d.json"))
    assert np.allclose(loaded.coefficients_for([15.0]), [10.0])
    # no response, or one that does not turn both ways: the linear calibration
    assert np.allclose(_planted().coefficients_for([30.0]), [30.0])
    flat = _planted(response={"coefficients": [-1.0, 0.0, 1.0], "degrees": [0.0, 0.0, 0.0]})
    assert flat.response() is None and np.allclose(flat.coefficients_for([30.0]), [30.0])
    with pytest.raises(ValueError, match="not calibrated"):
        D.Direction(np.ones(4), (0, 1), "raw").coefficients_for([10.0])


@pytest.mark.parametrize("flips", [0, 2])
def test_calibration_measures_the_response_and_asks_through_it(flips):
    G = LatentWorld()
    ann = _SaturatingAnnotator(flips)
    ws = torch.zeros(8, G.num_ws, G.w_dim)
    raw = D.Direction(np.eye(4)[0], (0, G.num_ws), "planted", scale=1.0, units="w")
    d = D.calibrate_direction(G, raw, ann, ws, max_shift=200.0)
    c, deg = d.response()
    assert np.allclose(c, -c[::-1]) and 0.0 in c and (np.diff(deg) >= 0).all()
    assert np.isclose(deg[c == 0], 0.0)
    assert deg[-1] > 30 and deg[0] < -30  # reaches beyond the study's +-30 either way
    for want in (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0):
        coef = d.coefficients_for([want])
        made = _turn(float(D.apply_direction(ws[:1], d, coef)[0, 0, 0, 0]))
        assert abs(made - want) < 1.5, (want, made)
    # the linear unit alone misses somewhere in +-30: the response is what makes the degrees
    misses = [abs(_turn(float(D.apply_direction(ws[:1], d, [w / d.degrees_per_unit])[0, 0, 0, 0])) - w)
              for w in (10.0, 30.0)]
    assert max(misses) > 3.0
    # leaving it out is possible, and a sweep without 0 is refused
    assert D.calibrate_direction(G, raw, ann, ws, max_shift=200.0, response_steps=0).response() is None
    with pytest.raises(ValueError, match="hold 0"):
        D.annotator_response(G, d, ann, ws, [-1.0, 1.0])


def test_augmentation_asks_the_response_for_its_degrees():
    table = {"coefficients": [-40.0, -20.0, 0.0, 20.0, 40.0], "degrees": [-35.0, -25.0, 0.0, 30.0, 40.0]}
    d = _planted(response=table)
    ws = torch.zeros(2, 2, 4)
    settings = A.AugmentSettings(k=4, coefficients=(-25.0, 15.0, 30.0, 35.0))
    lat, params = A.synthetic_latents(ws, ["a", "b"], "rotate", settings, direction=d)
    for i, row in enumerate(params):
        for j, p in enumerate(row):
            want = {-25.0: -20.0, 15.0: 10.0, 30.0: 20.0, 35.0: 30.0}[p["degrees"]]
            assert np.isclose(p["coefficient"], want)
            assert np.isclose(float(lat[i, j, 0, 0]), want * d.scale)
    # a raw coefficient's degrees come from the response too
    _, params = A.synthetic_latents(ws[:1], ["a"], "rotate", A.AugmentSettings(k=1, coefficients=(10.0,),
                                                                           units="coefficient"), direction=d)
    assert np.isclose(params[0][0]["degrees"], 15.0)



def test_pose_check_judges_the_half_edit_by_the_turn_it_means():
    G = LatentWorld()
    base = torch.zeros(1, 2, 4)
    edited = base.clone()
    edited[0, :, 0] = 30.0  # flips at 30; its half turns 15
    check = lambda **kw: A.pose_checked_edits(G, base, edited, [30.0], FlipAnnotator(), **kw)[1].tolist()  # noqa: E731
    assert check() == [0.5]  # meant 15 at half: kept
    assert check(half_degrees=[22.0]) == [0.5]  # a saturating turn means more at half; 15 is within 11 of 22
    assert check(half_degrees=[40.0]) == [0.0]  # 15 read where 40 was meant: dropped


def test_figure5_asks_calibrated_directions_through_their_response():
    from dapper.study.direction_eval import rotation_table

    table = {"coefficients": [-40.0, -20.0, 0.0, 20.0, 40.0], "degrees": [-35.0, -25.0, 0.0, 30.0, 40.0]}
    d = _planted(response=table, paper_scale=0.25)
    G = LatentWorld()
    reader = lambda x: FlipAnnotator().predict(x)  # noqa: E731
    images, rows = rotation_table(G, torch.zeros(1, 2, 4), {"deg": d, "paper": d.in_paper_units()}, (-25, 0, 30),
                                  yaw_reader=reader)
    assert images.shape[:3] == (2, 1, 3)
    deg = rows[rows.panel == "deg"]
    assert deg.direction_coefficient.tolist() == [-20.0, 0.0, 20.0]
    assert np.allclose(deg.yaw, [350.0, 0.0, 10.0], atol=0.5)  # w0 = coefficient * 0.5 on both rows
    assert rows[rows.panel == "paper"].direction_coefficient.tolist() == [-25.0, 0.0, 30.0]  # its own units


def test_identity_table_counts_flips_against_the_turn_meant(monkeypatch):
    from dapper.judges import oracles
    from dapper.study import augment_eval as AE

    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None, batch_size=256: (
        np.zeros(len(images), dtype=np.int64), None))
    monkeypatch.setattr(oracles, "predict_yaw", lambda images, model=None, batch_size=256: FlipAnnotator().predict(
        images))
    G = LatentWorld()
    d = D.Direction(np.eye(4)[0], (0, 2), "planted", scale=1.0, units="degrees", degrees_per_unit=1.0)
    table = AE.augment_identity(G, {"W": torch.zeros(3, 2, 4)}, np.zeros(3, dtype=np.int64), {"v": (d, (0, 2))},
                                torch.ones(4), strengths=(0.5,), coefficients=(-30, -10, 10, 30),
                                identity_oracle=object(), pose_oracle=object())
    rot = table[table.edit == "rotate"].set_index("amount")
    assert rot.flip_share.to_dict() == {-30.0: 1.0, -10.0: 0.0, 10.0: 0.0, 30.0: 1.0}  # beyond 25 the oracle flips


def test_a_flat_stretch_asks_for_the_smallest_edit_that_turns_enough():
    r = {"coefficients": [-30.0, -22.5, -15.0, -7.5, 0.0, 7.5, 15.0, 22.5, 30.0, 37.5],
         "degrees": [-20.0, -20.0, -12.0, 0.0, 0.0, 10.0, 20.0, 25.0, 25.0, 35.0]}
    d = _planted(response=r)
    # 30 deg lies past the flat 25..25 stretch: between 30 and 37.5 units, not at its start
    assert np.allclose(d.coefficients_for([30.0, 25.0, 2.5]), [33.75, 22.5, 1.875])
    # the dead band on the negative side is crossed before interpolating; past the end, the first furthest point
    assert np.allclose(d.coefficients_for([-5.0, -20.0, -40.0]), [-10.625, -22.5, -22.5])
    assert np.allclose(d.degrees_for(d.coefficients_for([30.0, 2.5, -5.0])), [30.0, 2.5, -5.0])
    # a response that is not monotone is no response
    bad = _planted(response={"coefficients": [-1.0, 0.0, 1.0, 2.0], "degrees": [-5.0, 0.0, 9.0, 4.0]})
    assert bad.response() is None


def test_a_capped_calibration_keeps_its_sign_and_its_reach():
    G = LatentWorld()
    ws = torch.zeros(8, G.num_ws, G.w_dim)
    raw = D.Direction(np.eye(4)[0], (0, G.num_ws), "planted", scale=-1.0, units="w")  # negative scale
    d = D.calibrate_direction(G, raw, _SaturatingAnnotator(), ws, max_shift=5.0)  # 5 W units turn < 30 deg
    assert d.metadata["calibration"]["capped"] and d.degrees_per_unit > 0
    c, deg = d.response()
    assert np.isclose(c[-1] * abs(d.scale), 5.0)  # never beyond the W budget
    made = _turn(float(D.apply_direction(ws[:1], d, d.coefficients_for([30.0]))[0, 0, 0, 0]))
    assert made > 0 and np.isclose(made, d.degrees_for(d.coefficients_for([30.0]))[0], atol=1.0)
    assert made < 30  # capped: it cannot make 30, and degrees_for says what it makes


def test_the_direction_id_changes_with_the_response():
    base = _planted(response={"coefficients": [-1.0, 0.0, 1.0], "degrees": [-2.0, 0.0, 2.0]})
    other = _planted(response={"coefficients": [-1.0, 0.0, 1.0], "degrees": [-2.0, 0.0, 3.0]})
    ids = {A.direction_id(x, D.apply_direction, (1, 2, 4)) for x in (base, other, _planted())}
    assert len(ids) == 3


class _ClassWorld(LatentWorld):
    """Draws every latent as a flat image of its class: -0.5 for class 0, +0.5 for class 1."""

    def __init__(self, label: int):
        super().__init__()
        self.label = label

    def synthesis(self, ws, noise_mode="const"):
        return torch.full((len(ws), 3, 4, 4), -0.5 + self.label)


def test_each_image_is_drawn_by_its_class_generator(monkeypatch):
    from dapper.judges import oracles
    from dapper.study import augment_eval as AE

    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None, batch_size=256: (
        (torch.as_tensor(images).float()[:, 0, 0, 0] > 0).long().numpy(), None))
    monkeypatch.setattr(oracles, "predict_yaw", lambda images, model=None, batch_size=256: np.full(len(images), 40.0))
    labels = np.array([0, 1, 0, 0, 1])
    d = _planted()

    def table(gens):
        return AE.augment_identity(gens, {"W": torch.zeros(5, 2, 4)}, labels, {"v": (d, (0, 2))}, torch.ones(4),
                                   strengths=(0.5,), coefficients=(-10, 10), draws=3, identity_oracle=object(),
                                   pose_oracle=object())

    right = table({0: _ClassWorld(0), 1: _ClassWorld(1)})
    assert (right.identity_kept == 1.0).all() and (right.projection_identity_kept == 1.0).all()
    swapped = table({0: _ClassWorld(1), 1: _ClassWorld(0)})
    assert (swapped.identity_kept == 0.0).all()


def test_the_response_is_measured_on_request_and_only_in_degrees():
    G = LatentWorld()
    ws = torch.zeros(8, G.num_ws, G.w_dim)
    raw = D.Direction(np.eye(4)[0], (0, G.num_ws), "planted", scale=1.0, units="w")
    plain = D.calibrate_direction(G, raw, _SaturatingAnnotator(), ws, max_shift=200.0, response_steps=0)
    assert plain.response() is None
    full = D.with_response(G, plain, _SaturatingAnnotator(), ws, max_shift=200.0)
    same = D.calibrate_direction(G, raw, _SaturatingAnnotator(), ws, max_shift=200.0)
    assert np.allclose(full.response()[1], same.response()[1]) and len(full.response()[0]) == 13
    assert len(D.with_response(G, plain, _SaturatingAnnotator(), ws, steps=7).response()[0]) == 7
    assert D.with_response(G, full, _SaturatingAnnotator(), ws, steps=0).response() is None
    with pytest.raises(ValueError, match="calibrate the direction first"):
        D.with_response(G, raw, _SaturatingAnnotator(), ws)
