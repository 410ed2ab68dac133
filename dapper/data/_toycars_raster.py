"""Camera, lighting, backgrounds and polygon drawing for the ``toycars`` renderer.

Camera convention (degrees): the camera orbits the car's centre. ``yaw = 0`` looks at the nose
(front view); ``yaw = 90`` shows the car's *right* side, nose pointing to the image's right;
``yaw = 180`` is the rear view; ``yaw = 270`` the left side, nose to the image's left.
``elevation`` is the angle of the camera above the horizontal, ``distance`` the metres from the
camera to the point it looks at (the middle of the car's bounding box). The sun is fixed
*relative to the camera* (upper left, a little in front), so shading depends on pose only.

Everything is drawn at ``ss`` times the output size with Pillow and box-filtered down, which
anti-aliases edges; the vehicle is drawn on its own RGBA layer whose alpha is the mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ._toycars_geometry import (
    CHROME,
    GLASS,
    HEADLIGHT,
    PAINT,
    PAINT_DOWN,
    PAINT_UP,
    PLATE,
    RIM,
    TAILLIGHT,
    TRIM,
    TYRE,
    WELL,
    Geometry,
)

FOV_DEG = 40.0


@dataclass
class Camera:
    position: np.ndarray  # (3,) car frame
    right: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    focal: float  # pixels at the drawing resolution
    centre: float  # principal point (square image)
    elevation: float  # radians
    height: float  # camera height above the ground, metres
    ground_distance: float  # horizontal distance camera -> look-at point

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) car-frame points -> (N, 2) pixel coordinates (x right, y down)."""
        v = pts - self.position
        cam = v @ np.stack([self.right, self.up, self.forward], axis=1)
        z = np.maximum(cam[:, 2], 1e-3)
        out = np.empty((len(pts), 2))
        out[:, 0] = self.centre + self.focal * cam[:, 0] / z
        out[:, 1] = self.centre - self.focal * cam[:, 1] / z
        return out

    def sun(self) -> np.ndarray:
        s = -0.55 * self.right + 0.75 * self.up - 0.38 * self.forward
        return s / np.linalg.norm(s)


def make_camera(target: np.ndarray, yaw_deg: float, elevation_deg: float, distance: float, res: int) -> Camera:
    yaw, el = math.radians(yaw_deg), math.radians(elevation_deg)
    offset = np.array([math.cos(el) * math.cos(yaw), -math.cos(el) * math.sin(yaw), math.sin(el)])
    pos = target + distance * offset
    fwd = -offset
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    focal = (res / 2) / math.tan(math.radians(FOV_DEG) / 2)
    return Camera(pos, right, up, fwd, focal, res / 2, el, float(pos[2]), distance * math.cos(el))


def fit_distance(spec, fill: float = 0.85, yaw: float | None = None, elevation: float = 12.0) -> float:
    """Distance at which the car fills ``fill`` of the image width.

    With ``yaw`` (degrees) the car's box as seen from ``yaw``/``elevation`` spans ``fill`` of the
    width (and at most ``fill`` of the height), the way photos are cropped to the car: front and
    rear views are framed as tightly as side views. Without it, the (slightly flattened)
    bounding sphere spans ``fill`` whatever the yaw (world v1's framing).
    """
    half = np.array([spec.length / 2, spec.width / 2, 0.8 * spec.roof_height / 2])
    d = float(np.linalg.norm(half)) / (fill * math.tan(math.radians(FOV_DEG) / 2))
    if yaw is None:
        return d
    corners = np.array([[sx * spec.length / 2, sy * spec.width / 2, z]
                        for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, spec.roof_height)])
    target = np.array([0.0, 0.0, spec.roof_height / 2])
    for _ in range(4):  # perspective makes the extent slightly non-linear in 1/d: iterate
        p = make_camera(target, float(yaw), float(elevation), d, 1).project(corners)
        # twice the farthest reach from the image centre: the near end, larger in perspective,
        # stays inside ``fill`` too, so the whole car is in the picture
        extent = 2 * float(np.abs(p - 0.5).max())
        d *= extent / fill
    return d


# ---------------------------------------------------------------------------------------------
# Shading
# ---------------------------------------------------------------------------------------------


