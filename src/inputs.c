/* inputs.c - the rows of a run's inputs, in order, and a shard's share of
 * them (see inputs.h). */
#define _GNU_SOURCE
#include "inputs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "csv_io.h"
#include "sha256.h"
#include "webdataset.h"

enum { KIND_CSV = 0, KIND_TAR = 1, KIND_FOLDER = 2 };

static const char *const sample_header[] = {"key", "source", "url", "caption"};
enum { SAMPLE_FIELDS = 4, SAMPLE_CAPTION = 3 };

typedef struct input {
    const char *path; /* as given (borrowed from the params) */
    int kind;
    int col_img, col_cap, col_url; /* CSV columns (-1: none) */
    int n_header;
    char *base;          /* folder relative image paths resolve against (CSV) */
    cs_csv_reader *held; /* a stream's reader, kept open after its header */
} input;

struct cs_inputs {
    cs_inputs_params p;
    input *in; /* [n_paths] */
    int n;
    int sample_schema;
    int n_header;
    char **header; /* output header, owned */
    char *image_column, *caption_column;
    int first, last;    /* this shard's inputs */
    int64_t lo, hi;     /* row mode: global rows [lo, hi); -1 otherwise */
    int64_t pos;        /* global row position of the next row (row mode) */
    long index;         /* rows returned so far */
    int cur;            /* input being read; == last when done */
    cs_csv_reader *csv; /* open reader of in[cur], one of the two */
    cs_wds_reader *wds;
    /* The current row's storage. */
    char *f[SAMPLE_FIELDS];
    size_t len[SAMPLE_FIELDS];
    char **cf; /* CSV fields (copies), n_cf of them */
    size_t *clen;
    int n_cf, cap_cf;
    char *path, *id, *error;
};

/* ------------------------------------------------------------ opening */

static int open_csv_columns(cs_inputs *in, input *x, cs_error *e) {
    cs_csv_reader *r = NULL;
    int rc = cs_csv_open(x->path, &r, e);
    if (rc) return rc;
    const cs_csv_record *h = cs_csv_header(r);
    x->n_header = h->n;
    x->col_img =
        cs_csv_find_column(h, x->path, in->p.image_column, cs_csv_image_columns, "image", e);
    if (x->col_img < 0) rc = x->col_img;
    if (!rc) {
        x->col_cap = cs_csv_find_column(h, x->path, in->p.caption_column, cs_csv_caption_columns,
                                        "caption", e);
        if (x->col_cap < 0) rc = x->col_cap;
    }
    if (!rc && x->col_img == x->col_cap)
        rc = cs_fail(e, CLIPSCORE_EARG, "%s: the image and caption columns are both '%s'", x->path,
                     h->fields[x->col_img]);
    x->col_url = -1;
    for (int k = 0; !rc && k < h->n; k++)
        if (k != x->col_img && strcasecmp(h->fields[k], "url") == 0) x->col_url = k;
    /* The first CSV's header is the output header when every input is a
     * CSV with this same header (checked by the caller). */
    if (!rc && !in->header) {
        in->n_header = h->n;
        in->header = cs_calloc((size_t)(h->n ? h->n : 1), sizeof *in->header, e);
        if (!in->header) rc = CLIPSCORE_ENOMEM;
        for (int k = 0; !rc && k < h->n; k++)
            if (!(in->header[k] = cs_strdup(h->fields[k], e))) rc = CLIPSCORE_ENOMEM;
        if (!rc && (!(in->image_column = cs_strdup(h->fields[x->col_img], e)) ||
                    !(in->caption_column = cs_strdup(h->fields[x->col_cap], e))))
            rc = CLIPSCORE_ENOMEM;
    } else if (!rc && !in->sample_schema) {
        int same = h->n == in->n_header;
        for (int k = 0; same && k < h->n; k++) same = strcmp(h->fields[k], in->header[k]) == 0;
        if (!same) in->sample_schema = 1;
    }
    if (!rc) {
        x->base = in->p.image_root                                  ? cs_strdup(in->p.image_root, e)
                  : strcmp(x->path, "-") == 0 || cs_is_dir(x->path) ? cs_strdup(".", e)
                                                                    : cs_path_dirname(x->path, e);
        if (!x->base) rc = CLIPSCORE_ENOMEM;
    }
    /* Streams (pipes, devices) have no folder of their own, and can be read
     * once only: their reader stays open for the rows. */
    struct stat st;
    int stream = strcmp(x->path, "-") == 0 || strncmp(x->path, "/dev/", 5) == 0 ||
                 strncmp(x->path, "/proc/", 6) == 0 ||
                 (stat(x->path, &st) == 0 && !S_ISREG(st.st_mode));
    if (!rc && stream && !in->p.image_root) {
        free(x->base);
        if (!(x->base = cs_strdup(".", e))) rc = CLIPSCORE_ENOMEM;
    }
    if (!rc && stream)
        x->held = r;
    else
        cs_csv_close(r);
    return rc;
}

