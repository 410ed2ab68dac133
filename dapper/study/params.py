"""The notebooks' parameters: the profiles and datasets they accept, and the check every notebook
runs on its papermill parameters before anything else."""

from __future__ import annotations

import difflib
from collections import Counter
from pathlib import Path

from dapper.executor import check_executor

__all__ = ["PROFILES", "DATASETS", "REAL_MODE_MODELS", "NOT_GIVEN", "check_params", "check_classes", "check_classifier",
           "real_mode_command"]

PROFILES = ("quick", "full")
DATASETS = ("toycars", "stanford_cars")
NOT_GIVEN = object()  # a parameter a notebook does not declare (None: declared, unset)


# What each real-mode model parameter is, and an example value (the README's command uses them).
REAL_MODE_MODELS = {
    "data_root": ("the Stanford Cars folder (devkit or torchvision layout)", "/data/stanford_cars"),
    "network": ("a StyleGAN2 car checkpoint (stylegan2-ada-pytorch or TF .pkl, rosinality .pt, dapper .safetensors)",
                "/models/stylegan2-car-config-f.pkl"),
    "classifier_weights": ("ImageNet weights of the classifier (timm's resnext50_32x4d unless 'classifier' names "
                           "another timm model) in a local file (.safetensors, .pth or .bin); "
                           "'scratch' trains from random initialisation, and the report says so",
                           "/models/resnext50_32x4d.a1h_in1k.safetensors"),
    "vehicle_detector": ("the weights of a torchvision COCO detector (e.g. fasterrcnn_resnet50_fpn_v2's .pth); "
                         "'embedded' uses the toycars detector, and the report says so",
                         "/models/fasterrcnn_resnet50_fpn_v2_coco.pth"),
    "pose_annotator": ("'module:function' making your pose estimator (see dapper.instruments); 'embedded' uses the "
                       "toycars annotator, and the report says so", "my_pose:load"),
    "vgg16_weights": ("torchvision's VGG16 ImageNet state dict, for the LPIPS distance of projection",
                      "/models/vgg16-397923af.pth"),
    "lpips_weights": ("the LPIPS linear layers for VGG16 (lin0..lin4)", "/models/lpips_vgg_v0.1.pth"),
}
KEYWORDS = {"classifier_weights": ("scratch",), "vehicle_detector": ("embedded",), "pose_annotator": ("embedded",)}


def real_mode_command(names) -> str:
    """The ``make report`` command of real mode with an example value for each of ``names``."""
    args = " ".join(f"-p {n} {REAL_MODE_MODELS[n][1]}" for n in names)
    return f'make report PROFILE=quick DATASET=stanford_cars REPORT_ARGS="{args}"'


def _check_model(name: str, value) -> None:
    if value in KEYWORDS.get(name, ()):
        return
    if name == "pose_annotator":
        from dapper.instruments import check_pose_spec

        check_pose_spec(value)
        return
    path = Path(value).expanduser()
    if name == "data_root":
        if not path.is_dir():
            raise FileNotFoundError(f"data_root={str(value)!r} is not a folder; point it at the extracted "
                                    "Stanford Cars data (devkit layout or torchvision layout)")
        return
    if not path.is_file():
        raise FileNotFoundError(f"{name}={str(value)!r} is not a file; expected {REAL_MODE_MODELS[name][0]}")
    if name == "network":
        from dapper.stylegan2.checkpoints import CheckpointError, detect_format

        try:
            detect_format(path)
        except CheckpointError as e:
            raise ValueError(f"network={str(value)!r} is not a StyleGAN2 checkpoint: {e}") from e


def check_real_inputs(data_root=None, network=None, classes=None) -> None:
    """The deeper pre-flight of a real-mode run, once before its first notebook (seconds): the
    generator loads through the safe loader, which reads the whole file (a truncated or crafted file
    or one that holds no generator is refused here), and the data folder holds annotated photos of
    every class asked for."""
    if network is not None:
        from dapper.stylegan2 import load_generator

        try:
            load_generator(network)
        except Exception as exc:  # whatever stops the loader stops the run: say it now
            raise ValueError(f"network={str(network)!r} cannot be used: {exc}") from None
    if data_root is not None:
        from dapper.data.stanford_cars import DEFAULT_CLASSES, list_samples

        try:
            samples, names = list_samples(data_root, classes or DEFAULT_CLASSES)
        except Exception as exc:
            raise ValueError(f"data_root={str(data_root)!r}: {exc}") from None
        counts = Counter(s.label for s in samples)
        empty = [name for label, name in enumerate(names) if not counts.get(label)]
        if empty:
            raise ValueError(f"data_root={str(data_root)!r} has no annotated photos of {', '.join(empty)}")


