# The image sftcast's Kubernetes pods run (ZenML's image builder uses it on the k8s stack).
# CPU by default; for GPU nodes pass a CUDA runtime base:
#   docker build -t sftcast:cpu .
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t sftcast:cuda .
# Python 3.11 comes from the official image and is copied onto any base (glibc >= 2.36).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM python:3.11-slim-bookworm AS python

FROM ${BASE_IMAGE}
COPY --from=python /usr/local /usr/local
RUN if command -v apt-get >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends \
            ca-certificates libssl3 libffi8 libsqlite3-0 zlib1g libbz2-1.0 liblzma5 git \
        && rm -rf /var/lib/apt/lists/*; \
    fi && ldconfig
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TOKENIZERS_PARALLELISM=false ZENML_ANALYTICS_OPT_IN=false
WORKDIR /app
# torch first and pinned, as on a workstation; then the exact versions of constraints.txt.
# PyTorch's CPU index by default: PyPI's Linux torch is the CUDA build, gigabytes of CUDA
# libraries a CPU base never uses. Its `2.13.0+cpu` outranks PyPI's `2.13.0`, so pip takes it.
# For a CUDA base pass --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python3.11 -m pip install --extra-index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
COPY pyproject.toml constraints.txt README.md ./
# The dependencies in a layer of their own, installed from pyproject.toml alone (its packages
# still empty folders): a change to the sources then rebuilds only the layers below.
RUN grep -v '^torch==' constraints.txt > /tmp/constraints.txt \
    && mkdir -p sftcast steps pipelines materializers cli deploy \
    && python3.11 -m pip install -c /tmp/constraints.txt ".[pipelines]" \
    && python3.11 -m pip uninstall -y sftcast
COPY . .
RUN python3.11 -m pip install --no-deps .
# Pods run as an unprivileged user. ZenML builds its layer (the stack's requirements, the
# code) on this image as root, then switches to it: `user: sftcast` in the stacks' docker
# settings. A `USER` here would fail ZenML's `RUN chmod -R a+rw .` on the files it copies.
RUN useradd --create-home --uid 1000 sftcast && chown -R sftcast /app
