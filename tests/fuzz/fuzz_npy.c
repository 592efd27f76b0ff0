/* fuzz_npy.c - fuzzes the .npy writer (npy.h) with shapes and rows taken
 * from the input, then reads each written file back and checks it byte by
 * byte against what NumPy's format 1.0 requires. Input layout: byte 0 picks
 * whole-array (even) or row-stream (odd) writing, byte 1 the dimension
 * count, one byte per dimension (small sizes, or a special value: negative,
 * zero, huge), then for streams one byte per operation (append 0-4 rows,
 * append a bad count, or stop); the rest supplies the float bits.
 *
 * Invariants: bad shapes and counts are refused with EARG/ELIMIT and leave
 * no file; a written file has the magic, version 1.0, a header padded with
 * spaces to a multiple of 64 ending in '\n', the exact dict NumPy writes
 * (shape included) and the data as given, little-endian. */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "npy.h"

#define MAX_FLOATS 4096
#define STREAM_MAX_ROWS 1000000000000000LL

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_tmpdir();
    return 0;
}

/* A dimension from one byte: mostly small, sometimes an edge value. */
static int64_t dim_from(uint8_t b) {
    static const int64_t special[16] = {-1,
                                        INT64_MIN,
                                        INT64_MAX,
                                        (int64_t)1 << 40,
                                        (int64_t)(SIZE_MAX / 4) + 1,
                                        (int64_t)1 << 31,
                                        0,
                                        STREAM_MAX_ROWS,
                                        -2,
                                        (int64_t)1 << 62,
                                        65536,
                                        4096,
                                        3,
                                        (int64_t)1 << 32,
                                        INT32_MAX,
                                        1};
    return b >= 0xF0 ? special[b - 0xF0] : (int64_t)(b % 8);
}

typedef struct cursor {
    const uint8_t *p;
    size_t n;
} cursor;

static int take(cursor *c, uint8_t *b) {
    if (!c->n) return 0;
    *b = *c->p++;
    c->n--;
    return 1;
}

