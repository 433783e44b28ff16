SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

# PyTriton's Python backend links Debian's libpython3.11: prefer /usr/bin/python3.11 (see DESIGN.md).
PYTHON_BOOT := $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'

# Both distributions are installed in place and share the `render` namespace: render.v1 from the
# client (clients/python, a plain path entry), the stages' APIs from gen/python.
$(STAMP): requirements.lock pyproject.toml clients/python/pyproject.toml
	test -d $(VENV) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e ./clients/python
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

setup: $(STAMP) ## create the virtualenv with pinned dependencies

# The GCS emulator the tests run as a server (tests/gcs_emulator.py). Its own virtualenv: its
# dependencies conflict with ours. The stamp names the version, so a new pin reinstalls.
GCS_EMULATOR_VERSION := 2026.7.19
GCS_VENV := .venv-gcs
GCS_STAMP := $(GCS_VENV)/.installed-$(GCS_EMULATOR_VERSION)

$(GCS_STAMP):
	test -d $(GCS_VENV) || $(PYTHON_BOOT) -m venv $(GCS_VENV)
	$(GCS_VENV)/bin/python -m pip install -q --disable-pip-version-check gcp-storage-emulator==$(GCS_EMULATOR_VERSION)
	touch $@

gcs-emulator: $(GCS_STAMP) ## create .venv-gcs with the pinned GCS emulator the tests start

run: setup ## start Redis, Triton, the four services and the gateway on loopback (Ctrl-C stops all)
	$(VENV)/bin/render-stack

demo: setup ## start the stack, render the bundled sample with live progress, stop the stack
	$(PY) -m devstack.demo

test: setup $(GCS_STAMP) ## run the unit, integration and system tiers
	$(PY) -m pytest -q -m "not gpu and not chaos" $(PYTEST_ARGS)

chaos: setup $(GCS_STAMP) ## kill -9 and restart gateways, stages and Redis under load; long silences; 2,000 watchers
	$(PY) -m pytest -q -s -m chaos $(PYTEST_ARGS)

test-unit: setup ## run the unit tests only
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

lint: setup ## ruff, mypy and buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy gateway services renderkit devstack clients/python/render_client benchmarks tests
	$(VENV)/bin/buf lint

breaking: setup ## buf breaking: the public APIs against every earlier version of them in git
	BUF=$(VENV)/bin/buf scripts/check_breaking.sh

protos: setup ## regenerate gen/python from protos/
	PYTHON=$(PY) scripts/gen_protos.sh

protos-check: protos ## fail if the committed generated code differs from protos/
	git diff --exit-code -- gen/python clients/python/render
	test -z "$$(git status --porcelain -- gen/python clients/python/render)"

bench: setup ## swap latency vs one process; SubmitRender/s vs bare gRPC; job latency vs Celery (installs the bench extra)
	$(PY) -c 'import celery' 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) -m benchmarks.e2e
	$(PY) -m benchmarks.submit

quality: setup ## swaps of known-camera scenes scored against ground truth (PSNR, SSIM, plane and scale error)
	$(PY) -m benchmarks.quality

models: setup ## export the pretrained segmentation and depth models to ONNX into models/ (needs the export extra and the internet)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[export]'
	$(PY) -m devstack.model_export $(MODELS_ARGS)

clean: ## remove run data and outputs (not the virtualenv)
	rm -rf var out

.PHONY: help setup gcs-emulator run demo test chaos test-unit lint breaking protos protos-check bench quality models clean
