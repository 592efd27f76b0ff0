/* pipeline.c - the batch scorer behind clipscore_score_csv().
 *
 * Rows stream through five stages, a batch of --batch-size rows at a time:
 *   read     CSV records are copied into a batch; image paths resolved,
 *            the caption template applied; repeated images and captions
 *            within the batch, or already in the embedding caches, are
 *            collapsed so each is encoded once
 *   prepare  the worker pool decodes and preprocesses the batch's images
 *            (and the thumbnails the figures need); captions are tokenised
 *   encode   the image and text encoders run on the batch's unique inputs,
 *            captions grouped by length so padding is cut
 *   combine  cosine similarity of each row's pair
 *   write    rows are appended to output.csv in input order
 * The workers prepare batch k+1 while batch k is encoded, so at most two
 * batches are in memory: memory depends on the batch size, never on the
 * number of rows. Every output is written to a temporary file and renamed
 * into place at the end; a failed run leaves nothing half-written. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clipscore.h"
#include "context.h"
#include "csv_io.h"
#include "embed_cache.h"
#include "image.h"
#include "npy.h"
#include "util.h"
#ifdef CLIPSCORE_HAVE_FIGURES
#include "figures.h"
#endif

#define THUMB_SIDE 256     /* thumbnail size kept for image_captions.jpg */
#define CACHE_ENTRIES 4096 /* embeddings remembered per kind across batches */
#define TEXT_CHUNK 64      /* captions per text-encoder call, grouped by length */

clipscore_score_params clipscore_default_score_params(void) {
    clipscore_score_params p;
    memset(&p, 0, sizeof p);
    p.caption_template = "{}";
    p.metric = CLIPSCORE_METRIC_COSINE;
    p.batch_size = 32;
    p.figures = 1;
    p.figure_limit = 64;
    p.progress = 1;
    return p;
}

/* ------------------------------------------------------------ batches */

typedef struct uimage { /* a distinct image of a batch */
    char *path;
    int want_thumb; /* a row of it is drawn in the figures */
    int cached;     /* embedding came from the cache: no decode */
    int px_slot;    /* slot in batch.px, -1 when cached */
    int rc;         /* decode status */
    char *error;
    cs_image thumb;
    float *emb; /* -> batch.img_emb row */
} uimage;

typedef struct utext { /* a distinct caption of a batch */
    char *text;        /* after the template */
    int cached;
    int32_t *ids; /* -> batch.ids row */
    int n_ids;
    unsigned flags;
    int rc;
    char *error;
    float *emb; /* -> batch.txt_emb row */
} utext;

typedef struct row {
    long index, line;
    int n; /* fields */
    char **f;
    size_t *len;
    int img, txt; /* uimage / utext index, -1 when the row failed before */
    char *error;  /* owned; NULL when scored */
    double sim;
} row;

typedef struct batch {
    int n_rows, n_img, n_txt;
    row *rows;             /* [B] */
    uimage *img;           /* [B] */
    utext *txt;            /* [B] */
    float *px;             /* [B][3][R][R] */
    float *img_emb;        /* [B][D] */
    int32_t *ids;          /* [B][T] */
    float *txt_emb;        /* [B][D] */
    int pending;           /* decode jobs not finished (guarded by the pool mutex) */
    double decode_seconds; /* summed over workers (guarded by the pool mutex) */
} batch;

/* ------------------------------------------------------------ worker pool */

typedef struct task {
    batch *b;
    int i;
} task;

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t has_task, task_done;
    task *q;
    int cap, head, len;
    int stop;
    int n;
    pthread_t *th;
    const cs_preprocess_cfg *pp;
    int64_t max_pixels;
} pool;

static void prepare_image(pool *p, batch *b, int i) {
    uimage *u = &b->img[i];
    cs_error e;
    cs_error_clear(&e);
    cs_image img;
    const size_t per = 3 * (size_t)p->pp->size * (size_t)p->pp->size;
    int rc = cs_image_load(u->path, p->max_pixels, &img, &e);
    if (!rc) {
        rc = cs_image_preprocess(&img, p->pp, b->px + (size_t)u->px_slot * per, &e);
        if (!rc && u->want_thumb) rc = cs_image_thumbnail(&img, THUMB_SIDE, &u->thumb, &e);
        cs_image_free(&img);
    }
    if (rc) {
        u->rc = rc;
        u->error = strdup(e.msg[0] ? e.msg : clipscore_status_name(rc));
        if (!u->error) u->rc = CLIPSCORE_ENOMEM;
    }
}

static void *worker(void *arg) {
    pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->len == 0) pthread_cond_wait(&p->has_task, &p->mu);
        if (p->len == 0) break; /* stopping and drained */
        task t = p->q[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        pthread_mutex_unlock(&p->mu);
        double t0 = cs_now();
        prepare_image(p, t.b, t.i);
        double dt = cs_now() - t0;
        pthread_mutex_lock(&p->mu);
        t.b->decode_seconds += dt;
        if (--t.b->pending == 0) pthread_cond_broadcast(&p->task_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int pool_start(pool *p, int n, int queue, const cs_preprocess_cfg *pp, int64_t max_pixels,
                      cs_error *e) {
    memset(p, 0, sizeof *p);
    p->pp = pp;
    p->max_pixels = max_pixels;
    p->cap = queue;
    p->q = cs_malloc((size_t)queue, sizeof *p->q, e);
    p->th = cs_calloc((size_t)n, sizeof *p->th, e);
    if (!p->q || !p->th) {
        free(p->q);
        free(p->th);
        return CLIPSCORE_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->has_task, NULL);
    pthread_cond_init(&p->task_done, NULL);
    for (int i = 0; i < n; i++) {
        if (pthread_create(&p->th[i], NULL, worker, p) != 0) break;
        p->n++;
    }
    if (p->n == 0) {
        free(p->q);
        free(p->th);
        return cs_fail(e, CLIPSCORE_EINTERNAL, "cannot start worker threads: %s", strerror(errno));
    }
    return 0;
}

static void pool_stop(pool *p) {
    if (!p->th) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->has_task);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->has_task);
    pthread_cond_destroy(&p->task_done);
    free(p->q);
    free(p->th);
    memset(p, 0, sizeof *p);
}

