"""The method's instruments in real mode, each from a parameter naming a local file or the user's code.

The method labels generated images with two instruments (the paper's pipeline): a *vehicle filter*
(keeps images with one whole vehicle) and a *pose estimator* (yaw of the vehicle). In the embedded
world both are small networks trained on toycars renders (:mod:`dapper.judges.annotators`). In real
mode nothing of the embedded world is used unless the user asks for it by name:

* ``vehicle_detector``: a torchvision COCO detector's weights file (``.pth`` state dict, read with
  ``weights_only=True``, or ``.safetensors``); the architecture is recognised from the weights
  (Faster R-CNN ResNet-50 FPN v1/v2, Faster R-CNN MobileNetV3-Large FPN or 320 FPN, RetinaNet ResNet-50
  FPN v1/v2, FCOS ResNet-50 FPN). A detection of a car, bus or truck is a vehicle; the score is the
  best such detection's.
* ``pose_annotator``: ``"module:function"``, the user's estimator: ``function(device=...)`` returns an
  object whose ``predict(images)`` gives yaw in degrees [N] for images float NCHW in [-1, 1] (yaw
  convention: 0 front, 90 the right side, nose to the image's right, 180 rear); or ``"embedded"``, the
  toycars annotator, which the report then states.

:func:`describe` says in words what was used, for the reports.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from pathlib import Path

import numpy as np
import torch
import torchvision.models.detection as det
from safetensors.torch import load_file

from dapper.judges.annotators import load_pose_annotator
from dapper.judges.annotators import load_vehicle_detector as embedded
from dapper.utils import file_sha256, torch_modules_of, weights_hash

__all__ = ["COCO_VEHICLES", "DETECTOR_ARCHITECTURES", "TorchvisionVehicleDetector", "load_vehicle_detector",
           "load_pose_estimator", "describe", "check_pose_spec"]

# torchvision's COCO category ids (91-way): car, bus, truck
COCO_VEHICLES = (3, 6, 8)
# (the two MobileNet variants share their weights' shapes; the first, at 800 px, is used for both)
DETECTOR_ARCHITECTURES = ("fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_resnet50_fpn",
                          "retinanet_resnet50_fpn_v2", "retinanet_resnet50_fpn", "fcos_resnet50_fpn")


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision's reference training scripts save {"model": ..., ...}
    if not isinstance(state, dict):
        raise ValueError(f"vehicle_detector={str(path)!r}: expected a state dict, got {type(state).__name__}")
    return state


def _build_detector(state: dict, path: Path):
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if not any(k.startswith("backbone.") for k in shapes):  # every torchvision detector has a backbone
        raise ValueError(f"vehicle_detector={str(path)!r}: the weights have no backbone; expected a torchvision "
                         f"COCO detector ({', '.join(DETECTOR_ARCHITECTURES)})")
    tried = []
    for name in DETECTOR_ARCHITECTURES:
        model = getattr(det, name)(weights=None, weights_backbone=None, num_classes=91)
        own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if own == shapes:
            model.load_state_dict(state)
            return model.eval(), name
        tried.append(name)
    raise ValueError(f"vehicle_detector={str(path)!r}: the weights fit none of torchvision's COCO detectors "
                     f"({', '.join(tried)}; 91 classes)")


class TorchvisionVehicleDetector:
    """``predict(images) -> (score float64 [N] in [0, 1], box float64 [N, 4])``: the best car, bus
    or truck detection per image (score 0, box zeros when none), box ``(x0, y0, x1, y1)`` in pixels
    of the input. Images float NCHW in [-1, 1] or uint8 NHWC. ``accepts`` compares with ``threshold``.

    Images are detected at their own size, at least ``min_size`` px on the short side (torchvision
    would scale every image to 800 px; a 128 px generated car gains nothing from it but the cost),
    and a two-stage detector classifies its ``proposals`` best region proposals (torchvision: 1000;
    its MobileNet 320 model: 150), since the filter asks for one vehicle that fills the picture.
    With 300, the box head no longer takes most of the time (``bench/real_quick.py``).
    """

    def __init__(self, model, architecture: str, threshold: float = 0.5, source: str = "", min_size: int = 320,
                 proposals: int = 300):
        self.model, self.architecture, self.threshold, self.source = model, architecture, threshold, source
        self.min_size = int(min_size)
        rpn = getattr(model, "rpn", None)
        if rpn is not None:  # never more than the model's own test-time count
            for counts in (rpn._pre_nms_top_n, rpn._post_nms_top_n):
                counts["testing"] = min(int(counts["testing"]), int(proposals))
        self.config = {"architecture": architecture, "weights": source, "min_size": self.min_size,
                       "proposals": int(rpn._post_nms_top_n["testing"]) if rpn is not None else None,
                       # what it computes with: other weights under the same file name give other caches
                       "sha256": file_sha256(source) if Path(source).is_file() else weights_hash(model)}

    @torch.no_grad()
    def predict(self, images, batch_size: int = 16) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(images)
        if x.dtype == torch.uint8:  # NHWC uint8
            x = x.permute(0, 3, 1, 2).float() / 255.0
        else:
            x = (x.float().clamp(-1, 1) + 1) / 2
        device = next(self.model.parameters()).device
        side = max(self.min_size, min(x.shape[-2:]) if len(x) else 0)
        self.model.transform.min_size = (side,)
        self.model.transform.max_size = max(self.model.transform.max_size, side)
        score, box = np.zeros(len(x)), np.zeros((len(x), 4))
        for a in range(0, len(x), batch_size):
            outs = self.model(list(x[a:a + batch_size].to(device)))
            for i, out in enumerate(outs):
                keep = torch.isin(out["labels"], torch.tensor(COCO_VEHICLES, device=out["labels"].device))
                if keep.any():
                    j = int(torch.argmax(torch.where(keep, out["scores"], -1.0)))
                    score[a + i] = float(out["scores"][j])
                    box[a + i] = out["boxes"][j].float().cpu().numpy()
        return score, box

    def accepts(self, images, threshold: float | None = None) -> np.ndarray:
        return self.predict(images)[0] >= (self.threshold if threshold is None else threshold)

    __call__ = predict


def load_vehicle_detector(spec, device="cpu", threshold: float = 0.5):
    """The vehicle filter ``spec`` names: ``"embedded"`` (the toycars detector) or a torchvision
    detector's weights file (:class:`TorchvisionVehicleDetector`)."""
    if spec == "embedded":
        return embedded(device=device, threshold=threshold)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"vehicle_detector={str(spec)!r} is not a file; give the weights of a torchvision "
                                "COCO detector (e.g. fasterrcnn_resnet50_fpn_v2's .pth) or 'embedded'")
    model, arch = _build_detector(_read_state_dict(path), path)
    return TorchvisionVehicleDetector(model.to(device), arch, threshold, source=str(path))


