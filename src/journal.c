/* journal.c - the scored rows of a run, kept so a stopped run can continue
 * (see journal.h).
 *
 * File layout (integers little-endian):
 *   "clipscore journal 1\n", the identity as one JSON line
 *   records: u32 magic, u32 payload bytes, u32 CRC-32 of the payload, payload
 *     ROW:   i64 index, i64 line, u32 flags, f64 similarity, f64 RefCLIPScore,
 *            u32 n_fields, n x (u32 length, bytes), u32 error length
 *            (0xffffffff: none), bytes, the image's path likewise (for
 *            report.html's thumbnails), [2 x dim f32 embeddings],
 *            [i32 w, i32 h, w*h*3 bytes thumbnail]
 *     MARK:  empty payload, after the last row of a cache epoch: a restart
 *            continues from the last mark. */
#define _GNU_SOURCE
#include "journal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define JOURNAL_MAGIC_LINE "clipscore journal 2\n"
#define REC_ROW 0x574f524au  /* "JROW" */
#define REC_MARK 0x4b52414du /* "MARK" */
#define NO_ERROR 0xffffffffu
#define F_HAS_EMB 0x100u
#define F_HAS_THUMB 0x200u
#define SYNC_SECONDS 2.0
#define SYNC_BATCHES 8
#define MAX_RECORD ((uint32_t)1 << 30)

struct cs_journal {
    char *path;
    FILE *fp;
    int dim;
    int batches_unsynced;
    int64_t rows; /* rows in the file, resumed ones included */
    int fresh;    /* this run started the file (0: continuing one, or none) */
    double last_sync;
    unsigned char *buf; /* record being built */
    size_t len, cap;
};

int cs_journal_exists(const char *dir) {
    char *p = cs_path_join(dir, CS_JOURNAL_NAME, NULL);
    int yes = p && cs_file_exists(p);
    free(p);
    return yes;
}

/* ------------------------------------------------------------ encoding */

static int put(cs_journal *j, const void *d, size_t n, cs_error *e) {
    if (j->len + n > j->cap) {
        size_t cap = j->cap ? j->cap : 4096;
        while (cap < j->len + n) cap *= 2;
        unsigned char *nb = realloc(j->buf, cap);
        if (!nb) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory for the journal");
        j->buf = nb;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, d, n);
    j->len += n;
    return 0;
}

static int put_u32(cs_journal *j, uint32_t v, cs_error *e) {
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return put(j, b, 4, e);
}

static int put_u64(cs_journal *j, uint64_t v, cs_error *e) {
    int rc = put_u32(j, (uint32_t)v, e);
    return rc ? rc : put_u32(j, (uint32_t)(v >> 32), e);
}

static int put_f64(cs_journal *j, double v, cs_error *e) {
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return put_u64(j, u, e);
}

static int put_bytes(cs_journal *j, const void *d, size_t n, cs_error *e) {
    if (n >= NO_ERROR) return cs_fail(e, CLIPSCORE_ELIMIT, "journal: a field of %zu bytes", n);
    int rc = put_u32(j, (uint32_t)n, e);
    return rc ? rc : put(j, d, n, e);
}

/* Writes the record built in j->buf (from byte 12 on) with its header. */
static int emit(cs_journal *j, uint32_t magic, cs_error *e) {
    size_t payload = j->len - 12;
    uint32_t crc = (uint32_t)crc32(0L, j->buf + 12, (uInt)payload);
    uint32_t h[3] = {magic, (uint32_t)payload, crc};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) j->buf[4 * i + k] = (unsigned char)(h[i] >> (8 * k));
    if (fwrite(j->buf, 1, j->len, j->fp) != j->len)
        return cs_fail(e, CLIPSCORE_EIO, "writing %s: %s", j->path, strerror(errno));
    return 0;
}

/* Starts a record: room for its header, which emit fills in. */
static int begin(cs_journal *j, cs_error *e) {
    static const unsigned char header[12];
    j->len = 0;
    return put(j, header, sizeof header, e);
}

