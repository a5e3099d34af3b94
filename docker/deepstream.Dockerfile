# syntax=docker/dockerfile:1.7
# DeepStream image for one detforge bundle target: the bundle, the DeepStream-Yolo parser
# library (nvdsinfer_custom_impl_Yolo) built for this DeepStream, and deepstream-app.
#
# The parser source is not in this repository and nothing is fetched at run time. Give it at
# build time, either from the build context (default):
#   git clone https://github.com/marcoslucianops/DeepStream-Yolo third_party/DeepStream-Yolo
#   docker build -f docker/deepstream.Dockerfile --build-arg BUNDLE=bundles/t4 -t ds-t4 .
# or as a named build context that BuildKit clones (it replaces the stage below):
#   docker build -f docker/deepstream.Dockerfile --build-arg BUNDLE=bundles/t4 \
#     --build-context deepstream-yolo=https://github.com/marcoslucianops/DeepStream-Yolo.git#master \
#     -t ds-t4 .
# Run (builds the TensorRT engine on this GPU first, then runs the pipeline):
#   docker run --gpus all --rm ds-t4 bash -c "./build_engine.sh && \
#     deepstream-app -c deepstream_app_config.txt"
# Jetson: BuildKit on the device (or --platform linux/arm64) with the same multiarch base.
ARG DEEPSTREAM_IMAGE=nvcr.io/nvidia/deepstream:7.1-triton-multiarch

FROM scratch AS deepstream-yolo
COPY third_party/DeepStream-Yolo/ /

FROM ${DEEPSTREAM_IMAGE} AS parser
# CUDA version of the DeepStream base: 12.6 for DeepStream 7.1, 12.2 for 7.0.
ARG CUDA_VER=12.6
COPY --from=deepstream-yolo / /opt/DeepStream-Yolo/
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN CUDA_VER=${CUDA_VER} make -C /opt/DeepStream-Yolo/nvdsinfer_custom_impl_Yolo -j"$(nproc)" \
    && test -f /opt/DeepStream-Yolo/nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so

FROM ${DEEPSTREAM_IMAGE}
# DeepStream 6.4+ images leave out some GStreamer codecs (MP4/H.264 parsing of file sources);
# NVIDIA's script installs them.
RUN script=/opt/nvidia/deepstream/deepstream/user_additional_install.sh; \
    if [ -x "$script" ]; then "$script"; fi
# One target folder written by `detforge deploy bundle MODEL --target T --out bundles`.
ARG BUNDLE=bundles/t4
WORKDIR /opt/detforge/bundle
COPY ${BUNDLE}/ ./
# custom-lib-path in config_infer_primary.txt is relative to the config file.
COPY --from=parser /opt/DeepStream-Yolo/nvdsinfer_custom_impl_Yolo/libnvdsinfer_custom_impl_Yolo.so \
    ./nvdsinfer_custom_impl_Yolo/
RUN test -f config_infer_primary.txt && test -f deepstream_app_config.txt \
    && test -f manifest.json \
    && chmod +x build_engine.sh
CMD ["deepstream-app", "-c", "deepstream_app_config.txt"]
