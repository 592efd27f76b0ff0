/* safetensors.c - reads safetensors files into validated, zero-copy tensor
 * views, and writes small ones (for tests and tools).
 *
 * Covered: the whole format as the reference implementation reads it: the
 * length prefix, the JSON header (UTF-8, strict JSON, optional string-valued
 * "__metadata__"), the ten dtypes clipscore uses, shapes, and data offsets
 * that must tile the data buffer exactly (no overlap, no hole, no tail).
 * Left out: dtypes the format knows but clipscore does not use (U16, U32,
 * U64, F8_*: reported as EUNSUPPORTED), exposing the metadata values (they
 * are validated, then dropped), big-endian hosts (data is handed out as
 * stored, little-endian), and files truncated by another process while
 * mapped (that raises SIGBUS, as with any mmap reader).
 *
 * Tensor data is NOT aligned: offsets are byte offsets chosen by the writer,
 * so consumers must memcpy or use unaligned-safe reads. */
#define _DEFAULT_SOURCE
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's cap; real headers are tens of kilobytes. */
#define ST_MAX_HEADER 100000000u
/* Largest integer a double (cJSON's number type) holds exactly. */
#define ST_MAX_EXACT ((uint64_t)1 << 53)

/* ---- message helpers ---------------------------------------------------- */

/* Names come from untrusted files: keep messages one line and bounded. */
static const char *shown(char *buf, size_t cap, const char *s, size_t len) {
    size_t limit = cap - 4, i = 0;
    for (; i < len && i < limit; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (i < len) memcpy(buf + i, "...", 3), i += 3;
    buf[i] = '\0';
    return buf;
}

#define SHOWN_CAP 128
#define SHOW(buf, s) shown(buf, sizeof buf, (s), strlen(s))

static void format_shape(char *buf, size_t cap, const cs_tensor *t) {
    size_t o = 0;
    o += (size_t)snprintf(buf, cap, "%s [", cs_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", t->shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

/* What a JSON value is, for "expected X, got Y" messages. */
static void describe(char *buf, size_t cap, const cJSON *v) {
    if (!v)
        snprintf(buf, cap, "nothing");
    else if (cJSON_IsNumber(v))
        snprintf(buf, cap, "%.17g", v->valuedouble);
    else if (cJSON_IsString(v))
        snprintf(buf, cap, "a string");
    else if (cJSON_IsArray(v))
        snprintf(buf, cap, "an array");
    else if (cJSON_IsObject(v))
        snprintf(buf, cap, "an object");
    else if (cJSON_IsBool(v))
        snprintf(buf, cap, "a boolean");
    else
        snprintf(buf, cap, "null");
}

/* ---- raw header checks -------------------------------------------------- */

/* Index of the first byte that is not valid UTF-8 (overlong forms,
 * surrogates and code points past U+10FFFF included), or n. */
static size_t utf8_invalid_at(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0)
            len = 2, cp = c & 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0)
            len = 3, cp = c & 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0)
            len = 4, cp = c & 0x07, min = 0x10000;
        else
            return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
        i += len;
    }
    return n;
}

