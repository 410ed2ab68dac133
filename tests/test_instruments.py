"""dapper.instruments: real mode's vehicle filter and pose estimator, from files and the user's code."""

import numpy as np
import pytest
import torch

from dapper import instruments


def test_a_torchvision_detector_loads_from_its_weights_file(tmp_path):
    import torchvision.models.detection as det

    torch.manual_seed(0)
    model = det.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=91)
    torch.save(model.state_dict(), tmp_path / "detector.pth")
    d = instruments.load_vehicle_detector(tmp_path / "detector.pth")
    assert d.architecture == "fasterrcnn_mobilenet_v3_large_fpn" and d.threshold == 0.5
    assert d.min_size == 320  # not torchvision's 800 px: images are detected at their size, at least this
    d.min_size = 128  # small inputs keep the test fast
    images = torch.rand(3, 3, 64, 64) * 2 - 1
    score, box = d.predict(images)
    assert d.model.transform.min_size == (128,)
    d.predict(torch.zeros(1, 3, 160, 160))
    assert d.model.transform.min_size == (160,)
    assert score.shape == (3,) and box.shape == (3, 4) and ((score >= 0) & (score <= 1)).all()
    u8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert d.accepts(u8).shape == (3,)
    torch.save({"not": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="have no backbone"):
        instruments.load_vehicle_detector(tmp_path / "other.pth")
    with pytest.raises(FileNotFoundError, match="vehicle_detector="):
        instruments.load_vehicle_detector(tmp_path / "missing.pth")


class _Estimator:
    def predict(self, images):
        assert images.dtype == torch.float32 and images.shape[1] == 3  # always float NCHW
        return np.full(len(images), 402.0)


def make_estimator(device="cpu"):
    return _Estimator()


def make_nothing(device="cpu"):
    return object()


def test_the_users_pose_estimator_is_imported_by_name():
    est = instruments.load_pose_estimator("test_instruments:make_estimator")
    assert est.predict(torch.zeros(2, 3, 8, 8)).tolist() == [42.0, 42.0]  # mod 360
    assert est.predict(np.zeros((2, 8, 8, 3), np.uint8)).tolist() == [42.0, 42.0]  # uint8 NHWC converted
    with pytest.raises(TypeError, match="no predict"):
        instruments.load_pose_estimator("test_instruments:make_nothing")
    with pytest.raises(ValueError, match="cannot be found"):
        instruments.load_pose_estimator("no_such_module_q:f")
    text = instruments.describe("embedded", "test_instruments:make_estimator")
    assert "embedded toycars vehicle detector" in text and "test_instruments:make_estimator" in text


POSE_SOURCE = '''
import torch


class Est(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((1,), {value}))

    def predict(self, x):
        return torch.zeros(len(x)) + float(self.w)


def load(device="cpu"):
    return Est()
'''


def test_caches_key_the_instruments_by_what_they_compute_with(tmp_path, monkeypatch):
    import importlib
    import sys

    from dapper.augment import annotator_id
    from dapper.utils import instrument_id

    # a user's pose module: the same spec with other code (or other weights) is another instrument
    monkeypatch.syspath_prepend(str(tmp_path))
    ids = []
    for value in (1.0, 2.0):
        (tmp_path / "swapped_pose.py").write_text(POSE_SOURCE.replace("{value}", str(value)))
        sys.modules.pop("swapped_pose", None)
        importlib.invalidate_caches()
        est = instruments.load_pose_estimator("swapped_pose:load")
        ids.append((instrument_id(est), annotator_id(est)))
    assert ids[0][0] != ids[1][0] and ids[0][1] != ids[1][1]
    # a detector's weights file swapped under the same name gives another id
    path = tmp_path / "detector.pth"
    seen = []
    for fill in (0.0, 1.0):
        torch.save({"w": torch.full((2,), fill)}, path)
        seen.append(instrument_id(instruments.TorchvisionVehicleDetector(torch.nn.Linear(1, 1), "x", source=str(path))))
    assert seen[0] != seen[1]
    # an object with no recorded hash is told apart by its weights, not its class or its measurements
    a, b = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        b.weight.add_(1.0)
    a.config = b.config = {"heldout": {"accuracy": 0.9}}
    assert instrument_id(a) != instrument_id(b)
