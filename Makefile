# The two commands a newcomer needs: `make run` and `make test`. Both set themselves up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .make-stamps
PYTEST_ARGS ?=
# Two pytest processes, each with its own emulators; a test file stays in one process (its module
# fixtures are shared). `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
SOAK_SECONDS ?= 300
SOAK_ARGS ?=

.PHONY: run test lint lock bench soak clean promtool

# `make run PORT=8080` (and HOST=0.0.0.0) to listen elsewhere than [receiver] host:port.
run: $(STAMPS)/venv-run
	$(VENV)/bin/archiver up$(if $(HOST), --host $(HOST))$(if $(PORT), --port $(PORT))

test: $(STAMPS)/venv $(STAMPS)/npm promtool
	PATH="$(CURDIR)/$(PROMTOOL_DIR):$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# tests/test_dashboards.py runs promtool on deploy/prometheus. When it is not on PATH, it is taken from
# Debian's `prometheus` package: downloaded and unpacked here (one static binary), not installed, so no
# Prometheus server gets set up on this machine. Elsewhere: promtool from https://prometheus.io/download/.
PROMTOOL_DIR := $(STAMPS)/promtool
promtool:
	@command -v promtool >/dev/null || test -x $(PROMTOOL_DIR)/promtool || { \
		rm -rf $(PROMTOOL_DIR).tmp && mkdir -p $(PROMTOOL_DIR).tmp && cd $(PROMTOOL_DIR).tmp && \
		{ apt-get download prometheus 2>/dev/null || { apt-get update -qq && apt-get download prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb . && mkdir -p $(CURDIR)/$(PROMTOOL_DIR) && \
		mv usr/bin/promtool $(CURDIR)/$(PROMTOOL_DIR)/ && cd $(CURDIR) && rm -rf $(PROMTOOL_DIR).tmp; } || \
		{ echo "the tests need promtool: apt-get install prometheus, or put promtool from" \
		       "https://prometheus.io/download/ on PATH"; exit 1; }

# Not part of CI (too long, too noisy): prints tables side by side with rclone and the SDK ceilings
# and writes JSON to bench/results/. Needs rclone and GNU time (installed here when missing).
bench: $(STAMPS)/venv $(STAMPS)/npm
	@command -v rclone >/dev/null && test -x /usr/bin/time || { apt-get install -y rclone time >/dev/null || \
		{ echo "bench needs rclone and GNU time: apt-get install rclone time"; exit 2; }; }
	$(PY) -m bench

# Chaos soak: the real stack (receiver, workers, Redis, ledger, three storage emulators behind
# fault-injecting proxies) under crashes, restarts, 5xx storms and duplicate webhooks for
# SOAK_SECONDS, then every copy checked byte for byte; exit 1 on anything lost, duplicated,
# corrupted, stuck or stray. CI runs `make soak SOAK_SECONDS=60`. More: `SOAK_ARGS="--help"`.
soak: $(STAMPS)/venv $(STAMPS)/npm
	$(PY) -m bench.soak --duration $(SOAK_SECONDS) $(SOAK_ARGS)

lint: $(STAMPS)/venv
	$(VENV)/bin/ruff check archiver providers tests celeryconfig.py bench
	$(VENV)/bin/mypy  # [tool.mypy] in pyproject.toml: strict on archiver/domain and providers
	@$(PY) -m tests.dependency_audit requirements.lock requirements.azure-identity.lock

# The image installs exactly these versions (pip --require-hashes): refresh after changing the
# dependencies in pyproject.toml, and now and then for fixes. For Python 3.11 on any platform
# (x86_64 and aarch64 Linux wheels' hashes are all listed).
LOCK_ARGS = --universal --python-version 3.11 --generate-hashes --quiet
lock: $(STAMPS)/venv
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(VENV)/bin/uv pip compile pyproject.toml --extra azure-identity $(LOCK_ARGS) -o requirements.azure-identity.lock

# Reinstall only when the dependency lists change, so re-running `make test` is fast. `make run`
# installs the product alone; the test extra (pytest, emulators, linters) only for the targets that
# need it. Each has its own stamp: after `make run`, `make test` still installs the test extra.
$(STAMPS)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv-run: pyproject.toml $(STAMPS)/python
	$(PY) -m pip install --quiet -e .
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/venv: pyproject.toml $(STAMPS)/python
	$(PY) -m pip install --quiet -e '.[test]'
	@mkdir -p $(STAMPS) && touch $@ $(STAMPS)/venv-run

$(STAMPS)/npm: package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js with npm is needed for the Azure emulator (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

clean:
	rm -rf $(VENV) node_modules $(STAMPS) .pytest_cache
