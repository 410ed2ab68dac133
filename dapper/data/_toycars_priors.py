"""Random priors of the ``toycars`` world: which vehicles it draws.

:func:`sample_spec` draws a :class:`VehicleSpec`: first the body-specific part from that body's
prior in ``BODY_PRIORS`` (one declarative table read by :func:`sample_body`), then the details every
body shares (lights, grille, wheels, trim, paint). Every draw comes from the one generator passed in,
in a fixed order, so a seed fixes a vehicle bit for bit; cached shards and trained models depend on
that (``toycars.RENDER_VERSION``), and tests/test_toycars.py pins what each body draws.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from ._toycars_geometry import BODY_TYPES, VehicleSpec

PAINT_PALETTE = {
    "white": (0.92, 0.92, 0.92),
    "silver": (0.70, 0.71, 0.73),
    "grey": (0.42, 0.43, 0.45),
    "black": (0.07, 0.07, 0.08),
    "red": (0.72, 0.06, 0.06),
    "maroon": (0.40, 0.05, 0.08),
    "blue": (0.10, 0.25, 0.65),
    "navy": (0.05, 0.09, 0.28),
    "green": (0.10, 0.38, 0.18),
    "yellow": (0.92, 0.75, 0.08),
    "orange": (0.90, 0.40, 0.05),
    "beige": (0.72, 0.64, 0.50),
    "brown": (0.35, 0.22, 0.12),
    "teal": (0.05, 0.45, 0.48),
}
# Street-like frequencies: most cars are white, black, grey or silver.
PAINT_WEIGHTS = {
    "white": 0.17, "silver": 0.13, "grey": 0.12, "black": 0.14, "red": 0.09, "maroon": 0.04,
    "blue": 0.08, "navy": 0.05, "green": 0.04, "yellow": 0.03, "orange": 0.03, "beige": 0.03,
    "brown": 0.02, "teal": 0.03,
}

_SPEC_NAMES = frozenset(f.name for f in dataclasses.fields(VehicleSpec))


def sample_paint(rng: np.random.Generator) -> tuple:
    """A street-like paint colour with a little jitter (RGB in [0, 1])."""
    names = list(PAINT_WEIGHTS)
    p = np.array([PAINT_WEIGHTS[n] for n in names])
    base = np.array(PAINT_PALETTE[names[rng.choice(len(names), p=p / p.sum())]])
    jitter = rng.normal(0, 0.035, 3) + rng.normal(0, 0.04)  # hue and brightness
    return tuple(float(c) for c in np.clip(base + jitter, 0.02, 0.97))


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def sample_spec(rng: np.random.Generator, body: str | None = None, colour=None) -> VehicleSpec:
    """Draw a random vehicle of ``body`` type (any type of ``BODY_TYPES`` when None)."""
    if body is None:
        body = BODY_TYPES[rng.integers(len(BODY_TYPES))]
    prior = BODY_PRIORS[body]
    s = sample_body(rng, prior)
    s.body = body
    s.head_shape = int(rng.integers(4))
    s.head_size = _u(rng, 0.8, 1.2)
    s.tail_shape = int(rng.integers(4))
    s.tail_size = _u(rng, 0.8, 1.2)
    s.grille_shape = int(rng.integers(4))
    s.grille_size = _u(rng, 0.8, 1.2)
    s.spokes = int(rng.choice([0, 5, 5, 6, 7, 10]))
    s.rim_fraction = _u(rng, 0.55, 0.76)
    s.rim_colour = int(rng.choice(4, p=[0.55, 0.2, 0.1, 0.15]))
    s.black_roof = bool(rng.random() < 0.08)
    # World v2 trim: each appears on some source vehicles so a generator learns to draw it.
    s.blackout_pillars = bool(rng.random() < 0.2)
    s.side_stripe = bool(rng.random() < 0.15)
    s.hood_stripes = bool(rng.random() < prior.hood_stripes)
    if s.dark_bumpers:
        s.cladding_height = _u(rng, 0.09, 0.34)
    s.colour = tuple(colour) if colour is not None else sample_paint(rng)
    return s


# A body's prior lists its steps in drawing order, each step a fixed number of draws. The order is part
# of the world (every rendered vehicle, and so RENDER_VERSION, hangs on it) and differs between bodies;
# tests/test_toycars.py pins the specs each body draws. A step with ``when`` (``unless``) runs only if
# that earlier Coin came up (did not).


@dataclass(frozen=True)
class Draw:
    """``name`` = U(lo, hi), or that far ``below`` (minus: lower in z, further back in x) or ``above``
    an earlier quantity or an anchor of ``_ANCHORS``: one draw."""

    name: str
    lo: float
    hi: float
    below: str = ""
    above: str = ""
    when: str = ""
    unless: str = ""

    def draw(self, rng, values: dict) -> float:
        u = _u(rng, self.lo, self.hi)
        if self.below:
            return _quantity(values, self.below) - u
        return _quantity(values, self.above) + u if self.above else u


@dataclass(frozen=True)
class Coin:
    """``name`` = True with probability ``p``: one draw. A spec flag, or a choice later steps read."""

    name: str
    p: float
    when: str = ""
    unless: str = ""

    def draw(self, rng, values: dict) -> bool:
        return bool(rng.random() < self.p)


@dataclass(frozen=True)
class Splits:
    """``window_splits`` from ``alternatives``, ``((probability, ((lo, hi), ...)), ...)``: one draw
    picks the alternative (none when there is only one), then one draw per pillar, front first."""

    alternatives: tuple
    when: str = ""
    unless: str = ""
    name: str = "window_splits"

    def __post_init__(self):
        if not math.isclose(sum(p for p, _ in self.alternatives), 1.0):
            raise ValueError(f"window split alternatives {self.alternatives}: probabilities must sum to 1")

    def draw(self, rng, values: dict) -> tuple:
        ranges = self.alternatives[-1][1]
        if len(self.alternatives) > 1:
            u, edge = rng.random(), 0.0
            for p, option in self.alternatives[:-1]:
                edge += p
                if u < edge:
                    ranges = option
                    break
        return tuple(_u(rng, lo, hi) for lo, hi in ranges)


# Places on the car a Draw may measure from, besides the quantities drawn before it.
_ANCHORS = {
    "nose": lambda v: v["length"] / 2,
    "tail": lambda v: -v["length"] / 2,
    "front_axle": lambda v: v["length"] / 2 - v["front_overhang"],
}


def _quantity(values: dict, name: str) -> float:
    return values[name] if name in values else _ANCHORS[name](values)


@dataclass(frozen=True)
class BodyPrior:
    """One body type: ``steps`` drawn in order, then (no draws) the ``flush`` heights set level with
    the belt line and the ``fixed`` fields set; ``hood_stripes`` is the stripes' probability."""

    steps: tuple
    flush: tuple = ()
    fixed: dict = field(default_factory=dict)
    hood_stripes: float = 0.08

    def __post_init__(self):
        known = set(_ANCHORS)
        for step in self.steps:
            refs = {getattr(step, k, "") for k in ("below", "above", "when", "unless")} - {""}
            if refs - known or not (isinstance(step, Coin) or step.name in _SPEC_NAMES):
                raise ValueError(f"body step {step}: draws no VehicleSpec field, or reads {sorted(refs - known)} "
                                 f"before they are drawn (drawn so far: {sorted(known)})")
            known.add(step.name)
        unknown = (set(self.flush) | set(self.fixed)) - _SPEC_NAMES
        if unknown:
            raise ValueError(f"flush or fixed names {sorted(unknown)} are not VehicleSpec fields")


