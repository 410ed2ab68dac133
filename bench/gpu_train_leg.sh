#!/usr/bin/env bash
# One GPU training leg of the shipped world-v2 source generator, in one call, from a fresh clone: it
# goes on from its training state, retrains the encoder for the new generator and measures it with
# gan-eval, so the session leaves with a new generator and its numbers. Written for a short lease
# (about 9 minutes of command time); a step that fails does not stop the ones after it, and the
# outputs are packed at the end.
#
#   bench/gpu_train_leg.sh OUT [DEADLINE_S] [INIT]
#
# OUT         folder for the results (logs, the bench JSON, and gpu_leg.tar.* holding the run folder
#             without resume.pt, checkpoints/source_gan_v2*, the encoder, reports/results/source_gan.csv
#             and reports/figures/fig_source_gan.png)
# DEADLINE_S  seconds after the start by which training must have stopped (default 400); the
#             encoder (about 1-2 min) and gan-eval (about 1 min) come after it
# INIT        where the leg starts (default checkpoints/source_gan_v2_state.safetensors; a resume.pt works)
#
# The leg keeps the recipe of checkpoints/source_gan_v2_train.json (network, data, losses; the file is
# not changed) except its schedule: batch 64 or 128 by the training-step bench, in float32 (TF32
# units), EMA half-life scaled with the batch, written to runs/source_gan_v2_gpu_leg/leg_train.json. The
# leg stops by time (--max-minutes) and exports checkpoints/source_gan_v2 and its training state at
# every snapshot (--snapshot-minutes), so the generator's JSON lists it under "legs". Its log rows
# are appended to checkpoints/source_gan_v2_log.csv (with a device column; seconds count per run) and
# its last sample grid becomes checkpoints/source_gan_v2_samples.png. A leg that exports nothing puts
# the shipped generator and state back and stops the script (exit 1) before the encoder and gan-eval.
# Environment: PY (python), DEVICE (cuda), BENCH_ARGS (extra options for bench/train_step.py, e.g.
# for a CPU dry run), ENCODER_ARGS (for `python -m dapper encoder train`), EVAL_ARGS (for
# `python -m dapper gan-eval`).
set -u
OUT=${1:?OUT folder}; DEADLINE=${2:-400}; INIT=${3:-checkpoints/source_gan_v2_state.safetensors}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
# No torch.compile: its start-up (one compile per activation setting) would eat the lease.
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20 DAPPER_NO_COMPILE=1
mkdir -p "$OUT"
RUN=runs/source_gan_v2_gpu_leg
RECIPE=checkpoints/source_gan_v2_train.json
GEN=checkpoints/source_gan_v2
SHIPPED="$GEN.safetensors $GEN.json ${GEN}_state.safetensors"   # what the leg rewrites
. "$(dirname "$0")/gpu_common.sh"
rm -rf "$RUN"; mkdir -p "$RUN"

say "machine"
describe_machine

say "render the source set (cached)"
render_source_set "$RECIPE"

say "training-step bench"
$PY bench/train_step.py --device "$DEVICE" --config "$RECIPE" --json "$OUT/train_step_gpu.json" ${BENCH_ARGS:-}

say "choose the leg's batch"
$PY - "$OUT/train_step_gpu.json" "$RECIPE" "$INIT" "$RUN/leg_train.json" <<'EOF' || exit 1
import dataclasses, json, sys
from dapper.stylegan2.train import SCHEDULE_FIELDS, TrainConfig, config_differences, read_init_state
bench, recipe_path, init, out = sys.argv[1:5]
recipe = TrainConfig.from_json(recipe_path)
state = read_init_state(init)
start = state["nimg"] / 1000
# the leg must train the network and data the state holds; only the schedule may change
differs = config_differences(recipe, state["config"], ignore=SCHEDULE_FIELDS) if state["config"] else {}
if differs:
    sys.exit(f"{init} was trained with other settings than {recipe_path} (recipe, state): {differs}")
if start >= recipe.total_kimg:
    sys.exit(f"{init} is at {start:.3f} kimg, already at the recipe's total_kimg ({recipe.total_kimg:g})")
try:
    rows = json.load(open(bench))["rows"]
except (OSError, ValueError, KeyError):
    rows = []
speed = {r["batch"]: r["images_per_s"] for r in rows if r["precision"] == "fp32" and r["finite"]}
if {64, 128} <= set(speed):  # the larger batch only where the step is launch-bound
    batch = 128 if speed[128] >= 1.6 * speed[64] else 64
else:
    batch = max(speed, key=speed.get) if speed else 64
cfg = dataclasses.replace(recipe, batch=batch, ema_kimg=recipe.ema_kimg * batch / recipe.batch,
                          mixed_precision=False, threads=0)
bench_note = f"{speed[batch]:.0f} img/s in the bench" if batch in speed else "no bench"
about = (f"GPU leg by bench/gpu_train_leg.sh: {recipe_path} at batch {batch} in float32 ({bench_note}), "
         f"EMA half-life scaled with the batch, from {init} at {start:.3f} kimg.")
