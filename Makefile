# The two set-up commands of the README are `make demo` and `make test`; the rest are parts.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER := $(PY) hack/cluster/cluster.py

.PHONY: demo test lint unit e2e drills cluster-up cluster-down crds docs argocd bench calibrate \
	diagnose-corpus clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

cluster-up: $(VENV)/.installed
	$(CLUSTER) up

cluster-down: $(VENV)/.installed
	$(CLUSTER) down

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check operator tests hack bench
	$(VENV)/bin/ruff format --check operator tests hack bench
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict operator/nemotron_operator/core operator/nemotron_operator/api
	$(VENV)/bin/lint-imports

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit -q

e2e: $(VENV)/.installed
	$(PY) -m pytest tests/e2e -q

# Everything CI checks: lint, unit tests, and the end-to-end suite on the local cluster
# (started by the tests when it is not running, and stopped again afterwards). Not the drills.
test: $(VENV)/.installed lint
	$(PY) -m pytest -m "not drill" tests -q

# The reliability drills of issue 7 (slow: faults, hostile input, peering); each prints figures.
drills: $(VENV)/.installed
	$(PY) -m pytest -m drill -s tests/drills

demo: $(VENV)/.installed
	$(PY) hack/demo.py

crds: $(VENV)/.installed
	$(VENV)/bin/nemotron-operator crd --write  # crds/ and the chart's crds/, identical

docs: $(VENV)/.installed
	$(VENV)/bin/nemotron-operator docs --write  # the README's API reference, from the types

argocd: $(VENV)/.installed
	$(PY) hack/gitops/argocd.py --write  # Argo CD's testdata and argocd-cm patch, from the code

# The planner's memory model against NVIDIA's published configurations (tests/data/calibration):
# exact GPU-count agreement, over- and under-asks, each disagreement with its numbers.
calibrate: $(VENV)/.installed
	$(PY) -m tests.calibrate

# How often `diagnose` names the cause of the real failures in tests/data/diagnosis: per reason
# precision and recall, overall accuracy, what is confused with what, and each miss.
diagnose-corpus: $(VENV)/.installed
	$(PY) -m tests.diagnosis_corpus

bench: $(VENV)/.installed
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean: cluster-down
	rm -rf $(VENV)
