# MMPP's image: `mmpp` is the entrypoint, so `docker run IMAGE bot`, `... worker`, `... generate`.
#
#   CPU:  docker build -t mmpp:cpu .
#   CUDA: docker build -t mmpp:cuda --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#
# The CUDA image carries PyPI's torch 2.13.0 Linux wheel, built against CUDA 13.0 (it pulls
# cuda-toolkit 13.0.3 and cuDNN 9 from PyPI): the host needs the NVIDIA driver 580.65.06 or newer and
# the NVIDIA Container Toolkit, and a GPU of compute capability 7.5 or newer (Turing, e.g. an RTX 20xx,
# and later; CUDA 13 dropped Maxwell, Pascal and Volta). For an older 570-series driver, build from
# PyTorch's CUDA 12.8 index instead: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# (driver 570.26 or newer). The CPU image takes PyTorch's CPU build and never downloads CUDA.
#
# BASE_IMAGE: any Debian-like image with python3 (3.11 or newer) and its venv module, for a builder
# that cannot reach Docker Hub and brings its own.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS deps
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_DEFAULT_TIMEOUT=120
RUN python3 -m venv /opt/mmpp
# torch first and on its own (--no-deps): from the chosen index only, so no other requirement can pull
# a build of pip's choosing; its own requirements come from PyPI with the project's, below.
RUN /opt/mmpp/bin/pip install --no-deps --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
# The project's requirements apart from its code: editing the code rebuilds neither this layer nor
# the final image's copy of it (2 GB), only the small wheel layer.
COPY pyproject.toml /src/
RUN /opt/mmpp/bin/python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && /opt/mmpp/bin/pip install -r /tmp/requirements.txt

FROM deps AS wheel
COPY README.md /src/
COPY src /src/src
RUN /opt/mmpp/bin/pip wheel --no-deps --wheel-dir /wheels /src

FROM ${BASE_IMAGE}
ARG UID=10001
# One unprivileged user; the two folders it writes are volumes: the Hugging Face cache (15 GB of models
# the first time) and the data folder (the SQLite database).
RUN useradd --uid "${UID}" --user-group --no-create-home --home-dir /var/lib/mmpp --shell /usr/sbin/nologin mmpp \
    && mkdir -p /var/lib/mmpp/models /var/lib/mmpp/data \
    && chown -R mmpp:mmpp /var/lib/mmpp
COPY --from=deps /opt/mmpp /opt/mmpp
COPY --from=wheel /wheels /tmp/wheels
RUN PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/mmpp/bin/pip install --no-deps /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels && /opt/mmpp/bin/mmpp --version
ENV PATH=/opt/mmpp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/var/lib/mmpp/models \
    DATA_DIR=/var/lib/mmpp/data \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/var/lib/mmpp/models", "/var/lib/mmpp/data"]
WORKDIR /var/lib/mmpp/data
USER mmpp
# Health checks live in compose.yaml (`mmpp health` asks the process's own /readyz, which needs
# METRICS_PORT); one-off commands like `generate` have no server to ask.
ENTRYPOINT ["mmpp"]
CMD ["bot"]
