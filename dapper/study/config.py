"""The five-fold study's settings: its conditions and what each one means, the goals, the
config (:class:`StudyConfig`) and its profiles (:data:`PROFILE_LAYERS`, applied by :func:`study_config`),
and the config a notebook's parameters give (:func:`config_from_params`)."""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dapper.augment import METHODS, AugmentSettings
from dapper.classify import EMBEDDED_MODEL, REAL_MODEL, FineTuneSettings
from dapper.executor import get_executor
from dapper.instruments import describe
from dapper.inversion.canvas import content_box
from dapper.inversion.pivotal import PivotalSettings
from dapper.inversion.projection import ProjectionSettings
from dapper.study.ceiling import TWIN_SHARES, renderer_condition, renderer_condition_name
from dapper.study.params import NOT_GIVEN, check_params
from dapper.stylegan2 import load_generator
from dapper.synthetic_filter import FilterSettings
from dapper.utils import get_device

CONDITIONS = ("real", "real+affine", "real+perturb", "real+rotate", "real+perturb+rotate")
# Beyond the paper: the same edits applied to the real image as a residual (see dapper.augment).
RESIDUAL_CONDITIONS = ("real+perturb(residual)", "real+rotate(residual)", "real+perturb+rotate(residual)")
# Beyond the paper: the edits drawn by a generator pivotally tuned, per fold and shot level, on each class's
# training shots at once (dapper.inversion.pivotal), so that edits start from the real vehicles. Costly:
# run at the shot levels StudyConfig.tuned_shots only.
TUNED_CONDITIONS = ("real+perturb(tuned)", "real+rotate(tuned)")
# The method's own filter (dapper.synthetic_filter): the paper's synthetic images, each kept only when the method's
# own instruments assign it to its label. Any condition with synthetic images can be filtered: "real+rotate(filtered)",
# "real+rotate(renderer, twins 40%, filtered)" (on the ceiling, where the label noise is known).
FILTERED_CONDITIONS = ("real+perturb(filtered)", "real+rotate(filtered)", "real+perturb+rotate(filtered)")
CONDITION_METHOD = {"real+perturb": "perturb", "real+rotate": "rotate", "real+perturb+rotate": "perturb+rotate",
                    "real+perturb(residual)": "perturb", "real+rotate(residual)": "rotate",
                    "real+perturb+rotate(residual)": "perturb+rotate",
                    "real+perturb(tuned)": "perturb", "real+rotate(tuned)": "rotate",
                    "real+perturb(filtered)": "perturb", "real+rotate(filtered)": "rotate",
                    "real+perturb+rotate(filtered)": "perturb+rotate"}
# The embedded world's ceiling (dapper.study.ceiling): the renderer draws the synthetic images, as a perfect
# generator would; named "(renderer)", toycars only, never part of the method. The noise curve's conditions
# swap a share of those images for the look-alike twin's render, at StudyConfig.noise_shots only.
RENDERER_CONDITIONS = tuple(renderer_condition_name(m) for m in METHODS)
NOISE_CONDITIONS = tuple(renderer_condition_name(m, q) for q in TWIN_SHARES if q > 0 for m in METHODS)


def condition_compose(condition: str) -> str:
    """How a generative condition composes its synthetic images: "generated" or "residual"."""
    return "residual" if condition.endswith("(residual)") else "generated"


def filtered_base(condition: str) -> str | None:
    """The condition a filtered one filters (``"real+rotate(filtered)"`` -> ``"real+rotate"``,
    ``"real+rotate(renderer, filtered)"`` -> ``"real+rotate(renderer)"``); None when not filtered."""
    if condition.endswith("(filtered)"):
        return condition[:-len("(filtered)")]
    if condition.endswith(", filtered)"):
        return condition[:-len(", filtered)")] + ")"
    return None


def ceiling_condition(condition: str) -> tuple[str, float] | None:
    """:func:`dapper.study.ceiling.renderer_condition` of a condition or of the one it filters."""
    return renderer_condition(filtered_base(condition) or condition)


def condition_tuned(condition: str) -> bool:
    """Whether a condition's synthetic images come from a generator tuned on its run's shots."""
    return condition.endswith("(tuned)")
