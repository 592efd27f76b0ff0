/* sha256.h - SHA-256 (FIPS 180-4), for verifying downloads and recording
 * the weight file in run.json. */
#ifndef CLIPSCORE_SHA256_H
#define CLIPSCORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct cs_sha256 {
    uint32_t h[8];
    uint64_t len; /* bytes hashed so far */
    unsigned char buf[64];
    size_t buf_len;
} cs_sha256;

void cs_sha256_init(cs_sha256 *s);
void cs_sha256_update(cs_sha256 *s, const void *data, size_t len);
void cs_sha256_final(cs_sha256 *s, unsigned char digest[32]);
/* Lowercase hex of a 32-byte digest into out[65]. */
void cs_sha256_hex(const unsigned char digest[32], char out[65]);
/* Hashes a whole file. */
int cs_sha256_file(const char *path, char out_hex[65], cs_error *e);

/* Like cs_sha256_file, but remembers results in memo_path, one line per file
 * ("HEX SIZE MTIME_NS DEV INODE PATH"), so an unchanged file (same path, size,
 * modification time and inode) is hashed once: a 600 MB weight file costs
 * seconds to hash. The memo only speeds things up: when it cannot be read
 * or written, the file is hashed as usual. At most 256 entries are kept. */
int cs_sha256_file_memo(const char *path, const char *memo_path, char out_hex[65], cs_error *e);

#endif
