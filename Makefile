# Thin aliases over the shipyard CLI and scripts; the logic lives in shipyard/ and scripts/.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SHIPYARD := $(VENV)/bin/shipyard
DEMO_ENV ?= staging

.PHONY: venv demo cluster-demo test test-unit bench services cluster-up cluster-down cluster-status clean

# The toolkit (its ranges, pyproject.toml) and the reference project's own libraries, at this
# repository's exact versions (requirements/constraints.txt).
$(VENV)/.installed: pyproject.toml requirements/constraints.txt requirements/fraud-scorer.txt
	test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt \
	  -e '.[test,parquet]' -r requirements/fraud-scorer.txt
	touch $@

venv: $(VENV)/.installed

# The same on Python 3.12 (the machine's python3.12, else pyenv's): the unit tests run on both.
VENV312 ?= .venv-3.12
# (the first that runs: a pyenv shim on PATH may name a version pyenv has not selected)
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12.*/bin/python3.12; do \
  "$$p" -c '' 2>/dev/null && { command -v "$$p"; break; }; done)
$(VENV312)/.installed: pyproject.toml requirements/constraints.txt requirements/fraud-scorer.txt
	@test -n "$(PYTHON312)" || { echo "error: no python3.12 on this machine: install it (pyenv install 3.12) or set PYTHON312"; exit 1; }
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install --quiet --disable-pip-version-check -c requirements/constraints.txt \
	  -e '.[test,parquet]' -r requirements/fraud-scorer.txt
	touch $@

## demo: train, build the Bento, serve it locally as staging, send a valid and an invalid request,
## verify staging (short load and stress), promote the verified Bento to production, show history
demo: venv
	$(SHIPYARD) train
	$(SHIPYARD) build
	$(SHIPYARD) deploy $(DEMO_ENV) --target local
	scripts/demo-requests $(DEMO_ENV)
	$(SHIPYARD) verify $(DEMO_ENV) --short
	$(SHIPYARD) promote $(DEMO_ENV) --approve --strategy replace
	$(SHIPYARD) history production
	@echo "staging and production keep serving; stop them with: $(SHIPYARD) stop staging; $(SHIPYARD) stop production"

## cluster-demo: the same release on the local Kubernetes cluster: images by digest, deploy
## staging, verify it there (every suite as pods in staging's namespace, against its Service),
## then promote the verified digest to production as a canary (steps judged on production's
## metrics) while a pod in production sends it steady traffic for as long as the canary runs
cluster-demo: venv services
	$(SHIPYARD) train
	$(SHIPYARD) build
	$(SHIPYARD) image build
	@echo "production runs this first image (yesterday's release); staging gets a new build of the same model"
	KUBECONFIG=$(CURDIR)/.shipyard/cluster/admin.kubeconfig $(SHIPYARD) deploy production --target kubernetes
	$(SHIPYARD) build
	$(SHIPYARD) image build
	KUBECONFIG=$(CURDIR)/.shipyard/cluster/admin.kubeconfig $(SHIPYARD) deploy staging --target kubernetes
	KUBECONFIG=$(CURDIR)/.shipyard/cluster/admin.kubeconfig $(SHIPYARD) verify staging --target kubernetes --short
	KUBECONFIG=$(CURDIR)/.shipyard/cluster/admin.kubeconfig $(SHIPYARD) promote staging --target kubernetes --approve --watch --traffic 40
	KUBECONFIG=$(CURDIR)/.shipyard/cluster/admin.kubeconfig $(SHIPYARD) history production --target kubernetes

## test: every test: unit, then integration against real servers, docker, the registry, Redis
## and the local cluster (their scripts install and start whatever is missing; the cluster stays up).
## The cluster's build (from source on a cold cache, the longest single step) starts first, in the
## background, before the venvs; the tests that need no cluster run three at a time, a file each
## (pytest-xdist), niced so the build keeps its cores, the README walkthrough among them (its
## cluster half waits for the cluster); then the cluster and docker tests, one at a time (some stop
## dockerd or the cluster on purpose).
test:
	scripts/image/up
	scripts/redis/up
	@mkdir -p .shipyard && rm -f .shipyard/cluster-up.rc && \
	  echo "the local cluster comes up in the background (built first on a cold cache): log in .shipyard/cluster-up.log"
	@(scripts/cluster/up > .shipyard/cluster-up.log 2>&1; echo $$? > .shipyard/cluster-up.rc) &
	$(MAKE) --no-print-directory venv $(VENV312)/.installed
	$(VENV)/bin/lint-imports
	$(VENV312)/bin/python -m pytest -q -p no:cacheprovider -n 2 tests/unit   # the unit tests on Python 3.12
	@nice -n 5 $(PY) -m pytest -n 3 --dist loadfile -m "walkthrough or not (cluster or docker)" --durations=25; first=$$?; \
	  while [ ! -f .shipyard/cluster-up.rc ]; do sleep 5; done; \
	  [ "$$(cat .shipyard/cluster-up.rc)" = 0 ] || { echo "scripts/cluster/up failed:"; tail -25 .shipyard/cluster-up.log; exit 1; }; \
	  $(PY) -m pytest -m "(cluster or docker) and not walkthrough" --durations=25; second=$$?; \
	  [ $$first = 0 ] && [ $$second = 0 ]

## services: docker engine + loopback registry, Redis, and the local Kubernetes cluster
services:
	scripts/image/up
	scripts/redis/up
	scripts/cluster/up

## bench: every benchmark beside its baselines; writes docs/benchmarks.{md,json} and charts
bench: venv
	scripts/redis/up
	command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(PY) -m bench.run

test-unit: venv
	$(VENV)/bin/lint-imports
	$(PY) -m pytest tests/unit

cluster-up:
	scripts/cluster/up

cluster-down:
	scripts/cluster/down

cluster-status:
	scripts/cluster/status

clean:
	rm -rf .shipyard
