# The README's two commands: `make run` (set up, then the main job) and `make test` (set up, then the
# tests; what CI runs through .ci/run). Both work on a fresh clone.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test data

$(BIN)/jaxmlp: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/jaxmlp data

# Real Fashion-MNIST from Debian, where apt is there (tests that need it are skipped without it).
data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
	  || { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
	  || echo "warning: could not install dataset-fashion-mnist; real-data checks will be skipped"; \
	fi

# The main job: the 22-rate dropout study (3 seeds, subset and full data), results in runs/dropout_sweep/.
run: setup
	$(BIN)/python -m experiments.dropout_sweep

# Every reference study in its quick form, then the test suite (pytest last: its summary closes the log).
test: setup
	$(BIN)/python -m experiments --all --quick --out "$${TMPDIR:-/tmp}/jaxmlp-ci-runs"
	$(BIN)/python -m pytest -q
