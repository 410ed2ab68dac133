"""Low-level StyleGAN2 operations: a plain reference path and a fast path, held equal by tests.

Conventions follow stylegan2-ada-pytorch so that identical weights give identical images:

* FIR filters are 2-D float32 tensors prepared by :func:`setup_filter` (``[1,3,3,1]`` becomes the
  normalised 4x4 outer product, which is what checkpoints store as ``resample_filter``).
* ``upfirdn2d`` = upsample by zero insertion, pad (negative = crop), convolve with the filter
  (true convolution unless ``flip_filter``), keep every ``down``-th sample.
* ``conv2d_resample`` pads once, then convolves and resamples; ``flip_weight=True`` means
  correlation, as ``torch.nn.functional.conv2d`` does.

The reference path (``impl="ref"``) spells each operation out literally. The fast path
(``impl="fast"``, the default) computes the same values with fewer operations:

* FIR resampling that skips the samples the reference computes and throws away (strided
  filtering for downsampling, transposed convolution for upsampling);
* bias + activation + gain + clamp fused: in place under ``torch.no_grad`` on the CPU, and through
  ``torch.compile`` (Triton) on CUDA when available;
* modulated convolution as one batched convolution with activations scaled before and after
  (non-fused) on the CPU, where grouped convolution with one group per sample is slow, and as a
  grouped convolution (fused) on CUDA;
* channels_last memory format on CUDA.

No C++/CUDA extension is compiled at import time, so the module imports everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "downsample2d",
    "get_impl",
    "modulated_conv2d",
    "normalize_2nd_moment",
    "set_impl",
    "setup_filter",
    "upfirdn2d",
    "upsample2d",
    "use_impl",
]

# name -> (function(x, alpha), default alpha, default gain)
ACTIVATIONS = {
    "linear": (lambda x, alpha: x, 0.0, 1.0),
    "relu": (lambda x, alpha: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2)),
    "tanh": (lambda x, alpha: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, alpha: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, alpha: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, alpha: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, alpha: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, alpha: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}

_IMPL = os.environ.get("DAPPER_OPS_IMPL", "fast")


def set_impl(impl: str) -> None:
    """Select ``"ref"`` (plain reference ops) or ``"fast"`` for all later calls."""
    global _IMPL
    if impl not in ("ref", "fast"):
        raise ValueError(f"unknown ops implementation {impl!r}; use 'ref' or 'fast'")
    _IMPL = impl


def get_impl() -> str:
    return _IMPL


@contextlib.contextmanager
def use_impl(impl: str):
    """Context manager: temporarily run every op with ``impl``."""
    previous = _IMPL
    set_impl(impl)
    try:
        yield
    finally:
        set_impl(previous)


def _use_fast() -> bool:
    """Whether the fast implementations are selected (:func:`set_impl`)."""
    return _IMPL == "fast"


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------------------------
# FIR filters


def setup_filter(f=(1, 3, 3, 1), normalize: bool = True, flip_filter: bool = False, gain: float = 1,
                 separable: bool | None = None) -> torch.Tensor:
    """Prepare a FIR filter: 1-D taps become their outer product (unless ``separable``)."""
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter must be 1-D or 2-D and non-empty, got shape {tuple(f.shape)}")
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f * (gain ** (f.ndim / 2))


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[-1], f.shape[-2]


def _parse_padding(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _parse_scaling(s) -> tuple[int, int]:
    if isinstance(s, int):
        return s, s
    sx, sy = s
    return int(sx), int(sy)


def _pad_or_crop(x: torch.Tensor, px0: int, px1: int, py0: int, py1: int) -> torch.Tensor:
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    return x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]


def _zero_insert(x: torch.Tensor, upx: int, upy: int) -> torch.Tensor:
    n, c, h, w = x.shape
    if upx == 1 and upy == 1:
        return x
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    return x.reshape(n, c, h * upy, w * upx)


def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    c = x.shape[1]
    x = _zero_insert(x, upx, upy)
    x = _pad_or_crop(x, px0, px1, py0, py1)
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    else:
        fk = f[None, None].repeat(c, 1, 1)
        x = F.conv2d(x, fk.unsqueeze(2), groups=c)
        x = F.conv2d(x, fk.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def _upfirdn2d_fast(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Same values as the reference without touching the samples it throws away.

    Downsampling filters with a strided convolution instead of filtering every pixel and keeping
    one in ``down``**2. Upsampling runs a strided transposed convolution instead of filtering a
    zero-stuffed image, three quarters of which is zeros. (A depthwise 2-D kernel is faster on
    the CPU than two separable 1-D passes, so the filter stays 2-D.)
    """
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    if f is None or f.ndim != 2 or (upx > 1 or upy > 1) and (downx > 1 or downy > 1):
        return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)
    px0, px1, py0, py1 = _parse_padding(padding)
    c = x.shape[1]
    fh, fw = f.shape
    f = (f * gain).to(x.dtype)
    if upx == 1 and upy == 1:
        x = _pad_or_crop(x, px0, px1, py0, py1)
        weight = f if flip_filter else f.flip([0, 1])
        return F.conv2d(x, weight[None, None].repeat(c, 1, 1, 1), stride=(downy, downx), groups=c)
    # Filtering the zero-stuffed image = transposed convolution with the filter, then a shift.
    h, w = x.shape[2], x.shape[3]
    weight = f.flip([0, 1]) if flip_filter else f
    x = F.conv_transpose2d(x, weight[None, None].repeat(c, 1, 1, 1), stride=(upy, upx), groups=c)
    out_h = h * upy + py0 + py1 - fh + 1
    out_w = w * upx + px0 + px1 - fw + 1
    sy, sx = fh - 1 - py0, fw - 1 - px0
    return _pad_or_crop(x, -sx, out_w - (x.shape[3] - sx), -sy, out_h - (x.shape[2] - sy))


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Upsample, FIR-filter and downsample ``x`` [N,C,H,W] (float) with filter ``f``."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects NCHW, got shape {tuple(x.shape)}")
    impl = _upfirdn2d_fast if _use_fast() else _upfirdn2d_ref
    return impl(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1):
    """Upsample by ``up`` with the FIR filter; output is ``up`` times the input size."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy)


def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1):
    """Low-pass filter then keep every ``down``-th pixel; output is the input size / ``down``."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)