def _dot(a, b) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _unit(a) -> tuple:
    n = math.sqrt(a[0] * a[0] + a[1] * a[1] + a[2] * a[2])
    return (a[0] / n, a[1] / n, a[2] / n)


def shade(material: int, albedo, normal, sun, view, sky) -> tuple:
    """RGBA 0-255 of a flat face. ``normal``, ``sun``, ``view`` (from the face to the camera) are
    unit 3-vectors, ``albedo`` and ``sky`` RGB in [0, 1]. Plain floats: this runs ~40x an image."""
    if material == PAINT_UP:
        normal = _unit((normal[0], normal[1], normal[2] + 0.55))
    elif material == PAINT_DOWN:
        normal = _unit((normal[0], normal[1], normal[2] - 0.9))
    diff = max(0.0, _dot(normal, sun))
    h = (sun[0] + view[0], sun[1] + view[1], sun[2] + view[2])
    hn = math.sqrt(_dot(h, h)) + 1e-9
    spec = max(0.0, _dot(normal, h) / hn) ** 30
    up = max(0.0, float(normal[2]))
    a0, a1, a2 = albedo
    if material in (PAINT, PAINT_UP, PAINT_DOWN):
        k, s_up, add = 0.32 + 0.78 * diff, 0.10 * up, 0.35 * spec
        c = [a0 * k + s_up * sky[0] + add, a1 * k + s_up * sky[1] + add, a2 * k + s_up * sky[2] + add]
        if material == PAINT_DOWN:
            c = [x * 0.75 for x in c]
    elif material == GLASS:
        fres = 1.0 - abs(_dot(normal, view))
        s_up, add = 0.28 * up + 0.12 * fres, 0.5 * spec
        c = [a0 + s_up * sky[0] + add, a1 + s_up * sky[1] + add, a2 + s_up * sky[2] + add]
    elif material in (TRIM, TYRE, WELL):
        k, s_up = 0.7 + 0.6 * diff, 0.04 * up
        c = [a0 * k + s_up * sky[0], a1 * k + s_up * sky[1], a2 * k + s_up * sky[2]]
    elif material == HEADLIGHT:
        k = 0.78 + 0.25 * diff
        c = [a0 * k, a1 * k, a2 * k]
    elif material == TAILLIGHT:
        k, add = 0.8 + 0.35 * diff, 0.1 * spec
        c = [a0 * k + add, a1 * k + add, a2 * k + add]
    elif material in (CHROME, RIM):
        k, add = 0.55 + 0.5 * diff, 0.25 * spec
        c = [a0 * k + add, a1 * k + add, a2 * k + add]
    elif material == PLATE:
        k = 0.55 + 0.45 * diff
        c = [a0 * k, a1 * k, a2 * k]
    else:
        c = [a0, a1, a2]
    return (int(min(1.0, max(0.0, c[0])) * 255.0), int(min(1.0, max(0.0, c[1])) * 255.0),
            int(min(1.0, max(0.0, c[2])) * 255.0), 255)


# ---------------------------------------------------------------------------------------------
# Background: image-space sky and ground, horizon clutter, ground markings
# ---------------------------------------------------------------------------------------------

SKIES = (  # (zenith, horizon)
    ((0.30, 0.50, 0.85), (0.75, 0.85, 0.95)),  # clear
    ((0.45, 0.62, 0.88), (0.88, 0.90, 0.92)),  # hazy
    ((0.62, 0.64, 0.68), (0.83, 0.84, 0.86)),  # overcast
    ((0.30, 0.35, 0.60), (0.95, 0.70, 0.50)),  # dusk
    ((0.55, 0.70, 0.90), (0.95, 0.95, 0.97)),  # bright
)
GROUNDS = np.array((  # (near, far)
    ((0.30, 0.30, 0.31), (0.52, 0.53, 0.55)),  # asphalt
    ((0.55, 0.54, 0.52), (0.70, 0.70, 0.69)),  # concrete
    ((0.22, 0.38, 0.16), (0.45, 0.55, 0.38)),  # grass
    ((0.55, 0.46, 0.33), (0.72, 0.66, 0.55)),  # sand / dirt
    ((0.38, 0.33, 0.30), (0.58, 0.55, 0.52)),  # cobbles
    ((0.80, 0.82, 0.85), (0.88, 0.90, 0.93)),  # snow
))
GROUND_WEIGHTS = np.array([0.34, 0.2, 0.18, 0.12, 0.1, 0.06])