/* Queues the decode jobs of a batch (the queue holds two batches' worth). */
static void pool_submit(pool *p, batch *b) {
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < b->n_img; i++) {
        if (b->img[i].cached || b->img[i].rc) continue;
        p->q[(p->head + p->len) % p->cap] = (task){b, i};
        p->len++;
        b->pending++;
    }
    pthread_cond_broadcast(&p->has_task);
    pthread_mutex_unlock(&p->mu);
}

static void pool_wait(pool *p, batch *b) {
    pthread_mutex_lock(&p->mu);
    while (b->pending > 0) pthread_cond_wait(&p->task_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* ------------------------------------------------------------ the run */

typedef struct stage_times {
    double read, wait, decode_cpu, text, image, write, figures, total;
} stage_times;

typedef struct run {
    clipscore_context *ctx;
    const clipscore_score_params *sp;
    cs_error *e;
    int B, D, T, R;
    cs_csv_reader *csv;
    int n_header, col_img, col_cap;
    char *img_base; /* folder relative image paths resolve against */
    char *out_dir;
    char *sim_name, *err_name, *cs_name; /* output column names */
    cs_atomic_file out;
    int save;
    cs_npy_stream npy_img, npy_txt;
    cs_embed_cache *img_cache, *txt_cache;
    pool pool;
    batch b[2];
    /* figures: the first fig_limit rows */
    int fig_limit, fig_n;
    cs_image *fig_thumbs;
    char **fig_caps, **fig_errs;
    float *fig_scores, *fig_img, *fig_txt; /* [limit], [limit][D] normalised */
    /* bookkeeping */
    clipscore_score_summary sum;
    double sim_total;
    long images_encoded, texts_encoded;
    int noted_truncated, noted_utf8;
    stage_times t;
    /* progress */
    long total_rows; /* from a first pass, -1 unknown */
    int tty;
    double t_start, t_last;
} run;

static int batch_alloc(run *r, batch *b) {
    const size_t B = (size_t)r->B;
    memset(b, 0, sizeof *b);
    b->rows = cs_calloc(B, sizeof *b->rows, r->e);
    b->img = cs_calloc(B, sizeof *b->img, r->e);
    b->txt = cs_calloc(B, sizeof *b->txt, r->e);
    b->px = cs_torch_host_alloc(r->ctx->model, B * 3 * (size_t)r->R * (size_t)r->R * sizeof *b->px);
    if (!b->px) return cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory for the image batch");
    b->img_emb = cs_malloc(B * (size_t)r->D, sizeof *b->img_emb, r->e);
    b->ids = cs_malloc(B * (size_t)r->T, sizeof *b->ids, r->e);
    b->txt_emb = cs_malloc(B * (size_t)r->D, sizeof *b->txt_emb, r->e);
    if (!b->rows || !b->img || !b->txt || !b->px || !b->img_emb || !b->ids || !b->txt_emb)
        return CLIPSCORE_ENOMEM;
    return 0;
}

static void batch_clear(batch *b) {
    for (int i = 0; i < b->n_rows; i++) {
        row *w = &b->rows[i];
        for (int k = 0; k < w->n; k++) free(w->f[k]);
        free(w->f);
        free(w->len);
        free(w->error);
    }
    for (int i = 0; i < b->n_img; i++) {
        free(b->img[i].path);
        free(b->img[i].error);
        cs_image_free(&b->img[i].thumb);
    }
    for (int i = 0; i < b->n_txt; i++) {
        free(b->txt[i].text);
        free(b->txt[i].error);
    }
    memset(b->rows, 0, (size_t)b->n_rows * sizeof *b->rows);
    memset(b->img, 0, (size_t)b->n_img * sizeof *b->img);
    memset(b->txt, 0, (size_t)b->n_txt * sizeof *b->txt);
    b->n_rows = b->n_img = b->n_txt = 0;
    b->decode_seconds = 0;
}

static void batch_free(batch *b) {
    if (b->rows) batch_clear(b);
    free(b->rows);
    free(b->img);
    free(b->txt);
    cs_torch_host_free(b->px);
    free(b->img_emb);
    free(b->ids);
    free(b->txt_emb);
    memset(b, 0, sizeof *b);
}

static int row_fail(row *w, const char *fmt, const char *arg) {
    char msg[1200];
    snprintf(msg, sizeof msg, fmt, arg);
    free(w->error);
    w->error = strdup(msg);
    return w->error ? 0 : CLIPSCORE_ENOMEM;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (!strchr(" \t\r\n\v\f", *s)) return 0;
    return 1;
}

/* The caption with the template applied ("{}" replaced by it, once). */
static char *apply_template(const char *tpl, const char *caption, cs_error *e) {
    const char *hole = strstr(tpl, "{}");
    if (!hole) return cs_strdup(caption, e);
    return cs_asprintf(e, "%.*s%s%s", (int)(hole - tpl), tpl, caption, hole + 2);
}

static int add_image(run *r, batch *b, const char *path, int want_thumb, int *idx) {
    for (int i = 0; i < b->n_img; i++)
        if (strcmp(b->img[i].path, path) == 0) {
            b->img[i].want_thumb |= want_thumb;
            *idx = i;
            return 0;
        }
    uimage *u = &b->img[b->n_img];
    if (!(u->path = cs_strdup(path, r->e))) return CLIPSCORE_ENOMEM;
    u->want_thumb = want_thumb;
    u->px_slot = -1;
    u->emb = b->img_emb + (size_t)b->n_img * (size_t)r->D;
    *idx = b->n_img++;
    return 0;
}

static int add_text(run *r, batch *b, char *text /* taken */, int *idx) {
    for (int i = 0; i < b->n_txt; i++)
        if (strcmp(b->txt[i].text, text) == 0) {
            free(text);
            *idx = i;
            return 0;
        }
    utext *u = &b->txt[b->n_txt];
    u->text = text;
    u->ids = b->ids + (size_t)b->n_txt * (size_t)r->T;
    u->emb = b->txt_emb + (size_t)b->n_txt * (size_t)r->D;
    *idx = b->n_txt++;
    return 0;
}

/* Copies the next record into row w and decides what it needs. */
static int read_row(run *r, batch *b, row *w, const cs_csv_record *rec, int malformed,
                    const cs_error *re) {
    w->index = rec->index;
    w->line = rec->line;
    w->img = w->txt = -1;
    w->sim = NAN;
    w->n = rec->n;
    w->f = cs_calloc((size_t)(rec->n ? rec->n : 1), sizeof *w->f, r->e);
    w->len = cs_calloc((size_t)(rec->n ? rec->n : 1), sizeof *w->len, r->e);
    if (!w->f || !w->len) return CLIPSCORE_ENOMEM;
    for (int k = 0; k < rec->n; k++) {
        if (!(w->f[k] = cs_malloc(rec->lens[k] + 1, 1, r->e))) return CLIPSCORE_ENOMEM;
        memcpy(w->f[k], rec->fields[k], rec->lens[k] + 1);
        w->len[k] = rec->lens[k];
    }
    if (malformed) return row_fail(w, "%s", re->msg);
    if (rec->n != r->n_header) {
        char m[96];
        snprintf(m, sizeof m, "row has %d fields, the header has %d", rec->n, r->n_header);
        return row_fail(w, "%s", m);
    }
    const char *image = w->f[r->col_img], *caption = w->f[r->col_cap];
    if (strlen(image) != w->len[r->col_img] || strlen(caption) != w->len[r->col_cap])
        return row_fail(w, "%s", "field contains a NUL byte");
    if (is_blank(image)) return row_fail(w, "%s", "empty image path");
    if (is_blank(caption)) return row_fail(w, "%s", "empty caption");
    if (strncmp(image, "http://", 7) == 0 || strncmp(image, "https://", 8) == 0)
        return row_fail(w, "%s: images are read from local files; download them first", image);
    char *path = cs_path_join(r->img_base, image, r->e);
    if (!path) return CLIPSCORE_ENOMEM;
    int rc = add_image(r, b, path, w->index < r->fig_limit, &w->img);
    free(path);
    if (rc) return rc;
    char *text = apply_template(r->sp->caption_template, caption, r->e);
    if (!text) return CLIPSCORE_ENOMEM;
    return add_text(r, b, text, &w->txt);
}

/* Stage "read": fills b with up to B rows; *eof at the end of the file.
 * Then looks the batch's inputs up in the caches, tokenises its captions
 * and queues its images for the workers. */
static int read_batch(run *r, batch *b, int *eof) {
    double t0 = cs_now();
    batch_clear(b);
    while (b->n_rows < r->B && !*eof) {
        cs_csv_record rec;
        int malformed = 0;
        cs_error re;
        cs_error_clear(&re);
        int rc = cs_csv_next(r->csv, &rec, &malformed, &re);
        if (rc < 0) {
            *r->e = re;
            return rc;
        }
        if (rc == 0) {
            *eof = 1;
            break;
        }
        row *w = &b->rows[b->n_rows++];
        if ((rc = read_row(r, b, w, &rec, malformed, &re))) return rc;
    }
    int px = 0;
    for (int i = 0; i < b->n_img; i++) {
        uimage *u = &b->img[i];
        const float *hit = u->want_thumb ? NULL : cs_embed_cache_get(r->img_cache, u->path);
        if (hit) {
            memcpy(u->emb, hit, (size_t)r->D * sizeof *hit);
            u->cached = 1;
        } else {
            u->px_slot = px++;
        }
    }
    for (int i = 0; i < b->n_txt; i++) {
        utext *u = &b->txt[i];
        const float *hit = cs_embed_cache_get(r->txt_cache, u->text);
        if (hit) {
            memcpy(u->emb, hit, (size_t)r->D * sizeof *hit);
            u->cached = 1;
        }
        /* Tokenised even when cached: the truncation flags are reported per row. */
        cs_error te;
        cs_error_clear(&te);
        u->rc = cs_ctx_tokenize(r->ctx, u->text, u->ids, &u->n_ids, &u->flags, &te);
        if (u->rc && !(u->error = strdup(te.msg))) return CLIPSCORE_ENOMEM;
    }
    r->t.read += cs_now() - t0;
    pool_submit(&r->pool, b);
    return 0;
}

static int cmp_len(const void *a, const void *b, void *arg) {
    const utext *t = arg;
    return t[*(const int *)a].n_ids - t[*(const int *)b].n_ids;
}

/* Stage "encode": unique images and captions of the batch not in the caches. */
static int encode_batch(run *r, batch *b) {
    const size_t per = 3 * (size_t)r->R * (size_t)r->R, D = (size_t)r->D;
    int *order =
        cs_malloc((size_t)(b->n_img > b->n_txt ? b->n_img : b->n_txt) + 1, sizeof *order, r->e);
    float *tmp = cs_malloc(((size_t)r->B + 1) * D, sizeof *tmp, r->e);
    int32_t *ids = cs_malloc((size_t)TEXT_CHUNK * (size_t)r->T, sizeof *ids, r->e);
    int lens[TEXT_CHUNK];
    int rc = order && tmp && ids ? 0 : CLIPSCORE_ENOMEM;

    /* Images: decoded slots, compacted so the encoder sees one contiguous batch. */
    int k = 0;
    for (int i = 0; !rc && i < b->n_img; i++) {
        uimage *u = &b->img[i];
        if (u->cached || u->rc) continue;
        if (u->px_slot != k)
            memmove(b->px + (size_t)k * per, b->px + (size_t)u->px_slot * per, per * sizeof *b->px);
        order[k++] = i;
    }
    if (!rc && k) {
        double t0 = cs_now();
        rc = cs_torch_encode_images(r->ctx->model, b->px, k, tmp, r->e);
        r->t.image += cs_now() - t0;
        for (int j = 0; !rc && j < k; j++) {
            uimage *u = &b->img[order[j]];
            memcpy(u->emb, tmp + (size_t)j * D, D * sizeof *tmp);
            rc = cs_embed_cache_put(r->img_cache, u->path, u->emb, r->e);
        }
        r->images_encoded += k;
    }

    /* Captions: sorted by token count and encoded in chunks, each cut to
     * its longest caption. */
    k = 0;
    for (int i = 0; !rc && i < b->n_txt; i++)
        if (!b->txt[i].cached && !b->txt[i].rc) order[k++] = i;
    if (!rc && k) {
        double t0 = cs_now();
        qsort_r(order, (size_t)k, sizeof *order, cmp_len, b->txt);
        for (int s = 0; !rc && s < k; s += TEXT_CHUNK) {
            int m = k - s < TEXT_CHUNK ? k - s : TEXT_CHUNK;
            for (int j = 0; j < m; j++) {
                const utext *u = &b->txt[order[s + j]];
                memcpy(ids + (size_t)j * r->T, u->ids, (size_t)u->n_ids * sizeof *ids);
                lens[j] = u->n_ids;
            }
            rc = cs_torch_encode_texts(r->ctx->model, ids, lens, m, r->T, tmp, r->e);
            for (int j = 0; !rc && j < m; j++) {
                utext *u = &b->txt[order[s + j]];
                memcpy(u->emb, tmp + (size_t)j * D, D * sizeof *tmp);
                rc = cs_embed_cache_put(r->txt_cache, u->text, u->emb, r->e);
            }
        }
        r->t.text += cs_now() - t0;
        r->texts_encoded += k;
    }
    free(order);
    free(tmp);
    free(ids);
    return rc;
}

static double norm(const float *v, int d) {
    double s = 0;
    for (int i = 0; i < d; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static double cosine(const float *a, const float *b, int d) {
    double dot = 0;
    for (int i = 0; i < d; i++) dot += (double)a[i] * b[i];
    double n = norm(a, d) * norm(b, d);
    return n > 0 ? dot / n : NAN;
}

static void normalised(const float *v, int d, float *out) {
    double n = norm(v, d);
    for (int i = 0; i < d; i++) out[i] = n > 0 ? (float)(v[i] / n) : NAN;
}

/* Stage "combine": each row's similarity, or its error. */
static int combine_batch(run *r, batch *b) {
    for (int i = 0; i < b->n_rows; i++) {
        row *w = &b->rows[i];
        if (w->error) continue;
        const uimage *ui = &b->img[w->img];
        const utext *ut = &b->txt[w->txt];
        if (ui->rc && row_fail(w, "%s", ui->error)) return CLIPSCORE_ENOMEM;
        if (!w->error && ut->rc && row_fail(w, "caption: %s", ut->error)) return CLIPSCORE_ENOMEM;
        if (w->error) continue;
        w->sim = cosine(ui->emb, ut->emb, r->D);
        if (isnan(w->sim) && row_fail(w, "%s", "embedding has zero length"))
            return CLIPSCORE_ENOMEM;
    }
    return 0;
}

static void note(run *r, const char *fmt, long line, const char *what) {
    if (r->sp->progress) {
        if (r->tty) fputs("\r\033[K", stderr);
        fprintf(stderr, fmt, r->sp->input_csv, line, what);
    }
}

/* Stage "write": output.csv rows in input order, the figures' rows, the
 * embeddings, the summary counts. */
static int write_batch(run *r, batch *b) {
    double t0 = cs_now();
    FILE *fp = r->out.fp;
    float *nimg = cs_malloc((size_t)r->D * 2, sizeof *nimg, r->e);
    if (!nimg) return CLIPSCORE_ENOMEM;
    float *ntxt = nimg + r->D;
    int rc = 0;
    for (int i = 0; !rc && i < b->n_rows; i++) {
        row *w = &b->rows[i];
        const utext *ut = w->txt >= 0 ? &b->txt[w->txt] : NULL;
        r->sum.rows++;
        if (ut && (ut->flags & CLIPSCORE_TOKEN_TRUNCATED)) {
            r->sum.truncated++;
            if (!r->noted_truncated++)
                note(r, "clipscore: %s: row at line %ld: %s (noted once; counted in the summary)\n",
                     w->line, "caption longer than the model's context; truncated");
        }
        if (ut && (ut->flags & CLIPSCORE_TOKEN_INVALID_UTF8)) {
            r->sum.invalid_utf8++;
            if (!r->noted_utf8++)
                note(r, "clipscore: %s: row at line %ld: %s (noted once; counted in the summary)\n",
                     w->line, "caption is not valid UTF-8; bad bytes replaced by U+FFFD");
        }
        if (w->error) {
            r->sum.failed++;
            if (r->sp->progress) {
                const char *path = w->img >= 0 ? b->img[w->img].path : NULL;
                if (r->tty) fputs("\r\033[K", stderr);
                fprintf(stderr, "clipscore: %s: row %ld (line %ld)%s%s: %s\n", r->sp->input_csv,
                        w->index + 1, w->line, path ? ", " : "", path ? path : "", w->error);
            }
        } else {
            r->sum.scored++;
            r->sim_total += w->sim;
        }
        /* output.csv: header-width fields, our columns, then any surplus fields. */
        const char *f[1024];
        size_t l[1024];
        int n = 0, nh = r->n_header;
        char sim[32] = "", csc[32] = "";
        if (!w->error) {
            snprintf(sim, sizeof sim, "%.6f", w->sim);
            snprintf(csc, sizeof csc, "%.6f", 2.5 * (w->sim > 0 ? w->sim : 0.0));
        }
        int total = (w->n > nh ? w->n : nh) + 3;
        const char **fv = f;
        size_t *lv = l;
        if (total > 1024) {
            fv = malloc((size_t)total * sizeof *fv);
            lv = malloc((size_t)total * sizeof *lv);
            if (!fv || !lv) {
                free(fv);
                free(lv);
                rc = cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory");
                break;
            }
        }
        for (int k = 0; k < nh; k++) {
            fv[n] = k < w->n ? w->f[k] : "";
            lv[n++] = k < w->n ? w->len[k] : 0;
        }
        fv[n] = sim;
        lv[n++] = strlen(sim);
        if (r->sp->metric == CLIPSCORE_METRIC_CLIPSCORE) {
            fv[n] = csc;
            lv[n++] = strlen(csc);
        }
        fv[n] = w->error ? w->error : "";
        lv[n] = strlen(fv[n]);
        n++;
        for (int k = nh; k < w->n; k++) {
            fv[n] = w->f[k];
            lv[n++] = w->len[k];
        }
        rc = cs_csv_write_record(fp, fv, lv, n, r->e);
        if (fv != f) {
            free(fv);
            free(lv);
        }
        if (rc) break;

        const float *ie = w->error ? NULL : b->img[w->img].emb;
        const float *te = w->error ? NULL : b->txt[w->txt].emb;
        if (ie) {
            normalised(ie, r->D, nimg);
            normalised(te, r->D, ntxt);
        } else {
            for (int k = 0; k < r->D; k++) nimg[k] = ntxt[k] = NAN;
        }
        if (r->save) {
            rc = cs_npy_stream_append(&r->npy_img, nimg, 1, r->e);
            if (!rc) rc = cs_npy_stream_append(&r->npy_txt, ntxt, 1, r->e);
        }
        if (!rc && w->index < r->fig_limit && r->fig_thumbs) {
            int j = r->fig_n++;
            const char *cap = r->n_header > r->col_cap && r->col_cap < w->n ? w->f[r->col_cap] : "";
            r->fig_caps[j] = strdup(cap);
            r->fig_errs[j] = w->error ? strdup(w->error) : NULL;
            r->fig_scores[j] = w->error ? NAN : (float)w->sim;
            memcpy(r->fig_img + (size_t)j * r->D, nimg, (size_t)r->D * sizeof *nimg);
            memcpy(r->fig_txt + (size_t)j * r->D, ntxt, (size_t)r->D * sizeof *ntxt);
            if (w->img >= 0 &&
                b->img[w->img].thumb.px) { /* copy: the batch's thumb may serve two rows */
                const cs_image *t = &b->img[w->img].thumb;
                size_t bytes = (size_t)t->w * t->h * t->channels;
                r->fig_thumbs[j] = *t;
                r->fig_thumbs[j].px = malloc(bytes);
                if (r->fig_thumbs[j].px) memcpy(r->fig_thumbs[j].px, t->px, bytes);
            }
            if (!r->fig_caps[j]) rc = cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory");
        }
    }
    free(nimg);
    r->t.write += cs_now() - t0;
    return rc;
}

/* ------------------------------------------------------------ progress */

static void fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void progress(run *r, int final) {
    if (!r->sp->progress) return;
    double now = cs_now(), el = now - r->t_start;
    if (!final && now - r->t_last < (r->tty ? 0.2 : 10.0)) return;
    r->t_last = now;
    double rate = el > 0 ? (double)r->sum.rows / el : 0;
    int known = r->total_rows > 0;
    char count[64], eta[48] = "";
    if (known)
        snprintf(count, sizeof count, "%ld/%ld rows", (long)r->sum.rows, r->total_rows);
    else
        snprintf(count, sizeof count, "%ld rows", (long)r->sum.rows);
    if (known && rate > 0) {
        char d[32];
        fmt_duration((double)(r->total_rows - r->sum.rows) / rate, d, sizeof d);
        snprintf(eta, sizeof eta, ", ETA %s", d);
    }
    if (r->tty) {
        char bar[31];
        int fill = known ? (int)(30.0 * (double)r->sum.rows / (double)r->total_rows) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r\033[K[%s] %s, %.1f rows/s%s", known ? bar : "streaming", count, rate,
                eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "clipscore: %s, %.1f rows/s%s\n", count, rate, eta);
    }
}

/* Data rows in the file (a first pass with the CSV reader), -1 on error or
 * when the input is not a regular file (a pipe can be read only once). */
static long count_rows(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    cs_csv_reader *c;
    cs_error e;
    if (cs_csv_open(path, &c, &e)) return -1;
    long n = 0;
    cs_csv_record rec;
    int bad;
    while (cs_csv_next(c, &rec, &bad, &e) > 0) n++;
    cs_csv_close(c);
    return n;
}

/* ------------------------------------------------------------ run.json */

static int write_run_json(run *r, const char *path, int figures_written) {
    clipscore_context *ctx = r->ctx;
    clipscore_model_info mi;
    clipscore_get_model_info(ctx, &mi);
    char sha[65] = "";
    if (clipscore_weights_sha256(ctx, sha)) sha[0] = '\0'; /* recorded as null */
    cJSON *j = cJSON_CreateObject();
    if (!j) return cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory");
    char when[32];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
    cJSON_AddStringToObject(j, "tool", "clipscore");
    cJSON_AddStringToObject(j, "version", CLIPSCORE_VERSION);
    cJSON_AddStringToObject(j, "libtorch", cs_torch_version());
    cJSON_AddStringToObject(j, "finished_at", when);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "name", mi.name);
    cJSON_AddStringToObject(m, "path", mi.path);
    cJSON_AddStringToObject(m, "layout", mi.layout);
    cJSON_AddStringToObject(m, "weights_file", mi.weights_file);
    if (sha[0])
        cJSON_AddStringToObject(m, "weights_sha256", sha);
    else
        cJSON_AddNullToObject(m, "weights_sha256");
    cJSON_AddNumberToObject(m, "image_size", mi.image_size);
    cJSON_AddNumberToObject(m, "patch_size", mi.patch_size);
    cJSON_AddNumberToObject(m, "vision_width", mi.vision_width);
    cJSON_AddNumberToObject(m, "vision_layers", mi.vision_layers);
    cJSON_AddNumberToObject(m, "text_width", mi.text_width);
    cJSON_AddNumberToObject(m, "text_layers", mi.text_layers);
    cJSON_AddNumberToObject(m, "context_length", mi.context_length);
    cJSON_AddNumberToObject(m, "embed_dim", mi.embed_dim);
    cJSON_AddStringToObject(m, "activation", mi.quick_gelu ? "quick_gelu" : "gelu");
    cJSON_AddStringToObject(j, "device", mi.device);
    cJSON_AddStringToObject(j, "precision", mi.precision);
    cJSON_AddNumberToObject(j, "threads", ctx->threads);
    cJSON_AddNumberToObject(j, "torch_intra_op_threads", ctx->torch_threads);
    cJSON_AddNumberToObject(j, "batch_size", r->B);
    cJSON_AddStringToObject(j, "input", r->sp->input_csv);
    cJSON_AddStringToObject(j, "image_column", cs_csv_header(r->csv)->fields[r->col_img]);
    cJSON_AddStringToObject(j, "caption_column", cs_csv_header(r->csv)->fields[r->col_cap]);
    cJSON_AddStringToObject(j, "template", r->sp->caption_template);
    cJSON_AddStringToObject(j, "metric",
                            r->sp->metric == CLIPSCORE_METRIC_CLIPSCORE ? "clipscore" : "cosine");
    cJSON_AddNumberToObject(j, "rows", (double)r->sum.rows);
    cJSON_AddNumberToObject(j, "scored", (double)r->sum.scored);
    cJSON_AddNumberToObject(j, "failed", (double)r->sum.failed);
    cJSON_AddNumberToObject(j, "truncated_captions", (double)r->sum.truncated);
    cJSON_AddNumberToObject(j, "invalid_utf8_captions", (double)r->sum.invalid_utf8);
    if (r->sum.scored)
        cJSON_AddNumberToObject(j, "mean_similarity", r->sum.mean_similarity);
    else
        cJSON_AddNullToObject(j, "mean_similarity");
    cJSON_AddNumberToObject(j, "images_encoded", (double)r->images_encoded);
    cJSON_AddNumberToObject(j, "texts_encoded", (double)r->texts_encoded);
    cJSON_AddBoolToObject(j, "figures", figures_written);
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(t, "load_model", ctx->load_seconds);
    cJSON_AddNumberToObject(t, "read", r->t.read);
    cJSON_AddNumberToObject(t, "decode_preprocess_cpu", r->t.decode_cpu);
    cJSON_AddNumberToObject(t, "wait_for_decode", r->t.wait);
    cJSON_AddNumberToObject(t, "text_encoder", r->t.text);
    cJSON_AddNumberToObject(t, "image_encoder", r->t.image);
    cJSON_AddNumberToObject(t, "write", r->t.write);
    cJSON_AddNumberToObject(t, "figures", r->t.figures);
    cJSON_AddNumberToObject(t, "total", r->t.total);
    char *body = cJSON_Print(j);
    cJSON_Delete(j);
    char *text = body ? cs_asprintf(r->e, "%s\n", body) : NULL;
    free(body);
    if (!text) return cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory");
    int rc = cs_write_file_atomic(path, text, strlen(text), r->e);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ setup */

/* Our column name, or name_2, name_3... when the input already has it. */
static char *free_column_name(const cs_csv_record *h, const char *name, cs_error *e) {
    for (int k = 1; k < 100; k++) {
        char cand[64];
        if (k == 1)
            snprintf(cand, sizeof cand, "%s", name);
        else
            snprintf(cand, sizeof cand, "%s_%d", name, k);
        int taken = 0;
        for (int i = 0; i < h->n && !taken; i++) taken = strcmp(h->fields[i], cand) == 0;
        if (!taken) return cs_strdup(cand, e);
    }
    cs_fail(e, CLIPSCORE_EFORMAT, "too many columns named %s", name);
    return NULL;
}

/* Same file? (by device and inode, so links and ./ spellings count). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int setup(run *r) {
    const clipscore_score_params *sp = r->sp;
    clipscore_context *ctx = r->ctx;
    int rc;
    if (!sp->input_csv || !*sp->input_csv)
        return cs_fail(r->e, CLIPSCORE_EARG, "no input CSV given");
    if (sp->caption_template && !strstr(sp->caption_template, "{}"))
        return cs_fail(r->e, CLIPSCORE_EARG, "--template '%s' has no {} for the caption",
                       sp->caption_template);
    r->B = sp->batch_size > 0 ? sp->batch_size : 32;
    r->D = ctx->clip.embed_dim;
    r->T = ctx->clip.context_length;
    r->R = ctx->preprocess.size;
    r->fig_limit = sp->figures ? (sp->figure_limit > 0 ? sp->figure_limit : 64) : 0;
#ifndef CLIPSCORE_HAVE_FIGURES
    r->fig_limit = 0;
#endif
    if (cs_is_dir(sp->input_csv))
        return cs_fail(r->e, CLIPSCORE_EARG, "%s is a folder, not a CSV file", sp->input_csv);
    if ((rc = cs_csv_open(sp->input_csv, &r->csv, r->e))) return rc;
    const cs_csv_record *h = cs_csv_header(r->csv);
    r->n_header = h->n;
    r->col_img =
        cs_csv_find_column(h, sp->input_csv, sp->image_column, cs_csv_image_columns, "image", r->e);
    if (r->col_img < 0) return r->col_img;
    r->col_cap = cs_csv_find_column(h, sp->input_csv, sp->caption_column, cs_csv_caption_columns,
                                    "caption", r->e);
    if (r->col_cap < 0) return r->col_cap;
    if (r->col_img == r->col_cap)
        return cs_fail(r->e, CLIPSCORE_EARG, "%s: the image and caption columns are both '%s'",
                       sp->input_csv, h->fields[r->col_img]);
    if (!(r->sim_name = free_column_name(h, "similarity", r->e)) ||
        !(r->err_name = free_column_name(h, "error", r->e)) ||
        !(r->cs_name = free_column_name(h, "clipscore", r->e)))
        return CLIPSCORE_ENOMEM;

    char *csv_dir = cs_path_dirname(sp->input_csv, r->e);
    if (!csv_dir) return CLIPSCORE_ENOMEM;
    r->img_base = sp->image_root ? cs_strdup(sp->image_root, r->e) : csv_dir;
    if (sp->image_root) free(csv_dir);
    if (!r->img_base) return CLIPSCORE_ENOMEM;
    if (sp->image_root && !cs_is_dir(sp->image_root))
        return cs_fail(r->e, CLIPSCORE_EARG, "--image-root %s: no such folder", sp->image_root);
    r->out_dir =
        sp->output_dir ? cs_strdup(sp->output_dir, r->e) : cs_path_dirname(sp->input_csv, r->e);
    if (!r->out_dir) return CLIPSCORE_ENOMEM;
    if ((rc = cs_mkdir_p(r->out_dir, r->e))) return rc;

    /* Refuse to overwrite the input with any output. */
    static const char *const outputs[] = {"output.csv", "run.json", "image_captions.jpg",
                                          "similarity_matrix.jpg"};
    for (int i = 0; i < 4; i++) {
        char *p = cs_path_join(r->out_dir, outputs[i], r->e);
        if (!p) return CLIPSCORE_ENOMEM;
        int same = same_file(p, sp->input_csv);
        free(p);
        if (same)
            return cs_fail(
                r->e, CLIPSCORE_EARG,
                "%s would be overwritten by the output %s; choose another folder with -o",
                sp->input_csv, outputs[i]);
    }
    char *out_csv = cs_path_join(r->out_dir, "output.csv", r->e);
    if (!out_csv) return CLIPSCORE_ENOMEM;
    rc = cs_atomic_open(&r->out, out_csv, r->e);
    free(out_csv);
    if (rc) return cs_fail_prefix(r->e, "output folder %s is not writable", r->out_dir);

    /* output.csv header */
    const char *f[1024 + 3];
    if (h->n > 1024)
        return cs_fail(r->e, CLIPSCORE_EFORMAT, "%s: more than 1024 columns", sp->input_csv);
    int n = 0;
    for (int i = 0; i < h->n; i++) f[n++] = h->fields[i];
    f[n++] = r->sim_name;
    if (sp->metric == CLIPSCORE_METRIC_CLIPSCORE) f[n++] = r->cs_name;
    f[n++] = r->err_name;
    if ((rc = cs_csv_write_record(r->out.fp, f, NULL, n, r->e))) return rc;

    if (sp->save_embeddings) {
        if ((rc = cs_mkdir_p(sp->save_embeddings, r->e))) return rc;
        int64_t row_shape[1] = {r->D};
        char *pi = cs_path_join(sp->save_embeddings, "image_embeddings.npy", r->e);
        char *pt = cs_path_join(sp->save_embeddings, "text_embeddings.npy", r->e);
        rc = pi && pt ? 0 : CLIPSCORE_ENOMEM;
        if (!rc) rc = cs_npy_stream_open(&r->npy_img, pi, 1, row_shape, r->e);
        if (!rc) {
            rc = cs_npy_stream_open(&r->npy_txt, pt, 1, row_shape, r->e);
            if (rc) cs_npy_stream_abort(&r->npy_img);
        }
        free(pi);
        free(pt);
        if (rc) return rc;
        r->save = 1;
    }
    if (r->fig_limit) {
        size_t L = (size_t)r->fig_limit;
        r->fig_thumbs = cs_calloc(L, sizeof *r->fig_thumbs, r->e);
        r->fig_caps = cs_calloc(L, sizeof *r->fig_caps, r->e);
        r->fig_errs = cs_calloc(L, sizeof *r->fig_errs, r->e);
        r->fig_scores = cs_calloc(L, sizeof *r->fig_scores, r->e);
        r->fig_img = cs_calloc(L * (size_t)r->D, sizeof *r->fig_img, r->e);
        r->fig_txt = cs_calloc(L * (size_t)r->D, sizeof *r->fig_txt, r->e);
        if (!r->fig_thumbs || !r->fig_caps || !r->fig_errs || !r->fig_scores || !r->fig_img ||
            !r->fig_txt)
            return CLIPSCORE_ENOMEM;
    }
    if ((rc = cs_embed_cache_new(CACHE_ENTRIES, r->D, &r->img_cache, r->e))) return rc;
    if ((rc = cs_embed_cache_new(CACHE_ENTRIES, r->D, &r->txt_cache, r->e))) return rc;
    if ((rc = batch_alloc(r, &r->b[0])) || (rc = batch_alloc(r, &r->b[1]))) return rc;
    /* Decode workers: the cores libtorch's own threads leave over while it
     * encodes; at least one so decoding overlaps encoding. */
    int workers = ctx->threads > 1 ? ctx->threads - 1 : 1;
    if ((rc = pool_start(&r->pool, workers, 2 * r->B + 1, &ctx->preprocess, ctx->params.max_pixels,
                         r->e)))
        return rc;
    r->tty = isatty(2);
    r->total_rows = sp->progress ? count_rows(sp->input_csv) : -1;
    return 0;
}

static int draw_figures(run *r) {
#ifdef CLIPSCORE_HAVE_FIGURES
    int n = r->fig_n, rc;
    double t0 = cs_now();
    float *sim = cs_malloc((size_t)(n ? n : 1) * (size_t)(n ? n : 1), sizeof *sim, r->e);
    if (!sim) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < r->D; k++)
                s += (double)r->fig_img[(size_t)i * r->D + k] * r->fig_txt[(size_t)j * r->D + k];
            sim[(size_t)i * n + j] = (float)s; /* NaN rows stay NaN */
        }
    char *p1 = cs_path_join(r->out_dir, "image_captions.jpg", r->e);
    char *p2 = cs_path_join(r->out_dir, "similarity_matrix.jpg", r->e);
    rc = p1 && p2 ? 0 : CLIPSCORE_ENOMEM;
    if (!rc)
        rc = cs_figure_image_captions(p1, n, r->fig_thumbs, (const char *const *)r->fig_caps,
                                      r->fig_scores, (const char *const *)r->fig_errs, r->sum.rows,
                                      r->e);
    if (!rc)
        rc = cs_figure_similarity_matrix(p2, n, sim, (const char *const *)r->fig_caps, r->sum.rows,
                                         r->e);
    free(p1);
    free(p2);
    free(sim);
    /* Drops pango's and fontconfig's caches (they come back on next use),
     * so a run leaves no memory held behind. */
    cs_figures_shutdown();
    r->t.figures = cs_now() - t0;
    return rc;
#else
    (void)r;
    return 0;
#endif
}

static void cleanup(run *r, int ok) {
    pool_stop(&r->pool);
    batch_free(&r->b[0]);
    batch_free(&r->b[1]);
    if (!ok) {
        if (r->out.fp) cs_atomic_abort(&r->out);
        if (r->save) {
            cs_npy_stream_abort(&r->npy_img);
            cs_npy_stream_abort(&r->npy_txt);
        }
    }
    cs_csv_close(r->csv);
    cs_embed_cache_free(r->img_cache);
    cs_embed_cache_free(r->txt_cache);
    for (int i = 0; i < r->fig_n; i++) {
        cs_image_free(&r->fig_thumbs[i]);
        free(r->fig_caps[i]);
        free(r->fig_errs[i]);
    }
    free(r->fig_thumbs);
    free(r->fig_caps);
    free(r->fig_errs);
    free(r->fig_scores);
    free(r->fig_img);
    free(r->fig_txt);
    free(r->img_base);
    free(r->out_dir);
    free(r->sim_name);
    free(r->err_name);
    free(r->cs_name);
}

int clipscore_score_csv(clipscore_context *ctx, const clipscore_score_params *params,
                        clipscore_score_summary *summary) {
    run r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.sp = params;
    r.e = &ctx->err;
    cs_error_clear(r.e);
    r.t_start = r.t_last = cs_now();
    r.sum.mean_similarity = NAN;
    int rc = setup(&r);

    /* The loop: batch k+1 is read and queued for the decode workers before
     * batch k is encoded, so decoding overlaps the encoders. */
    int eof = 0, cur = 0;
    if (!rc) rc = read_batch(&r, &r.b[0], &eof);
    ctx->cancel = 0;
    while (!rc && r.b[cur].n_rows > 0) {
        batch *b = &r.b[cur], *next = &r.b[1 - cur];
        if (ctx->cancel) {
            rc = cs_fail(r.e, CLIPSCORE_ECANCELED,
                         "interrupted after %ld rows; nothing was written", (long)r.sum.rows);
            pool_wait(&r.pool, b);
            break;
        }
        if (!eof)
            rc = read_batch(&r, next, &eof);
        else
            batch_clear(next);
        double t0 = cs_now();
        pool_wait(&r.pool, b);
        r.t.wait += cs_now() - t0;
        r.t.decode_cpu += b->decode_seconds;
        if (!rc) rc = encode_batch(&r, b);
        if (!rc) rc = combine_batch(&r, b);
        if (!rc) rc = write_batch(&r, b);
        progress(&r, 0);
        if (rc) pool_wait(&r.pool, next); /* workers must be done with it before cleanup */
        cur = 1 - cur;
    }
    if (!rc) {
        r.sum.mean_similarity = r.sum.scored ? r.sim_total / (double)r.sum.scored : NAN;
        progress(&r, 1);
    }
    int figures_written = 0;
    if (!rc && r.fig_limit) {
        /* The scores matter more than the pictures: a figure that cannot be
         * drawn is a warning, and output.csv is still written. */
        cs_error fe;
        cs_error_clear(&fe);
        cs_error *keep = r.e;
        r.e = &fe;
        figures_written = draw_figures(&r) == 0;
        r.e = keep;
        if (!figures_written)
            fprintf(stderr, "clipscore: warning: figures not written: %s\n", fe.msg);
    }
    if (!rc && r.save) {
        rc = cs_npy_stream_commit(&r.npy_img, r.e);
        if (!rc)
            rc = cs_npy_stream_commit(&r.npy_txt, r.e);
        else
            cs_npy_stream_abort(&r.npy_txt);
        r.save = 0;
    }
    r.t.total = cs_now() - r.t_start;
    if (!rc) {
        char *pj = cs_path_join(r.out_dir, "run.json", r.e);
        rc = pj ? write_run_json(&r, pj, figures_written) : CLIPSCORE_ENOMEM;
        free(pj);
    }
    if (!rc) rc = cs_atomic_commit(&r.out, r.e);
    r.sum.seconds = cs_now() - r.t_start;
    if (!rc && params->progress) {
        fprintf(stderr, "clipscore: %ld rows: %ld scored, %ld failed, %ld captions truncated",
                (long)r.sum.rows, (long)r.sum.scored, (long)r.sum.failed, (long)r.sum.truncated);
        if (r.sum.invalid_utf8)
            fprintf(stderr, ", %ld with invalid UTF-8", (long)r.sum.invalid_utf8);
        if (r.sum.scored) fprintf(stderr, "; mean similarity %.4f", r.sum.mean_similarity);
        fprintf(stderr, "; %.1f s\nclipscore: wrote %s/output.csv%s\n", r.sum.seconds, r.out_dir,
                figures_written ? ", image_captions.jpg, similarity_matrix.jpg" : "");
    }
    if (summary) *summary = r.sum;
    cleanup(&r, rc == 0);
    return rc;
}