SCENARIOS = ("diverse", "homogeneous")
# The paper's claims, the study's goals: accuracy over real-only at the fewest shots, real data saved.
GAIN_GOAL, SAVING_GOAL = 0.06, 0.30


@dataclass
class StudyConfig:
    """Everything a five-fold study depends on. ``folds=None`` runs all ``n_folds`` folds; a
    subset (quick profile) runs those folds of the same split."""

    profile: str = "full"
    dataset: str = "toycars"
    scenarios: tuple[str, ...] = SCENARIOS
    n_per_class: int = 40
    n_folds: int = 5
    folds: tuple[int, ...] | None = None
    shots: tuple[int, ...] = (2, 4, 8, 16, 32)
    conditions: tuple[str, ...] = CONDITIONS
    seed: int = 0
    n_test_views: int = 30
    image_size: int = 64
    # method v2: each image asked for its degrees through its own response (its turn read by the method's pose
    # annotator); rotations the annotator reads missing their degrees are halved, then dropped
    augment: AugmentSettings = field(default_factory=lambda: AugmentSettings(pose_check=True, response="image"))
    finetune: FineTuneSettings = field(default_factory=FineTuneSettings)
    # keyword arguments of dapper.inversion.projection.ProjectionSettings; 100 steps reach within ~1 dB of
    # the default 200 at half the cost (about 2 CPU seconds per 64 px image)
    projection: dict | None = field(default_factory=lambda: {"steps": 100})
    # the tuned conditions: keyword arguments of dapper.inversion.pivotal.PivotalSettings (100 steps took
    # the toycars pivots' loss from 0.23 to 0.08 in notebook 03), and the shot levels they run at
    pivotal: dict = field(default_factory=lambda: {"steps": 100})
    tuned_shots: tuple[int, ...] = (2,)
    # the ceiling's renderer (keyword arguments of dapper.study.ceiling.RendererSettings) and the shot levels
    # of the label-noise curve's conditions (a twin share above 0)
    renderer: dict = field(default_factory=dict)
    noise_shots: tuple[int, ...] = (2, 8)
    # the filtered conditions' filter: keyword arguments of dapper.synthetic_filter.FilterSettings
    filter: dict = field(default_factory=dict)
    classifier: str = EMBEDDED_MODEL
    classifier_weights: str | None = "default"
    network: str | None = None
    data_root: str | None = None
    workers: int = 2
    direction_profile: str | None = None  # profile of the pose direction (default: the study's)
    # real mode's models (dapper.study.params.REAL_MODE_MODELS; None: the embedded world's) and classes
    classes: tuple[str, ...] | None = None
    vehicle_detector: str | None = None
    pose_annotator: str | None = None
    vgg16_weights: str | None = None
    lpips_weights: str | None = None
    device: str | None = None  # every stage's device; None: CUDA when present, else the CPU
    # where the grid's runs and the projection's batches run (dapper.executor): "local" or "ray"
    executor: str = "local"
    ray_address: str | None = None  # ray.init's address; None: a local Ray on this machine

    @property
    def fold_ids(self) -> tuple[int, ...]:
        return tuple(range(self.n_folds)) if self.folds is None else tuple(self.folds)

    def identity(self) -> dict:
        """The settings that change a row's result (not which rows are run, nor how many workers)."""
        d = asdict(self)
        for k in ("folds", "shots", "conditions", "scenarios", "workers", "profile", "device", "executor",
                  "ray_address", "tuned_shots", "noise_shots"):
            d.pop(k)
        for k in OPTIONAL_FIELDS:  # unset: the study id is what it was before these settings existed
            if d[k] is None:
                d.pop(k)
        return d


OPTIONAL_FIELDS = ("classes", "vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")


