"""Real mode's inputs, faked: a Stanford Cars copy, official-format checkpoints and the model files.

Used by the loader and checkpoint tests, the end-to-end real-mode test and ``bench/real_quick.py``.
Nothing here is downloaded or comes from the real datasets and models:

* :func:`make_devkit` writes a Stanford Cars folder (devkit or torchvision layout) with
  ``scipy.io.savemat``; photos are one dark frame with a bright box (``varied=False``, what the
  loader tests check by brightness) or distinct noisy pictures of a class-coloured car box at a
  random place and size (``varied=True``), so every image has its own content key.
* :func:`write_ada_pickle` writes networks the way stylegan2-ada-pytorch pickles them, through
  stand-in classes registered under the official module names (``torch_utils.persistence``,
  ``dnnlib.util``) only while writing: the same pickle structure as the real files.
* :func:`write_real_mode_models` writes every model file real mode asks for, with random weights:
  a generator (ada ``.pkl``), the classifier's weights, a COCO detector that sees a car everywhere,
  a pose estimator module, VGG16 and LPIPS weights.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from dapper.data.stanford_cars import DEFAULT_CLASSES

# A slice of the real 196-class list (order differs, which the loader must not care about),
# holding every default class plus near-namesakes that make close-match hints meaningful.
META_NAMES = [
    "AM General Hummer SUV 2000",
    "Acura RL Sedan 2012",
    "Acura TL Sedan 2012",
    "Acura TL Type-S 2008",
    "Acura TSX Sedan 2012",
    "Audi A5 Coupe 2012",
    "Audi S5 Coupe 2012",
    "Audi S5 Convertible 2012",
    "BMW X5 SUV 2007",
    "BMW X6 SUV 2012",
    "BMW X3 SUV 2012",
    "Chevrolet Silverado 1500 Regular Cab 2012",
    "Chevrolet Silverado 2500HD Regular Cab 2012",
    "Mercedes-Benz C-Class Sedan 2012",
    "Mercedes-Benz E-Class Sedan 2012",
    "Mercedes-Benz S-Class Sedan 2012",
]
W, H = 48, 32  # photo size of the plain fake set
BOX = (9, 5, 40, 28)  # MATLAB 1-based inclusive -> 0-based exclusive (8, 4, 40, 28)


def meta_class(name: str) -> int:
    return META_NAMES.index(name) + 1  # 1-based, as in cars_meta.mat


def _plain_photo(path: Path, rng, label: int, size) -> tuple[int, ...]:
    """Dark photo with a bright car box, so crops and bbox masks can be checked by brightness."""
    a = np.full((H, W, 3), 20, np.uint8)
    x1, y1, x2, y2 = BOX
    a[y1 - 1 : y2, x1 - 1 : x2] = 230
    Image.fromarray(a).save(path, quality=95)
    return BOX


def _varied_photo(path: Path, rng, label: int, size) -> tuple[int, ...]:
    """A noisy scene with a car box coloured by its class (pairs of classes in close colours, like
    look-alikes), two dark wheels, at a random place and size; returns the MATLAB-style box."""
    w, h = size
    a = (rng.normal(90, 25, (h, w, 3)) + np.linspace(0, 60, h)[:, None, None]).clip(0, 255)
    bw, bh = int(w * rng.uniform(0.45, 0.8)), int(h * rng.uniform(0.35, 0.6))
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    hue = np.array([(37 * (label // 2)) % 200 + 40, (91 * (label // 2)) % 200 + 40, (53 * label) % 200 + 40])
    a[y0 : y0 + bh, x0 : x0 + bw] = hue + rng.normal(0, 12, (bh, bw, 3)) + 20 * (label % 2)
    r = max(1, bh // 5)
    for cx in (x0 + bw // 4, x0 + 3 * bw // 4):
        a[y0 + bh - r : y0 + bh, max(cx - r, 0) : cx + r] = 15
    Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(path, quality=92)
    return (x0 + 1, y0 + 1, x0 + bw, y0 + bh)


def annotations(rows, with_labels=True):
    """``rows``: (class id, file name, box) -> the annotations struct array of the devkit's .mat files."""
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2"] + (["class"] if with_labels else [])
    dtype = [(f, "O") for f in fields] + [("fname", "O")]
    records = []
    for cls, fname, box in rows:
        records.append(
            tuple(np.array([[v]], np.uint16) for v in box)
            + ((np.array([[cls]], np.uint8),) if with_labels else ())
            + (fname,)
        )
    return np.array(records, dtype=dtype)


