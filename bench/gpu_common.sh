# Sourced by bench/gpu_train_leg.sh: a timestamped log line, what the machine is, and the source
# set rendered into the cache before training wants it.
say() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*"; }

describe_machine() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
  $PY -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
}

# render_source_set CONFIG: the training set CONFIG names, rendered with all cores but one (cached)
render_source_set() {
  $PY -c "
import os, sys
from dapper.data import toycars
from dapper.stylegan2.train import TrainConfig
cfg = TrainConfig.from_json(sys.argv[1])
x = toycars.source_dataset(cfg.dataset_size, size=cfg.resolution, seed=cfg.data_seed,
                           workers=max(1, (os.cpu_count() or 2) - 1), progress=False)
print(x.shape, x.dtype)" "$1"
}
