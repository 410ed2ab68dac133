"""Checkpoint loading: every format round-trips to identical images, and no file runs code.

The foreign formats are made here without their original code: pickles are written through
stand-in classes registered under the official module names (``torch_utils.persistence``,
``dnnlib.tflib.network``...), which produces the same pickle structure as the real files, and the
stand-in modules are removed again before anything is loaded. The TensorFlow and rosinality
layouts are written by hand from the official conventions, independently of the converter.
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import sys

import numpy as np
import pytest
import torch
from real_fakes import fake_modules, place, write_ada_pickle

from dapper.stylegan2 import checkpoints as ck
from dapper.stylegan2 import ops
from dapper.stylegan2.checkpoints import rosinality as ck_rosinality
from dapper.stylegan2.networks import Discriminator, Generator

G_KWARGS = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                mapping_kwargs=dict(num_layers=2),
                synthesis_kwargs=dict(channel_base=128, channel_max=16))
D_KWARGS = dict(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16)


def _randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    # Fresh networks have zero biases and noise strengths, which would hide mapping mistakes.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not name.endswith("resample_filter"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.5)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def G():
    return _randomize(Generator(**G_KWARGS), 1)


@pytest.fixture(scope="module")
def D():
    return _randomize(Discriminator(**D_KWARGS), 2)


def _images(G):
    z = torch.randn([3, G.z_dim], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return G(z, None, truncation_psi=0.7, noise_mode="const")


def _scores(D):
    img = torch.randn([4, 3, D.img_resolution, D.img_resolution],
                      generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        return D(img, None)


_TF_MODULES = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")


def _write_tf_pickle(path, networks, build_src=""):
    """``networks``: three (name, static_kwargs, own_vars, components) specs for G, D, Gs."""
    with fake_modules(*_TF_MODULES):

        class Network:
            def __init__(self, state):
                self._state = state

            def __getstate__(self):
                return self._state

        place(Network, "dnnlib.tflib.network", "Network")

        def make(name, static_kwargs, own_vars, components):
            comps = {k: make(*v) for k, v in components.items()}
            variables = [(k, np.array(v, dtype=np.float32)) for k, v in own_vars.items()]
            return Network(dict(version=4, name=name, static_kwargs=static_kwargs,
                                components=comps, build_module_src=build_src,
                                build_func_name="G_main", variables=variables))

        with open(path, "wb") as f:
            pickle.dump(tuple(make(*n) for n in networks), f, protocol=4)
    return path


def _np(t):
    return t.detach().numpy()


def _tf_conv(w):  # ada [out, in, kh, kw] -> TF [kh, kw, in, out]
    return _np(w).transpose(2, 3, 1, 0)


def _tf_generator_spec(G, name="Gs"):
    sd = G.state_dict()
    mapping = {}
    for i in range(2):
        mapping[f"Dense{i}/weight"] = _np(sd[f"mapping.fc{i}.weight"]).T
        mapping[f"Dense{i}/bias"] = _np(sd[f"mapping.fc{i}.bias"])
    syn = {"4x4/Const/const": _np(sd["synthesis.b4.const"])[None]}
    noise = 0

    def layer(tf, ada, up=False):
        nonlocal noise
        w = _tf_conv(sd[f"{ada}.weight"])
        syn[f"{tf}/weight"] = w[::-1, ::-1] if up else w
        syn[f"{tf}/bias"] = _np(sd[f"{ada}.bias"])
        syn[f"{tf}/mod_weight"] = _np(sd[f"{ada}.affine.weight"]).T
        syn[f"{tf}/mod_bias"] = _np(sd[f"{ada}.affine.bias"]) - 1
        syn[f"{tf}/noise_strength"] = _np(sd[f"{ada}.noise_strength"])
        syn[f"noise{noise}"] = _np(sd[f"{ada}.noise_const"])[None, None]
        noise += 1

    def torgb(tf, ada):
        syn[f"{tf}/weight"] = _tf_conv(sd[f"{ada}.weight"])
        syn[f"{tf}/bias"] = _np(sd[f"{ada}.bias"])
        syn[f"{tf}/mod_weight"] = _np(sd[f"{ada}.affine.weight"]).T
        syn[f"{tf}/mod_bias"] = _np(sd[f"{ada}.affine.bias"]) - 1

    layer("4x4/Conv", "synthesis.b4.conv1")
    torgb("4x4/ToRGB", "synthesis.b4.torgb")
    for r in (8, 16):
        layer(f"{r}x{r}/Conv0_up", f"synthesis.b{r}.conv0", up=True)
        layer(f"{r}x{r}/Conv1", f"synthesis.b{r}.conv1")
        torgb(f"{r}x{r}/ToRGB", f"synthesis.b{r}.torgb")
    static = dict(num_channels=3, resolution=16, label_size=0, latent_size=8, dlatent_size=8,
                  mapping_layers=2, fmap_base=64, fmap_max=16, truncation_psi=0.5)
    own = {"dlatent_avg": _np(sd["mapping.w_avg"])}
    comps = {"mapping": ("G_mapping", dict(static), mapping, {}),
             "synthesis": ("G_synthesis", dict(static), syn, {})}
    return (name, static, own, comps)


def _tf_discriminator_spec(D):
    sd = D.state_dict()
    v = {}
    for r in (16, 8):
        if r == 16:
            v["16x16/FromRGB/weight"] = _tf_conv(sd["b16.fromrgb.weight"])
            v["16x16/FromRGB/bias"] = _np(sd["b16.fromrgb.bias"])
        for tf, ada in (("Conv0", "conv0"), ("Conv1_down", "conv1")):
            v[f"{r}x{r}/{tf}/weight"] = _tf_conv(sd[f"b{r}.{ada}.weight"])
            v[f"{r}x{r}/{tf}/bias"] = _np(sd[f"b{r}.{ada}.bias"])
        v[f"{r}x{r}/Skip/weight"] = _tf_conv(sd[f"b{r}.skip.weight"])
    v["4x4/Conv/weight"] = _tf_conv(sd["b4.conv.weight"])
    v["4x4/Conv/bias"] = _np(sd["b4.conv.bias"])
    v["4x4/Dense0/weight"] = _np(sd["b4.fc.weight"]).T
    v["4x4/Dense0/bias"] = _np(sd["b4.fc.bias"])
    v["Output/weight"] = _np(sd["b4.out.weight"]).T
    v["Output/bias"] = _np(sd["b4.out.bias"])
    static = dict(num_channels=3, resolution=16, label_size=0, fmap_base=64, fmap_max=16)
    return ("D", static, v, {})


def _rosinality_generator(G):
    sd = G.state_dict()
    out = {"input.input": sd["synthesis.b4.const"][None]}
    for i in range(2):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    blur_up = ops.setup_filter([1, 3, 3, 1]) * 4

    def styled(dst, ada, noise, up=False):
        out[f"{dst}.conv.weight"] = sd[f"{ada}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{ada}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{ada}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{ada}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{ada}.bias"]
        out[f"noises.noise_{noise}"] = sd[f"{ada}.noise_const"][None, None]
        if up:
            out[f"{dst}.conv.blur.kernel"] = blur_up

    def torgb(dst, ada, up=True):
        out[f"{dst}.conv.weight"] = sd[f"{ada}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{ada}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{ada}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{ada}.bias"].reshape(1, 3, 1, 1)
        if up:
            out[f"{dst}.upsample.kernel"] = blur_up

    styled("conv1", "synthesis.b4.conv1", 0)
    torgb("to_rgb1", "synthesis.b4.torgb", up=False)
    for i, r in enumerate((8, 16)):
        styled(f"convs.{2 * i}", f"synthesis.b{r}.conv0", 2 * i + 1, up=True)
        styled(f"convs.{2 * i + 1}", f"synthesis.b{r}.conv1", 2 * i + 2)
        torgb(f"to_rgbs.{i}", f"synthesis.b{r}.torgb")
    return {k: v.clone() for k, v in out.items()}


def _rosinality_discriminator(D):
    sd = D.state_dict()
    blur = ops.setup_filter([1, 3, 3, 1])
    out = {"convs.0.0.weight": sd["b16.fromrgb.weight"], "convs.0.1.bias": sd["b16.fromrgb.bias"]}
    for k, r in ((1, 16), (2, 8)):
        out[f"convs.{k}.conv1.0.weight"] = sd[f"b{r}.conv0.weight"]
        out[f"convs.{k}.conv1.1.bias"] = sd[f"b{r}.conv0.bias"]
        out[f"convs.{k}.conv2.0.kernel"] = blur
        out[f"convs.{k}.conv2.1.weight"] = sd[f"b{r}.conv1.weight"]
        out[f"convs.{k}.conv2.2.bias"] = sd[f"b{r}.conv1.bias"]
        out[f"convs.{k}.skip.0.kernel"] = blur
        out[f"convs.{k}.skip.1.weight"] = sd[f"b{r}.skip.weight"]
    out["final_conv.0.weight"] = sd["b4.conv.weight"]
    out["final_conv.1.bias"] = sd["b4.conv.bias"]
    out["final_linear.0.weight"] = sd["b4.fc.weight"]
    out["final_linear.0.bias"] = sd["b4.fc.bias"]
    out["final_linear.1.weight"] = sd["b4.out.weight"]
    out["final_linear.1.bias"] = sd["b4.out.bias"]
    return {k: v.clone() for k, v in out.items()}


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "code from a checkpoint was executed"


def _evil_src(marker):
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('pwned')\n"


# ---------------------------------------------------------------------------------------------
# Round trips


def test_dapper_round_trip(G, D, tmp_path):
    weights = ck.save_generator(G, tmp_path / "gen.safetensors", metadata={"trained_on": "toys"})
    assert weights == tmp_path / "gen.safetensors" and (tmp_path / "gen.json").is_file()
    config = json.loads((tmp_path / "gen.json").read_text())
    assert config["class_name"] == "Generator" and config["init_kwargs"]["img_resolution"] == 16
    for p in (weights, tmp_path / "gen.json"):
        G2 = ck.load_generator(p)
        assert torch.equal(_images(G2), _images(G))
        assert not G2.training and not any(t.requires_grad for t in G2.parameters())
    assert G2.checkpoint_metadata["trained_on"] == "toys"
    assert ck.detect_format(weights) == "safetensors"
    assert ck.detect_format(tmp_path / "gen.json") == "json"
    # the config is also inside the weights file
    (tmp_path / "gen.json").unlink()
    assert torch.equal(_images(ck.load_generator(weights)), _images(G))

    ck.save_discriminator(D, tmp_path / "disc")
    D2 = ck.load_discriminator(tmp_path / "disc.safetensors")
    assert torch.equal(_scores(D2), _scores(D))
    with pytest.raises(ck.CheckpointError, match="Discriminator, not a Generator"):
        ck.load_generator(tmp_path / "disc.json")


def test_ada_pickle_round_trip(G, D, tmp_path, marker):
    path = write_ada_pickle(tmp_path / "network-snapshot-000100.pkl",
                             {"G": (G, G_KWARGS), "D": (D, D_KWARGS), "G_ema": (G, G_KWARGS)},
                             module_src=_evil_src(marker))
    assert "torch_utils.persistence" not in sys.modules
    assert ck.detect_format(path) == "pickle"
    st = ck.load_state(path)
    assert st.format == "ada-pkl" and st.class_name == "Generator"
    assert st.init_kwargs["synthesis_kwargs"] == G_KWARGS["synthesis_kwargs"]
    assert set(st.state_dict) == set(G.state_dict())
    G2 = ck.load_generator(path)
    assert torch.equal(_images(G2), _images(G))
    assert G2.content_box == (0, 0, 16, 16)
    D2 = ck.load_discriminator(path)
    assert torch.equal(_scores(D2), _scores(D))
    with pytest.raises(ck.CheckpointError, match="no network 'G_missing'"):
        ck.load_state(path, network="G_missing")


def test_tf_pickle_round_trip(G, D, tmp_path, marker):
    src = _evil_src(marker)
    path = _write_tf_pickle(tmp_path / "stylegan2-toy-config-f.pkl",
                            [_tf_generator_spec(G, "G"), _tf_discriminator_spec(D),
                             _tf_generator_spec(G)], build_src=src)
    assert "dnnlib.tflib.network" not in sys.modules
    st = ck.load_state(path)
    assert st.format == "tf-pkl"
    assert st.init_kwargs["synthesis_kwargs"]["channel_base"] == 128
    G2 = ck.load_generator(path)
    assert torch.allclose(_images(G2), _images(G), atol=1e-6)
    D2 = ck.load_discriminator(path)
    assert torch.allclose(_scores(D2), _scores(D), atol=1e-6)


def test_tf_pickle_refuses_unknown_settings(G, tmp_path):
    name, static, own, comps = _tf_generator_spec(G)
    static = dict(static, mystery_option=3)
    path = _write_tf_pickle(tmp_path / "odd.pkl", [(name, static, own, comps)] * 3)
    with pytest.raises(ck.CheckpointError, match="mystery_option"):
        ck.load_generator(path)


def test_rosinality_round_trip(G, D, tmp_path):
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": _rosinality_generator(G), "d": _rosinality_discriminator(D),
                "latent_avg": G.mapping.w_avg.clone(), "args": argparse.Namespace(size=16)}, path)
    assert ck.detect_format(path) == "torch-zip"
    st = ck.load_state(path)
    assert st.format == "rosinality-pt" and st.metadata["train_args"] == {"size": 16}
    G2 = ck.load_generator(path)
    assert torch.allclose(_images(G2), _images(G), atol=1e-6)
    D2 = ck.load_discriminator(path)
    assert torch.allclose(_scores(D2), _scores(D), atol=1e-6)

    # without latent_avg the average is estimated from the mapping network; old torch format
    torch.save({"g_ema": _rosinality_generator(G)}, path, _use_new_zipfile_serialization=False)
    assert ck.detect_format(path) == "torch-legacy"
    st = ck.load_state(path)
    assert "estimated" in st.metadata["w_avg"] and torch.isfinite(st.state_dict["mapping.w_avg"]).all()


def test_rosinality_channel_inference():
    def shapes(size, cm, n_mlp=8):
        ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
              512: 32 * cm, 1024: 16 * cm}
        sd = {f"style.{i + 1}.weight": torch.empty(512, 512) for i in range(n_mlp)}
        sd["input.input"] = torch.empty(1, 512, 4, 4)
        sd["to_rgb1.conv.weight"] = torch.empty(1, 3, 512, 1, 1)
        r, i = 8, 0
        while r <= size:
            sd[f"to_rgbs.{i}.conv.weight"] = torch.empty(1, 3, ch[r], 1, 1)
            r, i = r * 2, i + 1
        return sd

    kw = ck_rosinality._rosinality_generator_kwargs("x.pt", shapes(512, 2))
    assert kw["img_resolution"] == 512 and kw["mapping_kwargs"]["num_layers"] == 8
    assert kw["synthesis_kwargs"] == dict(channel_base=32768, channel_max=512)
    kw = ck_rosinality._rosinality_generator_kwargs("x.pt", shapes(256, 1))
    assert kw["synthesis_kwargs"] == dict(channel_base=16384, channel_max=512)
    with pytest.raises(ck.CheckpointError, match="cannot be expressed"):
        ck_rosinality._rosinality_generator_kwargs("x.pt", shapes(256, 4))


# ---------------------------------------------------------------------------------------------
# Content box rule


def _car_sized_G():
    kw = dict(z_dim=4, c_dim=0, w_dim=4, img_resolution=512, img_channels=3,
              mapping_kwargs=dict(num_layers=1),
              synthesis_kwargs=dict(channel_base=1024, channel_max=2))
    return Generator(**kw).eval(), kw


def test_car_content_box(tmp_path):
    G, kw = _car_sized_G()
    nets = {"G": (G, kw), "D": (G, kw), "G_ema": (G, kw)}
    car = write_ada_pickle(tmp_path / "stylegan2-car-config-f.pkl", nets)
    assert ck.load_generator(car).content_box == ck.LSUN_CAR_CONTENT_BOX
    assert ck.load_generator(car, content_box="full").content_box == (0, 0, 512, 512)
    assert ck.load_generator(car, content_box=(0, 0, 512, 256)).content_box == (0, 0, 512, 256)
    plain = write_ada_pickle(tmp_path / "cartoon-faces.pkl", nets)
    assert ck.load_generator(plain).content_box == (0, 0, 512, 512)
    by_dataset = write_ada_pickle(tmp_path / "network-snapshot-001000.pkl", nets,
                                   training_set_kwargs={"path": "/data/lsun/car_512x384.zip"})
    G2 = ck.load_generator(by_dataset)
    assert G2.content_box == ck.LSUN_CAR_CONTENT_BOX
    # dapper files keep the box they were saved with, whatever their name
    ck.save_generator(G2, tmp_path / "mine")
    assert ck.load_generator(tmp_path / "mine").content_box == ck.LSUN_CAR_CONTENT_BOX


# ---------------------------------------------------------------------------------------------
# Security: nothing in a file is ever executed


class _Payload:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


def _payloads(marker):
    import os

    return [
        _Payload(os.system, f"touch {marker}"),
        _Payload(exec, f"open({str(marker)!r}, 'w').write('x')"),
        _Payload(eval, f"open({str(marker)!r}, 'w').write('x')"),
    ]


@pytest.mark.parametrize("which", range(3))
def test_reduce_payload_is_refused(which, tmp_path, marker):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _payloads(marker)[which]}))
    with pytest.raises(ck.UnsafeCheckpointError, match="refused global") as info:
        ck.load_generator(path)
    assert str(path) in str(info.value)


def test_payload_hidden_in_ada_pickle_is_refused(G, tmp_path, marker):
    import os

    path = write_ada_pickle(tmp_path / "evil-ada.pkl", {"G_ema": (G, G_KWARGS)},
                             training_set_kwargs={"path": _Payload(os.system, f"touch {marker}")})
    with pytest.raises(ck.UnsafeCheckpointError, match="posix.system|os.system"):
        ck.load_generator(path)


def test_torch_save_payload_is_refused(tmp_path, marker):
    import os

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"w": _Payload(os.system, f"touch {marker}")}}, path)
    with pytest.raises(ck.UnsafeCheckpointError, match="nothing was executed") as info:
        ck.load_generator(path)
    # it names what was refused and never relays torch's advice to load the file with weights_only=False
    assert "system" in str(info.value) and "weights_only" not in str(info.value)


def test_storage_bytes_payload_is_refused(tmp_path, marker):
    # torch pickles tensors as torch.storage._load_from_bytes(<a torch.save payload>); the
    # real function torch.load()s those bytes without weights_only.
    import os

    buf = io.BytesIO()
    torch.save(_Payload(os.system, f"touch {marker}"), buf, _use_new_zipfile_serialization=False)
    path = tmp_path / "evil-storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Payload(torch.storage._load_from_bytes,
                                                     buf.getvalue())}))
    with pytest.raises(ck.UnsafeCheckpointError):
        ck.load_generator(path)


# ---------------------------------------------------------------------------------------------
# Broken files


def test_unknown_empty_and_missing_files(tmp_path):
    junk = tmp_path / "weights.pkl"
    junk.write_bytes(b"GIF89a" + bytes(range(200)))
    with pytest.raises(ck.CheckpointError, match="unknown checkpoint format") as info:
        ck.load_generator(junk)
    assert str(junk) in str(info.value) and isinstance(info.value, ValueError)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(ck.CheckpointError, match="empty"):
        ck.load_generator(empty)
    with pytest.raises(FileNotFoundError, match="nothere.pkl"):
        ck.load_generator(tmp_path / "nothere.pkl")
    other = tmp_path / "list.pkl"
    other.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ck.CheckpointError, match="not a network dict"):
        ck.load_generator(other)


def test_truncated_files(G, D, tmp_path):
    ada = write_ada_pickle(tmp_path / "a.pkl", {"G_ema": (G, G_KWARGS)})
    ros = tmp_path / "r.pt"
    torch.save({"g_ema": _rosinality_generator(G)}, ros)
    mine = ck.save_generator(G, tmp_path / "m")
    (tmp_path / "m.json").unlink()
    for path in (ada, ros, mine):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ck.CheckpointError) as info:
            ck.load_generator(path)
        assert str(path) in str(info.value)
        assert "truncated" in str(info.value)


def test_shape_mismatch_names_file_and_tensor(G, tmp_path):
    ck.save_generator(G, tmp_path / "g")
    config_path = tmp_path / "g.json"
    config = json.loads(config_path.read_text())
    config["init_kwargs"]["synthesis_kwargs"]["channel_max"] = 8
    config_path.write_text(json.dumps(config))
    with pytest.raises(ck.CheckpointError, match=r"shape mismatch.*synthesis\.b4") as info:
        ck.load_generator(config_path)
    assert str(tmp_path / "g.safetensors") in str(info.value)


def test_replaced_weights_are_detected(G, tmp_path):
    ck.save_generator(G, tmp_path / "g")
    other = _randomize(Generator(**G_KWARGS), 9)
    ck.save_generator(other, tmp_path / "h")
    (tmp_path / "h.safetensors").replace(tmp_path / "g.safetensors")
    with pytest.raises(ck.CheckpointError, match="sha256"):
        ck.load_generator(tmp_path / "g.json")


def test_cpu_bf16_at_load(G, tmp_path, monkeypatch, marker):
    monkeypatch.delenv("DAPPER_GENERATOR_BF16", raising=False)
    ada = write_ada_pickle(tmp_path / "network-snapshot-000100.pkl", {"G_ema": (G, G_KWARGS)})
    fp16 = dict(G_KWARGS, synthesis_kwargs=dict(G_KWARGS["synthesis_kwargs"], num_fp16_res=1))
    ada_fp16 = write_ada_pickle(tmp_path / "fp16.pkl", {"G_ema": (Generator(**fp16), fp16)})
    native = ck.save_generator(G, tmp_path / "gen.safetensors")
    # by default a loaded generator computes as the official one; real mode asks for "auto"
    assert ck.load_generator(ada).numerics == ""
    assert torch.equal(_images(ck.load_generator(ada)), _images(G))
    assert ck.load_generator(ada, cpu_bf16="auto").numerics == "cpu-bf16:8,16"  # no fp16 blocks: ada's four
    assert ck.load_generator(ada_fp16, cpu_bf16="auto").numerics == "cpu-bf16:16"  # the file's num_fp16_res
    fp32 = dict(G_KWARGS, synthesis_kwargs=dict(G_KWARGS["synthesis_kwargs"], num_fp16_res=0))  # ada's --fp32
    ada_fp32 = write_ada_pickle(tmp_path / "fp32.pkl", {"G_ema": (Generator(**fp32), fp32)})
    assert ck.load_generator(ada_fp32, cpu_bf16="auto").numerics == ""
    assert ck.load_generator(native, cpu_bf16="auto").numerics == ""  # dapper's own: float32, as trained
    assert ck.load_generator(native, cpu_bf16=1).numerics == "cpu-bf16:16"
    monkeypatch.setenv("DAPPER_GENERATOR_BF16", "0")  # the user's way back to the official numerics
    assert ck.load_generator(ada, cpu_bf16="auto").numerics == ""
    monkeypatch.setenv("DAPPER_GENERATOR_BF16", "1")
    assert ck.load_generator(native, cpu_bf16="auto").numerics == "cpu-bf16:16"
    assert ck.load_generator(native).numerics == ""  # the default stays float32 (training checks its hash)
    assert ck.load_generator(native, cpu_bf16=0).numerics == ""  # an explicit number wins
    monkeypatch.setenv("DAPPER_GENERATOR_BF16", "fast")
    with pytest.raises(ValueError, match="DAPPER_GENERATOR_BF16 must be a number"):
        ck.load_generator(ada, cpu_bf16="auto")
    with pytest.raises(ValueError, match="cpu_bf16 must be"):
        ck.load_generator(ada, cpu_bf16="yes")
