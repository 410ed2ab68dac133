#!/usr/bin/env bash
# One more GPU training leg for the shipped source GAN, in one call, from a fresh clone: it goes on
# from the shipped training state (checkpoints/source_gan_state.safetensors), retrains the encoder
# for the new generator and measures it with dapper.gan_eval, so the session leaves with a new
# generator and its numbers. Written for a short lease (about 9 minutes of command time); a step that
# fails does not stop the ones after it, and the outputs are packed at the end.
#
#   bench/gpu_train_leg.sh OUT [DEADLINE_S] [INIT]
#
# OUT         folder for the results (logs, JSON, and gpu_leg.tar.* holding the run folder, the new
#             checkpoints and reports/results/source_gan.csv with its figure)
# DEADLINE_S  seconds after the start by which training must have stopped (default 400); the
#             encoder (about 1-2 min on 16 cores) and gan_eval (about 1 min) come after it
# INIT        where the leg starts (default checkpoints/source_gan_state.safetensors; a resume.pt works)
#
# The leg keeps the recipe of checkpoints/source_gan_gpu_train.json (network, data, losses); the
# batch (64 or 128, from the training-step bench) and the length (the kimg the measured speed
# reaches before the deadline) are chosen here. The config file is rewritten with the new length and
# batch, and its "legs" list gets this leg appended (its full settings, from and to kimg, seconds,
# device, images/s). A leg that does not export a new generator puts the config back and stops the
# script (exit 1) before the encoder and gan_eval, so nothing shipped is left half-changed.
# Environment: PY (python), DEVICE (cuda), BENCH_ARGS (extra options for bench/train_step.py, e.g.
# for a CPU dry run), ENCODER_ARGS (for `python -m dapper.encoder train`), EVAL_ARGS (for
# `python -m dapper.gan_eval`).
set -u
OUT=${1:?OUT folder}; DEADLINE=${2:-400}; INIT=${3:-checkpoints/source_gan_state.safetensors}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
# No torch.compile: its start-up (one compile per activation setting) would eat the lease.
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20 DAPPER_NO_COMPILE=1
mkdir -p "$OUT"
RUN=runs/source_gan_gpu_leg
. "$(dirname "$0")/gpu_common.sh"

say "machine"
describe_machine

say "render the source set (cached)"
render_source_set checkpoints/source_gan_gpu_train.json

say "training-step bench"
$PY bench/train_step.py --device "$DEVICE" --config checkpoints/source_gan_gpu_train.json \
    --json "$OUT/train_step_gpu.json" ${BENCH_ARGS:-}

say "choose the leg's batch and length"
# what the leg may change, kept to put back if it does not export
cp checkpoints/source_gan_gpu_train.json "$OUT/source_gan_gpu_train.before.json"
GEN_BEFORE=$(sha256sum checkpoints/source_gan.safetensors | cut -d' ' -f1)
$PY - "$OUT/train_step_gpu.json" "$DEADLINE" "$SECONDS" "$INIT" "$RUN" <<'EOF' || exit 1
import dataclasses, json, sys
from dapper.stylegan2.train import SCHEDULE_FIELDS, TrainConfig, config_differences, read_init_state
bench, deadline, now, init, run = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = {(r["batch"], r["precision"]): r for r in json.load(open(bench))["rows"]}
speed = {b: rows[(b, "fp32")]["images_per_s"] for b in (64, 128) if (b, "fp32") in rows}
if {64, 128} <= set(speed):  # the larger batch only where the step is launch-bound
    batch = 128 if speed[128] >= 1.6 * speed[64] else 64
else:
    batch = max(speed, key=speed.get)
state = read_init_state(init)
start = state["nimg"] / 1000
path = "checkpoints/source_gan_gpu_train.json"
doc = json.load(open(path))
recipe = TrainConfig.from_json(path)
# the leg must train the network and data the state holds; only the schedule may change
differs = config_differences(recipe, state["config"], ignore=SCHEDULE_FIELDS)
if differs:
    sys.exit(f"{init} was trained with other settings than {path}: {differs}")
budget = deadline - now - 45                         # start-up, snapshots and the export
total = int(start + 0.9 * speed[batch] * budget / 1000)
if total <= start:
    sys.exit(f"no time left to train (deadline {deadline:.0f} s, now {now:.0f} s)")
cfg = dataclasses.replace(recipe, batch=batch, ema_kimg=10.0 * batch / 32, total_kimg=total, snapshot_kimg=100,
                          mixed_precision=False, threads=0)
doc["train"] = dataclasses.asdict(cfg)
doc["command"] = (f"python -m dapper train-gan --config {path} --init {init} --out {run} "
                  "--export checkpoints/source_gan")
