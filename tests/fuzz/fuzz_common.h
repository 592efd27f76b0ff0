/* fuzz_common.h - what every fuzz harness shares: the libFuzzer entry points,
 * a per-process scratch folder for parsers that only read files, and the
 * invariant check that turns a broken promise into a crash the fuzzer (or the
 * replay test) reports.
 *
 * The same harness source builds two ways: with clang and -fsanitize=fuzzer
 * (libFuzzer supplies main), or with any compiler plus replay_main.c, which
 * runs the harness over files given on the command line. */
#ifndef CLIPSCORE_FUZZ_COMMON_H
#define CLIPSCORE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message when an invariant of the code under test fails:
 * abort() is what libFuzzer and the sanitizers treat as a crash. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond);           \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A failed call must say why: negative status, the same code in e, a
 * message; and CLIPSCORE_EINTERNAL is the library admitting a bug. */
#define FUZZ_CHECK_ERROR(rc, e)                                                                    \
    FUZZ_CHECK((rc) < 0 && (rc) != CLIPSCORE_EINTERNAL && (e).code == (rc) && (e).msg[0] != '\0',  \
               "rc %d, e.code %d, e.msg \"%s\"", (int)(rc), (e).code, (e).msg)

/* The scratch folder (created on first use, removed at exit with its files). */
const char *fuzz_tmpdir(void);
/* fuzz_tmpdir()/name, in a static buffer per slot (0..3). */
const char *fuzz_path(int slot, const char *name);
/* Writes bytes to a file, aborting on failure (a full disk is not a finding
 * about the parser, but silently testing a stale file would be worse). */
void fuzz_write_file(const char *path, const void *data, size_t size);
/* A NUL-terminated copy (caller frees). */
char *fuzz_strndup(const uint8_t *data, size_t size);
/* Whether bytes are valid UTF-8 (no surrogates, nothing above U+10FFFF, shortest form). */
int fuzz_valid_utf8(const char *s, size_t n);

#endif