static int is_json_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int span_is(const char *s, size_t n, const char *lit) {
    return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

/* cJSON accepts a few things JSON does not (control characters as
 * whitespace or inside strings, leading zeros) and cannot tell 4 from 4.0
 * or 4e0. This pass walks the raw text (already accepted by cJSON, but it
 * stays in bounds on anything) and knows just enough of the structure to
 * name the tensor whose shape or offsets are not plain integers. */
static int scan_header(const char *label, const char *h, size_t n, cs_error *e) {
    char a[SHOWN_CAP];
    int depth = 0, expect_key = 0;
    unsigned char is_obj[4] = {0};     /* container kind at depth 1..3 */
    const char *key[3] = {"", "", ""}; /* latest key at depth 1 and 2 */
    size_t key_len[3] = {0, 0, 0};
    size_t i = 0;
    while (i < n) {
        char c = h[i];
        if (c == '{' || c == '[') {
            depth++;
            if (depth >= 1 && depth <= 3) is_obj[depth] = c == '{';
            expect_key = c == '{';
            i++;
        } else if (c == '}' || c == ']') {
            depth--;
            expect_key = 0;
            i++;
        } else if (c == ',') {
            expect_key = depth >= 1 && depth <= 3 && is_obj[depth];
            i++;
        } else if (c == ':' || is_json_space(c)) {
            i++;
        } else if (c == '"') {
            size_t start = ++i;
            while (i < n && h[i] != '"') {
                if ((unsigned char)h[i] < 0x20)
                    return cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: header is not valid JSON: control character 0x%02x "
                                   "inside a string at byte %zu",
                                   label, (unsigned char)h[i], i);
                i += h[i] == '\\' ? 2 : 1;
            }
            if (i > n) i = n;
            if (expect_key && (depth == 1 || depth == 2)) {
                key[depth] = h + start;
                key_len[depth] = i - start;
            }
            expect_key = 0;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i;
            int plain = c != '-';
            while (i < n && (strchr("+-.eE", h[i]) || (h[i] >= '0' && h[i] <= '9'))) {
                if (h[i] < '0' || h[i] > '9') plain = 0;
                i++;
            }
            size_t len = i - start;
            size_t lead = c == '-' ? start + 1 : start;
            if (lead + 1 < i && h[lead] == '0' && h[lead + 1] >= '0' && h[lead + 1] <= '9')
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: header is not valid JSON: number with a leading zero at "
                               "byte %zu",
                               label, start);
            if (!plain && depth == 3 && !is_obj[3] && is_obj[2] &&
                !span_is(key[1], key_len[1], "__metadata__") &&
                (span_is(key[2], key_len[2], "shape") ||
                 span_is(key[2], key_len[2], "data_offsets")))
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: tensor '%s': %.*s holds %.*s, expected a non-negative integer",
                               label, shown(a, sizeof a, key[1], key_len[1]), (int)key_len[2],
                               key[2], (int)(len > 40 ? 40 : len), h + start);
        } else if (c >= 'a' && c <= 'z') {
            while (i < n && h[i] >= 'a' && h[i] <= 'z') i++; /* true, false, null */
        } else {
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: header is not valid JSON: unexpected byte 0x%02x at byte %zu",
                           label, (unsigned char)c, i);
        }
    }
    return 0;
}

/* ---- tensor entries ----------------------------------------------------- */

static const char *const known_dtypes[CS_DTYPE_COUNT] = {
    [CS_DTYPE_F32] = "F32",   [CS_DTYPE_F16] = "F16", [CS_DTYPE_BF16] = "BF16",
    [CS_DTYPE_F64] = "F64",   [CS_DTYPE_I64] = "I64", [CS_DTYPE_I32] = "I32",
    [CS_DTYPE_I16] = "I16",   [CS_DTYPE_I8] = "I8",   [CS_DTYPE_U8] = "U8",
    [CS_DTYPE_BOOL] = "BOOL",
};

/* Valid in the format, but clipscore has no use for them. */
static const char *const other_dtypes[] = {"U16",     "U32", "U64",     "F8_E4M3", "F8_E5M2",
                                           "F8_E8M0", "F4",  "F6_E2M3", "F6_E3M2", "C64"};

/* A JSON number that is a non-negative integer a double holds exactly. */
static int get_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > (double)ST_MAX_EXACT) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* The single member `field` of a tensor entry; duplicates are an error,
 * as in the reference reader. */
static int get_field(const char *label, const char *name, const cJSON *entry, const char *field,
                     const cJSON **out, cs_error *e) {
    char a[SHOWN_CAP];
    *out = NULL;
    for (const cJSON *c = entry->child; c; c = c->next) {
        if (!c->string || strcmp(c->string, field) != 0) continue;
        if (*out)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': \"%s\" appears twice", label,
                           SHOW(a, name), field);
        *out = c;
    }
    if (!*out)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': missing \"%s\"", label,
                       SHOW(a, name), field);
    return 0;
}

/* Validates one header entry and fills `t` (name aside); `*begin` is the
 * offset of its data in the buffer of `data_len` bytes. */
