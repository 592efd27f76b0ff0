/* test_safetensors.c - the safetensors reader and writer: round trips of
 * every dtype clipscore uses, each class of corrupt header, a deterministic
 * mutation loop over a small valid file, and (when the conformance fixtures
 * are present) the two real model files. Leaves out: files changed while
 * mapped, and headers near the 100 MB cap (too slow to build here). */
#define _DEFAULT_SOURCE
#include "safetensors.h"
#include "test.h"

#include <stdint.h>
#include <unistd.h>

static const char *tmp;

/* ---- building files ----------------------------------------------------- */

/* 8-byte LE length, then `header`, then `data_len` bytes 0, 1, 2, ... */
static unsigned char *build(const char *header, size_t data_len, size_t *len) {
    size_t hl = strlen(header);
    *len = 8 + hl + data_len;
    unsigned char *b = malloc(*len ? *len : 1);
    if (!b) exit(2);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < data_len; i++) b[8 + hl + i] = (unsigned char)i;
    return b;
}

static void write_bytes(const char *path, const void *b, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (len && fwrite(b, 1, len, fp) != len) || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
}

static int zeroed(const cs_safetensors *st) {
    return !st->map && !st->map_len && !st->mapped && !st->n && !st->tensors && !st->names;
}

/* Both entry points must reject `b` with `code`, the label (or path) and
 * `needle` in the message, and leave the struct zeroed. */
static void expect_bytes(const char *what, const unsigned char *b, size_t len, int code,
                         const char *needle) {
    cs_safetensors st;
    cs_error e = {0};
    int rc = cs_safetensors_parse(b, len, "bad.safetensors", &st, &e);
    CHECK_MSG(rc == code && e.code == code, "%s: parse rc %d, want %d (%s)", what, rc, code, e.msg);
    CHECK_MSG(strstr(e.msg, "bad.safetensors") != NULL, "%s: no label in '%s'", what, e.msg);
    CHECK_MSG(!needle || strstr(e.msg, needle), "%s: '%s' not in '%s'", what, needle, e.msg);
    CHECK_MSG(strchr(e.msg, '\n') == NULL, "%s: multi-line message", what);
    CHECK(zeroed(&st));
    cs_safetensors_close(&st);

    char path[600];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp);
    write_bytes(path, b, len);
    cs_error_clear(&e);
    rc = cs_safetensors_open(path, &st, &e);
    CHECK_MSG(rc == code, "%s: open rc %d, want %d (%s)", what, rc, code, e.msg);
    CHECK_MSG(strstr(e.msg, path) != NULL, "%s: no path in '%s'", what, e.msg);
    CHECK(zeroed(&st));
    cs_safetensors_close(&st);
}

static void expect_bad(const char *what, const char *header, size_t data_len, const char *needle) {
    size_t len;
    unsigned char *b = build(header, data_len, &len);
    expect_bytes(what, b, len, CLIPSCORE_EFORMAT, needle);
    free(b);
}

/* ---- valid files -------------------------------------------------------- */

static uint16_t f16_bits(float f) { /* exact for the small values used here */
    if (f == 0) return 0;
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000, exp = ((u >> 23) & 0xff) - 127 + 15,
             man = (u >> 13) & 0x3ff;
    return (uint16_t)(sign | exp << 10 | man);
}

