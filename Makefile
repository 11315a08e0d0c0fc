# The two commands a newcomer needs: `make run` and `make test`. Both set up first.
# Prefer the distribution's CPython when there is one: Debian builds it with PGO and
# LTO, twice as fast as an unoptimised source build (pyenv's default) on interpreter
# microbenchmarks and ~10 % faster on the engine benchmark. Any Python >= 3.11 works.
PYTHON ?= $(shell for p in /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 python3; do \
	$$p -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser run demo test test-fast lint bench chaos fuzz soak clean

install: $(STAMP)

# Re-installs only when the project's metadata changed: a no-op install takes ~0.1 s.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 with venv/ensurepip" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: install
	$(BIN)/profitwatch demo

# The dashboard test drives Debian's chromium through its chromedriver (no browser
# download); installed once, when missing, as root or through sudo.
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
	  echo "installing Debian's chromium and chromium-driver for the dashboard test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || { \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium chromium-driver; }; }

test: install browser
	$(BIN)/pytest

test-fast: install
	$(BIN)/pytest tests/unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench

# The full chaos run (tests/integration/test_chaos.py; `make test` runs a small one):
# ~27,000 records over 420 days, 12 SIGKILLs at seeded moments. PROFITWATCH_CHAOS_SEED
# varies them.
chaos: install
	PROFITWATCH_CHAOS_CUSTOMERS=90 PROFITWATCH_CHAOS_KILLS=12 \
	  $(BIN)/pytest -s -p no:cacheprovider tests/integration/test_chaos.py

# The full fuzz run: 100,000 mutated records through the processor and replay
# (`make test` runs 5,000 and 3,000 more through a worker).
fuzz: install
	PROFITWATCH_FUZZ_RECORDS=100000 \
	  $(BIN)/pytest -s -p no:cacheprovider tests/unit/test_fuzz_input.py -k seeded

# 30 minutes at 500 records/s, 50,000 customers, the sweep on; plots docs/soak.png.
soak: install
	$(BIN)/python -m bench.soak

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
