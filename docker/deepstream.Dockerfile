# syntax=docker/dockerfile:1.7
# DeepStream image for one detforge bundle target: the bundle, its own parser library
# (nvdsinfer_custom_impl_detforge, shipped as source in the bundle) built for this
# DeepStream, and deepstream-app. Nothing is fetched at run time.
#
#   detforge deploy bundle best.pt --target t4 --out bundles
#   docker build -f docker/deepstream.Dockerfile --build-arg BUNDLE=bundles/t4 -t ds-t4 .
# Run (builds the TensorRT engine on this GPU first, then runs the pipeline):
#   docker run --gpus all --rm ds-t4 bash -c "./build_engine.sh && \
#     deepstream-app -c deepstream_app_config.txt"
# Jetson: BuildKit on the device (or --platform linux/arm64) with the same multiarch base.
ARG DEEPSTREAM_IMAGE=nvcr.io/nvidia/deepstream:7.1-triton-multiarch

FROM ${DEEPSTREAM_IMAGE} AS parser
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ARG BUNDLE=bundles/t4
COPY ${BUNDLE}/nvdsinfer_custom_impl_detforge/ /opt/parser/
# The Makefile defaults CUDA_VER and NVDS_VERSION to the bundle target's; for another
# base pass e.g. --build-arg MAKE_ARGS="CUDA_VER=12.2 NVDS_VERSION=7.0".
ARG MAKE_ARGS=""
RUN make -C /opt/parser ${MAKE_ARGS} \
    && test -f /opt/parser/libnvdsinfer_custom_impl_detforge.so

FROM ${DEEPSTREAM_IMAGE}
# DeepStream 6.4+ images leave out some GStreamer codecs (MP4/H.264 parsing of file sources);
# NVIDIA's script installs them.
RUN script=/opt/nvidia/deepstream/deepstream/user_additional_install.sh; \
    if [ -x "$script" ]; then "$script"; fi
# One target folder written by `detforge deploy bundle MODEL --target T --out bundles`.
ARG BUNDLE=bundles/t4
WORKDIR /opt/detforge/bundle
COPY ${BUNDLE}/ ./
# custom-lib-path in config_infer_primary.txt is relative to the config file; the library's
# sha256 record lets `detforge deploy verify` trust it.
COPY --from=parser /opt/parser/ ./nvdsinfer_custom_impl_detforge/
RUN test -f config_infer_primary.txt && test -f deepstream_app_config.txt \
    && test -f manifest.json \
    && chmod +x build_engine.sh
CMD ["deepstream-app", "-c", "deepstream_app_config.txt"]
