/* npy.h - writer for NumPy .npy files (format 1.0, float32, little-endian,
 * C order), written atomically. Rows may be appended in a stream: the header
 * is padded so that the final row count fits when the file is committed. */
#ifndef CLIPSCORE_NPY_H
#define CLIPSCORE_NPY_H

#include <stdint.h>

#include "util.h"

int cs_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                     cs_error *e);

typedef struct cs_npy_stream {
    cs_atomic_file file;
    int ndim;           /* 2 or 4: leading dimension is the row count */
    int64_t shape[4];   /* shape[0] counts the rows appended so far */
    int64_t row_floats; /* floats per row */
} cs_npy_stream;

/* Opens a stream of rows of shape row_shape (ndim_row dims, at most 3). */
int cs_npy_stream_open(cs_npy_stream *s, const char *path, int ndim_row, const int64_t *row_shape,
                       cs_error *e);
int cs_npy_stream_append(cs_npy_stream *s, const float *rows, int64_t n_rows, cs_error *e);
int cs_npy_stream_commit(cs_npy_stream *s, cs_error *e);
/* Completes the file but leaves it as a finished temporary in *staged, to be
 * renamed with the run's other outputs (commit.h). */
int cs_npy_stream_finish(cs_npy_stream *s, cs_atomic_file *staged, cs_error *e);
void cs_npy_stream_abort(cs_npy_stream *s);

#endif
