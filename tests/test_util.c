/* test_util.c - SHA-256 test vectors and file hashing, .npy writing (whole
 * and streamed), atomic files, paths, folders, error messages and
 * cs_read_file limits. Leaves out tensor.c (covered with the model tests). */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <unistd.h>

#include "npy.h"
#include "sha256.h"
#include "test.h"
#include "util.h"

static void hex_of(const void *data, size_t len, char out[65]) {
    cs_sha256 s;
    unsigned char d[32];
    CHECK_EQ_INT(cs_sha256_init(&s, NULL), 0);
    cs_sha256_update(&s, data, len);
    CHECK_EQ_INT(cs_sha256_final(&s, d, NULL), 0);
    cs_sha256_hex(d, out);
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(data, 1, len, fp) != len || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
}

/* Names in a folder other than . and .., joined by '|' (sorted order not
 * needed: the tests expect at most one name). */
static int count_entries(const char *dir, char *names, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    names[0] = '\0';
    if (!d) return -1;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        n++;
        size_t at = strlen(names);
        snprintf(names + at, cap - at, "%s%s", at ? "|" : "", de->d_name);
    }
    closedir(d);
    return n;
}

static void test_sha256(const char *tmp) {
    char hex[65];
    hex_of(NULL, 0, hex);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /* 448 bits: the padding needs a second block. */
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK_EQ_INT(strlen(m448), 56);
    hex_of(m448, strlen(m448), hex);
    CHECK_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    hex_of(m896, strlen(m896), hex);
    CHECK_EQ_STR(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");

    /* One million 'a', streamed in odd-sized chunks that straddle blocks. */
    static char a[1000000];
    memset(a, 'a', sizeof a);
    cs_sha256 s;
    unsigned char d[32];
    CHECK_EQ_INT(cs_sha256_init(&s, NULL), 0);
    size_t at = 0, step = 1;
    while (at < sizeof a) {
        size_t k = step < sizeof a - at ? step : sizeof a - at;
        cs_sha256_update(&s, a + at, k);
        at += k;
        step = step * 7 % 1013 + 1;
    }
    CHECK_EQ_INT(cs_sha256_final(&s, d, NULL), 0);
    cs_sha256_hex(d, hex);
    CHECK_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    /* Every length 0..200 split at every point agrees with one update. */
    unsigned char buf[200];
    for (int i = 0; i < 200; i++) buf[i] = (unsigned char)(i * 37 + 11);
    int mismatches = 0;
    for (size_t len = 0; len <= 200; len += 1) {
        char whole[65];
        hex_of(buf, len, whole);
        for (size_t cut = 0; cut <= len; cut += 13) {
            mismatches += cs_sha256_init(&s, NULL) != 0;
            cs_sha256_update(&s, buf, cut);
            cs_sha256_update(&s, buf + cut, len - cut);
            mismatches += cs_sha256_final(&s, d, NULL) != 0;
            cs_sha256_hex(d, hex);
            mismatches += strcmp(hex, whole) != 0;
        }
    }
    CHECK_EQ_INT(mismatches, 0);

    /* A hash dropped unfinished frees its context (ASan would see a leak);
     * freeing twice, or after final, is harmless. */
    CHECK_EQ_INT(cs_sha256_init(&s, NULL), 0);
    cs_sha256_update(&s, "abc", 3);
    cs_sha256_free(&s);
    cs_sha256_free(&s);
    CHECK(s.md == NULL);

    /* Files: a small one, one spanning several 1 MiB reads, a missing one. */
    char path[600];
    cs_error e = {0};
    snprintf(path, sizeof path, "%s/abc.txt", tmp);
    write_bytes(path, "abc", 3);
    CHECK_EQ_INT(cs_sha256_file(path, hex, &e), 0);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    snprintf(path, sizeof path, "%s/big.bin", tmp);
    size_t big_len = (3u << 20) + 12345;
    unsigned char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++) big[i] = (unsigned char)(i * 2654435761u >> 13);
    write_bytes(path, big, big_len);
    char expect[65];
    hex_of(big, big_len, expect);
    free(big);
    CHECK_EQ_INT(cs_sha256_file(path, hex, &e), 0);
    CHECK_EQ_STR(hex, expect);
    remove(path);
    snprintf(path, sizeof path, "%s/missing.bin", tmp);
    CHECK_EQ_INT(cs_sha256_file(path, hex, &e), CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "missing.bin") != NULL);
}

