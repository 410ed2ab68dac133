"""Latent explorer: move a projected car (or a random one) through W by hand.

    explorer = LatentExplorer.from_images(G, images, names=names, pose_direction=direction)
    explorer.set(pose=20, truncation=0.8)   # the state a user sets with the sliders
    shown = explorer.render()                # .original, .reconstruction, .edited: uint8 [R, R, 3]
    explorer.widget()                        # the same, as ipywidgets sliders (notebook)

The logic (state, latents, rendering, saving) is plain Python and testable without a browser;
:meth:`LatentExplorer.widget` only wires ipywidgets to :meth:`LatentExplorer.set`.

What the sliders do to the source latent ``ws`` [num_ws, w_dim] (a projected target image, or
``G.mapping(z(seed))`` for a random car):

* ``pose``: ``+ c * direction.step()`` on the direction's rows (:func:`dapper.directions.apply_direction`);
  ``pose`` in degrees of yaw when the direction is calibrated (``c = direction.coefficients_for(pose)``:
  its measured response, else ``degrees_per_unit``; given the method's ``pose_annotator``, the car's
  own response, read once per car on its own sweep as the augmentation asks each image), else in its
  own units (``c = pose``);
* ``strength`` and ``perturb_seed``: ``+ strength * std * eps``, eps ~ N(0, I) drawn from the seed,
  std the per-dimension spread of W, on every row (the ``perturb`` augmentation of
  :mod:`dapper.augment`; strength in whitened W units);
* ``components``: ``+ sum_k c_k * sigma_k * u_k`` on the rows ``layers``, u_k the top SeFa
  eigenvectors of those layers' style weights or the top GANSpace principal axes of W, sigma_k the
  spread of W along u_k (so each ``c_k`` is in standard deviations);
* ``truncation``: last, ``w_avg + psi * (w - w_avg)`` on every row (psi 0 gives the mean car).

An update is one synthesis pass: the source latent, its reconstruction, the pose offset, the
perturbation and the component basis are cached.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dapper.data.images import to_uint8
from dapper.directions import apply_direction, own_responses, sefa_basis
from dapper.inversion.projection import project_images
from dapper.utils import atomic_save, json_digest, reports_dir

__all__ = ["ExplorerState", "Rendered", "LatentExplorer", "COMPONENT_METHODS"]

COMPONENT_METHODS = ("sefa", "ganspace")
SOURCES = ("image", "seed")
# Truncation above 1 extrapolates away from the mean car; beyond 2 images are mostly artefacts.
TRUNCATION_RANGE = (0.0, 2.0)
STRENGTH_RANGE = (0.0, 3.0)
COMPONENT_RANGE = 3.0  # sliders span +-3 standard deviations of W along each component
RANDOM_SOURCE = -1  # the image dropdown's value for "random seed"


@dataclass(frozen=True)
class ExplorerState:
    """Everything the sliders set. Floats are plain Python floats; see the module docstring for units.

    source: ``"image"`` (projected image number ``image``) or ``"seed"`` (a random car from ``seed``).
    pose: pose coefficient (degrees when the direction is calibrated). strength: perturbation size
    (whitened W units, >= 0) drawn from ``perturb_seed``. method: ``"sefa"`` or ``"ganspace"``;
    layers: (start, stop) W+ rows the components edit; components: one coefficient (in standard
    deviations) per component. truncation: psi in [0, 2] (1: none).
    """

    source: str = "image"
    image: int = 0
    seed: int = 0
    pose: float = 0.0
    strength: float = 0.0
    perturb_seed: int = 0
    method: str = "sefa"
    layers: tuple[int, int] = (0, 1)
    components: tuple[float, ...] = ()
    truncation: float = 1.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"], d["components"] = list(self.layers), list(self.components)
        return d


@dataclass
class Rendered:
    """What the explorer shows for one state.

    original: uint8 [R, R, 3], the target image as projected (letterboxed to the generator's
    canvas), or the unedited generated car for a seed source; reconstruction: uint8 [R, R, 3],
    ``G.synthesis(ws)`` of the unedited source latent; edited: uint8 [R, R, 3] for ``state``;
    ws: float32 [num_ws, w_dim], the edited latent; seconds: time this render took.
    """

    original: np.ndarray
    reconstruction: np.ndarray
    edited: np.ndarray
    ws: np.ndarray
    state: ExplorerState
    seconds: float



def _finite(name: str, value, low: float | None = None, high: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name}={v:g} is outside [{low:g}, {high:g}]")
    return v


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return int(value)


class LatentExplorer:
    """Interactive edits of latents of a frozen StyleGAN2 generator.

    G: generator with the stylegan2-ada-pytorch interface (``mapping``, ``synthesis``, ``num_ws``,
    ``w_dim``, ``z_dim``, ``img_resolution``); not modified. ws: float [N, num_ws, w_dim] latents of
    N projected images (None: random seeds only). originals: uint8 [N, R, R, 3] or float
    [N, 3, R, R] in [-1, 1], the images ``ws`` were projected from (None: the reconstructions stand
    in). names: N labels for the image dropdown. pose_direction: a :class:`dapper.directions.Direction`
    (None: no pose slider effect); converted to degrees when calibrated. n_components: how many
    SeFa/GANSpace sliders. w_samples, sample_seed: mapped z used for the spread of W, GANSpace
    and w_avg when ``G.mapping`` tracks none. save_dir: where :meth:`save` writes (default
    ``reports_dir("explorer")``). display_scale: the widget shows images enlarged this many
    times (nearest neighbour, so 64 px stay crisp). pose_range: the pose slider's +- bound
    (default 45 degrees, or 3x the RMS spread of W in the direction's units when uncalibrated).
    pose_annotator: the method's pose annotator (``predict(images) -> yaw``); with it, a direction with a
    measured response asks each car for its degrees through the car's own response
    (:func:`dapper.directions.own_responses`, read when the car is first turned), else through the
    direction's.
    """

    def __init__(self, G, ws=None, originals=None, names=None, pose_direction=None, n_components: int = 3,
                 w_samples: int = 2000, sample_seed: int = 0, save_dir=None, display_scale: int = 4,
                 pose_range: float | None = None, noise_mode: str = "const", pose_annotator=None):
        for attr in ("mapping", "synthesis", "num_ws", "w_dim", "z_dim", "img_resolution"):
            if not hasattr(G, attr):
                raise TypeError(f"G lacks {attr!r}: expected a StyleGAN2 generator (dapper.stylegan2.load_generator)")
        self.G = G
        self.device = next(G.parameters()).device
        self.num_ws, self.w_dim, self.resolution = int(G.num_ws), int(G.w_dim), int(G.img_resolution)
        self.noise_mode = noise_mode
        self.display_scale = _integer("display_scale", display_scale)
        if self.display_scale < 1:
            raise ValueError(f"display_scale must be >= 1, got {display_scale}")
        if not 0 <= int(n_components) <= self.w_dim:
            raise ValueError(f"n_components must be in [0, {self.w_dim}], got {n_components}")
        self.n_components = int(n_components)

        if ws is None:
            self.ws = torch.zeros(0, self.num_ws, self.w_dim)
        else:
            self.ws = torch.as_tensor(np.asarray(ws) if not torch.is_tensor(ws) else ws).detach().float().cpu()
            if self.ws.ndim != 3 or tuple(self.ws.shape[1:]) != (self.num_ws, self.w_dim):
                raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}] for this generator, "
                                 f"got {tuple(self.ws.shape)}")
            if not torch.isfinite(self.ws).all():
                raise ValueError("ws holds non-finite values")
        n = len(self.ws)
        self.originals = None if originals is None else self._originals_uint8(originals, n)
        self.names = [f"image {i}" for i in range(n)] if names is None else [str(s) for s in names]
        if len(self.names) != n:
            raise ValueError(f"{len(self.names)} names for {n} images")

        self._w_samples = self._map_samples(int(w_samples), int(sample_seed))
        self.w_mean = self._w_samples.mean(0)
        self.w_std = self._w_samples.std(0)
        w_avg = getattr(G.mapping, "w_avg", None)
        # A freshly built mapping network tracks w_avg as zeros until trained: use the samples' mean.
        self.w_avg = (w_avg.detach().float().cpu() if torch.is_tensor(w_avg) and w_avg.abs().sum() > 0
                      else self.w_mean)

        self.pose_direction, self.pose_units = self._pose(pose_direction)
        if pose_annotator is not None and not callable(getattr(pose_annotator, "predict", None)):
            raise TypeError("pose_annotator must have predict(images) -> yaw in degrees")
        self.pose_annotator = pose_annotator
        self._own_cache: dict = {}
        self._pose_offset = self._direction_offset(self.pose_direction)
        if pose_range is None:
            spread = float((self._w_samples - self.w_mean).square().sum(1).mean().sqrt())
            scale = self.pose_direction.scale if self.pose_direction is not None else 1.0
            pose_range = 45.0 if self.pose_units == "degrees" else round(3 * spread / scale, 3)
        self.pose_range = _finite("pose_range", pose_range, 1e-6)

        self.save_dir = None if save_dir is None else Path(save_dir)
        self._ws_cache: dict = {}
        self._recon_cache: dict = {}
        self._noise_cache: dict = {}
        self._basis_cache: dict = {}
        self._last: Rendered | None = None
        self.state = ExplorerState(source="image" if n else "seed", layers=(0, self.num_ws),
                                   components=(0.0,) * self.n_components)
        self.update_seconds: list[float] = []  # wall time of every widget update (render + PNG + send)
        self.controls: dict = {}
        self.images: dict = {}
        self.status = None
        self._widget = None

    # -----------------------------------------------------------------------------------------
    # Construction helpers

    @classmethod
    def from_images(cls, G, images, masks=None, names=None, settings=None, cache: bool = True,
                    progress: bool = True, on_canvas: bool = False, **kwargs) -> LatentExplorer:
        """Project ``images`` (uint8 [N, H, W, 3] or what :func:`dapper.inversion.projection.project_images`
        takes) into ``G``'s W and explore them; the letterboxed targets are shown as originals.
        ``on_canvas``: the images are already letterboxed onto ``G``'s canvas (real photos from
        ``load_pool(content_size=...)``, with their content masks as ``masks``).
        ``kwargs`` go to the constructor (``pose_direction``, ``n_components``, ...)."""
        proj = project_images(G, images, masks=masks, settings=settings, cache=cache, progress=progress,
                              on_canvas=on_canvas)
        explorer = cls(G, proj.ws, proj.targets, names=names, **kwargs)
        explorer.projection = proj
        return explorer

    def _originals_uint8(self, originals, n: int) -> np.ndarray:
        r = self.resolution
        if torch.is_tensor(originals) and originals.dtype != torch.uint8:
            x = to_uint8(originals)
        else:
            x = np.asarray(originals.cpu() if torch.is_tensor(originals) else originals)
            if x.dtype != np.uint8:
                if x.ndim == 4 and x.shape[1] == 3:  # float NCHW in [-1, 1]
                    x = to_uint8(torch.from_numpy(x.astype(np.float32)))
                else:
                    raise TypeError(f"originals must be uint8 [N, R, R, 3] or float [N, 3, R, R], got {x.dtype}")
        if x.shape != (n, r, r, 3):
            raise ValueError(f"originals must be [{n}, {r}, {r}, 3] (one per ws, at the generator's size), "
                             f"got {tuple(x.shape)}")
        return np.ascontiguousarray(x)

    @torch.no_grad()
    def _map_samples(self, n: int, seed: int) -> torch.Tensor:
        if n < 2:
            raise ValueError(f"w_samples must be >= 2, got {n}")
        z = torch.randn(n, self.G.z_dim, generator=torch.Generator().manual_seed(seed)).to(self.device)
        c = torch.zeros(n, getattr(self.G, "c_dim", 0), device=self.device)
        return self.G.mapping(z, c)[:, 0].float().cpu()

    def _pose(self, direction):
        if direction is None:
            return None, "none"
        if direction.w_dim != self.w_dim:
            raise ValueError(f"pose direction has w_dim {direction.w_dim}, the generator {self.w_dim}")
        if direction.layers[1] > self.num_ws:
            raise ValueError(f"pose direction edits rows {direction.layers}; the generator has {self.num_ws}")
        if direction.units == "degrees" or direction.degrees_per_unit is not None:
            return direction.in_degrees(), "degrees"
        return direction, direction.units

    def _direction_offset(self, direction) -> torch.Tensor:
        """W+ offset of one coefficient unit: float [num_ws, w_dim] (zeros without a direction)."""
        if direction is None:
            return torch.zeros(self.num_ws, self.w_dim)

        return apply_direction(torch.zeros(1, self.num_ws, self.w_dim), direction, [1.0])[0, 0].float()

    # -----------------------------------------------------------------------------------------
    # State

    def set(self, **changes) -> LatentExplorer:
        """Change the state (names of :class:`ExplorerState`); validates everything, then keeps it.

        ``image=i`` also selects the image source; ``seed=s`` alone selects the seed source.
        Raises ValueError/TypeError naming the bad value (the state is then unchanged).
        """
        unknown = set(changes) - {f.name for f in dataclasses.fields(ExplorerState)}
        if unknown:
            raise TypeError(f"unknown explorer setting(s) {sorted(unknown)}; "
                            f"known: {[f.name for f in dataclasses.fields(ExplorerState)]}")
        if "source" not in changes:
            if "image" in changes:
                changes["source"] = "image"
            elif "seed" in changes:
                changes["source"] = "seed"
        self.state = self._validated(dataclasses.replace(self.state, **changes))
        return self

    def _validated(self, s: ExplorerState) -> ExplorerState:
        if s.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {s.source!r}")
        image, seed, perturb_seed = _integer("image", s.image), _integer("seed", s.seed), \
            _integer("perturb_seed", s.perturb_seed)
        n = len(self.ws)
        if s.source == "image" and not 0 <= image < n:
            raise ValueError(f"image={image} does not exist: "
                             + (f"choose 0..{n - 1}" if n else "no projected images, use a seed"))
        if seed < 0 or perturb_seed < 0:
            raise ValueError(f"seeds must be >= 0, got seed={seed}, perturb_seed={perturb_seed}")
        if s.method not in COMPONENT_METHODS:
            raise ValueError(f"method must be one of {COMPONENT_METHODS}, got {s.method!r}")
        try:
            start, stop = (_integer("layers", v) for v in s.layers)
        except ValueError:
            raise ValueError(f"layers must be (start, stop), got {s.layers!r}") from None
        if not 0 <= start < stop <= self.num_ws:
            raise ValueError(f"layers must satisfy 0 <= start < stop <= {self.num_ws}, got {s.layers!r}")
        comps = tuple(s.components)
        if len(comps) != self.n_components:
            raise ValueError(f"components needs {self.n_components} coefficients, got {len(comps)}")
        comps = tuple(_finite(f"components[{k}]", c) for k, c in enumerate(comps))
        return ExplorerState(source=s.source, image=image, seed=seed, pose=_finite("pose", s.pose),
                             strength=_finite("strength", s.strength, *STRENGTH_RANGE), perturb_seed=perturb_seed,
                             method=s.method, layers=(start, stop), components=comps,
                             truncation=_finite("truncation", s.truncation, *TRUNCATION_RANGE))

    # -----------------------------------------------------------------------------------------
    # Latents

    def _source_key(self, s: ExplorerState) -> tuple:
        return ("image", s.image) if s.source == "image" else ("seed", s.seed)

    @torch.no_grad()
    def source_ws(self, state: ExplorerState | None = None) -> torch.Tensor:
        """The unedited latent of the state's source: float [num_ws, w_dim] (cached)."""
        s = state or self.state
        key = self._source_key(s)
        if key not in self._ws_cache:
            if s.source == "image":
                ws = self.ws[s.image]
            else:
                z = torch.randn(1, self.G.z_dim, generator=torch.Generator().manual_seed(s.seed)).to(self.device)
                c = torch.zeros(1, getattr(self.G, "c_dim", 0), device=self.device)
                ws = self.G.mapping(z, c)[0].float().cpu()  # truncation comes later, as a slider
            self._ws_cache[key] = ws
        return self._ws_cache[key]

    def _noise(self, seed: int) -> torch.Tensor:
        if seed not in self._noise_cache:
            if len(self._noise_cache) > 256:
                self._noise_cache.clear()
            eps = torch.randn(self.w_dim, generator=torch.Generator().manual_seed(seed))
            self._noise_cache[seed] = self.w_std * eps
        return self._noise_cache[seed]

    def component_basis(self, method: str | None = None, layers: tuple[int, int] | None = None) -> tuple:
        """(unit directions float [k, w_dim], spread of W along each float [k]) for ``method`` on
        ``layers`` (default: the state's); cached. SeFa: top eigenvectors of the style weights of
        the layers reading those rows; GANSpace: top principal axes of W (layer-independent)."""
        method = method or self.state.method
        layers = tuple(layers or self.state.layers)
        key = (method, layers if method == "sefa" else None)
        if key not in self._basis_cache:
            k = self.n_components
            centred = (self._w_samples - self.w_mean).double()
            if method == "sefa":
                _, vecs = sefa_basis(self.G, layers)
                u = torch.from_numpy(np.ascontiguousarray(vecs[:, :k].T))
            elif method == "ganspace":
                _, _, vt = torch.linalg.svd(centred, full_matrices=False)
                u = vt[:k]
            else:
                raise ValueError(f"method must be one of {COMPONENT_METHODS}, got {method!r}")
            sigma = (centred @ u.T).std(0)
            self._basis_cache[key] = (u.float(), sigma.float())
        return self._basis_cache[key]

    def pose_response(self, state: ExplorerState | None = None) -> tuple:
        """``(direction, kind)`` whose response the pose slider's degrees go through for the state's
        car (default: the current one): ``"own"``, the car's own response (with a ``pose_annotator``
        and a direction with a measured response; read once per car), else ``"direction"``, the
        direction's (also for a car whose turn the annotator does not read both ways)."""
        d = self.pose_direction
        if d is None or self.pose_units != "degrees" or self.pose_annotator is None or d.response() is None:
            return d, "direction"
        key = self._source_key(state or self.state)
        if key not in self._own_cache:
            (own,), n_kept = own_responses(self.G, d, self.pose_annotator, self.source_ws(state)[None])
            self._own_cache[key] = (own, "direction" if n_kept else "own")
        return self._own_cache[key]

    def pose_coefficient(self, pose: float, state: ExplorerState | None = None) -> float:
        """The direction's coefficient the pose slider's value moves by for the state's car: degrees
        go through its response (:meth:`pose_response`), as the augmentation asks
        (``Direction.coefficients_for``)."""
        if self.pose_units == "degrees" and pose:
            return float(self.pose_response(state)[0].coefficients_for(pose))
        return float(pose)

    def edited_ws(self, state: ExplorerState | None = None) -> torch.Tensor:
        """The latent shown for ``state`` (default: the current one): float [num_ws, w_dim]."""
        s = state or self.state
        ws = self.source_ws(s).clone()
        if s.pose:
            ws += self.pose_coefficient(s.pose, s) * self._pose_offset
        if s.strength:
            ws += s.strength * self._noise(s.perturb_seed)  # a move in W: every row
        if any(s.components):
            u, sigma = self.component_basis(s.method, s.layers)
            coeff = torch.tensor(s.components, dtype=torch.float32)
            start, stop = s.layers
            ws[start:stop] += (coeff * sigma) @ u
        if s.truncation != 1:
            ws = self.w_avg + s.truncation * (ws - self.w_avg)
        return ws

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor) -> np.ndarray:
        """ws float [num_ws, w_dim] -> uint8 [R, R, 3] (one synthesis pass, constant noise)."""
        img = self.G.synthesis(ws[None].to(self.device), noise_mode=self.noise_mode)
        return to_uint8(img.clamp(-1, 1))[0]

    # -----------------------------------------------------------------------------------------
    # Rendering

    def render(self, state: ExplorerState | None = None) -> Rendered:
        """Original, reconstruction and edited image for ``state`` (default: the current one)."""
        s = self.state if state is None else self._validated(state)
        if self._last is not None and self._last.state == s:
            return self._last
        t0 = time.perf_counter()
        key = self._source_key(s)
        if key not in self._recon_cache:
            self._recon_cache[key] = self.synthesize(self.source_ws(s))
        recon = self._recon_cache[key]
        original = self.originals[s.image] if s.source == "image" and self.originals is not None else recon
        ws = self.edited_ws(s)
        unedited = (not s.pose and not s.strength and not any(s.components) and s.truncation == 1)
        edited = recon if unedited else self.synthesize(ws)
        out = Rendered(original, recon, edited, ws.numpy().astype(np.float32), s, time.perf_counter() - t0)
        self._last = out
        return out

    def describe(self, state: ExplorerState | None = None) -> str:
        """The state in words (a caption for saved images)."""
        s = state or self.state
        src = f"{self.names[s.image]}" if s.source == "image" else f"random car, seed {s.seed}"
        unit = {"degrees": " deg", "none": " (no direction)"}.get(self.pose_units, f" {self.pose_units}")
        if s.pose and self.pose_response(s)[1] == "own":
            unit += " (its own response)"
        comps = ", ".join(f"{c:+.2f}" for c in s.components)
        return (f"{src}; pose {s.pose:+g}{unit}; perturbation {s.strength:g} (seed {s.perturb_seed}); "
                f"{s.method} rows {s.layers[0]}-{s.layers[1]} [{comps}]; truncation {s.truncation:g}")

    # -----------------------------------------------------------------------------------------
    # Saving

    def save(self, folder=None) -> dict:
        """Write the edited image (PNG, generator resolution), its latent (``.npy``, float32
        [num_ws, w_dim]) and the state (``.json``), each atomically, to ``folder`` (default:
        ``save_dir`` or ``reports_dir("explorer")``). Names come from the source and a hash of
        the state, so saving the same state twice writes the same files. Returns the paths."""
        shown = self.render()
        folder = Path(folder) if folder is not None else (self.save_dir or reports_dir("explorer"))
        folder.mkdir(parents=True, exist_ok=True)
        s = shown.state
        used, kind = self.pose_response(s) if s.pose else (None, None)  # none read for an unturned car
        record = {"state": s.to_dict(), "description": self.describe(s), "pose_units": self.pose_units,
                  "source_name": self.names[s.image] if s.source == "image" else None,
                  "generator": {"num_ws": self.num_ws, "w_dim": self.w_dim, "img_resolution": self.resolution},
                  "pose_direction": None if self.pose_direction is None else
                  {"method": self.pose_direction.method, "layers": list(self.pose_direction.layers),
                   "scale": float(self.pose_direction.scale), "units": self.pose_direction.units,
                   "pose_coefficient": self.pose_coefficient(s.pose, s),
                   "response": used.metadata.get("response") if used is not None else None,
                   "response_kind": kind}}
        digest = json_digest(record["state"], 10)
        tag = f"image{s.image:03d}" if s.source == "image" else f"seed{s.seed}"
        stem = folder / f"{tag}_{digest}"
        paths = {"png": stem.with_suffix(".png"), "npy": stem.with_suffix(".npy"), "json": stem.with_suffix(".json")}
        atomic_save(paths["npy"], lambda p: np.save(p, shown.ws))
        atomic_save(paths["json"], lambda p: p.write_text(json.dumps(record, indent=1) + "\n"))
        # The image last: a PNG on disk means its latent and state are there too.
        atomic_save(paths["png"], lambda p: Image.fromarray(shown.edited).save(p))
        return paths

    # -----------------------------------------------------------------------------------------
    # ipywidgets front end

    @staticmethod
    def _png(image: np.ndarray) -> bytes:
        # At the generator's resolution: the browser enlarges it (pixelated, see widget()), which
        # costs nothing here, where a 4x larger PNG would cost 16x the encoding time.
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)  # speed over size
        return buf.getvalue()

    def widget(self):
        """The explorer as an ipywidgets VBox (built once; later calls return the same one).

        ``explorer.controls`` maps state names to their widgets, ``explorer.images`` holds the
        three Image widgets (``original``, ``reconstruction``, ``edited``), ``explorer.status``
        the line that reports update times, saved files and errors.
        """
        if self._widget is not None:
            return self._widget
        import ipywidgets as W

        s = self.state
        slider = dict(continuous_update=False, readout=True, style={"description_width": "150px"},
                      layout=W.Layout(width="520px"))
        options = [(name, i) for i, name in enumerate(self.names)] + [("random seed", RANDOM_SOURCE)]
        c = self.controls
        c["image"] = W.Dropdown(options=options, value=s.image if s.source == "image" else RANDOM_SOURCE,
                                description="image", style=slider["style"])
        c["seed"] = W.BoundedIntText(value=s.seed, min=0, max=2**31 - 1, description="seed",
                                     disabled=s.source != "seed", layout=W.Layout(width="220px"))
        pose_label = {"degrees": "pose (degrees)", "none": "pose (no direction)"}.get(
            self.pose_units, f"pose ({self.pose_units})")
        r = self.pose_range
        c["pose"] = W.FloatSlider(value=s.pose, min=-r, max=r, step=1.0 if self.pose_units == "degrees" else r / 100,
                                  description=pose_label, disabled=self.pose_direction is None, **slider)
        c["strength"] = W.FloatSlider(value=s.strength, min=STRENGTH_RANGE[0], max=STRENGTH_RANGE[1], step=0.05,
                                      description="perturbation", **slider)
        c["perturb_seed"] = W.IntSlider(value=s.perturb_seed, min=0, max=99, description="perturbation seed",
                                        **slider)
        c["method"] = W.ToggleButtons(options=[("SeFa", "sefa"), ("GANSpace", "ganspace")], value=s.method,
                                      description="components", style={"description_width": "150px"})
        c["layers"] = W.IntRangeSlider(value=s.layers, min=0, max=self.num_ws, step=1,
                                       description="component rows", **slider)
        comp = [W.FloatSlider(value=v, min=-COMPONENT_RANGE, max=COMPONENT_RANGE, step=0.1,
                              description=f"component {k + 1} (sd)", **slider) for k, v in enumerate(s.components)]
        c["components"] = comp
        c["truncation"] = W.FloatSlider(value=s.truncation, min=TRUNCATION_RANGE[0], max=TRUNCATION_RANGE[1],
                                        step=0.05, description="truncation", **slider)
        save = W.Button(description="Save image + latent", icon="save", button_style="primary",
                        layout=W.Layout(width="200px"))
        self.save_button = save
        self.status = W.HTML(value="")
        for name, w in [("pose", c["pose"]), ("image", c["image"]), ("truncation", c["truncation"])]:
            w.add_class(f"dapper-{name}")  # stable hooks for the browser test

        shown = self.render()
        size = f"{self.resolution * self.display_scale}px"
        panels = []
        for name, title in [("original", "original"), ("reconstruction", "reconstruction"), ("edited", "edited")]:
            img = W.Image(value=self._png(getattr(shown, name)), format="png", layout=W.Layout(width=size, height=size))
            img.add_class(f"dapper-{name}")
            self.images[name] = img
            panels.append(W.VBox([W.HTML(f"<b>{title}</b>"), img]))

        def on_change(name):
            def handler(change):
                self._on_control(name, change["new"])
            return handler

        for name in ("image", "seed", "pose", "strength", "perturb_seed", "method", "layers", "truncation"):
            c[name].observe(on_change(name), names="value")
        for k, w in enumerate(comp):
            w.observe(on_change(("components", k)), names="value")
        save.on_click(lambda _: self._on_save())

        # Nearest-neighbour enlargement, so 64 px images stay crisp instead of blurred.
        style = W.HTML("<style>.dapper-latent-explorer img {image-rendering: pixelated;}</style>")
        self._widget = W.VBox([
            style,
            W.HBox([c["image"], c["seed"]]),
            W.HBox(panels),
            c["pose"], c["strength"], c["perturb_seed"], c["method"], c["layers"], *comp, c["truncation"],
            W.HBox([save, self.status]),
        ])
        self._widget.add_class("dapper-latent-explorer")
        return self._widget

    def _on_control(self, name, value) -> None:
        t0 = time.perf_counter()
        try:
            if name == "image":
                if value == RANDOM_SOURCE:
                    self.set(source="seed", seed=self.controls["seed"].value)
                else:
                    self.set(source="image", image=value)
                self.controls["seed"].disabled = value != RANDOM_SOURCE
            elif name == "seed":
                if self.state.source != "seed":
                    return  # the seed box only matters for the random source
                self.set(seed=value)
            elif isinstance(name, tuple):
                comps = list(self.state.components)
                comps[name[1]] = value
                self.set(components=tuple(comps))
            else:
                self.set(**{name: tuple(value) if name == "layers" else value})
            self._show(source_changed=name in ("image", "seed"))
        except (ValueError, TypeError) as err:
            self.status.value = f"<span style='color:#b00'>not applied: {err}</span>"
            return
        dt = time.perf_counter() - t0
        self.update_seconds.append(dt)
        self.status.value = f"update {dt * 1000:.0f} ms"

    def _show(self, source_changed: bool = False) -> None:
        shown = self.render()
        if source_changed:
            self.images["original"].value = self._png(shown.original)
            self.images["reconstruction"].value = self._png(shown.reconstruction)
        self.images["edited"].value = self._png(shown.edited)

    def _on_save(self) -> None:
        try:
            paths = self.save()
        except OSError as err:
            self.status.value = f"<span style='color:#b00'>not saved: {err}</span>"
            return
        self.status.value = f"saved {paths['png'].name} and {paths['npy'].name} in {paths['png'].parent}"

    def measure_latency(self, n: int = 20, control: str = "pose") -> dict:
        """Time ``n`` slider updates as a user makes them: the slider's value is set and the
        widget's handler renders, encodes the PNG and updates the Image (a browser adds its own
        drawing time). Each update uses a new value, so nothing is served from the last-render
        cache. Restores the slider afterwards.

        Returns ``median_ms``, ``p90_ms``, ``max_ms`` (wall clock) and ``cpu_median_ms`` (this
        process's CPU time per update: what an update costs on an otherwise idle core, whatever
        else the machine is running), with ``n``, ``control`` and ``torch_threads``.
        """
        self.widget()
        w = self.controls[control]
        if w.disabled:
            w = self.controls["truncation"]
        start = w.value
        values = np.linspace(w.min, w.max, n + 1)
        values = values[1:] if values[0] == start else values[:n]
        wall, cpu = [], []
        for v in values:
            before = len(self.update_seconds)
            t0, c0 = time.perf_counter(), time.process_time()
            w.value = float(v)
            if len(self.update_seconds) > before:  # the handler ran (and did not refuse the value)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        w.value = start
        if not wall:
            raise RuntimeError(f"the {w.description!r} slider never updated the image")
        ms, cpu_ms = np.asarray(wall) * 1000, np.asarray(cpu) * 1000
        return {"control": w.description, "n": len(ms), "median_ms": float(np.median(ms)),
                "p90_ms": float(np.percentile(ms, 90)), "max_ms": float(ms.max()),
                "cpu_median_ms": float(np.median(cpu_ms)), "torch_threads": torch.get_num_threads()}
