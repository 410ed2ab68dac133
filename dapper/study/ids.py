"""Study ids: per condition, a hash of everything its rows depend on (data, folds, fine-tuning and
pretrained weights; for the generative conditions also the generator, projection, augmentation,
pose direction and the code of their recipes), so a rerun skips exactly the rows still valid."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from dapper.classify import EMBEDDED_MODEL, PRETRAINED_PATH
from dapper.study.ceiling import RendererSettings, renderer_condition
from dapper.study.config import (
    CONDITION_METHOD,
    CONDITIONS,
    FILTERED_CONDITIONS,
    RENDERER_CONDITIONS,
    RESIDUAL_CONDITIONS,
    TUNED_CONDITIONS,
    StudyConfig,
    ceiling_condition,
    condition_tuned,
    content_size,
    filtered_base,
    pivotal_settings,
)
from dapper.synthetic_filter import FilterSettings
from dapper.utils import file_sha256, repo_root

PIVOTAL_RECIPE_FILES = ("dapper/inversion/pivotal.py", "dapper/inversion/perceptual.py")
CEILING_RECIPE_FILES = ("dapper/study/ceiling.py", "dapper/data/toycars.py")
FILTER_FILES = ("dapper/synthetic_filter.py",)
# The code a row's number comes from: a change to any of these files (the fine-tuning recipe, its
# loop, the classifier's data handling; the augmentation for the generative conditions) gives new
# study ids, so rows made by other code are never reused.
RECIPE_FILES = ("dapper/classify.py", "dapper/fitting.py")
# (with how a pose direction asks for degrees: its response, each image's own)
GENERATIVE_RECIPE_FILES = ("dapper/augment.py", "dapper/directions/calibrate.py", "dapper/directions/methods.py")


def _file_hash(path) -> str:
    return "none" if path is None else file_sha256(path)[:16]


def classifier_weights_path(config: StudyConfig):
    """The classifier's starting weights: the shipped toycars ResNeXt by default, the file named in
    ``classifier_weights``, or None for ``"scratch"`` (random initialisation, asked for by name)."""
    if config.classifier_weights == "scratch":
        return None
    if config.classifier_weights in ("default", None):
        if config.classifier != EMBEDDED_MODEL:
            raise ValueError(f"{config.classifier} needs classifier_weights: a local file of its ImageNet weights, "
                             "or 'scratch' to train it from random initialisation")
        return PRETRAINED_PATH
    return config.classifier_weights


def code_version(files) -> str:
    """sha256 (16 hex digits) of the source files ``files`` (paths from the repository root)."""
    h = hashlib.sha256()
    for name in files:
        h.update(name.encode() + b"\0" + (repo_root() / name).read_bytes())
    return h.hexdigest()[:16]


def condition_ids(config: StudyConfig, generator: str, direction_id: str) -> dict[str, str]:
    """Study id per condition: a hash of what that condition's rows depend on, the code that makes
    them included (:data:`RECIPE_FILES`)."""
    ident = config.identity()
    ident["classifier_weights"] = _file_hash(classifier_weights_path(config))
    ident["code"] = code_version(RECIPE_FILES)
    box = content_size(config)
    if box is not None:  # real photos letterboxed into the generator's content box: every condition's images
        ident["content_size"] = list(box)
    generative = {k: ident.pop(k) for k in ("augment", "projection", "network")}
    generative["augment_code"] = code_version(GENERATIVE_RECIPE_FILES)
    ident.pop("pivotal")  # the tuned conditions' only, as the settings they mean
    filtering = {"filter": FilterSettings(**ident.pop("filter")).to_dict(), "filter_code": code_version(FILTER_FILES)}
    renderer = {"renderer": RendererSettings(**ident.pop("renderer")).to_dict(),
                "renderer_code": code_version(CEILING_RECIPE_FILES),
                "synthetic_counts": {k: asdict(config.augment)[k] for k in ("k", "coefficients", "seed")}}
    pivotal = {"pivotal": pivotal_settings(config).to_dict(), "pivotal_code": code_version(PIVOTAL_RECIPE_FILES)}
    ids = {}
    extra = [c for c in config.conditions if ceiling_condition(c) is not None or filtered_base(c)]
    for cond in dict.fromkeys(CONDITIONS + RESIDUAL_CONDITIONS + TUNED_CONDITIONS + RENDERER_CONDITIONS
                              + FILTERED_CONDITIONS + tuple(extra)):
        d = dict(ident)
        base = filtered_base(cond) or cond
        if base != cond:
            d.update(filtering, filtered=base)
        if renderer_condition(base) is not None:
            d.update(renderer)
        if base in CONDITION_METHOD:
            d.update(generative, generator=generator)
            if "rotate" in cond:
                d["direction"] = direction_id
        if condition_tuned(base):
            d.update(pivotal)
        ids[cond] = hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return ids