/* Parses an .npy v1.0 file written by us; returns the header text (dict
 * plus padding) and the data offset. */
static char *read_npy(const char *path, size_t *file_len, size_t *data_off, char **file) {
    cs_error e = {0};
    char *data;
    size_t len;
    if (cs_read_file(path, 0, &data, &len, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        return NULL;
    }
    *file = data;
    *file_len = len;
    if (len < 10 || memcmp(data, "\x93NUMPY\x01\x00", 8) != 0) return NULL;
    size_t hl = (unsigned char)data[8] | (size_t)(unsigned char)data[9] << 8;
    if (10 + hl > len) return NULL;
    *data_off = 10 + hl;
    char *head = malloc(hl + 1);
    memcpy(head, data + 10, hl);
    head[hl] = '\0';
    return head;
}

static int floats_equal(const char *bytes, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char *b = (const unsigned char *)bytes + 4 * i;
        uint32_t u = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        float f;
        memcpy(&f, &u, 4);
        if (f != want[i]) return 0;
    }
    return 1;
}

static void check_header_shape(const char *head, size_t data_off, const char *shape_text) {
    char want[200];
    snprintf(want, sizeof want, "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }",
             shape_text);
    CHECK_MSG(strncmp(head, want, strlen(want)) == 0, "header \"%s\", want \"%s\"", head, want);
    size_t hl = strlen(head);
    CHECK_EQ_INT(data_off % 64, 0);
    CHECK(hl > 0 && head[hl - 1] == '\n');
    /* Only spaces between the dict and the final newline. */
    int pad_ok = 1;
    for (size_t i = strlen(want); i + 1 < hl; i++) pad_ok &= head[i] == ' ';
    CHECK(pad_ok);
}