static void test_round_trip(void) {
    float f32[12];
    uint16_t f16[6], bf16[5];
    int64_t i64[3] = {-1, 0, INT64_MAX};
    float scalar = 2.5f;
    for (int i = 0; i < 12; i++) f32[i] = (float)i * 0.5f - 3;
    for (int i = 0; i < 6; i++) f16[i] = f16_bits((float)i - 2.5f);
    for (int i = 0; i < 5; i++) {
        float f = (float)i * 1.25f;
        uint32_t u;
        memcpy(&u, &f, 4);
        bf16[i] = (uint16_t)(u >> 16);
    }
    uint8_t u8[3] = {7, 8, 9}; /* 3 bytes: the next tensor starts unaligned */
    cs_tensor in[] = {
        {.name = "u8", .dtype = CS_DTYPE_U8, .ndim = 1, .shape = {3}, .data = u8, .nbytes = 3},
        {.name = "w.f32",
         .dtype = CS_DTYPE_F32,
         .ndim = 2,
         .shape = {3, 4},
         .data = f32,
         .nbytes = sizeof f32},
        {.name = "h.f16",
         .dtype = CS_DTYPE_F16,
         .ndim = 3,
         .shape = {1, 2, 3},
         .data = f16,
         .nbytes = sizeof f16},
        {.name = "b.bf16",
         .dtype = CS_DTYPE_BF16,
         .ndim = 1,
         .shape = {5},
         .data = bf16,
         .nbytes = sizeof bf16},
        {.name = "ids",
         .dtype = CS_DTYPE_I64,
         .ndim = 2,
         .shape = {1, 3},
         .data = i64,
         .nbytes = sizeof i64},
        {.name = "logit_scale", .dtype = CS_DTYPE_F32, .ndim = 0, .data = &scalar, .nbytes = 4},
        {.name = "empty", .dtype = CS_DTYPE_F32, .ndim = 2, .shape = {0, 7}, .nbytes = 0},
        {.name = "quote\"and\\slash\n\xc3\xa9",
         .dtype = CS_DTYPE_BOOL,
         .ndim = 1,
         .shape = {1},
         .data = u8,
         .nbytes = 1},
    };
    int n = (int)(sizeof in / sizeof *in);
    char path[600];
    snprintf(path, sizeof path, "%s/ok.safetensors", tmp);
    cs_error e = {0};
    int rc = cs_safetensors_write(path, in, n, &e);
    CHECK_MSG(rc == 0, "write: %s", e.msg);

    char *raw = NULL;
    size_t raw_len = 0;
    CHECK(cs_read_file(path, 0, &raw, &raw_len, &e) == 0);
    uint64_t hl = 0;
    for (int k = 7; raw && raw_len >= 8 && k >= 0; k--) hl = hl << 8 | (unsigned char)raw[k];
    CHECK_EQ_INT((8 + hl) % 8, 0);

    cs_safetensors st;
    rc = cs_safetensors_open(path, &st, &e);
    CHECK_MSG(rc == 0, "open: %s", e.msg);
    CHECK_EQ_INT(st.n, n);
    CHECK(st.mapped == 1);
    for (int i = 0; i < n && rc == 0; i++) {
        const cs_tensor *t = cs_safetensors_find(&st, in[i].name);
        CHECK_MSG(t != NULL, "missing %s", in[i].name);
        if (!t) continue;
        CHECK_EQ_STR(t->name, in[i].name);
        CHECK_EQ_INT(t->dtype, in[i].dtype);
        CHECK_EQ_INT(t->ndim, in[i].ndim);
        for (int k = 0; k < in[i].ndim; k++) CHECK_EQ_INT(t->shape[k], in[i].shape[k]);
        CHECK_EQ_INT(t->nbytes, in[i].nbytes);
        CHECK(t->nbytes == 0 || memcmp(t->data, in[i].data, t->nbytes) == 0);
        CHECK((const char *)t->data >= (const char *)st.map &&
              (const char *)t->data + t->nbytes <= (const char *)st.map + st.map_len);
    }
    /* Sorted by name, as documented. */
    for (int i = 1; i < st.n; i++) CHECK(strcmp(st.tensors[i - 1].name, st.tensors[i].name) < 0);
    CHECK(cs_safetensors_find(&st, "nope") == NULL);
    CHECK(cs_safetensors_find(&st, "") == NULL);
    CHECK(cs_safetensors_find(&st, NULL) == NULL);
    /* Unaligned data reads back through memcpy. */
    const cs_tensor *w = cs_safetensors_find(&st, "w.f32");
    if (w) {
        CHECK_EQ_INT(((uintptr_t)w->data - (uintptr_t)st.map) % 4, (8 + hl + 3) % 4);
        float v;
        memcpy(&v, (const char *)w->data + 5 * 4, 4);
        CHECK_NEAR(v, f32[5], 0);
    }
    const cs_tensor *s = cs_safetensors_find(&st, "logit_scale");
    if (s) CHECK_EQ_INT(cs_tensor_numel(s), 1);
    const cs_tensor *z = cs_safetensors_find(&st, "empty");
    if (z) CHECK_EQ_INT(cs_tensor_numel(z), 0);
    cs_safetensors_close(&st);
    CHECK(zeroed(&st));
    cs_safetensors_close(&st); /* twice is fine */

    /* The same bytes through the in-memory parser. */
    if (raw) {
        rc = cs_safetensors_parse(raw, raw_len, "mem", &st, &e);
        CHECK_MSG(rc == 0, "parse: %s", e.msg);
        CHECK_EQ_INT(st.n, n);
        CHECK(st.mapped == 0);
        const cs_tensor *t = cs_safetensors_find(&st, "ids");
        CHECK(t && t->data != (const void *)(raw + 8 + hl)); /* a copy, not the caller's */
        CHECK(t && memcmp(t->data, i64, sizeof i64) == 0);
        cs_safetensors_close(&st);

        /* A truncated copy fails with a message. */
        rc = cs_safetensors_parse(raw, raw_len - 1, "cut.safetensors", &st, &e);
        CHECK_EQ_INT(rc, CLIPSCORE_EFORMAT);
        CHECK(strstr(e.msg, "cut.safetensors") && strstr(e.msg, "beyond the data buffer"));
        expect_bytes("truncated copy", (const unsigned char *)raw, raw_len - 1, CLIPSCORE_EFORMAT,
                     NULL);
        expect_bytes("truncated header", (const unsigned char *)raw, 8 + hl / 2, CLIPSCORE_EFORMAT,
                     "beyond the end of the file");
    }
    free(raw);

    cs_safetensors zero;
    memset(&zero, 0, sizeof zero);
    cs_safetensors_close(&zero);
    CHECK(zeroed(&zero));
    CHECK(cs_safetensors_find(&zero, "u8") == NULL);
}

