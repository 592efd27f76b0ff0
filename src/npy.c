/* npy.c - NumPy .npy writer: format version 1.0, dtype '<f4', C order.
 *
 * Covers: whole arrays written at once and row streams whose row count is
 * patched into the header on commit; both go through an atomic temporary so
 * a failed run never leaves a half-written file. Leaves out reading, other
 * dtypes, and format versions 2.0/3.0 (a float32 header never needs them). */
#include "npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPY_MAX_DIMS 32
/* The stream reserves header room for row counts up to this (16 digits). */
#define NPY_MAX_STREAM_ROWS 1000000000000000LL

/* Builds magic + version + header length + dict, padded with spaces and
 * ending in '\n' so the total is `total` bytes (0: the next multiple of 64,
 * which keeps the data aligned). Returns the total, or 0 when it cannot fit. */
static size_t npy_header(char *out, size_t cap, int ndim, const int64_t *shape, size_t total) {
    char dict[64 + NPY_MAX_DIMS * 24];
    int at = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        at += snprintf(dict + at, sizeof dict - (size_t)at, "%s%lld", i ? ", " : "",
                       (long long)shape[i]);
    at += snprintf(dict + at, sizeof dict - (size_t)at, "%s), }", ndim == 1 ? "," : "");
    size_t need = 10 + (size_t)at + 1;
    if (!total) total = (need + 63) / 64 * 64;
    if (need > total || total > cap || total - 10 > 0xffff) return 0;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (char)((total - 10) & 0xff);
    out[9] = (char)((total - 10) >> 8);
    memcpy(out + 10, dict, (size_t)at);
    memset(out + 10 + at, ' ', total - need);
    out[total - 1] = '\n';
    return total;
}

/* Writes floats little-endian whatever the host order. */
static int write_f32(FILE *fp, const float *v, size_t n) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return n == 0 || fwrite(v, sizeof *v, n, fp) == n ? 0 : -1;
#else
    unsigned char buf[4096];
    while (n) {
        size_t k = n < sizeof buf / 4 ? n : sizeof buf / 4;
        for (size_t i = 0; i < k; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            for (int b = 0; b < 4; b++) buf[4 * i + b] = (unsigned char)(u >> (8 * b));
        }
        if (fwrite(buf, 4, k, fp) != k) return -1;
        v += k;
        n -= k;
    }
    return 0;
#endif
}

/* Element count of a shape, or -1 if a dimension is negative or the byte
 * size would overflow. */
static int64_t shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        if (shape[i] && n > (int64_t)(SIZE_MAX / 4 / (size_t)shape[i])) return -1;
        n *= shape[i];
    }
    return n;
}

int cs_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                     cs_error *e) {
    if (ndim < 0 || ndim > NPY_MAX_DIMS)
        return cs_fail(e, CLIPSCORE_EARG, "%s: cannot write a %d-dimensional array", path, ndim);
    int64_t numel = shape_numel(ndim, shape);
    if (numel < 0) return cs_fail(e, CLIPSCORE_EARG, "%s: invalid array shape", path);
    char head[2048];
    size_t hl = npy_header(head, sizeof head, ndim, shape, 0);
    if (!hl) return cs_fail(e, CLIPSCORE_EINTERNAL, "%s: .npy header does not fit", path);

    cs_atomic_file f;
    int rc = cs_atomic_open(&f, path, e);
    if (rc) return rc;
    if (fwrite(head, 1, hl, f.fp) != hl || write_f32(f.fp, data, (size_t)numel) != 0) {
        int err = errno;
        cs_atomic_abort(&f);
        return cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", path, strerror(err ? err : EIO));
    }
    return cs_atomic_commit(&f, e);
}

/* Header size reserved by a stream: enough for NPY_MAX_STREAM_ROWS rows. */
static size_t stream_header_size(const cs_npy_stream *s, char *buf, size_t cap) {
    int64_t shape[4];
    memcpy(shape, s->shape, sizeof shape);
    shape[0] = NPY_MAX_STREAM_ROWS;
    return npy_header(buf, cap, s->ndim, shape, 0);
}