static void wds_options(const cs_inputs *in, int skip, cs_wds_options *o) {
    memset(o, 0, sizeof *o);
    o->image_key = in->p.image_key;
    o->caption_key = in->p.caption_key;
    o->skip_data = skip;
}

/* Rows of one input, reading no image data. */
static int count_rows(cs_inputs *in, const input *x, int64_t *n, cs_error *e) {
    *n = 0;
    int rc;
    if (x->kind == KIND_CSV) {
        if (strcmp(x->path, "-") == 0)
            return cs_fail(e, CLIPSCORE_EARG,
                           "standard input cannot be split into shards by rows; "
                           "save it to a file first");
        cs_csv_reader *r = NULL;
        if ((rc = cs_csv_open(x->path, &r, e))) return rc;
        cs_csv_record rec;
        int malformed = 0;
        cs_error re;
        while ((rc = cs_csv_next(r, &rec, &malformed, &re)) == 1) ++*n;
        if (rc < 0) *e = re;
        cs_csv_close(r);
        return rc < 0 ? rc : 0;
    }
    cs_wds_options o;
    wds_options(in, 1, &o);
    cs_wds_reader *w = NULL;
    if ((rc = cs_wds_open(x->path, &o, &w, e))) return rc;
    cs_wds_sample s;
    while ((rc = cs_wds_next(w, &s, e)) == 1) ++*n;
    cs_wds_close(w);
    return rc < 0 ? rc : 0;
}

static int choose_share(cs_inputs *in, cs_error *e) {
    int K = in->p.shard_index, N = in->p.shard_count;
    in->first = 0;
    in->last = in->n;
    in->lo = in->hi = -1;
    if (N <= 0) return 0;
    if (K < 0 || K >= N)
        return cs_fail(e, CLIPSCORE_EARG, "shard %d/%d: K must be in 0..%d", K, N, N - 1);
    if (in->n >= N) {
        in->first = (int)((int64_t)K * in->n / N);
        in->last = (int)((int64_t)(K + 1) * in->n / N);
        return 0;
    }
    int64_t total = 0;
    for (int i = 0; i < in->n; i++) {
        int64_t rows;
        int rc = count_rows(in, &in->in[i], &rows, e);
        if (rc) return rc;
        total += rows;
    }
    in->lo = K * total / N;
    in->hi = (K + 1) * total / N;
    return 0;
}

/* Whether input i is read by this shard when shards take whole inputs (or
 * may be, when they take rows): only those are opened up front, so that
 * each task of a large array does not open every shard of the dataset. */
static int in_share(const cs_inputs_params *p, int n, int i) {
    int K = p->shard_index, N = p->shard_count;
    if (N <= 0 || n < N || K < 0 || K >= N) return 1;
    return i >= (int)((int64_t)K * n / N) && i < (int)((int64_t)(K + 1) * n / N);
}