def make_devkit(base: Path, layout="devkit", test_annos_at_root=False, per_class=(2, 1), varied=False,
                photo_size=(W, H), seed=0):
    """Write a fake Stanford Cars copy under ``base`` (the dataset folder itself).

    Each default class gets ``per_class = (n_train, n_test)`` photos; two distractor classes get
    one photo each so filtering by class is exercised. ``varied``: distinct photos of
    ``photo_size = (w, h)`` (see the module docstring)."""
    (base / "devkit").mkdir(parents=True)
    scipy.io.savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array(META_NAMES, dtype=object)})
    classes = list(DEFAULT_CLASSES) + ["Acura RL Sedan 2012", "BMW X6 SUV 2012"]
    photo = _varied_photo if varied else _plain_photo
    rng = np.random.default_rng(seed)
    counter = 0
    for split, n in zip(("train", "test"), per_class, strict=True):
        folder = base / f"cars_{split}"
        folder.mkdir()
        rows = []
        for label, name in enumerate(classes):
            for _ in range(n if name in DEFAULT_CLASSES else 1):
                counter += 1
                fname = f"{counter:05d}.jpg"
                box = photo(folder / fname, rng, label, photo_size)
                rows.append((meta_class(name), fname, box))
        annos = {"annotations": annotations(rows)}
        if split == "train":
            scipy.io.savemat(base / "devkit" / "cars_train_annos.mat", annos)
        elif layout == "torchvision" or test_annos_at_root:
            scipy.io.savemat(base / "cars_test_annos_withlabels.mat", annos)
        else:
            scipy.io.savemat(base / "devkit" / "cars_test_annos_withlabels.mat", annos)
    return base


# ---------------------------------------------------------------------------------------------
# Official checkpoint formats, written without their code


@contextlib.contextmanager
def fake_modules(*names):
    """Empty modules under ``names`` in ``sys.modules`` while the block runs, then removed again."""
    saved = {n: sys.modules.get(n) for n in names}
    mods = {}
    for n in names:
        mods[n] = sys.modules[n] = types.ModuleType(n)
    try:
        yield mods
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


def place(obj, module, name):
    """Make ``obj`` pickle as ``module.name`` (a module from :func:`fake_modules`)."""
    obj.__module__ = module
    obj.__qualname__ = name
    obj.__name__ = name
    setattr(sys.modules[module], name, obj)
    return obj


ADA_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")


def write_ada_pickle(path, nets: dict, module_src="", training_set_kwargs=None):
    """Write ``nets`` ({'G': (module, init_kwargs), ...}) the way stylegan2-ada-pytorch does."""
    with fake_modules(*ADA_MODULES):

        def _reconstruct_persistent_obj(meta):
            raise AssertionError("fixture only")

        recon = place(_reconstruct_persistent_obj, "torch_utils.persistence", "_reconstruct_persistent_obj")
        easy = place(type("EasyDict", (dict,), {}), "dnnlib.util", "EasyDict")

        def easydict(d):
            return easy({k: easydict(v) if isinstance(v, dict) else v for k, v in d.items()})

        class Persistent:
            def __init__(self, module, kwargs):
                self.module, self.kwargs = module, kwargs

            def __reduce__(self):
                m = self.module
                state = {
                    "training": False,
                    "_parameters": collections.OrderedDict(m._parameters),
                    "_buffers": collections.OrderedDict(m._buffers),
                    "_non_persistent_buffers_set": set(),
                    "_backward_hooks": collections.OrderedDict(),
                    "_forward_hooks": collections.OrderedDict(),
                    "_forward_pre_hooks": collections.OrderedDict(),
                    "_state_dict_hooks": collections.OrderedDict(),
                    "_load_state_dict_pre_hooks": collections.OrderedDict(),
                    "_modules": collections.OrderedDict(
                        (n, Persistent(c, {})) for n, c in m._modules.items()),
                    "_init_args": (),
                    "_init_kwargs": easydict(self.kwargs),
                    "weight_gain": np.float64(0.125),
                    "activation": "lrelu",
                }
                meta = dict(type="class", version=4, module_src=module_src,
                            class_name=type(m).__name__, state=state)
                return recon, (meta,)

        data = {k: Persistent(*v) for k, v in nets.items()}
        data["augment_pipe"] = None
        data["training_set_kwargs"] = easydict(training_set_kwargs or {"path": "~/data/x.zip"})
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


