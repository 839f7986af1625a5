# The two set-up commands a newcomer needs: `make demo` and `make test`. Each builds .venv itself.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip --disable-pip-version-check
# torch is pinned and installed in the same pip command as everything that depends on it, so pip
# takes the local CPU build instead of a multi-GB CUDA one.
TORCH  := torch==2.13.0
# Debian packages the tests drive for real (broker, browser, database, firmware images)
SYSTEM_PACKAGES := mosquitto chromium chromium-driver postgresql

.PHONY: demo test bench lint unit venv-core venv-dev venv-fed system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e .
	touch $@

$(VENV)/.dev: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install -q -e ".[dev,ml,deep,service,firmware,rl,scale]" "$(TORCH)"
	touch $@ $(VENV)/.core

# Flower pins older web frameworks than the service uses, so it lives in its own environment
# (docs/federated.md); the federated tests drive it through subprocesses.
FED := .venv-fed
$(FED)/.done: pyproject.toml Makefile
	$(PYTHON) -m venv $(FED)
	$(FED)/bin/pip install -q --disable-pip-version-check -e ".[federated]" pytest
	touch $@

venv-core: $(VENV)/.core
venv-dev: $(VENV)/.dev
venv-fed: $(FED)/.done

system-deps:
	bash scripts/system-deps.sh $(SYSTEM_PACKAGES)

## make demo: simulate a small IoT site, learn it, detect the injected attacks, print and write a report
demo: $(VENV)/.core
	$(BIN)/misuse demo --out demo-out

## make test: lint, type-check and the whole test suite (real-data tests need ../shared/data)
test: $(VENV)/.dev $(FED)/.done system-deps lint unit

lint: $(VENV)/.dev
	$(BIN)/ruff check misuse tests benchmarks
	$(BIN)/ruff format --check misuse tests benchmarks
	$(BIN)/mypy

unit: $(VENV)/.dev
	$(BIN)/python -m pytest -q -p no:randomly

## make bench: the benchmarks under benchmarks/ at full size (long)
bench: $(VENV)/.dev $(FED)/.done
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(FED) demo-out .misuse