# --------------------------------------------------------------------------------------------
# Bias + activation


def _bias_act_ref(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None):
    func, def_alpha, def_gain = ACTIVATIONS[act]
    alpha = float(def_alpha if alpha is None else alpha)
    gain = float(def_gain if gain is None else gain)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_inplace(x, b, dim, act, alpha, gain, clamp):
    """Same values as the reference, with one buffer, for inference on the CPU."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])  # new buffer, then in place
    else:
        x = x.clone()
    if act == "lrelu":
        F.leaky_relu_(x, alpha)
    elif act == "relu":
        F.relu_(x)
    elif act != "linear":
        x = ACTIVATIONS[act][0](x, alpha)
    if gain != 1:
        x.mul_(gain)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


@functools.cache
def _compiled_bias_act():
    return torch.compile(_bias_act_ref, dynamic=True, fullgraph=True)


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain)``; ``b`` is broadcast along ``dim``."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {sorted(ACTIVATIONS)}")
    if not _use_fast():
        return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    _, def_alpha, def_gain = ACTIVATIONS[act]
    alpha = float(def_alpha if alpha is None else alpha)
    gain = float(def_gain if gain is None else gain)
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    if needs_grad:
        # Autograd through the reference ops: training needs double backward (R1, path length),
        # which compiled functions do not support.
        return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    if x.is_cuda and _compile_ok():
        return _compiled_bias_act()(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_inplace(x, b, dim, act, alpha, gain, clamp)


@functools.cache
def _compile_ok() -> bool:
    """torch.compile on CUDA needs Triton; fall back quietly (and permanently) without it."""
    if os.environ.get("DAPPER_NO_COMPILE"):
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return hasattr(torch, "compile")


# --------------------------------------------------------------------------------------------
# Convolution with resampling


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """2-D convolution of ``x`` [N,I,H,W] with ``w`` [O,I/groups,kh,kw] and optional resampling.

    Padding is given with respect to the upsampled image and applied once.
    """
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_resample expects 4-D x and w, got {tuple(x.shape)} and {tuple(w.shape)}")
    out_ch, in_per_group, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 kernels: resample on the cheaper side of the convolution.
    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)

    # Downsampling: filter, then strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling: transposed convolution with stride, then filter.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
            w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True, flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up ** 2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2, flip_filter=flip_filter)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


# --------------------------------------------------------------------------------------------
# Modulated convolution


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, down: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool | None = True) -> torch.Tensor:
    """Convolve ``x`` [N,I,H,W] with ``weight`` [O,I,k,k] modulated per sample by ``styles`` [N,I].

    ``fused_modconv=None`` lets the fast path choose: grouped convolution on CUDA, batched
    convolution with scaled activations on the CPU. Both give the same values.
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if x.ndim != 4 or x.shape[1] != in_ch:
        raise ValueError(f"modulated_conv2d: x has shape {tuple(x.shape)}, weight expects {in_ch} input channels")
    if styles.shape != (n, in_ch):
        raise ValueError(f"modulated_conv2d: styles have shape {tuple(styles.shape)}, expected {(n, in_ch)}")
    if fused_modconv is None or (_use_fast() and not x.is_cuda):
        fused_modconv = x.is_cuda and not _IMPL == "ref"

    # Pre-normalise so that float16 cannot overflow (a no-op in exact arithmetic).
    if x.dtype == torch.float16 and demodulate:
        weight = weight * (1 / np.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)

    w = None
    dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)  # [N,O,I,k,k]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N,O]
    if demodulate and fused_modconv:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, -1, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x

    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding, groups=n,
                        flip_weight=flip_weight)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x