static void test_metadata_and_padding(void) {
    /* Metadata, extra entry fields (ignored, as by the reference), escaped
     * names, whitespace padding of every kind JSON allows. */
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"\\u00e9\"},"
                    "\"a\\u002eb\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8],"
                    "\"extra\":[1.5,{\"x\":null}]},"
                    "\"c\":{\"data_offsets\":[8,16],\"shape\":[1],\"dtype\":\"F64\"}}  \n\t ";
    size_t len;
    unsigned char *b = build(h, 16, &len);
    cs_safetensors st;
    cs_error e = {0};
    int rc = cs_safetensors_parse(b, len, "meta", &st, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    CHECK_EQ_INT(st.n, 2);
    const cs_tensor *t = cs_safetensors_find(&st, "a.b");
    CHECK(t && t->dtype == CS_DTYPE_I32 && t->nbytes == 8 && t->shape[0] == 2);
    CHECK(t && memcmp(t->data, b + 8 + strlen(h), 8) == 0);
    t = cs_safetensors_find(&st, "c");
    CHECK(t && t->dtype == CS_DTYPE_F64 && t->nbytes == 8);
    CHECK(t && ((const unsigned char *)t->data)[0] == 8);
    CHECK(cs_safetensors_find(&st, "__metadata__") == NULL);
    cs_safetensors_close(&st);
    free(b);

    /* Empty: no tensors, no data; null metadata reads as absent. */
    const char *empties[] = {"{}", "{\"__metadata__\":{}}", "{\"__metadata__\":null}   "};
    for (int i = 0; i < 3; i++) {
        b = build(empties[i], 0, &len);
        rc = cs_safetensors_parse(b, len, "empty", &st, &e);
        CHECK_MSG(rc == 0 && st.n == 0, "%s: %s", empties[i], e.msg);
        CHECK(cs_safetensors_find(&st, "x") == NULL);
        cs_safetensors_close(&st);
        free(b);
    }
}

/* ---- corrupt files ------------------------------------------------------ */

#define T1(fields) "{\"x.weight\":{" fields "}}"

static void test_corrupt(void) {
    /* Length prefix. */
    expect_bytes("zero bytes", (const unsigned char *)"", 0, CLIPSCORE_EFORMAT, "too short");
    expect_bytes("7 bytes", (const unsigned char *)"\x02\0\0\0\0\0\0", 7, CLIPSCORE_EFORMAT,
                 "too short");
    {
        size_t len;
        unsigned char *b = build("{}", 0, &len);
        b[0] = 3; /* one past the file */
        expect_bytes("length past end", b, len, CLIPSCORE_EFORMAT, "beyond the end of the file");
        memset(b, 0, 8);
        b[7] = 0x80; /* 2^63 */
        expect_bytes("length 2^63", b, len, CLIPSCORE_EFORMAT, "9223372036854775808");
        memset(b, 0xff, 8);
        expect_bytes("length 2^64-1", b, len, CLIPSCORE_EFORMAT, "beyond the end");
        free(b);
        unsigned char big[16] = {0};
        big[0] = 8;
        memcpy(big + 8, "{}      ", 8);
        CHECK(big[0] == 8); /* sanity of the next case's base: valid */
        cs_safetensors st;
        cs_error e = {0};
        CHECK(cs_safetensors_parse(big, 16, "x", &st, &e) == 0);
        cs_safetensors_close(&st);
    }
    expect_bad("empty header", "", 0, "start with '{'");
    /* Header over the 100 MB cap: the length is checked before any parsing,
     * so a file of 8 + 100000001 zero bytes is enough. */
    {
        size_t len = 8 + 100000001u;
        unsigned char *b = calloc(len, 1);
        if (!b) exit(2);
        uint64_t hl = 100000001u;
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)(hl >> (8 * k));
        cs_safetensors st;
        cs_error e = {0};
        int rc = cs_safetensors_parse(b, len, "huge.safetensors", &st, &e);
        CHECK_EQ_INT(rc, CLIPSCORE_EFORMAT);
        CHECK(strstr(e.msg, "over the limit") && strstr(e.msg, "huge.safetensors"));
        free(b);
    }

    /* JSON itself. */
    expect_bad("invalid JSON", "{\"x\":", 0, "not valid JSON");
    expect_bad("unterminated string", "{\"x", 0, "not valid JSON");
    expect_bad("array", "[1,2]", 0, "JSON object");
    expect_bad("string", "\"{}\"", 0, "JSON object");
    expect_bad("trailing garbage", "{} x", 0, "trailing bytes");
    expect_bad("two objects", "{}{}", 0, "trailing bytes");
    {
        size_t len;
        unsigned char *b = build("{}  ", 0, &len);
        b[8 + 2] = 0;
        expect_bytes("NUL padding", b, len, CLIPSCORE_EFORMAT, "NUL byte");
        free(b);
    }
    expect_bad("invalid UTF-8", "{\"x\xff\":{}}", 0, "UTF-8");
    expect_bad("overlong UTF-8", "{\"x\xc0\xaf\":{}}", 0, "UTF-8");
    expect_bad("surrogate UTF-8", "{\"\xed\xa0\x80\":{}}", 0, "UTF-8");
    expect_bad("control char in string", "{\"a\tb\":{}}", 0, "control character");
    expect_bad("control char as space", "{\x01}", 0, NULL);
    expect_bad("leading zero", T1("\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]"), 1,
               "leading zero");
    {
        /* Deep nesting: cJSON stops at its nesting limit instead of
         * exhausting the stack. */
        size_t depth = 100000;
        char *deep = malloc(2 * depth + 16);
        if (!deep) exit(2);
        strcpy(deep, "{\"a\":");
        size_t o = strlen(deep);
        memset(deep + o, '[', depth);
        memset(deep + o + depth, ']', depth);
        strcpy(deep + o + 2 * depth, "}");
        expect_bad("deep nesting", deep, 0, "not valid JSON");
        free(deep);
    }
    expect_bad("entry not object", "{\"x.weight\":[1]}", 0, "'x.weight': expected an object");

    /* dtype. */
    expect_bad("missing dtype", T1("\"shape\":[1],\"data_offsets\":[0,1]"), 1,
               "'x.weight': missing \"dtype\"");
    expect_bad("unknown dtype", T1("\"dtype\":\"Q7\",\"shape\":[1],\"data_offsets\":[0,1]"), 1,
               "'x.weight': unknown dtype 'Q7'");
    expect_bad("lowercase dtype", T1("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4,
               "unknown dtype 'f32'");
    expect_bad("dtype number", T1("\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]"), 4,
               "dtype is 4");
    {
        size_t len;
        unsigned char *b =
            build(T1("\"dtype\":\"U32\",\"shape\":[1],\"data_offsets\":[0,4]"), 4, &len);
        expect_bytes("unsupported dtype", b, len, CLIPSCORE_EUNSUPPORTED, "'x.weight': dtype U32");
        free(b);
    }
    expect_bad("dtype twice",
               T1("\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]"), 1,
               "\"dtype\" appears twice");

    /* shape. */
    expect_bad("missing shape", T1("\"dtype\":\"U8\",\"data_offsets\":[0,1]"), 1,
               "'x.weight': missing \"shape\"");
    expect_bad("shape not array", T1("\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]"), 1,
               "shape is 1");
    expect_bad("negative dim", T1("\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]"), 1,
               "'x.weight'");
    expect_bad("fractional dim", T1("\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]"), 1,
               "'x.weight'");
    expect_bad("float-looking dim", T1("\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]"),
               1, "'x.weight': shape holds 1.0");
    expect_bad("exponent dim", T1("\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]"), 1,
               "shape holds 1e0");
    expect_bad("string dim", T1("\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]"), 1,
               "shape[0] is a string");
    expect_bad("9 dims",
               T1("\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]"), 1,
               "9 dimensions");
    expect_bad("dim over 2^53",
               T1("\"dtype\":\"U8\",\"shape\":[18014398509481984],\"data_offsets\":[0,1]"), 1,
               "shape[0]");
    expect_bad("numel overflow",
               T1("\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,1]"), 1,
               "more elements than fit");
    expect_bad("overflow beside a zero",
               T1("\"dtype\":\"U8\",\"shape\":[0,4294967296,4294967296],\"data_offsets\":[0,0]"), 0,
               "more elements than fit");
    expect_bad("bytes overflow",
               T1("\"dtype\":\"F64\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,1]"), 1,
               "too large");

    /* data_offsets. */
    expect_bad("missing offsets", T1("\"dtype\":\"U8\",\"shape\":[1]"), 1,
               "'x.weight': missing \"data_offsets\"");
    expect_bad("one offset", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]"), 1,
               "data_offsets must be [begin, end]");
    expect_bad("reversed", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]"), 1,
               "'x.weight': data_offsets [1, 0] are reversed");
    expect_bad("out of range", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,2]"), 1,
               "'x.weight': data_offsets [0, 2] go beyond the data buffer (1 bytes)");
    expect_bad("negative offset", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]"), 1,
               "data_offsets");
    expect_bad("float offset", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]"), 1,
               "data_offsets holds 1.0");
    expect_bad("size mismatch", T1("\"dtype\":\"F32\",\"shape\":[3,4],\"data_offsets\":[0,10]"), 10,
               "'x.weight': data_offsets [0, 10] hold 10 bytes but F32 [3, 4] needs 48");
    expect_bad("scalar mismatch", T1("\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]"), 0,
               "F32 [] needs 4");

    /* Tiling of the data buffer. */
    expect_bad("overlap",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
               6, "tensors 'a' [0, 4] and 'b' [2, 6] overlap");
    expect_bad("same range",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
               4, "overlap");
    expect_bad("hole",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[6,10]}}",
               10, "bytes [4, 6) of the data buffer belong to no tensor (before 'b')");
    expect_bad("hole at start", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]"), 2,
               "bytes [0, 1)");
    expect_bad("trailing data", T1("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]"), 5,
               "end at byte 1 of the data buffer but it holds 5");
    expect_bad("data but no tensors", "{}", 3, "holds 3");
    expect_bad("duplicate names",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "tensor 'a' appears twice");
    expect_bad("duplicate by escape",
               "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
               "\"\\u0061\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
               2, "appears twice");

    /* Metadata. */
    expect_bad("metadata number", "{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0,
               "__metadata__ value of 'epoch' is 3");
    expect_bad("metadata nested", "{\"__metadata__\":{\"a\":{}}}", 0, "expected a string");
    expect_bad("metadata not object", "{\"__metadata__\":\"pt\"}", 0, "__metadata__ is a string");
    expect_bad("metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "appears twice");

    /* Messages stay one line and bounded for hostile names. */
    char h[1200];
    char name[700];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    name[3] = '\\';
    name[4] = 'n';
    snprintf(h, sizeof h, "{\"%s\":{\"dtype\":\"Q\",\"shape\":[],\"data_offsets\":[0,0]}}", name);
    expect_bad("long name", h, 0, "...");

    /* Missing file, directory. */
    cs_safetensors st;
    cs_error e = {0};
    char path[600];
    snprintf(path, sizeof path, "%s/missing.safetensors", tmp);
    CHECK_EQ_INT(cs_safetensors_open(path, &st, &e), CLIPSCORE_EIO);
    CHECK(strstr(e.msg, path) != NULL && zeroed(&st));
    CHECK_EQ_INT(cs_safetensors_open(tmp, &st, &e), CLIPSCORE_EIO);
    CHECK(zeroed(&st));
}

