"""The original TensorFlow StyleGAN2 pickles, converted to the stylegan2-ada-pytorch layout with
the official conventions."""

from __future__ import annotations

import math
import pickle
import re

import numpy as np
import torch

from .common import CheckpointError, NetworkState, as_tensor, plain
from .unpickle import TFNetworkStub

_TF_G_KNOWN = {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure",
               "dlatent_avg_beta"}
_TF_D_KNOWN = {"structure"}


def _tf_kwarg(kwargs, known, name, default=None):
    known.add(name)
    value = kwargs.get(name, default)
    return default if value is None else value


def _tf_generator_kwargs(path, static_kwargs: dict) -> dict:
    kw = dict(static_kwargs)
    known = set(_TF_G_KNOWN)

    def get(name, default=None):
        return _tf_kwarg(kw, known, name, default)

    w_avg_beta = kw.get("w_avg_beta", kw.get("dlatent_avg_beta", 0.995))
    known.add("w_avg_beta")
    out = dict(
        z_dim=get("latent_size", 512),
        c_dim=get("label_size", 0),
        w_dim=get("dlatent_size", 512),
        img_resolution=get("resolution", 1024),
        img_channels=get("num_channels", 3),
        mapping_kwargs=dict(
            num_layers=get("mapping_layers", 8),
            embed_features=kw.get("label_fmaps"),
            layer_features=kw.get("mapping_fmaps"),
            activation=get("mapping_nonlinearity", "lrelu"),
            lr_multiplier=get("mapping_lrmul", 0.01),
            # TF's None means "never update", which is beta 1
            w_avg_beta=1 if w_avg_beta is None else w_avg_beta,
        ),
        synthesis_kwargs=dict(
            # TF fmap_base counts feature maps at stage 1 (8x8 is stage 2): ada's base is twice it
            channel_base=get("fmap_base", 16384) * 2,
            channel_max=get("fmap_max", 512),
            num_fp16_res=get("num_fp16_res", 0),
            conv_clamp=kw.get("conv_clamp"),
            architecture=get("architecture", "skip"),
            resample_filter=list(get("resample_kernel", [1, 3, 3, 1])),
            use_noise=get("use_noise", True),
            activation=get("nonlinearity", "lrelu"),
        ),
    )
    known.update({"label_fmaps", "mapping_fmaps", "conv_clamp"})
    if get("fmap_decay", 1.0) != 1.0 or get("fmap_min", 1) != 1:
        raise CheckpointError(path, "TensorFlow generator uses fmap_decay/fmap_min, which the "
                              "ada layout cannot express")
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(path, f"TensorFlow generator has settings dapper cannot convert: "
                              f"{unknown}")
    return out