static int parse_entry(const char *label, const char *name, const cJSON *entry, uint64_t data_len,
                       cs_tensor *t, uint64_t *begin, cs_error *e) {
    char a[SHOWN_CAP], b[64], sh[256];
    const cJSON *dtype, *shape, *offsets;
    int rc;
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(entry)) {
        describe(b, sizeof b, entry);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': expected an object, got %s", label,
                       SHOW(a, name), b);
    }
    if ((rc = get_field(label, name, entry, "dtype", &dtype, e)) ||
        (rc = get_field(label, name, entry, "shape", &shape, e)) ||
        (rc = get_field(label, name, entry, "data_offsets", &offsets, e)))
        return rc;

    if (!cJSON_IsString(dtype)) {
        describe(b, sizeof b, dtype);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': dtype is %s, expected a string",
                       label, SHOW(a, name), b);
    }
    int found = -1;
    for (int k = 0; k < CS_DTYPE_COUNT; k++)
        if (strcmp(dtype->valuestring, known_dtypes[k]) == 0) found = k;
    if (found < 0) {
        char d[SHOWN_CAP];
        for (size_t k = 0; k < sizeof other_dtypes / sizeof *other_dtypes; k++)
            if (strcmp(dtype->valuestring, other_dtypes[k]) == 0)
                return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                               "%s: tensor '%s': dtype %s is not supported by clipscore", label,
                               SHOW(a, name), other_dtypes[k]);
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': unknown dtype '%s' (expected F64, F32, F16, BF16, I64, "
                       "I32, I16, I8, U8 or BOOL)",
                       label, SHOW(a, name), SHOW(d, dtype->valuestring));
    }
    t->dtype = (cs_dtype)found;

    if (!cJSON_IsArray(shape)) {
        describe(b, sizeof b, shape);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': shape is %s, expected an array",
                       label, SHOW(a, name), b);
    }
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > CS_MAX_DIMS)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': shape has %d dimensions, at most %d are supported", label,
                       SHOW(a, name), ndim, CS_MAX_DIMS);
    /* Every stride must fit int64, so the product of the non-zero
     * dimensions must too, even when another dimension is 0. */
    int64_t nonzero = 1;
    int has_zero = 0;
    const cJSON *d = shape->child;
    for (int k = 0; k < ndim; k++, d = d->next) {
        uint64_t v;
        if (!get_uint(d, &v)) {
            describe(b, sizeof b, d);
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: tensor '%s': shape[%d] is %s, expected a non-negative integer",
                           label, SHOW(a, name), k, b);
        }
        t->shape[k] = (int64_t)v;
        if (v == 0)
            has_zero = 1;
        else if (nonzero > INT64_MAX / (int64_t)v)
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: tensor '%s': shape has more elements than fit in 64 bits", label,
                           SHOW(a, name));
        else
            nonzero *= (int64_t)v;
    }
    t->ndim = ndim;
    uint64_t numel = has_zero ? 0 : (uint64_t)nonzero;
    uint64_t esize = cs_dtype_size(t->dtype);
    format_shape(sh, sizeof sh, t);
    if (numel > UINT64_MAX / esize || numel * esize > SIZE_MAX)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s': %s is too large", label,
                       SHOW(a, name), sh);
    uint64_t need = numel * esize;

    uint64_t off[2];
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2) {
        describe(b, sizeof b, offsets);
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': data_offsets must be [begin, end], got %s%s", label,
                       SHOW(a, name), b, cJSON_IsArray(offsets) ? " of a size other than 2" : "");
    }
    for (int k = 0; k < 2; k++) {
        const cJSON *v = cJSON_GetArrayItem(offsets, k);
        if (!get_uint(v, &off[k])) {
            describe(b, sizeof b, v);
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: tensor '%s': data_offsets[%d] is %s, expected a non-negative "
                           "integer",
                           label, SHOW(a, name), k, b);
        }
    }
    if (off[0] > off[1])
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed",
                       label, SHOW(a, name), off[0], off[1]);
    if (off[1] > data_len)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] go beyond the data buffer (%" PRIu64 " bytes)",
                       label, SHOW(a, name), off[0], off[1], data_len);
    if (off[1] - off[0] != need)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                       " bytes but %s needs %" PRIu64,
                       label, SHOW(a, name), off[0], off[1], off[1] - off[0], sh, need);
    t->nbytes = (size_t)need;
    *begin = off[0];
    return 0;
}

static int check_metadata(const char *label, const cJSON *meta, cs_error *e) {
    char a[SHOWN_CAP], b[64];
    if (cJSON_IsNull(meta)) return 0; /* the reference reads null as absent */
    if (!cJSON_IsObject(meta)) {
        describe(b, sizeof b, meta);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: __metadata__ is %s, expected an object", label,
                       b);
    }
    for (const cJSON *c = meta->child; c; c = c->next) {
        if (!cJSON_IsString(c)) {
            describe(b, sizeof b, c);
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: __metadata__ value of '%s' is %s, expected a string", label,
                           SHOW(a, c->string ? c->string : ""), b);
        }
    }
    return 0;
}