def check_classes(classes) -> None:
    """``classes``: None (the ten default classes) or an even number of class names, look-alike
    pairs in consecutive places."""
    if classes is None:
        return
    if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"classes={classes!r}: expected a list of class names")
    if len(classes) < 2 or len(classes) % 2:
        raise ValueError(f"classes: {len(classes)} names given; the study needs look-alike pairs, an even number "
                         "of at least 2 (pairs in consecutive places)")
    if len(set(classes)) != len(classes):
        raise ValueError("classes: a class is named twice")


def check_classifier(classifier, dataset: str, classifier_weights=NOT_GIVEN) -> None:
    """``classifier``: None (real mode: timm's ``resnext50_32x4d``, the paper's; toycars: the embedded
    ResNeXt) or the name of a timm model; where ``classifier_weights`` is declared (a notebook that
    fine-tunes), one other than the embedded model needs it in the toycars world too (only the
    embedded model ships weights). A notebook that only reads the model's input size declares none."""
    if classifier is None:
        return
    import timm

    from dapper.classify import EMBEDDED_MODEL, register_embedded_model

    register_embedded_model()
    if not isinstance(classifier, str) or not timm.is_model(classifier):
        close = difflib.get_close_matches(str(classifier), timm.list_models(), n=3)
        hint = f"; close matches: {', '.join(close)}" if close else ""
        raise ValueError(f"classifier={classifier!r} is not a timm model name (e.g. resnext50_32x4d){hint}")
    if dataset == "toycars" and classifier != EMBEDDED_MODEL and classifier_weights is None:  # declared, unset
        raise ValueError(f"classifier={classifier!r} needs classifier_weights (a local file of its weights, or "
                         "'scratch'): only the embedded classifier ships weights")


def check_params(profile: str, dataset: str, data_root=NOT_GIVEN, network=NOT_GIVEN, classes=NOT_GIVEN,
                 executor="local", ray_address=None, classifier=None, **models) -> None:
    """Validate a notebook's papermill parameters before anything runs; raise with a message
    naming the bad one.

    ``profile`` is ``quick`` or ``full``; ``dataset`` is ``toycars`` or ``stanford_cars``. A
    notebook passes every model parameter it uses (``data_root``, ``network`` and those of
    :data:`REAL_MODE_MODELS`), None when unset: in real mode each is then required (nothing of the
    embedded world is used unless named), and each given one must exist and be of its kind
    (``network`` a checkpoint, ``pose_annotator`` an importable ``module:function``).
    ``classes``: see :func:`check_classes`; ``classifier``: :func:`check_classifier`.
    ``executor``/``ray_address``: where projection batches and study runs go
    (:func:`dapper.executor.check_executor`).
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not one of {', '.join(PROFILES)}")
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not one of {', '.join(DATASETS)}")
    unknown = sorted(set(models) - set(REAL_MODE_MODELS))
    if unknown:
        raise TypeError(f"check_params got unknown parameter(s) {unknown}")
    given = {k: v for k, v in {"data_root": data_root, "network": network, **models}.items() if v is not NOT_GIVEN}
    if dataset == "stanford_cars":
        missing = [name for name, value in given.items() if value is None]
        if missing:
            lines = "; ".join(f"{n}: {REAL_MODE_MODELS[n][0]}" for n in missing)
            raise ValueError(f"dataset='stanford_cars' needs {', '.join(missing)} ({lines}); nothing of the embedded "
                             f"world is used in real mode unless named. For example: {real_mode_command(given)}")
    for name, value in given.items():
        if value is not None:
            _check_model(name, value)
    if classes is not NOT_GIVEN:
        check_classes(classes)
    check_classifier(classifier, dataset, models.get("classifier_weights", NOT_GIVEN))

    check_executor(executor, ray_address)
