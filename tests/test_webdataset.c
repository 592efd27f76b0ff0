/* test_webdataset.c - the webdataset tar and img2dataset folder readers
 * (webdataset.h), on tars and folders this test writes itself (tars with
 * libarchive's writer): samples grouped by key, members' roles and the
 * options choosing them, per-sample errors (no image, no caption, over the
 * size limit, duplicates), a truncated and a non-tar file, compressed tars,
 * counting without data, find by key, the folder walk's order, and memory
 * that stays at one sample's size over 2000 samples. */
#define _GNU_SOURCE
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "webdataset.h"

static const char *tmp;

static const char *tpath(const char *name) {
    static char buf[8][1024];
    static int slot;
    char *b = buf[slot++ & 7];
    snprintf(b, sizeof buf[0], "%s/%s", tmp, name);
    return b;
}

/* ---- writing tars ---- */

typedef struct member {
    const char *name;
    const char *data; /* NULL: a directory; "->x": a symlink to x */
    size_t len;       /* 0: strlen(data) */
} member;

static struct archive *tar_begin(const char *path, const char *filter) {
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (filter && !strcmp(filter, "gzip")) archive_write_add_filter_gzip(a);
    if (filter && !strcmp(filter, "xz")) archive_write_add_filter_xz(a);
    if (filter && !strcmp(filter, "zstd")) archive_write_add_filter_zstd(a);
    if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
        fprintf(stderr, "%s: %s\n", path, archive_error_string(a));
        exit(2);
    }
    return a;
}

static void tar_add(struct archive *a, const member *m) {
    struct archive_entry *ent = archive_entry_new();
    archive_entry_set_pathname(ent, m->name);
    archive_entry_set_mtime(ent, 1700000000, 0);
    size_t len = 0;
    if (!m->data) {
        archive_entry_set_filetype(ent, AE_IFDIR);
        archive_entry_set_perm(ent, 0755);
    } else if (!strncmp(m->data, "->", 2)) {
        archive_entry_set_filetype(ent, AE_IFLNK);
        archive_entry_set_symlink(ent, m->data + 2);
        archive_entry_set_perm(ent, 0777);
    } else {
        len = m->len ? m->len : strlen(m->data);
        archive_entry_set_filetype(ent, AE_IFREG);
        archive_entry_set_perm(ent, 0644);
        archive_entry_set_size(ent, (la_int64_t)len);
    }
    if (archive_write_header(a, ent) != ARCHIVE_OK ||
        (len && archive_write_data(a, m->data, len) != (la_ssize_t)len)) {
        fprintf(stderr, "writing %s: %s\n", m->name, archive_error_string(a));
        exit(2);
    }
    archive_entry_free(ent);
}

static void tar_end(struct archive *a) {
    if (archive_write_close(a) != ARCHIVE_OK) {
        fprintf(stderr, "closing tar: %s\n", archive_error_string(a));
        exit(2);
    }
    archive_write_free(a);
}

