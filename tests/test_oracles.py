"""Evaluation oracles: network shapes, checkpoint round trip, and the shipped checkpoints."""

import json

import numpy as np
import pytest
import torch

from dapper.data import toycars
from dapper.judges import oracles


def test_oracle_net_shapes_and_resize():
    net = oracles.OracleNet(10, width=8).eval()
    assert net(torch.zeros(2, 3, 64, 64)).shape == (2, 10)
    assert net(torch.zeros(2, 3, 128, 128)).shape == (2, 10)  # resized to 64 inside
    with pytest.raises(ValueError, match=r"expected \[N, 3, H, W\]"):
        net(torch.zeros(2, 64, 64, 3))


def test_model_input_and_yaw_helpers():
    img = np.array([[[[0, 255, 128]]]], dtype=np.uint8)
    x = oracles.to_model_input(img)
    assert x.shape == (1, 3, 1, 1) and x.min() >= -1 and x.max() <= 1
    assert torch.allclose(x.flatten(), torch.tensor([-1.0, 1.0, 128 / 127.5 - 1]), atol=1e-6)
    assert np.allclose(oracles.yaw_error([350, 10, 180], [10, 350, 0]), [20, 20, 180])
    ang = torch.deg2rad(torch.tensor([0.0, 90.0, 270.0]))
    out = torch.stack([torch.sin(ang), torch.cos(ang)], 1)
    assert torch.allclose(oracles.yaw_from_output(out), torch.tensor([0.0, 90.0, 270.0]), atol=1e-4)


def test_augment_keeps_shape_and_range():
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    y = oracles.augment(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1


def test_augment_resamples_a_share_of_the_images():
    """resample_min: the picked images lose their finest detail (shrunk to 32-63 px and back); with
    resample_p 0 nothing is resampled, with 1 every image is, with 0.5 about half."""
    x = torch.rand(64, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1  # all detail is the finest

    def fine_energy(y):
        return (y[..., 1:] - y[..., :-1]).abs().mean(dim=(1, 2, 3))

    none = fine_energy(oracles.augment(x, torch.Generator().manual_seed(1), resample_min=32, resample_p=0.0))
    every = fine_energy(oracles.augment(x, torch.Generator().manual_seed(1), resample_min=32, resample_p=1.0))
    half = fine_energy(oracles.augment(x, torch.Generator().manual_seed(1), resample_min=32, resample_p=0.5))
    assert none.min() > 0.3 and every.max() < 0.3
    assert 0.3 < (half < 0.3).float().mean() < 0.7


def test_save_and_load_round_trip(tmp_path):
    net = oracles.OracleNet(3, width=8).eval()
    config = {"architecture": {"out_features": 3, "width": 8, "dropout": 0.2}, "kind": "pose",
              "world": toycars.WORLD_TAG}
    path = tmp_path / "oracle_pose.safetensors"
    oracles.save_oracle(net, config, path)
    assert json.loads(path.with_suffix(".json").read_text())["kind"] == "pose"
    loaded = oracles.load_pose_oracle("cpu", path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(loaded(x), net(x))
    with pytest.raises(FileNotFoundError, match="python -m dapper oracles train identity"):
        oracles.load_identity_oracle("cpu", tmp_path / "missing.safetensors")
    oracles.save_oracle(net, {**config, "world": "toycars-v1-r2"}, path)
    with pytest.raises(ValueError, match="python -m dapper oracles train pose"):
        oracles.load_pose_oracle("cpu", path)


@pytest.fixture(scope="module")
def views():
    return toycars.target_test_views(2, seed=5)


def test_shipped_identity_oracle(views):
    model = oracles.load_identity_oracle("cpu")
    assert model.config["classes"] == list(toycars.TARGET_CLASSES)
    assert model(oracles.to_model_input(views.images[:3])).shape == (3, 10)
    pred, probs = oracles.predict_identity(views.images, model)
    assert probs.shape == (20, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (pred == views.labels).mean() >= 0.8
    assert model.config["heldout"]["accuracy"] >= 0.97


def test_shipped_pose_oracle(views):
    model = oracles.load_pose_oracle("cpu")
    assert model(oracles.to_model_input(views.images[:3])).shape == (3, 3)
    yaw = oracles.predict_yaw(views.images, model)
    assert yaw.shape == (20,) and ((yaw >= 0) & (yaw < 360)).all()
    assert np.median(oracles.yaw_error(yaw, views.yaw)) < 10
    # Generator convention: float NCHW in [-1, 1] gives the same answer as uint8 NHWC.
    x = torch.from_numpy(views.images).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert np.allclose(oracles.predict_yaw(x, model), yaw, atol=1e-3)
    assert model.config["heldout"]["median_yaw_error_deg"] <= 5
