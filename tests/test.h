/* test.h - a minimal test harness: CHECK macros that count and report
 * failures with file and line, and helpers shared by the tests.
 * A test program returns test_finish(): 0 when every check passed. */
#ifndef CLIPSCORE_TEST_H
#define CLIPSCORE_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_checks, test_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long va_ = (long long)(a), vb_ = (long long)(b);                                      \
        CHECK_MSG(va_ == vb_, "%s = %lld, %s = %lld", #a, va_, #b, vb_);                           \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *sa_ = (a), *sb_ = (b);                                                         \
        CHECK_MSG(sa_ &&sb_ &&strcmp(sa_, sb_) == 0, "\"%s\" != \"%s\"", sa_ ? sa_ : "(null)",     \
                  sb_ ? sb_ : "(null)");                                                           \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double da_ = (double)(a), db_ = (double)(b);                                               \
        CHECK_MSG(fabs(da_ - db_) <= (tol), "%s = %.8g, %s = %.8g (tol %g)", #a, da_, #b, db_,     \
                  (double)(tol));                                                                  \
    } while (0)

static inline int test_finish(const char *name) {
    if (test_checks == 0) {
        fprintf(stderr, "%s: no checks ran\n", name);
        return 1;
    }
    fprintf(stderr, "%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

/* The shared conformance fixtures, when present (CLIPSCORE_CONFORMANCE
 * environment variable, set by CTest); NULL otherwise. */
static inline const char *test_conformance_dir(void) {
    const char *d = getenv("CLIPSCORE_CONFORMANCE");
    struct stat st;
    if (d && *d && stat(d, &st) == 0 && S_ISDIR(st.st_mode)) return d;
    return NULL;
}

/* A fresh temporary folder for a test (not removed, under $TMPDIR or /tmp). */
static inline const char *test_tmpdir(const char *tag) {
    static char buf[512];
    const char *base = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/clipscore-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    extern char *mkdtemp(char *);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

#endif
