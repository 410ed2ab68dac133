"""Stanford Cars loader on a tiny fake devkit written with scipy.io.savemat."""

import logging

import numpy as np
import pytest
import scipy.io
from PIL import Image
from real_fakes import BOX, META_NAMES, annotations, make_devkit, meta_class

from dapper.data.stanford_cars import (
    DEFAULT_CLASSES,
    find_files,
    list_samples,
    load_pool,
    read_annotations,
    read_class_names,
    resolve_classes,
)


@pytest.fixture
def devkit(tmp_path):
    return make_devkit(tmp_path / "cars")


def test_default_classes_are_five_same_maker_pairs():
    assert len(DEFAULT_CLASSES) == 10 and len(set(DEFAULT_CLASSES)) == 10
    assert DEFAULT_CLASSES[:4] == (
        "Acura TL Sedan 2012",
        "Acura TSX Sedan 2012",
        "BMW X3 SUV 2012",
        "BMW X5 SUV 2007",
    )
    for a, b in zip(DEFAULT_CLASSES[::2], DEFAULT_CLASSES[1::2], strict=True):
        assert a.split()[0] == b.split()[0] and a != b


def test_read_mat_files(devkit):
    assert read_class_names(devkit / "devkit" / "cars_meta.mat") == META_NAMES
    rows = read_annotations(devkit / "devkit" / "cars_train_annos.mat")
    assert rows[0] == {
        "bbox_x1": 9, "bbox_y1": 5, "bbox_x2": 40, "bbox_y2": 28,
        "class": meta_class("Acura TL Sedan 2012"), "fname": "00001.jpg",
    }  # fmt: skip


def test_unlabelled_test_annotations_are_refused(tmp_path):
    path = tmp_path / "cars_test_annos.mat"
    scipy.io.savemat(path, {"annotations": annotations([(1, "00001.jpg", BOX)], with_labels=False)})
    with pytest.raises(ValueError, match="unlabelled"):
        read_annotations(path)


@pytest.mark.parametrize("layout", ["devkit", "devkit_root_test", "torchvision"])
def test_list_samples_in_each_layout(tmp_path, layout):
    if layout == "torchvision":
        make_devkit(tmp_path / "stanford_cars", layout="torchvision")
    else:
        make_devkit(tmp_path, test_annos_at_root=layout == "devkit_root_test")
    files = find_files(tmp_path)
    assert files.layout == ("torchvision" if layout == "torchvision" else "devkit")
    samples, names = list_samples(tmp_path)
    assert names == list(DEFAULT_CLASSES)
    assert len(samples) == 10 * 3  # distractor classes filtered out
    assert [s.split for s in samples] == ["train"] * 20 + ["test"] * 10  # pooled, train first
    assert sorted({s.label for s in samples}) == list(range(10))
    first = samples[0]
    assert first.class_name == "Acura TL Sedan 2012" and first.label == 0
    assert first.bbox == (8, 4, 40, 28)  # MATLAB 1-based inclusive -> 0-based exclusive end
    assert first.path == files.image_dirs["train"] / "00001.jpg" and first.path.is_file()
    assert all(s.path.parent.name == f"cars_{s.split}" for s in samples)


def test_nested_image_folders_are_accepted(tmp_path):
    base = make_devkit(tmp_path / "cars")
    for split in ("train", "test"):
        flat = base / f"cars_{split}"
        tmp = base / f"tmp_{split}"
        flat.rename(tmp)
        flat.mkdir()
        tmp.rename(flat / f"cars_{split}")
    samples, _ = list_samples(base)
    assert all(s.path.is_file() for s in samples)


def test_class_selection_by_name(devkit):
    samples, names = list_samples(devkit, ["bmw x5 suv 2007", "  Acura   RL Sedan 2012"])
    assert names == ["BMW X5 SUV 2007", "Acura RL Sedan 2012"]  # spelled as in cars_meta.mat
    assert [s.label for s in samples] == [0, 0, 1, 0, 1]  # train X5 X5 RL, test X5 RL
    assert [s.class_name for s in samples][-2:] == ["BMW X5 SUV 2007", "Acura RL Sedan 2012"]


