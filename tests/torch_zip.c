/* torch_zip.c - hand-written torch zip/pickle files for the tests (see
 * torch_zip.h). Written from the zip specification (APPNOTE: local
 * headers, central directory, end record) and the pickle opcodes that
 * torch.save emits for a state dict. Leaves out: reading such files back
 * (libtorch does that in the tests). */
#include "torch_zip.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ------------------------------------------------------------ a byte buffer */

typedef struct buf {
    unsigned char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *d, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t nc = (b->cap ? b->cap * 2 : 4096) + n;
        unsigned char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_s(buf *b, const char *s) {
    put(b, s, strlen(s));
}

static void put_le(buf *b, uint64_t v, int bytes) {
    unsigned char t[8];
    for (int i = 0; i < bytes; i++) t[i] = (unsigned char)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

/* ------------------------------------------------------------ pickle */

static void p_str(buf *b, const char *s) { /* BINUNICODE */
    put_s(b, "X");
    put_le(b, strlen(s), 4);
    put_s(b, s);
}

static void p_int(buf *b, int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) { /* BININT */
        put_s(b, "J");
        put_le(b, (uint64_t)v, 4);
    } else { /* LONG1: 8 little-endian two's complement bytes */
        put(b, "\x8a\x08", 2);
        put_le(b, (uint64_t)v, 8);
    }
}

static void p_tuple(buf *b, const int64_t *v, int n) {
    put_s(b, "(");
    for (int i = 0; i < n; i++) p_int(b, v[i]);
    put_s(b, "t");
}

static void pickle(buf *b, const torch_zip_tensor *t, int n) {
    put(b, "\x80\x02}(", 4); /* PROTO 2, EMPTY_DICT, MARK */
    for (int i = 0; i < n; i++) {
        int share = t[i].same_storage_as, owner = share > 0   ? share - 1
                                                  : share < 0 ? -share - 1
                                                              : i;
        char key[32];
        snprintf(key, sizeof key, "%d", owner);
        p_str(b, t[i].name);
        put_s(b, "ctorch._utils\n_rebuild_tensor_v2\n(");
        if (share > 0) { /* LONG_BINGET: the storage memoised with the owner */
            put_s(b, "j");
            put_le(b, (uint64_t)owner, 4);
        } else {
            /* persistent id ('storage', <type>, key, 'cpu', numel) */
            put_s(b, "(");
            p_str(b, "storage");
            put_s(b, t[i].f16 ? "ctorch\nHalfStorage\n" : "ctorch\nFloatStorage\n");
            p_str(b, key);
            p_str(b, "cpu");
            p_int(b, t[i].storage_numel);
            put_s(b, "tQ"); /* TUPLE, BINPERSID */
            if (!share) {   /* LONG_BINPUT, as torch.save memoises each storage */
                put_s(b, "r");
                put_le(b, (uint64_t)i, 4);
            }
        }
        p_int(b, t[i].offset);
        p_tuple(b, t[i].shape, t[i].ndim);
        p_tuple(b, t[i].stride, t[i].ndim);
        put(b, "\x89", 1);                         /* NEWFALSE: requires_grad */
        put_s(b, "ccollections\nOrderedDict\n)R"); /* backward hooks */
        put_s(b, "tR");                            /* TUPLE, REDUCE */
    }
    put_s(b, "u."); /* SETITEMS, STOP */
}

/* ------------------------------------------------------------ zip (stored) */

typedef struct entry {
    char name[64];
    uint32_t crc, size, offset;
} entry;

static void zip_add(buf *z, entry *en, const char *name, const void *d, size_t n) {
    snprintf(en->name, sizeof en->name, "%s", name);
    en->crc = (uint32_t)crc32(0, d, (uInt)n);
    en->size = (uint32_t)n;
    en->offset = (uint32_t)z->n;
    put_le(z, 0x04034b50, 4); /* local file header */
    put_le(z, 20, 2);         /* version needed */
    put_le(z, 0, 2);          /* flags */
    put_le(z, 0, 2);          /* stored */
    put_le(z, 0, 4);          /* time, date */
    put_le(z, en->crc, 4);
    put_le(z, n, 4);
    put_le(z, n, 4);
    put_le(z, strlen(name), 2);
    put_le(z, 0, 2); /* extra length */
    put_s(z, name);
    put(z, d, n);
}

static void zip_finish(buf *z, const entry *en, int n) {
    size_t cd = z->n;
    for (int i = 0; i < n; i++) {
        put_le(z, 0x02014b50, 4); /* central directory header */
        put_le(z, 20, 2);         /* made by */
        put_le(z, 20, 2);         /* needed */
        put_le(z, 0, 2);          /* flags */
        put_le(z, 0, 2);          /* stored */
        put_le(z, 0, 4);          /* time, date */
        put_le(z, en[i].crc, 4);
        put_le(z, en[i].size, 4);
        put_le(z, en[i].size, 4);
        put_le(z, strlen(en[i].name), 2);
        put_le(z, 0, 2); /* extra */
        put_le(z, 0, 2); /* comment */
        put_le(z, 0, 2); /* disk */
        put_le(z, 0, 2); /* internal attributes */
        put_le(z, 0, 4); /* external attributes */
        put_le(z, en[i].offset, 4);
        put_s(z, en[i].name);
    }
    size_t cd_len = z->n - cd;
    put_le(z, 0x06054b50, 4); /* end of central directory */
    put_le(z, 0, 4);          /* disk numbers */
    put_le(z, (uint64_t)n, 2);
    put_le(z, (uint64_t)n, 2);
    put_le(z, cd_len, 4);
    put_le(z, cd, 4);
    put_le(z, 0, 2); /* comment */
}

int torch_zip_write(const char *path, const torch_zip_tensor *t, int n, cs_error *e) {
    buf pk = {0}, z = {0};
    entry *en = calloc((size_t)n + 2, sizeof *en);
    if (!en) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    pickle(&pk, t, n);
    zip_add(&z, &en[0], "archive/data.pkl", pk.p, pk.n);
    int ne = 1;
    for (int i = 0; i < n; i++) {
        if (t[i].same_storage_as) continue;
        char name[64];
        snprintf(name, sizeof name, "archive/data/%d", i);
        zip_add(&z, &en[ne++], name, t[i].data, t[i].data_bytes);
    }
    zip_add(&z, &en[ne++], "archive/version", "3\n", 2);
    zip_finish(&z, en, ne);
    int rc = pk.oom || z.oom ? cs_fail(e, CLIPSCORE_ENOMEM, "out of memory")
                             : cs_write_file_atomic(path, z.p, z.n, e);
    free(pk.p);
    free(z.p);
    free(en);
    return rc;
}
