# Two commands: `make demo` and `make test`. Both create .venv from scratch when it is missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip install --disable-pip-version-check -q -c constraints.txt
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: demo test lint tutorials bench-synthetic bench-speed bench-calibration bench-identifiability \
        bench-counts bench-pbmc bench-redundancy bench-parallel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first (pinned CPU wheel), then the package
$(VENV)/.core: $(BIN)/python setup.cfg constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.core setup.cfg
	$(PIP) -e '.[dev]'
	touch $@

demo: $(VENV)/.core
	$(BIN)/python -m pyro_sparse.demo

test: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.test
	$(BIN)/ruff check .

# rerun the tutorial notebooks at full size and save them with their outputs (about 2 minutes)
tutorials: $(VENV)/.test
	$(BIN)/python tutorials/execute.py --jobs 2

bench-synthetic: $(VENV)/.test
	$(BIN)/python benchmarks/synthetic_study.py

bench-speed: $(VENV)/.test
	$(BIN)/python benchmarks/speed.py

bench-calibration: $(VENV)/.test
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides meanfield lowrank --no-rescale --name calib_norescale
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides meanfield lowrank --name calib_rescale
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides meanfield lowrank --restarts 2 --name calib_r2
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides meanfield lowrank --restarts 2 --init random --name calib_r2_random
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides lowrank --restarts 6 --init random --name calib_r6_random
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides meanfield lowrank --decoder learned --exact-zeros --unit-signal --epochs 1000 --name calib_learned
	$(BIN)/python benchmarks/calibration.py --reps 10 --guides map --decoder learned --exact-zeros --unit-signal --epochs 1000 --name calib_learned_map
	for g in map meanfield lowrank; do $(BIN)/python benchmarks/calibration.py --reps 10 --guides $$g --decoder learned --exact-zeros --unit-signal --epochs 200 --name calib_learned200_$$g; done
	$(BIN)/python benchmarks/calibration.py --render benchmarks/results/calib_norescale.csv benchmarks/results/calib_rescale.csv benchmarks/results/calib_r2.csv benchmarks/results/calib_r2_random.csv benchmarks/results/calib_r6_random.csv benchmarks/results/calib_learned200_map.csv benchmarks/results/calib_learned200_meanfield.csv benchmarks/results/calib_learned200_lowrank.csv benchmarks/results/calib_learned.csv benchmarks/results/calib_learned_map.csv --name calibration

bench-identifiability: $(VENV)/.test
	$(BIN)/python benchmarks/identifiability.py --reps 3 --jobs 2

bench-redundancy: $(VENV)/.test
	$(BIN)/python benchmarks/redundancy.py --reps 8 --jobs 2 --name redundancy_seeds0
	$(BIN)/python benchmarks/redundancy.py --reps 8 --jobs 2 --first-seed 8 --name redundancy_seeds8
	$(BIN)/python benchmarks/redundancy.py --render benchmarks/results/redundancy_seeds0.csv benchmarks/results/redundancy_seeds8.csv

bench-parallel: $(VENV)/.test
	$(BIN)/python benchmarks/parallel_restarts.py

bench-counts: $(VENV)/.test
	$(BIN)/python benchmarks/counts_and_missing.py --reps 3 --jobs 2

bench-pbmc: $(VENV)/.test
	$(BIN)/python benchmarks/pbmc.py --epochs 150 --jobs 2

clean:
	rm -rf $(VENV) .pytest_cache
