# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   venv + install + data + train the default TCN + print metrics + write the run dir
#   make test   venv + install + data + every test (fast tier, the slow real-data tier, then the
#               fast tier again on Keras's JAX backend, in a second venv without TensorFlow)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests need beyond the data: a PostgreSQL server (sweep workers sharing a
# study) and Chromium with a monospace font (the report's browser test).
TEST_PACKAGES := postgresql chromium fonts-dejavu-core

.PHONY: demo test test-fast test-jax lint docs data test-system venv gpu-carry clean

demo: data
	@echo "make demo: the default row-wise TCN, 20 epochs: 15-25 minutes on 2 CPU cores, about 92%"
	@echo "test accuracy (docs/results.md); the report: runs/<date>-<time>-tcn-rows/report.html"
	$(BIN)/fashion-tcn train

# Every tier runs in two processes (pytest-xdist; a file's tests stay in one process, so a
# file's module fixtures are built once), handed out longest file first (tests/conftest.py, not
# xdist's own order by test count, which leaves the few long sweep tests to the end), and names
# its ten slowest tests; timings in the README, "Development".
XDIST := -n 2 --dist loadfile --no-loadscope-reorder --durations=10
# The slow tier's seven tests share no fixture but are 1-3 minutes each: balanced test by test
# (two files per process would leave one process idle for minutes)
SLOW_XDIST := -n 2 --dist worksteal --durations=10

test: data test-system
	$(BIN)/pytest -m "not slow" $(XDIST)
	$(BIN)/pytest -m slow $(SLOW_XDIST)
	$(MAKE) test-jax

# The fast tier's backend tests (marked `backend`: layers, models, training, resume, precision,
# streaming, explain, predict, serve, the pinned weights, the CLI paths that train) on Keras's JAX
# backend, where TensorFlow is not even installed: nothing may need it but export (those skip).
JAX_VENV := .venv-jax
test-jax: data $(JAX_VENV)/bin/pytest
	KERAS_BACKEND=jax $(JAX_VENV)/bin/pytest -m "backend and not one_backend and not slow" $(XDIST)

$(JAX_VENV)/bin/pytest: pyproject.toml
	$(PYTHON) -m venv $(JAX_VENV)
	$(JAX_VENV)/bin/pip install --quiet -e '.[jax,dev,serve]'
	touch $@

test-system:
	@dpkg -s $(TEST_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get install -y -qq $(TEST_PACKAGES) || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(TEST_PACKAGES); }; }

test-fast: venv
	$(BIN)/pytest $(XDIST)

# docs/cli.md is generated from the parser; tests/test_docs.py fails when it is stale
docs: venv
	$(BIN)/python -c "from fashion_tcn.flags import reference; print(reference(), end='')" > docs/cli.md

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

venv: $(BIN)/fashion-tcn

$(BIN)/fashion-tcn: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian/Ubuntu run '$(SUDO) apt-get install python3-venv'"; exit 1; }
	$(BIN)/pip install --quiet -e '.[cpu,dev,onnx,dashboards,serve]'
	touch $@

# The data: found or downloaded by fashion-tcn; offline, Debian's package provides it.
data: venv
	@$(BIN)/fashion-tcn data >/dev/null 2>&1 || { \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  $(SUDO) apt-get install -y -qq dataset-fashion-mnist || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }; }
	$(BIN)/fashion-tcn data

# What a lent GPU machine (Python 3.12, JAX, no Keras, no internet) needs from here: pure wheels
# and the four data files, carried to it as .whl and .data (benchmarks/gpu_session.sh).
gpu-carry: data
	rm -rf .whl .data && mkdir -p .data
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl \
	  keras namex optree h5py rich markdown-it-py mdurl pygments absl-py \
	  pyyaml jinja2 markupsafe optuna sqlalchemy alembic colorlog tqdm pytorch-tcn==1.2.3
	cp $$($(BIN)/python -c "from fashion_tcn.data import find_data_dir; print(find_data_dir(None))")/*.gz .data/

clean:
	rm -rf $(VENV) $(JAX_VENV) build src/*.egg-info .pytest_cache .ruff_cache