/* NumPy's header dict for a float32 C-order array. */
static size_t npy_dict(char *out, size_t cap, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(out, cap, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < ndim; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    at += (size_t)snprintf(out + at, cap - at, "%s), }", ndim == 1 ? "," : "");
    return at;
}

/* Reads `path` back; `reserved` (0: the smallest multiple of 64) is the
 * header size a stream promised. */
static void check_file(const char *path, int ndim, const int64_t *shape, const float *data,
                       size_t numel, size_t reserved) {
    char *buf = NULL;
    size_t len = 0;
    cs_error e = {0};
    FUZZ_CHECK(cs_read_file(path, 0, &buf, &len, &e) == 0, "reading back: %s", e.msg);
    char dict[1024];
    size_t dl = npy_dict(dict, sizeof dict, ndim, shape);
    size_t total = reserved ? reserved : (10 + dl + 1 + 63) / 64 * 64;
    FUZZ_CHECK(len >= 10 && !memcmp(buf, "\x93NUMPY\x01\x00", 8), "bad magic or version");
    size_t hl = (size_t)(unsigned char)buf[8] | (size_t)(unsigned char)buf[9] << 8;
    FUZZ_CHECK(10 + hl == total && total % 64 == 0, "header of %zu bytes, expected %zu", 10 + hl,
               total);
    FUZZ_CHECK(len == total + numel * 4, "file of %zu bytes, expected %zu", len, total + numel * 4);
    FUZZ_CHECK(!memcmp(buf + 10, dict, dl), "header dict differs: %.*s", (int)dl, buf + 10);
    for (size_t i = 10 + dl; i + 1 < total; i++)
        FUZZ_CHECK(buf[i] == ' ', "header padding byte %zu is 0x%02x", i, buf[i]);
    FUZZ_CHECK(buf[total - 1] == '\n', "header does not end in a newline");
    for (size_t i = 0; i < numel; i++) {
        uint32_t want, got = 0;
        memcpy(&want, &data[i], 4);
        for (int b = 0; b < 4; b++)
            got |= (uint32_t)(unsigned char)buf[total + 4 * i + (size_t)b] << (8 * b);
        FUZZ_CHECK(got == want, "float %zu differs", i);
    }
    free(buf);
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Whole arrays: valid iff no dimension is negative and the running element
 * count stays within SIZE_MAX / 4 (the writer's own overflow rule). */
static void whole(cursor *c, const char *path, const float *pool, size_t n_pool) {
    uint8_t b;
    if (!take(c, &b)) return;
    int ndim = (int)(b % 40) - 2; /* -2 .. 37: the writer takes 0 .. 32 */
    int64_t shape[40] = {0};
    int bad = ndim < 0 || ndim > 32;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = take(c, &b) ? dim_from(b) : 1;
        if (shape[i] < 0) bad = 1;
        if (!bad && shape[i] && numel > (int64_t)(SIZE_MAX / 4 / (size_t)shape[i])) bad = 1;
        if (!bad) numel *= shape[i];
    }
    if (!bad && (uint64_t)numel > n_pool) return; /* the caller must supply the floats */
    unlink(path);
    cs_error e = {0};
    int rc = cs_npy_write_f32(path, pool, ndim, shape, &e);
    if (bad) {
        FUZZ_CHECK(rc == CLIPSCORE_EARG, "bad shape: rc %d", rc);
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(!exists(path), "a file was left after a refused write");
        return;
    }
    FUZZ_CHECK(rc == 0, "write failed: %s", e.msg);
    check_file(path, ndim, shape, pool, (size_t)numel, 0);
}

static void stream(cursor *c, const char *path, const float *pool, size_t n_pool) {
    uint8_t b;
    if (!take(c, &b)) return;
    int ndim_row = (int)(b % 6) - 1; /* -1 .. 4: the stream takes 0 .. 3 */
    int64_t row_shape[8] = {0}, shape[8] = {0};
    int bad = ndim_row < 0 || ndim_row > 3;
    int64_t row_floats = 1;
    for (int i = 0; i < ndim_row && i < 8; i++) {
        row_shape[i] = take(c, &b) ? dim_from(b) : 1;
        if (row_shape[i] < 0 || (row_shape[i] && row_floats > INT64_MAX / 4 / row_shape[i]))
            bad = 1;
        if (!bad) row_floats *= row_shape[i];
    }
    unlink(path);
    cs_npy_stream s;
    cs_error e = {0};
    int rc = cs_npy_stream_open(&s, path, ndim_row, row_shape, &e);
    if (bad) {
        FUZZ_CHECK(rc == CLIPSCORE_EARG, "bad row shape: rc %d", rc);
        FUZZ_CHECK_ERROR(rc, e);
        return;
    }
    FUZZ_CHECK(rc == 0, "open failed: %s", e.msg);
    float *rows = malloc(MAX_FLOATS * sizeof *rows);
    size_t n_rows_data = 0;
    int64_t total = 0;
    int commit = 1;
    while (take(c, &b)) {
        int op = b & 3;
        if (op == 3) { /* stop: commit or abort */
            commit = b & 4;
            break;
        }
        if (op == 2) { /* a count the stream must refuse */
            int64_t n = (b & 4) ? -1 : STREAM_MAX_ROWS + 1 - total;
            rc = cs_npy_stream_append(&s, pool, n, &e);
            FUZZ_CHECK(rc == CLIPSCORE_ELIMIT, "append of %lld rows: rc %d", (long long)n, rc);
            FUZZ_CHECK_ERROR(rc, e);
            continue;
        }
        int64_t n = (b >> 2) % 5;
        /* n <= 4 and row_floats <= INT64_MAX / 4: the product cannot overflow. */
        if (n * row_floats > (int64_t)n_pool || n_rows_data + (size_t)(n * row_floats) > MAX_FLOATS)
            continue; /* the caller must supply the floats */
        rc = cs_npy_stream_append(&s, pool, n, &e);
        FUZZ_CHECK(rc == 0, "append failed: %s", e.msg);
        memcpy(rows + n_rows_data, pool, (size_t)(n * row_floats) * sizeof *rows);
        n_rows_data += (size_t)(n * row_floats);
        total += n;
    }
    if (!commit) {
        cs_npy_stream_abort(&s);
        FUZZ_CHECK(!exists(path), "a file was left after abort");
        free(rows);
        return;
    }
    rc = cs_npy_stream_commit(&s, &e);
    FUZZ_CHECK(rc == 0, "commit failed: %s", e.msg);
    shape[0] = STREAM_MAX_ROWS;
    for (int i = 0; i < ndim_row; i++) shape[i + 1] = row_shape[i];
    char dict[1024];
    size_t reserved = (10 + npy_dict(dict, sizeof dict, ndim_row + 1, shape) + 1 + 63) / 64 * 64;
    shape[0] = total;
    check_file(path, ndim_row + 1, shape, rows, n_rows_data, reserved);
    free(rows);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cursor c = {data, size};
    uint8_t mode;
    if (!take(&c, &mode)) return 0;
    /* Float bits come from the input's tail; the header bytes come first. */
    static float pool[MAX_FLOATS];
    size_t n_pool = size / 4 < MAX_FLOATS ? size / 4 : MAX_FLOATS;
    memset(pool, 0, sizeof pool);
    memcpy(pool, data + size - n_pool * 4, n_pool * 4);
    const char *path = fuzz_path(0, "out.npy");
    if (mode & 1)
        stream(&c, path, pool, n_pool);
    else
        whole(&c, path, pool, n_pool);
    return 0;
}
