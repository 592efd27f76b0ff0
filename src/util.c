/* util.c - error messages, checked allocation, paths and atomic files. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Copies src into dst (n bytes), cutting the middle rather than the end when
 * it is too long: the end of a message is usually its reason ("...: No such
 * file"), the middle a long path. */
void cs_copy_elided(char *dst, size_t n, const char *src) {
    if (!n) return;
    size_t len = strlen(src);
    if (len < n) {
        memcpy(dst, src, len + 1);
        return;
    }
    static const char dots[] = " ... ";
    if (n < 2 * sizeof dots) {
        memcpy(dst, src, n - 1);
        dst[n - 1] = '\0';
        return;
    }
    size_t keep = n - 1 - (sizeof dots - 1), head = keep / 3, tail = keep - head;
    memcpy(dst, src, head);
    memcpy(dst + head, dots, sizeof dots - 1);
    memcpy(dst + head + sizeof dots - 1, src + len - tail, tail);
    dst[n - 1] = '\0';
}

static void set_message(cs_error *e, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    char *full = NULL;
    int n = vasprintf(&full, fmt, ap2);
    va_end(ap2);
    if (n >= 0 && full) {
        cs_copy_elided(e->msg, sizeof e->msg, full);
        free(full);
    } else {
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    }
}

int cs_fail(cs_error *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        set_message(e, fmt, ap);
        va_end(ap);
        e->code = code;
    }
    return code;
}

int cs_fail_prefix(cs_error *e, const char *fmt, ...) {
    if (!e) return CLIPSCORE_EINTERNAL;
    char prefix[512], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    int code = e->code ? e->code : CLIPSCORE_EINTERNAL;
    cs_fail(e, code, "%s: %s", prefix, old);
    return code;
}

void cs_error_clear(cs_error *e) {
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}

void *cs_malloc(size_t n, size_t size, cs_error *e) {
    if (size && n > SIZE_MAX / size) {
        cs_fail(e, CLIPSCORE_ENOMEM, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = malloc(n * size != 0 ? n * size : 1);
    if (!p) cs_fail(e, CLIPSCORE_ENOMEM, "out of memory allocating %zu bytes", n * size);
    return p;
}

void *cs_calloc(size_t n, size_t size, cs_error *e) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) cs_fail(e, CLIPSCORE_ENOMEM, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

char *cs_strdup(const char *s, cs_error *e) {
    size_t n = strlen(s) + 1;
    char *p = cs_malloc(n, 1, e);
    if (p) memcpy(p, s, n);
    return p;
}

char *cs_asprintf(cs_error *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        cs_fail(e, CLIPSCORE_EINTERNAL, "bad format string");
        return NULL;
    }
    char *p = cs_malloc((size_t)n + 1, 1, e);
    if (!p) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int cs_read_file(const char *path, size_t max_bytes, char **data, size_t *len, cs_error *e) {
    *data = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = cs_malloc(cap, 1, e);
    if (!buf) {
        fclose(fp);
        return CLIPSCORE_ENOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(fp);
                return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory reading file", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, fp);
        n += got;
        if (max_bytes && n > max_bytes) {
            free(buf);
            fclose(fp);
            return cs_fail(e, CLIPSCORE_ELIMIT, "%s: larger than %zu bytes", path, max_bytes);
        }
        if (got == 0) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) {
        free(buf);
        return cs_fail(e, CLIPSCORE_EIO, "%s: read error", path);
    }
    buf[n] = '\0';
    *data = buf;
    if (len) *len = n;
    return 0;
}

int cs_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int cs_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *cs_path_join(const char *dir, const char *name, cs_error *e) {
    if (name[0] == '/' || !dir || !dir[0]) return cs_strdup(name, e);
    size_t dl = strlen(dir);
    int slash = dir[dl - 1] == '/';
    return cs_asprintf(e, "%s%s%s", dir, slash ? "" : "/", name);
}

char *cs_path_dirname(const char *path, cs_error *e) {
    const char *s = strrchr(path, '/');
    if (!s) return cs_strdup(".", e);
    if (s == path) return cs_strdup("/", e);
    return cs_asprintf(e, "%.*s", (int)(s - path), path);
}

int cs_mkdir_p(const char *path, cs_error *e) {
    if (!path[0]) return cs_fail(e, CLIPSCORE_EARG, "cannot create a folder with an empty name");
    char *p = cs_strdup(path, e);
    if (!p) return CLIPSCORE_ENOMEM;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int rc =
                    cs_fail(e, CLIPSCORE_EIO, "cannot create folder %s: %s", p, strerror(errno));
                free(p);
                return rc;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    if (!cs_is_dir(path)) return cs_fail(e, CLIPSCORE_EIO, "%s exists and is not a folder", path);
    return 0;
}

int cs_atomic_open(cs_atomic_file *f, const char *path, cs_error *e) {
    memset(f, 0, sizeof *f);
    f->path = cs_strdup(path, e);
    if (!f->path) return CLIPSCORE_ENOMEM;
    /* The temporary lives in the destination folder so rename() is atomic. */
    f->tmp_path = cs_asprintf(e, "%s.tmp.%ld", path, (long)getpid());
    if (!f->tmp_path) {
        free(f->path);
        f->path = NULL;
        return CLIPSCORE_ENOMEM;
    }
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        int rc = cs_fail(e, CLIPSCORE_EIO, "cannot write %s: %s", f->tmp_path, strerror(errno));
        free(f->path);
        free(f->tmp_path);
        memset(f, 0, sizeof *f);
        return rc;
    }
    return 0;
}

static void atomic_release(cs_atomic_file *f) {
    free(f->path);
    free(f->tmp_path);
    memset(f, 0, sizeof *f);
}

int cs_atomic_finish(cs_atomic_file *f, cs_error *e) {
    if (!f->fp) return cs_fail(e, CLIPSCORE_EINTERNAL, "atomic file not open");
    FILE *fp = f->fp;
    int bad = ferror(fp);
    errno = 0;
    bad |= fflush(fp) != 0;
    bad |= fsync(fileno(fp)) != 0 && errno != EINVAL;
    int saved = errno;
    bad |= fclose(fp) != 0;
    if (!saved) saved = errno;
    f->fp = NULL;
    if (bad) {
        int rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", f->path,
                         strerror(saved ? saved : EIO));
        unlink(f->tmp_path);
        atomic_release(f);
        return rc;
    }
    return 0;
}

