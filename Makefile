# Two commands set everything up: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The known-good PyTorch pair; pyproject.toml states the ranges users can satisfy.
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test test-fast coverage lint bench gpu-bundle gpu-check gpu-dry-run clean

install: $(VENV)/.installed

# peers: torchdyn and torchode, so the tests cover every backend=.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e '.[dev,launchers,trackers,hpo,peers]'
	touch $@

# Ends by saying how to run nodecli next: it is installed in .venv, not on the PATH.
demo: install
	$(VENV)/bin/nodecli train
	@echo
	@echo "nodecli is installed in $(VENV). Next, either activate it:"
	@echo "    source $(VENV)/bin/activate"
	@echo "    nodecli report"
	@echo "or call it by its path:"
	@echo "    $(VENV)/bin/nodecli report"

# Every test, the slow subprocess ones included (what CI runs), one pytest-xdist worker
# per core. --dist loadfile keeps each test file on one worker, so a module fixture (a
# shared sweep, the SLURM cluster) is built once; --no-loadscope-reorder keeps
# tests/conftest.py's order: the longest files first, so the workers finish together.
# (loadgroup's xdist_group marks have no effect with pytest 9.2 and pytest-xdist 3.8.)
XDIST := -n auto --dist loadfile --no-loadscope-reorder
test: install
	$(PY) -m pytest $(XDIST)

# The same suite with nodecli's line coverage (pytest-cov). Its own target: on Python 3.11
# coverage's tracer makes in-process Python ~2.4x slower (the whole suite 2 min 50 s ->
# 4-5 min on 2 cores), and the suite is the same either way.
coverage: install
	$(PY) -m pytest $(XDIST) --cov=nodecli --cov-report=term

# The in-process tests only (1 min 22 s on 2 cores): for the edit-test loop.
test-fast: install
	$(PY) -m pytest $(XDIST) -m "not slow"

# ruff, then the import contracts in pyproject.toml (import-linter).
lint: install
	$(VENV)/bin/ruff check nodecli hydra_plugins tests benchmarks
	$(VENV)/bin/ruff format --check nodecli hydra_plugins tests benchmarks
	$(VENV)/bin/lint-imports

# Every backend × sensealg (× layer_style for nodecli) as nodecli sweeps at two scales, then
# nodecli report; writes benchmarks/RESULTS.md (benchmarks/bench_sweep.py says how). Then
# nodecli.odeint against torchdiffeq.odeint, every sensealg: benchmarks/ODEINT.md.
bench: install
	$(PY) benchmarks/bench_sweep.py --out benchmarks/RESULTS.md
	$(PY) benchmarks/bench_odeint.py --out benchmarks/ODEINT.md

# The device check (docs/gpu.md): the pure-Python wheels the GPU image lacks (nodecli's own
# included) into build/gpu-bundle/, the size printed; gpu-check runs scripts/gpu_check.sh
# with this Python (on the device machine: the command in docs/gpu.md); gpu-dry-run runs it
# here on the CPU, in a fresh venv of torch, the image's other packages and the bundle.
gpu-bundle:
	PYTHON=$(PYTHON) scripts/gpu_bundle.sh build/gpu-bundle

gpu-check: gpu-bundle
	PYTHON=$(PYTHON) scripts/gpu_check.sh build/gpu-bundle

gpu-dry-run: gpu-bundle
	scripts/gpu_dry_run.sh build/gpu-bundle

clean:
	rm -rf $(VENV) outputs build *.egg-info