def check_pose_spec(spec: str) -> None:
    """Check a ``pose_annotator`` parameter without running anything: ``"embedded"`` or an
    importable ``"module:function"``."""
    if spec == "embedded":
        return
    module, _, attr = str(spec).partition(":")
    if not module or not attr:
        raise ValueError(f"pose_annotator={spec!r}: expected 'module:function' (your estimator) or 'embedded'")
    if importlib.util.find_spec(module) is None:
        raise ValueError(f"pose_annotator={spec!r}: module {module!r} cannot be found on the Python path")


class _FloatImages:
    """The user's estimator, always given float NCHW images in [-1, 1] (uint8 NHWC ones converted).
    ``config["sha256"]`` identifies what it computes with: its module's source and the weights of its
    torch modules (the estimator itself or its attributes), so caches never outlive a change of either."""

    def __init__(self, estimator, spec: str):
        self.estimator, self.config = estimator, {"estimator": spec, "sha256": _estimator_sha256(estimator, spec)}

    def predict(self, images) -> np.ndarray:
        x = torch.as_tensor(images)
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
        return np.asarray(self.estimator.predict(x), dtype=np.float64) % 360.0

    __call__ = predict


def _estimator_sha256(estimator, spec: str) -> str:
    h = hashlib.sha256()
    module = importlib.import_module(spec.partition(":")[0])
    source = inspect.getsourcefile(module)
    h.update(Path(source).read_bytes() if source else spec.encode())
    for m in torch_modules_of(estimator):
        h.update(weights_hash(m).encode())
    return h.hexdigest()


def load_pose_estimator(spec: str, device="cpu"):
    """The pose estimator ``spec`` names (see the module docstring); it must have ``predict``.
    A user's estimator is always given float NCHW images in [-1, 1]; its yaw is taken mod 360."""
    check_pose_spec(spec)
    if spec == "embedded":
        return load_pose_annotator(device=device)
    module, _, attr = spec.partition(":")
    estimator = getattr(importlib.import_module(module), attr)(device=device)
    if not callable(getattr(estimator, "predict", None)):
        raise TypeError(f"pose_annotator={spec!r} returned {type(estimator).__name__}, which has no predict(images)")
    return _FloatImages(estimator, spec)


def describe(vehicle_detector, pose_annotator) -> str:
    """What labelled the generated images, in words (for the reports)."""
    det = ("the embedded toycars vehicle detector (asked for: 'embedded')" if vehicle_detector == "embedded"
           else f"torchvision detector weights {Path(str(vehicle_detector)).name}")
    pose = ("the embedded toycars pose annotator (asked for: 'embedded'; it was trained on renders, not photos)"
            if pose_annotator == "embedded" else f"the user's pose estimator {pose_annotator}")
    return f"vehicle filter: {det}; pose: {pose}"
