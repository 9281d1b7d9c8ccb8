# The two commands of the README are `make demo` and `make test`; both install what they need first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install runtime-env demo test bench compile lint clean gcp-settings package stage image-constraints

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The Dataproc rehearsal's driver Python (runtime 1.2 shape), cached in .cache/runtime-envs/ and rebuilt when its
## pinned list (rehearsal/requirements/) changes. The local pipeline's Spark steps run in it via spark-submit.
runtime-env: $(STAMP)
	$(PY) -m rehearsal.runtime_env --runtime 1.2

## Whole pipeline locally: embedded PostgreSQL + synthetic data + kfp.local run (twice, to show idempotency).
demo: runtime-env
	$(PY) -m pipelines.cli demo

## Unit, integration (real PostgreSQL, local Spark) and pipeline tests.
test: runtime-env
	$(PY) -m pytest

## Spark vs legacy, side by side, into docs/benchmarks.md (about an hour on 2 cores; BENCH_ARGS=--quick: minutes).
bench: $(STAMP)
	$(PY) -m benchmarks.bench $(BENCH_ARGS)

compile: $(STAMP)
	$(PY) -m pipelines.cli compile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

## Deployment (see README "Deploy to GCP"): settings from Terraform's outputs, then package and stage the code.
gcp-settings: $(STAMP)
	terraform -chdir=terraform output -json | $(PY) -m pipelines.cli gcp-settings --out .env.gcp

package: $(STAMP)
	$(PY) -m pipelines.cli package --out-dir dist

stage: $(STAMP)
	$(PY) -m pipelines.cli stage --dist-dir dist

image-constraints: $(STAMP)
	mkdir -p build && $(VENV)/bin/pip freeze --exclude-editable > build/constraints.txt

clean:
	rm -rf .local build dist *.egg-info