doc.setdefault("legs", []).append({"from_kimg": round(start, 3), "planned_to_kimg": total, "batch": batch,
                                   "init": init, "bench_images_per_s": round(speed[batch]),
                                   "train": dataclasses.asdict(cfg)})
doc["about"] = (doc.get("about", "") + f" A further GPU leg by bench/gpu_train_leg.sh: from {start:.3f} kimg to "
                f"{total} kimg at batch {batch} ({speed[batch]:.0f} img/s in the bench), from {init}.").strip()
json.dump(doc, open(path, "w"), indent=2)
print(doc["about"])
EOF

say "the GPU leg"
rm -rf "$RUN"
MAXMIN=$($PY -c "print(max(0.5, ($DEADLINE - $SECONDS - 20) / 60))")
$PY -m dapper train-gan --config checkpoints/source_gan_gpu_train.json --init "$INIT" \
    --out "$RUN" --export checkpoints/source_gan --device "$DEVICE" --max-minutes "$MAXMIN"

say "check the leg exported"
GEN_AFTER=$(sha256sum checkpoints/source_gan.safetensors | cut -d' ' -f1)
$PY - "$GEN_BEFORE" "$GEN_AFTER" <<'EOF' || {
import json, sys
before, after = sys.argv[1:3]
doc = json.load(open("checkpoints/source_gan_gpu_train.json"))
meta = json.load(open("checkpoints/source_gan.json"))["metadata"]
if before == after or meta["kimg"] < doc["train"]["total_kimg"] or meta["kimg"] <= doc["legs"][-1]["from_kimg"]:
    sys.exit(f"the leg did not export {doc['train']['total_kimg']} kimg: the shipped generator is unchanged")
EOF
  # nothing exported: put the config back, keep the logs, and stop before the encoder and gan_eval
  cp "$OUT/source_gan_gpu_train.before.json" checkpoints/source_gan_gpu_train.json
  tar -C runs -cf "$OUT/failed_leg_logs.tar" --exclude=resume.pt "$(basename "$RUN")" 2>/dev/null
  say "failed: no new generator"
  exit 1
}

say "record the leg"
$PY - "$RUN" <<'EOF'
import glob, json, shutil, sys
import pandas as pd
import torch
from dapper.stylegan2.train import logged_seconds
run = sys.argv[1]
path = "checkpoints/source_gan_gpu_train.json"
doc = json.load(open(path))
meta = json.load(open("checkpoints/source_gan.json"))["metadata"]
leg = doc["legs"][-1]
seconds = logged_seconds(f"{run}/log.csv")
leg.update(to_kimg=meta["kimg"], seconds=seconds, device=meta.get("device"),
           device_name=torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           images_per_s=round((meta["kimg"] - leg["from_kimg"]) * 1000 / seconds))
json.dump(doc, open(path, "w"), indent=2)
print(json.dumps({k: v for k, v in leg.items() if k != "train"}))
# the shipped training log and sample grid go on with this leg's rows (kimg counts on, seconds per leg)
log = pd.read_csv(f"{run}/log.csv").assign(device=meta.get("device", "cuda").split(":")[0])
shipped = pd.read_csv("checkpoints/source_gan_log.csv")
pd.concat([shipped, log]).to_csv("checkpoints/source_gan_log.csv", index=False, float_format="%.4f")
shutil.copy(sorted(glob.glob(f"{run}/samples-*.png"))[-1], "checkpoints/source_gan_samples.png")
EOF

say "encoder for the new generator"
$PY -m dapper.encoder train --network checkpoints/source_gan.safetensors --threads "$(nproc)" ${ENCODER_ARGS:-}

say "gan_eval"
$PY -m dapper.gan_eval --n 5000 --n-per-class 10 ${EVAL_ARGS:-}

say "pack"
STAGE=$(mktemp -d)
mkdir -p "$STAGE/runs" "$STAGE/checkpoints" "$STAGE/reports/results" "$STAGE/reports/figures"
cp -r "$RUN" "$STAGE/runs/" 2>/dev/null
rm -f "$STAGE/$RUN/resume.pt"   # the full state with optimisers; the exported *_state.safetensors goes on from here
cp checkpoints/source_gan.json checkpoints/source_gan.safetensors checkpoints/source_gan_state.safetensors \
   checkpoints/source_gan_gpu_train.json checkpoints/source_gan_log.csv checkpoints/source_gan_samples.png \
   checkpoints/encoder_source_gan.json \
   checkpoints/encoder_source_gan.safetensors "$STAGE/checkpoints/" 2>/dev/null
cp reports/results/source_gan.csv "$STAGE/reports/results/" 2>/dev/null
cp reports/figures/fig_source_gan.png "$STAGE/reports/figures/" 2>/dev/null
tar -C "$STAGE" -cf - . | split -b 15m -d - "$OUT/gpu_leg.tar."
ls -la "$OUT"
say "done"