static void test_writer_errors(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/w.safetensors", tmp);
    float f[2] = {1, 2};
    cs_error e = {0};
    cs_tensor dup[2] = {
        {.name = "a", .dtype = CS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = f, .nbytes = 4},
        {.name = "a", .dtype = CS_DTYPE_F32, .ndim = 1, .shape = {1}, .data = f + 1, .nbytes = 4},
    };
    CHECK_EQ_INT(cs_safetensors_write(path, dup, 2, &e), CLIPSCORE_EARG);
    CHECK(strstr(e.msg, "'a' is listed twice") != NULL);
    cs_tensor bad = dup[0];
    bad.nbytes = 8;
    CHECK_EQ_INT(cs_safetensors_write(path, &bad, 1, &e), CLIPSCORE_EARG);
    bad = dup[0];
    bad.dtype = CS_DTYPE_COUNT;
    CHECK_EQ_INT(cs_safetensors_write(path, &bad, 1, &e), CLIPSCORE_EARG);
    bad = dup[0];
    bad.name = "__metadata__";
    CHECK_EQ_INT(cs_safetensors_write(path, &bad, 1, &e), CLIPSCORE_EARG);
    bad = dup[0];
    bad.data = NULL;
    CHECK_EQ_INT(cs_safetensors_write(path, &bad, 1, &e), CLIPSCORE_EARG);
    CHECK(!cs_file_exists(path));
    snprintf(path, sizeof path, "%s/no/such/dir/w.safetensors", tmp);
    CHECK_EQ_INT(cs_safetensors_write(path, dup, 1, &e), CLIPSCORE_EIO);

    /* No tensors: a valid, empty file. */
    snprintf(path, sizeof path, "%s/none.safetensors", tmp);
    CHECK_EQ_INT(cs_safetensors_write(path, NULL, 0, &e), 0);
    cs_safetensors st;
    CHECK_EQ_INT(cs_safetensors_open(path, &st, &e), 0);
    CHECK_EQ_INT(st.n, 0);
    CHECK_EQ_INT(st.map_len, 16);
    cs_safetensors_close(&st);
}

