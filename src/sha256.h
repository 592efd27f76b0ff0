/* sha256.h - SHA-256 through OpenSSL's libcrypto (EVP, which uses the CPU's
 * SHA extensions where present), for verifying downloads and recording the
 * weight file in run.json; plus a memo of file hashes. */
#ifndef CLIPSCORE_SHA256_H
#define CLIPSCORE_SHA256_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* A running hash. It owns a libcrypto context from cs_sha256_init until
 * cs_sha256_final or cs_sha256_free, whichever comes first. */
typedef struct cs_sha256 {
    void *md;   /* EVP_MD_CTX, NULL when not started */
    int failed; /* a libcrypto call failed: cs_sha256_final reports it */
} cs_sha256;

/* 0, or CLIPSCORE_ENOMEM / CLIPSCORE_EINTERNAL with a message (e may be NULL). */
int cs_sha256_init(cs_sha256 *s, cs_error *e);
void cs_sha256_update(cs_sha256 *s, const void *data, size_t len);
/* Writes the digest and frees the context: 0, or CLIPSCORE_EINTERNAL when
 * a libcrypto call failed along the way (digest then zeroed). */
int cs_sha256_final(cs_sha256 *s, unsigned char digest[32], cs_error *e);
/* Frees a hash that will not be finished; harmless after final or twice. */
void cs_sha256_free(cs_sha256 *s);
/* Lowercase hex of a 32-byte digest into out[65]. */
void cs_sha256_hex(const unsigned char digest[32], char out[65]);
/* Hashes a whole file. */
int cs_sha256_file(const char *path, char out_hex[65], cs_error *e);

/* Like cs_sha256_file, but remembers results in memo_path, one line per file
 * ("HEX SIZE MTIME_NS DEV INODE PATH"), so an unchanged file (same path, size,
 * modification time and inode) is hashed once. The memo only speeds things
 * up: when it cannot be read or written, the file is hashed as usual. At
 * most 256 entries are kept. When stop (may be NULL) becomes non-zero the
 * hashing gives up between 1 MiB chunks with CLIPSCORE_ECANCELED and nothing
 * is remembered. */
int cs_sha256_file_memo(const char *path, const char *memo_path, const atomic_int *stop,
                        char out_hex[65], cs_error *e);

#endif
