/* torch_zip.h - writes torch.save-style zip/pickle files (pytorch_model.bin)
 * by hand, for tests that need archives a well-behaved PyTorch would never
 * write: views larger than their storage, stride-0 (expanded) tensors,
 * storages whose pickled size exceeds their data.
 *
 * Covers: an uncompressed zip (archive/data.pkl, archive/data/N,
 * archive/version) holding a protocol-2 pickle of a dict from names to
 * torch._utils._rebuild_tensor_v2 calls, float32 or float16 storages.
 * Leaves out: compression, zip64, any other pickled type. */
#ifndef CLIPSCORE_TORCH_ZIP_H
#define CLIPSCORE_TORCH_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct torch_zip_tensor {
    const char *name;
    int ndim; /* 0 to 4 */
    int64_t shape[4], stride[4];
    int64_t offset;        /* storage offset, in elements */
    int64_t storage_numel; /* the element count the pickle claims for the storage */
    const void *data;      /* the storage record's bytes (what the file really holds) */
    size_t data_bytes;
    int f16; /* 1: HalfStorage, 0: FloatStorage */
    /* 0: a storage of its own. i + 1: tensor i's, as torch.save shares one
     * (pickle memo). -(i + 1): tensor i's record loaded again (a second
     * persistent id for the same record, which torch.save never writes).
     * data is unused when shared. */
    int same_storage_as;
} torch_zip_tensor;

/* Writes the n tensors to path. */
int torch_zip_write(const char *path, const torch_zip_tensor *t, int n, cs_error *e);

#endif
