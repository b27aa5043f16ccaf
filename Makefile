# weblab — the README's commands call these targets.
VENV := .venv
PY := $(VENV)/bin/python
DEBIAN13_ROOT ?= /var/tmp/weblab-debian13

.PHONY: install demo test unit integration bench lint clean-runs reference try-debian13 docs

install:            ## Debian packages, the venv with pinned packages, the weblab command
	./install.sh

demo: install       ## the main job: every claim on real labs, then the report (even if a claim is refuted)
	status=0; $(PY) -m weblab run all --junit results/junit.xml || status=$$?; \
	$(PY) -m weblab report && exit $$status

test: install       ## unit tests, then integration tests on real labs (root)
	$(PY) -m pytest -q --durations=30 tests

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

bench: install      ## bring-up/teardown, cost against size (N servers), datapath vs a Linux bridge, the live view's cost -> bench/*.json; packet analysis vs tshark -> bench/throughput.json
	$(PY) -m tests.bench all
	$(PY) -m tests.bench_throughput --out bench/throughput.json

docs:               ## redraw the guides' design drawings (docs/img/DESIGN.svg; a unit test checks they are current)
	$(PY) -m weblab.ui.graph --docs docs/img

reference: install  ## the reference results: every claim three times on this machine -> results/reference/
	$(PY) -m weblab run all --repeat 3 --out results/reference-runs || true
	$(PY) -m experiments.reproduce results/reference-runs results/reference

lint: install       ## pyflakes over the code (controllers/run.py's side-effect import is expected)
	$(PY) -m pyflakes weblab topologies controllers hostapps experiments tests

try-debian13:       ## a fresh Debian 13 root: the install, every design, three claims inside it (root; no other lab meanwhile)
	tests/distro/debian-root.sh --suite trixie --root $(DEBIAN13_ROOT) root install labs
