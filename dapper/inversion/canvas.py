"""Targets of a projection: any image placed on the generator's square canvas.

An image of any size is letterboxed (aspect kept, Lanczos) into the generator's content box
(``G.content_box``: the part of the canvas that holds picture, e.g. 512x384 inside 512x512 for the
LSUN car model), with a mask of the real pixels (times an optional object mask); an image already
on the canvas (``on_canvas``) is taken as it is, and only its content box and mask count.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dapper.data.images import fit_box

__all__ = ["content_box", "place", "prepare_target", "as_list"]


def content_box(G) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the generator's canvas that holds picture (the whole canvas by default)."""
    r = G.img_resolution
    return tuple(getattr(G, "content_box", (0, 0, r, r)))


def place(h: int, w: int, box, r: int) -> tuple[int, int, int, int]:
    """(left, top, width, height) of an h x w image fitted (aspect kept) into ``box`` of an r canvas."""
    x0, y0, x1, y1 = box
    cw, ch = x1 - x0, y1 - y0
    left, top, width, height = fit_box((w, h), (cw, ch), r)
    # fit_box centres the content box; move it to where the generator's box really is.
    return left + x0 - (r - cw) // 2, top + y0 - (r - ch) // 2, width, height


def prepare_target(image, mask, G, on_canvas: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One input -> (float [3, R, R] in [-1, 1], bool [R, R] mask of real (and unmasked) pixels).
    ``on_canvas``: the image is already the generator's R x R canvas (placed by
    :func:`dapper.data.images.letterbox` with the generator's content box): it is used as it is, and
    only the content box (and the mask) counts."""
    r = G.img_resolution
    box = content_box(G)
    if isinstance(image, torch.Tensor) and image.dtype != torch.uint8:
        x = image.detach().float().cpu()
        if x.ndim != 3 or x.shape[0] != 3:
            raise ValueError(f"float images must be [3, H, W] in [-1, 1], got {tuple(x.shape)}")
        h, w = x.shape[1:]
    else:
        arr = image.cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"uint8 images must be [H, W, 3], got {arr.dtype} {list(arr.shape)}")
        h, w = arr.shape[:2]
        x = None
    if on_canvas and (h, w) != (r, r):
        raise ValueError(f"an image on the generator's canvas must be {r}x{r}, got {h}x{w}")
    left, top, width, height = (0, 0, r, r) if on_canvas else place(h, w, box, r)
    out = torch.full((3, r, r), -1.0)
    valid = torch.zeros((r, r), dtype=torch.bool)
    if x is not None:
        if (height, width) != (h, w):
            # Antialiased bilinear keeps non-finite values where they were (they must reach the loss).
            x = F.interpolate(x[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
        out[:, top:top + height, left:left + width] = x
    else:
        if (height, width) != (h, w):
            arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.LANCZOS))
        out[:, top:top + height, left:left + width] = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1
    if on_canvas:  # the bars outside the content box are never picture
        valid[box[1]:box[3], box[0]:box[2]] = True
    else:
        valid[top:top + height, left:left + width] = True
    if mask is not None:
        m = np.asarray(mask.cpu().numpy() if isinstance(mask, torch.Tensor) else mask).astype(np.uint8) * 255
        if m.shape != (h, w):
            raise ValueError(f"mask shape {m.shape} does not match its image ({h}, {w})")
        m = np.asarray(Image.fromarray(m).resize((width, height), Image.Resampling.NEAREST)) > 127
        obj = torch.zeros((r, r), dtype=torch.bool)
        obj[top:top + height, left:left + width] = torch.from_numpy(m)
        valid &= obj
    return out, valid


def as_list(items, item_ndim: int = 3) -> list:
    """A batch (array/tensor with one more dimension than an item) or a single item or a list -> list."""
    if isinstance(items, (np.ndarray, torch.Tensor)):
        return list(items[None] if items.ndim == item_ndim else items)
    return list(items)
