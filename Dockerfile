# Base image of the pipeline's lightweight components on Vertex AI (COMPONENT_BASE_IMAGE): this project and its
# dependencies at the versions the tests passed with. The Spark jobs do not use it: Dataproc Serverless runs them
# in its own runtime, with spark_src.zip and the jars staged in GCS.
#
# Build context = the repository root. build/constraints.txt pins every dependency: Cloud Build writes it from
# the virtualenv the tests ran in; by hand:
#   make install && .venv/bin/pip freeze --exclude-editable > build/constraints.txt
#   docker build -t components .

# Python as pyproject's requires-python allows (tests/test_infrastructure.py checks it); bookworm as in cloudbuild.yaml.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# LightGBM's native library (legacy forecaster component) needs OpenMP at import time.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/defi-pool-pipeline

COPY build/constraints.txt pyproject.toml README.md ./
COPY spark_src ./spark_src
COPY components ./components
COPY evaluation ./evaluation
COPY pipelines ./pipelines
COPY legacy ./legacy
COPY database ./database
COPY benchmarks ./benchmarks
COPY rehearsal ./rehearsal
# A regular (not editable) install: the components import spark_src, pipelines, ... from site-packages. kfp is
# pinned by the constraints to the version that compiled the pipeline, so the `pip install kfp==...` each
# component runs at start-up finds it satisfied and needs no package index.
RUN pip install --constraint constraints.txt . \
    && python -c "import kfp, spark_src.common.config, components.upsert_staging, pipelines.settings"

# The commit the image was built from (Cloud Build passes CODE_VERSION, its short SHA): the code version that
# the lineage records (spark_src.common.storage.code_version). The image has no git checkout to ask.
ARG CODE_VERSION=unknown
ENV CODE_VERSION=${CODE_VERSION}