def _tf_generator_state(path, params: dict, kwargs: dict) -> dict[str, torch.Tensor]:
    def p(name):
        if name not in params:
            raise CheckpointError(path, f"TensorFlow variable {name!r} is missing")
        return np.asarray(params[name])

    sd = {}

    def put(key, arr):
        sd[key] = as_tensor(path, key, np.array(arr, dtype=np.float32, order="C"))

    res_log2 = int(math.log2(kwargs["img_resolution"]))
    syn = kwargs["synthesis_kwargs"]
    arch = syn["architecture"]
    # The "orig" TF networks name their output layers by level of detail.
    if arch != "orig" and "synthesis/ToRGB_lod0/weight" in params:
        arch = syn["architecture"] = "orig"
    put("mapping.w_avg", p("dlatent_avg"))
    if kwargs["c_dim"] > 0:
        put("mapping.embed.weight", p("mapping/LabelEmbed/weight").T)
        put("mapping.embed.bias", p("mapping/LabelEmbed/bias"))
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        put(f"mapping.fc{i}.weight", p(f"mapping/Dense{i}/weight").T)
        put(f"mapping.fc{i}.bias", p(f"mapping/Dense{i}/bias"))

    def modconv(key, tf, noise_index, flip):
        w = p(f"{tf}/weight")
        if flip:  # TF upsamples with a transposed conv on the flipped kernel
            w = w[::-1, ::-1]
        put(f"{key}.weight", w.transpose(3, 2, 0, 1))
        put(f"{key}.bias", p(f"{tf}/bias"))
        put(f"{key}.affine.weight", p(f"{tf}/mod_weight").T)
        put(f"{key}.affine.bias", p(f"{tf}/mod_bias") + 1)  # TF adds the 1 at run time
        if syn["use_noise"]:
            put(f"{key}.noise_const", p(f"synthesis/noise{noise_index}")[0, 0])
            put(f"{key}.noise_strength", p(f"{tf}/noise_strength"))

    for log2 in range(2, res_log2 + 1):
        r = 2 ** log2
        key, tf = f"synthesis.b{r}", f"synthesis/{r}x{r}"
        if r == 4:
            put(f"{key}.const", p(f"{tf}/Const/const")[0])
            modconv(f"{key}.conv1", f"{tf}/Conv", 0, False)
        else:
            modconv(f"{key}.conv0", f"{tf}/Conv0_up", 2 * log2 - 5, True)
            modconv(f"{key}.conv1", f"{tf}/Conv1", 2 * log2 - 4, False)
        if arch == "skip" or log2 == res_log2:
            rgb = "synthesis/ToRGB_lod0" if arch == "orig" else f"{tf}/ToRGB"
            put(f"{key}.torgb.weight", p(f"{rgb}/weight").transpose(3, 2, 0, 1))
            put(f"{key}.torgb.bias", p(f"{rgb}/bias"))
            put(f"{key}.torgb.affine.weight", p(f"{rgb}/mod_weight").T)
            put(f"{key}.torgb.affine.bias", p(f"{rgb}/mod_bias") + 1)
        if arch == "resnet" and r > 4:
            put(f"{key}.skip.weight", p(f"{tf}/Skip/weight")[::-1, ::-1].transpose(3, 2, 0, 1))
    return sd


def _tf_discriminator_kwargs(path, static_kwargs: dict) -> dict:
    kw = dict(static_kwargs)
    known = set(_TF_D_KNOWN)

    def get(name, default=None):
        return _tf_kwarg(kw, known, name, default)

    out = dict(
        c_dim=get("label_size", 0),
        img_resolution=get("resolution", 1024),
        img_channels=get("num_channels", 3),
        architecture=get("architecture", "resnet"),
        channel_base=get("fmap_base", 16384) * 2,
        channel_max=get("fmap_max", 512),
        num_fp16_res=get("num_fp16_res", 0),
        conv_clamp=kw.get("conv_clamp"),
        cmap_dim=kw.get("mapping_fmaps"),
        block_kwargs=dict(
            activation=get("nonlinearity", "lrelu"),
            resample_filter=list(get("resample_kernel", [1, 3, 3, 1])),
            freeze_layers=get("freeze_layers", 0),
        ),
        mapping_kwargs=dict(
            num_layers=get("mapping_layers", 0),
            embed_features=kw.get("mapping_fmaps"),
            layer_features=kw.get("mapping_fmaps"),
            activation=get("nonlinearity", "lrelu"),
            lr_multiplier=get("mapping_lrmul", 0.1),
        ),
        epilogue_kwargs=dict(
            # D_stylegan2's own default is 4 (legacy.py's None would mean the whole batch)
            mbstd_group_size=get("mbstd_group_size", 4),
            mbstd_num_channels=get("mbstd_num_features", 1),
            activation=get("nonlinearity", "lrelu"),
        ),
    )
    known.update({"conv_clamp", "mapping_fmaps"})
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(path, f"TensorFlow discriminator has settings dapper cannot "
                              f"convert: {unknown}")
    return out