# ---------------------------------------------------------------------------------------------
# Every model file of real mode, random


def ada_generator_kwargs(resolution: int, channel_base: int = 16384, channel_max: int = 512, z_dim: int = 512,
                         mapping_layers: int = 2) -> dict:
    """Init kwargs of a stylegan2-ada-pytorch generator; the defaults are its ``--cfg=auto`` at
    128-256 px (channel base 16384, at most 512 channels, 2 mapping layers), with the float16 blocks
    and activation clamp every ada training config sets (``num_fp16_res=4``, ``conv_clamp=256``)."""
    return dict(z_dim=z_dim, c_dim=0, w_dim=z_dim, img_resolution=resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=mapping_layers),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=4,
                                      conv_clamp=256))


POSE_MODULE = '''"""A pose estimator for tests: a fixed read-out of the image (what real mode calls by name)."""
import math

import torch


class Estimator:
    def predict(self, images):  # float NCHW in [-1, 1] -> yaw in degrees [N]
        half = images.shape[-1] // 2
        left, right = images[..., :half].mean((1, 2, 3)), images[..., half:].mean((1, 2, 3))
        return (torch.atan2(left - right, images.std((1, 2, 3)) + 1e-3) * (360 / math.pi)).numpy()


def load(device="cpu"):
    return Estimator()
'''


def write_real_mode_models(folder: Path, resolution: int = 32, generator_kwargs: dict | None = None,
                           classifier: str = "resnext50_32x4d", seed: int = 0) -> dict:
    """Write every model file of real mode under ``folder`` (random weights) and return the
    notebook parameters naming them: ``network`` (an ada ``.pkl``), ``classifier`` and
    ``classifier_weights`` (timm ``classifier``'s random weights, ``.safetensors``),
    ``vehicle_detector`` (a Faster R-CNN MobileNetV3 whose box head calls every proposal a car),
    ``pose_annotator`` (``fake_pose:load``; put ``folder`` on ``PYTHONPATH``), ``vgg16_weights``
    (the features of a random VGG16) and ``lpips_weights`` (positive random lin0..lin4)."""
    import timm
    import torchvision.models.detection as det
    from safetensors.torch import save_file

    from dapper.inversion.perceptual import vgg16_trunk
    from dapper.stylegan2.networks import Generator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    kwargs = generator_kwargs or ada_generator_kwargs(resolution, channel_base=512, channel_max=32, z_dim=32)
    G = Generator(**kwargs).eval().requires_grad_(False)
    with torch.no_grad():  # a trained generator's w_avg is the mean mapped w
        G.mapping.w_avg.copy_(G.mapping(torch.randn(512, G.z_dim), None)[:, 0].mean(0))
    network = write_ada_pickle(folder / "network-snapshot-000000.pkl", {"G_ema": (G, kwargs)})

    model = timm.create_model(classifier, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / f"{classifier}.safetensors"))

    detector = det.fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=91)
    with torch.no_grad():
        head = detector.roi_heads.box_predictor
        head.cls_score.weight.zero_()
        head.cls_score.bias.fill_(-10.0)
        head.cls_score.bias[3] = 10.0  # COCO 3: car
        head.bbox_pred.weight.zero_()
        head.bbox_pred.bias.zero_()
    torch.save(detector.state_dict(), folder / "detector.pth")

    (folder / "fake_pose.py").write_text(POSE_MODULE)
    torch.save({f"features.{k}": v for k, v in vgg16_trunk().state_dict().items()}, folder / "vgg16.pth")
    channels = (64, 128, 256, 512, 512)
    gen = torch.Generator().manual_seed(seed)
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=gen) for i, c in enumerate(channels)},
               folder / "lpips_vgg.pth")
    return dict(network=str(network), classifier=classifier,
                classifier_weights=str(folder / f"{classifier}.safetensors"),
                vehicle_detector=str(folder / "detector.pth"), pose_annotator="fake_pose:load",
                vgg16_weights=str(folder / "vgg16.pth"), lpips_weights=str(folder / "lpips_vgg.pth"))