def sample_body(rng: np.random.Generator, prior: BodyPrior) -> VehicleSpec:
    """The body-specific part of a spec: ``prior``'s steps drawn in order (other fields keep defaults)."""
    values = {}
    for step in prior.steps:
        if (step.when and not values[step.when]) or (step.unless and values[step.unless]):
            continue
        values[step.name] = step.draw(rng, values)
    values.update({name: values["belt_height"] for name in prior.flush})
    values.update(prior.fixed)
    return VehicleSpec(**{k: v for k, v in values.items() if k in _SPEC_NAMES})


BODY_PRIORS = {
    "sedan": BodyPrior((
        Draw("length", 4.4, 5.1), Draw("front_overhang", 0.85, 1.05), Draw("rear_overhang", 0.95, 1.2),
        Draw("belt_height", 0.86, 0.98), Draw("roof_height", 1.38, 1.5),
        Draw("x_windshield_base", 0.55, 0.9, below="front_axle"),
        Draw("x_roof_front", 0.65, 0.85, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.75, 1.0, above="tail"),
        Draw("x_roof_rear", 0.45, 0.65, above="x_rear_window_base"),
        Draw("width", 1.75, 1.9), Draw("clearance", 0.14, 0.19), Draw("wheel_radius", 0.31, 0.35),
        Draw("nose_height", 0.22, 0.32, below="belt_height"), Draw("nose_length", 0.12, 0.25),
        Draw("hood_front_height", 0.12, 0.2, below="belt_height"),
        Draw("tail_height", 0.05, 0.12, below="belt_height"), Draw("deck_height", 0.0, 0.06, above="belt_height"),
        Draw("tumblehome", 0.74, 0.84),
        Splits(((0.6, ((0.45, 0.55),)), (0.4, ((0.45, 0.52), (0.82, 0.88))))),
        Draw("c_pillar", 0.1, 0.25), Coin("dark_bumpers", 0.1),
    )),
    "hatchback": BodyPrior((
        Draw("length", 3.7, 4.35), Draw("front_overhang", 0.75, 0.9), Draw("rear_overhang", 0.55, 0.75),
        Draw("belt_height", 0.88, 0.98), Draw("roof_height", 1.42, 1.55),
        Draw("x_windshield_base", 0.35, 0.6, below="front_axle"),
        Draw("x_roof_front", 0.6, 0.8, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.02, 0.1, above="tail"),
        Draw("x_roof_rear", 0.2, 0.45, above="x_rear_window_base"),
        Splits(((0.35, ((0.7, 0.78),)), (0.65, ((0.42, 0.5), (0.8, 0.87))))),
        Draw("width", 1.68, 1.8), Draw("clearance", 0.14, 0.18), Draw("wheel_radius", 0.29, 0.33),
        Draw("nose_height", 0.22, 0.3, below="belt_height"), Draw("nose_length", 0.15, 0.28),
        Draw("hood_front_height", 0.1, 0.18, below="belt_height"), Draw("tail_height", 0.0, 0.05, below="belt_height"),
        Draw("tumblehome", 0.75, 0.85), Draw("c_pillar", 0.15, 0.3),
    ), flush=("deck_height",)),
    "coupe": BodyPrior((
        Draw("length", 4.3, 4.8), Draw("front_overhang", 0.85, 1.0), Draw("rear_overhang", 0.9, 1.1),
        Draw("belt_height", 0.82, 0.9), Draw("roof_height", 1.28, 1.38),
        Draw("x_windshield_base", 0.6, 0.9, below="front_axle"),
        Draw("x_roof_front", 0.75, 0.95, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.55, 0.8, above="tail"),
        Draw("x_roof_rear", 0.75, 1.0, above="x_rear_window_base"),
        Draw("width", 1.78, 1.9), Draw("clearance", 0.12, 0.16), Draw("wheel_radius", 0.32, 0.35),
        Draw("nose_height", 0.24, 0.32, below="belt_height"), Draw("nose_length", 0.15, 0.3),
        Draw("hood_front_height", 0.12, 0.2, below="belt_height"),
        Draw("tail_height", 0.04, 0.1, below="belt_height"), Draw("deck_height", 0.0, 0.04, above="belt_height"),
        Draw("tumblehome", 0.72, 0.8),
        Splits(((0.5, ()), (0.5, ((0.72, 0.8),)))),
        Draw("c_pillar", 0.1, 0.3), Coin("spoiler", 0.25),
    )),
    "wagon": BodyPrior((
        Draw("length", 4.5, 5.0), Draw("front_overhang", 0.85, 1.0), Draw("rear_overhang", 0.95, 1.15),
        Draw("belt_height", 0.88, 0.98), Draw("roof_height", 1.45, 1.56),
        Draw("x_windshield_base", 0.5, 0.8, below="front_axle"),
        Draw("x_roof_front", 0.65, 0.85, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.03, 0.1, above="tail"),
        Draw("x_roof_rear", 0.12, 0.28, above="x_rear_window_base"),
        Draw("width", 1.75, 1.88), Draw("clearance", 0.14, 0.19), Draw("wheel_radius", 0.31, 0.35),
        Draw("nose_height", 0.22, 0.3, below="belt_height"), Draw("nose_length", 0.12, 0.25),
        Draw("hood_front_height", 0.12, 0.18, below="belt_height"), Draw("tail_height", 0.0, 0.04, below="belt_height"),
        Draw("tumblehome", 0.76, 0.86),
        Splits(((1.0, ((0.36, 0.44), (0.7, 0.78))),)),
        Draw("c_pillar", 0.08, 0.16),
    ), flush=("deck_height",)),
    "suv": BodyPrior((
        Draw("length", 4.3, 5.1), Draw("front_overhang", 0.85, 1.0), Draw("rear_overhang", 0.85, 1.1),
        Draw("belt_height", 1.0, 1.12), Draw("roof_height", 1.66, 1.85),
        Draw("x_windshield_base", 0.45, 0.75, below="front_axle"),
        Draw("x_roof_front", 0.5, 0.75, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.04, 0.12, above="tail"),
        Draw("x_roof_rear", 0.08, 0.3, above="x_rear_window_base"),
        Draw("width", 1.82, 2.0), Draw("clearance", 0.2, 0.27), Draw("wheel_radius", 0.36, 0.41),
        Draw("nose_height", 0.18, 0.28, below="belt_height"), Draw("nose_length", 0.1, 0.2),
        Draw("hood_front_height", 0.06, 0.14, below="belt_height"), Draw("tail_height", 0.0, 0.04, below="belt_height"),
        Draw("tumblehome", 0.8, 0.9),
        Splits(((1.0, ((0.38, 0.46), (0.72, 0.8))),)),
        Draw("c_pillar", 0.08, 0.2), Coin("dark_bumpers", 0.45),
    ), flush=("deck_height",), fixed={"tyre_width": 0.25, "roof_crown": 0.02}),
    "van": BodyPrior((
        Draw("length", 4.6, 5.3), Draw("front_overhang", 0.8, 0.95), Draw("rear_overhang", 0.8, 1.0),
        Draw("belt_height", 1.0, 1.1), Draw("roof_height", 1.8, 2.0),
        Draw("x_windshield_base", 0.55, 0.85, below="nose"),  # no hood: measured from the nose
        Draw("x_roof_front", 0.55, 0.8, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.0, 0.04, above="tail"),
        Draw("x_roof_rear", 0.03, 0.12, above="x_rear_window_base"),
        Draw("width", 1.85, 2.0), Draw("clearance", 0.16, 0.22), Draw("wheel_radius", 0.32, 0.36),
        Draw("nose_height", 0.2, 0.3, below="belt_height"), Draw("nose_length", 0.15, 0.3),
        Draw("hood_front_height", 0.05, 0.12, below="belt_height"), Draw("tail_height", 0.0, 0.03, below="belt_height"),
        Draw("tumblehome", 0.86, 0.93),
        Splits(((1.0, ((0.22, 0.3), (0.52, 0.6), (0.8, 0.86))),)),
        Draw("c_pillar", 0.06, 0.12), Coin("dark_bumpers", 0.4),
    ), flush=("deck_height",), fixed={"tyre_width": 0.23, "roof_crown": 0.02, "a_pillar": 0.08}),
    "sports": BodyPrior((
        Draw("length", 4.2, 4.7), Draw("front_overhang", 0.9, 1.1), Draw("rear_overhang", 0.8, 1.0),
        Draw("belt_height", 0.72, 0.8), Draw("roof_height", 1.14, 1.26),
        Draw("x_windshield_base", 0.55, 0.85, below="front_axle"),
        Draw("x_roof_front", 0.85, 1.05, below="x_windshield_base"),
        Draw("x_rear_window_base", 0.35, 0.6, above="tail"),
        Draw("x_roof_rear", 0.9, 1.2, above="x_rear_window_base"),
        Draw("width", 1.85, 1.98), Draw("clearance", 0.1, 0.13), Draw("wheel_radius", 0.32, 0.35),
        Draw("nose_height", 0.3, 0.38, below="belt_height"), Draw("nose_length", 0.3, 0.5),
        Draw("hood_front_height", 0.14, 0.22, below="belt_height"),
        Draw("tail_height", 0.04, 0.1, below="belt_height"), Draw("deck_height", 0.0, 0.04, above="belt_height"),
        Draw("tumblehome", 0.66, 0.75),
        Splits(((0.7, ()), (0.3, ((0.8, 0.86),)))),
        Draw("c_pillar", 0.15, 0.35), Coin("spoiler", 0.45),
    ), fixed={"tyre_width": 0.26, "roof_crown": 0.02}, hood_stripes=0.25),
    "pickup": BodyPrior((
        Draw("length", 5.0, 5.7), Draw("front_overhang", 0.9, 1.05), Draw("rear_overhang", 1.1, 1.4),
        Draw("belt_height", 1.08, 1.2), Draw("roof_height", 1.78, 1.92),
        Coin("crew_cab", 0.5),  # four doors and a long cab, or two doors and a short one
        Draw("x_windshield_base", 0.35, 0.55, below="front_axle"),
        Draw("x_roof_front", 0.55, 0.7, below="x_windshield_base"),
        Draw("x_roof_rear", 1.45, 1.7, below="x_roof_front", when="crew_cab"),
        Draw("x_roof_rear", 0.7, 0.9, below="x_roof_front", unless="crew_cab"),
        Draw("x_rear_window_base", 0.02, 0.08, below="x_roof_rear"),
        Draw("width", 1.85, 2.02), Draw("clearance", 0.22, 0.28), Draw("wheel_radius", 0.37, 0.42),
        Draw("nose_height", 0.14, 0.24, below="belt_height"), Draw("nose_length", 0.08, 0.16),
        Draw("hood_front_height", 0.03, 0.1, below="belt_height"),
        Draw("tumblehome", 0.84, 0.92),
        Splits(((1.0, ((0.45, 0.52),)),), when="crew_cab"), Splits(((1.0, ()),), unless="crew_cab"),
        Draw("c_pillar", 0.06, 0.12), Coin("dark_bumpers", 0.5),
    ), flush=("tail_height", "deck_height"), fixed={"tyre_width": 0.26, "roof_crown": 0.02}),
}
