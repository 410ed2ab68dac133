# Front door of the study. Everything runs through the project's own virtual environment.
#   make setup    create .venv, install dapper with its pinned dependencies, register the kernel
#   make report   run every notebook in order (PROFILE=full|quick, DATASET=toycars|stanford_cars)
#   make test     unit tests, then every notebook under nbval with its quick defaults
#   make lint     ruff

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= full
DATASET ?= toycars
# ONLY=03 (or 03_augmentation) runs a single notebook.
ONLY ?=
# Extra notebook parameters and options for the report, e.g. REPORT_ARGS='-p data_root /data/cars'
REPORT_ARGS ?=
# Notebooks run under `make test` write here, so a quick test never overwrites reports/.
TEST_REPORTS := $(CURDIR)/.cache/test-reports

.DEFAULT_GOAL := help
.PHONY: help setup test report lint world-models world-calibration source-gan source-gan-more encoder clean

help:
	@echo "make setup     create .venv, install dapper (pinned), register the 'dapper' Jupyter kernel"
	@echo "make report    run notebooks/NN_*.ipynb in order; PROFILE=$(PROFILE) DATASET=$(DATASET) [ONLY=NN]"
	@echo "make test      pytest tests/, then nbval over notebooks/ (quick profile)"
	@echo "make lint      ruff check"
	@echo "make world-models  retrain every helper model of the embedded world (oracles, annotators, perceptual, classifier)"
	@echo "make world-calibration  measure the embedded world against its 64 px instruments (reports/results/world_calibration.csv)"
	@echo "make source-gan  the world-v2 source generator from scratch on the CPU, resumable, in legs (hours)"
	@echo "make source-gan-more  one more leg of it, from its exported training state"
	@echo "make encoder  retrain the projection's encoder for the shipped generator (after a leg)"
	@echo "make clean     remove caches, build files and executed notebooks (keeps .venv and .cache)"

setup:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[notebooks,dev]"
	$(PY) -m ipykernel install --sys-prefix --name dapper --display-name "Python 3 (dapper)"
# The browser test (tests/test_browser_e2e.py) drives Debian's Chromium with Playwright (the dev
# extra); Playwright's own browser download is not used. Without apt (or root) the test is skipped.
	command -v chromium >/dev/null 2>&1 || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
		|| echo "Chromium not installed: tests/test_browser_e2e.py will be skipped"

test:
	$(PY) -m pytest tests
	DAPPER_REPORTS=$(TEST_REPORTS) $(PY) -m pytest --nbval-lax notebooks/

report:
	DAPPER_REPORTS=$(CURDIR)/reports $(PY) -m dapper report --profile $(PROFILE) --dataset $(DATASET) $(if $(ONLY),--only $(ONLY)) $(REPORT_ARGS)
	$(PY) -m dapper status --write

lint:
	$(PY) -m ruff check .

# The embedded world's helper models, each a fixed number of steps on its own render stream (so a
# rerun gives the same model); every JSON records the world it was trained on.
world-models:
	$(PY) -m dapper oracles train identity --threads 2
	$(PY) -m dapper oracles train pose --threads 2
	$(PY) -m dapper annotators train pose --threads 2
	$(PY) -m dapper annotators train detector --threads 2
	$(PY) -m dapper perceptual train
	$(PY) -m dapper classify pretrain --threads 2

world-calibration:
	$(PY) -m dapper world-calibration

# The world-v2 source generator from scratch on the 2 CPU cores, resumable (interrupt and run
# again), to the length of the exported one (checkpoints/source_gan_v2.json); every snapshot, at
# least every 30 minutes, exports it and its training state and records the leg in its JSON.
SOURCE_GAN_KIMG = $(shell $(PY) -c "import json; print(json.load(open('checkpoints/source_gan_v2.json'))['metadata']['kimg'])" 2>/dev/null || echo 5000)
source-gan:
	$(PY) -m dapper train-gan --config checkpoints/source_gan_v2_train.json --out runs/source_gan_v2 \
		--export checkpoints/source_gan_v2 --snapshot-minutes 30 --total-kimg $(SOURCE_GAN_KIMG)

# One more leg of the world-v2 generator: from runs/source_gan_v2 when it is there, else from the
# exported training state (fresh optimisers); stop it with Ctrl-C (it exports on the way out).
source-gan-more:
	$(PY) -m dapper train-gan --config checkpoints/source_gan_v2_train.json --out runs/source_gan_v2 \
		--init checkpoints/source_gan_v2_state.safetensors --export checkpoints/source_gan_v2 --snapshot-minutes 30

# The encoder that starts projection, retrained for the shipped generator (after every leg that
# changes it: the encoder refuses a generator other than its own, and projection then starts at the
# mean w). About 6 minutes on 2 cores.
encoder:
	$(PY) -m dapper encoder train --network checkpoints/source_gan_v2.safetensors --threads 2

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache reports/notebooks $(TEST_REPORTS)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
