/*
 * detforge's bounding-box parser for DeepStream's nvinfer (parse-bbox-func-name).
 *
 * nvinfer calls NvDsInferParseCustomDetforge once per frame with that frame's output
 * tensors (batch axis removed) and expects objects in network-input pixels: it maps them
 * back to the frame itself, then applies pre-cluster-threshold, cluster-mode NMS and topk.
 *
 * Layouts are rows of one output tensor; each has a decoder in kLayouts. Today one row
 * serves three detforge layouts:
 *   [N, 6]  x1, y1, x2, y2, score, class   (network pixels)
 *     deepstream  YOLO candidates            nvinfer cluster-mode=2 (NMS)
 *     end2end     YOLO after in-graph NMS    cluster-mode=4 (none)
 *     rtdetr      RT-DETR's top-k queries    cluster-mode=4 (none: one-to-one queries)
 * The config writer sets cluster-mode from the layout; rows are decoded alike. A layout with
 * other rows is one more decoder and one more kLayouts row; the frame checks and the object
 * rules stay shared.
 *
 * Rules every decoder follows (nvdsinfer_custom_impl.h, NvDsInferParseDetectionParams):
 *   - an object's class id is < numClassesConfigured;
 *   - its score is >= perClassPreclusterThreshold[class id];
 *   - coordinates are finite, clipped to the network input, and the box keeps a positive
 *     width and height after clipping.
 * Output tensors may be FP32 or FP16 (a strongly typed FP16 engine keeps FP16 outputs).
 *
 * Build: make (see Makefile); the library is what custom-lib-path names.
 */

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "nvdsinfer_custom_impl.h"

namespace detforge {

/* One frame's output tensor, read as rows of `width` numbers. */
struct Rows {
    const void *data;
    NvDsInferDataType type;
    unsigned count;
    unsigned width;
};

/* What every decoder needs besides the tensor. */
struct Frame {
    float net_w;
    float net_h;
    const NvDsInferParseDetectionParams *params;
};

static float half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exponent = (h >> 10) & 0x1fu;
    uint32_t mantissa = h & 0x3ffu;
    uint32_t bits;
    if (exponent == 0x1fu) {                      /* inf or NaN */
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else if (exponent != 0) {                   /* normal */
        bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {                   /* zero */
        bits = sign;
    } else {                                      /* subnormal: normalise */
        uint32_t e = 113u;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            --e;
        }
        bits = sign | (e << 23) | ((mantissa & 0x3ffu) << 13);
    }
    float out;
    std::memcpy(&out, &bits, sizeof out);
    return out;
}

static float value(const Rows &rows, unsigned row, unsigned col)
{
    const size_t i = (size_t)row * rows.width + col;
    if (rows.type == HALF)
        return half_to_float(static_cast<const uint16_t *>(rows.data)[i]);
    return static_cast<const float *>(rows.data)[i];
}

static float clip(float v, float hi)
{
    return v < 0.f ? 0.f : (v > hi ? hi : v);
}

/* Append one object when it passes the rules above; false when it is dropped. */
static bool emit(const Frame &frame, float x1, float y1, float x2, float y2, float score,
                 float class_value, std::vector<NvDsInferObjectDetectionInfo> &out)
{
    if (!std::isfinite(x1) || !std::isfinite(y1) || !std::isfinite(x2) || !std::isfinite(y2) ||
        !std::isfinite(score) || !std::isfinite(class_value))
        return false;
    const long class_id = std::lround(class_value);
    const std::vector<float> &thresholds = frame.params->perClassPreclusterThreshold;
    if (class_id < 0 || (unsigned long)class_id >= frame.params->numClassesConfigured ||
        (unsigned long)class_id >= thresholds.size())
        return false;
    if (!(score >= thresholds[(size_t)class_id]))
        return false;
    x1 = clip(x1, frame.net_w);
    x2 = clip(x2, frame.net_w);
    y1 = clip(y1, frame.net_h);
    y2 = clip(y2, frame.net_h);
    if (!(x2 - x1 > 0.f) || !(y2 - y1 > 0.f))
        return false;
    NvDsInferObjectDetectionInfo object;
    std::memset(&object, 0, sizeof object);
    object.classId = (unsigned int)class_id;
    object.left = x1;
    object.top = y1;
    object.width = x2 - x1;
    object.height = y2 - y1;
    object.detectionConfidence = score > 1.f ? 1.f : score;
    out.push_back(object);
    return true;
}

/* deepstream, end2end and rtdetr layouts: x1, y1, x2, y2, score, class per row, in
 * network pixels. */
static bool decode_xyxy_score_class(const Rows &rows, const Frame &frame,
                                    std::vector<NvDsInferObjectDetectionInfo> &out)
{
    for (unsigned r = 0; r < rows.count; ++r)
        emit(frame, value(rows, r, 0), value(rows, r, 1), value(rows, r, 2), value(rows, r, 3),
             value(rows, r, 4), value(rows, r, 5), out);
    return true;
}

typedef bool (*Decoder)(const Rows &, const Frame &, std::vector<NvDsInferObjectDetectionInfo> &);

struct Layout {
    const char *name;
    unsigned row_width;
    Decoder decode;
};

static const Layout kLayouts[] = {
    {"deepstream / end2end / rtdetr", 6u, decode_xyxy_score_class},
};

static void report(const char *message, const char *detail)
{
    static bool reported = false;  /* once: nvinfer calls this for every frame */
    if (!reported) {
        std::fprintf(stderr, "detforge parser: %s%s\n", message, detail ? detail : "");
        reported = true;
    }
}

/* The output named "output" (detforge's export), else the only output. */
static const NvDsInferLayerInfo *find_output(const std::vector<NvDsInferLayerInfo> &layers)
{
    const NvDsInferLayerInfo *only = nullptr;
    unsigned outputs = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
        if (layers[i].isInput)
            continue;
        if (layers[i].layerName && std::strcmp(layers[i].layerName, "output") == 0)
            return &layers[i];
        only = &layers[i];
        ++outputs;
    }
    return outputs == 1 ? only : nullptr;
}

