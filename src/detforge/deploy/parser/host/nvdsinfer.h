/*
 * Host stand-in for DeepStream's sources/includes/nvdsinfer.h: only what a bounding-box
 * parser uses, with the SDK's struct layouts and names (DeepStream 6.x / 7.x), so detforge
 * can compile and run its parser on a machine without DeepStream. Never installed on a
 * device: there the Makefile compiles against the SDK's own headers.
 */
#ifndef DETFORGE_HOST_NVDSINFER_H
#define DETFORGE_HOST_NVDSINFER_H

#ifdef __cplusplus
extern "C" {
#endif

#define NVDSINFER_MAX_DIMS 8

typedef struct {
    unsigned int numDims;
    unsigned int d[NVDSINFER_MAX_DIMS];
    unsigned int numElements;
} NvDsInferDims;

typedef enum { FLOAT = 0, HALF = 1, INT8 = 2, INT32 = 3 } NvDsInferDataType;

typedef struct {
    NvDsInferDataType dataType;
    union {
        NvDsInferDims inferDims;
        NvDsInferDims dims;
    };
    int bindingIndex;
    const char *layerName;
    void *buffer;
    int isInput;
} NvDsInferLayerInfo;

typedef struct {
    unsigned int width;
    unsigned int height;
    unsigned int channels;
} NvDsInferNetworkInfo;

typedef struct {
    unsigned int classId;
    float left;
    float top;
    float width;
    float height;
    float detectionConfidence;
} NvDsInferObjectDetectionInfo;

typedef NvDsInferObjectDetectionInfo NvDsInferParseObjectInfo;

#ifdef __cplusplus
}
#endif

#endif