json.dump({"about": about, "init": init, "from_kimg": start, "train": dataclasses.asdict(cfg)}, open(out, "w"), indent=2)
print(about)
EOF

say "the GPU leg"
BACKUP=$(mktemp -d)   # the shipped generator and state, put back if the leg exports nothing
for f in $SHIPPED; do [ -f "$f" ] && cp "$f" "$BACKUP/"; done
MAXMIN=$($PY -c "print(max(0.5, ($DEADLINE - $SECONDS - 30) / 60))")
$PY -m dapper train-gan --config "$RUN/leg_train.json" --init "$INIT" --out "$RUN" --export "$GEN" \
    --snapshot-minutes 1 --device "$DEVICE" --max-minutes "$MAXMIN"

say "check the leg exported"
$PY - "$RUN/leg_train.json" "$GEN" "$BACKUP" <<'EOF' || {
import filecmp, json, os, sys
from dapper.stylegan2.train import load_training_state
leg_cfg, gen, backup = sys.argv[1:4]
start = json.load(open(leg_cfg))["from_kimg"]
meta = json.load(open(f"{gen}.json"))["metadata"]
leg = (meta.get("legs") or [{}])[-1]
old = os.path.join(backup, os.path.basename(f"{gen}.safetensors"))
state = load_training_state(f"{gen}_state.safetensors")   # refuses a state that does not go with the generator
if (os.path.exists(old) and filecmp.cmp(old, f"{gen}.safetensors", shallow=False)) or meta["kimg"] <= start \
        or abs(leg.get("kimg_from", -1) - start) > 1e-3 or abs(state["nimg"] / 1000 - meta["kimg"]) > 1e-6:
    sys.exit(f"the leg from {start:.3f} kimg exported no new generator")
print({k: v for k, v in leg.items() if k != "command"})
EOF
  # nothing (or a half) exported: put the shipped files back, keep the logs, stop before encoder and gan-eval
  for f in $SHIPPED; do
    if [ -f "$BACKUP/$(basename "$f")" ]; then cp "$BACKUP/$(basename "$f")" "$f"; else rm -f "$f"; fi
  done
  tar -C runs -cf "$OUT/failed_leg_logs.tar" --exclude=resume.pt "$(basename "$RUN")" 2>/dev/null
  say "failed: no new generator; the shipped one is unchanged"
  exit 1
}

say "append the leg's log and samples"
$PY - "$RUN" "$GEN" <<'EOF'
import glob, json, shutil, sys
import pandas as pd
run, gen = sys.argv[1:3]
meta = json.load(open(f"{gen}.json"))["metadata"]
legs = meta["legs"]

def device_of(kimg):  # the device of the leg a logged row belongs to
    kimg = float(kimg)
    return next((leg["device"].split(":")[0] for leg in legs if leg["kimg_from"] < kimg <= leg["kimg_to"] + 1e-6), "")

# as text, so the shipped rows keep their digits
shipped = pd.read_csv(f"{gen}_log.csv", dtype=str)
if "device" not in shipped:
    shipped["device"] = shipped["kimg"].map(device_of)
log = pd.read_csv(f"{run}/log.csv", dtype=str)
log = log[log["kimg"].astype(float) <= meta["kimg"] + 1e-6].assign(device=legs[-1]["device"].split(":")[0])
pd.concat([shipped, log]).to_csv(f"{gen}_log.csv", index=False)
shutil.copy(sorted(glob.glob(f"{run}/samples-*.png"))[-1], f"{gen}_samples.png")
print(f"{len(log)} rows appended to {gen}_log.csv, now at {meta['kimg']:.3f} kimg")
EOF

say "encoder for the new generator"
$PY -m dapper encoder train --network "$GEN.safetensors" --threads "$(nproc)" ${ENCODER_ARGS:-}

say "gan-eval"
$PY -m dapper gan-eval --network "$GEN.safetensors" --n 5000 --n-per-class 10 ${EVAL_ARGS:-}

say "pack"
STAGE=$(mktemp -d)
mkdir -p "$STAGE/runs" "$STAGE/checkpoints" "$STAGE/reports/results" "$STAGE/reports/figures"
cp -r "$RUN" "$STAGE/runs/" 2>/dev/null
rm -f "$STAGE/$RUN/resume.pt"   # the full state with optimisers; the exported *_state.safetensors goes on from here
cp "$GEN"* checkpoints/encoder_source_gan* "$STAGE/checkpoints/" 2>/dev/null
cp reports/results/source_gan.csv "$STAGE/reports/results/" 2>/dev/null
cp reports/figures/fig_source_gan.png "$STAGE/reports/figures/" 2>/dev/null
tar -C "$STAGE" -cf - . | split -b 15m -d - "$OUT/gpu_leg.tar."
ls -la "$OUT"
say "done"
