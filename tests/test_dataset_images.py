"""dapper.study.dataset_images: one function picks a dataset's images and the generator they are made for,
as notebooks 01 and 06, the held-out targets of notebook 02 and the study's pools ask for them: the same
images, in the same order, with the same letterbox and masks as the calls they replace."""

from types import SimpleNamespace

import numpy as np
import pytest
from real_fakes import make_devkit
from study_fakes import FakeGenerator

from dapper.data import stanford_cars, toycars
from dapper.study.dataset_images import REAL_MODE_NEEDS, ImagePick, pick_images, source_generator
from dapper.utils import default_generator_path


def _same(a, b):
    return a.shape == b.shape and np.array_equal(a, b)


def test_toycars_picks_are_the_renderers_pools():
    pool = toycars.target_pool(1, seed=3, size=16, homogeneous=True, classes=range(2))
    picked = pick_images("toycars", ImagePick(1, seed=3, homogeneous=True, n_classes=2), canvas=(16, None))
    assert _same(picked.images, pool.images) and _same(picked.labels, pool.labels)
    assert _same(picked.vehicle_masks, pool.masks) and picked.metas == pool.metas
    assert picked.content_masks is None and picked.class_names == list(toycars.TARGET_CLASSES)
    assert picked.G is None and picked.generator_path is None
    views = toycars.target_test_views(1, seed=0, size=16, classes=range(2))
    picked = pick_images("toycars", ImagePick(1, views=True, n_classes=2), G=FakeGenerator(16))
    assert _same(picked.images, views.images) and _same(picked.labels, views.labels)
    assert isinstance(picked.G, FakeGenerator) and picked.generator_path is None  # a given generator's canvas


def test_without_a_generator_the_shipped_one_is_loaded():
    picked = pick_images("toycars", ImagePick(1, views=True, n_classes=1))
    G, path = source_generator()
    assert picked.generator_path == path == default_generator_path()
    assert picked.images.shape[1] == picked.G.img_resolution == G.img_resolution
    assert not picked.G.training


def test_real_photos_are_letterboxed_into_the_generators_box(tmp_path):
    data = make_devkit(tmp_path / "cars", per_class=(2, 1), varied=True, photo_size=(96, 48))
    pool = stanford_cars.load_pool(data, size=16, content_size=(16, 8), progress=False)
    G = SimpleNamespace(img_resolution=16, content_box=(0, 4, 16, 12))
    first = pick_images("stanford_cars", ImagePick(1), G=G, data_root=data, progress=False)
    keep = np.concatenate([np.flatnonzero(pool.labels == c)[:1] for c in np.unique(pool.labels)])
    assert _same(first.images, pool.images[keep]) and _same(first.labels, pool.labels[keep])
    assert _same(first.content_masks, pool.content_masks[keep]) and _same(first.vehicle_masks, pool.bbox_masks[keep])
    assert first.metas is None and first.class_names == list(pool.class_names) and first.G is G
    # notebook 06: the first photo of each of the first classes
    some = pick_images("stanford_cars", ImagePick(1, n_classes=3), G=G, data_root=data, progress=False)
    assert _same(some.images, pool.images[keep[:3]])
    # the study's pool: every photo, in the pool's order, on a canvas of its size without a generator
    every = pick_images("stanford_cars", ImagePick(), canvas=(16, (16, 8)), data_root=data, progress=False)
    assert _same(every.images, pool.images) and _same(every.content_masks, pool.content_masks)
    two = pick_images("stanford_cars", ImagePick(2), canvas=(16, (16, 8)), data_root=data,
                      classes=list(stanford_cars.DEFAULT_CLASSES[:2]), progress=False)
    assert two.class_names == list(stanford_cars.DEFAULT_CLASSES[:2]) and np.bincount(two.labels).tolist() == [2, 2]


def test_what_a_pick_refuses():
    with pytest.raises(ValueError, match="dataset='stanford_cars' needs network="):
        pick_images("stanford_cars", ImagePick(1), data_root="somewhere")
    assert "data_root=" in REAL_MODE_NEEDS
    with pytest.raises(ValueError, match="unknown dataset"):
        pick_images("lsun", ImagePick(1), canvas=(16, None))
    with pytest.raises(ValueError, match="not both"):
        pick_images("toycars", ImagePick(1), G=FakeGenerator(16), canvas=(16, None))
    with pytest.raises(ValueError, match="how many per class"):
        pick_images("toycars", ImagePick(), canvas=(16, None))
    for bad in (dict(n_per_class=0), dict(n_classes=-1), dict(n_per_class=1.5), dict(views=True, homogeneous=True)):
        with pytest.raises(ValueError):
            ImagePick(**bad)


def test_the_studys_pools_and_the_heldout_targets_are_picked_alike(monkeypatch):
    from dapper.study import direction_eval as de
    from dapper.study.config import study_config
    from dapper.study.folds import load_scenario

    config = study_config("quick", n_per_class=1, image_size=16, n_test_views=1)
    d = load_scenario(config, "homogeneous")
    pool = toycars.target_pool(1, seed=config.seed, size=16, homogeneous=True)
    assert _same(d.images, pool.images) and _same(d.labels, pool.labels) and d.masks is None
    views = toycars.target_test_views(1, seed=config.seed, size=16)
    assert _same(d.views_images, views.images) and _same(d.views_labels, views.labels)

    seen = {}

    def project(G, images, masks=None, on_canvas=False, **kw):
        seen.update(images=images, masks=masks, on_canvas=on_canvas)
        return SimpleNamespace(ws=np.zeros((len(images), G.num_ws, G.w_dim), np.float32))

    monkeypatch.setattr("dapper.study.direction_eval.project_images", project)
    targets = de.heldout_targets(FakeGenerator(16), "toycars", 1, progress=False)
    held = toycars.target_pool(1, seed=de.EVAL_SEED, size=16, homogeneous=True)
    assert _same(targets.images, held.images) and _same(targets.masks, held.masks) and targets.metas == held.metas
    assert seen["masks"] is None and not seen["on_canvas"] and targets.ws.shape == (10, 3, 8)
    assert targets.source.startswith("projections of 10 held-out toycars target views (seed 808")
