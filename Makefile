# artifactctl: build, test, benchmark, install.
CARGO ?= cargo
PREFIX ?= $(HOME)/.cargo
BIN := target/release/artifactctl

.PHONY: build test bench install lint fmt clean

build:
	$(CARGO) build --release --locked

test:
	$(CARGO) test --locked --all-targets

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
