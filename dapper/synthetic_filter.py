"""The method's own filter of synthetic images: keep an image only when the method's own instruments
assign it to its label.

A generator that loses a vehicle's identity draws images of the look-alike twin under the original
label: label noise. The filter reads only what the method itself has (never an oracle), in the spirit
of ALIA's and SaSPA's confidence filters:

* ``by="classifier"``: the classifier fine-tuned on the run's real shots alone (the real-only run of
  the study: same shots, seed and recipe) reads each synthetic image; the image is kept when its label
  is the classifier's first choice, with at least ``min_confidence`` of probability;
* ``by="nearest"``: the pretrained classifier's pooled features (no fine-tuning); the image is kept
  when, of the run's real shots of its own class and of its look-alike twin's class, the nearest (by
  cosine) is one of its own class. Classes are in look-alike pairs in consecutive places
  (``0-1, 2-3, ...``; a last class without a partner is compared with nothing and kept).

Functions here compute masks from logits and features; the study trains and reads the models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

__all__ = ["FILTERS", "FilterSettings", "twin_of", "keep_by_classifier", "keep_by_nearest_shot", "describe_filter"]

FILTERS = ("classifier", "nearest")


@dataclass(frozen=True)
class FilterSettings:
    """Which instrument filters (``by``, one of :data:`FILTERS`) and, for the classifier, the least
    probability of the label it must give (0: its first choice is enough)."""

    by: str = "classifier"
    min_confidence: float = 0.0

    def __post_init__(self):
        if self.by not in FILTERS:
            raise ValueError(f"unknown filter {self.by!r}; expected one of {FILTERS}")
        if not 0.0 <= self.min_confidence < 1.0:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def describe_filter(settings: FilterSettings) -> str:
    """The filter in words (captions: generated, never typed)."""
    if settings.by == "classifier":
        extra = f" with at least {settings.min_confidence:.0%} probability" if settings.min_confidence > 0 else ""
        return ("a synthetic image is kept when the classifier fine-tuned on the run's real shots alone names its "
                f"label first{extra}")
    return ("a synthetic image is kept when its nearest real shot (pretrained features, cosine), among its own "
            "class's and its look-alike twin's, is of its own class")


def twin_of(labels, num_classes: int) -> np.ndarray:
    """The look-alike partner of each label (pairs in consecutive places); a label without a partner
    is its own."""
    labels = np.asarray(labels, dtype=np.int64)
    twin = labels ^ 1
    return np.where(twin < num_classes, twin, labels)


def keep_by_classifier(logits: torch.Tensor, labels, min_confidence: float = 0.0) -> np.ndarray:
    """logits float [M, C] of the real-only classifier, labels [M] -> bool [M]: the label is its
    first choice with probability >= ``min_confidence``."""
    logits = torch.as_tensor(logits).float()
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if logits.ndim != 2 or len(logits) != len(labels):
        raise ValueError(f"logits {tuple(logits.shape)} and {len(labels)} labels do not match")
    if not len(labels):
        return np.zeros(0, bool)
    prob = logits.softmax(1)
    first = prob.argmax(1) == labels
    sure = prob[torch.arange(len(labels)), labels] >= min_confidence
    return (first & sure).numpy()


def keep_by_nearest_shot(synthetic_features: torch.Tensor, synthetic_labels, real_features: torch.Tensor,
                         real_labels, num_classes: int) -> np.ndarray:
    """Features float [M, F] and [N, F], labels [M] and [N] -> bool [M]: the nearest real shot (cosine)
    among the image's class and its twin's is of its class. Kept when its twin has no real shot."""
    syn = torch.nn.functional.normalize(torch.as_tensor(synthetic_features).float().flatten(1), dim=1)
    real = torch.nn.functional.normalize(torch.as_tensor(real_features).float().flatten(1), dim=1)
    syn_y = np.asarray(synthetic_labels, dtype=np.int64)
    real_y = np.asarray(real_labels, dtype=np.int64)
    if len(syn) != len(syn_y) or len(real) != len(real_y):
        raise ValueError("features and labels do not match in number")
    if not len(syn):
        return np.zeros(0, bool)
    sim = (syn @ real.T).numpy()  # [M, N]
    twin = twin_of(syn_y, num_classes)
    keep = np.ones(len(syn), bool)
    for i, (own, other) in enumerate(zip(syn_y, twin)):
        a, b = sim[i, real_y == own], sim[i, real_y == other]
        if own != other and len(b):
            keep[i] = len(a) > 0 and a.max() > b.max()
    return keep
