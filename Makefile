# Two commands do everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   venv + install + data + train the default TCN + print metrics + write the run dir
#   make test   venv + install + data + every test (fast tier, then the slow real-data tier)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests need beyond the data: a PostgreSQL server (sweep workers sharing a
# study) and Chromium with a monospace font (the report's browser test).
TEST_PACKAGES := postgresql chromium fonts-dejavu-core

.PHONY: demo test test-fast lint data test-system venv clean

demo: data
	$(BIN)/fashion-tcn train

test: data test-system
	$(BIN)/pytest -m "not slow"
	$(BIN)/pytest -m slow

test-system:
	@dpkg -s $(TEST_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) apt-get install -y -qq $(TEST_PACKAGES) || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(TEST_PACKAGES); }; }

test-fast: venv
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

venv: $(BIN)/fashion-tcn

$(BIN)/fashion-tcn: pyproject.toml
	$(PYTHON) -m venv $(VENV) || { echo "python venv failed: on Debian/Ubuntu run '$(SUDO) apt-get install python3-venv'"; exit 1; }
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	touch $@

# The data: found or downloaded by fashion-tcn; offline, Debian's package provides it.
data: venv
	@$(BIN)/fashion-tcn data >/dev/null 2>&1 || { \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  $(SUDO) apt-get install -y -qq dataset-fashion-mnist || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }; }
	$(BIN)/fashion-tcn data

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
