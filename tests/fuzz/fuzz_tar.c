/* fuzz_tar.c - fuzzes the webdataset tar reader (webdataset.h): the input is
 * a tar shard (any compression libarchive detects), written to a temp file
 * and read three ways: with data, counting only (skip_data), and with a
 * 16-byte member limit; then the first sample is looked up by key.
 *
 * Invariants: every sample has a key; a handed-over caption is NUL-terminated
 * at its length; an image has an extension;
 * a sample without error has both an image and a caption; every error names
 * the tar; after a "truncated or corrupt" sample the reader ends; the three
 * passes see the same keys in the same order and agree on which samples are
 * in error (the limit pass may add errors, never remove them); cs_wds_find
 * returns the first sample of that key with the same data. */
#include <string.h>

#include "fuzz_common.h"
#include "webdataset.h"

#define MAX_KEYS 256
#define MAX_MEMBER 65536

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_tmpdir();
    return 0;
}

typedef struct pass {
    int n;
    char *key[MAX_KEYS];
    int bad[MAX_KEYS];
    /* The first sample's data, for cs_wds_find. */
    char *caption0;
    size_t caption0_len, image0_len;
} pass;

static void check_sample(const cs_wds_sample *s, const char *path, int skip_data) {
    FUZZ_CHECK(s->key != NULL, "sample without key");
    if (s->caption) {
        FUZZ_CHECK(s->caption[s->caption_len] == '\0', "caption not NUL-terminated at %zu",
                   s->caption_len);
        FUZZ_CHECK(strlen(s->caption) <= s->caption_len, "caption longer than its length");
        FUZZ_CHECK(!skip_data, "caption read while counting");
    }
    if (s->image) {
        FUZZ_CHECK(s->image_ext != NULL, "image without extension");
        FUZZ_CHECK(s->image_len <= MAX_MEMBER, "image of %zu bytes over the limit", s->image_len);
        FUZZ_CHECK(!skip_data, "image read while counting");
        /* Every byte is readable (ASan checks the range). */
        volatile unsigned sum = 0;
        for (size_t i = 0; i < s->image_len; i++) sum += s->image[i];
        (void)sum;
    }
    FUZZ_CHECK(s->image_path == NULL, "a tar sample with an image path");
    if (!s->error) {
        FUZZ_CHECK(s->image_ext != NULL, "sample without error and without image");
        if (!skip_data) FUZZ_CHECK(s->image && s->caption, "sample without error, data missing");
    } else {
        FUZZ_CHECK(strstr(s->error, path) != NULL, "error not naming the tar: %s", s->error);
    }
}

/* Reads the whole tar. */
static void read_pass(const char *path, const cs_wds_options *o, pass *p) {
    memset(p, 0, sizeof *p);
    cs_wds_reader *r = NULL;
    cs_error e = {0};
    int rc = cs_wds_open(path, o, &r, &e);
    FUZZ_CHECK(rc == 0 && r, "open failed on a readable file: %s", e.msg);
    cs_wds_sample s;
    int ended = 0;
    while ((rc = cs_wds_next(r, &s, &e)) == 1) {
        FUZZ_CHECK(!ended, "a sample after the tar broke");
        check_sample(&s, path, o->skip_data);
        /* The message starts so (a key or member name cannot come first). */
        if (s.error && !strncmp(s.error, path, strlen(path)) &&
            !strncmp(s.error + strlen(path), ": truncated or corrupt tar ", 27))
            ended = 1;
        if (p->n == 0 && s.caption) {
            p->caption0 = fuzz_strndup((const uint8_t *)s.caption, s.caption_len);
            p->caption0_len = s.caption_len;
        }
        if (p->n == 0) p->image0_len = s.image_len;
        if (p->n < MAX_KEYS) {
            p->key[p->n] = fuzz_strndup((const uint8_t *)s.key, strlen(s.key));
            p->bad[p->n] = s.error != NULL;
        }
        p->n++;
    }
    if (rc < 0) FUZZ_CHECK_ERROR(rc, e);
    rc = cs_wds_next(r, &s, &e);
    FUZZ_CHECK(rc == 0, "reader did not stay at its end (rc %d)", rc);
    cs_wds_close(r);
}

static void free_pass(pass *p) {
    for (int i = 0; i < p->n && i < MAX_KEYS; i++) free(p->key[i]);
    free(p->caption0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "shard.tar");
    fuzz_write_file(path, data, size);

    pass full, count, small;
    cs_wds_options o = {.max_member = MAX_MEMBER};
    read_pass(path, &o, &full);
    o.skip_data = 1;
    read_pass(path, &o, &count);
    o = (cs_wds_options){.max_member = 16};
    read_pass(path, &o, &small);

    FUZZ_CHECK(count.n == full.n && small.n == full.n, "sample counts differ: %d, %d, %d", full.n,
               count.n, small.n);
    for (int i = 0; i < full.n && i < MAX_KEYS; i++) {
        FUZZ_CHECK(!strcmp(full.key[i], count.key[i]) && !strcmp(full.key[i], small.key[i]),
                   "sample %d: keys differ", i);
        FUZZ_CHECK(full.bad[i] == count.bad[i], "sample %d: error only when %s", i,
                   full.bad[i] ? "reading" : "counting");
        FUZZ_CHECK(small.bad[i] || !full.bad[i], "sample %d: a smaller limit removed an error", i);
    }

    if (full.n > 0) {
        cs_wds_reader *h = NULL;
        cs_wds_sample s;
        cs_error e = {0};
        o = (cs_wds_options){.max_member = MAX_MEMBER};
        int rc = cs_wds_find(path, &o, full.key[0], &h, &s, &e);
        FUZZ_CHECK(rc == 0 && h, "the first key \"%s\" not found again (rc %d)", full.key[0], rc);
        FUZZ_CHECK(!strcmp(s.key, full.key[0]), "found another key");
        FUZZ_CHECK((s.error != NULL) == full.bad[0], "find and read disagree on the error");
        FUZZ_CHECK(s.image_len == full.image0_len, "find gave %zu image bytes, read %zu",
                   s.image_len, full.image0_len);
        FUZZ_CHECK((s.caption == NULL) == (full.caption0 == NULL) &&
                       (!s.caption || (s.caption_len == full.caption0_len &&
                                       !memcmp(s.caption, full.caption0, s.caption_len))),
                   "find and read give different captions");
        cs_wds_close(h);
    }
    free_pass(&full);
    free_pass(&count);
    free_pass(&small);
    return 0;
}
