"""StyleGAN2 training loop: runs, learns something, resumes exactly where it stopped."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from dapper.stylegan2.checkpoints import load_generator
from dapper.stylegan2.train import SCHEDULE_FIELDS, TrainConfig, Trainer, config_differences, train

TINY = dict(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16,
            d_channel_base=128, d_channel_max=16, batch=8, r1_interval=2, pl_interval=2, pl_weight=2.0,
            total_kimg=0.032, snapshot_kimg=0.016, ema_kimg=0.01, threads=1)


def _images(n=32, res=16):
    rng = np.random.default_rng(0)
    x = np.zeros([n, res, res, 3], np.uint8)
    x[:, res // 4: 3 * res // 4, res // 4: 3 * res // 4] = rng.integers(100, 255, [n, 1, 1, 3])
    return x


def test_one_step_updates_networks_and_ema():
    cfg = TrainConfig(**TINY)
    tr = Trainer(cfg, torch.device("cpu"))
    before = {k: v.clone() for k, v in tr.G_ema.state_dict().items()}
    g_before = tr.G.mapping.fc0.weight.clone()
    real = torch.rand(8, 3, 16, 16) * 2 - 1
    stats = tr.step(real)  # step 0: R1 and path length both run
    assert all(np.isfinite(v) for v in stats.values())
    assert {"loss_g", "loss_d", "r1", "pl"} <= set(stats)
    assert not torch.equal(g_before, tr.G.mapping.fc0.weight)
    assert any(not torch.equal(before[k], v) for k, v in tr.G_ema.state_dict().items())
    # EMA: ema <- beta * ema + (1 - beta) * G, beta from the half-life with its ramp-up
    cfg = tr.cfg
    beta = 0.5 ** (8 / min(cfg.ema_kimg * 1000, 8 * cfg.ema_rampup))
    for name, p in tr.G.named_parameters():
        expected = beta * before[name] + (1 - beta) * p.detach()
        assert torch.allclose(tr.G_ema.state_dict()[name], expected, atol=1e-6), name


def test_train_resume_and_export(tmp_path):
    cfg = TrainConfig(**TINY)
    images = _images()
    out = tmp_path / "run"
    half = TrainConfig(**{**TINY, "total_kimg": 0.016})
    tr = train(half, out, images=images, progress=False)
    assert tr.nimg == 16
    assert (out / "resume.pt").exists() and (out / "samples-00000.png").exists()
    tr2 = train(cfg, out, images=images, progress=False)  # resumes, does not restart
    assert tr2.nimg == 32
    log = (out / "log.csv").read_text().strip().splitlines()
    assert len(log) == 3 and float(log[-1].split(",")[0]) == 0.032
    G = load_generator(out / "generator_ema")
    assert json.loads((out / "generator_ema.json").read_text())
    with torch.no_grad():
        assert torch.equal(G(torch.zeros(2, 16), noise_mode="const"), tr2.G_ema(torch.zeros(2, 16), noise_mode="const"))


def test_config_rejects_unknown_settings(tmp_path):
    p = tmp_path / "cfg.json"
    p.write_text(json.dumps({"train": {"resolution": 16, "learning_rate": 1}}))
    try:
        TrainConfig.from_json(p)
    except ValueError as e:
        assert "learning_rate" in str(e)
    else:
        raise AssertionError("unknown setting accepted")


def test_shipped_config_parses():
    from dapper.utils import repo_root

    cfg = TrainConfig.from_json(repo_root() / "checkpoints" / "source_gan_v2_train.json")
    assert cfg.resolution == 64 and cfg.dataset == "toycars-source"


def test_shipped_generator_records_its_training_run():
    from dapper.utils import default_generator_path, repo_root

    ckpt = repo_root() / "checkpoints" / "source_gan_v2.json"
    assert default_generator_path() == ckpt.with_suffix(".safetensors")
    cfg = TrainConfig.from_json(ckpt)
    meta = json.loads(ckpt.read_text())["metadata"]
    # trained with the shipped recipe; a leg elsewhere (bench/gpu_train_leg.sh) may change only its schedule
    recipe = TrainConfig.from_json(repo_root() / "checkpoints" / "source_gan_v2_train.json")
    assert "--config " in meta["command"]
    assert not config_differences(cfg, dataclasses.asdict(recipe), ignore=SCHEDULE_FIELDS)
    assert 0 < meta["kimg"] <= cfg.total_kimg
    # its legs follow one another without a gap, up to the exported step, each with its CPU time
    legs = meta["legs"]
    assert legs[0]["kimg_from"] == 0 and legs[-1]["kimg_to"] == meta["kimg"]
    assert all(a["kimg_to"] == b["kimg_from"] for a, b in zip(legs, legs[1:]))
    assert all(leg["cpu_seconds"] > 0 and leg["kimg_to"] > leg["kimg_from"] for leg in legs)


def test_init_starts_from_another_run_with_fresh_optimisers(tmp_path):
    images = _images()
    first = train(TrainConfig(**{**TINY, "total_kimg": 0.016}), tmp_path / "a", images=images, progress=False)
    state = torch.load(tmp_path / "a" / "resume.pt", weights_only=True)
    slim = {k: v for k, v in state.items() if not k.startswith("opt_")}  # as --init may be given it
    torch.save(slim, tmp_path / "slim.pt")
    cfg = TrainConfig(**{**TINY, "batch": 4, "total_kimg": 0.024})
    tr = Trainer(cfg, torch.device("cpu"))
    tr.load_state_dict(slim, weights_only=True)
    assert tr.nimg == first.nimg and not tr.opt_G.state  # counters taken, optimiser fresh
    for k, v in first.G_ema.state_dict().items():
        assert torch.equal(v, tr.G_ema.state_dict()[k])
    fresh = Trainer(cfg, torch.device("cpu"))
    g_before = {k: v.clone() for k, v in fresh.G.state_dict().items()}
    with pytest.raises(KeyError, match="opt_G"):
        fresh.load_state_dict(slim)  # a resume needs the optimiser states ...
    assert fresh.nimg == 0 and all(torch.equal(v, fresh.G.state_dict()[k]) for k, v in g_before.items())
    tr2 = train(cfg, tmp_path / "b", images=images, progress=False, init=tmp_path / "slim.pt")
    # went on from 16 to 24 images in 2 steps of batch 4 (from scratch it would take 6 steps)
    assert tr2.nimg == 24 and tr2.step_idx == first.step_idx + 2 and tr2.opt_G.state
    tr3 = train(cfg, tmp_path / "b", images=images, progress=False, init=tmp_path / "missing.pt")
    assert tr3.nimg == 24  # the run folder's own resume.pt wins over --init
    # ... unless --init is ahead of it (a leg trained elsewhere): then it says so and trains nothing
    ahead = torch.load(tmp_path / "b" / "resume.pt", weights_only=True)
    torch.save(dict(ahead, nimg=int(ahead["nimg"]) + 8), tmp_path / "ahead.pt")
    before = (tmp_path / "b" / "resume.pt").read_bytes()
    with pytest.raises(ValueError, match="ahead of this run folder"):
        train(TrainConfig(**{**TINY, "batch": 4, "total_kimg": 0.048}), tmp_path / "b", images=images,
              progress=False, init=tmp_path / "ahead.pt")
    assert (tmp_path / "b" / "resume.pt").read_bytes() == before


def test_step_without_sync_returns_device_tensors():
    tr = Trainer(TrainConfig(**TINY), torch.device("cpu"))
    stats = tr.step(torch.rand(8, 3, 16, 16) * 2 - 1, sync=False)
    assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in stats.values())


def test_export_writes_a_training_state_that_a_new_run_goes_on_from(tmp_path):
    from safetensors.torch import load_file

    from dapper.cli.train_gan import main
    from dapper.stylegan2.train import load_training_state, training_state_path

    images = _images()
    first = train(TrainConfig(**{**TINY, "total_kimg": 0.016}), tmp_path / "a", images=images, progress=False)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"train": {**TINY, "total_kimg": 0.016}}))
    # the run is complete: --state-from writes its state beside a generator exported from it
    from dapper.stylegan2.train import export_generator

    export_generator(first, tmp_path / "ck" / "gan")
    main(["--config", str(cfg_path), "--state-from", str(tmp_path / "a" / "resume.pt"),
          "--export", str(tmp_path / "ck" / "gan")])
    state_file = training_state_path(tmp_path / "ck" / "gan.safetensors")
    assert state_file == tmp_path / "ck" / "gan_state.safetensors" and state_file.exists()
    assert not any(k.startswith(("opt", "G_ema")) for k in load_file(state_file))  # shippable: no optimiser, no copy
    state = load_training_state(state_file)
    assert state["nimg"] == first.nimg and state["step_idx"] == first.step_idx
    for name in ("G", "D", "G_ema"):
        ref = getattr(first, name).state_dict()
        assert set(state[name]) == set(ref) and all(torch.equal(state[name][k], ref[k]) for k in ref), name
    assert torch.equal(state["pl_mean"], first.pl_mean)
    # a new run starts from it (fresh optimisers) and goes on counting
    cfg = TrainConfig(**{**TINY, "total_kimg": 0.024})
    tr = train(cfg, tmp_path / "b", images=images, progress=False, init=state_file)
    assert tr.nimg == 24 and tr.step_idx == first.step_idx + 1
    # a generator that is not the one the state was saved with is refused, clearly
    export_generator(tr, tmp_path / "ck" / "gan")
    with pytest.raises(ValueError, match="not the generator"):
        load_training_state(state_file)
    with pytest.raises(ValueError, match="not the EMA generator"):  # --state-from checks the pairing too
        main(["--config", str(cfg_path), "--state-from", str(tmp_path / "a" / "resume.pt"),
              "--export", str(tmp_path / "ck" / "gan")])
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))  # some other safetensors file
    with pytest.raises(ValueError, match="not a dapper training state"):
        load_training_state(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="no training state"):
        train(cfg, tmp_path / "c", images=images, progress=False, init=tmp_path / "missing_state.safetensors")


def test_export_from_the_command_line_writes_generator_and_state(tmp_path, monkeypatch):
    from dapper.cli.train_gan import main
    from dapper.stylegan2 import train as train_mod

    images = _images()
    monkeypatch.setattr(train_mod, "load_dataset", lambda cfg, progress=True, sources=None: images)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"train": {**TINY, "total_kimg": 0.016}}))
    main(["--config", str(cfg_path), "--out", str(tmp_path / "run"), "--export", str(tmp_path / "gan")])
    state = train_mod.load_training_state(tmp_path / "gan_state.safetensors")
    G = load_generator(tmp_path / "gan")
    assert state["nimg"] == 16 and all(torch.equal(v, G.state_dict()[k]) for k, v in state["G_ema"].items())
    meta = json.loads((tmp_path / "gan.json").read_text())["metadata"]
    assert "--export" in meta["command"]


def test_config_differences_leave_out_the_schedule_when_asked():
    cfg = TrainConfig(**TINY)
    other = dataclasses.asdict(cfg) | {"batch": cfg.batch * 2, "channel_base": cfg.channel_base * 2}
    assert config_differences(cfg, other) == {"batch": (cfg.batch, cfg.batch * 2),
                                              "channel_base": (cfg.channel_base, cfg.channel_base * 2)}
    assert config_differences(cfg, other, ignore=SCHEDULE_FIELDS) == {
        "channel_base": (cfg.channel_base, cfg.channel_base * 2)}


def test_shipped_training_state_goes_with_the_shipped_generator():
    from dapper.stylegan2.train import load_training_state
    from dapper.utils import repo_root

    ck = repo_root() / "checkpoints"
    state = load_training_state(ck / "source_gan_v2_state.safetensors")  # checks the EMA generator's hash
    meta = json.loads((ck / "source_gan_v2.json").read_text())["metadata"]
    assert state["nimg"] / 1000 == meta["kimg"]
    cfg = TrainConfig(**state["config"])
    tr = Trainer(cfg, torch.device("cpu"))
    tr.load_state_dict(state, weights_only=True)  # every weight fits the shipped recipe
    recipe = TrainConfig.from_json(ck / "source_gan_v2_train.json")  # the run the shipped recipe describes
    assert not config_differences(cfg, dataclasses.asdict(recipe), ignore=SCHEDULE_FIELDS)


def test_training_state_names_only_a_safetensors_file_beside_it(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from dapper.stylegan2.train import export_generator, load_training_state, save_training_state, training_state_path

    tr = Trainer(TrainConfig(**TINY), torch.device("cpu"))
    weights = export_generator(tr, tmp_path / "gan.safetensors")  # a suffix on the export path is fine
    assert training_state_path(tmp_path / "gan.safetensors") == training_state_path(tmp_path / "gan.json") \
        == tmp_path / "gan_state.safetensors"
    good = save_training_state(tr, training_state_path(weights), weights)
    assert load_training_state(good)["nimg"] == 0
    with pytest.raises(ValueError, match="same folder"):
        save_training_state(tr, tmp_path / "sub" / "x_state.safetensors", weights)
    with safe_open(str(good), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["dapper_training_state"])
    (tmp_path / "gan.json.bak").write_text("{}")
    for name in ("../gan.safetensors", str(weights), "gan.json", "gan.json.bak"):
        bad = tmp_path / "bad_state.safetensors"
        save_file(tensors, str(bad), metadata={"dapper_training_state": json.dumps({**meta, "generator": name})})
        with pytest.raises(ValueError, match="bare .safetensors file name"):
            load_training_state(bad)


def test_state_from_refuses_a_config_other_than_the_runs(tmp_path):
    from dapper.cli.train_gan import main
    from dapper.stylegan2.train import export_generator

    first = train(TrainConfig(**{**TINY, "total_kimg": 0.016}), tmp_path / "a", images=_images(), progress=False)
    export_generator(first, tmp_path / "gan")
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"train": {**TINY, "total_kimg": 0.016, "seed": 5}}))
    with pytest.raises(ValueError, match="seed"):
        main(["--config", str(cfg_path), "--state-from", str(tmp_path / "a" / "resume.pt"),
              "--export", str(tmp_path / "gan")])
    assert not (tmp_path / "gan_state.safetensors").exists()


def _g_loss_and_grads(trainer, z):
    torch.manual_seed(7)  # the same per-layer noise in both precisions
    with trainer._amp():
        fake = trainer.G.synthesis(trainer.G.mapping(z, None))
        loss = torch.nn.functional.softplus(-trainer.D(fake).float()).mean()
    params = [p for p in trainer.G.parameters()]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss.detach(), [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]


def test_bf16_autocast_on_cpu_matches_fp32():
    """bf16 autocast on the CPU (the trainer's mixed precision), stated tolerance: for the same
    weights, the generator loss within 2% of fp32, its whole gradient within cosine 0.995 and norm
    5%, every parameter tensor's gradient within cosine 0.95 (the mapping layers, with the smallest
    gradients, are the loosest); R1 and path length run in fp32."""
    cfg32 = TrainConfig(**{**TINY, "mixed_precision": False})
    cfg16 = TrainConfig(**{**TINY, "mixed_precision": True})
    t32, t16 = Trainer(cfg32, torch.device("cpu")), Trainer(cfg16, torch.device("cpu"))
    assert t16.autocast and not t32.autocast
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(3))
    l32, g32 = _g_loss_and_grads(t32, z)
    l16, g16 = _g_loss_and_grads(t16, z)
    assert abs(float(l16 - l32)) <= 0.02 * abs(float(l32))
    cos = torch.nn.functional.cosine_similarity
    for a, b in zip(g16, g32):
        assert float(cos(a.flatten(), b.flatten(), dim=0)) > 0.95
    g16, g32 = torch.cat([g.flatten() for g in g16]), torch.cat([g.flatten() for g in g32])
    assert float(cos(g16, g32, dim=0)) > 0.995
    assert float(g16.norm() / g32.norm()) == pytest.approx(1.0, abs=0.05)
    real = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 2 - 1
    torch.manual_seed(5)
    s32 = t32.step(real)
    torch.manual_seed(5)
    s16 = t16.step(real)
    assert s16["pl"] == pytest.approx(s32["pl"], rel=1e-5)  # computed before any update, in fp32
    assert s16["r1"] == pytest.approx(s32["r1"], rel=1e-2)  # D after its own update is the same; fp32 R1
    for k in ("loss_g", "loss_d"):
        assert s16[k] == pytest.approx(s32[k], rel=0.03), k


def test_legs_export_at_every_snapshot_and_add_up(tmp_path):
    """A run trained in two processes with --snapshot-minutes and --export: each snapshot exports the
    generator and its state; the JSON lists both legs, the second starting where the first ended."""
    from dapper.stylegan2.train import LegRecorder, load_training_state

    images = _images()
    out, export = tmp_path / "run", tmp_path / "ckpt" / "gan"
    export.parent.mkdir()
    half = TrainConfig(**{**TINY, "total_kimg": 0.016})
    train(half, out, images=images, progress=False, snapshot_minutes=1e-6, on_snapshot=LegRecorder(export, "a"))
    first = json.loads((tmp_path / "ckpt" / "gan.json").read_text())["metadata"]["legs"]
    assert [(leg["kimg_from"], leg["kimg_to"]) for leg in first] == [(0.0, 0.016)]
    full = TrainConfig(**TINY)
    tr = train(full, out, images=images, progress=False, snapshot_minutes=1e-6, on_snapshot=LegRecorder(export, "b"))
    legs = json.loads((tmp_path / "ckpt" / "gan.json").read_text())["metadata"]["legs"]
    assert [(leg["kimg_from"], leg["kimg_to"], leg["command"]) for leg in legs] == [(0.0, 0.016, "a"),
                                                                                     (0.016, 0.032, "b")]
    assert all(leg["cpu_seconds"] >= 0 and leg["wall_seconds"] >= 0 for leg in legs)
    state = load_training_state(tmp_path / "ckpt" / "gan_state.safetensors")
    assert state["nimg"] == tr.nimg == 32
    # a fresh run exporting to the same place starts the list anew
    train(half, tmp_path / "other", images=images, progress=False, snapshot_minutes=1e-6,
          on_snapshot=LegRecorder(export, "c"))
    legs = json.loads((tmp_path / "ckpt" / "gan.json").read_text())["metadata"]["legs"]
    assert [leg["command"] for leg in legs] == ["c"]


def test_shipped_encoder_goes_with_the_shipped_generator():
    """A leg changes the generator; the encoder that starts projection must be retrained with it
    (`make encoder`), else projection silently starts from the mean w."""
    import warnings

    from dapper.inversion.encoder import DEFAULT_CHECKPOINT, encoder_for
    from dapper.utils import default_generator_path, display_path, weights_hash

    G = load_generator(default_generator_path())
    record = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    assert record["generator"] == display_path(default_generator_path())
    assert record["generator_hash"] == weights_hash(G)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a mismatch only warns; here it fails
        assert encoder_for(G) is not None