int cs_inputs_open(const cs_inputs_params *p, cs_inputs **out, cs_error *e) {
    *out = NULL;
    if (!p->n_paths) return cs_fail(e, CLIPSCORE_EARG, "no input given");
    cs_inputs *in = cs_calloc(1, sizeof *in, e);
    if (!in) return CLIPSCORE_ENOMEM;
    in->p = *p;
    in->n = p->n_paths;
    int rc = (in->in = cs_calloc((size_t)in->n, sizeof *in->in, e)) ? 0 : CLIPSCORE_ENOMEM;
    int csvs = 0, stdin_uses = 0;
    for (int i = 0; !rc && i < in->n; i++) {
        input *x = &in->in[i];
        x->path = p->paths[i];
        x->col_img = x->col_cap = x->col_url = -1;
        if (!x->path || !*x->path) {
            rc = cs_fail(e, CLIPSCORE_EARG, "input %d is an empty name", i + 1);
            break;
        }
        stdin_uses += strcmp(x->path, "-") == 0;
        x->kind = strcmp(x->path, "-") == 0 ? KIND_CSV : cs_wds_kind(x->path);
        if (x->kind == KIND_CSV && cs_is_dir(x->path)) x->kind = KIND_FOLDER;
        if (x->kind == KIND_CSV) {
            csvs++;
            rc = open_csv_columns(in, x, e);
        } else if (!in_share(p, in->n, i)) {
            in->sample_schema = 1; /* another shard's: not opened here */
        } else {
            in->sample_schema = 1;
            /* Opened now so a missing or unreadable input fails up front. */
            cs_wds_options o;
            wds_options(in, 1, &o);
            cs_wds_reader *w = NULL;
            rc = cs_wds_open(x->path, &o, &w, e);
            cs_wds_close(w);
        }
    }
    if (!rc && stdin_uses > 1)
        rc = cs_fail(e, CLIPSCORE_EARG, "standard input (-) is given %d times", stdin_uses);
    (void)csvs;
    if (!rc && in->sample_schema) {
        for (int k = 0; k < in->n_header; k++) free(in->header[k]);
        free(in->header);
        in->n_header = SAMPLE_FIELDS;
        in->header = cs_calloc(SAMPLE_FIELDS, sizeof *in->header, e);
        if (!in->header) rc = CLIPSCORE_ENOMEM;
        for (int k = 0; !rc && k < SAMPLE_FIELDS; k++)
            if (!(in->header[k] = cs_strdup(sample_header[k], e))) rc = CLIPSCORE_ENOMEM;
    }
    if (!rc && !in->image_column &&
        (!(in->image_column = cs_strdup("", e)) || !(in->caption_column = cs_strdup("", e))))
        rc = CLIPSCORE_ENOMEM;
    if (!rc) rc = choose_share(in, e);
    in->cur = in->first - 1; /* nothing open yet */
    in->pos = 0;
    if (rc) {
        cs_inputs_close(in);
        return rc;
    }
    *out = in;
    return 0;
}

int cs_inputs_n_header(const cs_inputs *in) {
    return in->n_header;
}
const char *const *cs_inputs_header(const cs_inputs *in) {
    return (const char *const *)in->header;
}
int cs_inputs_sample_schema(const cs_inputs *in) {
    return in->sample_schema;
}
const char *cs_inputs_image_column(const cs_inputs *in) {
    return in->image_column;
}
const char *cs_inputs_caption_column(const cs_inputs *in) {
    return in->caption_column;
}
int cs_inputs_caption_field(const cs_inputs *in) {
    return in->sample_schema ? SAMPLE_CAPTION : in->in[0].col_cap;
}
int cs_inputs_image_field(const cs_inputs *in) {
    return in->sample_schema ? 0 : in->in[0].col_img;
}
void cs_inputs_share(const cs_inputs *in, int *first, int *last, int64_t *lo, int64_t *hi) {
    *first = in->first;
    *last = in->last;
    *lo = in->lo;
    *hi = in->hi;
}
int64_t cs_inputs_rows_hint(const cs_inputs *in) {
    return in->lo >= 0 ? in->hi - in->lo : -1;
}

static void close_current(cs_inputs *in) {
    cs_csv_close(in->csv);
    cs_wds_close(in->wds);
    in->csv = NULL;
    in->wds = NULL;
}

void cs_inputs_close(cs_inputs *in) {
    if (!in) return;
    close_current(in);
    for (int i = 0; in->in && i < in->n; i++) {
        free(in->in[i].base);
        cs_csv_close(in->in[i].held);
    }
    free(in->in);
    for (int k = 0; k < in->n_header; k++) free(in->header[k]);
    free(in->header);
    free(in->image_column);
    free(in->caption_column);
    for (int k = 0; k < SAMPLE_FIELDS; k++) free(in->f[k]);
    for (int k = 0; k < in->n_cf; k++) free(in->cf[k]);
    free(in->cf);
    free(in->clen);
    free(in->path);
    free(in->id);
    free(in->error);
    free(in);
}

/* ------------------------------------------------------------ rows */

