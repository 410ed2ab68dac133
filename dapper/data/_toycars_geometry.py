"""Parametric vehicle bodies for the ``toycars`` world: specs, random priors and 3D geometry.

Car frame (metres): ``x`` points forward (the nose is at ``x = +length/2``), ``y`` to the car's
left, ``z`` up; the ground is ``z = 0`` and the origin sits under the middle of the car.

A body is two prisms plus details:

* the *lower body*: a side profile in the x-z plane (bumpers, nose, hood, deck, wheel arches)
  extruded across the full width;
* the *cabin* (greenhouse): a second profile (windshield, roof, rear window) sitting on the belt
  line, narrower at the roof than at the belt (tumblehome), so its sides are slanted planes;
* wheels (tyre, sidewall, rim with spokes, hub), dark wheel wells, lights, grille, plates, trim
  and windows drawn as decals on the faces they belong to.

Both prisms are convex apart from the arches, whose faces are never drawn (the wheels fill them),
so back-face culling plus a fixed drawing order (wheels, lower body, cabin) is a correct
painter's algorithm as long as the camera is above the belt line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

BODY_TYPES = ("sedan", "hatchback", "coupe", "wagon", "suv", "van", "sports", "pickup")
SOURCE_BODY_TYPES = tuple(b for b in BODY_TYPES if b != "pickup")

# Materials: how a face reacts to light (see _toycars_raster.shade).
PAINT, GLASS, TRIM, HEADLIGHT, TAILLIGHT, CHROME, PLATE, TYRE, RIM, WELL, PAINT_UP, PAINT_DOWN = range(12)

RIM_COLOURS = ((0.78, 0.79, 0.80), (0.25, 0.26, 0.28), (0.62, 0.60, 0.55), (0.90, 0.90, 0.92))

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


@dataclass
class VehicleSpec:
    """Everything that fixes how one vehicle looks (not the camera nor the background).

    Lengths are metres, colours are RGB in [0, 1]. Positions along the car (``x_*``) are
    measured from the car's centre, positive towards the nose.
    """

    body: str = "sedan"
    length: float = 4.7
    width: float = 1.82
    clearance: float = 0.17  # underside of the body
    wheel_radius: float = 0.33
    tyre_width: float = 0.22
    front_overhang: float = 0.95  # nose to front axle
    rear_overhang: float = 1.05  # rear axle to tail
    nose_height: float = 0.66  # top of the vertical front fascia
    nose_length: float = 0.18  # slope from fascia top back to the hood front
    hood_front_height: float = 0.74
    belt_height: float = 0.92  # hood rear / bottom of the side windows
    tail_height: float = 0.86  # top of the vertical rear face
    deck_height: float = 0.98  # trunk lid height at its rear end (3-box bodies)
    x_windshield_base: float = 0.75
    x_roof_front: float = 0.05
    x_roof_rear: float = -1.05
    x_rear_window_base: float = -1.55
    roof_height: float = 1.45
    roof_crown: float = 0.03  # how much the roof middle rises over its ends
    tumblehome: float = 0.80  # roof half-width / belt half-width of the cabin
    window_splits: tuple = (0.5,)  # pillar positions as fractions from front to rear glass edge
    pillar_width: float = 0.08
    a_pillar: float = 0.06  # inset of side glass from the windshield line (x metres)
    c_pillar: float = 0.12  # inset of side glass from the rear window line
    head_shape: int = 0  # 0 rect, 1 swept, 2 round, 3 slit
    head_size: float = 1.0
    tail_shape: int = 0  # 0 corner rect, 1 full-width bar, 2 tall vertical, 3 round pairs
    tail_size: float = 1.0
    grille_shape: int = 0  # 0 wide, 1 shield, 2 twin kidneys, 3 low wide intake
    grille_size: float = 1.0
    spokes: int = 5  # 0 = flat hub cap
    rim_fraction: float = 0.66
    rim_colour: int = 0
    dark_bumpers: bool = False
    cladding_height: float = 0.09  # dark lower cladding above the sill when dark_bumpers
    black_roof: bool = False
    blackout_pillars: bool = False  # dark pillars and frames: the glasshouse reads as one dark band
    side_stripe: bool = False  # a broad contrasting band along the body sides
    hood_stripes: bool = False  # twin contrasting stripes over nose, hood and roof
    spoiler: bool = False
    colour: tuple = (0.70, 0.71, 0.73)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in _SPEC_FIELDS}
        d["window_splits"] = [float(x) for x in self.window_splits]
        d["colour"] = [float(c) for c in self.colour]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VehicleSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "window_splits" in kw:
            kw["window_splits"] = tuple(kw["window_splits"])
        if "colour" in kw:
            kw["colour"] = tuple(float(c) for c in kw["colour"])
        return cls(**kw)

    def replace(self, **changes) -> VehicleSpec:
        return dataclasses.replace(self, **changes)


_SPEC_FIELDS = dataclasses.fields(VehicleSpec)

# ---------------------------------------------------------------------------------------------
# Random priors
# ---------------------------------------------------------------------------------------------


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
    s = _BODY_SAMPLERS[body](rng)
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
    s.hood_stripes = bool(rng.random() < (0.25 if body == "sports" else 0.08))
    if s.dark_bumpers:
        s.cladding_height = _u(rng, 0.09, 0.34)
    s.colour = tuple(colour) if colour is not None else sample_paint(rng)
    return s


def _sedan(rng) -> VehicleSpec:
    L = _u(rng, 4.4, 5.1)
    fo, ro = _u(rng, 0.85, 1.05), _u(rng, 0.95, 1.2)
    belt = _u(rng, 0.86, 0.98)
    roof = _u(rng, 1.38, 1.5)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.55, 0.9)
    rf0 = ws0 - _u(rng, 0.65, 0.85)
    rw0 = xr + _u(rng, 0.75, 1.0)
    rf1 = rw0 + _u(rng, 0.45, 0.65)
    return VehicleSpec(
        length=L, width=_u(rng, 1.75, 1.9), clearance=_u(rng, 0.14, 0.19),
        wheel_radius=_u(rng, 0.31, 0.35), front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.22, 0.32), nose_length=_u(rng, 0.12, 0.25),
        hood_front_height=belt - _u(rng, 0.12, 0.2), belt_height=belt,
        tail_height=belt - _u(rng, 0.05, 0.12), deck_height=belt + _u(rng, 0.0, 0.06),
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.74, 0.84),
        window_splits=(_u(rng, 0.45, 0.55),) if rng.random() < 0.6 else (_u(rng, 0.45, 0.52), _u(rng, 0.82, 0.88)),
        c_pillar=_u(rng, 0.1, 0.25), dark_bumpers=bool(rng.random() < 0.1),
    )


def _hatchback(rng) -> VehicleSpec:
    L = _u(rng, 3.7, 4.35)
    fo, ro = _u(rng, 0.75, 0.9), _u(rng, 0.55, 0.75)
    belt = _u(rng, 0.88, 0.98)
    roof = _u(rng, 1.42, 1.55)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.35, 0.6)
    rf0 = ws0 - _u(rng, 0.6, 0.8)
    rw0 = xr + _u(rng, 0.02, 0.1)
    rf1 = rw0 + _u(rng, 0.2, 0.45)
    splits = (_u(rng, 0.7, 0.78),) if rng.random() < 0.35 else (_u(rng, 0.42, 0.5), _u(rng, 0.8, 0.87))
    return VehicleSpec(
        length=L, width=_u(rng, 1.68, 1.8), clearance=_u(rng, 0.14, 0.18),
        wheel_radius=_u(rng, 0.29, 0.33), front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.22, 0.3), nose_length=_u(rng, 0.15, 0.28),
        hood_front_height=belt - _u(rng, 0.1, 0.18), belt_height=belt,
        tail_height=belt - _u(rng, 0.0, 0.05), deck_height=belt,
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.75, 0.85), window_splits=splits,
        c_pillar=_u(rng, 0.15, 0.3),
    )


def _coupe(rng) -> VehicleSpec:
    L = _u(rng, 4.3, 4.8)
    fo, ro = _u(rng, 0.85, 1.0), _u(rng, 0.9, 1.1)
    belt = _u(rng, 0.82, 0.9)
    roof = _u(rng, 1.28, 1.38)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.6, 0.9)
    rf0 = ws0 - _u(rng, 0.75, 0.95)
    rw0 = xr + _u(rng, 0.55, 0.8)
    rf1 = rw0 + _u(rng, 0.75, 1.0)
    return VehicleSpec(
        length=L, width=_u(rng, 1.78, 1.9), clearance=_u(rng, 0.12, 0.16),
        wheel_radius=_u(rng, 0.32, 0.35), front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.24, 0.32), nose_length=_u(rng, 0.15, 0.3),
        hood_front_height=belt - _u(rng, 0.12, 0.2), belt_height=belt,
        tail_height=belt - _u(rng, 0.04, 0.1), deck_height=belt + _u(rng, 0.0, 0.04),
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.72, 0.8),
        window_splits=() if rng.random() < 0.5 else (_u(rng, 0.72, 0.8),),
        c_pillar=_u(rng, 0.1, 0.3), spoiler=bool(rng.random() < 0.25),
    )


def _wagon(rng) -> VehicleSpec:
    L = _u(rng, 4.5, 5.0)
    fo, ro = _u(rng, 0.85, 1.0), _u(rng, 0.95, 1.15)
    belt = _u(rng, 0.88, 0.98)
    roof = _u(rng, 1.45, 1.56)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.5, 0.8)
    rf0 = ws0 - _u(rng, 0.65, 0.85)
    rw0 = xr + _u(rng, 0.03, 0.1)
    rf1 = rw0 + _u(rng, 0.12, 0.28)
    return VehicleSpec(
        length=L, width=_u(rng, 1.75, 1.88), clearance=_u(rng, 0.14, 0.19),
        wheel_radius=_u(rng, 0.31, 0.35), front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.22, 0.3), nose_length=_u(rng, 0.12, 0.25),
        hood_front_height=belt - _u(rng, 0.12, 0.18), belt_height=belt,
        tail_height=belt - _u(rng, 0.0, 0.04), deck_height=belt,
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.76, 0.86),
        window_splits=(_u(rng, 0.36, 0.44), _u(rng, 0.7, 0.78)), c_pillar=_u(rng, 0.08, 0.16),
    )


def _suv(rng) -> VehicleSpec:
    L = _u(rng, 4.3, 5.1)
    fo, ro = _u(rng, 0.85, 1.0), _u(rng, 0.85, 1.1)
    belt = _u(rng, 1.0, 1.12)
    roof = _u(rng, 1.66, 1.85)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.45, 0.75)
    rf0 = ws0 - _u(rng, 0.5, 0.75)
    rw0 = xr + _u(rng, 0.04, 0.12)
    rf1 = rw0 + _u(rng, 0.08, 0.3)
    return VehicleSpec(
        length=L, width=_u(rng, 1.82, 2.0), clearance=_u(rng, 0.2, 0.27),
        wheel_radius=_u(rng, 0.36, 0.41), tyre_width=0.25, front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.18, 0.28), nose_length=_u(rng, 0.1, 0.2),
        hood_front_height=belt - _u(rng, 0.06, 0.14), belt_height=belt,
        tail_height=belt - _u(rng, 0.0, 0.04), deck_height=belt,
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.8, 0.9), roof_crown=0.02,
        window_splits=(_u(rng, 0.38, 0.46), _u(rng, 0.72, 0.8)), c_pillar=_u(rng, 0.08, 0.2),
        dark_bumpers=bool(rng.random() < 0.45),
    )


def _van(rng) -> VehicleSpec:
    L = _u(rng, 4.6, 5.3)
    fo, ro = _u(rng, 0.8, 0.95), _u(rng, 0.8, 1.0)
    belt = _u(rng, 1.0, 1.1)
    roof = _u(rng, 1.8, 2.0)
    xf, xr = L / 2, -L / 2
    ws0 = xf - _u(rng, 0.55, 0.85)
    rf0 = ws0 - _u(rng, 0.55, 0.8)
    rw0 = xr + _u(rng, 0.0, 0.04)
    rf1 = rw0 + _u(rng, 0.03, 0.12)
    return VehicleSpec(
        length=L, width=_u(rng, 1.85, 2.0), clearance=_u(rng, 0.16, 0.22),
        wheel_radius=_u(rng, 0.32, 0.36), tyre_width=0.23, front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.2, 0.3), nose_length=_u(rng, 0.15, 0.3),
        hood_front_height=belt - _u(rng, 0.05, 0.12), belt_height=belt,
        tail_height=belt - _u(rng, 0.0, 0.03), deck_height=belt,
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.86, 0.93), roof_crown=0.02,
        window_splits=(_u(rng, 0.22, 0.3), _u(rng, 0.52, 0.6), _u(rng, 0.8, 0.86)),
        c_pillar=_u(rng, 0.06, 0.12), a_pillar=0.08, dark_bumpers=bool(rng.random() < 0.4),
    )


def _sports(rng) -> VehicleSpec:
    L = _u(rng, 4.2, 4.7)
    fo, ro = _u(rng, 0.9, 1.1), _u(rng, 0.8, 1.0)
    belt = _u(rng, 0.72, 0.8)
    roof = _u(rng, 1.14, 1.26)
    xf, xr = L / 2, -L / 2
    ws0 = xf - fo - _u(rng, 0.55, 0.85)
    rf0 = ws0 - _u(rng, 0.85, 1.05)
    rw0 = xr + _u(rng, 0.35, 0.6)
    rf1 = rw0 + _u(rng, 0.9, 1.2)
    return VehicleSpec(
        length=L, width=_u(rng, 1.85, 1.98), clearance=_u(rng, 0.1, 0.13),
        wheel_radius=_u(rng, 0.32, 0.35), tyre_width=0.26, front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.3, 0.38), nose_length=_u(rng, 0.3, 0.5),
        hood_front_height=belt - _u(rng, 0.14, 0.22), belt_height=belt,
        tail_height=belt - _u(rng, 0.04, 0.1), deck_height=belt + _u(rng, 0.0, 0.04),
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.66, 0.75), roof_crown=0.02,
        window_splits=() if rng.random() < 0.7 else (_u(rng, 0.8, 0.86),),
        c_pillar=_u(rng, 0.15, 0.35), spoiler=bool(rng.random() < 0.45),
    )


def _pickup(rng) -> VehicleSpec:
    L = _u(rng, 5.0, 5.7)
    fo, ro = _u(rng, 0.9, 1.05), _u(rng, 1.1, 1.4)
    belt = _u(rng, 1.08, 1.2)
    roof = _u(rng, 1.78, 1.92)
    xf = L / 2
    crew = rng.random() < 0.5
    ws0 = xf - fo - _u(rng, 0.35, 0.55)
    rf0 = ws0 - _u(rng, 0.55, 0.7)
    rf1 = rf0 - (_u(rng, 1.45, 1.7) if crew else _u(rng, 0.7, 0.9))
    rw0 = rf1 - _u(rng, 0.02, 0.08)
    return VehicleSpec(
        length=L, width=_u(rng, 1.85, 2.02), clearance=_u(rng, 0.22, 0.28),
        wheel_radius=_u(rng, 0.37, 0.42), tyre_width=0.26, front_overhang=fo, rear_overhang=ro,
        nose_height=belt - _u(rng, 0.14, 0.24), nose_length=_u(rng, 0.08, 0.16),
        hood_front_height=belt - _u(rng, 0.03, 0.1), belt_height=belt,
        tail_height=belt, deck_height=belt,
        x_windshield_base=ws0, x_roof_front=rf0, x_roof_rear=rf1, x_rear_window_base=rw0,
        roof_height=roof, tumblehome=_u(rng, 0.84, 0.92), roof_crown=0.02,
        window_splits=(_u(rng, 0.45, 0.52),) if crew else (), c_pillar=_u(rng, 0.06, 0.12),
        dark_bumpers=bool(rng.random() < 0.5),
    )


_BODY_SAMPLERS = {
    "sedan": _sedan, "hatchback": _hatchback, "coupe": _coupe, "wagon": _wagon, "suv": _suv,
    "van": _van, "sports": _sports, "pickup": _pickup,
}


# ---------------------------------------------------------------------------------------------
# Geometry
# ---------------------------------------------------------------------------------------------


@dataclass
class Face:
    """One planar polygon of the body with the decals painted on it (drawn right after it).

    ``points`` is (k, 3) in the car frame; ``normal`` the outward unit normal; decals are
    ``(points (m, 3), material, albedo)``.
    """

    points: np.ndarray
    normal: np.ndarray
    material: int
    albedo: tuple
    decals: list = field(default_factory=list)

    @property
    def normal_t(self) -> tuple:
        return (float(self.normal[0]), float(self.normal[1]), float(self.normal[2]))


@dataclass
class Wheel:
    """A wheel: tyre rings and its outer-face decals, all (k, 3) in the car frame."""

    centre: np.ndarray
    side: int  # +1 on the car's left (y > 0), -1 on its right
    outer: np.ndarray
    inner: np.ndarray
    well: np.ndarray | None
    details: list  # (points, material, albedo) drawn on the outer face when it is visible


@dataclass
class Geometry:
    lower_rim: list  # Face, the lower body faces except its two sides
    lower_sides: list  # Face per side (+y first), concave polygon with arch cut-outs
    cabin: list  # Face, cabin faces
    extras: list  # Face, parts drawn last (spoiler)
    wheels: list  # Wheel
    bounds: np.ndarray  # (2, 3) min/max corner
    footprint: np.ndarray  # (4, 3) on the ground, for the contact shadow


def _dedupe(pts, eps=1e-3):
    out = [pts[0]]
    for p in pts[1:]:
        if abs(p[0] - out[-1][0]) > eps or abs(p[1] - out[-1][1]) > eps:
            out.append(p)
    if len(out) > 1 and abs(out[0][0] - out[-1][0]) < eps and abs(out[0][1] - out[-1][1]) < eps:
        out.pop()
    return out


def _arch(x_axle, r_arch, r_wheel, zc, n=9):
    """Points of a wheel arch cut into the body bottom at height ``zc``, rear side first."""
    s = max(-0.99, min(0.99, (zc - r_wheel) / r_arch))
    phi0 = math.asin(s)
    phis = np.linspace(math.pi - phi0, phi0, n)
    return [(x_axle + r_arch * math.cos(p), r_wheel + r_arch * math.sin(p)) for p in phis]


def clip_polygon(poly, a, b, c):
    """Keep the part of 2D polygon ``poly`` (list of (x, z)) where ``a*x + b*z >= c``."""
    out = []
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        fp, fq = a * p[0] + b * p[1] - c, a * q[0] + b * q[1] - c
        if fp >= 0:
            out.append(p)
        if (fp >= 0) != (fq >= 0):
            t = fp / (fp - fq)
            out.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
    return out


def _strip_face(a, b, hwa, hwb):
    """Quad between profile points a=(x,z), b=(x,z) spanning half-widths hwa, hwb."""
    return np.array(
        [[a[0], -hwa, a[1]], [b[0], -hwb, b[1]], [b[0], hwb, b[1]], [a[0], hwa, a[1]]], dtype=np.float64
    )


def _strip_normal(a, b, hwa, hwb):
    # Profile is counter-clockwise in (x, z) seen from +y, so (dz, -dx) points outwards.
    n = np.array([b[1] - a[1], 0.0, -(b[0] - a[0])])
    return n / (np.linalg.norm(n) + 1e-12)


def _strip_uv(a, b, hwa, hwb, uv):
    """Map decal coordinates on a strip face to 3D: u in [-1, 1] across (+1 = car's left),
    v in [0, 1] from ``a`` to ``b``. ``uv`` is (m, 2)."""
    uv = np.asarray(uv, dtype=np.float64)
    v = uv[:, 1]
    x = a[0] + (b[0] - a[0]) * v
    z = a[1] + (b[1] - a[1]) * v
    hw = hwa + (hwb - hwa) * v
    # A hair outwards so decals never sit behind their own face after projection rounding.
    return np.stack([x, uv[:, 0] * hw, z], axis=1)


def _mirror_u(uv):
    return [(-u, v) for u, v in uv][::-1]


def _grow(uv, margin):
    """Outline pushed ``margin`` outwards from its centroid (kept on the face)."""
    c = np.mean(uv, axis=0)
    out = []
    for u, v in uv:
        du, dv = u - c[0], v - c[1]
        n = math.hypot(du, dv) + 1e-9
        out.append((float(np.clip(u + margin * du / n, -1, 1)), float(np.clip(v + 2 * margin * dv / n, 0, 1))))
    return out


def _rect(u0, u1, v0, v1):
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _ngon(cu, cv, ru, rv, n=8):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip(cu + ru * np.cos(t), cv + rv * np.sin(t)))


def _headlight_uv(shape, size):
    """Left headlight outline on the front fascia (u > 0 is the car's left)."""
    s = size
    if shape == 0:
        return [_rect(0.92 - 0.34 * s, 0.92, 0.9 - 0.32 * s, 0.9)]
    if shape == 1:  # swept back, thin towards the centre
        return [[(0.5, 0.82), (0.94, 0.62 - 0.1 * (s - 1)), (0.96, 0.94), (0.52, 0.94)]]
    if shape == 2:  # twin round lamps
        r = 0.09 * s
        return [_ngon(0.82, 0.76, r, 1.7 * r), _ngon(0.62, 0.76, 0.8 * r, 1.4 * r)]
    return [_rect(0.94 - 0.5 * s, 0.94, 0.84, 0.95)]  # slit


def _taillight_uv(shape, size):
    """Left tail light outline(s) on the rear face (u > 0 is the car's left)."""
    s = size
    if shape == 0:
        return [_rect(0.95 - 0.3 * s, 0.95, 0.92 - 0.3 * s, 0.92)]
    if shape == 1:  # a bar across the whole tail (drawn as one left half)
        return [_rect(0.0, 0.96, 0.8 - 0.1 * s, 0.93)]
    if shape == 2:  # tall and narrow in the corner
        return [_rect(0.96 - 0.16 * s, 0.96, 0.35, 0.95)]
    r = 0.08 * s
    return [_ngon(0.84, 0.76, r, 1.6 * r), _ngon(0.65, 0.76, r, 1.6 * r)]


def _grille_uv(shape, size):
    s = size
    if shape == 0:
        return [_rect(-0.42 * s, 0.42 * s, 0.42, 0.82)]
    if shape == 1:
        return [[(-0.14 * s, 0.28), (0.14 * s, 0.28), (0.24 * s, 0.88), (-0.24 * s, 0.88)]]
    if shape == 2:
        return [_rect(0.03, 0.03 + 0.17 * s, 0.45, 0.86), _rect(-0.03 - 0.17 * s, -0.03, 0.45, 0.86)]
    return [_rect(-0.5 * s, 0.5 * s, 0.2, 0.5), _rect(-0.36 * s, 0.36 * s, 0.72, 0.82)]


def _circle(n):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


_CIRCLE16, _CIRCLE12, _CIRCLE8 = _circle(16), _circle(12), _circle(8)
_HOLES = {}


def _spoke_holes(k: int) -> np.ndarray:
    """(k, 6, 2) openings between ``k`` spokes on a unit rim (annular sectors)."""
    if k not in _HOLES:
        gap = 0.35 if k < 8 else 0.22
        j = np.arange(k)[:, None]
        a = 2 * np.pi * (j + gap / 2 + (1 - gap) * np.array([0.0, 0.5, 1.0])) / k
        outer = 0.88 * np.stack([np.cos(a), np.sin(a)], axis=-1)
        inner = 0.35 * np.stack([np.cos(a[:, ::-1]), np.sin(a[:, ::-1])], axis=-1)
        _HOLES[k] = np.concatenate([outer, inner], axis=1)
    return _HOLES[k]


TRIM_ALBEDO = (0.07, 0.07, 0.08)


def contrast_albedo(paint) -> tuple:
    """Stripe colour that stands out on ``paint``: near-white on dark paint, near-black on light."""
    lum = 0.3 * paint[0] + 0.59 * paint[1] + 0.11 * paint[2]
    return (0.93, 0.93, 0.9) if lum < 0.45 else (0.06, 0.06, 0.07)


def build_geometry(spec: VehicleSpec) -> Geometry:
    """Turn a spec into faces, decals and wheels in the car frame."""
    L, W = spec.length, spec.width
    hw = W / 2
    xf, xr = L / 2, -L / 2
    zc, r = spec.clearance, spec.wheel_radius
    paint = tuple(spec.colour)
    bumper_albedo = TRIM_ALBEDO if spec.dark_bumpers else paint
    stripe_albedo = contrast_albedo(paint)
    x_front_axle = xf - spec.front_overhang
    x_rear_axle = xr + spec.rear_overhang
    r_arch = r + 0.045
    zb = spec.belt_height
    chin, bump = 0.07, 0.1

    # ---- lower body side profile (counter-clockwise seen from the car's left) ----
    three_box = spec.x_rear_window_base - xr > 0.3
    top_front = [(xf - chin, zc), (xf, zc + bump), (xf, spec.nose_height),
                 (xf - spec.nose_length, spec.hood_front_height), (spec.x_windshield_base, zb)]
    if spec.body == "pickup":
        top_rear = [(spec.x_rear_window_base, zb), (xr, zb), (xr, zc + bump), (xr + chin, zc)]
    elif three_box:
        top_rear = [(spec.x_rear_window_base, zb), (xr + 0.12, spec.deck_height),
                    (xr, spec.tail_height), (xr, zc + bump), (xr + chin, zc)]
    else:
        top_rear = [(spec.x_rear_window_base, zb), (xr, spec.tail_height), (xr, zc + bump),
                    (xr + chin, zc)]
    rear_arch = _arch(x_rear_axle, r_arch, r, zc)
    front_arch = _arch(x_front_axle, r_arch, r, zc)
    profile = _dedupe(top_front + top_rear + rear_arch + front_arch)
    arch_pts = {tuple(p) for p in rear_arch + front_arch}

    lower_rim = []
    n = len(profile)
    for i in range(n):
        a, b = profile[i], profile[(i + 1) % n]
        if tuple(a) in arch_pts and tuple(b) in arch_pts:
            continue  # arch interior: filled by wheel and well
        if abs(a[1] - zc) < 1e-6 and abs(b[1] - zc) < 1e-6:
            continue  # underside, never seen from above
        normal = _strip_normal(a, b, hw, hw)
        face = Face(_strip_face(a, b, hw, hw), normal, PAINT, paint)
        lower_rim.append((a, b, face))

    def rim_face(a, b):
        for fa, fb, face in lower_rim:
            if fa == a and fb == b:
                return face
        return None

    # Front fascia: vertical face at the nose.
    fa, fb = (xf, zc + bump), (xf, spec.nose_height)
    fascia = rim_face(fa, fb)
    if fascia is not None:
        fascia.albedo = bumper_albedo
        decals = fascia.decals
        for uv in _grille_uv(spec.grille_shape, spec.grille_size):
            decals.append((_strip_uv(fa, fb, hw, hw, uv), TRIM, (0.05, 0.05, 0.055)))
        decals.append((_strip_uv(fa, fb, hw, hw, _rect(-0.62, 0.62, 0.0, 0.16)), TRIM, TRIM_ALBEDO))
        decals.append((_strip_uv(fa, fb, hw, hw, _rect(-0.15, 0.15, 0.16, 0.36)), PLATE, (0.85, 0.85, 0.8)))
        for uv in _headlight_uv(spec.head_shape, spec.head_size):
            decals.append((_strip_uv(fa, fb, hw, hw, uv), HEADLIGHT, (0.92, 0.93, 0.95)))
            decals.append((_strip_uv(fa, fb, hw, hw, _mirror_u(uv)), HEADLIGHT, (0.92, 0.93, 0.95)))
    if spec.hood_stripes:
        stripes = (_rect(0.1, 0.26, 0.0, 1.0), _rect(-0.26, -0.1, 0.0, 1.0))
        for a, b in (((xf, spec.nose_height), (xf - spec.nose_length, spec.hood_front_height)),
                     ((xf - spec.nose_length, spec.hood_front_height), (spec.x_windshield_base, zb))):
            face = rim_face(a, b)
            if face is not None:
                for uv in stripes:
                    face.decals.append((_strip_uv(a, b, hw, hw, uv), PAINT, stripe_albedo))
    chin_face = rim_face((xf - chin, zc), (xf, zc + bump))
    if chin_face is not None:
        chin_face.material, chin_face.albedo = TRIM, TRIM_ALBEDO

    # Rear face.
    ra, rb = (xr, spec.tail_height), (xr, zc + bump)
    rear = rim_face(ra, rb)
    if rear is not None:
        # v runs from top (0) to bottom (1) here; flip to keep "v up" in the outlines.
        def ruv(uv):
            return _strip_uv(ra, rb, hw, hw, [(u, 1 - v) for u, v in uv])

        # Dark-trimmed cars get a full-width black lower bumper at the back too.
        band = _rect(-1.0, 1.0, 0.0, 0.36) if spec.dark_bumpers else _rect(-0.7, 0.7, 0.0, 0.18)
        rear.decals.append((ruv(band), TRIM, TRIM_ALBEDO))
        rear.decals.append((ruv(_rect(-0.17, 0.17, 0.3, 0.55)), PLATE, (0.85, 0.85, 0.8)))
        for uv in _taillight_uv(spec.tail_shape, spec.tail_size):
            # A dark bezel keeps the lamps' shape readable on red paint.
            rear.decals.append((ruv(_grow(uv, 0.05)), TRIM, (0.1, 0.1, 0.11)))
            rear.decals.append((ruv(_mirror_u(_grow(uv, 0.05))), TRIM, (0.1, 0.1, 0.11)))
            rear.decals.append((ruv(uv), TAILLIGHT, (0.75, 0.05, 0.04)))
            rear.decals.append((ruv(_mirror_u(uv)), TAILLIGHT, (0.75, 0.05, 0.04)))
    rear_chin = rim_face((xr, zc + bump), (xr + chin, zc))
    if rear_chin is not None:
        rear_chin.material, rear_chin.albedo = TRIM, TRIM_ALBEDO
    if spec.body == "pickup":
        bed = rim_face((spec.x_rear_window_base, zb), (xr, zb))
        if bed is not None:
            a, b = (spec.x_rear_window_base, zb), (xr, zb)
            bed.decals.append((_strip_uv(a, b, hw, hw, _rect(-0.9, 0.9, 0.04, 0.96)), TRIM, (0.12, 0.12, 0.13)))

    # ---- lower body sides ----
    prof = np.array(profile)
    upper_band = clip_polygon(profile, 0.0, 1.0, zb - 0.12)
    lower_band = clip_polygon(profile, 0.0, -1.0, -(zc + (spec.cladding_height if spec.dark_bumpers else 0.09)))
    z_stripe = zb - 0.2  # a band of 0.14 m under the shoulder, over the arches' tops
    stripe_band = clip_polygon(clip_polygon(profile, 0.0, 1.0, z_stripe - 0.07), 0.0, -1.0, -(z_stripe + 0.07))
    lower_sides = []
    for side in (1, -1):
        y = side * hw

        def side3(pts2, y=y):
            p = np.asarray(pts2, dtype=np.float64)
            return np.stack([p[:, 0], np.full(len(p), y), p[:, 1]], axis=1)

        face = Face(side3(prof), np.array([0.0, side, 0.0]), PAINT, paint)
        if len(upper_band) >= 3:  # shoulder, catching more light (see shade: tilted normal)
            face.decals.append((side3(upper_band), PAINT_UP, paint))
        if spec.side_stripe and len(stripe_band) >= 3:
            face.decals.append((side3(stripe_band), PAINT, stripe_albedo))
        if len(lower_band) >= 3:
            face.decals.append((side3(lower_band), TRIM if spec.dark_bumpers else PAINT_DOWN,
                                TRIM_ALBEDO if spec.dark_bumpers else paint))
        # Light wrap-arounds make front and back tell apart from the side.
        hz0, hz1 = spec.nose_height - 0.1, spec.nose_height - 0.02
        face.decals.append((side3([(xf - 0.02, hz0), (xf - 0.02, hz1), (xf - 0.22, hz1)]), HEADLIGHT, (0.9, 0.9, 0.92)))
        tz0, tz1 = spec.tail_height - 0.16, spec.tail_height - 0.03
        face.decals.append((side3([(xr + 0.02, tz0), (xr + 0.02, tz1), (xr + 0.2, tz1), (xr + 0.2, tz0 + 0.05)]),
                            TAILLIGHT, (0.75, 0.05, 0.04)))
        lower_sides.append(face)

    # ---- cabin ----
    zr = spec.roof_height
    crown = spec.roof_crown
    cab = [(spec.x_windshield_base, zb), (spec.x_roof_front, zr - crown),
           ((spec.x_roof_front + spec.x_roof_rear) / 2, zr), (spec.x_roof_rear, zr - crown),
           (spec.x_rear_window_base, zb)]
    hw_b = hw - 0.05
    hw_t = hw_b * spec.tumblehome

    def cab_hw(z):
        return hw_b + (hw_t - hw_b) * (z - zb) / (zr - zb)

    cabin = []
    glass = (0.10, 0.12, 0.15)
    roof_albedo = TRIM_ALBEDO if spec.black_roof else paint
    frame_material, frame_albedo = (TRIM, TRIM_ALBEDO) if spec.blackout_pillars else (PAINT, roof_albedo)
    for i in range(4):
        a, b = cab[i], cab[i + 1]
        ha, hb = cab_hw(a[1]), cab_hw(b[1])
        normal = _strip_normal(a, b, ha, hb)
        if i in (0, 3):  # windshield and rear window, with thin pillars left in paint
            face = Face(_strip_face(a, b, ha, hb), normal, frame_material, frame_albedo)
            inset = [(-0.93, 0.03), (0.93, 0.03), (0.9, 0.96), (-0.9, 0.96)]
            if i == 3:
                inset = [(u, 1 - v) for u, v in inset]
            face.decals.append((_strip_uv(a, b, ha, hb, inset), GLASS, glass))
        else:
            face = Face(_strip_face(a, b, ha, hb), normal, PAINT, roof_albedo)
            if spec.hood_stripes and not spec.black_roof:
                for uv in (_rect(0.1, 0.3, 0.0, 1.0), _rect(-0.3, -0.1, 0.0, 1.0)):
                    face.decals.append((_strip_uv(a, b, ha, hb, uv), PAINT, stripe_albedo))
        cabin.append(face)
    # Cabin sides: planes y = side * cab_hw(z), tilted inwards.
    cab_arr = np.array(cab)
    dz = zr - zb
    z0g, z1g = zb + 0.035, zr - crown - 0.06

    def front_edge(z):
        t = (z - zb) / dz
        return spec.x_windshield_base + (spec.x_roof_front - spec.x_windshield_base) * t - spec.a_pillar

    def rear_edge(z):
        t = (z - zb) / dz
        return spec.x_rear_window_base + (spec.x_roof_rear - spec.x_rear_window_base) * t + spec.c_pillar

    glass_poly = [(front_edge(z0g), z0g), (front_edge(z1g), z1g), (rear_edge(z1g), z1g), (rear_edge(z0g), z0g)]
    xs = [p[0] for p in glass_poly]
    x_hi, x_lo = max(xs), min(xs)
    # Split the glass by pillars at fractions from front (x_hi) to rear (x_lo).
    cuts = [x_hi + 1.0]
    for f in spec.window_splits:
        xc = x_hi - f * (x_hi - x_lo)
        cuts += [xc + spec.pillar_width / 2, xc - spec.pillar_width / 2]
    cuts.append(x_lo - 1.0)
    panes = []
    for k in range(0, len(cuts), 2):
        hi, lo = cuts[k], cuts[k + 1]
        pane = clip_polygon(glass_poly, -1.0, 0.0, -hi)  # x <= hi
        pane = clip_polygon(pane, 1.0, 0.0, lo)  # x >= lo
        if len(pane) >= 3:
            panes.append(pane)
    tilt = (hw_b - hw_t) / dz  # |dy/dz|
    for side in (1, -1):
        def cab3(pts2, side=side):
            p = np.asarray(pts2, dtype=np.float64)
            return np.stack([p[:, 0], side * cab_hw(p[:, 1]), p[:, 1]], axis=1)

        normal = np.array([0.0, side, tilt])
        normal /= np.linalg.norm(normal)
        face = Face(cab3(cab_arr), normal, frame_material, TRIM_ALBEDO if spec.blackout_pillars else paint)
        for pane in panes:
            face.decals.append((cab3(pane), GLASS, glass))
        cabin.append(face)

    extras = []
    if spec.spoiler:
        x0 = xr + 0.05
        a, b = (x0 + 0.3, spec.deck_height + 0.1), (x0, spec.deck_height + 0.17)
        extras.append(Face(_strip_face(a, b, hw - 0.08, hw - 0.08), _strip_normal(a, b, 0, 0), TRIM, TRIM_ALBEDO))

    # ---- wheels ----
    wheels = []
    rim_albedo = RIM_COLOURS[spec.rim_colour % len(RIM_COLOURS)]
    rr = r * spec.rim_fraction
    hub_albedo = tuple(c * 0.8 for c in rim_albedo)
    cap_albedo = tuple(min(1.0, c * 1.1) for c in rim_albedo)
    holes = _spoke_holes(spec.spokes) if spec.spokes > 0 else None
    for x_axle, arch in ((x_front_axle, front_arch), (x_rear_axle, rear_arch)):
        centre_xz = np.array([x_axle, r])
        arch_arr = np.asarray(arch)
        for side in (1, -1):
            y_out = side * (hw - 0.015)
            y_face = side * (hw - 0.005)

            def on_face(xz, y):
                return np.stack([xz[..., 0], np.full(xz.shape[:-1], y), xz[..., 1]], axis=-1)

            outer = on_face(centre_xz + r * _CIRCLE16, y_out)
            inner = on_face(centre_xz + r * _CIRCLE16, y_out - side * spec.tyre_width)
            well_pts = on_face(arch_arr, side * hw)
            details = [(on_face(centre_xz + 0.97 * r * _CIRCLE16, y_face), TYRE, (0.1, 0.1, 0.1)),
                       (on_face(centre_xz + rr * _CIRCLE16, y_face), RIM, rim_albedo)]
            if holes is not None:
                for hole in on_face(centre_xz + rr * holes, y_face):
                    details.append((hole, WELL, (0.06, 0.06, 0.07)))
            else:
                details.append((on_face(centre_xz + 0.8 * rr * _CIRCLE12, y_face), CHROME, cap_albedo))
            details.append((on_face(centre_xz + 0.22 * rr * _CIRCLE8, y_face), CHROME, hub_albedo))
            wheels.append(Wheel(np.array([x_axle, y_out, r]), side, outer, inner, well_pts, details))

    all_pts = np.concatenate([f.points for f in lower_sides] + [f.points for f in cabin])
    bounds = np.stack([all_pts.min(0), all_pts.max(0)])
    m = 0.12
    footprint = np.array([[xf + m, hw + m, 0], [xr - m, hw + m, 0], [xr - m, -hw - m, 0], [xf + m, -hw - m, 0]])
    return Geometry([f for _, _, f in lower_rim], lower_sides, cabin, extras, wheels, bounds, footprint)
