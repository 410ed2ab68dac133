"""The toycars world: renders, ground truth, determinism, source shards and the target set."""

import hashlib
import json

import numpy as np
import pytest

from dapper.data import toycars as tc
from dapper.data._toycars_priors import BodyPrior, Draw
from dapper.data.toycars import VehicleSpec, sample_spec


def _spec(body="sedan", seed=0, colour=None):
    return sample_spec(np.random.default_rng(seed), body, colour=colour)


@pytest.mark.parametrize("size", [64, 128])
def test_render_shapes_and_dtypes(size):
    r = tc.render(_spec(), 40.0, 12.0, None, 3, size)
    assert r.image.shape == (size, size, 3) and r.image.dtype == np.uint8
    assert r.mask.shape == (size, size) and r.mask.dtype == bool
    assert len(r.bbox) == 4
    json.dumps(r.meta)  # plain, JSON-able ground truth
    for key in ("body", "yaw", "elevation", "distance", "colour", "background_seed", "spec"):
        assert key in r.meta


def test_render_is_deterministic_and_seeds_matter():
    spec = _spec("suv", 1)
    a = tc.render(spec, 123.0, 10.0, 9.0, 5)
    b = tc.render(spec, 123.0, 10.0, 9.0, 5)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    c = tc.render(spec, 123.0, 10.0, 9.0, 6)
    assert not np.array_equal(a.image, c.image)
    assert np.array_equal(a.mask, c.mask)  # background seed does not move the car


@pytest.mark.parametrize("body", tc.BODY_TYPES)
def test_mask_and_bbox_agree(body):
    r = tc.render(_spec(body, 2), 30.0, 15.0, None, 1)
    ys, xs = np.nonzero(r.mask)
    assert r.bbox == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert 0.05 < r.mask.mean() < 0.6
    # Framed: the car is whole in the picture (no side touches the border) at default distance.
    x0, y0, x1, y1 = r.bbox
    assert x0 > 0 and y0 > 0 and x1 < 64 and y1 < 64


def _red_pixels(r):
    im = r.image.astype(int)
    red = (im[..., 0] > 120) & (im[..., 1] < 70) & (im[..., 2] < 70) & r.mask
    return np.nonzero(red)


def test_yaw_convention():
    """yaw 90 shows the right side with the nose to the image's right, so the red tail lights
    sit left of the car's middle; at 270 they sit right; at 180 (rear view) many more show."""
    spec = _spec("sedan", 3, colour=(0.9, 0.9, 0.9))
    side_r = tc.render(spec, 90.0, 10.0, None, 0, 128)
    side_l = tc.render(spec, 270.0, 10.0, None, 0, 128)
    mid_r = (side_r.bbox[0] + side_r.bbox[2]) / 2
    mid_l = (side_l.bbox[0] + side_l.bbox[2]) / 2
    assert _red_pixels(side_r)[1].mean() < mid_r
    assert _red_pixels(side_l)[1].mean() > mid_l
    front = tc.render(spec, 0.0, 10.0, None, 0, 128)
    rear = tc.render(spec, 180.0, 10.0, None, 0, 128)
    assert len(_red_pixels(rear)[0]) > 5 * max(1, len(_red_pixels(front)[0]))
    # Mirror views (yaw and 360 - yaw) give mirrored silhouettes up to the fixed light.
    a = tc.render(spec, 60.0, 10.0, None, 0).mask
    b = tc.render(spec, 300.0, 10.0, None, 0).mask
    assert (a == b[:, ::-1]).mean() > 0.97


def test_spec_roundtrip():
    spec = _spec("pickup", 4)
    d = spec.to_dict()
    assert VehicleSpec.from_dict(json.loads(json.dumps(d))) == spec


# sha256 (first 16 hex) of the JSON spec dicts for seeds 0..49 of each body, recorded from the eight
# hand-written samplers before they became one table. The world's pixels hang on these draws.
PINNED_SPEC_HASHES = {
    "sedan": "fc5940a19f7f01b7", "hatchback": "9f1c56c8b5aa715b", "coupe": "b99cecec69832d5b",
    "wagon": "0b9c908e45adde88", "suv": "34176b055b3cfbbb", "van": "8365918034bd0c60",
    "sports": "4b7bb423c2a4a976", "pickup": "3608464ed858e3dd",
}


@pytest.mark.parametrize("body", tc.BODY_TYPES)
def test_body_priors_draw_the_pinned_specs(body):
    dicts = [_spec(body, seed).to_dict() for seed in range(50)]
    digest = hashlib.sha256(json.dumps(dicts).encode()).hexdigest()[:16]
    assert digest == PINNED_SPEC_HASHES[body], f"the {body} prior draws other specs: RENDER_VERSION must change"


