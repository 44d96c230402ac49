# syntax=docker/dockerfile:1
# One image for every traindock process: `traindock migrate`, `traindock api`, `traindock worker`
# (see docker-compose.yml). Build: docker build -t traindock .
FROM python:3.11-slim

# PyTorch comes first, from PyTorch's own index, so that `pip install .` below finds `torch`
# already satisfied and does not pull the default build from PyPI. The default is the CUDA 12.8
# build (it also runs on a CPU, but the image is several GB larger). For a CPU-only image:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu -t traindock .
# Only --index-url, never --extra-index-url https://pypi.org/simple: pip takes the highest
# version across all indexes, which would silently swap in PyPI's build.
# These two lines are the one place the image's PyTorch is chosen: docker-compose.yml passes
# the variables through only when they are set. The pin is the README's (tests/test_compose.py
# checks that they agree). Each CUDA index carries a range of PyTorch releases (cu124 ended
# with torch 2.6); for another torch, name an index that has it and set TORCH_REQUIREMENT.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG TORCH_REQUIREMENT="torch==2.13.0"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAINDOCK_DATA_DIR=/data

# hadolint ignore=DL3013
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_REQUIREMENT}"

WORKDIR /src

# The dependencies get a layer of their own, keyed on pyproject.toml alone, so that editing
# the code does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install . && rm -rf /src/build

# A fixed uid, so that files on a shared DATA_DIR (NFS between machines) have one owner.
RUN groupadd --gid 10001 traindock \
    && useradd --create-home --uid 10001 --gid 10001 traindock \
    && mkdir -p /data \
    && chown traindock:traindock /data
# Docker copies an image directory's owner into a named volume mounted there when the volume
# is new, so the volume at /data is writable by this user without a chown at start-up.
VOLUME ["/data"]
# Numeric, so that a runtime (Kubernetes' runAsNonRoot) can tell it is not root.
USER 10001:10001
WORKDIR /home/traindock

EXPOSE 8000
# No HEALTHCHECK here: the same image runs the worker, which serves no HTTP. The API's check
# is in docker-compose.yml.
CMD ["traindock", "api", "--host", "0.0.0.0", "--port", "8000"]
