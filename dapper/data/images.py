"""Image intake shared by both worlds: decode anything Pillow reads into plain RGB, letterbox it.

Every image that enters the study (toycars renders saved to disk, Stanford Cars photos, a user's
own files) passes through `load_image`, so the rest of dapper only ever sees ``uint8 [H, W, 3]``
RGB arrays. Odd files are converted when the conversion is unambiguous and rejected with an
`ImageIntakeError` carrying a human-readable reason otherwise; `load_images` turns those errors
into logged skips so one bad file never stops a batch.

Conversions (Pillow mode -> RGB):

- ``RGB``: unchanged. ``L``, ``1``, ``YCbCr``, ``CMYK``, palette ``P`` without transparency:
  Pillow's own conversion (Adobe-inverted CMYK JPEGs are already un-inverted by Pillow's decoder).
- anything with transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a ``tRNS`` entry,
  premultiplied ``RGBa``/``La``): composited over a neutral grey so transparent regions carry no
  colour cue a classifier could latch onto.
- 16-bit integer (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) and 32-bit ``I``: read as 16-bit
  intensities, ``v / 257`` rounded; ``I`` values outside ``[0, 65535]`` are min-max normalised.
- float ``F``: ``[0, 1]`` data is scaled by 255, ``[0, 255]`` data is kept, anything else is
  min-max normalised.
- EXIF orientation is applied (`PIL.ImageOps.exif_transpose`), so a phone photo stored sideways
  comes out the way it was shot.

Tensor convention (the generator's): ``float32 [N, 3, H, W]`` in ``[-1, 1]``, see `to_tensor` and
`to_uint8`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

if TYPE_CHECKING:  # torch is imported lazily: plain intake should not pay for it
    import torch

__all__ = [
    "DEFAULT_MIN_SIDE",
    "NEUTRAL_BACKGROUND",
    "ImageIntakeError",
    "crop_box",
    "expand_box",
    "fit_box",
    "letterbox",
    "load_image",
    "load_images",
    "to_tensor",
    "to_uint8",
]

logger = logging.getLogger(__name__)

PathOrFile = str | os.PathLike | IO[bytes]

DEFAULT_MIN_SIDE = 16
NEUTRAL_BACKGROUND = (128, 128, 128)

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I;16S"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class ImageIntakeError(ValueError):
    """A file that cannot enter the study; ``path`` names it, ``reason`` says why in words."""

    def __init__(self, path: object, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep picklable (multiprocessing data loaders) despite two args
        return (type(self), (self.path, self.reason))


def _describe(source: PathOrFile) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<in-memory file>"))


def load_image(
    source: PathOrFile,
    min_side: int = DEFAULT_MIN_SIDE,
    background: tuple[int, int, int] = NEUTRAL_BACKGROUND,
) -> np.ndarray:
    """Decode one image file into ``uint8 [H, W, 3]`` RGB, upright per its EXIF orientation.

    ``source`` is a path or a binary file object. ``min_side``: images whose shorter side is below
    it are rejected (a 4x4 thumbnail says nothing about a car). ``background``: RGB that
    transparent pixels are composited over.

    Raises `ImageIntakeError` for a missing file, a non-image, a truncated or corrupt image, a
    decompression bomb, a pixel mode that has no sensible RGB reading, or a tiny image.
    """
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise ImageIntakeError(name, "file not found")
        if not path.is_file():
            raise ImageIntakeError(name, "not a regular file")
    try:
        with Image.open(source) as im:
            im.load()  # decode now: truncation and corruption only show up here
            image = im
            try:
                image = ImageOps.exif_transpose(im)
            except Exception as exc:  # noqa: BLE001 - bad EXIF should not cost the picture
                logger.warning("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
            if image is None:  # exif_transpose(in_place=False) never returns None; be safe
                image = im
    except UnidentifiedImageError:
        raise ImageIntakeError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageIntakeError(name, f"too many pixels to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports short files as OSError('image file is truncated ...') and broken
        # headers as SyntaxError/ValueError depending on the plugin.
        raise ImageIntakeError(name, f"truncated or corrupt image ({exc})") from None

    width, height = image.size
    if min(width, height) < min_side:
        raise ImageIntakeError(name, f"too small: {width}x{height} px, shorter side below {min_side} px")
    return _to_rgb_array(image, name, background)


def _to_rgb_array(image: Image.Image, name: str, background: tuple[int, int, int]) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = _high_depth_to_uint8(np.asarray(image), mode)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, tuple(background) + (255,))
        return np.array(Image.alpha_composite(canvas, rgba).convert("RGB"), dtype=np.uint8)
    try:
        return np.array(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as exc:
        raise ImageIntakeError(name, f"unsupported pixel mode {mode!r} ({exc})") from None


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map a single-channel 16-bit, 32-bit integer or float plane to ``uint8 [H, W]``."""
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.all():
        v = np.where(finite, v, 0.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    if mode == "F":
        if lo >= 0.0 and hi <= 1.0:
            scaled = v * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            scaled = v
        else:
            scaled = _min_max(v, lo, hi)
    elif lo >= 0.0 and hi <= 65535.0:
        scaled = v / 257.0  # 65535 -> 255 exactly, and 257*k -> k
    else:
        scaled = _min_max(v, lo, hi)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _min_max(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros_like(v)
    return (v - lo) * (255.0 / (hi - lo))


def load_images(
    paths: Iterable[PathOrFile],
    min_side: int = DEFAULT_MIN_SIDE,
    background: tuple[int, int, int] = NEUTRAL_BACKGROUND,
) -> tuple[list[np.ndarray], list[PathOrFile], list[tuple[str, str]]]:
    """Load many images, skipping (and logging) the ones that cannot enter the study.

    Returns ``(images, kept, skipped)``: ``images`` are ``uint8 [H, W, 3]`` arrays in the order of
    ``kept`` (the inputs that loaded), ``skipped`` is ``[(path, reason), ...]``. Nothing a single
    file does (other than an interrupt) stops the batch.
    """
    images: list[np.ndarray] = []
    kept: list[PathOrFile] = []
    skipped: list[tuple[str, str]] = []
    for source in paths:
        try:
            image = load_image(source, min_side=min_side, background=background)
        except ImageIntakeError as exc:
            reason = exc.reason
        except Exception as exc:  # noqa: BLE001 - an unforeseen decoder bug is one file's problem
            reason = f"unexpected {type(exc).__name__}: {exc}"
        else:
            images.append(image)
            kept.append(source)
            continue
        logger.warning("skipping image %s: %s", _describe(source), reason)
        skipped.append((_describe(source), reason))
    return images, kept, skipped


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected uint8 [H, W, 3] RGB, got {image.dtype} {list(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError("empty image")
    return image


def fit_box(
    image_size: tuple[int, int],
    content_size: tuple[int, int] | None,
    out_size: int,
) -> tuple[int, int, int, int]:
    """Where `letterbox` puts an image of ``image_size = (w, h)``: ``(left, top, width, height)``.

    The image is scaled (aspect kept) to fit inside the content box ``content_size = (cw, ch)``,
    which sits centred in the ``out_size x out_size`` canvas; the scaled image is centred in it.
    ``content_size=None`` means the whole canvas.
    """
    w, h = int(image_size[0]), int(image_size[1])
    cw, ch = (out_size, out_size) if content_size is None else (int(content_size[0]), int(content_size[1]))
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    if not (0 < cw <= out_size and 0 < ch <= out_size):
        raise ValueError(f"content box {cw}x{ch} must be positive and fit the {out_size}x{out_size} canvas")
    scale = min(cw / w, ch / h)
    # min() against the box guards against rounding up past it.
    width = min(cw, max(1, round(w * scale)))
    height = min(ch, max(1, round(h * scale)))
    left = (out_size - cw) // 2 + (cw - width) // 2
    top = (out_size - ch) // 2 + (ch - height) // 2
    return left, top, width, height


def letterbox(
    image: np.ndarray,
    content_size: tuple[int, int] | None = None,
    out_size: int = 64,
    fill: int | tuple[int, int, int] = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``uint8 [H, W, 3]`` keeping its aspect ratio into the generator's content box, pad.

    ``content_size = (cw, ch)`` is the region of the generator's ``out_size`` square canvas that
    holds picture (for example ``(512, 384)`` for a 512 px car generator trained on 4:3 images
    padded to square; ``None`` for a square generator). ``fill`` is the padding value (one int
    or an RGB triple).

    Returns ``(out, mask)``: ``out`` is ``uint8 [out_size, out_size, 3]``; ``mask`` is ``bool
    [out_size, out_size]``, True where ``out`` shows the image rather than padding.
    """
    image = _check_image(image)
    h, w = image.shape[:2]
    left, top, width, height = fit_box((w, h), content_size, out_size)
    fill_rgb = (fill,) * 3 if np.isscalar(fill) else tuple(fill)
    if len(fill_rgb) != 3:
        raise ValueError(f"fill must be an int or an RGB triple, got {fill!r}")
    out = np.empty((out_size, out_size, 3), dtype=np.uint8)
    out[...] = np.asarray(fill_rgb, dtype=np.uint8)
    if (width, height) == (w, h):
        resized = image
    else:
        # Lanczos keeps fine detail (badges, light shapes) that tells look-alike classes apart
        # and antialiases when shrinking.
        resized = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
    out[top : top + height, left : left + width] = resized
    mask = np.zeros((out_size, out_size), dtype=bool)
    mask[top : top + height, left : left + width] = True
    return out, mask


def expand_box(
    bbox: Sequence[float],
    image_size: tuple[int, int],
    margin: float = 0.1,
) -> tuple[int, int, int, int]:
    """Grow ``bbox = (x1, y1, x2, y2)`` by ``margin`` of its width/height on each side, clamp.

    Coordinates are 0-based pixels with ``x2, y2`` exclusive; ``image_size = (w, h)``. Returns
    integer ``(x1, y1, x2, y2)`` inside the image. Raises ValueError for an empty box or one
    that misses the image.
    """
    x1, y1, x2, y2 = (float(v) for v in bbox)
    w, h = image_size
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty bounding box {tuple(bbox)}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    dx, dy = margin * (x2 - x1), margin * (y2 - y1)
    left = max(0, math.floor(x1 - dx))
    top = max(0, math.floor(y1 - dy))
    right = min(w, math.ceil(x2 + dx))
    bottom = min(h, math.ceil(y2 + dy))
    if right <= left or bottom <= top:
        raise ValueError(f"bounding box {tuple(bbox)} lies outside the {w}x{h} image")
    return left, top, right, bottom


def crop_box(image: np.ndarray, bbox: Sequence[float], margin: float = 0.1) -> np.ndarray:
    """Crop ``uint8 [H, W, 3]`` to ``bbox = (x1, y1, x2, y2)`` grown by ``margin``, clamped.

    Coordinates as in `expand_box` (0-based, ``x2, y2`` exclusive). A little context around the
    car keeps wheels and mirrors that tight annotations clip. Returns a copy.
    """
    image = _check_image(image)
    left, top, right, bottom = expand_box(bbox, (image.shape[1], image.shape[0]), margin)
    return image[top:bottom, left:right].copy()


def to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """``uint8 [N, H, W, 3]`` (array or list of same-size ``[H, W, 3]``) -> ``float32 [N, 3, H, W]``
    in ``[-1, 1]``, the range the generator produces. A single ``[H, W, 3]`` gets ``N = 1``."""
    import torch

    batch = np.asarray(images) if isinstance(images, np.ndarray) else np.stack([np.asarray(i) for i in images])
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[3] != 3 or batch.dtype != np.uint8:
        raise ValueError(f"expected uint8 [N, H, W, 3], got {batch.dtype} {list(batch.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).to(torch.float32).contiguous()
    return t / 127.5 - 1.0


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of `to_tensor`: ``[N, 3, H, W]`` in ``[-1, 1]`` -> ``uint8 [N, H, W, 3]`` (clamped,
    rounded); ``[3, H, W]`` -> ``[H, W, 3]``. Works on any device and dtype, keeps no grad."""
    import torch

    t = tensor.detach()
    if t.ndim not in (3, 4) or t.shape[-3] != 3:
        raise ValueError(f"expected [N, 3, H, W] or [3, H, W], got {list(t.shape)}")
    t = ((t.float() + 1.0) * 127.5).clamp(0, 255).round().to(device="cpu", dtype=torch.uint8)
    return np.ascontiguousarray(np.moveaxis(t.numpy(), -3, -1))