static void write_tar(const char *path, const char *filter, const member *m, int n) {
    struct archive *a = tar_begin(path, filter);
    for (int i = 0; i < n; i++) tar_add(a, &m[i]);
    tar_end(a);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* ---- reading everything ---- */

#define MAX_SAMPLES 32

/* Copies of what the reader gave (its pointers die at the next call). */
typedef struct got {
    int n;
    char *key[MAX_SAMPLES], *caption[MAX_SAMPLES], *url[MAX_SAMPLES], *error[MAX_SAMPLES];
    char *ext[MAX_SAMPLES], *image_path[MAX_SAMPLES];
    unsigned char *image[MAX_SAMPLES];
    size_t image_len[MAX_SAMPLES], caption_len[MAX_SAMPLES];
} got;

static char *dup_or_null(const char *s) {
    return s ? strdup(s) : NULL;
}

static void copy_sample(got *g, const cs_wds_sample *s) {
    int i = g->n++;
    g->key[i] = dup_or_null(s->key);
    g->caption[i] = dup_or_null(s->caption);
    g->caption_len[i] = s->caption_len;
    g->url[i] = dup_or_null(s->url);
    g->error[i] = dup_or_null(s->error);
    g->ext[i] = dup_or_null(s->image_ext);
    g->image_path[i] = dup_or_null(s->image_path);
    g->image_len[i] = s->image_len;
    g->image[i] = NULL;
    if (s->image) {
        g->image[i] = malloc(s->image_len + 1);
        memcpy(g->image[i], s->image, s->image_len);
    }
}

static void got_free(got *g) {
    for (int i = 0; i < g->n; i++) {
        free(g->key[i]), free(g->caption[i]), free(g->url[i]), free(g->error[i]);
        free(g->ext[i]), free(g->image_path[i]), free(g->image[i]);
    }
    g->n = 0;
}

/* Reads every sample of path; returns the last cs_wds_next status (0 at a
 * clean end). */
static int read_all(const char *path, const cs_wds_options *o, got *g) {
    memset(g, 0, sizeof *g);
    cs_wds_reader *r = NULL;
    cs_error e = {0};
    int rc = cs_wds_open(path, o, &r, &e);
    CHECK_MSG(rc == 0, "open %s: %s", path, e.msg);
    if (rc) return rc;
    cs_wds_sample s;
    while ((rc = cs_wds_next(r, &s, &e)) == 1 && g->n < MAX_SAMPLES) copy_sample(g, &s);
    CHECK_MSG(rc == 0, "reading %s: rc %d %s", path, rc, e.msg);
    cs_wds_close(r);
    return rc;
}

static int contains(const char *s, const char *part) {
    return s && strstr(s, part);
}

/* ---- the tests ---- */

static const char GARBAGE[] = "\xff\xd8 this is not a JPEG \x00\x01\x02 at all";

static const member BASIC[] = {
    {"00000", NULL, 0},
    {"00000/000000001.jpg", "JPEGDATA-1", 0},
    {"00000/000000001.txt", "a dog\n", 0},
    {"00000/000000001.json", "{\"url\": \"http://example.com/1.jpg\", \"width\": 3}", 0},
    {"00000/000000002.JPG", "JPEGDATA-2", 0},
    {"00000/000000002.txt", "two lines\nend\r\n", 0},
    {"00000/000000002.json", "{\"caption\": \"no url here\"}", 0},
    {"00000/000000003.png", "PNGDATA-3", 0},
    {"00000/000000003.json", "not json {", 0},
    {"00000/000000004.txt", "caption without image", 0},
    {"__key__", "ignored", 0},
    {"00000/.hidden.jpg", "ignored", 0},
    {"00000/link.jpg", "->000000001.jpg", 0},
    {"00000/README", "no extension: ignored", 0},
    {"a/b.c/x.y.jpg", "DOTTED", 0},
    {"a/b.c/x.txt", "dotted key", 0},
    {"corrupt.jpg", GARBAGE, sizeof GARBAGE - 1},
    {"corrupt.txt", "garbage image", 0},
    {"dup.jpg", "D1", 0},
    {"dup.txt", "first", 0},
    {"dup.txt", "second", 0},
    {"00000/000000001.cls", "7", 0}, /* same key, not consecutive: a new sample */
};
#define N_BASIC ((int)(sizeof BASIC / sizeof *BASIC))

/* What BASIC reads as, compressed or not. */
static void check_basic(const got *g, const char *path) {
    CHECK_EQ_INT(g->n, 8);
    if (g->n != 8) return;
    CHECK_EQ_STR(g->key[0], "00000/000000001");
    CHECK_EQ_STR(g->caption[0], "a dog");
    CHECK_EQ_INT(g->caption_len[0], 5);
    CHECK_EQ_STR(g->url[0], "http://example.com/1.jpg");
    CHECK_EQ_STR(g->ext[0], "jpg");
    CHECK(g->image[0] && g->image_len[0] == 10 && !memcmp(g->image[0], "JPEGDATA-1", 10));
    CHECK(g->error[0] == NULL);
    CHECK(g->image_path[0] == NULL);

    CHECK_EQ_STR(g->key[1], "00000/000000002");
    CHECK_EQ_STR(g->ext[1], "jpg"); /* ".JPG", compared lower-case */
    CHECK_EQ_STR(g->caption[1], "two lines\nend");
    CHECK(g->url[1] == NULL);
    CHECK(g->error[1] == NULL);

    CHECK_EQ_STR(g->key[2], "00000/000000003");
    CHECK(g->image[2] && g->image_len[2] == 9);
    CHECK(g->caption[2] == NULL && g->url[2] == NULL);
    CHECK_MSG(contains(g->error[2], "no caption") && contains(g->error[2], path) &&
                  contains(g->error[2], "00000/000000003"),
              "%s", g->error[2]);

    CHECK_EQ_STR(g->key[3], "00000/000000004");
    CHECK(g->image[3] == NULL && g->ext[3] == NULL);
    CHECK_EQ_STR(g->caption[3], "caption without image");
    CHECK_MSG(contains(g->error[3], "no image") && contains(g->error[3], path), "%s", g->error[3]);

    /* Split at the first dot of the last component: extension "y.jpg", which
     * is not an image extension by default. */
    CHECK_EQ_STR(g->key[4], "a/b.c/x");
    CHECK_EQ_STR(g->caption[4], "dotted key");
    CHECK_MSG(contains(g->error[4], "no image"), "%s", g->error[4]);

    /* Garbage as .jpg is handed over byte for byte: decoding fails later. */
    CHECK_EQ_STR(g->key[5], "corrupt");
    CHECK(g->error[5] == NULL);
    CHECK(g->image[5] && g->image_len[5] == sizeof GARBAGE - 1 &&
          !memcmp(g->image[5], GARBAGE, sizeof GARBAGE - 1));

    CHECK_EQ_STR(g->key[6], "dup");
    CHECK_MSG(contains(g->error[6], "two .txt"), "%s", g->error[6]);
    CHECK_EQ_STR(g->caption[6], "first");

    CHECK_EQ_STR(g->key[7], "00000/000000001");
    CHECK_MSG(contains(g->error[7], "no image"), "%s", g->error[7]);
}

static void test_basic(void) {
    const char *path = tpath("basic.tar");
    write_tar(path, NULL, BASIC, N_BASIC);
    got g;
    read_all(path, NULL, &g);
    check_basic(&g, path);
    got_free(&g);

    /* Compressed: by name, and sniffed without a telling name. */
    const char *gz = tpath("basic.tar.gz"), *xz = tpath("basic-xz-no-suffix");
    write_tar(gz, "gzip", BASIC, N_BASIC);
    write_tar(xz, "xz", BASIC, N_BASIC);
    read_all(gz, NULL, &g);
    check_basic(&g, gz);
    got_free(&g);
    read_all(xz, NULL, &g);
    check_basic(&g, xz);
    got_free(&g);
    const char *zst = tpath("basic.tar.zst");
    write_tar(zst, "zstd", BASIC, N_BASIC);
    read_all(zst, NULL, &g);
    check_basic(&g, zst);
    got_free(&g);

    /* The key options, several extensions with ';', any case. */
    cs_wds_options o = {.image_key = "Y.JPG", .caption_key = "txt"};
    read_all(path, &o, &g);
    CHECK_EQ_INT(g.n, 8);
    if (g.n == 8) {
        CHECK_EQ_STR(g.key[4], "a/b.c/x");
        CHECK(g.error[4] == NULL);
        CHECK(g.image[4] && g.image_len[4] == 6 && !memcmp(g.image[4], "DOTTED", 6));
        CHECK_EQ_STR(g.ext[4], "y.jpg");
        CHECK_MSG(contains(g.error[0], "no image member (.y.jpg)"), "%s", g.error[0]);
    }
    got_free(&g);
}

static void test_keys(void) {
    const member m[] = {
        {"k.cap", "the cap caption", 0}, {"k.jpg", "J", 0},   {"k.png", "P", 0},
        {"k.txt", "the txt caption", 0}, {"k.json", "[]", 0},
    };
    const char *path = tpath("keys.tar");
    write_tar(path, NULL, m, 5);
    got g;
    read_all(path, NULL, &g);
    CHECK(g.n == 1 && g.error[0] == NULL);
    if (g.n == 1) {
        CHECK_EQ_STR(g.ext[0], "jpg");
        CHECK_EQ_STR(g.caption[0], "the txt caption");
        CHECK(g.url[0] == NULL); /* json that is not an object */
    }
    got_free(&g);
    cs_wds_options o = {.image_key = "png", .caption_key = "cap"};
    read_all(path, &o, &g);
    CHECK(g.n == 1 && g.error[0] == NULL);
    if (g.n == 1) {
        CHECK(g.image[0] && g.image_len[0] == 1 && g.image[0][0] == 'P');
        CHECK_EQ_STR(g.caption[0], "the cap caption");
    }
    got_free(&g);
    o = (cs_wds_options){.image_key = "PNG;jpg"}; /* the first member matching either */
    read_all(path, &o, &g);
    CHECK(g.n == 1 && g.image[0] && g.image[0][0] == 'J');
    got_free(&g);
    o = (cs_wds_options){.caption_key = "missing"};
    read_all(path, &o, &g);
    CHECK(g.n == 1 && contains(g.error[0], "no caption member (.missing)"));
    got_free(&g);
}

static void test_limit(void) {
    static char big[5000];
    memset(big, 'x', sizeof big);
    const member m[] = {
        {"a.jpg", big, sizeof big}, {"a.txt", "big image", 0}, {"b.jpg", "small", 0},
        {"b.txt", big, sizeof big}, {"c.jpg", "fine", 0},      {"c.txt", "ok", 0},
    };
    const char *path = tpath("limit.tar");
    write_tar(path, NULL, m, 6);
    for (int skip = 0; skip < 2; skip++) {
        cs_wds_options o = {.max_member = 4096, .skip_data = skip};
        got g;
        read_all(path, &o, &g);
        CHECK_EQ_INT(g.n, 3);
        if (g.n != 3) continue;
        CHECK_MSG(contains(g.error[0], "a.jpg") && contains(g.error[0], "over the limit") &&
                      contains(g.error[0], path),
                  "%s", g.error[0]);
        CHECK_MSG(contains(g.error[1], "b.txt") && contains(g.error[1], "over the limit"), "%s",
                  g.error[1]);
        CHECK(g.error[2] == NULL);
        /* Nothing of a refused member is handed over, not even a stale buffer. */
        CHECK(g.image[0] == NULL && g.caption[1] == NULL);
        CHECK(g.image_len[0] == 0 && g.caption_len[1] == 0);
        if (!skip) CHECK_EQ_STR(g.caption[0], "big image");
        if (!skip) CHECK_EQ_STR(g.caption[2], "ok");
        got_free(&g);
    }
    /* Under the default limit, 5000 bytes are read. */
    got g;
    read_all(path, NULL, &g);
    CHECK(g.n == 3 && g.error[0] == NULL && g.image_len[0] == sizeof big);
    got_free(&g);
}

/* Offset of the first occurrence of `needle` in the file. */
static long find_in_file(const char *path, const char *needle) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n);
    long at = -1;
    if (fread(buf, 1, (size_t)n, f) == (size_t)n) {
        char *p = memmem(buf, (size_t)n, needle, strlen(needle));
        if (p) at = p - buf;
    }
    free(buf);
    fclose(f);
    return at;
}