int cs_journal_add(cs_journal *j, const cs_scored_row *r, unsigned flags, int with_emb,
                   cs_error *e) {
    if (begin(j, e)) return CLIPSCORE_ENOMEM;
    const cs_image *t = r->thumb && r->thumb->px && r->thumb->channels == 3 ? r->thumb : NULL;
    flags |= (with_emb ? F_HAS_EMB : 0) | (t ? F_HAS_THUMB : 0);
    int rc = put_u64(j, (uint64_t)(int64_t)r->index, e);
    if (!rc) rc = put_u64(j, (uint64_t)(int64_t)r->line, e);
    if (!rc) rc = put_u32(j, flags, e);
    if (!rc) rc = put_f64(j, r->similarity, e);
    if (!rc) rc = put_f64(j, r->refclipscore, e);
    if (!rc) rc = put_u32(j, (uint32_t)r->n_fields, e);
    for (int k = 0; !rc && k < r->n_fields; k++) rc = put_bytes(j, r->fields[k], r->lens[k], e);
    if (!rc) rc = r->error ? put_bytes(j, r->error, strlen(r->error), e) : put_u32(j, NO_ERROR, e);
    if (!rc)
        rc = r->image_path ? put_bytes(j, r->image_path, strlen(r->image_path), e)
                           : put_u32(j, NO_ERROR, e);
    if (!rc && with_emb) {
        rc = put(j, r->img_emb, (size_t)j->dim * sizeof(float), e);
        if (!rc) rc = put(j, r->txt_emb, (size_t)j->dim * sizeof(float), e);
    }
    if (!rc && t) {
        rc = put_u32(j, (uint32_t)t->w, e);
        if (!rc) rc = put_u32(j, (uint32_t)t->h, e);
        if (!rc) rc = put(j, t->px, (size_t)t->w * (size_t)t->h * 3, e);
    }
    if (!rc) rc = emit(j, REC_ROW, e);
    if (!rc) j->rows++;
    return rc;
}

static int sync_now(cs_journal *j, cs_error *e) {
    if (fflush(j->fp) != 0 || fdatasync(fileno(j->fp)) != 0)
        return cs_fail(e, CLIPSCORE_EIO, "writing %s: %s", j->path, strerror(errno));
    j->batches_unsynced = 0;
    j->last_sync = cs_now();
    return 0;
}

int cs_journal_batch_done(cs_journal *j, int mark, cs_error *e) {
    int rc = mark ? begin(j, e) : 0;
    if (!rc && mark) rc = emit(j, REC_MARK, e);
    if (rc) return rc;
    /* Flushed every batch: a killed process loses nothing the kernel has.
     * Synced now and then: a crashed node loses a few seconds at most. */
    if (fflush(j->fp) != 0)
        return cs_fail(e, CLIPSCORE_EIO, "writing %s: %s", j->path, strerror(errno));
    if (++j->batches_unsynced >= SYNC_BATCHES || cs_now() - j->last_sync >= SYNC_SECONDS)
        return sync_now(j, e);
    return 0;
}

/* ------------------------------------------------------------ decoding */

typedef struct reader {
    const unsigned char *p, *end;
    int bad;
} reader;

static uint32_t get_u32(reader *r) {
    if (r->end - r->p < 4) {
        r->bad = 1;
        return 0;
    }
    uint32_t v = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 |
                 (uint32_t)r->p[3] << 24;
    r->p += 4;
    return v;
}

static uint64_t get_u64(reader *r) {
    uint64_t lo = get_u32(r);
    return lo | (uint64_t)get_u32(r) << 32;
}