@dataclass
class BackgroundStyle:
    seed: int
    sky: tuple
    horizon: tuple
    near: tuple
    far: tuple
    noise: float


def background_style(seed: int) -> BackgroundStyle:
    rng = np.random.default_rng([int(seed), 7])
    zen, hor = SKIES[rng.integers(len(SKIES))]
    near, far = GROUNDS[rng.choice(len(GROUNDS), p=GROUND_WEIGHTS / GROUND_WEIGHTS.sum())]
    j = rng.normal(0, 0.04, 4)
    near = tuple(np.clip(np.array(near) * (1 + j[0]) + j[1] * 0.3, 0, 1))
    far = tuple(np.clip(np.array(far) * (1 + j[0]) + j[1] * 0.3, 0, 1))
    zen = tuple(np.clip(np.array(zen) + j[2], 0, 1))
    hor = tuple(np.clip(np.array(hor) + j[3] * 0.5, 0, 1))
    return BackgroundStyle(int(seed), zen, hor, near, far, float(rng.uniform(1.0, 3.5)))


def _rgba(c, a=255):
    return (int(c[0] * 255), int(c[1] * 255), int(c[2] * 255), a)


def _ground_to_image(cam: Camera, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Ground points ``a`` metres beyond the look-at point (away from the camera), ``b`` metres
    to the camera's right -> pixels. Camera-relative so the background does not depend on yaw."""
    el = cam.elevation
    fwd = cam.ground_distance + a
    hc = cam.height
    z = np.maximum(fwd * math.cos(el) + hc * math.sin(el), 0.05)
    y = fwd * math.sin(el) - hc * math.cos(el)
    return np.stack([cam.centre + cam.focal * b / z, cam.centre - cam.focal * y / z], axis=1)


def draw_background(style: BackgroundStyle, cam: Camera, res: int) -> tuple[Image.Image, float]:
    """Sky, ground and clutter at the drawing resolution; returns the image and horizon row."""
    rng = np.random.default_rng([style.seed, 11])
    y_h = cam.centre - cam.focal * math.tan(cam.elevation)
    rows = np.arange(res, dtype=np.float64) + 0.5
    t_sky = np.clip((y_h - rows) / (0.9 * res), 0, 1) ** 0.7
    t_gnd = np.clip((rows - y_h) / max(res - y_h, 1.0), 0, 1) ** 0.55
    sky = np.array(style.horizon) + (np.array(style.sky) - np.array(style.horizon)) * t_sky[:, None]
    haze = 0.5 * (np.array(style.far) + np.array(style.horizon))
    gnd = haze + (np.array(style.near) - haze) * t_gnd[:, None]
    col = np.where((rows < y_h)[:, None], sky, gnd)
    strip = Image.fromarray((col * 255).astype(np.uint8)[:, None, :])
    img = strip.resize((res, res), Image.NEAREST)
    draw = ImageDraw.Draw(img, "RGBA")

    # Horizon clutter: buildings, trees, hills (only where the horizon is in view).
    if 0 < y_h < res:
        kind = rng.integers(4)
        haze_c = np.array(style.horizon)
        if kind in (0, 3):  # skyline
            x = -rng.uniform(0, 0.1) * res
            while x < res:
                w = rng.uniform(0.06, 0.22) * res
                h = rng.uniform(0.04, 0.3) * res * (0.6 if kind == 3 else 1.0)
                c = np.clip(rng.uniform(0.25, 0.75) * np.array([1, 1, 1]) + rng.normal(0, 0.05, 3), 0, 1)
                c = 0.55 * c + 0.45 * haze_c
                draw.rectangle([x, y_h - h, x + w, y_h + 1], fill=_rgba(c))
                if rng.random() < 0.6:  # rows of windows
                    wc = _rgba(c * 0.7)
                    for yy in np.arange(y_h - h + 0.05 * res, y_h - 0.03 * res, 0.05 * res):
                        draw.rectangle([x + 0.15 * w, yy, x + 0.85 * w, yy + 0.018 * res], fill=wc)
                x += w + rng.uniform(-0.02, 0.08) * res
        if kind in (1, 3):  # trees
            for _ in range(rng.integers(3, 9)):
                cx = rng.uniform(0, res)
                h = rng.uniform(0.06, 0.25) * res
                c = np.clip(np.array([0.15, 0.32, 0.14]) + rng.normal(0, 0.05, 3), 0, 1)
                c = 0.7 * c + 0.3 * haze_c
                draw.rectangle([cx - 0.01 * res, y_h - 0.3 * h, cx + 0.01 * res, y_h + 1], fill=_rgba(c * 0.6))
                draw.ellipse([cx - 0.45 * h, y_h - h, cx + 0.45 * h, y_h - 0.25 * h], fill=_rgba(c))
        if kind == 2:  # hills
            xs = np.linspace(-0.1 * res, 1.1 * res, 9)
            hs = rng.uniform(0.02, 0.15, len(xs)) * res
            c = 0.6 * np.array(style.far) + 0.4 * haze_c
            pts = [(float(x), float(y_h - h)) for x, h in zip(xs, hs)] + [(1.1 * res, y_h + 1), (-0.1 * res, y_h + 1)]
            draw.polygon(pts, fill=_rgba(c * 0.9))
        if rng.random() < 0.4:  # a pole or two
            for _ in range(rng.integers(1, 3)):
                px = rng.uniform(0, res)
                top = y_h - rng.uniform(0.2, 0.5) * res
                draw.rectangle([px, top, px + 0.012 * res, y_h + 0.02 * res], fill=(60, 60, 65, 255))

    # Ground markings and patches (in ground metres, camera-relative).
    n_marks = rng.integers(0, 4)
    for _ in range(n_marks):
        kind = rng.integers(3)
        if kind == 0:  # parking bays / lane stripes parallel to the view
            c = (235, 235, 225, int(rng.uniform(90, 200))) if rng.random() < 0.7 else (225, 190, 40, 170)
            angle = rng.uniform(-0.4, 0.4) + (math.pi / 2 if rng.random() < 0.5 else 0.0)
            spacing = rng.uniform(2.4, 3.5)
            off = rng.uniform(-6, 6)
            for k in range(-3, 4):
                p0 = np.array([-4.0, off + k * spacing])
                d = np.array([math.cos(angle), math.sin(angle)])
                q = np.stack([p0 - 6 * d, p0 + 6 * d])
                nrm = np.array([-d[1], d[0]]) * 0.06
                quad = np.stack([q[0] - nrm, q[1] - nrm, q[1] + nrm, q[0] + nrm])
                quad[:, 0] = np.clip(quad[:, 0], -0.7 * cam.ground_distance, 40)
                pts = _ground_to_image(cam, quad[:, 0], quad[:, 1])
                draw.polygon(pts.ravel().tolist(), fill=c)
        elif kind == 1:  # kerb / verge band far behind the car
            a0 = rng.uniform(2.5, 8)
            width = rng.uniform(2.0, 30.0)
            quad = np.array([[a0, -80], [a0, 80], [a0 + width, 80], [a0 + width, -80]], dtype=np.float64)
            pts = _ground_to_image(cam, quad[:, 0], quad[:, 1])
            c = GROUNDS[rng.integers(len(GROUNDS) - 1)][0] * rng.uniform(0.8, 1.2)
            draw.polygon(pts.ravel().tolist(), fill=_rgba(np.clip(c, 0, 1), int(rng.uniform(150, 230))))
            kerb = np.array([[a0, -80], [a0, 80], [a0 + 0.2, 80], [a0 + 0.2, -80]], dtype=np.float64)
            pts = _ground_to_image(cam, kerb[:, 0], kerb[:, 1])
            draw.polygon(pts.ravel().tolist(), fill=(200, 200, 195, 200))
        else:  # darker / lighter patches
            for _ in range(rng.integers(2, 6)):
                ca, cb = rng.uniform(-0.5 * cam.ground_distance, 25), rng.uniform(-12, 12)
                rad = rng.uniform(0.5, 3.0)
                t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
                pts = _ground_to_image(cam, ca + rad * np.cos(t), cb + 1.6 * rad * np.sin(t))
                v = int(rng.uniform(0, 255))
                draw.polygon(pts.ravel().tolist(), fill=(v, v, v, int(rng.uniform(20, 60))))
    return img, y_h


# ---------------------------------------------------------------------------------------------
# Vehicle
# ---------------------------------------------------------------------------------------------


def draw_shadow(img: Image.Image, geom: Geometry, cam: Camera) -> None:
    draw = ImageDraw.Draw(img, "RGBA")
    fp = geom.footprint
    centre = fp.mean(0)
    for scale, alpha in ((1.12, 60), (0.98, 90), (0.85, 80)):
        pts = cam.project(centre + (fp - centre) * np.array([scale, scale * 1.05, 0.0]))
        draw.polygon(pts.ravel().tolist(), fill=(0, 0, 0, alpha))


def vehicle_drawlist(geom: Geometry, cam: Camera, sky) -> list:
    """Polygons to paint, back to front: list of ((k, 3) points, RGBA); a ("hull", wheel) entry
    stands for the tyre tread joining a wheel's outer and inner rings."""
    C = cam.position
    cx, cy, cz = (float(v) for v in C)
    sun = tuple(float(v) for v in cam.sun())
    sky = tuple(float(v) for v in sky)
    out = []

    def view_dir(p):
        return _unit((cx - p[0], cy - p[1], cz - p[2]))

    def add_face(face):
        vd = view_dir(face.points[0])
        n = face.normal_t
        out.append((face.points, shade(face.material, face.albedo, n, sun, vd, sky)))
        for pts, mat, alb in face.decals:
            out.append((pts, shade(mat, alb, n, sun, vd, sky)))

    # Wheels first, far ones first; the body drawn over them leaves them visible in the arches.
    hw = geom.bounds[1][1]
    order = sorted(geom.wheels, key=lambda w: -float(np.sum((w.centre - C) ** 2)))
    tyre = shade(TYRE, (0.06, 0.06, 0.065), (0.0, 0.0, 1.0), sun, (0.0, 0.0, 1.0), sky)
    well_c = (8, 8, 9, 255)
    for w in order:
        near = cy * w.side > hw
        if near:
            out.append((w.well, well_c))
        out.append((w.inner, tyre))
        out.append((w.outer, tyre))
        out.append(("hull", w))
        if near:
            n = (0.0, float(w.side), 0.0)
            vd = view_dir(w.centre)
            for pts, mat, alb in w.details:
                out.append((pts, shade(mat, alb, n, sun, vd, sky)))
    for face in geom.lower_rim:
        if float((C - face.points[0]) @ face.normal) > 1e-6:
            add_face(face)
    for face in geom.lower_sides:
        if float((C - face.points[0]) @ face.normal) > 1e-6:
            add_face(face)
    for face in geom.cabin + geom.extras:
        if float((C - face.points[0]) @ face.normal) > 1e-6:
            add_face(face)
    return out, tyre


def draw_vehicle(layer: Image.Image, geom: Geometry, cam: Camera, sky) -> None:
    items, tyre = vehicle_drawlist(geom, cam, sky)
    # One projection for all points.
    arrays = [payload.outer if isinstance(pts, str) else pts for pts, payload in items]
    sizes = [len(a) for a in arrays]
    proj = cam.project(np.concatenate(arrays))
    draw = ImageDraw.Draw(layer)
    start = 0
    for (pts, colour), k in zip(items, sizes):
        xy = proj[start:start + k]
        start += k
        if isinstance(pts, str):  # tyre tread: quad joining the outer and inner rings' extremes
            w = colour
            inner = cam.project(w.inner)
            t = xy.mean(0) - inner.mean(0)
            if float(t @ t) < 1e-4:
                continue
            nrm = np.array([-t[1], t[0]])
            so, si = xy @ nrm, inner @ nrm
            quad = np.stack([xy[np.argmax(so)], inner[np.argmax(si)], inner[np.argmin(si)], xy[np.argmin(so)]])
            draw.polygon(quad.ravel().tolist(), fill=tyre)
            continue
        draw.polygon(xy.ravel().tolist(), fill=colour)