int cs_npy_stream_open(cs_npy_stream *s, const char *path, int ndim_row, const int64_t *row_shape,
                       cs_error *e) {
    memset(s, 0, sizeof *s);
    if (ndim_row < 0 || ndim_row > 3)
        return cs_fail(e, CLIPSCORE_EARG, "%s: rows of %d dimensions are not supported", path,
                       ndim_row);
    s->ndim = ndim_row + 1;
    s->row_floats = 1;
    for (int i = 0; i < ndim_row; i++) {
        if (row_shape[i] < 0 || (row_shape[i] && s->row_floats > INT64_MAX / 4 / row_shape[i])) {
            memset(s, 0, sizeof *s);
            return cs_fail(e, CLIPSCORE_EARG, "%s: invalid row shape", path);
        }
        s->shape[i + 1] = row_shape[i];
        s->row_floats *= row_shape[i];
    }
    char head[512];
    /* A placeholder header of the final size; commit rewrites it in place. */
    size_t reserved = stream_header_size(s, head, sizeof head);
    size_t hl = npy_header(head, sizeof head, s->ndim, s->shape, reserved);
    if (!reserved || hl != reserved) {
        memset(s, 0, sizeof *s);
        return cs_fail(e, CLIPSCORE_EINTERNAL, "%s: .npy header does not fit", path);
    }
    int rc = cs_atomic_open(&s->file, path, e);
    if (rc) {
        memset(s, 0, sizeof *s);
        return rc;
    }
    if (fwrite(head, 1, hl, s->file.fp) != hl) {
        int err = errno;
        cs_npy_stream_abort(s);
        return cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", path, strerror(err ? err : EIO));
    }
    return 0;
}

int cs_npy_stream_append(cs_npy_stream *s, const float *rows, int64_t n_rows, cs_error *e) {
    if (!s->file.fp) return cs_fail(e, CLIPSCORE_EINTERNAL, ".npy stream is not open");
    if (n_rows < 0 || n_rows > NPY_MAX_STREAM_ROWS - s->shape[0])
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: more than %lld rows", s->file.path,
                       (long long)NPY_MAX_STREAM_ROWS);
    if (s->row_floats && n_rows > (int64_t)(SIZE_MAX / 4 / (size_t)s->row_floats))
        return cs_fail(e, CLIPSCORE_EARG, "%s: too many rows in one append", s->file.path);
    if (write_f32(s->file.fp, rows, (size_t)(n_rows * s->row_floats)) != 0)
        return cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", s->file.path,
                       strerror(errno ? errno : EIO));
    s->shape[0] += n_rows;
    return 0;
}

int cs_npy_stream_finish(cs_npy_stream *s, cs_atomic_file *staged, cs_error *e) {
    if (!s->file.fp) return cs_fail(e, CLIPSCORE_EINTERNAL, ".npy stream is not open");
    char head[512], spare[512];
    size_t reserved = stream_header_size(s, spare, sizeof spare);
    size_t hl = npy_header(head, sizeof head, s->ndim, s->shape, reserved);
    FILE *fp = s->file.fp;
    if (!hl || fflush(fp) != 0 || fseek(fp, 0, SEEK_SET) != 0 || fwrite(head, 1, hl, fp) != hl) {
        int err = errno;
        char *path = s->file.path;
        s->file.path = NULL; /* keep the name for the message */
        cs_npy_stream_abort(s);
        int rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", path ? path : "(npy)",
                         strerror(err ? err : EIO));
        free(path);
        return rc;
    }
    int rc = cs_atomic_finish(&s->file, e);
    if (!rc) *staged = s->file;
    memset(s, 0, sizeof *s);
    return rc;
}

int cs_npy_stream_commit(cs_npy_stream *s, cs_error *e) {
    cs_atomic_file f;
    int rc = cs_npy_stream_finish(s, &f, e);
    return rc ? rc : cs_atomic_rename(&f, e);
}

void cs_npy_stream_abort(cs_npy_stream *s) {
    cs_atomic_abort(&s->file);
    memset(s, 0, sizeof *s);
}
