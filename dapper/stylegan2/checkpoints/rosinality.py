"""rosinality/stylegan2-pytorch ``torch.save`` dicts, read with ``weights_only=True``; channel
counts, mapping depth and resolution inferred from tensor shapes."""

from __future__ import annotations

import argparse
import math
import pickle
import warnings
from pathlib import Path

import torch

from .. import ops
from ..networks import MappingNetwork
from .common import CheckpointError, NetworkState, UnsafeCheckpointError, plain, torch_refusal


def _fit_channels(path, channels: dict[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) with min(base // res, max) == channels[res] for every res."""
    cmax = max(channels.values())
    top = max(channels)
    base = channels[top] * top if channels[top] < cmax else cmax * top
    if all(min(base // r, cmax) == c for r, c in channels.items()):
        return base, cmax
    raise CheckpointError(path, f"channel counts per resolution {dict(sorted(channels.items()))} "
                          "cannot be expressed as min(channel_base // res, channel_max)")


def _check_blur(path, sd, key, gain):
    if key not in sd:
        return
    want = ops.setup_filter([1, 3, 3, 1]) * gain
    k = sd[key].float()
    if k.shape != want.shape or not torch.allclose(k, want, atol=1e-6):
        raise CheckpointError(path, f"{key} is not the [1,3,3,1] filter dapper supports")


def _rosinality_generator_kwargs(path, sd) -> dict:
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0 or "input.input" not in sd:
        raise CheckpointError(path, "not a rosinality generator state dict (no style.1.weight "
                              "or input.input)")
    if any(k.startswith("dwt") or k.startswith("iwt") for k in sd):
        raise CheckpointError(path, "this is a SWAGAN generator, which dapper does not support")
    style_dim = sd["style.1.weight"].shape[1]
    channels = {4: sd["input.input"].shape[1]}
    i = 0
    while f"to_rgbs.{i}.conv.weight" in sd:
        channels[2 ** (i + 3)] = sd[f"to_rgbs.{i}.conv.weight"].shape[2]
        i += 1
    size = 2 ** (i + 2)
    base, cmax = _fit_channels(path, channels)
    return dict(
        z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=size,
        img_channels=sd["to_rgb1.conv.weight"].shape[1],
        mapping_kwargs=dict(num_layers=n_mlp, lr_multiplier=0.01),
        synthesis_kwargs=dict(channel_base=base, channel_max=cmax),
    )


def _rosinality_generator_state(path, sd, kwargs, latent_avg) -> dict[str, torch.Tensor]:
    def g(key):
        if key not in sd:
            raise CheckpointError(path, f"rosinality key {key!r} is missing")
        return sd[key].detach().float()

    out = {}
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        out[f"mapping.fc{i}.weight"] = g(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = g(f"style.{i + 1}.bias")
    out["synthesis.b4.const"] = g("input.input")[0]

    def styled(dst, src, noise):
        out[f"{dst}.weight"] = g(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = g(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = g(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = g(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = g(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = g(f"noises.noise_{noise}")[0, 0]

    def torgb(dst, src):
        out[f"{dst}.weight"] = g(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = g(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = g(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = g(f"{src}.bias").reshape(-1)

    styled("synthesis.b4.conv1", "conv1", 0)
    torgb("synthesis.b4.torgb", "to_rgb1")
    res_log2 = int(math.log2(kwargs["img_resolution"]))
    for log2 in range(3, res_log2 + 1):
        i = log2 - 3
        b = f"synthesis.b{2 ** log2}"
        # rosinality already stores the upsampling kernel flipped, as ada does
        styled(f"{b}.conv0", f"convs.{2 * i}", 2 * log2 - 5)
        styled(f"{b}.conv1", f"convs.{2 * i + 1}", 2 * log2 - 4)
        torgb(f"{b}.torgb", f"to_rgbs.{i}")
        _check_blur(path, sd, f"convs.{2 * i}.conv.blur.kernel", 4)
        _check_blur(path, sd, f"to_rgbs.{i}.upsample.kernel", 4)
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.detach().float().reshape(-1)
    return out


def _estimate_w_avg(kwargs, sd, n=4096) -> torch.Tensor:
    # rosinality training checkpoints carry no latent average; truncation needs one, so it is
    # estimated as rosinality's own mean_latent does (4096 samples), with a fixed seed.
    mapping = MappingNetwork(kwargs["z_dim"], 0, kwargs["w_dim"], num_ws=None, w_avg_beta=None,
                             **kwargs["mapping_kwargs"])
    mapping.load_state_dict({k[len("mapping."):]: v for k, v in sd.items()
                             if k.startswith("mapping.fc")})
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn([n, kwargs["z_dim"]], generator=gen)
        return mapping(z, None).mean(dim=0)


def _rosinality_discriminator_state(path, sd) -> tuple[dict, dict]:
    if "convs.0.0.weight" not in sd or "final_linear.1.weight" not in sd:
        raise CheckpointError(path, "not a rosinality discriminator state dict")

    def g(key):
        if key not in sd:
            raise CheckpointError(path, f"rosinality key {key!r} is missing")
        return sd[key].detach().float()

    n_blocks = 0
    while f"convs.{n_blocks + 1}.conv1.0.weight" in sd:
        n_blocks += 1
    res = 2 ** (n_blocks + 2)
    channels = {}
    out = {f"b{res}.fromrgb.weight": g("convs.0.0.weight"),
           f"b{res}.fromrgb.bias": g("convs.0.1.bias")}
    r = res
    for k in range(1, n_blocks + 1):
        channels[r] = sd[f"convs.{k}.conv1.0.weight"].shape[0]
        out[f"b{r}.conv0.weight"] = g(f"convs.{k}.conv1.0.weight")
        out[f"b{r}.conv0.bias"] = g(f"convs.{k}.conv1.1.bias")
        out[f"b{r}.conv1.weight"] = g(f"convs.{k}.conv2.1.weight")
        out[f"b{r}.conv1.bias"] = g(f"convs.{k}.conv2.2.bias")
        out[f"b{r}.skip.weight"] = g(f"convs.{k}.skip.1.weight")
        _check_blur(path, sd, f"convs.{k}.conv2.0.kernel", 1)
        r //= 2
    channels[4] = sd["final_conv.0.weight"].shape[0]
    out["b4.conv.weight"] = g("final_conv.0.weight")
    out["b4.conv.bias"] = g("final_conv.1.bias")
    out["b4.fc.weight"] = g("final_linear.0.weight")
    out["b4.fc.bias"] = g("final_linear.0.bias")
    out["b4.out.weight"] = g("final_linear.1.weight")
    out["b4.out.bias"] = g("final_linear.1.bias")
    base, cmax = _fit_channels(path, channels)
    kwargs = dict(c_dim=0, img_resolution=res, img_channels=sd["convs.0.0.weight"].shape[1],
                  architecture="resnet", channel_base=base, channel_max=cmax,
                  epilogue_kwargs=dict(mbstd_group_size=4, mbstd_num_channels=1))
    return kwargs, out


def torch_load(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # rosinality training checkpoints store their argparse options; a Namespace only
            # ever receives attributes, so allowing it runs nothing.
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            path, f"it holds more than weights, which torch's weights-only loader refused ({torch_refusal(exc)}); "
            "nothing was executed, and dapper never loads such a file otherwise") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"torch file is truncated or corrupt ({type(exc).__name__}: "
                              f"{str(exc).strip()[:300]})") from None


def rosinality_state(path, data, network) -> NetworkState:
    if not isinstance(data, dict):
        raise CheckpointError(path, f"torch file holds a {type(data).__name__}, not a dict")
    if "style.1.weight" in data:  # a bare generator state dict
        data = {"g_ema": data}
    key = {"G_ema": "g_ema", "G": "g", "D": "d"}.get(network)
    if key is None or not isinstance(data.get(key), dict):
        found = sorted(k for k in ("g_ema", "g", "d") if isinstance(data.get(k), dict))
        if not found:
            raise CheckpointError(path, "torch file is not a rosinality checkpoint (no g_ema, g "
                                  "or d state dict)")
        raise CheckpointError(path, f"no network {network!r} in the file (it holds {found})")
    sd = data[key]
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(path, f"{key} entries are not tensors: {bad[:3]}")
    meta = {}
    if isinstance(data.get("args"), argparse.Namespace):
        try:
            meta["train_args"] = plain(vars(data["args"]))
        except ValueError:
            pass
    if key == "d":
        kwargs, out = _rosinality_discriminator_state(path, sd)
        return NetworkState("Discriminator", kwargs, out, "rosinality-pt", str(path), meta)
    kwargs = _rosinality_generator_kwargs(path, sd)
    latent_avg = data.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        raise CheckpointError(path, "latent_avg is not a tensor")
    out = _rosinality_generator_state(path, sd, kwargs, latent_avg)
    if latent_avg is None:
        try:
            out["mapping.w_avg"] = _estimate_w_avg(kwargs, out)
        except RuntimeError as exc:
            raise CheckpointError(path, f"mapping weights do not fit: {exc}") from None
        meta["w_avg"] = "estimated from 4096 samples, seed 0 (the file has no latent_avg)"
    return NetworkState("Generator", kwargs, out, "rosinality-pt", str(path), meta)