int cs_atomic_rename(cs_atomic_file *f, cs_error *e) {
    if (f->fp || !f->tmp_path) return cs_fail(e, CLIPSCORE_EINTERNAL, "atomic file not finished");
    if (rename(f->tmp_path, f->path) != 0) {
        int rc =
            cs_fail(e, CLIPSCORE_EIO, "cannot move %s into place: %s", f->path, strerror(errno));
        unlink(f->tmp_path);
        atomic_release(f);
        return rc;
    }
    atomic_release(f);
    return 0;
}

int cs_atomic_commit(cs_atomic_file *f, cs_error *e) {
    int rc = cs_atomic_finish(f, e);
    return rc ? rc : cs_atomic_rename(f, e);
}

void cs_atomic_abort(cs_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
    if (f->tmp_path) unlink(f->tmp_path);
    atomic_release(f);
}

int cs_write_file_atomic(const char *path, const void *data, size_t len, cs_error *e) {
    cs_atomic_file f;
    int rc = cs_atomic_open(&f, path, e);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, f.fp) != len) {
        cs_atomic_abort(&f);
        return cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", path, strerror(errno));
    }
    return cs_atomic_commit(&f, e);
}

size_t cs_utf8_put(uint32_t c, char out[4]) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

double cs_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cs_utc_timestamp(char out[32]) {
    time_t now = time(NULL);
    struct tm tmv;
    if (!gmtime_r(&now, &tmv) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tmv)) out[0] = '\0';
}

int cs_is_blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n\v\f", *s)) return 0;
    return 1;
}

char *cs_apply_template(const char *tpl, const char *caption, cs_error *e) {
    const char *hole = tpl ? strstr(tpl, "{}") : NULL;
    if (!hole) return cs_strdup(caption, e);
    return cs_asprintf(e, "%.*s%s%s", (int)(hole - tpl), tpl, caption, hole + 2);
}

void cs_l2_normalise(const float *v, int d, float *out) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)v[i] * v[i];
    s = sqrt(s);
    for (int i = 0; i < d; i++) out[i] = s > 0 ? (float)(v[i] / s) : NAN;
}
