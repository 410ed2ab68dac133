#!/usr/bin/env bash
# One GPU session, in one call: the training-step bench, the GPU leg of the source GAN, the GPU
# projection bench. Written for a short lease (about 9 minutes of command time); every step is
# independent, so a failing step does not stop the others, and the outputs are packed at the end.
#
#   bench/gpu_session.sh OUT INIT [DEADLINE_S]
#
# OUT         folder for the results (logs, JSON, the run folder packed as gpu_session.tar.*)
# INIT        resume.pt of the CPU run the GPU leg starts from (runs/source_gan/resume.pt after
#             `make source-gan`; only its networks and kimg counter are used)
# DEADLINE_S  seconds after the start by which training must have stopped (default 420)
#
# The GPU leg: the batch (64 or 128, by the bench) and the length (the kimg the measured speed
# reaches before the deadline, rounded down to whole kimg) are chosen here and written into
# checkpoints/source_gan_gpu_train.json, which `python -m dapper train-gan` then runs to the
# end; the run exports checkpoints/source_gan. The projection bench runs on the generator the GPU leg
# started from, whose encoder is shipped. Environment: PY (python), DEVICE (cuda), BENCH_ARGS and
# PROJ_ARGS (extra options for bench/train_step.py and bench/projection.py, e.g. for a CPU dry run).
set -u
OUT=${1:?OUT folder}; INIT=${2:?INIT resume.pt}; DEADLINE=${3:-420}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
# No torch.compile: its start-up (one compile per activation setting) would eat the lease.
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=20 DAPPER_NO_COMPILE=1
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_common.sh"

say "machine"
describe_machine

say "render the source set (cached)"
render_source_set checkpoints/source_gan_train.json

say "training-step bench"
$PY bench/train_step.py --device "$DEVICE" --json "$OUT/train_step_gpu.json" ${BENCH_ARGS:-}

say "choose the GPU leg's batch and length"
$PY - "$OUT/train_step_gpu.json" "$DEADLINE" "$SECONDS" <<'EOF'
import dataclasses, json, sys
from dapper.stylegan2.train import TrainConfig
rows = {(r["batch"], r["precision"]): r for r in json.load(open(sys.argv[1]))["rows"]}
deadline, now = float(sys.argv[2]), float(sys.argv[3])
speed64 = rows[(64, "fp32")]["images_per_s"]
speed128 = rows[(128, "fp32")]["images_per_s"]
batch = 128 if speed128 >= 1.6 * speed64 else 64    # larger batch only where the step is launch-bound
speed = speed128 if batch == 128 else speed64
budget = deadline - now - 45                         # start-up, snapshots and the export
cpu = TrainConfig.from_json("checkpoints/source_gan_train.json")
total = int(cpu.total_kimg + 0.9 * speed * budget / 1000)
cfg = dataclasses.replace(cpu, batch=batch, ema_kimg=10.0 * batch / 32, total_kimg=total, snapshot_kimg=100,
                          mixed_precision=False, threads=0)
about = (f"GPU leg of the shipped toycars source GAN: starts from the CPU run (checkpoints/source_gan_train.json, "
         f"{cpu.total_kimg:g} kimg) and trains on to {total} kimg at batch {batch} in float32 with TF32 units "
         f"(EMA half-life scaled with the batch, fresh Adam states). Batch and length were chosen in the session "
         f"by bench/gpu_session.sh from the measured training speed ({speed:.0f} img/s at batch {batch}).")
json.dump({"about": about, "command": "python -m dapper train-gan --config checkpoints/source_gan_gpu_train.json "
           "--init runs/source_gan/resume.pt --out runs/source_gan_gpu --export checkpoints/source_gan",
           "train": dataclasses.asdict(cfg)}, open("checkpoints/source_gan_gpu_train.json", "w"), indent=2)
print(about)
EOF

say "GPU leg of the source GAN"
CPU_GAN=$(mktemp -d)   # the CPU generator, kept for the projection bench (its encoder matches it)
cp checkpoints/source_gan.safetensors checkpoints/source_gan.json "$CPU_GAN/"
rm -rf runs/source_gan_gpu
MAXMIN=$($PY -c "print(max(0.5, ($DEADLINE - $SECONDS - 20) / 60))")
$PY -m dapper train-gan --config checkpoints/source_gan_gpu_train.json --init "$INIT" \
    --out runs/source_gan_gpu --export checkpoints/source_gan --device "$DEVICE" --max-minutes "$MAXMIN"

say "projection bench"
PROJ_S=$(( 540 - SECONDS )); [ "$PROJ_S" -gt 150 ] && PROJ_S=150
if [ "$PROJ_S" -gt 30 ]; then
  timeout "$PROJ_S" $PY bench/projection.py --device "$DEVICE" --network "$CPU_GAN/source_gan.safetensors" \
      --n-official 4 --n-images 40 ${PROJ_ARGS:-} --json "$OUT/projection_gpu.json"
else
  say "no time left for the projection bench"
fi

say "pack"
STAGE=$(mktemp -d)
mkdir -p "$STAGE/runs" "$STAGE/checkpoints"
cp -r runs/source_gan_gpu "$STAGE/runs/" 2>/dev/null
cp checkpoints/source_gan.json checkpoints/source_gan.safetensors checkpoints/source_gan_gpu_train.json \
   "$STAGE/checkpoints/" 2>/dev/null
tar -C "$STAGE" -cf - . | split -b 15m -d - "$OUT/gpu_session.tar."
ls -la "$OUT"
say "done"