static void test_truncated(void) {
    static char img[3][3000];
    for (int i = 0; i < 3; i++) {
        memset(img[i], 'a' + i, sizeof img[i]);
        memcpy(img[i], "MARK", 4);
        img[i][4] = (char)('0' + i);
    }
    const member m[] = {
        {"s/0.jpg", img[0], sizeof img[0]}, {"s/0.txt", "zero", 0},
        {"s/1.jpg", img[1], sizeof img[1]}, {"s/1.txt", "one", 0},
        {"s/2.jpg", img[2], sizeof img[2]}, {"s/2.txt", "two", 0},
    };
    const char *path = tpath("truncated.tar");
    write_tar(path, NULL, m, 6);
    long at = find_in_file(path, "MARK1");
    CHECK(at > 0);
    CHECK(truncate(path, at + 1000) == 0); /* in the middle of s/1.jpg */
    got g;
    read_all(path, NULL, &g);
    CHECK_EQ_INT(g.n, 2);
    if (g.n == 2) {
        CHECK(g.error[0] == NULL);
        CHECK_EQ_STR(g.caption[0], "zero");
        CHECK_EQ_STR(g.key[1], "s/1");
        fprintf(stderr, "truncated: %s\n", g.error[1]);
        CHECK_MSG(contains(g.error[1], path) && contains(g.error[1], "\"s/1\"") &&
                      contains(g.error[1], "runcated"),
                  "%s", g.error[1]);
    }
    got_free(&g);
    /* Counting sees the same samples. */
    cs_wds_options o = {.skip_data = 1};
    read_all(path, &o, &g);
    CHECK_EQ_INT(g.n, 2);
    if (g.n == 2) CHECK(contains(g.error[1], "\"s/1\""));
    got_free(&g);

    /* A file that is no tar at all: one sample with key "" and the error. */
    const char *junk = tpath("junk.tar");
    char text[2048];
    memset(text, 'q', sizeof text);
    write_file(junk, text, sizeof text);
    read_all(junk, NULL, &g);
    CHECK_EQ_INT(g.n, 1);
    if (g.n == 1) {
        CHECK_EQ_STR(g.key[0], "");
        fprintf(stderr, "not a tar: %s\n", g.error[0]);
        CHECK_MSG(contains(g.error[0], junk), "%s", g.error[0]);
    }
    got_free(&g);

    /* An empty file: no samples, no error. */
    const char *empty = tpath("empty.tar");
    write_file(empty, "", 0);
    read_all(empty, NULL, &g);
    CHECK_EQ_INT(g.n, 0);
    got_free(&g);

    /* A missing tar cannot be opened: a fatal error naming it. */
    cs_wds_reader *r = NULL;
    cs_error e = {0};
    CHECK(cs_wds_open(tpath("missing.tar"), NULL, &r, &e) == CLIPSCORE_EIO && r == NULL);
    CHECK_MSG(contains(e.msg, "missing.tar"), "%s", e.msg);
}

