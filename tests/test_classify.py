"""dapper.classify: the timm model by name with weights from a file, fine-tuning, proxy labels."""

import numpy as np
import pytest
import torch

from dapper import classify as C


def _tiny_data(n=20, size=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 60, (n, size, size, 3)).astype(np.uint8)
    images[labels == 1, :, : size // 2] += 150  # class 1: bright left half, learnable in a few steps
    return images, labels


def test_create_classifier_loads_weights_from_a_file_with_a_new_head(tmp_path):
    from safetensors.torch import save_file

    proxy = C.create_classifier(7, weights=None)
    save_file({k: v.contiguous() for k, v in proxy.state_dict().items()}, str(tmp_path / "w.safetensors"))
    # The registered config declares the shipped proxy head's size; a file with another head says
    # its own size in the overlay, and timm then drops that head for the new one.
    import timm

    C.register_embedded_model()
    model = timm.create_model(C.EMBEDDED_MODEL, pretrained=True, num_classes=3,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / "w.safetensors"), num_classes=7))
    assert model.get_classifier().out_features == 3
    assert torch.equal(model.conv1[0].weight, proxy.conv1[0].weight)
    cfg = C.data_config(model)
    assert cfg["input_size"] == (3, 64, 64) and cfg["mean"] == (0.5, 0.5, 0.5)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        C.create_classifier(10, model_name=C.REAL_MODEL)
    with pytest.raises(FileNotFoundError, match="not found"):
        C.create_classifier(10, weights=tmp_path / "missing.safetensors")


def test_prepare_images_resizes_through_timm_eval_transform():
    images, _ = _tiny_data(n=3, size=40)
    x = C.prepare_images(images, {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0,
                                  "mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.uint8
    same = C.prepare_images(images, {"input_size": (3, 40, 40), "crop_pct": 1.0})
    assert torch.equal(same, torch.from_numpy(images).permute(0, 3, 1, 2))
    norm = C.normalise(same, {"mean": (0.5,) * 3, "std": (0.5,) * 3})
    assert norm.min() >= -1 and norm.max() <= 1


def test_fine_tune_on_tiny_data_is_deterministic_and_learns():
    torch.set_num_threads(1)
    images, labels = _tiny_data()
    x, y = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    settings = C.FineTuneSettings(min_steps=25, max_steps=25, batch_size=10, lr=3e-3)
    a = C.train_classifier(x, y, 2, settings=settings, seed=3, weights=None)
    b = C.train_classifier(x, y, 2, settings=settings, seed=3, weights=None)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    assert C.accuracy(a, x, y) >= 0.9
    # With synthetic images and the affine augmentation it still runs; same step count.
    aff = C.FineTuneSettings(min_steps=4, max_steps=4, batch_size=8, affine=True)
    m = C.train_classifier(x[:6], y[:6], 2, x[6:], y[6:], settings=aff, seed=0, weights=None)
    assert C.predict(m, x).shape == (len(x), 2)
    assert aff.steps(6) == aff.steps(600) == 4


def test_bf16_fine_tuning_learns_and_evaluates_close_to_fp32():
    torch.set_num_threads(1)
    images, labels = _tiny_data()
    x, y = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    settings = C.FineTuneSettings(min_steps=25, max_steps=25, batch_size=10, lr=3e-3, bf16=True)
    model = C.train_classifier(x, y, 2, settings=settings, seed=3, weights=None)
    assert C.accuracy(model, x, y, bf16=True) >= 0.9
    full, half = C.predict(model, x), C.predict(model, x, bf16=True)
    assert half.dtype == torch.float32  # logits leave autocast as fp32
    assert not torch.equal(full, half)  # autocast ran in bf16...
    assert torch.allclose(full, half, atol=0.1 * float(full.abs().max()))  # ...within bf16's precision
    from dapper.study.experiments import study_config

    assert study_config("full", "stanford_cars").finetune.bf16  # real mode: bf16
    assert study_config("full", "toycars").finetune.bf16 and study_config("quick").finetune.bf16  # the embedded too


def test_fine_tuning_runs_at_every_short_step_count():
    # OneCycleLR divides by zero when its warm-up is exactly one step (10 steps at 10%)
    torch.set_num_threads(1)
    images, labels = _tiny_data(n=8)
    x, y = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    for n in (1, 2, 10):
        C.train_classifier(x, y, 2, settings=C.FineTuneSettings(min_steps=n, max_steps=n, batch_size=4), weights=None)


def test_step_count_depends_only_on_real_images():
    s = C.FineTuneSettings(epochs=10, min_steps=40, max_steps=150, batch_size=32)
    assert s.steps(20) == 40 and s.steps(320) == 100 and s.steps(10_000) == 150


def test_proxy_labels_bins_and_mirror():
    meta = {"body": np.array([0, 6]), "yaw": np.array([0.0, 22.4]), "colour": np.array([[0.9, 0.9, 0.9],
                                                                                         [0.7, 0.05, 0.05]])}
    lab = C.proxy_labels(meta)
    assert lab["yaw_bin"].tolist() == [0, 0]
    assert C.proxy_labels({**meta, "yaw": np.array([23.0, 350.0])})["yaw_bin"].tolist() == [1, 0]
    from dapper.data.toycars import PAINT_WEIGHTS

    names = list(PAINT_WEIGHTS)
    assert [names[i] for i in lab["colour"]] == ["white", "red"]
    # Mirroring a car seen from yaw 90 (right side) shows a left side (270).
    assert C._mirror_yaw_bin(torch.tensor([2, 0, 1])).tolist() == [6, 0, 7]


def test_detail_labels_name_the_parts_of_each_vehicle():
    from dapper.data.toycars import VehicleSpec

    a = VehicleSpec(head_shape=3, tail_shape=1, grille_shape=2, spokes=10, rim_colour=2, window_splits=(0.4, 0.8),
                    blackout_pillars=True, spoiler=True)
    b = VehicleSpec(spokes=0, window_splits=(), side_stripe=True, hood_stripes=True, dark_bumpers=True)
    labels = C.detail_labels([a, b.to_dict()])
    assert set(labels) == set(C.PROXY_DETAIL_HEADS)
    assert labels["head_shape"].tolist() == [3, 0] and labels["grille_shape"].tolist() == [2, 0]
    assert labels["spokes"].tolist() == [C.PROXY_SPOKES.index(10), 0]
    assert labels["side_windows"].tolist() == [2, 0]
    assert labels["blackout_pillars"].tolist() == [1, 0] and labels["side_stripe"].tolist() == [0, 1]
    assert labels["spoiler"].tolist() == [1, 0] and labels["dark_bumpers"].tolist() == [0, 1]
    for name, n in C.PROXY_DETAIL_HEADS.items():
        assert labels[name].max() < n, name
    # seen from the front (yaw 0) the tail lamps are out of view, from behind (180) the head lamps
    seen = C.detail_labels([a, a], yaw=[0.0, 180.0])
    assert seen["head_shape"].tolist() == [3, -1] and seen["tail_shape"].tolist() == [-1, 1]
    assert seen["spokes"].tolist() == [-1, -1] and seen["spoiler"].tolist() == [1, 1]
