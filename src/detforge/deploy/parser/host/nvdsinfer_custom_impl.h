/*
 * Host stand-in for DeepStream's sources/includes/nvdsinfer_custom_impl.h: the detection
 * parameters nvinfer hands a parser, the parser's function type and the prototype check,
 * with the SDK's layout (DeepStream 6.2 and later keep perClassThreshold as a reference to
 * perClassPreclusterThreshold). See nvdsinfer.h here for why it exists.
 */
#ifndef DETFORGE_HOST_NVDSINFER_CUSTOM_IMPL_H
#define DETFORGE_HOST_NVDSINFER_CUSTOM_IMPL_H

#include <vector>

#include "nvdsinfer.h"

extern "C" {

typedef struct {
    unsigned int numClassesConfigured;
    std::vector<float> perClassPreclusterThreshold;
    std::vector<float> perClassPostclusterThreshold;
    std::vector<float> &perClassThreshold = perClassPreclusterThreshold;
} NvDsInferParseDetectionParams;

typedef bool (*NvDsInferParseCustomFunc)(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,
                                         NvDsInferNetworkInfo const &networkInfo,
                                         NvDsInferParseDetectionParams const &detectionParams,
                                         std::vector<NvDsInferObjectDetectionInfo> &objectList);

/* Fails to compile unless `fn` has exactly the NvDsInferParseCustomFunc type. */
#define CHECK_CUSTOM_PARSE_FUNC_PROTOTYPE(fn)                                                \
    static NvDsInferParseCustomFunc detforge_check_##fn __attribute__((unused)) = fn;        \
    extern "C" bool fn(std::vector<NvDsInferLayerInfo> const &outputLayersInfo,              \
                       NvDsInferNetworkInfo const &networkInfo,                              \
                       NvDsInferParseDetectionParams const &detectionParams,                 \
                       std::vector<NvDsInferObjectDetectionInfo> &objectList)

}

#endif
