/*
 * A C entry point around the parser for ctypes (detforge.deploy.parser): builds the
 * vectors nvinfer would pass and flattens the objects. Host builds only.
 */
#include <cstring>
#include <vector>

#include "nvdsinfer_custom_impl.h"

extern "C" bool NvDsInferParseCustomDetforge(std::vector<NvDsInferLayerInfo> const &,
                                             NvDsInferNetworkInfo const &,
                                             NvDsInferParseDetectionParams const &,
                                             std::vector<NvDsInferObjectDetectionInfo> &);

/* Returns the number of objects (at most max_out rows of class, left, top, width, height,
 * confidence written to out), or -1 when the parser refuses the tensor. */
extern "C" int detforge_parse(const void *data, int data_type, unsigned num_dims,
                              const unsigned *dims, const char *layer_name, unsigned net_w,
                              unsigned net_h, unsigned num_classes, const float *thresholds,
                              float *out, unsigned max_out)
{
    NvDsInferLayerInfo layer;
    std::memset(&layer, 0, sizeof layer);
    layer.dataType = (NvDsInferDataType)data_type;
    layer.inferDims.numDims = num_dims;
    unsigned elements = 1;
    for (unsigned i = 0; i < num_dims && i < NVDSINFER_MAX_DIMS; ++i) {
        layer.inferDims.d[i] = dims[i];
        elements *= dims[i];
    }
    layer.inferDims.numElements = elements;
    layer.layerName = layer_name;
    layer.buffer = const_cast<void *>(data);
    std::vector<NvDsInferLayerInfo> layers(1, layer);
    NvDsInferNetworkInfo network = {net_w, net_h, 3};
    NvDsInferParseDetectionParams params;
    params.numClassesConfigured = num_classes;
    params.perClassPreclusterThreshold.assign(thresholds, thresholds + num_classes);
    params.perClassPostclusterThreshold.assign(num_classes, 0.f);
    std::vector<NvDsInferObjectDetectionInfo> objects;
    if (!NvDsInferParseCustomDetforge(layers, network, params, objects))
        return -1;
    const unsigned n = objects.size() < max_out ? (unsigned)objects.size() : max_out;
    for (unsigned i = 0; i < n; ++i) {
        const NvDsInferObjectDetectionInfo &o = objects[i];
        float *row = out + 6 * i;
        row[0] = (float)o.classId;
        row[1] = o.left;
        row[2] = o.top;
        row[3] = o.width;
        row[4] = o.height;
        row[5] = o.detectionConfidence;
    }
    return (int)objects.size();
}