static void test_npy(const char *tmp) {
    char dir[600], path[700], names[256];
    cs_error e = {0};
    snprintf(dir, sizeof dir, "%s/npy", tmp);
    CHECK_EQ_INT(cs_mkdir_p(dir, &e), 0);

    float a[6] = {1.0f, -2.5f, 3.25f, 0.0f, 1e-7f, -1e30f};
    int64_t shape[2] = {2, 3};
    snprintf(path, sizeof path, "%s/a.npy", dir);
    CHECK_EQ_INT(cs_npy_write_f32(path, a, 2, shape, &e), 0);
    size_t len = 0, off = 0;
    char *file = NULL;
    char *head = read_npy(path, &len, &off, &file);
    CHECK(head != NULL);
    if (head) {
        check_header_shape(head, off, "(2, 3)");
        CHECK_EQ_INT(len, off + sizeof a);
        CHECK(len == off + sizeof a && floats_equal(file + off, a, 6));
        CHECK_EQ_INT(off, 128); /* as numpy writes it: 71 bytes round up to 128 */
    }
    free(head);
    free(file);

    /* 1-D shapes carry numpy's trailing comma. */
    int64_t shape1[1] = {6};
    snprintf(path, sizeof path, "%s/v.npy", dir);
    CHECK_EQ_INT(cs_npy_write_f32(path, a, 1, shape1, &e), 0);
    head = read_npy(path, &len, &off, &file);
    CHECK(head != NULL);
    if (head) check_header_shape(head, off, "(6,)");
    free(head);
    free(file);

    /* Streamed [5, 4] in appends of 2 and 3 rows. */
    float rows[20];
    for (int i = 0; i < 20; i++) rows[i] = (float)i * 0.5f - 3.0f;
    int64_t row_shape[1] = {4};
    cs_npy_stream st;
    snprintf(path, sizeof path, "%s/stream.npy", dir);
    CHECK_EQ_INT(cs_npy_stream_open(&st, path, 1, row_shape, &e), 0);
    CHECK(!cs_file_exists(path)); /* only the temporary exists until commit */
    CHECK_EQ_INT(cs_npy_stream_append(&st, rows, 2, &e), 0);
    CHECK_EQ_INT(cs_npy_stream_append(&st, rows + 8, 0, &e), 0);
    CHECK_EQ_INT(cs_npy_stream_append(&st, rows + 8, 3, &e), 0);
    CHECK_EQ_INT(st.shape[0], 5);
    CHECK_EQ_INT(cs_npy_stream_commit(&st, &e), 0);
    head = read_npy(path, &len, &off, &file);
    CHECK(head != NULL);
    if (head) {
        check_header_shape(head, off, "(5, 4)");
        CHECK(len == off + sizeof rows && floats_equal(file + off, rows, 20));
        /* Room for a 16-digit row count was reserved. */
        CHECK(strlen(head) >= strlen("{'descr': '<f4', 'fortran_order': False, 'shape': "
                                     "(1000000000000000, 4), }\n"));
    }
    free(head);
    free(file);

    /* A stream of 4-D rows (images) with zero rows is a valid empty array. */
    int64_t img_shape[3] = {3, 2, 2};
    snprintf(path, sizeof path, "%s/empty.npy", dir);
    CHECK_EQ_INT(cs_npy_stream_open(&st, path, 3, img_shape, &e), 0);
    CHECK_EQ_INT(cs_npy_stream_commit(&st, &e), 0);
    head = read_npy(path, &len, &off, &file);
    CHECK(head != NULL);
    if (head) {
        check_header_shape(head, off, "(0, 3, 2, 2)");
        CHECK_EQ_INT(len, off);
    }
    free(head);
    free(file);

    /* Abort leaves nothing behind. */
    snprintf(path, sizeof path, "%s/aborted.npy", dir);
    CHECK_EQ_INT(cs_npy_stream_open(&st, path, 1, row_shape, &e), 0);
    CHECK_EQ_INT(cs_npy_stream_append(&st, rows, 5, &e), 0);
    cs_npy_stream_abort(&st);
    cs_npy_stream_abort(&st); /* harmless twice */
    CHECK(!cs_file_exists(path));
    CHECK_EQ_INT(count_entries(dir, names, sizeof names), 4);
    CHECK_MSG(strstr(names, ".tmp") == NULL, "left behind: %s", names);

    /* Bad arguments and unwritable places fail with a message. */
    int64_t bad_shape[2] = {2, -1};
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    CHECK_EQ_INT(cs_npy_write_f32(path, a, 2, bad_shape, &e), CLIPSCORE_EARG);
    CHECK(!cs_file_exists(path));
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", dir);
    e.msg[0] = '\0';
    CHECK_EQ_INT(cs_npy_write_f32(path, a, 2, shape, &e), CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "no/such/dir") != NULL);
    CHECK_EQ_INT(cs_npy_stream_open(&st, path, 1, row_shape, &e), CLIPSCORE_EIO);
    CHECK(st.file.fp == NULL);
    cs_npy_stream_abort(&st); /* harmless after a failed open */
}