static void test_kind(void) {
    const char *csv = tpath("pairs.csv");
    write_file(csv, "image,caption\na.jpg,x\n", 22);
    CHECK_EQ_INT(cs_wds_kind(csv), 0);
    CHECK_EQ_INT(cs_wds_kind(tpath("basic.tar")), 1);
    CHECK_EQ_INT(cs_wds_kind(tpath("basic.tar.gz")), 1);
    CHECK_EQ_INT(cs_wds_kind(tpath("basic-xz-no-suffix")), 1); /* sniffed through xz */
    CHECK_EQ_INT(cs_wds_kind(tpath("not-yet.TAR.ZST")), 1);    /* by name alone */
    CHECK_EQ_INT(cs_wds_kind(tpath("not-there.csv")), 0);
    CHECK_EQ_INT(cs_wds_kind(tpath("empty.tar")), 1);
    CHECK_EQ_INT(cs_wds_kind(tmp), 2);
    CHECK_EQ_INT(cs_wds_kind("-"), 0);
    CHECK_EQ_INT(cs_wds_kind("/dev/null"), 0);
    /* A tar named like a CSV is still a tar. */
    const char *disguised = tpath("disguised.csv");
    write_tar(disguised, NULL, BASIC, 3);
    CHECK_EQ_INT(cs_wds_kind(disguised), 1);
}

