/* util.h - small shared helpers: error messages, checked allocation, files.
 *
 * Every fallible function in the library takes a `cs_error *` as its last
 * argument, returns 0 on success or a negative CLIPSCORE_E* status, and on
 * failure writes a one-line human-readable message into the error (naming the
 * file, row or field involved). Nothing here exits the process. */
#ifndef CLIPSCORE_UTIL_H
#define CLIPSCORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "clipscore.h"

typedef struct cs_error {
    int code;       /* last status, 0 when none */
    char msg[1024]; /* message of the last failure, "" when none */
} cs_error;

#if defined(__GNUC__)
#define CS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CS_PRINTF(a, b)
#endif

/* Formats a message into `e` (if not NULL) and returns `code`, so callers can
 * write `return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));` */
int cs_fail(cs_error *e, int code, const char *fmt, ...) CS_PRINTF(3, 4);
/* Prefixes the existing message with more context ("loading model: ...")
 * and returns e->code. */
int cs_fail_prefix(cs_error *e, const char *fmt, ...) CS_PRINTF(2, 3);
void cs_error_clear(cs_error *e);
/* Copies a message into dst[n], cutting its middle (" ... ") rather than its
 * end when it does not fit, so the reason after a long path survives. */
void cs_copy_elided(char *dst, size_t n, const char *src);

/* Allocation that reports failure through `e` instead of aborting. Returns
 * NULL (and sets CLIPSCORE_ENOMEM) when the request cannot be met or the
 * size computation n*size overflows. */
void *cs_malloc(size_t n, size_t size, cs_error *e);
void *cs_calloc(size_t n, size_t size, cs_error *e);
char *cs_strdup(const char *s, cs_error *e);
/* printf into a newly allocated string (caller frees), NULL on failure. */
char *cs_asprintf(cs_error *e, const char *fmt, ...) CS_PRINTF(2, 3);

/* Reads a whole file into a malloc'd, NUL-terminated buffer (caller frees).
 * `max_bytes` guards against absurd inputs (0: no limit). */
int cs_read_file(const char *path, size_t max_bytes, char **data, size_t *len, cs_error *e);
int cs_file_exists(const char *path);
int cs_is_dir(const char *path);
/* Joins a directory and a relative name ("dir/name"); an absolute `name` is
 * returned as is. Caller frees. */
char *cs_path_join(const char *dir, const char *name, cs_error *e);
/* Directory part of a path ("." when none). Caller frees. */
char *cs_path_dirname(const char *path, cs_error *e);
/* Creates a directory and its parents (mode 0777 & umask); ok if present. */
int cs_mkdir_p(const char *path, cs_error *e);

/* Atomic output: data goes to a temporary file beside `path` which is renamed
 * over `path` only on cs_atomic_commit(). cs_atomic_abort() (or a failed
 * commit) removes the temporary file; the destination is never half-written. */
typedef struct cs_atomic_file {
    char *path;     /* final destination */
    char *tmp_path; /* temporary file in the same directory */
    void *fp;       /* FILE* open for writing on tmp_path */
} cs_atomic_file;
int cs_atomic_open(cs_atomic_file *f, const char *path, cs_error *e);
int cs_atomic_commit(cs_atomic_file *f, cs_error *e);
/* The two halves of a commit, for outputs committed together (commit.h):
 * finish flushes, syncs and closes the temporary (removing it on failure);
 * rename moves a finished temporary into place. */
int cs_atomic_finish(cs_atomic_file *f, cs_error *e);
int cs_atomic_rename(cs_atomic_file *f, cs_error *e);
void cs_atomic_abort(cs_atomic_file *f);
/* Writes a whole buffer atomically. */
int cs_write_file_atomic(const char *path, const void *data, size_t len, cs_error *e);

/* Writes code point c (at most U+10FFFF) as UTF-8 into out; returns the
 * byte count (1 to 4). */
size_t cs_utf8_put(uint32_t c, char out[4]);

/* 1 when s holds nothing but ASCII whitespace (an empty cell). */
int cs_is_blank(const char *s);
/* A caption with the template applied: "{}" in tpl replaced by it, once
 * (tpl NULL or without "{}": the caption itself). Caller frees. */
char *cs_apply_template(const char *tpl, const char *caption, cs_error *e);
/* out[0..d) = v / |v|, all NaN when v has zero length (v == out allowed). */
void cs_l2_normalise(const float *v, int d, float *out);

/* The current UTC time as "YYYY-MM-DDTHH:MM:SSZ" (run.json's timestamps). */
void cs_utc_timestamp(char out[32]);

/* Monotonic clock in seconds. */
double cs_now(void);

#endif