def test_body_prior_refuses_a_step_that_reads_an_undrawn_quantity():
    with pytest.raises(ValueError, match="before they are drawn"):
        BodyPrior((Draw("nose_height", 0.2, 0.3, below="belt_height"), Draw("belt_height", 0.9, 1.0)))
    with pytest.raises(ValueError, match="not a VehicleSpec field|no VehicleSpec field"):
        BodyPrior((Draw("wheel_radious", 0.3, 0.4),))


def test_source_prior_excludes_pickups_and_is_broad():
    bodies = [tc.source_item(0, i)["spec"].body for i in range(300)]
    assert "pickup" not in bodies
    assert set(bodies) == set(tc.SOURCE_BODY_TYPES)
    yaws = np.array([tc.source_item(0, i)["yaw"] for i in range(300)])
    assert np.histogram(yaws, bins=4, range=(0, 360))[0].min() > 40  # full circle


def test_source_dataset_shards_cache_and_match_batch(monkeypatch):
    monkeypatch.setattr(tc, "SHARD_SIZE", 6)
    a = tc.source_dataset(8, seed=3, progress=False, workers=1)
    assert a.shape == (8, 64, 64, 3) and a.dtype == np.uint8
    folder = tc.source_cache_dir(3, 64)
    shard0 = folder / "shard_00000.npy"
    mtime = shard0.stat().st_mtime_ns
    b, meta = tc.source_dataset(14, seed=3, progress=False, workers=1, return_meta=True)
    assert shard0.stat().st_mtime_ns == mtime  # reused, not re-rendered
    assert np.array_equal(a, b[:8])
    assert sorted(p.name for p in folder.glob("shard_*.npy")) == [f"shard_{k:05d}.npy" for k in range(3)]
    ref, metas = tc.source_batch(14, seed=3)
    assert np.array_equal(b, ref)
    assert np.allclose(meta["yaw"], [m["yaw"] for m in metas], atol=1e-3)
    assert meta["bbox"].shape == (14, 4) and meta["body"].shape == (14,)
    single = tc.source_dataset(5, seed=3, progress=False)
    assert isinstance(single, np.memmap) or isinstance(single.base, np.memmap)


def test_parallel_render_matches_serial():
    serial, meta_s = tc._render_ranges(1, 0, 6, 64, workers=1, chunk=3)
    parallel, meta_p = tc._render_ranges(1, 0, 6, 64, workers=2, chunk=3)
    assert np.array_equal(serial, parallel)
    assert np.array_equal(meta_s["yaw"], meta_p["yaw"])


def test_target_classes_and_pairs():
    assert len(tc.TARGET_CLASSES) == 10 and len(set(tc.TARGET_CLASSES)) == 10
    assert len(tc.PAIRS) == 5
    bodies = [tc.target_spec(i).body for i in range(10)]
    assert bodies[8] == bodies[9] == "pickup"
    assert "pickup" not in bodies[:8]
    grey = (0.6, 0.6, 0.62)
    for a, b in tc.PAIRS:
        sa, sb = tc.target_spec(a, grey), tc.target_spec(b, grey)
        assert sa.body == sb.body  # look-alikes: one maker, one body style
        da, db = sa.to_dict(), sb.to_dict()
        changed = [k for k in da if da[k] != db[k]]
        # A stretch moves several x positions at once; beyond that only a few details change.
        assert 1 <= len(changed) <= 18, changed
        assert abs(sa.length - sb.length) / sa.length < 0.1 and abs(sa.width - sb.width) < 0.1
        ia = tc.render(sa, 40.0, 12.0, None, 0).image
        ib = tc.render(sb, 40.0, 12.0, None, 0).image
        assert np.abs(ia.astype(int) - ib.astype(int)).mean() > 0.5


def test_target_pool_homogeneous_and_test_views():
    pool = tc.target_pool(2, seed=0, homogeneous=True)
    assert len(pool) == 20 and pool.images.shape == (20, 64, 64, 3)
    assert pool.masks.shape == (20, 64, 64) and pool.bboxes.shape == (20, 4)
    assert list(pool.labels) == [c for c in range(10) for _ in range(2)]
    lo, hi = tc.HOMOGENEOUS_YAW
    assert ((pool.yaw >= lo) & (pool.yaw <= hi)).all()
    palette = np.array([tc.PAINT_PALETTE[n] for n in tc.HOMOGENEOUS_COLOURS])
    nearest = np.abs(pool.colour[:, None] - palette[None]).max(-1).min(-1)
    assert (nearest < 0.07).all()  # every car is one of three paints (with a little jitter)
    assert pool.metas[0]["class_name"] == tc.TARGET_CLASSES[0]
    test = tc.target_test_views(1, seed=0, classes=[0, 9])
    assert list(test.labels) == [0, 9]
    again = tc.target_pool(2, seed=0, homogeneous=True, classes=[3])
    assert np.array_equal(again.images, pool.images[pool.labels == 3])


