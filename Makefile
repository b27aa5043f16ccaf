# weblab — the README's commands call these targets.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: install demo test unit integration bench lint clean-runs

install:            ## Debian packages, the venv with pinned packages, the weblab command
	./install.sh

demo: install       ## the main job: every implemented claim on real labs, then the report
	$(PY) -m weblab run all
	$(PY) -m weblab report

test: install       ## unit tests, then integration tests on real labs (root)
	$(PY) -m pytest -q tests

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

bench: install      ## bring-up / teardown times (median of 5) -> bench/results.json
	$(PY) -m tests.bench --repeat 5 --out bench/results.json

lint:
	$(PY) -m pyflakes weblab topologies controllers hostapps experiments tests 2>/dev/null || true