static void test_skip_and_find(void) {
    const char *path = tpath("basic.tar");
    cs_wds_options o = {.skip_data = 1};
    got full, count;
    read_all(path, NULL, &full);
    read_all(path, &o, &count);
    CHECK_EQ_INT(count.n, full.n);
    for (int i = 0; i < count.n && i < full.n; i++) {
        CHECK_EQ_STR(count.key[i], full.key[i]);
        CHECK((count.error[i] == NULL) == (full.error[i] == NULL));
        CHECK(count.image[i] == NULL && count.caption[i] == NULL && count.url[i] == NULL);
    }
    got_free(&full);
    got_free(&count);

    const char *gz = tpath("basic.tar.gz");
    cs_wds_reader *h = NULL;
    cs_wds_sample s;
    cs_error e = {0};
    CHECK_EQ_INT(cs_wds_find(gz, NULL, "00000/000000002", &h, &s, &e), 0);
    CHECK(h != NULL);
    if (h) {
        CHECK_EQ_STR(s.key, "00000/000000002");
        CHECK_EQ_STR(s.caption, "two lines\nend");
        CHECK(s.image && s.image_len == 10 && !memcmp(s.image, "JPEGDATA-2", 10));
    }
    cs_wds_close(h);
    CHECK_EQ_INT(cs_wds_find(gz, NULL, "corrupt", &h, &s, &e), 0);
    if (h) CHECK(s.image_len == sizeof GARBAGE - 1);
    cs_wds_close(h);
    CHECK_EQ_INT(cs_wds_find(gz, NULL, "00000/00000000", &h, &s, &e), 1);
    CHECK(h == NULL);
    CHECK_EQ_INT(cs_wds_find(tpath("missing.tar"), NULL, "x", &h, &s, &e), CLIPSCORE_EIO);
    CHECK(h == NULL);
}