static int by_name(const void *x, const void *y) {
    return strcmp(((const cs_tensor *)x)->name, ((const cs_tensor *)y)->name);
}

static int by_offset(const void *x, const void *y) {
    const cs_tensor *a = *(const cs_tensor *const *)x, *b = *(const cs_tensor *const *)y;
    if (a->data != b->data) return (const char *)a->data < (const char *)b->data ? -1 : 1;
    return a->nbytes < b->nbytes ? -1 : a->nbytes > b->nbytes;
}

/* The reference reader requires the tensors to tile the data buffer: sorted
 * by offset, each begins where the previous one ended, the last one ends at
 * the end of the file. */
static int check_tiling(const char *label, cs_tensor *t, int n, const unsigned char *data,
                        uint64_t data_len, cs_error *e) {
    char a[SHOWN_CAP], b[SHOWN_CAP];
    cs_tensor **order = cs_malloc((size_t)n, sizeof *order, e);
    if (!order) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < n; i++) order[i] = &t[i];
    qsort(order, (size_t)n, sizeof *order, by_offset);
    uint64_t pos = 0;
    const cs_tensor *prev = NULL;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        uint64_t begin = (uint64_t)((const unsigned char *)order[i]->data - data);
        uint64_t end = begin + order[i]->nbytes;
        if (begin < pos) {
            uint64_t pb = (uint64_t)((const unsigned char *)prev->data - data);
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64
                         ", %" PRIu64 "] overlap",
                         label, SHOW(a, prev->name), pb, pos, SHOW(b, order[i]->name), begin, end);
        } else if (begin > pos) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: bytes [%" PRIu64 ", %" PRIu64
                         ") of the data buffer belong to no tensor (before '%s')",
                         label, pos, begin, SHOW(a, order[i]->name));
        }
        pos = end;
        prev = order[i];
    }
    if (!rc && pos != data_len)
        rc = cs_fail(e, CLIPSCORE_EFORMAT,
                     "%s: the tensors end at byte %" PRIu64
                     " of the data buffer but it holds %" PRIu64 " bytes",
                     label, pos, data_len);
    free(order);
    return rc;
}

/* Validates st->map (st->map_len bytes) and builds the views. On failure
 * the caller releases st with cs_safetensors_close(). */
static int index_file(cs_safetensors *st, const char *label, cs_error *e) {
    const unsigned char *base = st->map;
    size_t len = st->map_len;
    char a[SHOWN_CAP];
    if (len < 8)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: %zu bytes is too short for a safetensors file (at least 8)", label,
                       len);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = hlen << 8 | base[k];
    if (hlen > len - 8)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: header length %" PRIu64 " goes beyond the end of the file (%zu bytes)",
                       label, hlen, len);
    if (hlen > ST_MAX_HEADER)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: header length %" PRIu64 " is over the limit of %u bytes", label, hlen,
                       ST_MAX_HEADER);
    const char *h = (const char *)base + 8;
    if (hlen == 0 || h[0] != '{')
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: the header must be a JSON object and start with '{'", label);
    const void *nul = memchr(h, 0, hlen);
    if (nul)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: header has a NUL byte at byte %td", label,
                       (const char *)nul - h);
    size_t bad = utf8_invalid_at((const unsigned char *)h, hlen);
    if (bad < hlen)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: header is not valid UTF-8 at byte %zu", label,
                       bad);

    /* cJSON reads a terminated copy: some cJSON releases read past the end
     * of unterminated input. */
    char *text = cs_malloc(hlen + 1, 1, e);
    if (!text) return CLIPSCORE_ENOMEM;
    memcpy(text, h, hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    int rc = 0;
    if (!root) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: header is not valid JSON (error near byte %td)",
                     label, end ? end - text : (ptrdiff_t)0);
        goto done;
    }
    for (const char *p = end; p < text + hlen; p++) {
        if (!is_json_space(*p)) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: header has trailing bytes after the JSON object (byte %td)", label,
                         p - text);
            goto done;
        }
    }
    if ((rc = scan_header(label, text, hlen, e))) goto done;

    /* Count the tensors and size the name storage. */
    size_t n = 0, names_len = 0;
    int metas = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!c->string) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: header has a member without a name", label);
            goto done;
        }
        if (strcmp(c->string, "__metadata__") == 0) {
            if (++metas > 1) {
                rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: __metadata__ appears twice", label);
                goto done;
            }
            if ((rc = check_metadata(label, c, e))) goto done;
            continue;
        }
        n++;
        names_len += strlen(c->string) + 1;
    }
    /* Each entry takes dozens of header bytes, so n is far below INT_MAX. */
    st->tensors = cs_calloc(n, sizeof *st->tensors, e);
    st->names = cs_malloc(names_len ? names_len : 1, 1, e);
    if (!st->tensors || !st->names) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }

    const unsigned char *data = base + 8 + hlen;
    uint64_t data_len = len - 8 - hlen;
    size_t at = 0;
    int i = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "__metadata__") == 0) continue;
        uint64_t begin = 0;
        if ((rc = parse_entry(label, c->string, c, data_len, &st->tensors[i], &begin, e)))
            goto done;
        size_t nl = strlen(c->string) + 1;
        memcpy(st->names + at, c->string, nl);
        st->tensors[i].name = st->names + at;
        st->tensors[i].data = data + begin;
        at += nl;
        i++;
    }
    st->n = i;

    qsort(st->tensors, (size_t)st->n, sizeof *st->tensors, by_name);
    for (int k = 1; k < st->n; k++) {
        if (strcmp(st->tensors[k - 1].name, st->tensors[k].name) == 0) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: tensor '%s' appears twice in the header", label,
                         SHOW(a, st->tensors[k].name));
            goto done;
        }
    }
    rc = check_tiling(label, st->tensors, st->n, data, data_len, e);