static int set_str(char **slot, const char *s, size_t n, cs_error *e) {
    free(*slot);
    *slot = cs_malloc(n + 1, 1, e);
    if (!*slot) return CLIPSCORE_ENOMEM;
    memcpy(*slot, s, n);
    (*slot)[n] = '\0';
    return 0;
}

static int set_error(cs_inputs *in, cs_error *e, const char *fmt, ...) CS_PRINTF(3, 4);
static int set_error(cs_inputs *in, cs_error *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    free(in->error);
    in->error = NULL;
    int n = vasprintf(&in->error, fmt, ap);
    va_end(ap);
    if (n < 0) {
        in->error = NULL;
        return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    }
    return 0;
}

/* Fills the sample-schema fields. */
static int sample_fields(cs_inputs *in, const char *key, const char *source, const char *url,
                         const char *caption, size_t caption_len, cs_error *e) {
    int rc = set_str(&in->f[0], key, strlen(key), e);
    if (!rc) rc = set_str(&in->f[1], source, strlen(source), e);
    if (!rc) rc = set_str(&in->f[2], url ? url : "", url ? strlen(url) : 0, e);
    if (!rc) rc = set_str(&in->f[3], caption ? caption : "", caption ? caption_len : 0, e);
    for (int k = 0; k < SAMPLE_FIELDS; k++) in->len[k] = in->f[k] ? strlen(in->f[k]) : 0;
    if (caption) in->len[3] = caption_len;
    return rc;
}

/* One CSV record into *row: its fields (or the sample schema's), its image
 * path, caption, or the reason it cannot be scored. */
static int csv_row(cs_inputs *in, const input *x, const cs_csv_record *rec, int malformed,
                   const cs_error *re, cs_input_row *row, cs_error *e) {
    if (rec->n > in->cap_cf) {
        char **cf = realloc(in->cf, (size_t)rec->n * sizeof *cf);
        if (cf) in->cf = cf;
        size_t *cl = cf ? realloc(in->clen, (size_t)rec->n * sizeof *cl) : NULL;
        if (cl) in->clen = cl;
        if (!cf || !cl) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        for (int k = in->cap_cf; k < rec->n; k++) in->cf[k] = NULL;
        in->cap_cf = rec->n;
    }
    for (int k = 0; k < rec->n; k++) {
        if (set_str(&in->cf[k], rec->fields[k], rec->lens[k], e)) return CLIPSCORE_ENOMEM;
        in->clen[k] = rec->lens[k];
    }
    for (int k = rec->n; k < in->n_cf; k++) {
        free(in->cf[k]);
        in->cf[k] = NULL;
    }
    in->n_cf = rec->n;
    row->line = rec->line;
    int ok_shape = !malformed && rec->n == x->n_header;
    const char *image = ok_shape ? in->cf[x->col_img] : "";
    const char *caption = ok_shape ? in->cf[x->col_cap] : "";
    if (in->sample_schema) {
        const char *url = ok_shape && x->col_url >= 0 ? in->cf[x->col_url] : NULL;
        if (sample_fields(in, image, x->path, url, caption, ok_shape ? in->clen[x->col_cap] : 0, e))
            return CLIPSCORE_ENOMEM;
        row->n_fields = SAMPLE_FIELDS;
        row->fields = in->f;
        row->lens = in->len;
    } else {
        row->n_fields = rec->n;
        row->fields = in->cf;
        row->lens = in->clen;
    }
    if (malformed) return set_error(in, e, "%s", re->msg);
    if (rec->n != x->n_header)
        return set_error(in, e, "row has %d fields, the header has %d", rec->n, x->n_header);
    if (strlen(image) != in->clen[x->col_img] || strlen(caption) != in->clen[x->col_cap])
        return set_error(in, e, "%s", "field contains a NUL byte");
    if (cs_is_blank(image)) return set_error(in, e, "%s", "empty image path");
    if (cs_is_blank(caption)) return set_error(in, e, "%s", "empty caption");
    if (strncmp(image, "http://", 7) == 0 || strncmp(image, "https://", 8) == 0)
        return set_error(in, e, "%s: images are read from local files; download them first", image);
    free(in->path);
    if (!(in->path = cs_path_join(x->base, image, e))) return CLIPSCORE_ENOMEM;
    row->image_path = in->path;
    row->image_id = in->path;
    row->caption = caption;
    return 0;
}