static bool parse(const std::vector<NvDsInferLayerInfo> &layers, const NvDsInferNetworkInfo &network,
                  const NvDsInferParseDetectionParams &params,
                  std::vector<NvDsInferObjectDetectionInfo> &objects)
{
    const NvDsInferLayerInfo *layer = find_output(layers);
    if (!layer || !layer->buffer) {
        report("no output tensor named 'output' (and not exactly one output); ",
               "export the model with `detforge export onnx --layout deepstream`");
        return false;
    }
    if (layer->dataType != FLOAT && layer->dataType != HALF) {
        report("output tensor must be FP32 or FP16", nullptr);
        return false;
    }
    const NvDsInferDims &dims = layer->inferDims;
    if (dims.numDims < 2 || dims.numDims > NVDSINFER_MAX_DIMS) {
        report("output tensor must be [N, C]", nullptr);
        return false;
    }
    const unsigned width = dims.d[dims.numDims - 1];
    size_t elements = 1;
    for (unsigned i = 0; i < dims.numDims; ++i)
        elements *= dims.d[i];
    for (size_t i = 0; i < sizeof kLayouts / sizeof kLayouts[0]; ++i) {
        if (kLayouts[i].row_width != width)
            continue;
        Rows rows = {layer->buffer, layer->dataType, (unsigned)(elements / width), width};
        Frame frame = {(float)network.width, (float)network.height, &params};
        return kLayouts[i].decode(rows, frame, objects);
    }
    report("unknown output layout: rows are not x1, y1, x2, y2, score, class (6 values)", nullptr);
    return false;
}

}  // namespace detforge

extern "C" bool NvDsInferParseCustomDetforge(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                             NvDsInferNetworkInfo const &networkInfo,
                                             NvDsInferParseDetectionParams const &detectionParams,
                                             std::vector<NvDsInferObjectDetectionInfo> &objectList)
{
    return detforge::parse(outputLayersInfo, networkInfo, detectionParams, objectList);
}

CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(NvDsInferParseCustomDetforge);
