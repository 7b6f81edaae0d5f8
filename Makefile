# Thin aliases over the shipyard CLI and scripts; the logic lives in shipyard/ and scripts/.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SHIPYARD := $(VENV)/bin/shipyard
DEMO_ENV ?= staging

.PHONY: venv demo test test-unit services cluster-up cluster-down cluster-status clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

venv: $(VENV)/.installed

## demo: train, build the Bento, serve it locally as staging, send a valid and an invalid request,
## then verify staging (short load and stress) and print the verdict
demo: venv
	$(SHIPYARD) train
	$(SHIPYARD) build
	$(SHIPYARD) deploy $(DEMO_ENV) --target local
	scripts/demo-requests $(DEMO_ENV)
	$(SHIPYARD) verify $(DEMO_ENV) --short
	@echo "staging keeps serving; stop it with: $(SHIPYARD) stop $(DEMO_ENV)"

## test: every test: unit, then integration against real servers, docker, the registry and the
## local cluster (their scripts install and start whatever is missing; the cluster stays up)
test: venv services
	$(PY) -m pytest

## services: docker engine + loopback registry, and the local Kubernetes cluster
services:
	scripts/image/up
	scripts/cluster/up

test-unit: venv
	$(PY) -m pytest tests/unit

cluster-up:
	scripts/cluster/up

cluster-down:
	scripts/cluster/down

cluster-status:
	scripts/cluster/status

clean:
	rm -rf .shipyard