static void mkdirs(const char *rel) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", tmp, rel);
    for (char *s = p + strlen(tmp) + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = '\0';
            mkdir(p, 0755);
            *s = c;
            if (!c) break;
        }
    }
}

static void put(const char *rel, const char *text) {
    write_file(tpath(rel), text, strlen(text));
}

static void test_folder(void) {
    /* A folder of one dangling link, listed after "." and "..": no samples,
     * and no listing error. */
    mkdirs("files/00003");
    CHECK(symlink("nowhere", tpath("files/00003/dangling.jpg")) == 0);
    mkdirs("files/00000/sub");
    mkdirs("files/00001");
    mkdirs("files/.git");
    put("files/00000.parquet", "PAR1");
    put("files/00000_stats.json", "{\"count\": 3}");
    put("files/00000/a.jpg", "A");
    put("files/00000/a.json", "{\"url\": \"http://x/a.jpg\"}");
    put("files/00000/a.txt", "caption a\n");
    put("files/00000/sub/c.png", "C");
    put("files/00000/sub/c.txt", "caption c");
    put("files/00000/z.txt", "no image");
    put("files/00000/.hidden.jpg", "H");
    put("files/00001/b.jpg", "B");
    put("files/00001/b.txt", "caption b");
    put("files/00001/y.webp", "Y");
    put("files/.git/q.jpg", "Q");
    put("files/top.jpeg", "T");
    put("files/top.txt", "caption top");
    CHECK(symlink("00000", tpath("files/00002")) == 0);     /* a linked shard folder */
    CHECK(symlink("..", tpath("files/00000/sub/up")) == 0); /* a loop */
    CHECK(symlink("b.txt", tpath("files/00001/linked.txt")) == 0);

    const char *root = tpath("files");
    got g;
    read_all(root, NULL, &g);
    const char *keys[] = {"00000/a",     "00000/sub/c",  "00000/sub/up", "00000/z",
                          "00001/b",     "00001/linked", "00001/y",      "00002/a",
                          "00002/sub/c", "00002/sub/up", "00002/z",      "top"};
    int nk = (int)(sizeof keys / sizeof *keys);
    CHECK_EQ_INT(g.n, nk);
    for (int i = 0; i < g.n && i < nk; i++) CHECK_EQ_STR(g.key[i], keys[i]);
    if (g.n == nk) {
        char want[1024];
        snprintf(want, sizeof want, "%s/00000/a.jpg", root);
        CHECK_EQ_STR(g.image_path[0], want);
        CHECK(g.image[0] == NULL);
        CHECK_EQ_STR(g.ext[0], "jpg");
        CHECK_EQ_STR(g.caption[0], "caption a");
        CHECK_EQ_STR(g.url[0], "http://x/a.jpg");
        CHECK(g.error[0] == NULL);
        CHECK_EQ_STR(g.ext[1], "png");
        CHECK_MSG(contains(g.error[2], "link back"), "%s", g.error[2]);
        CHECK_MSG(contains(g.error[3], "no image") && contains(g.error[3], root), "%s", g.error[3]);
        CHECK(g.image_path[3] == NULL);
        CHECK_EQ_STR(g.caption[5], "caption b"); /* through a link */
        CHECK_MSG(contains(g.error[6], "no caption"), "%s", g.error[6]);
        CHECK_EQ_STR(g.caption[11], "caption top");
    }
    got_free(&g);

    /* A trailing slash is not doubled; counting gives the same samples. */
    char slash[1024];
    snprintf(slash, sizeof slash, "%s/", root);
    cs_wds_options o = {.skip_data = 1};
    read_all(slash, &o, &g);
    CHECK_EQ_INT(g.n, nk);
    if (g.n == nk) {
        char want[1024];
        snprintf(want, sizeof want, "%s/00001/b.jpg", root);
        CHECK_EQ_STR(g.image_path[4], want);
        CHECK(g.caption[4] == NULL);
    }
    got_free(&g);

    /* Unreadable and oversized captions are the sample's error. */
    put("files/00001/big.jpg", "G");
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put("files/00001/big.txt", big);
    o = (cs_wds_options){.max_member = 100};
    cs_wds_reader *h = NULL;
    cs_wds_sample s;
    cs_error e = {0};
    CHECK_EQ_INT(cs_wds_find(root, &o, "00001/big", &h, &s, &e), 0);
    if (h)
        CHECK_MSG(contains(s.error, "big.txt") && contains(s.error, "over the limit"), "%s",
                  s.error);
    cs_wds_close(h);
    CHECK_EQ_INT(cs_wds_find(root, NULL, "00000/sub/c", &h, &s, &e), 0);
    if (h) {
        CHECK_EQ_STR(s.caption, "caption c");
        CHECK(s.image_path && strstr(s.image_path, "00000/sub/c.png"));
    }
    cs_wds_close(h);
    CHECK_EQ_INT(cs_wds_find(root, NULL, "00000/nope", &h, &s, &e), 1);

    cs_wds_reader *r = NULL;
    CHECK(cs_wds_open(tpath("no-such-folder/"), NULL, &r, &e) < 0 && r == NULL);
}

