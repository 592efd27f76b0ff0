/* test_files.h - scratch files for the image tests (test_image.c,
 * test_formats.c): paths in the test's temporary folder, and whole-file
 * writes and reads that end the test on failure (a test that cannot write
 * its input has nothing to check). Set tmp before use. */
#ifndef CLIPSCORE_TEST_FILES_H
#define CLIPSCORE_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>

#include "util.h"

static const char *tmp; /* the test's temporary folder */

/* tmp/name, in one of 8 rotating static buffers. */
static inline char *tmp_path(const char *name) {
    static char buf[8][600];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmp, name);
    return p;
}

static inline void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(path);
        exit(2);
    }
    fclose(f);
}

/* The whole file, malloc'd (caller frees). */
static inline unsigned char *read_bytes(const char *path, size_t *len) {
    cs_error e = {0};
    char *data = NULL;
    if (cs_read_file(path, 0, &data, len, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(2);
    }
    return (unsigned char *)data;
}

#endif
