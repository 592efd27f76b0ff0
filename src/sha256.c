/* sha256.c - SHA-256 through libcrypto's EVP interface (SHA-NI or AVX2
 * code where the CPU has them: about 5x a portable C implementation), a
 * helper that hashes a file in 1 MiB chunks, and the memo of file hashes.
 * Leaves out other digests and HMAC. */
#define _GNU_SOURCE
#include "sha256.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

int cs_sha256_init(cs_sha256 *s, cs_error *e) {
    s->failed = 0;
    s->md = EVP_MD_CTX_new();
    if (!s->md) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory starting a SHA-256 hash");
    if (EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        cs_sha256_free(s);
        return cs_fail(e, CLIPSCORE_EINTERNAL, "libcrypto cannot start a SHA-256 hash");
    }
    return 0;
}

void cs_sha256_update(cs_sha256 *s, const void *data, size_t len) {
    if (len == 0 || !s->md) return; /* data may then be NULL */
    if (EVP_DigestUpdate(s->md, data, len) != 1) s->failed = 1;
}

int cs_sha256_final(cs_sha256 *s, unsigned char digest[32], cs_error *e) {
    unsigned int n = 0;
    int ok = s->md && !s->failed && EVP_DigestFinal_ex(s->md, digest, &n) == 1 && n == 32;
    cs_sha256_free(s);
    if (ok) return 0;
    memset(digest, 0, 32);
    return cs_fail(e, CLIPSCORE_EINTERNAL, "libcrypto failed computing a SHA-256 hash");
}

void cs_sha256_free(cs_sha256 *s) {
    EVP_MD_CTX_free(s->md); /* NULL is fine */
    s->md = NULL;
}

void cs_sha256_hex(const unsigned char digest[32], char out[65]) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
}

/* Hashes path in 1 MiB reads, checking stop (may be NULL) between them. */
static int hash_file(const char *path, const atomic_int *stop, char out_hex[65], cs_error *e) {
    out_hex[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    const size_t chunk = (size_t)1 << 20;
    unsigned char *buf = cs_malloc(chunk, 1, e);
    cs_sha256 s = {0};
    int rc = buf ? cs_sha256_init(&s, e) : CLIPSCORE_ENOMEM;
    while (!rc) {
        if (stop && atomic_load(stop)) {
            rc = cs_fail(e, CLIPSCORE_ECANCELED, "%s: hashing canceled", path);
            break;
        }
        ssize_t got = read(fd, buf, chunk);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) rc = cs_fail(e, CLIPSCORE_EIO, "%s: read error: %s", path, strerror(errno));
        if (got <= 0) break;
        cs_sha256_update(&s, buf, (size_t)got);
    }
    close(fd);
    free(buf);
    unsigned char digest[32];
    if (!rc && !(rc = cs_sha256_final(&s, digest, e))) cs_sha256_hex(digest, out_hex);
    cs_sha256_free(&s);
    return rc;
}

int cs_sha256_file(const char *path, char out_hex[65], cs_error *e) {
    return hash_file(path, NULL, out_hex, e);
}

/* ---- memo of file hashes ---------------------------------------------- */

#define MEMO_MAX_ENTRIES 256

int cs_sha256_file_memo(const char *path, const char *memo_path, const atomic_int *stop,
                        char out_hex[65], cs_error *e) {
    struct stat st;
    char *real = realpath(path, NULL);
    if (!real || stat(real, &st) != 0) {
        free(real);
        return hash_file(path, stop, out_hex, e);
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
    int rc = hash_file(path, stop, out_hex, e);
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