static const unsigned char *get_span(reader *r, size_t n) {
    if ((size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *s = r->p;
    r->p += n;
    return s;
}

/* Decodes one ROW payload and hands it to fn. Strings are copied so they
 * can be NUL-terminated. */
static int replay_row(const unsigned char *d, size_t n, int dim, cs_journal_replay_fn fn, void *arg,
                      const char *path, cs_error *e) {
    reader r = {d, d + n, 0};
    cs_journal_row jr;
    memset(&jr, 0, sizeof jr);
    cs_scored_row *s = &jr.row;
    s->index = (long)(int64_t)get_u64(&r);
    s->line = (long)(int64_t)get_u64(&r);
    uint32_t flags = get_u32(&r);
    uint64_t bits = get_u64(&r);
    memcpy(&s->similarity, &bits, sizeof bits);
    bits = get_u64(&r);
    memcpy(&s->refclipscore, &bits, sizeof bits);
    uint32_t nf = get_u32(&r);
    if (r.bad || nf > (uint32_t)(n / 4))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt row record", path);
    char **f = cs_calloc(nf ? nf : 1, sizeof *f, e);
    size_t *lens = cs_calloc(nf ? nf : 1, sizeof *lens, e);
    char *err = NULL, *img_path = NULL;
    float *emb = NULL;
    cs_image thumb;
    memset(&thumb, 0, sizeof thumb);
    int rc = f && lens ? 0 : CLIPSCORE_ENOMEM;
    for (uint32_t k = 0; !rc && k < nf; k++) {
        uint32_t l = get_u32(&r);
        const unsigned char *b = get_span(&r, l);
        if (r.bad) break;
        if (!(f[k] = cs_malloc((size_t)l + 1, 1, e))) rc = CLIPSCORE_ENOMEM;
        if (!rc) {
            memcpy(f[k], b, l);
            f[k][l] = '\0';
            lens[k] = l;
        }
    }
    for (int k = 0; k < 2; k++) { /* the error, then the image's path */
        char **dst = k ? &img_path : &err;
        uint32_t el = rc ? 0 : get_u32(&r);
        if (rc || r.bad || el == NO_ERROR) continue;
        const unsigned char *b = get_span(&r, el);
        if (!r.bad && !(*dst = cs_malloc((size_t)el + 1, 1, e))) rc = CLIPSCORE_ENOMEM;
        if (*dst) {
            memcpy(*dst, b, el);
            (*dst)[el] = '\0';
        }
    }
    if (!rc && !(emb = cs_malloc((size_t)dim * 2, sizeof *emb, e))) rc = CLIPSCORE_ENOMEM;
    if (!rc && !r.bad) {
        if (flags & F_HAS_EMB) {
            const unsigned char *b = get_span(&r, (size_t)dim * 2 * sizeof *emb);
            if (b) memcpy(emb, b, (size_t)dim * 2 * sizeof *emb);
        } else {
            for (int k = 0; k < 2 * dim; k++) emb[k] = NAN;
        }
    }
    if (!rc && !r.bad && (flags & F_HAS_THUMB)) {
        uint32_t w = get_u32(&r), h = get_u32(&r);
        if (!r.bad && (w == 0 || h == 0 || w > 65536 || h > 65536)) r.bad = 1;
        const unsigned char *b = r.bad ? NULL : get_span(&r, (size_t)w * h * 3);
        if (b && !(rc = cs_image_alloc(&thumb, (int)w, (int)h, 3, e)))
            memcpy(thumb.px, b, (size_t)w * h * 3);
    }
    if (!rc && (r.bad || r.p != r.end))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt row record", path);
    if (!rc) {
        s->n_fields = (int)nf;
        s->fields = f;
        s->lens = lens;
        s->error = err;
        s->image_path = img_path;
        s->img_emb = emb;
        s->txt_emb = emb + dim;
        s->thumb = thumb.px ? &thumb : NULL;
        jr.flags = flags & (CLIPSCORE_TOKEN_TRUNCATED | CLIPSCORE_TOKEN_INVALID_UTF8);
        rc = fn(arg, &jr, e);
    }
    for (uint32_t k = 0; f && k < nf; k++) free(f[k]);
    free(f);
    free(lens);
    free(err);
    free(img_path);
    free(emb);
    cs_image_free(&thumb);
    return rc;
}

/* Names the first difference between the stopped run's identity and this
 * run's, for the refusal. */
static void describe_change(const cJSON *old, const cJSON *now, char *out, size_t n) {
    snprintf(out, n, "the journal is from another version");
    if (!cJSON_IsObject(old)) return;
    const cJSON *item;
    cJSON_ArrayForEach(item, now) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(old, item->string);
        if (o && cJSON_Compare(o, item, 1)) continue;
        if (strcmp(item->string, "inputs") == 0 && cJSON_IsArray(o)) {
            int i = 0;
            const cJSON *a, *b = o->child;
            cJSON_ArrayForEach(a, item) {
                const cJSON *pa = cJSON_GetObjectItemCaseSensitive(a, "path");
                if (!b) {
                    snprintf(out, n, "input %s was added", cJSON_GetStringValue(pa));
                    return;
                }
                if (!cJSON_Compare(a, b, 1)) {
                    const cJSON *pb = cJSON_GetObjectItemCaseSensitive(b, "path");
                    if (!cJSON_Compare(pa, pb, 1))
                        snprintf(out, n, "input %d was %s, now %s", i + 1, cJSON_GetStringValue(pb),
                                 cJSON_GetStringValue(pa));
                    else
                        snprintf(out, n, "input %s has changed (size or modification time)",
                                 cJSON_GetStringValue(pa));
                    return;
                }
                b = b->next;
                i++;
            }
            snprintf(out, n, "an input was removed");
            return;
        }
        /* In an object of options, the option that changed. */
        const char *name = item->string;
        const cJSON *was = o, *now_v = item;
        if (cJSON_IsObject(o) && cJSON_IsObject(item)) {
            const cJSON *sub;
            cJSON_ArrayForEach(sub, item) {
                const cJSON *os = cJSON_GetObjectItemCaseSensitive(o, sub->string);
                if (!os || !cJSON_Compare(os, sub, 1)) {
                    name = sub->string;
                    was = os;
                    now_v = sub;
                    break;
                }
            }
        }
        char *a = was ? cJSON_PrintUnformatted(was) : NULL, *b = cJSON_PrintUnformatted(now_v);
        snprintf(out, n, "%s was %s, now %s", name, a ? a : "absent", b ? b : "?");
        free(a);
        free(b);
        return;
    }
}

/* Reads the journal at path: checks its identity against id, finds the
 * last mark whose records before it are all intact (a first pass),
 * then replays the rows up to it (a second): the rows of a batch cut short
 * are scored again, never handed to the writers twice. *good: the offset
 * after that mark. */
static int replay(const char *path, const cJSON *id, int dim, cs_journal_replay_fn fn, void *arg,
                  int64_t *rows, long *good, cs_error *e) {
    *rows = 0;
    *good = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    ssize_t n = getline(&line, &cap, fp);
    if (n < 0 || strcmp(line, JOURNAL_MAGIC_LINE) != 0)
        rc = cs_fail(e, CLIPSCORE_EFORMAT,
                     "%s is not a clipscore journal; remove it, or use --restart", path);
    if (!rc && (n = getline(&line, &cap, fp)) < 0)
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: no run identity; use --restart", path);
    if (!rc) {
        cJSON *old = cJSON_Parse(line);
        if (!cJSON_Compare(old, id, 1)) {
            char what[512];
            describe_change(old, id, what, sizeof what);
            rc = cs_fail(e, CLIPSCORE_EARG,
                         "a stopped run left %s, and this run differs from it: %s. Run the same "
                         "command to continue it, or add --restart to start over",
                         path, what);
        }
        cJSON_Delete(old);
    }
    free(line);
    *good = rc ? 0 : ftell(fp);
    int64_t batch_rows = 0;
    unsigned char *buf = NULL;
    size_t bcap = 0;
    while (!rc) {
        unsigned char h[12];
        if (fread(h, 1, 12, fp) != 12) break; /* end, or a record cut short */
        uint32_t magic =
            (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        uint32_t len =
            (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        uint32_t crc =
            (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
        if ((magic != REC_ROW && magic != REC_MARK) || len > MAX_RECORD) break;
        if (len + 1 > bcap) {
            unsigned char *nb = realloc(buf, (size_t)len + 1);
            if (!nb) {
                rc = cs_fail(e, CLIPSCORE_ENOMEM, "out of memory reading %s", path);
                break;
            }
            buf = nb;
            bcap = (size_t)len + 1;
        }
        if (fread(buf, 1, len, fp) != len || (uint32_t)crc32(0L, buf, (uInt)len) != crc) break;
        if (magic == REC_MARK) {
            *rows += batch_rows;
            batch_rows = 0;
            *good = ftell(fp);
            continue;
        }
        batch_rows++;
    }
    if (!rc && *rows > 0) {
        if (fseek(fp, 0, SEEK_SET) != 0) rc = cs_fail(e, CLIPSCORE_EIO, "%s: seek failed", path);
        char *l = NULL;
        size_t lc = 0;
        for (int i = 0; !rc && i < 2; i++)
            if (getline(&l, &lc, fp) < 0) rc = cs_fail(e, CLIPSCORE_EIO, "%s: read failed", path);
        free(l);
        while (!rc && ftell(fp) < *good) {
            unsigned char h[12];
            if (fread(h, 1, 12, fp) != 12) {
                rc = cs_fail(e, CLIPSCORE_EIO, "%s: read failed", path);
                break;
            }
            uint32_t magic =
                (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
            uint32_t len =
                (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
            if (fread(buf, 1, len, fp) != len) {
                rc = cs_fail(e, CLIPSCORE_EIO, "%s: read failed", path);
                break;
            }
            if (magic == REC_ROW) rc = replay_row(buf, len, dim, fn, arg, path, e);
        }
    }
    free(buf);
    fclose(fp);
    return rc;
}

/* ------------------------------------------------------------ open/close */

int cs_journal_open(const char *dir, cJSON *id, int restart, int dim, cs_journal_replay_fn fn,
                    void *arg, cs_journal **out, int64_t *resumed, cs_error *e) {
    *out = NULL;
    *resumed = 0;
    cs_journal *j = cs_calloc(1, sizeof *j, e);
    char *idline = cJSON_PrintUnformatted(id);
    int rc = j && idline ? 0 : CLIPSCORE_ENOMEM;
    if (!rc && !(j->path = cs_path_join(dir, CS_JOURNAL_NAME, e))) rc = CLIPSCORE_ENOMEM;
    if (!rc) j->dim = dim;
    long good = 0;
    if (!rc && !restart && cs_file_exists(j->path)) {
        rc = replay(j->path, id, dim, fn, arg, resumed, &good, e);
        /* The rows after the last whole batch are scored again: cut them. */
        if (!rc && truncate(j->path, good) != 0)
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", j->path, strerror(errno));
        if (!rc && !(j->fp = fopen(j->path, "ab")))
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", j->path, strerror(errno));
    } else if (!rc) {
        j->fresh = 1;
        if (!(j->fp = fopen(j->path, "wb")))
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", j->path, strerror(errno));
        else if (fputs(JOURNAL_MAGIC_LINE, j->fp) < 0 || fputs(idline, j->fp) < 0 ||
                 fputc('\n', j->fp) < 0)
            rc = cs_fail(e, CLIPSCORE_EIO, "writing %s: %s", j->path, strerror(errno));
        if (!rc) rc = sync_now(j, e);
    }
    free(idline);
    cJSON_Delete(id);
    if (rc) {
        cs_journal_close(j, 0);
        return rc;
    }
    j->last_sync = cs_now();
    j->rows = *resumed;
    *out = j;
    return 0;
}

void cs_journal_close(cs_journal *j, int remove) {
    if (!j) return;
    if (j->fp) fclose(j->fp);
    /* A journal this run started and wrote no row to holds nothing worth
     * continuing; one it found is never removed but after a commit. */
    if (j->fresh && j->rows == 0) remove = 1;
    if (remove && j->path) unlink(j->path);
    free(j->path);
    free(j->buf);
    free(j);
}