def config_from_params(profile: str, dataset: str, data_root=None, network=None, classifier_weights=NOT_GIVEN,
                       vehicle_detector=NOT_GIVEN, pose_annotator=NOT_GIVEN, vgg16_weights=NOT_GIVEN,
                       lpips_weights=NOT_GIVEN, classes=None, classifier=None, **overrides) -> StudyConfig:
    """The study's settings from a notebook's parameters (checked with :func:`dapper.study.params.check_params`).
    Real mode: images at the generator's resolution and the timm model ``classifier`` (None: the
    paper's ``resnext50_32x4d``) from ``classifier_weights`` (``"scratch"``: random initialisation).
    A model the notebook passes is used, None meaning the embedded world's (real mode requires each
    one passed, see ``check_params``); one it does not pass is not checked: a notebook passes every
    model its stages use (one that never fine-tunes has no ``classifier_weights``, and
    :func:`classifier_weights_path` refuses a real-mode run without them)."""

    models = {k: v for k, v in dict(classifier_weights=classifier_weights, vehicle_detector=vehicle_detector,
                                    pose_annotator=pose_annotator, vgg16_weights=vgg16_weights,
                                    lpips_weights=lpips_weights).items() if v is not NOT_GIVEN}
    check_params(profile, dataset, data_root, network, classes, classifier=classifier, **models)
    o = {k: None if models.get(k) is None else str(models[k])
         for k in ("vehicle_detector", "pose_annotator", "vgg16_weights", "lpips_weights")}
    o.update(data_root=None if data_root is None else str(data_root), network=None if network is None else str(network),
             classes=None if classes is None else tuple(classes))
    if dataset == "stanford_cars":
        o.update(image_size=generator_resolution(network), classifier=classifier or REAL_MODEL)
    elif classifier is not None:
        o["classifier"] = classifier
    if models.get("classifier_weights") is not None:
        o["classifier_weights"] = str(models["classifier_weights"])
    o.update(overrides)
    return study_config(profile, dataset, **o)


@functools.lru_cache(maxsize=8)
def _canvas(path: str, stamp: tuple) -> tuple[int, tuple[int, int, int, int]]:
    G = load_generator(path)
    return int(G.img_resolution), tuple(int(v) for v in content_box(G))


def generator_canvas(network) -> tuple[int, tuple[int, int, int, int]]:
    """(image size, content box ``(x0, y0, x1, y1)``) of the generator in the checkpoint ``network``,
    read once per file version in a process (a notebook that builds two configs loads a 512 px
    checkpoint once)."""
    path = Path(network).expanduser().resolve()
    st = path.stat()
    return _canvas(str(path), (st.st_mtime_ns, st.st_size))


def generator_resolution(network) -> int:
    """The image size of the generator in the checkpoint ``network`` (:func:`generator_canvas`)."""
    return generator_canvas(network)[0]


def content_size(config: StudyConfig) -> tuple[int, int] | None:
    """``(w, h)`` of the part of the generator's canvas that holds picture, where real photos are
    letterboxed (:func:`dapper.data.stanford_cars.load_pool`); None for a generator that fills its
    canvas, for no generator, or for images of another size than the generator's."""
    if config.network is None or config.dataset == "toycars":  # the embedded generators fill their canvas
        return None
    r, (x0, y0, x1, y1) = generator_canvas(config.network)
    if r != config.image_size or (x1 - x0, y1 - y0) == (r, r):
        return None
    return x1 - x0, y1 - y0


# The study's profiles as one table of layers: (profile, dataset) -> the settings that layer sets, None
# standing for any. study_config applies the layers in profile_layer_keys' order, each over the one before; a
# nested settings object (augment, finetune) takes a layer's dict as the fields it changes
# (dataclasses.replace), any other setting the layer's value as it stands.
PROFILE_LAYERS = {
    # bf16 autocast fine-tuning: real mode's ResNeXt-50 steps 1.9x faster on a CPU with avx512_bf16
    # (bench/real_quick.py), the embedded study's runs 1.33x (bench/finetune_bf16.py), accuracy alike
    (None, None): dict(finetune=dict(bf16=True)),
    (None, "toycars"): dict(),  # the embedded world: StudyConfig's own settings
    (None, "stanford_cars"): dict(scenarios=("diverse",), shots=(2, 4, 8, 16, 24)),
    ("full", None): dict(),  # StudyConfig's own settings: 5 folds, 5 shot levels, both scenarios
    ("quick", None): dict(scenarios=("diverse",), n_per_class=20, folds=(0, 1), shots=(2, 4), n_test_views=10,
                          augment=dict(k=2), finetune=dict(min_steps=20, max_steps=40),
                          projection={"steps": 10}),  # the encoder's guess, briefly refined: a smoke test
    # real mode's smoke test: a step of an ImageNet classifier at its input size (ResNeXt-50:
    # 224 px) and a 128-512 px generated image cost many times the embedded ones
    # (bench/real_quick.py times the quick profile against its budget at 128 px): one fold, 1 and 2 shots
    # per class (the projections and synthetic images of 20 photos), 10 steps of 8 images, and 5
    # projection steps from the mean w (real mode has no encoder to start from)
    ("quick", "stanford_cars"): dict(folds=(0,), shots=(1, 2), augment=dict(k=1), projection={"steps": 5},
                                     finetune=dict(batch_size=8, min_steps=10, max_steps=10)),
}


