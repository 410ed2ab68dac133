"""Parametric vehicle bodies for the ``toycars`` world: specs and 3D geometry (their random
priors are in ``_toycars_priors``).

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
