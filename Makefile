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
NODE_TOOLS := tools/asyncapi
NODE_STAMP := $(NODE_TOOLS)/node_modules/.installed

.PHONY: install browser ops-tools run demo test test-fast lint bench chaos fuzz soak clean

install: $(STAMP) $(NODE_STAMP) ops-tools

# Re-installs only when the project's metadata changed: a no-op install takes ~0.1 s.
$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python >= 3.11 with venv/ensurepip" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# promtool and amtool (tests/unit/test_ops_rules.py: the rules, configs and routes of
# ops/) and the Alertmanager the notifier's test runs, from Debian's prometheus and
# prometheus-alertmanager; installed once, when missing, as root or through sudo. Only
# the programs are wanted: where systemd runs, the packages' services are stopped and
# disabled (they would hold ports 9090 and 9093, which `docker compose up` publishes).
ops-tools:
	@command -v promtool >/dev/null && command -v amtool >/dev/null \
	  && test -x /usr/bin/prometheus-alertmanager || { \
	  echo "installing Debian's prometheus and prometheus-alertmanager (promtool, amtool, alertmanager)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null 2>&1 || { \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; }; \
	  if [ -d /run/systemd/system ]; then \
	    $(SUDO) systemctl disable --now prometheus prometheus-alertmanager >/dev/null 2>&1 || true; fi; }

# The AsyncAPI parser of tests/unit/test_asyncapi.py, reinstalled only when its
# lockfile changes. No package needs an install script (one only phones home).
$(NODE_STAMP): $(NODE_TOOLS)/package.json $(NODE_TOOLS)/package-lock.json
	@command -v npm >/dev/null || { echo "need Node.js >= 18 and npm (tools/asyncapi)" >&2; exit 1; }
	npm ci --prefix $(NODE_TOOLS) --ignore-scripts --no-audit --no-fund
	@touch $@

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
	rm -rf $(VENV) $(NODE_TOOLS)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
