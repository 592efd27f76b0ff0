/* tensor.h - a borrowed view of one named weight tensor, shared by the model
 * file readers (C) and the torch shim (C++). Views never own their data. */
#ifndef CLIPSCORE_TENSOR_H
#define CLIPSCORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cs_dtype {
    CS_DTYPE_F32 = 0,
    CS_DTYPE_F16,
    CS_DTYPE_BF16,
    CS_DTYPE_F64,
    CS_DTYPE_I64,
    CS_DTYPE_I32,
    CS_DTYPE_I16,
    CS_DTYPE_I8,
    CS_DTYPE_U8,
    CS_DTYPE_BOOL,
    CS_DTYPE_COUNT
} cs_dtype;

#define CS_MAX_DIMS 8

typedef struct cs_tensor {
    const char *name;
    cs_dtype dtype;
    int ndim;
    int64_t shape[CS_MAX_DIMS];
    const void *data; /* contiguous, C order, little-endian */
    size_t nbytes;
} cs_tensor;

/* Bytes per element, 0 for an unknown dtype. */
size_t cs_dtype_size(cs_dtype t);
const char *cs_dtype_name(cs_dtype t);
/* Element count of a view (1 for a scalar). */
int64_t cs_tensor_numel(const cs_tensor *t);

#ifdef __cplusplus
}
#endif

#endif
