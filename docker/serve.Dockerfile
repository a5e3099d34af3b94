# syntax=docker/dockerfile:1.7
# detforge serving image: TensorRT + ONNX Runtime GPU + detforge[serve,gpu].
#
# Build (from the repository root, the build context):
#   docker build -f docker/serve.Dockerfile -t detforge-serve .
# Run (a bundle or model folder mounted at /models):
#   docker run --gpus all --rm -p 8000:8000 -v "$PWD/bundles/t4:/models:ro" detforge-serve
# The same image runs the other runtime commands, e.g. an on-device bundle check:
#   docker run --gpus all --rm -v "$PWD/bundles/t4:/models:ro" detforge-serve deploy verify /models
ARG TENSORRT_IMAGE=nvcr.io/nvidia/tensorrt:24.10-py3
FROM ${TENSORRT_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

ARG USER_UID=1000
# A base that already has a user with this uid keeps it; ours then gets the next free uid.
RUN if getent passwd ${USER_UID} >/dev/null; then useradd --create-home --shell /bin/bash detforge; \
    else useradd --create-home --uid ${USER_UID} --shell /bin/bash detforge; fi

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLCONFIGDIR=/home/detforge/.config/matplotlib \
    MPLBACKEND=Agg \
    DETFORGE_PORT=8000

WORKDIR /opt/detforge
COPY pyproject.toml README.md ./
COPY src/ ./src/
# onnxruntime (CPU, a core dependency) and onnxruntime-gpu install the same module: keep only
# the GPU build, whose CUDA and TensorRT execution providers use the base image's libraries.
RUN python3 -m pip install ".[serve,gpu]" \
    && python3 -m pip uninstall -y onnxruntime \
    && python3 -m pip install --force-reinstall --no-deps "onnxruntime-gpu>=1.18" \
    && python3 -c "import detforge.cli, onnxruntime, tensorrt" \
    && mkdir -p /models "${MPLCONFIGDIR}" \
    && chown -R detforge:detforge /home/detforge

USER detforge
WORKDIR /models
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DETFORGE_PORT', '8000') + '/health', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["detforge"]
CMD ["serve", "/models", "--host", "0.0.0.0"]