done:
    cJSON_Delete(root);
    free(text);
    return rc;
}

/* ---- public API --------------------------------------------------------- */

int cs_safetensors_open(const char *path, cs_safetensors *st, cs_error *e) {
    memset(st, 0, sizeof *st);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
        close(fd);
        return rc;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return cs_fail(e, CLIPSCORE_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: too large to map", path);
    }
    st->map_len = (size_t)sb.st_size;
    if (st->map_len >= 8) { /* mmap refuses empty files; short ones fail below */
        void *m = mmap(NULL, st->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int rc = cs_fail(e, errno == ENOMEM ? CLIPSCORE_ENOMEM : CLIPSCORE_EIO,
                             "%s: cannot map file: %s", path, strerror(errno));
            close(fd);
            memset(st, 0, sizeof *st);
            return rc;
        }
        st->map = m;
        st->mapped = 1;
    }
    close(fd); /* the mapping stays valid */
    int rc = index_file(st, path, e);
    if (rc) cs_safetensors_close(st);
    return rc;
}

int cs_safetensors_parse(const void *buf, size_t len, const char *label, cs_safetensors *st,
                         cs_error *e) {
    memset(st, 0, sizeof *st);
    if (!label) label = "(buffer)";
    if (!buf && len) return cs_fail(e, CLIPSCORE_EARG, "%s: no buffer", label);
    st->map = cs_malloc(len ? len : 1, 1, e);
    if (!st->map) return CLIPSCORE_ENOMEM;
    if (len) memcpy(st->map, buf, len);
    st->map_len = len;
    int rc = index_file(st, label, e);
    if (rc) cs_safetensors_close(st);
    return rc;
}

const cs_tensor *cs_safetensors_find(const cs_safetensors *st, const char *name) {
    if (!st || !st->tensors || !name) return NULL;
    cs_tensor key = {.name = name};
    return bsearch(&key, st->tensors, (size_t)st->n, sizeof *st->tensors, by_name);
}

void cs_safetensors_close(cs_safetensors *st) {
    if (!st) return;
    if (st->map) {
        if (st->mapped)
            munmap(st->map, st->map_len);
        else
            free(st->map);
    }
    free(st->tensors);
    free(st->names);
    memset(st, 0, sizeof *st);
}

/* ---- writer ------------------------------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_printf(strbuf *b, const char *fmt, ...) CS_PRINTF(2, 3);
static void sb_printf(strbuf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof tmp)
        sb_add(b, tmp, (size_t)n);
    else
        b->oom = 1; /* only short numbers are formatted here */
}

