# syntax=docker/dockerfile:1.7
# detforge training image: CUDA PyTorch + detforge[train] (Ultralytics, MLflow, ONNX export).
#
# Build (from the repository root, the build context):
#   docker build -f docker/train.Dockerfile -t detforge-train .
# Run (GPU, datasets and runs mounted; nothing is downloaded at run time):
#   docker run --gpus all --rm --shm-size 8g -v "$PWD/data:/data:ro" -v "$PWD/runs:/work/runs" \
#     detforge-train train --data /data/ds --model yolo11n.yaml --out /work/runs
ARG PYTORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${PYTORCH_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
# OpenCV (pulled in by Ultralytics) needs libGL and GLib at import time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 git \
    && rm -rf /var/lib/apt/lists/*

ARG USER_UID=1000
# A base that already has a user with this uid keeps it; ours then gets the next free uid.
RUN if getent passwd ${USER_UID} >/dev/null; then useradd --create-home --shell /bin/bash detforge; \
    else useradd --create-home --uid ${USER_UID} --shell /bin/bash detforge; fi

# Offline at run time: no online checks, auto-installs, settings sync or font downloads
# (detforge.train.offline closes the rest); caches live in the user's home.
ENV YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=False \
    YOLO_CONFIG_DIR=/home/detforge/.config/Ultralytics \
    MPLCONFIGDIR=/home/detforge/.config/matplotlib \
    MPLBACKEND=Agg \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

WORKDIR /opt/detforge
COPY pyproject.toml README.md ./
COPY src/ ./src/
# torch and torchvision come from the base image (pyproject's lower bounds accept them).
RUN python -m pip install ".[train]" \
    && python -c "import detforge.cli, ultralytics, mlflow" \
    && mkdir -p /work "${YOLO_CONFIG_DIR}" "${MPLCONFIGDIR}" \
    && chown -R detforge:detforge /work /home/detforge

USER detforge
WORKDIR /work
ENTRYPOINT ["detforge"]
CMD ["--help"]