/* ---- mutation loop ------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void check_views(const cs_safetensors *st, const char *what) {
    const unsigned char *lo = st->map, *hi = lo + st->map_len;
    unsigned sum = 0;
    for (int i = 0; i < st->n; i++) {
        const cs_tensor *t = &st->tensors[i];
        const unsigned char *d = t->data;
        CHECK_MSG(d >= lo + 8 && d + t->nbytes <= hi, "%s: view outside the file", what);
        CHECK(t->ndim >= 0 && t->ndim <= CS_MAX_DIMS);
        CHECK((uint64_t)cs_tensor_numel(t) * cs_dtype_size(t->dtype) == t->nbytes);
        CHECK(cs_safetensors_find(st, t->name) == t);
        for (size_t k = 0; k < t->nbytes; k++) sum += d[k]; /* ASan sees any overrun */
    }
    (void)sum;
}

static void test_mutations(void) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                    "\"bb\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[16,19]},"
                    "\"c\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[19,27]},"
                    "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[27,27]}}  ";
    size_t base_len;
    unsigned char *base = build(h, 27, &base_len);
    cs_safetensors st;
    cs_error e = {0};
    CHECK_MSG(cs_safetensors_parse(base, base_len, "base", &st, &e) == 0, "%s", e.msg);
    cs_safetensors_close(&st);

    static const char interesting[] = "{}[]\",:0123456789-.e \t\\\x00\xff\x80";
    unsigned char *m = malloc(base_len + 16);
    if (!m) exit(2);
    char path[600];
    snprintf(path, sizeof path, "%s/mut.safetensors", tmp);
    int parsed = 0, failed = 0;
    for (int iter = 0; iter < 4000; iter++) {
        size_t len = base_len;
        memcpy(m, base, base_len);
        int kind = (int)(rng() % 6), edits = 1 + (int)(rng() % 4);
        for (int k = 0; k < edits; k++) {
            /* Mostly in the header, where the parsing happens. */
            size_t at = rng() % 4 ? 8 + rng() % (len > 8 ? len - 8 : 1) : rng() % len;
            if (at >= len) at = len - 1;
            if (kind == 0)
                m[at] ^= (unsigned char)(1u << (rng() % 8));
            else if (kind == 1)
                m[at] = (unsigned char)interesting[rng() % (sizeof interesting - 1)];
            else if (kind == 2)
                m[at] = (unsigned char)rng();
            else if (kind == 3)
                m[rng() % 8] = (unsigned char)rng(); /* the length prefix */
            else if (kind == 4) {                    /* delete a byte */
                memmove(m + at, m + at + 1, len - at - 1);
                len--;
            } else {
                len = rng() % (len + 1); /* truncate */
                if (len == 0) break;
            }
            if (len == 0) break;
        }
        char what[64];
        snprintf(what, sizeof what, "mutation %d", iter);
        int rc = cs_safetensors_parse(m, len, "mut.safetensors", &st, &e);
        if (rc == 0) {
            parsed++;
            check_views(&st, what);
        } else {
            failed++;
            CHECK_MSG(rc == CLIPSCORE_EFORMAT || rc == CLIPSCORE_EUNSUPPORTED, "%s: rc %d (%s)",
                      what, rc, e.msg);
            CHECK_MSG(e.msg[0] && strstr(e.msg, "mut.safetensors") && !strchr(e.msg, '\n'),
                      "%s: message '%s'", what, e.msg);
            CHECK(zeroed(&st));
        }
        cs_safetensors_close(&st);
        if (iter % 20 == 0) { /* and through mmap now and then */
            write_bytes(path, m, len);
            int rc2 = cs_safetensors_open(path, &st, &e);
            CHECK_MSG(rc2 == rc, "%s: open rc %d, parse rc %d", what, rc2, rc);
            if (rc2 == 0) check_views(&st, what);
            cs_safetensors_close(&st);
        }
    }
    fprintf(stderr, "mutations: %d parsed, %d rejected\n", parsed, failed);
    CHECK(failed > 1000);
    CHECK(parsed > 0);
    free(m);
    free(base);
}

