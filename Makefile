# pxkernel: `make demo` runs a real notebook headless through pxkernel and shows
# its outputs; `make test` runs every test. Both work on a fresh machine: they
# install what is missing (Debian packages as root, a Python venv in .venv).

VENV     ?= .venv
PY       := $(VENV)/bin/python
BIN      := target/release/pxkernel
DEMO_DIR := build/demo
NOTEBOOKS := quickstart parallel sql  # and remote, through scripts/remote_demo.py

export PATH := $(abspath $(VENV))/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))

.PHONY: all setup build install demo test test-rust test-python test-notebooks test-lab lint bench clean

all: build

setup:
	@VENV=$(VENV) scripts/setup.sh

build:
	cargo build --release --locked

# The kernelspec goes into the venv, where the demo's Jupyter finds it.
install: setup build
	$(BIN) install --prefix $(VENV)

demo: install
	@mkdir -p $(DEMO_DIR)
	@for nb in $(NOTEBOOKS); do \
	  echo "==> jupyter nbconvert --execute notebooks/$$nb.ipynb"; \
	  $(PY) -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=pxkernel \
	    --output-dir $(DEMO_DIR) notebooks/$$nb.ipynb || exit 1; \
	  $(PY) scripts/show_notebook.py $(DEMO_DIR)/$$nb.ipynb || exit 1; \
	done
	@# Engines, a tunnel and a database on SSH hosts this machine makes (needs root).
	@rm -f $(DEMO_DIR)/remote.ipynb
	$(PY) scripts/remote_demo.py --output-dir $(DEMO_DIR)
	@if [ -f $(DEMO_DIR)/remote.ipynb ]; then $(PY) scripts/show_notebook.py $(DEMO_DIR)/remote.ipynb; fi

lint:
	cargo fmt --all -- --check
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo clippy -p pxkernel-sql --no-default-features --all-targets --locked -- -D warnings

test-rust:
	cargo test --workspace --profile ci --locked

# Every suite must run: under PXKERNEL_REQUIRE_ALL=1 a skipped test fails (saying
# what is missing); -rfEs lists failures, errors and (by hand, without it) skips.
test-python: install
	PXKERNEL_REQUIRE_ALL=1 $(PY) -m pytest -q -rfEs tests/python

# remote.ipynb runs against SSH test hosts that scripts/remote_demo.py makes.
test-notebooks: install
	@mkdir -p build/test-notebooks
	@rm -f build/test-notebooks/remote.ipynb
	@for nb in $(filter-out notebooks/remote.ipynb,$(wildcard notebooks/*.ipynb)); do \
	  echo "==> executing $$nb"; \
	  $(PY) -m jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=pxkernel \
	    --output-dir build/test-notebooks $$nb || exit 1; \
	done
	PXKERNEL_REQUIRE_ALL=1 $(PY) scripts/remote_demo.py --output-dir build/test-notebooks
	$(PY) scripts/check_notebook_errors.py $(patsubst notebooks/%,build/test-notebooks/%,$(wildcard notebooks/*.ipynb))

# JupyterLab in headless Chromium and nbconvert, both started from the venv with it
# off PATH; the tests install (and remove) their own kernelspec. Screenshots: build/lab/.
test-lab: setup build
	PXKERNEL_REQUIRE_ALL=1 $(PY) -m pytest -q -rs tests/lab

test: setup lint test-rust test-python test-notebooks test-lab fuzz-ci
	@echo "==> all tests passed"

bench: install
	cargo build --release --locked -p pxkernel-kernel --example px_floor --example relay_floor
	$(PY) bench/kernel_bench.py --pxkernel $(BIN)
	$(PY) bench/px_bench.py
	$(PY) bench/sql_bench.py --pxkernel $(BIN)

# Coverage-guided fuzzing (cargo fuzz, libFuzzer; nightly Rust and cargo-fuzz
# are installed if missing): every target for FUZZ_SECONDS from its seeds, see
# fuzz/README.md. fuzz-ci, part of `make test`, replays the crashes kept in
# fuzz/regressions/, then fuzzes every target for FUZZ_CI_SECONDS.
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 20

.PHONY: fuzz fuzz-ci

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh fuzz

fuzz-ci:
	fuzz/run.sh regressions
	FUZZ_SECONDS=$(FUZZ_CI_SECONDS) fuzz/run.sh fuzz

clean:
	cargo clean
	rm -rf build