static void test_atomic(const char *tmp) {
    char dir[600], path[700], names[256];
    cs_error e = {0};
    snprintf(dir, sizeof dir, "%s/atomic", tmp);
    CHECK_EQ_INT(cs_mkdir_p(dir, &e), 0);
    snprintf(path, sizeof path, "%s/out.txt", dir);

    cs_atomic_file f;
    CHECK_EQ_INT(cs_atomic_open(&f, path, &e), 0);
    fputs("first", f.fp);
    CHECK(!cs_file_exists(path));
    CHECK_EQ_INT(cs_atomic_commit(&f, &e), 0);
    char *data = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cs_read_file(path, 0, &data, &len, &e), 0);
    CHECK_EQ_STR(data, "first");
    free(data);
    CHECK_EQ_INT(count_entries(dir, names, sizeof names), 1);
    CHECK_EQ_STR(names, "out.txt");

    CHECK_EQ_INT(cs_atomic_open(&f, path, &e), 0);
    fputs("second, never committed", f.fp);
    cs_atomic_abort(&f);
    CHECK_EQ_INT(cs_read_file(path, 0, &data, &len, &e), 0);
    CHECK_EQ_STR(data, "first");
    free(data);
    CHECK_EQ_INT(count_entries(dir, names, sizeof names), 1);
    CHECK_EQ_STR(names, "out.txt");

    CHECK_EQ_INT(cs_write_file_atomic(path, "third", 5, &e), 0);
    CHECK_EQ_INT(cs_read_file(path, 0, &data, &len, &e), 0);
    CHECK_EQ_STR(data, "third");
    CHECK_EQ_INT(len, 5);
    free(data);

    snprintf(path, sizeof path, "%s/missing/out.txt", dir);
    cs_error_clear(&e);
    CHECK_EQ_INT(cs_atomic_open(&f, path, &e), CLIPSCORE_EIO);
    CHECK_EQ_INT(e.code, CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "missing/out.txt") != NULL);
    CHECK(f.fp == NULL && f.path == NULL && f.tmp_path == NULL);
    CHECK_EQ_INT(cs_write_file_atomic(path, "x", 1, &e), CLIPSCORE_EIO);
    CHECK(!cs_is_dir(path) && !cs_file_exists(path));
}

static void test_paths(const char *tmp) {
    cs_error e = {0};
    struct {
        const char *dir, *name, *want;
    } joins[] = {{"a", "b", "a/b"},     {"a/", "b", "a/b"},   {"/x/y", "z.jpg", "/x/y/z.jpg"},
                 {"a", "/abs", "/abs"}, {"", "b", "b"},       {NULL, "b", "b"},
                 {"/", "b", "/b"},      {"a", "b/c", "a/b/c"}};
    for (size_t i = 0; i < sizeof joins / sizeof joins[0]; i++) {
        char *p = cs_path_join(joins[i].dir, joins[i].name, &e);
        CHECK_EQ_STR(p, joins[i].want);
        free(p);
    }
    struct {
        const char *path, *want;
    } dirs[] = {{"a/b/c", "a/b"}, {"c", "."}, {"/c", "/"}, {"a/b/", "a/b"}, {"./x.csv", "."}};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char *p = cs_path_dirname(dirs[i].path, &e);
        CHECK_EQ_STR(p, dirs[i].want);
        free(p);
    }

    char path[700];
    snprintf(path, sizeof path, "%s/m/n/o", tmp);
    CHECK_EQ_INT(cs_mkdir_p(path, &e), 0);
    CHECK(cs_is_dir(path));
    CHECK_EQ_INT(cs_mkdir_p(path, &e), 0); /* already there */
    snprintf(path, sizeof path, "%s/m/n/o/", tmp);
    CHECK_EQ_INT(cs_mkdir_p(path, &e), 0); /* trailing slash */
    snprintf(path, sizeof path, "%s/m/file", tmp);
    write_bytes(path, "x", 1);
    CHECK(cs_file_exists(path) && !cs_is_dir(path));
    cs_error_clear(&e);
    CHECK_EQ_INT(cs_mkdir_p(path, &e), CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "m/file") != NULL);
    snprintf(path, sizeof path, "%s/m/file/sub", tmp);
    CHECK_EQ_INT(cs_mkdir_p(path, &e), CLIPSCORE_EIO);
    CHECK(e.msg[0] != '\0');
    CHECK(cs_mkdir_p("", &e) < 0);
}