/* ---- conformance fixtures ----------------------------------------------- */

static void expect_tensor(const cs_safetensors *st, const char *name, cs_dtype dtype, int ndim,
                          const int64_t *shape) {
    const cs_tensor *t = cs_safetensors_find(st, name);
    CHECK_MSG(t != NULL, "missing %s", name);
    if (!t) return;
    CHECK_EQ_INT(t->dtype, dtype);
    CHECK_EQ_INT(t->ndim, ndim);
    for (int k = 0; k < ndim && k < t->ndim; k++) CHECK_EQ_INT(t->shape[k], shape[k]);
    CHECK_EQ_INT(t->nbytes, cs_tensor_numel(t) * (int64_t)cs_dtype_size(dtype));
}

static void test_conformance(void) {
    const char *dir = test_conformance_dir();
    if (!dir) {
        fprintf(stderr, "conformance fixtures absent: skipping the real model files\n");
        return;
    }
    char path[1024];
    cs_safetensors st;
    cs_error e = {0};
    static const int64_t patch[] = {128, 3, 32, 32}, pos[] = {77, 128}, ids[] = {1, 77},
                         tok[] = {49408, 128}, ln[] = {128};

    snprintf(path, sizeof path, "%s/model-hf/model.safetensors", dir);
    int rc = cs_safetensors_open(path, &st, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        fprintf(stderr, "model-hf/model.safetensors: %d tensors\n", st.n);
        CHECK(st.n > 50);
        expect_tensor(&st, "vision_model.embeddings.patch_embedding.weight", CS_DTYPE_F32, 4,
                      patch);
        expect_tensor(&st, "text_model.embeddings.position_embedding.weight", CS_DTYPE_F32, 2, pos);
        expect_tensor(&st, "text_model.embeddings.position_ids", CS_DTYPE_I64, 2, ids);
        expect_tensor(&st, "text_model.embeddings.token_embedding.weight", CS_DTYPE_F32, 2, tok);
        expect_tensor(&st, "logit_scale", CS_DTYPE_F32, 0, NULL);
        const cs_tensor *t = cs_safetensors_find(&st, "text_model.embeddings.position_ids");
        if (t) { /* position_ids are 0..76 */
            int64_t v;
            memcpy(&v, (const char *)t->data + 76 * 8, 8);
            CHECK_EQ_INT(v, 76);
        }
    }
    cs_safetensors_close(&st);

    snprintf(path, sizeof path, "%s/model-openclip/open_clip_model.safetensors", dir);
    rc = cs_safetensors_open(path, &st, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        fprintf(stderr, "model-openclip/open_clip_model.safetensors: %d tensors\n", st.n);
        CHECK(st.n > 50);
        expect_tensor(&st, "visual.conv1.weight", CS_DTYPE_F16, 4, patch);
        expect_tensor(&st, "positional_embedding", CS_DTYPE_F16, 2, pos);
        expect_tensor(&st, "token_embedding.weight", CS_DTYPE_F16, 2, tok);
        expect_tensor(&st, "ln_final.weight", CS_DTYPE_F16, 1, ln);
        expect_tensor(&st, "logit_scale", CS_DTYPE_F16, 0, NULL);
        for (int i = 0; i < st.n; i++) CHECK(st.tensors[i].dtype == CS_DTYPE_F16);
    }
    cs_safetensors_close(&st);
}

int main(void) {
    tmp = test_tmpdir("safetensors");
    test_round_trip();
    test_metadata_and_padding();
    test_corrupt();
    test_writer_errors();
    test_mutations();
    test_conformance();
    return test_finish("test_safetensors");
}
