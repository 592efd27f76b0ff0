/* safetensors.h - reader for the safetensors format (Hugging Face).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON header
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
 * then the data buffer; offsets are relative to the buffer start.
 * The file is memory-mapped and every entry is validated before use: header
 * length within the file, JSON well formed, dtype known, shape non-negative
 * with a byte count that matches the offsets, offsets inside the buffer and
 * tiling it with no overlap or hole (as the reference reader requires). A
 * file failing any check is an EFORMAT error naming the file and the tensor;
 * nothing is read out of bounds.
 *
 * Tensor data is not aligned: offsets are whatever the writer chose, so read
 * it with memcpy or other unaligned-safe loads, never through a cast pointer.
 * The views are sorted by name (cs_safetensors_find is a binary search) and
 * stay valid until cs_safetensors_close(). */
#ifndef CLIPSCORE_SAFETENSORS_H
#define CLIPSCORE_SAFETENSORS_H

#include "tensor.h"
#include "util.h"

typedef struct cs_safetensors {
    void *map; /* whole file (mmap or malloc'd copy for memory buffers) */
    size_t map_len;
    int mapped;         /* 1: map came from mmap */
    int n;              /* tensor count */
    cs_tensor *tensors; /* views into map; names owned by this struct */
    char *names;        /* storage for the names */
} cs_safetensors;

/* Maps and validates `path`. `st` is overwritten (zeroed on failure); a
 * dtype the format knows but clipscore does not use is EUNSUPPORTED. */
int cs_safetensors_open(const char *path, cs_safetensors *st, cs_error *e);
/* Parses a buffer already in memory (the buffer is copied). */
int cs_safetensors_parse(const void *buf, size_t len, const char *label, cs_safetensors *st,
                         cs_error *e);
const cs_tensor *cs_safetensors_find(const cs_safetensors *st, const char *name);
/* Releases everything; safe on a zeroed struct and when called twice. */
void cs_safetensors_close(cs_safetensors *st);

/* Writes `n` tensors (in that order, contiguous, no metadata) to `path`
 * atomically, padding the header so the data starts 8-byte aligned. For
 * tests and tools creating small models; EARG for an invalid tensor list
 * (duplicate names, nbytes not matching dtype and shape). */
int cs_safetensors_write(const char *path, const cs_tensor *tensors, int n, cs_error *e);

#endif