def test_unknown_class_lists_close_matches(devkit):
    with pytest.raises(ValueError) as info:
        list_samples(devkit, ["Acura TL Sedan 2013", "Audi S5 Coupe 2012"])
    message = str(info.value)
    assert "unknown Stanford Cars class 'Acura TL Sedan 2013'" in message
    assert "'Acura TL Sedan 2012'" in message and "close matches" in message
    with pytest.raises(ValueError, match="unknown Stanford Cars class 'Zeppelin'$"):
        resolve_classes(["Zeppelin"], META_NAMES)
    with pytest.raises(ValueError, match="twice"):
        resolve_classes(["BMW X3 SUV 2012", "bmw x3 suv 2012"], META_NAMES)
    with pytest.raises(TypeError):
        resolve_classes("BMW X3 SUV 2012", META_NAMES)
    with pytest.raises(TypeError):
        resolve_classes([3], META_NAMES)


def test_missing_dataset_names_expected_paths_and_both_layouts(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        find_files(tmp_path / "nowhere")
    message = str(info.value)
    root = tmp_path / "nowhere"
    assert "does not exist" in message
    for expected in (
        "devkit/cars_meta.mat",
        "devkit/cars_train_annos.mat",
        "cars_train",
        "cars_test",
    ):
        assert str(root / expected) in message
    assert str(root / "stanford_cars" / "cars_test_annos_withlabels.mat") in message
    assert "official devkit" in message and "torchvision" in message


def test_missing_test_labels_in_torchvision_layout(tmp_path):
    base = make_devkit(tmp_path / "stanford_cars", layout="torchvision")
    (base / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(FileNotFoundError) as info:
        list_samples(tmp_path)
    message = str(info.value)
    assert "torchvision layout" in message
    assert str(base / "cars_test_annos_withlabels.mat") in message
    assert str(base / "devkit" / "cars_meta.mat") not in message.split("Stanford Cars is never")[0]
    assert "splits=('train',)" in message
    samples, _ = list_samples(tmp_path, splits=("train",))  # train alone still works
    assert {s.split for s in samples} == {"train"}


def test_load_pool_crops_letterboxes_and_masks(devkit):
    pool = load_pool(devkit, size=32, content_size=(32, 24), margin=0.0, progress=False)
    n = 30
    assert pool.images.shape == (n, 32, 32, 3) and pool.images.dtype == np.uint8
    assert pool.labels.shape == (n,) and pool.labels.dtype == np.int64
    assert pool.content_masks.shape == pool.bbox_masks.shape == (n, 32, 32)
    assert pool.skipped == [] and len(pool) == n and pool.class_names == list(DEFAULT_CLASSES)
    np.testing.assert_array_equal(pool.labels, [s.label for s in pool.samples])
    # a 32x24 box crop exactly fills the 32x24 content area centred in the 32x32 canvas
    content = pool.content_masks[0]
    assert content[4:28].all() and not content[:4].any() and not content[28:].any()
    assert (pool.images[0][~content] == 0).all()
    # margin 0: the crop is the bright car only, and the bbox mask is the whole content
    np.testing.assert_array_equal(pool.bbox_masks[0], content)
    assert pool.images[0][content].mean() > 200


def test_load_pool_bbox_mask_follows_the_car(devkit):
    pool = load_pool(devkit, ["Acura TL Sedan 2012"], size=40, margin=0.25, progress=False)
    assert len(pool) == 3
    image, content, box = pool.images[0], pool.content_masks[0], pool.bbox_masks[0]
    assert box.any() and (box <= content).all() and box.sum() < content.sum()
    bright = image.mean(axis=2) > 125
    # pixels inside the mapped box are the bright car, context around it is the dark photo
    assert bright[box].mean() > 0.9
    assert bright[content & ~box].mean() < 0.1


def test_load_pool_skips_bad_files_and_continues(devkit, caplog):
    train = devkit / "cars_train"
    (train / "00001.jpg").write_text("not a jpeg")
    (train / "00002.jpg").unlink()
    Image.new("RGB", (4, 4)).save(train / "00003.jpg")
    data = (train / "00004.jpg").read_bytes()
    (train / "00004.jpg").write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.WARNING):
        pool = load_pool(devkit, size=16, progress=False)
    assert len(pool) == 30 - 4
    reasons = dict(pool.skipped)
    assert reasons[str(train / "00001.jpg")] == "not a recognised image format"
    assert reasons[str(train / "00002.jpg")] == "file not found"
    assert reasons[str(train / "00003.jpg")].startswith("too small")
    assert "truncated" in reasons[str(train / "00004.jpg")]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(path in logged for path in reasons)
    assert str(train / "00001.jpg") not in {str(s.path) for s in pool.samples}


def test_load_pool_skips_box_outside_photo(tmp_path):
    base = make_devkit(tmp_path / "cars", per_class=(1, 0))
    path = base / "devkit" / "cars_train_annos.mat"
    annos = scipy.io.loadmat(path)["annotations"]
    annos["bbox_x1"][0, 0] = np.array([[200]], np.uint16)
    annos["bbox_x2"][0, 0] = np.array([[240]], np.uint16)
    scipy.io.savemat(path, {"annotations": annos})
    pool = load_pool(base, size=16, splits=("train",), progress=False)
    assert len(pool) == 9
    assert "outside" in pool.skipped[0][1]


def test_load_pool_with_nothing_loadable(tmp_path):
    base = make_devkit(tmp_path / "cars", per_class=(1, 0))
    for f in (base / "cars_train").iterdir():
        f.write_text("x")
    pool = load_pool(base, size=16, splits=("train",), progress=False)
    assert pool.images.shape == (0, 16, 16, 3) and pool.labels.shape == (0,)
    assert len(pool.skipped) == 10


def test_the_study_letterboxes_real_photos_once_into_the_generators_box(tmp_path):
    import torch

    from dapper.study.config import content_size, study_config
    from dapper.study.folds import load_scenario
    from dapper.study.ids import condition_ids
    from dapper.stylegan2 import Generator
    from dapper.stylegan2.checkpoints import save_generator

    data = make_devkit(tmp_path / "cars", per_class=(3, 1), varied=True, photo_size=(96, 48))
    nets = {}
    for name, box in (("boxed", (0, 4, 16, 12)), ("full", None)):
        torch.manual_seed(0)
        syn = dict(channel_base=64, channel_max=16, **({"content_box": box} if box else {}))
        G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                      mapping_kwargs=dict(num_layers=2), synthesis_kwargs=syn)
        nets[name] = save_generator(G, tmp_path / name)
    config = study_config("quick", "stanford_cars", data_root=str(data), network=str(nets["boxed"]), image_size=16)
    assert content_size(config) == (16, 8)
    d = load_scenario(config, "diverse")
    assert d.masks is not None and d.masks.shape == d.images.shape[:3]
    assert not d.masks[:, :4].any() and not d.masks[:, 12:].any() and d.masks[:, 4:12].any()
    assert (d.images[:, :4] == 0).all() and (d.images[:, 12:] == 0).all()  # the box's bars, nothing placed there
    full = study_config("quick", "stanford_cars", data_root=str(data), network=str(nets["full"]), image_size=16)
    assert content_size(full) is None
    # the box changes every condition's images, so it is part of every condition's study id
    assert condition_ids(config, "g", "d")["real"] != condition_ids(full, "g", "d")["real"]


