SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help

# PyTriton's Python backend links Debian's libpython3.11: prefer /usr/bin/python3.11 (see DESIGN.md).
PYTHON_BOOT := $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

comma := ,

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

# The TypeScript client and the web console: npm packages pinned by their package-lock.json. The
# console uses the client from its source (one copy of the generated code), so the client's own
# node_modules must be there too. A stamp per package makes a warm `make console` quick.
NPM_CI := npm ci --no-audit --no-fund --loglevel=error
TS_CLIENT := clients/typescript
TS_STAMP := $(TS_CLIENT)/node_modules/.installed
CONSOLE_STAMP := console/node_modules/.installed
CONSOLE_BUILD := console/dist/index.html
# The bundled sample room and swatches the console offers, written at build time (not committed).
CONSOLE_SAMPLES := console/public/samples/sample.json
CONSOLE_SOURCES := $(shell find console/src $(TS_CLIENT)/src -type f 2>/dev/null) \
	console/index.html console/vite.config.ts console/tsconfig.json $(TS_CLIENT)/package.json

$(TS_STAMP): $(TS_CLIENT)/package.json $(TS_CLIENT)/package-lock.json
	cd $(TS_CLIENT) && $(NPM_CI)
	touch $@

$(CONSOLE_STAMP): console/package.json console/package-lock.json
	cd console && $(NPM_CI)
	touch $@

$(CONSOLE_SAMPLES): $(STAMP) devstack/sample_room.py
	rm -rf $(@D)
	$(PY) -c 'import sys, pathlib; from devstack.sample_room import write_sample_files; write_sample_files(pathlib.Path(sys.argv[1]))' $(@D)

$(CONSOLE_BUILD): $(TS_STAMP) $(CONSOLE_STAMP) $(CONSOLE_SAMPLES) $(CONSOLE_SOURCES)
	npm run --prefix console --silent build
	touch $@

console: $(CONSOLE_BUILD) ## build the web console (console/dist, from the TypeScript client) the gateway serves at /

# The browser tests drive Debian's chromium (never a downloaded build); installed when missing.
chromium: ## install Debian's chromium for the browser tests when it is missing (as root)
	@if [[ ! -x /usr/bin/chromium ]]; then \
	  [[ $$(id -u) == 0 ]] || { echo "/usr/bin/chromium is missing: apt-get install -y chromium (as root)" >&2; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

run: setup console ## start Redis, Triton, the four services and the gateway on loopback (Ctrl-C stops all)
	$(VENV)/bin/render-stack

demo: setup ## start the stack, render the bundled sample with live progress, stop the stack
	$(PY) -m devstack.demo

# The bench extra: Celery (benchmarks/submit.py's baseline) and scikit-image, whose texture photos
# are materials of the benchmarks' scenes, which some unit tests build.
BENCH_EXTRA = $(PY) -c 'import celery, skimage' 2>/dev/null || $(PY) -m pip install -q --disable-pip-version-check -e '.[bench]'

test: setup $(GCS_STAMP) console chromium ## run the unit, integration, system and browser tiers
	$(BENCH_EXTRA)
	$(PY) -m pytest -q -m "not gpu and not chaos" $(PYTEST_ARGS)

chaos: setup $(GCS_STAMP) ## kill -9, pause and restart gateways, stages and Redis under load; long silences; 2,000 watchers
	$(PY) -m pytest -q -s -m chaos $(PYTEST_ARGS)

test-unit: setup ## run the unit tests only
	$(BENCH_EXTRA)
	$(PY) -m pytest -q -m unit $(PYTEST_ARGS)

lint: setup $(TS_STAMP) $(CONSOLE_STAMP) ## ruff, mypy, buf lint, and tsc on the TypeScript client and the console
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy gateway services renderkit devstack clients/python/render_client benchmarks tests
	$(VENV)/bin/buf lint
	npm run --prefix $(TS_CLIENT) --silent typecheck
	npm run --prefix console --silent typecheck

breaking: setup ## buf breaking: the public APIs against every earlier version of them in git
	BUF=$(VENV)/bin/buf scripts/check_breaking.sh

protos: setup $(TS_STAMP) ## regenerate gen/python, clients/python/render and clients/typescript/src/gen from protos/
	PYTHON=$(PY) scripts/gen_protos.sh

GENERATED := gen/python clients/python/render $(TS_CLIENT)/src/gen

protos-check: protos ## fail if the committed generated code differs from protos/
	git diff --exit-code -- $(GENERATED)
	test -z "$$(git status --porcelain -- $(GENERATED))"

bench: setup ## swap latency vs one process; projection vs its compute floor, memory by size, JPEG bands vs one encode; SubmitRender/s vs bare gRPC; job latency vs Celery (installs the bench extra)
	$(BENCH_EXTRA)
	$(PY) -m benchmarks.e2e
	$(PY) -m benchmarks.projection
	$(PY) -m benchmarks.submit

# Bounded: LOAD_SECONDS (15) measured per scenario after a 1 s ramp, at most LOAD_MAX_REQUESTS calls
# each; LOAD_CONCURRENCY overrides the configurations' 16 in flight. Takes about two minutes.
load: setup ## deploy/load's ghz scenarios against the embedded stack: requests/s, p50/p95/p99, errors by code
	$(PY) -m benchmarks.load $(LOAD_ARGS)

quality: setup ## ray-traced scenes (worn surfaces, sun, JPEG, 12 MP) scored against ground truth, then the light on another renderer's views, clicks on independent rooms and on a held-out set (not tuned on), the swap on that set; QUALITY_ARGS=--quick (installs the bench extra)
	$(BENCH_EXTRA)
	$(PY) -m benchmarks.quality $(QUALITY_ARGS)
	$(PY) -m benchmarks.shading_views
	$(PY) -m benchmarks.segmentation_rooms $(if $(findstring --quick,$(QUALITY_ARGS)),--set rooms --rooms 0$(comma)2$(comma)6 --scale 0.5,)
	$(PY) -m benchmarks.segmentation_heldout $(if $(findstring --quick,$(QUALITY_ARGS)),--rooms 1$(comma)11$(comma)13,)
	$(PY) -m benchmarks.swap_heldout $(if $(findstring --quick,$(QUALITY_ARGS)),--rooms 0$(comma)8,)

models: setup ## export the pretrained segmentation and depth models to ONNX into models/ (needs the export extra and the internet)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[export]'
	$(PY) -m devstack.model_export $(MODELS_ARGS)

clean: ## remove run data and outputs (not the virtualenv)
	rm -rf var out

.PHONY: help setup gcs-emulator console chromium run demo test chaos test-unit lint breaking protos protos-check bench load quality models clean
