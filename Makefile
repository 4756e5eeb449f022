# artifactctl: build, test, benchmark, install.
CARGO ?= cargo
PREFIX ?= $(HOME)/.cargo
BIN := target/release/artifactctl
PYTHON ?= python3
# The Python tests' virtual environment, created once and reused.
PYVENV := target/pyvenv
# The wheel builder's own environment (maturin).
WHEELVENV := target/wheelvenv
# moto's S3 server for the remote tests (tests/it/remote.rs starts it).
MOTOVENV := target/motovenv

.PHONY: build test pytest wheel bench install lint fmt clean

build:
	$(CARGO) build --release --locked

# The Rust suite, then the Python API and browser tests against the debug
# binary cargo test just built (no second build).
test: $(MOTOVENV)/.ready
	$(CARGO) test --locked --all-targets
	$(MAKE) pytest

pytest: $(PYVENV)/.ready
	$(CARGO) build --locked --quiet
	ARTIFACTCTL_BIN=$(CURDIR)/target/debug/artifactctl PYTHONPATH=$(CURDIR)/python \
		$(PYVENV)/bin/python -m pytest -q -rs -p no:cacheprovider tests/python

$(PYVENV)/.ready:
	$(PYTHON) -m venv $(PYVENV)
	$(PYVENV)/bin/python -m pip install --quiet --disable-pip-version-check pytest
	touch $@

$(MOTOVENV)/.ready:
	$(PYTHON) -m venv $(MOTOVENV)
	$(MOTOVENV)/bin/python -m pip install --quiet --disable-pip-version-check 'moto[server]'
	touch $@

# target/wheels/artifactctl-*.whl: the release binary and the Python package.
wheel: $(WHEELVENV)/.ready
	$(WHEELVENV)/bin/maturin build --release --locked --out target/wheels

$(WHEELVENV)/.ready:
	$(PYTHON) -m venv $(WHEELVENV)
	$(WHEELVENV)/bin/python -m pip install --quiet --disable-pip-version-check 'maturin>=1.5,<2'
	touch $@

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: build
	python3 bench/run.py --bin $(BIN)

install: build
	install -d $(PREFIX)/bin $(PREFIX)/share/man/man1 $(PREFIX)/share/bash-completion/completions
	install -m 0755 $(BIN) $(PREFIX)/bin/artifactctl
	$(BIN) man --dir $(PREFIX)/share/man/man1
	$(BIN) completions bash > $(PREFIX)/share/bash-completion/completions/artifactctl

clean:
	$(CARGO) clean

# Seed 000's refresh targets, run on the example pipeline in examples/ (in a
# project of your own, drop `--root $(REFRESH_ROOT)` and the build).
REFRESH_ROOT ?= examples
.PHONY: refresh-models refresh-datasets refresh-models-only

refresh-models: build
	$(BIN) --root $(REFRESH_ROOT) refresh

refresh-datasets: build
	$(BIN) --root $(REFRESH_ROOT) refresh --datasets-only

refresh-models-only: build
	$(BIN) --root $(REFRESH_ROOT) refresh --models-only

.PHONY: clear-artifacts clear-artifacts-force

# Show the regenerable artifacts `artifactctl clear` would remove (seed 000).
clear-artifacts: build
	$(BIN) clear

# Remove them.
clear-artifacts-force: build
	$(BIN) clear --force