static void test_errors(void) {
    cs_error e = {0};
    CHECK_EQ_INT(cs_fail(&e, CLIPSCORE_EFORMAT, "%s: line %d: bad", "in.csv", 7),
                 CLIPSCORE_EFORMAT);
    CHECK_EQ_STR(e.msg, "in.csv: line 7: bad");
    CHECK_EQ_INT(cs_fail_prefix(&e, "reading %s", "input"), CLIPSCORE_EFORMAT);
    CHECK_EQ_STR(e.msg, "reading input: in.csv: line 7: bad");
    CHECK_EQ_INT(e.code, CLIPSCORE_EFORMAT);
    cs_error_clear(&e);
    CHECK_EQ_INT(e.code, 0);
    CHECK_EQ_STR(e.msg, "");
    /* Prefixing without a prior failure is a bug, not success. */
    CHECK_EQ_INT(cs_fail_prefix(&e, "ctx"), CLIPSCORE_EINTERNAL);
    CHECK(strncmp(e.msg, "ctx", 3) == 0);
    CHECK_EQ_INT(cs_fail_prefix(NULL, "ctx"), CLIPSCORE_EINTERNAL);
    CHECK_EQ_INT(cs_fail(NULL, CLIPSCORE_EIO, "x"), CLIPSCORE_EIO);

    /* Long messages are cut, never overflow, and keep the start of each part. */
    char long_text[3000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    cs_fail(&e, CLIPSCORE_EIO, "%s", long_text);
    CHECK_EQ_INT(strlen(e.msg), sizeof e.msg - 1);
    cs_fail_prefix(&e, "P%s", long_text);
    CHECK(strlen(e.msg) < sizeof e.msg);
    CHECK(e.msg[0] == 'P' && strstr(e.msg, " ... ") != NULL);
    CHECK_EQ_INT(e.code, CLIPSCORE_EIO);
    /* ... and the middle goes, not the end: a long path must not cost the
     * reason after it. */
    cs_fail(&e, CLIPSCORE_EIO, "%s: %s", long_text, "No such file or directory");
    CHECK_EQ_INT(strlen(e.msg), sizeof e.msg - 1);
    size_t ml = strlen(e.msg);
    CHECK(ml > 27 && strcmp(e.msg + ml - 27, ": No such file or directory") == 0);
    CHECK(strncmp(e.msg, "xxx", 3) == 0 && strstr(e.msg, " ... ") != NULL);
    cs_fail(&e, CLIPSCORE_EIO, "short: %s", "reason");
    CHECK_EQ_STR(e.msg, "short: reason");
    cs_fail_prefix(&e, "P%s", long_text);
    ml = strlen(e.msg);
    CHECK(ml > 8 && strcmp(e.msg + ml - 8, ": reason") == 0);
    char small[16];
    cs_copy_elided(small, sizeof small, "abcdefghijklmnopqrstuvwxyz");
    CHECK_EQ_INT(strlen(small), 15);
    cs_copy_elided(small, sizeof small, "short");
    CHECK_EQ_STR(small, "short");

    CHECK(cs_malloc(SIZE_MAX / 2, 4, &e) == NULL);
    CHECK_EQ_INT(e.code, CLIPSCORE_ENOMEM);
    char *s = cs_asprintf(&e, "%d-%s", 42, "x");
    CHECK_EQ_STR(s, "42-x");
    free(s);
}

static void test_read_file(const char *tmp) {
    char path[700];
    cs_error e = {0};
    char *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/hundred.txt", tmp);
    char hundred[100];
    memset(hundred, 'h', sizeof hundred);
    write_bytes(path, hundred, sizeof hundred);
    CHECK_EQ_INT(cs_read_file(path, 100, &data, &len, &e), 0);
    CHECK_EQ_INT(len, 100);
    CHECK(data && data[100] == '\0' && memcmp(data, hundred, 100) == 0);
    free(data);
    CHECK_EQ_INT(cs_read_file(path, 99, &data, &len, &e), CLIPSCORE_ELIMIT);
    CHECK(data == NULL && strstr(e.msg, "hundred.txt") != NULL);

    /* Larger than the first buffer: no limit, a generous one, the largest one. */
    size_t big_len = 300000;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)('a' + i % 26);
    snprintf(path, sizeof path, "%s/big.txt", tmp);
    write_bytes(path, big, big_len);
    size_t limits[] = {0, big_len, big_len + 1, SIZE_MAX};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        CHECK_EQ_INT(cs_read_file(path, limits[i], &data, &len, &e), 0);
        CHECK_MSG(len == big_len && data && memcmp(data, big, big_len) == 0,
                  "limit %zu: read %zu bytes", limits[i], len);
        free(data);
    }
    CHECK_EQ_INT(cs_read_file(path, big_len - 1, &data, &len, &e), CLIPSCORE_ELIMIT);
    CHECK_EQ_INT(cs_read_file(path, 70000, &data, &len, &e), CLIPSCORE_ELIMIT);
    free(big);

    snprintf(path, sizeof path, "%s/empty.txt", tmp);
    write_bytes(path, "", 0);
    CHECK_EQ_INT(cs_read_file(path, 10, &data, &len, &e), 0);
    CHECK(len == 0 && data && data[0] == '\0');
    free(data);
    snprintf(path, sizeof path, "%s/nope.txt", tmp);
    CHECK_EQ_INT(cs_read_file(path, 0, &data, &len, &e), CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "nope.txt") != NULL);
    CHECK(!cs_file_exists(path) && cs_is_dir(tmp) && !cs_file_exists(tmp));
}