def test_render_same_vehicle():
    pool = tc.target_pool(1, seed=2, classes=[4])
    meta = pool.metas[0]
    same = tc.render_same_vehicle(meta, meta["yaw"])
    assert np.array_equal(same.image, pool.images[0])
    turned = tc.render_same_vehicle(meta, meta["yaw"] + 30)
    assert turned.meta["label"] == 4 and turned.meta["spec"] == meta["spec"]
    assert abs(turned.meta["yaw"] - (meta["yaw"] + 30) % 360) < 1e-9
    assert not np.array_equal(turned.mask, same.mask)
    # Same background: the sky rows far above the car are unchanged.
    top = min(same.bbox[1], turned.bbox[1]) - 2
    if top > 0:
        assert np.array_equal(turned.image[:top], same.image[:top])


# World v2: what a pair may and must differ in.
SHAPE_GROUPS = {
    "roof line and greenhouse": ("x_roof_front", "x_roof_rear", "x_rear_window_base", "x_windshield_base",
                                 "roof_height", "window_splits", "c_pillar"),
    "length and wheelbase": ("length", "front_overhang", "rear_overhang"),
    "ride height and wheels' size": ("clearance", "wheel_radius"),
    "light clusters": ("head_shape", "head_size", "tail_shape", "tail_size"),
    "grille": ("grille_shape", "grille_size"),
    "wheel design": ("spokes", "rim_fraction"),
}
COLOUR_MASS = ("colour", "black_roof", "blackout_pillars", "side_stripe", "hood_stripes", "dark_bumpers",
               "cladding_height", "rim_colour")


def test_pairs_differ_in_several_shape_attributes_and_share_colours():
    """Each look-alike pair differs in at least four of the shape groups, by a few pixels at 64 px
    where it is a length, and never in colour or trim (which would stay visible at 16 px)."""
    grey = (0.6, 0.6, 0.62)
    for a, b in tc.PAIRS:
        da, db = tc.target_spec(a, grey).to_dict(), tc.target_spec(b, grey).to_dict()
        groups = [g for g, keys in SHAPE_GROUPS.items() if any(da[k] != db[k] for k in keys)]
        assert len(groups) >= 4, (tc.TARGET_CLASSES[b], groups)
        assert [k for k in COLOUR_MASS if da[k] != db[k]] == [], tc.TARGET_CLASSES[b]
        # A car's side view spans about 0.82 of 64 px: metres -> pixels.
        px_per_m = 0.82 * 64 / da["length"]
        moved = max(abs(da[k] - db[k]) for k in ("length", "x_roof_rear", "x_rear_window_base", "roof_height",
                                                  "x_windshield_base", "c_pillar"))
        assert moved * px_per_m >= 1.0, tc.TARGET_CLASSES[b]


def test_framing_follows_the_yaw():
    """World v2 frames each view to the car: a front view fills most of the width, as a side view does."""
    spec = tc.target_spec(0, (0.6, 0.6, 0.62))
    widths = {}
    for yaw in (0.0, 90.0, 45.0):
        r = tc.render(spec, yaw, 12.0, None, 0)
        widths[yaw] = (r.bbox[2] - r.bbox[0]) / 64
    assert all(0.6 < w < 0.95 for w in widths.values()), widths  # v1: about 0.3 from the front


def test_renders_deterministic_by_seed_across_calls():
    a = tc.target_pool(1, seed=5, classes=[1, 7])
    b = tc.target_pool(1, seed=5, classes=[1, 7])
    c = tc.target_pool(1, seed=6, classes=[1, 7])
    assert np.array_equal(a.images, b.images) and not np.array_equal(a.images, c.images)
    s1, _ = tc.source_batch(3, seed=11)
    s2, _ = tc.source_batch(3, seed=11)
    assert np.array_equal(s1, s2)


def test_models_of_another_world_are_refused(tmp_path):
    with pytest.raises(ValueError, match="retrain it with `python -m x`"):
        tc.check_world({"name": "old"}, tmp_path / "old.safetensors", "python -m x")
    with pytest.raises(ValueError, match="toycars-v1"):
        tc.check_world({"world": "toycars-v1-r2"}, tmp_path / "old.safetensors", "python -m x")
    tc.check_world({"world": tc.WORLD_TAG}, tmp_path / "new.safetensors", "python -m x")


def test_render_background_is_the_render_without_its_car():
    """The empty scene a detector learns to reject: deterministic, and equal to a render of the same
    background seed and elevation above the horizon (the ground's markings follow the camera's
    distance, which a render sets from the car)."""
    bg = tc.render_background(3, 12.0, 64)
    assert bg.shape == (64, 64, 3) and bg.dtype == np.uint8 and np.array_equal(bg, tc.render_background(3, 12.0, 64))
    r = tc.render(_spec("sedan", 1), 70.0, 12.0, None, 3)
    horizon = int(32 - 32 / np.tan(np.radians(tc.FOV_DEG / 2)) * np.tan(np.radians(12.0)))
    top = min(r.bbox[1], horizon) - 1
    assert top > 4 and np.array_equal(r.image[:top], bg[:top])