def test_the_report_preflight_reads_the_generator_and_the_photos(tmp_path):
    import torch

    from dapper.study.params import check_real_inputs
    from dapper.stylegan2 import Generator
    from dapper.stylegan2.checkpoints import save_generator

    torch.manual_seed(0)
    G = Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=64, channel_max=16))
    good = save_generator(G, tmp_path / "g")
    data = make_devkit(tmp_path / "cars")
    check_real_inputs(data, good)  # both fine
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="cannot be used"):
        check_real_inputs(network=truncated)
    not_a_generator = tmp_path / "dict.pt"
    torch.save({"anything": torch.zeros(3)}, not_a_generator)
    with pytest.raises(ValueError, match="cannot be used"):
        check_real_inputs(network=not_a_generator)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="data_root="):
        check_real_inputs(data_root=tmp_path / "empty")
    with pytest.raises(ValueError, match="data_root="):
        check_real_inputs(data_root=data, classes=["No Such Car 2012", DEFAULT_CLASSES[0]])
    # a class that exists in the metadata but has no photo: said by name, not as an array shape error
    meta_only = [n for n in META_NAMES if n not in DEFAULT_CLASSES and n not in ("Acura RL Sedan 2012",
                                                                                  "BMW X6 SUV 2012")][:1]
    if meta_only:
        with pytest.raises(ValueError, match="no annotated photos of " + meta_only[0]):
            check_real_inputs(data_root=data, classes=[DEFAULT_CLASSES[0], meta_only[0]])