def profile_layer_keys(profile: str, dataset: str) -> tuple[tuple[str | None, str | None], ...]:
    """The keys of :data:`PROFILE_LAYERS` a (profile, dataset) pair takes, first applied first:
    base, dataset, profile, profile on that dataset."""
    return (None, None), (None, dataset), (profile, None), (profile, dataset)


def _check_setting(cfg: StudyConfig, name: str) -> None:
    if not hasattr(cfg, name):
        raise TypeError(f"StudyConfig has no setting {name!r}")


def _apply_layer(cfg: StudyConfig, layer: dict) -> None:
    for name, value in layer.items():
        _check_setting(cfg, name)
        current = getattr(cfg, name)
        if dataclasses.is_dataclass(current) and isinstance(value, dict):
            setattr(cfg, name, dataclasses.replace(current, **value))
        else:  # a copy: no config shares a mutable value with the table or another config
            setattr(cfg, name, copy.deepcopy(value))


def study_config(profile: str = "full", dataset: str = "toycars", **overrides) -> StudyConfig:
    """The study's settings for a profile (:data:`PROFILE_LAYERS`): ``full`` (5 folds, 5 shot levels,
    both scenarios; about an hour on 2 CPU cores with a cold cache) or ``quick`` (2 of the 5 folds, real
    mode 1; 2 shot levels, the diverse scenario, shorter fine-tuning: a couple of minutes), then
    ``overrides``, each set as given (TypeError for a setting StudyConfig does not have)."""

    check_params(profile, dataset)
    cfg = StudyConfig(profile=profile, dataset=dataset)
    for key in profile_layer_keys(profile, dataset):
        _apply_layer(cfg, PROFILE_LAYERS.get(key, {}))
    for k, v in overrides.items():
        _check_setting(cfg, k)
        setattr(cfg, k, v)
    return cfg


def projection_settings(config: StudyConfig):
    lpips = {k: getattr(config, k) for k in ("vgg16_weights", "lpips_weights") if getattr(config, k) is not None}
    return ProjectionSettings(**{**(config.projection or {}), **lpips})


def study_device(config: StudyConfig):
    """The device every stage of the study runs on (``config.device``, else CUDA when present)."""
    return get_device(config.device)


def pivotal_settings(config: StudyConfig):
    """The tuned conditions' :class:`dapper.inversion.pivotal.PivotalSettings`: ``config.pivotal``
    with the config's perceptual network (the projection's)."""
    return PivotalSettings(**{**config.pivotal, "vgg16_weights": config.vgg16_weights,
                              "lpips_weights": config.lpips_weights})


def filter_settings(config: StudyConfig) -> FilterSettings:
    """The filtered conditions' :class:`dapper.synthetic_filter.FilterSettings`."""
    return FilterSettings(**config.filter)


def study_executor(config: StudyConfig):
    """The executor (:mod:`dapper.executor`) the config names."""
    return get_executor(config.executor, config.ray_address)


def model_sources(config: StudyConfig) -> dict:
    """What the study's models come from, in words, for every output and results file that uses
    them: ``classifier`` and its ``classifier_weights`` (a file, ``scratch``: random initialisation,
    or the embedded toycars ResNeXt), and in real mode the ``instruments`` that label generated
    images (a named file or module, or ``embedded``: the toycars ones, said so)."""
    weights = config.classifier_weights
    if weights == "scratch":
        said = "scratch (random initialisation, asked for by name)"
    elif weights in (None, "default"):
        said = "embedded (the toycars ResNeXt pretrained on source renders)"
    else:
        said = str(weights)
    out = {"classifier": config.classifier, "classifier_weights": said}
    if config.dataset != "toycars":
        out["instruments"] = describe(config.vehicle_detector, config.pose_annotator)
    return out
