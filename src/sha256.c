/* sha256.c - SHA-256 as specified in FIPS 180-4, streaming, plus a helper
 * that hashes a file in 1 MiB chunks. Leaves out SHA-224 and HMAC. */
#define _GNU_SOURCE
#include "sha256.h"

#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t rotr(uint32_t x, int n) {
    return (x >> n) | (x << (32 - n));
}

static void compress(uint32_t h[8], const unsigned char block[64]) {
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 |
               (uint32_t)block[4 * t + 2] << 8 | (uint32_t)block[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t S1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t t1 = k + S1 + ch + K[t] + w[t];
        uint32_t S0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        uint32_t t2 = S0 + maj;
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

void cs_sha256_init(cs_sha256 *s) {
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof h0);
    s->len = 0;
    s->buf_len = 0;
}

void cs_sha256_update(cs_sha256 *s, const void *data, size_t len) {
    if (len == 0) return; /* data may then be NULL */
    const unsigned char *p = data;
    s->len += len;
    if (s->buf_len) {
        size_t take = 64 - s->buf_len < len ? 64 - s->buf_len : len;
        memcpy(s->buf + s->buf_len, p, take);
        s->buf_len += take;
        p += take;
        len -= take;
        if (s->buf_len < 64) return;
        compress(s->h, s->buf);
        s->buf_len = 0;
    }
    for (; len >= 64; p += 64, len -= 64) compress(s->h, p);
    if (len) memcpy(s->buf, p, len);
    s->buf_len = len;
}

void cs_sha256_final(cs_sha256 *s, unsigned char digest[32]) {
    uint64_t bits = s->len * 8;
    /* Padding: 0x80, zeros to 56 mod 64, then the bit length big-endian. */
    unsigned char pad[72] = {0x80};
    size_t npad = (s->buf_len < 56 ? 56 : 120) - s->buf_len;
    for (int i = 0; i < 8; i++) pad[npad + i] = (unsigned char)(bits >> (56 - 8 * i));
    uint64_t len = s->len;
    cs_sha256_update(s, pad, npad + 8);
    s->len = len;
    for (int i = 0; i < 8; i++) {
        digest[4 * i] = (unsigned char)(s->h[i] >> 24);
        digest[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        digest[4 * i + 2] = (unsigned char)(s->h[i] >> 8);
        digest[4 * i + 3] = (unsigned char)s->h[i];
    }
}

void cs_sha256_hex(const unsigned char digest[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
}

int cs_sha256_file(const char *path, char out_hex[65], cs_error *e) {
    out_hex[0] = '\0';
    FILE *fp = fopen(path, "rb");
    if (!fp) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    size_t chunk = (size_t)1 << 20;
    unsigned char *buf = cs_malloc(chunk, 1, e);
    if (!buf) {
        fclose(fp);
        return CLIPSCORE_ENOMEM;
    }
    cs_sha256 s;
    cs_sha256_init(&s);
    size_t got;
    while ((got = fread(buf, 1, chunk, fp)) > 0) cs_sha256_update(&s, buf, got);
    int bad = ferror(fp), err = errno;
    fclose(fp);
    free(buf);
    if (bad)
        return cs_fail(e, CLIPSCORE_EIO, "%s: read error: %s", path, strerror(err ? err : EIO));
    unsigned char digest[32];
    cs_sha256_final(&s, digest);
    cs_sha256_hex(digest, out_hex);
    return 0;
}

/* ---- memo of file hashes ---------------------------------------------- */

#define MEMO_MAX_ENTRIES 256

int cs_sha256_file_memo(const char *path, const char *memo_path, char out_hex[65], cs_error *e) {
    struct stat st;
    char *real = realpath(path, NULL);
    if (!real || stat(real, &st) != 0) {
        free(real);
        return cs_sha256_file(path, out_hex, e);
    }
    char key[128];
    snprintf(key, sizeof key, "%lld %lld %llu %llu", (long long)st.st_size,
             (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec,
             (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
    char *memo = NULL;
    size_t memo_len = 0;
    cs_error ignored;
    if (memo_path && cs_read_file(memo_path, 1u << 20, &memo, &memo_len, &ignored) != 0)
        memo = NULL;
    /* Lines: HEX KEY PATH; a match needs the key and the path. */
    size_t keylen = strlen(key), reallen = strlen(real);
    for (char *line = memo; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len == 64 + 1 + keylen + 1 + reallen && line[64] == ' ' &&
            memcmp(line + 65, key, keylen) == 0 && line[65 + keylen] == ' ' &&
            memcmp(line + 66 + keylen, real, reallen) == 0 &&
            strspn(line, "0123456789abcdef") == 64) {
            memcpy(out_hex, line, 64);
            out_hex[64] = '\0';
            free(memo);
            free(real);
            return 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    int rc = cs_sha256_file(path, out_hex, e);
    if (rc == 0 && memo_path) {
        /* Rewrite: the newest entry first, then up to MAX-1 older lines. */
        cs_atomic_file f;
        if (cs_atomic_open(&f, memo_path, &ignored) == 0) {
            fprintf(f.fp, "%s %s %s\n", out_hex, key, real);
            int kept = 1;
            for (char *line = memo; line && *line && kept < MEMO_MAX_ENTRIES;) {
                char *nl = strchr(line, '\n');
                size_t len = nl ? (size_t)(nl - line) : strlen(line);
                int same_path = len >= reallen &&
                                memcmp(line + len - reallen, real, reallen) == 0 && len > reallen &&
                                line[len - reallen - 1] == ' ';
                if (len > 66 && !same_path) {
                    fwrite(line, 1, len, f.fp);
                    fputc('\n', f.fp);
                    kept++;
                }
                line = nl ? nl + 1 : NULL;
            }
            cs_atomic_commit(&f, &ignored);
        }
    }
    free(memo);
    free(real);
    return rc;
}