static void sb_json_string(strbuf *b, const char *s) {
    sb_add(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static int by_name_ptr(const void *x, const void *y) {
    return strcmp((*(const cs_tensor *const *)x)->name, (*(const cs_tensor *const *)y)->name);
}

static int check_write_input(const char *path, const cs_tensor *tensors, int n, cs_error *e) {
    char a[SHOWN_CAP];
    if (n < 0 || (n > 0 && !tensors))
        return cs_fail(e, CLIPSCORE_EARG, "%s: invalid tensor list", path);
    for (int i = 0; i < n; i++) {
        const cs_tensor *t = &tensors[i];
        if (!t->name) return cs_fail(e, CLIPSCORE_EARG, "%s: tensor %d has no name", path, i);
        if (strcmp(t->name, "__metadata__") == 0 ||
            utf8_invalid_at((const unsigned char *)t->name, strlen(t->name)) < strlen(t->name))
            return cs_fail(e, CLIPSCORE_EARG, "%s: tensor name '%s' cannot be written", path,
                           SHOW(a, t->name));
        if (cs_dtype_size(t->dtype) == 0 || t->ndim < 0 || t->ndim > CS_MAX_DIMS)
            return cs_fail(e, CLIPSCORE_EARG, "%s: tensor '%s': bad dtype or rank", path,
                           SHOW(a, t->name));
        uint64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            if (t->shape[k] < 0 || (uint64_t)t->shape[k] > ST_MAX_EXACT)
                return cs_fail(e, CLIPSCORE_EARG, "%s: tensor '%s': bad shape[%d] %" PRId64, path,
                               SHOW(a, t->name), k, t->shape[k]);
            uint64_t d = (uint64_t)t->shape[k];
            numel = d && numel > UINT64_MAX / d ? UINT64_MAX : numel * d;
        }
        uint64_t es = cs_dtype_size(t->dtype);
        if (numel > UINT64_MAX / es || numel * es != (uint64_t)t->nbytes)
            return cs_fail(e, CLIPSCORE_EARG,
                           "%s: tensor '%s': nbytes %zu does not match its dtype and shape", path,
                           SHOW(a, t->name), t->nbytes);
        if (t->nbytes && !t->data)
            return cs_fail(e, CLIPSCORE_EARG, "%s: tensor '%s' has no data", path,
                           SHOW(a, t->name));
    }
    if (n < 2) return 0;
    const cs_tensor **order = cs_malloc((size_t)n, sizeof *order, e);
    if (!order) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < n; i++) order[i] = &tensors[i];
    qsort(order, (size_t)n, sizeof *order, by_name_ptr);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            rc = cs_fail(e, CLIPSCORE_EARG, "%s: tensor '%s' is listed twice", path,
                         SHOW(a, order[i]->name));
    free(order);
    return rc;
}

int cs_safetensors_write(const char *path, const cs_tensor *tensors, int n, cs_error *e) {
    int rc = check_write_input(path, tensors, n, e);
    if (rc) return rc;

    strbuf h = {0};
    uint64_t off = 0;
    sb_add(&h, "{", 1);
    for (int i = 0; i < n; i++) {
        const cs_tensor *t = &tensors[i];
        if (i) sb_add(&h, ",", 1);
        sb_json_string(&h, t->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", cs_dtype_name(t->dtype));
        for (int k = 0; k < t->ndim; k++) sb_printf(&h, "%s%" PRId64, k ? "," : "", t->shape[k]);
        sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + t->nbytes);
        off += t->nbytes;
    }
    sb_add(&h, "}", 1);
    /* Pad with spaces so the data buffer starts 8-byte aligned in the file. */
    while (!h.oom && (8 + h.len) % 8) sb_add(&h, " ", 1);
    if (h.oom) {
        free(h.p);
        return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory building the header", path);
    }

    unsigned char prefix[8];
    for (int k = 0; k < 8; k++) prefix[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    cs_atomic_file f;
    rc = cs_atomic_open(&f, path, e);
    if (rc) {
        free(h.p);
        return rc;
    }
    int ok = fwrite(prefix, 1, 8, f.fp) == 8 && fwrite(h.p, 1, h.len, f.fp) == h.len;
    for (int i = 0; ok && i < n; i++)
        if (tensors[i].nbytes)
            ok = fwrite(tensors[i].data, 1, tensors[i].nbytes, f.fp) == tensors[i].nbytes;
    free(h.p);
    if (!ok) {
        rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", path, strerror(errno));
        cs_atomic_abort(&f);
        return rc;
    }
    return cs_atomic_commit(&f, e);
}
