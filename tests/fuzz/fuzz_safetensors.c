/* fuzz_safetensors.c - fuzzes the safetensors reader (safetensors.h): the
 * input is a whole file, parsed from memory and opened (memory-mapped) from
 * a temporary file. A file that validates is written back with
 * cs_safetensors_write and read again.
 *
 * Invariants: both entry points agree; every view lies inside the buffer
 * with nbytes = elements x dtype size, names are sorted, distinct and found
 * by cs_safetensors_find; what is written back reads back equal. */
#include <string.h>

#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_tmpdir();
    return 0;
}

static void check_views(const cs_safetensors *st) {
    const unsigned char *lo = st->map, *hi = lo + st->map_len;
    unsigned sum = 0;
    for (int i = 0; i < st->n; i++) {
        const cs_tensor *t = &st->tensors[i];
        FUZZ_CHECK(t->name != NULL, "tensor %d has no name", i);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= CS_MAX_DIMS, "%s: ndim %d", t->name, t->ndim);
        int64_t numel = cs_tensor_numel(t);
        FUZZ_CHECK(numel >= 0 && (size_t)numel * cs_dtype_size(t->dtype) == t->nbytes,
                   "%s: %lld elements but %zu bytes", t->name, (long long)numel, t->nbytes);
        if (t->nbytes) {
            const unsigned char *p = t->data;
            FUZZ_CHECK(p >= lo && p <= hi && t->nbytes <= (size_t)(hi - p), "%s outside the file",
                       t->name);
            /* Touch every byte, so the sanitizer sees a view that overruns. */
            for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
        }
        if (i) FUZZ_CHECK(strcmp(st->tensors[i - 1].name, t->name) < 0, "names not sorted");
        FUZZ_CHECK(cs_safetensors_find(st, t->name) == t, "%s not found", t->name);
    }
    FUZZ_CHECK(cs_safetensors_find(st, "\x01 no such tensor") == NULL, "found a missing name");
    (void)sum;
}

static void check_same(const cs_safetensors *a, const cs_safetensors *b, const char *what) {
    FUZZ_CHECK(a->n == b->n, "%s: %d and %d tensors", what, a->n, b->n);
    for (int i = 0; i < a->n; i++) {
        const cs_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        FUZZ_CHECK(!strcmp(x->name, y->name) && x->dtype == y->dtype && x->ndim == y->ndim &&
                       !memcmp(x->shape, y->shape, sizeof x->shape[0] * (size_t)x->ndim) &&
                       x->nbytes == y->nbytes &&
                       (!x->nbytes || !memcmp(x->data, y->data, x->nbytes)),
                   "%s: tensor %s differs", what, x->name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cs_safetensors mem, file;
    cs_error e = {0}, fe = {0};
    int rc = cs_safetensors_parse(data, size, "fuzz", &mem, &e);
    const char *path = fuzz_path(0, "input.safetensors");
    fuzz_write_file(path, data, size);
    int frc = cs_safetensors_open(path, &file, &fe);
    FUZZ_CHECK(rc == frc, "memory gives %d (%s), file gives %d (%s)", rc, e.msg, frc, fe.msg);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK_ERROR(frc, fe);
        FUZZ_CHECK(mem.n == 0 && mem.tensors == NULL && mem.map == NULL, "state left on failure");
        cs_safetensors_close(&mem); /* safe on a zeroed struct */
        return 0;
    }
    check_views(&mem);
    check_views(&file);
    check_same(&mem, &file, "memory vs file");

    const char *out = fuzz_path(1, "rewritten.safetensors");
    rc = cs_safetensors_write(out, mem.tensors, mem.n, &e);
    FUZZ_CHECK(rc == 0, "a valid file does not write back: %s", e.msg);
    cs_safetensors back;
    rc = cs_safetensors_open(out, &back, &e);
    FUZZ_CHECK(rc == 0, "the rewritten file does not read: %s", e.msg);
    check_same(&mem, &back, "rewritten");
    cs_safetensors_close(&back);
    cs_safetensors_close(&file);
    cs_safetensors_close(&mem);
    cs_safetensors_close(&mem); /* documented as safe twice */
    return 0;
}
