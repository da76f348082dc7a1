# kafka-saga. `make demo` and `make test` are all a fresh machine needs (see README.md).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PEERS_VENV  := .venv-peers
PEERS_PY    := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: venv demo test test-unit lint bench bench-smoke bench-peers peers-venv profile fuzz clean kafka-start kafka-stop

venv: $(STAMP)
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kafka-saga needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

lint: venv
	$(VENV)/bin/ruff check saga services tests bench
	$(VENV)/bin/mypy

# The whole suite: lint, unit tests, integration tests on real Kafka (testcontainers),
# then the speed regression guard. pytest exits 5 when it ran no test; a failure here too.
test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) bench-smoke

test-unit: venv
	$(PY) -m pytest -m "not integration and not embedded" $(PYTEST_ARGS)

demo: venv
	$(PY) -m saga.dev.demo $(DEMO_ARGS)

bench: venv
	$(PY) -m bench.run $(BENCH_ARGS)

# Under two minutes: fails when end-to-end inputs/s, as a share of a bare transactional
# Kafka loop's measured in the same run, fall below half the reference
# (bench/smoke_reference.json). Starts its own embedded broker unless
# SAGA_BOOTSTRAP_SERVERS names one.
bench-smoke: venv
	$(PY) -m bench.smoke $(SMOKE_ARGS)

# py-spy flame graphs of the coordinator alone and of the whole stack, written to
# docs/profiles/<label>-*.svg with a summary in docs/profiles/<label>.md.
profile: venv
	$(PY) -m bench.profile $(PROFILE_ARGS)

# The same order saga on Temporal, DBOS (SQLite and PostgreSQL), Restate and kafka-saga,
# each on its real server on loopback, in one run: bench/results/peers-*.json, a table
# in bench/results/peers-latest.md and a chart (PNG). Installs the peers into
# .venv-peers (the `peers` extra) so the main install stays lean; the Restate driver
# installs Restate's server from npm into .peers/ on first use.
bench-peers: peers-venv
	$(PEERS_PY) -m bench.peers $(PEERS_ARGS)

peers-venv: $(PEERS_STAMP)
$(PEERS_STAMP): pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q --upgrade pip
	$(PEERS_VENV)/bin/pip install -q -e '.[peers]'
	@rm -f $(PEERS_VENV)/.installed-* && touch $@

# Property-based fuzzing (Hypothesis) of the codecs, the decider and the fold: 100,000
# cases in all (FUZZ_EXAMPLES is shared out by weight; `make test` runs a short pass);
# then 100,000 malformed records on every input topic while real orders run
# (bench/bad_records.py, on the embedded broker; results under bench/results/).
fuzz: venv
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-100000} $(PY) -m pytest -q tests/saga/fuzz \
		--hypothesis-show-statistics $(PYTEST_ARGS)
	$(PY) -m bench.bad_records $(FUZZ_ARGS)

kafka-start: venv
	$(VENV)/bin/saga kafka start
kafka-stop: venv
	$(VENV)/bin/saga kafka stop

clean:
	-$(VENV)/bin/saga kafka stop
	rm -rf .saga .mypy_cache .ruff_cache .pytest_cache
