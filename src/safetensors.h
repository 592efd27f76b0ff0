/* safetensors.h - reader for the safetensors format (Hugging Face).
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON header
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}),
 * then the data buffer; offsets are relative to the buffer start.
 * The file is memory-mapped and every entry is validated before use: header
 * length within the file, JSON well formed, dtype known, shape non-negative
 * with a byte count that matches the offsets, offsets inside the buffer and
 * not overlapping. A file failing any check is an EFORMAT error naming the
 * file and the tensor; nothing is read out of bounds. */
#ifndef CLIPSCORE_SAFETENSORS_H
#define CLIPSCORE_SAFETENSORS_H

#include "tensor.h"
#include "util.h"

typedef struct cs_safetensors {
    void *map;          /* whole file (mmap or malloc'd copy for memory buffers) */
    size_t map_len;
    int mapped;         /* 1: map came from mmap */
    int n;              /* tensor count */
    cs_tensor *tensors; /* views into map; names owned by this struct */
    char *names;        /* storage for the names */
} cs_safetensors;

int cs_safetensors_open(const char *path, cs_safetensors *st, cs_error *e);
/* Parses a buffer already in memory (the buffer is copied). */
int cs_safetensors_parse(const void *buf, size_t len, const char *label, cs_safetensors *st,
                         cs_error *e);
const cs_tensor *cs_safetensors_find(const cs_safetensors *st, const char *name);
void cs_safetensors_close(cs_safetensors *st);

#endif