static int sample_row(cs_inputs *in, const input *x, const cs_wds_sample *s, cs_input_row *row,
                      cs_error *e) {
    if (sample_fields(in, s->key ? s->key : "", x->path, s->url, s->caption, s->caption_len, e))
        return CLIPSCORE_ENOMEM;
    row->n_fields = SAMPLE_FIELDS;
    row->fields = in->f;
    row->lens = in->len;
    if (s->error) return set_error(in, e, "%s", s->error);
    if (!s->caption || cs_is_blank(s->caption)) return set_error(in, e, "%s", "empty caption");
    if (strlen(s->caption) != s->caption_len)
        return set_error(in, e, "%s", "caption contains a NUL byte");
    row->caption = in->f[3];
    if (s->image_path) {
        if (set_str(&in->path, s->image_path, strlen(s->image_path), e)) return CLIPSCORE_ENOMEM;
        row->image_path = in->path;
        row->image_id = in->path;
    } else {
        row->image_data = s->image;
        row->image_len = s->image_len;
        /* Two tars may hold the same key: the id names the tar too. */
        free(in->id);
        if (!(in->id = cs_asprintf(e, "%s\x1f%s", x->path, s->key ? s->key : "")))
            return CLIPSCORE_ENOMEM;
        row->image_id = in->id;
    }
    return 0;
}

/* Reads the next row of the open input into *row: 1, or 0 at its end. */
static int next_of_input(cs_inputs *in, cs_input_row *row, cs_error *e) {
    const input *x = &in->in[in->cur];
    free(in->error);
    in->error = NULL;
    if (x->kind == KIND_CSV) {
        cs_csv_record rec;
        int malformed = 0;
        cs_error re;
        cs_error_clear(&re);
        int rc = cs_csv_next(in->csv, &rec, &malformed, &re);
        if (rc < 0) {
            *e = re;
            return rc;
        }
        if (rc == 0) return 0;
        if ((rc = csv_row(in, x, &rec, malformed, &re, row, e))) return rc;
    } else {
        cs_wds_sample s;
        int rc = cs_wds_next(in->wds, &s, e);
        if (rc <= 0) return rc;
        if ((rc = sample_row(in, x, &s, row, e))) return rc;
    }
    if (in->error) {
        row->error = in->error;
        row->caption = NULL;
        row->image_path = NULL;
        row->image_data = NULL;
        row->image_len = 0;
    }
    return 1;
}

static int open_input(cs_inputs *in, int i, cs_error *e) {
    input *x = &in->in[i];
    if (x->held) {
        in->csv = x->held;
        x->held = NULL;
        return 0;
    }
    if (x->kind == KIND_CSV) return cs_csv_open(x->path, &in->csv, e);
    cs_wds_options o;
    wds_options(in, 0, &o);
    return cs_wds_open(x->path, &o, &in->wds, e);
}

int cs_inputs_next(cs_inputs *in, cs_input_row *row, cs_error *e) {
    for (;;) {
        if (in->hi >= 0 && in->pos >= in->hi) return 0;
        if (!in->csv && !in->wds) {
            if (++in->cur >= in->last) {
                in->cur = in->last;
                return 0;
            }
            int rc = open_input(in, in->cur, e);
            if (rc) return rc;
        }
        memset(row, 0, sizeof *row);
        int rc = next_of_input(in, row, e);
        if (rc < 0) return rc;
        if (rc == 0) {
            close_current(in);
            continue;
        }
        int64_t pos = in->pos++;
        if (in->lo >= 0 && pos < in->lo) continue; /* another shard's row */
        row->index = in->index++;
        row->source = in->in[in->cur].path;
        return 1;
    }
}

/* ------------------------------------------------------------ digest */

int cs_inputs_digest(const char *const *paths, int n, char out[65], cs_error *e) {
    cs_sha256 s;
    int rc = cs_sha256_init(&s, e);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        struct stat st;
        long long size =
            strcmp(paths[i], "-") != 0 && stat(paths[i], &st) == 0 && S_ISREG(st.st_mode)
                ? (long long)st.st_size
                : -1;
        char num[32];
        int m = snprintf(num, sizeof num, "%lld", size);
        cs_sha256_update(&s, paths[i], strlen(paths[i]) + 1);
        cs_sha256_update(&s, num, (size_t)m + 1);
    }
    unsigned char d[32];
    if ((rc = cs_sha256_final(&s, d, e))) return rc;
    cs_sha256_hex(d, out);
    return 0;
}