/* The hash memo: a remembered hash is used while the file is unchanged,
 * and recomputed once it changes. */
static void test_sha256_memo(const char *tmp) {
    char file[600], memo[600], hex[65], real[65];
    snprintf(file, sizeof file, "%s/weights.bin", tmp);
    snprintf(memo, sizeof memo, "%s/memo.txt", tmp);
    FILE *f = fopen(file, "wb");
    fputs("some weights", f);
    fclose(f);
    cs_error e = {0};
    CHECK_EQ_INT(cs_sha256_file_memo(file, memo, NULL, hex, &e), 0);
    CHECK_EQ_INT(cs_sha256_file(file, real, &e), 0);
    CHECK_EQ_STR(hex, real);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT(cs_read_file(memo, 0, &text, &len, &e), 0);
    CHECK(text && strncmp(text, real, 64) == 0 && strstr(text, "weights.bin\n") != NULL);
    /* Plant a different hash in the memo: it must be what comes back
     * (the file was not read again). */
    if (text) {
        memset(text, 'a', 64);
        FILE *m = fopen(memo, "wb");
        fwrite(text, 1, len, m);
        fclose(m);
    }
    free(text);
    CHECK_EQ_INT(cs_sha256_file_memo(file, memo, NULL, hex, &e), 0);
    CHECK_EQ_STR(hex, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    /* Changed content (size and time differ): hashed again. */
    f = fopen(file, "ab");
    fputs(" and more", f);
    fclose(f);
    CHECK_EQ_INT(cs_sha256_file_memo(file, memo, NULL, hex, &e), 0);
    CHECK_EQ_INT(cs_sha256_file(file, real, &e), 0);
    CHECK_EQ_STR(hex, real);
    /* No memo, or an unwritable one: plain hashing. */
    CHECK_EQ_INT(cs_sha256_file_memo(file, NULL, NULL, hex, &e), 0);
    CHECK_EQ_STR(hex, real);
    CHECK_EQ_INT(cs_sha256_file_memo(file, "/nonexistent/dir/memo.txt", NULL, hex, &e), 0);
    CHECK_EQ_STR(hex, real);
    CHECK(cs_sha256_file_memo("/nonexistent/file", memo, NULL, hex, &e) < 0);
    /* A stop already raised: canceled, and nothing remembered for the
     * file (a later call hashes it for real). */
    f = fopen(file, "ab");
    fputs(" changed", f);
    fclose(f);
    atomic_int stop;
    atomic_init(&stop, 1);
    CHECK_EQ_INT(cs_sha256_file_memo(file, memo, &stop, hex, &e), CLIPSCORE_ECANCELED);
    CHECK_EQ_STR(hex, "");
    CHECK_EQ_INT(cs_sha256_file(file, real, &e), 0);
    atomic_store(&stop, 0);
    CHECK_EQ_INT(cs_sha256_file_memo(file, memo, &stop, hex, &e), 0);
    CHECK_EQ_STR(hex, real);
}

int main(void) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", test_tmpdir("util"));
    test_sha256(tmp);
    test_sha256_memo(tmp);
    test_npy(tmp);
    test_atomic(tmp);
    test_paths(tmp);
    test_errors();
    test_read_file(tmp);
    return test_finish("test_util");
}