def _tf_discriminator_state(path, params: dict, kwargs: dict) -> dict[str, torch.Tensor]:
    def p(name):
        if name not in params:
            raise CheckpointError(path, f"TensorFlow variable {name!r} is missing")
        return np.asarray(params[name])

    sd = {}

    def put(key, arr):
        sd[key] = as_tensor(path, key, np.array(arr, dtype=np.float32, order="C"))

    def conv(key, tf, bias=True):
        put(f"{key}.weight", p(f"{tf}/weight").transpose(3, 2, 0, 1))
        if bias:
            put(f"{key}.bias", p(f"{tf}/bias"))

    def dense(key, tf):
        put(f"{key}.weight", p(f"{tf}/weight").T)
        put(f"{key}.bias", p(f"{tf}/bias"))

    res = kwargs["img_resolution"]
    arch = kwargs["architecture"]
    if "FromRGB_lod0/weight" in params:
        arch = kwargs["architecture"] = "orig"
        params = dict(params)
        for name, value in list(params.items()):
            m = re.fullmatch(r"FromRGB_lod(\d+)/(.*)", name)
            if m:
                r = res >> int(m.group(1))
                params[f"{r}x{r}/FromRGB/{m.group(2)}"] = value
    r = res
    while r > 4:
        key, tf = f"b{r}", f"{r}x{r}"
        if r == res or arch == "skip":
            conv(f"{key}.fromrgb", f"{tf}/FromRGB")
        conv(f"{key}.conv0", f"{tf}/Conv0")
        conv(f"{key}.conv1", f"{tf}/Conv1_down")
        if arch == "resnet":
            conv(f"{key}.skip", f"{tf}/Skip", bias=False)
        r //= 2
    if kwargs["c_dim"] > 0:
        dense("mapping.embed", "LabelEmbed")
        for i in range(kwargs["mapping_kwargs"]["num_layers"]):
            dense(f"mapping.fc{i}", f"Mapping{i}")
    if arch == "skip":
        conv("b4.fromrgb", "4x4/FromRGB")
    conv("b4.conv", "4x4/Conv")
    dense("b4.fc", "4x4/Dense0")
    dense("b4.out", "Output")
    return sd


def tf_state(path, data, network) -> NetworkState:
    if not (isinstance(data, tuple) and len(data) == 3
            and all(isinstance(n, TFNetworkStub) for n in data)):
        raise CheckpointError(path, "pickle is neither a stylegan2-ada-pytorch network dict nor "
                              "a TensorFlow (G, D, Gs) tuple")
    index = {"G": 0, "D": 1, "G_ema": 2, "Gs": 2}.get(network)
    if index is None:
        raise CheckpointError(path, f"no network {network!r}; TensorFlow pickles hold G, D, G_ema")
    net = data[index]
    version = net.state.get("version")
    if not isinstance(version, int) or version < 4:
        raise CheckpointError(path, f"TensorFlow network version {version!r} is too old "
                              "(StyleGAN2 pickles are version 4 or later)")
    static = net.state.get("static_kwargs") or {}
    if not isinstance(static, dict):
        raise CheckpointError(path, "TensorFlow static_kwargs is not a dict")
    try:
        static = plain(static)
    except ValueError as exc:
        raise CheckpointError(path, f"TensorFlow static_kwargs: {exc}") from None
    try:
        params = net.tf_params()
    except (pickle.UnpicklingError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f"TensorFlow variables are malformed: {exc}") from None
    if index == 1:
        kwargs = _tf_discriminator_kwargs(path, static)
        sd = _tf_discriminator_state(path, params, kwargs)
        cls = "Discriminator"
    else:
        kwargs = _tf_generator_kwargs(path, static)
        sd = _tf_generator_state(path, params, kwargs)
        cls = "Generator"
    return NetworkState(cls, kwargs, sd, "tf-pkl", str(path), {"tf_name": net.state.get("name")})


