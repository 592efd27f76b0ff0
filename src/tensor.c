/* tensor.c - dtype sizes and names for tensor views. */
#include "tensor.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[CS_DTYPE_COUNT] = {
    [CS_DTYPE_F32] = {"F32", 4},   [CS_DTYPE_F16] = {"F16", 2}, [CS_DTYPE_BF16] = {"BF16", 2},
    [CS_DTYPE_F64] = {"F64", 8},   [CS_DTYPE_I64] = {"I64", 8}, [CS_DTYPE_I32] = {"I32", 4},
    [CS_DTYPE_I16] = {"I16", 2},   [CS_DTYPE_I8] = {"I8", 1},   [CS_DTYPE_U8] = {"U8", 1},
    [CS_DTYPE_BOOL] = {"BOOL", 1},
};

size_t cs_dtype_size(cs_dtype t) {
    return (unsigned)t < CS_DTYPE_COUNT ? dtype_info[t].size : 0;
}

const char *cs_dtype_name(cs_dtype t) {
    return (unsigned)t < CS_DTYPE_COUNT ? dtype_info[t].name : "?";
}

int64_t cs_tensor_numel(const cs_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