/* 2000 samples with images of 1000 to 3000 bytes: the reader's memory stays
 * that of one sample (buffers double, so within 2x), the same after 100
 * samples as after 2000. */
static void test_memory(void) {
    const char *path = tpath("many.tar.gz");
    struct archive *a = tar_begin(path, "gzip");
    static char img[3000];
    memset(img, 'i', sizeof img);
    char name[64], cap[64];
    for (int i = 0; i < 2000; i++) {
        snprintf(name, sizeof name, "%05d/%09d.jpg", i / 1000, i);
        member m = {name, img, 1000 + (size_t)(i * 7919) % 2001};
        tar_add(a, &m);
        snprintf(name, sizeof name, "%05d/%09d.txt", i / 1000, i);
        snprintf(cap, sizeof cap, "caption number %d", i);
        tar_add(a, &(member){name, cap, 0});
    }
    tar_end(a);
    cs_wds_reader *r = NULL;
    cs_error e = {0};
    CHECK(cs_wds_open(path, NULL, &r, &e) == 0);
    if (!r) return;
    cs_wds_sample s;
    int n = 0, bad = 0, rc;
    size_t peak = 0, peak100 = 0, largest = 0;
    while ((rc = cs_wds_next(r, &s, &e)) == 1) {
        char want[64];
        snprintf(want, sizeof want, "caption number %d", n);
        bad += s.error != NULL || !s.caption || strcmp(s.caption, want) != 0 ||
               s.image_len != 1000 + (size_t)(n * 7919) % 2001;
        if (s.image_len > largest) largest = s.image_len;
        size_t m = cs_wds_memory_bytes(r);
        if (m > peak) peak = m;
        if (++n == 100) peak100 = peak;
    }
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(n, 2000);
    CHECK_EQ_INT(bad, 0);
    fprintf(stderr,
            "memory: peak %zu bytes over 2000 samples (after 100: %zu), largest image %zu\n", peak,
            peak100, largest);
    CHECK_MSG(peak <= 2 * largest + 4096, "peak %zu", peak);
    CHECK_EQ_INT(peak, peak100);
    cs_wds_close(r);
}

int main(void) {
    tmp = test_tmpdir("wds");
    test_basic();
    test_keys();
    test_limit();
    test_truncated();
    test_kind();
    test_skip_and_find();
    test_folder();
    test_memory();
    return test_finish("test_webdataset");
}
