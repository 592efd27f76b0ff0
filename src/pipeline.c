/* pipeline.c - the batch scorer behind clipscore_score_csv(): its stages and
 * the run loop.
 *
 * Rows stream through five stages, a batch of --batch-size rows at a time:
 *   read     CSV records are copied into a batch; image paths resolved,
 *            the caption template applied (to references too); repeated
 *            images and captions (references among them)
 *            within the batch, or already in the embedding caches, are
 *            collapsed so each is encoded once; captions are tokenised
 *   prepare  the worker pool (worker_pool.c) decodes and preprocesses the
 *            batch's images and the thumbnails the figures need
 *   encode   the encoders run on the unique inputs that some row still
 *            needs (not those whose partner already failed), captions
 *            grouped by length so padding is cut
 *   combine  cosine similarity of each row's pair, or its error; with
 *            reference captions, RefCLIPScore
 *   write    each row goes, in input order, to every writer (writer.h)
 * The workers prepare batch k+1 while batch k is encoded, so at most two
 * batches are in memory: memory depends on the batch size, never on the
 * number of rows. At the end the writers finish their files as temporaries
 * and the commit (commit.h) renames them together; a failed or cancelled
 * run replaces nothing. The output folders are locked for the run
 * (output_dir.h). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipscore.h"
#include "commit.h"
#include "context.h"
#include "csv_io.h"
#include "embed_cache.h"
#include "image.h"
#include "inputs.h"
#include "journal.h"
#include "keep.h"
#include "webdataset.h"
#include "output_dir.h"
#include "progress.h"
#include "worker_pool.h"
#include "writer.h"

#define THUMB_SIDE 256     /* thumbnail size kept for image_captions.jpg */
#define CACHE_ENTRIES 4096 /* embeddings remembered per kind across batches */
#define TEXT_CHUNK 64      /* captions per text-encoder call, grouped by length */
/* Batches per cache epoch. The embedding caches are emptied when an epoch
 * begins, and only a batch of the current epoch adds to them, so what a row
 * scores depends on its epoch alone: a run continued from the journal's
 * last epoch mark (journal.h) writes the scores an uninterrupted run
 * writes, to the last digit (encoding the same image in another batch can
 * move its embedding by a rounding step). A restart redoes at most this
 * many batches plus the ones in flight. */
#define EPOCH_BATCHES 8

clipscore_score_params clipscore_default_score_params(void) {
    clipscore_score_params p;
    memset(&p, 0, sizeof p);
    p.caption_template = "{}";
    p.metric = CLIPSCORE_METRIC_COSINE;
    p.batch_size = 32;
    p.figures = 1;
    p.figure_limit = 64;
    p.progress = 1;
    p.resume = 1;
    p.keep_threshold = NAN;
    p.keep_fraction = NAN;
    p.report = 1;
    p.report_pairs = 50;
    return p;
}

/* Names of everything a run may write; stale temporaries of these are
 * removed from the folders it locks. */
static const char *const output_names[] = {"output.csv",
                                           "run.json",
                                           "image_captions.jpg",
                                           "similarity_matrix.jpg",
                                           "image_embeddings.npy",
                                           "text_embeddings.npy",
                                           "kept.csv",
                                           "report.html"};
enum { OUT_KEPT = 6, OUT_REPORT = 7 }; /* indices of kept.csv and report.html above */
enum { N_OUTPUT_NAMES = sizeof output_names / sizeof output_names[0] };

/* ------------------------------------------------------------ batches */

typedef struct uimage {  /* a distinct image of a batch */
    char *path;          /* its id: the file, or tar and key (inputs.h) */
    char *label;         /* names it in messages */
    unsigned char *data; /* an image in memory (a tar member), or NULL: read path */
    size_t len;
    int want_thumb; /* a row of it is drawn in the figures */
    int cached;     /* embedding came from the cache: no decode */
    int needed;     /* some row's caption tokenised: worth encoding */
    int px_slot;    /* slot in batch.px, -1 when cached */
    int rc;         /* decode status (written by a worker) */
    char *error;
    cs_image thumb;
    float *emb; /* -> batch.img_emb row */
} uimage;

typedef struct utext { /* a distinct caption or reference of a batch */
    char *text;        /* after the template */
    int is_ref;        /* some row's reference */
    int cached;
    int needed;   /* some row's image decoded: worth encoding */
    int32_t *ids; /* -> batch.ids row */
    int n_ids;
    unsigned flags;
    int rc;
    char *error;
    float *emb; /* -> batch.txt_emb row */
} utext;

typedef struct row {
    long index, line;
    const char *source; /* the input it came from, as given */
    int n;              /* fields */
    char **f;
    size_t *len;
    int img, txt; /* uimage / utext index, -1 when the row failed before */
    int *ref;     /* [n_ref] utext index of each reference, -1 for an empty cell */
    char *error;  /* owned; NULL when scored */
    double sim;
    double refclip; /* RefCLIPScore, NaN when none */
} row;

typedef struct batch {
    int n_rows, n_img, n_txt, n_ref;
    long epoch;     /* cache epoch (EPOCH_BATCHES) */
    row *rows;      /* [B] */
    uimage *img;    /* [B] */
    utext *txt;     /* [TB]: B captions and their references */
    int *refs;      /* [B][n_ref] */
    float *px;      /* [B][3][R][R] */
    float *img_emb; /* [B][D] */
    int32_t *ids;   /* [TB][T] */
    float *txt_emb; /* [TB][D] */
    int *jobs;      /* [B] image indices queued for the workers */
    cs_job_group decode;
    const cs_preprocess_cfg *pp;
    int64_t max_pixels;
    cs_decode_budget *budget; /* shared by the workers: decode memory in flight */
    int decode_min_side;      /* --decode fast: see cs_image_load_scaled */
} batch;

/* ------------------------------------------------------------ the run */

typedef struct run {
    clipscore_context *ctx;
    const clipscore_score_params *sp;
    cs_error *e;
    int B, D, T, R;
    int TB;            /* texts a batch may hold: B * (1 + n_ref) */
    int n_ref;         /* reference columns */
    int *col_ref;      /* [n_ref] */
    char *ref_name;    /* the refclipscore column's name */
    const char *input; /* the first input, as given */
    const char *const *paths;
    int n_paths;
    int stream; /* standard input, a pipe or a device: no folder of its own */
    cs_inputs *inputs;
    int cap_field, img_field; /* the caption and the image among the output fields */
    char *out_dir;
    char *sim_name, *err_name, *cs_name; /* output column names */
    cs_output_lock lock_out, lock_emb;
    int stale_figures; /* the previous run in out_dir drew figures */
    int stale_report;  /* ... or wrote report.html */
    /* writers, finished in this order; run.json last */
    cs_writer *csv_out, *npy_out, *fig_out, *report_out, *json_out;
    cs_commit commit;
    cs_journal *journal; /* NULL: no resume (a stream input, or resume off) */
    int fig_limit;
    cs_embed_cache *img_cache, *txt_cache;
    long batches_read, batches_written, epoch; /* epoch: of the batch read last */
    cs_worker_pool pool;
    cs_decode_budget budget;
    int budget_ready;
    batch b[2];
    float *nimg, *ntxt; /* [D] scratch: one row's normalised embeddings */
    cs_run_record rec;
    double sim_total;
    int noted_truncated, noted_utf8;
    cs_progress progress;
} run;

static int batch_alloc(run *r, batch *b) {
    const size_t B = (size_t)r->B;
    memset(b, 0, sizeof *b);
    b->pp = cs_ctx_preprocess(r->ctx);
    b->max_pixels = cs_ctx_max_pixels(r->ctx);
    b->budget = &r->budget;
    b->decode_min_side = cs_ctx_decode_min_side(r->ctx);
    b->n_ref = r->n_ref;
    b->rows = cs_calloc(B, sizeof *b->rows, r->e);
    b->img = cs_calloc(B, sizeof *b->img, r->e);
    b->txt = cs_calloc((size_t)r->TB, sizeof *b->txt, r->e);
    b->refs = cs_calloc(B * (size_t)(r->n_ref ? r->n_ref : 1), sizeof *b->refs, r->e);
    b->jobs = cs_calloc(B, sizeof *b->jobs, r->e);
    b->px = cs_ctx_host_alloc(r->ctx, B * 3 * (size_t)r->R * (size_t)r->R * sizeof *b->px);
    if (!b->px) return cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory for the image batch");
    b->img_emb = cs_malloc(B * (size_t)r->D, sizeof *b->img_emb, r->e);
    b->ids = cs_malloc((size_t)r->TB * (size_t)r->T, sizeof *b->ids, r->e);
    b->txt_emb = cs_malloc((size_t)r->TB * (size_t)r->D, sizeof *b->txt_emb, r->e);
    if (!b->rows || !b->img || !b->txt || !b->refs || !b->jobs || !b->img_emb || !b->ids ||
        !b->txt_emb)
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
        free(b->img[i].label);
        free(b->img[i].data);
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
    b->decode.seconds = 0;
}

static void batch_free(batch *b) {
    if (b->rows) batch_clear(b);
    free(b->rows);
    free(b->img);
    free(b->txt);
    free(b->refs);
    free(b->jobs);
    cs_ctx_host_free(b->px);
    free(b->img_emb);
    free(b->ids);
    free(b->txt_emb);
    memset(b, 0, sizeof *b);
}

/* Sets a row's error (replacing any earlier one). */
static int row_fail(row *w, const char *fmt, ...) CS_PRINTF(2, 3);
static int row_fail(row *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    free(w->error);
    w->error = n >= 0 ? msg : NULL;
    return w->error ? 0 : CLIPSCORE_ENOMEM;
}

/* ------------------------------------------------------------ stage: read */

static int add_image(run *r, batch *b, const cs_input_row *in, int want_thumb, int *idx) {
    for (int i = 0; i < b->n_img; i++)
        if (strcmp(b->img[i].path, in->image_id) == 0) {
            b->img[i].want_thumb |= want_thumb;
            *idx = i;
            return 0;
        }
    uimage *u = &b->img[b->n_img];
    if (!(u->path = cs_strdup(in->image_id, r->e))) return CLIPSCORE_ENOMEM;
    /* A member of a tar is named by its key in messages (the row note
     * names the tar). */
    u->label = in->image_data ? cs_asprintf(r->e, "%s: %s", in->source, in->fields[0])
                              : cs_strdup(in->image_path, r->e);
    if (!u->label) return CLIPSCORE_ENOMEM;
    if (in->image_data) {
        if (!(u->data = cs_malloc(in->image_len ? in->image_len : 1, 1, r->e)))
            return CLIPSCORE_ENOMEM;
        memcpy(u->data, in->image_data, in->image_len);
        u->len = in->image_len;
    }
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

/* The row's reference captions, templated as captions are, into the
 * batch's texts (so a reference repeated within the batch, or in the text
 * cache, is encoded once); empty cells are none. */
static int read_references(run *r, batch *b, row *w) {
    for (int k = 0; k < r->n_ref; k++) {
        w->ref[k] = -1;
        const char *cell = w->f[r->col_ref[k]];
        if (cs_is_blank(cell) || strlen(cell) != w->len[r->col_ref[k]]) continue;
        char *text = cs_apply_template(r->sp->caption_template, cell, r->e);
        if (!text) return CLIPSCORE_ENOMEM;
        int rc = add_text(r, b, text, &w->ref[k]);
        if (rc) return rc;
        b->txt[w->ref[k]].is_ref = 1;
    }
    return 0;
}

/* Copies the next input row into row w and decides what it needs. */
static int read_row(run *r, batch *b, row *w, const cs_input_row *in) {
    w->index = in->index;
    w->line = in->line;
    w->source = in->source;
    w->img = w->txt = -1;
    w->sim = w->refclip = NAN;
    w->ref = b->refs + (size_t)(w - b->rows) * (size_t)r->n_ref;
    for (int k = 0; k < r->n_ref; k++) w->ref[k] = -1;
    w->n = in->n_fields;
    w->f = cs_calloc((size_t)(in->n_fields ? in->n_fields : 1), sizeof *w->f, r->e);
    w->len = cs_calloc((size_t)(in->n_fields ? in->n_fields : 1), sizeof *w->len, r->e);
    if (!w->f || !w->len) return CLIPSCORE_ENOMEM;
    for (int k = 0; k < in->n_fields; k++) {
        if (!(w->f[k] = cs_malloc(in->lens[k] + 1, 1, r->e))) return CLIPSCORE_ENOMEM;
        memcpy(w->f[k], in->fields[k], in->lens[k] + 1);
        w->len[k] = in->lens[k];
    }
    if (in->error) return row_fail(w, "%s", in->error);
    int rc = add_image(r, b, in, w->index < r->fig_limit, &w->img);
    if (rc) return rc;
    char *text = cs_apply_template(r->sp->caption_template, in->caption, r->e);
    if (!text) return CLIPSCORE_ENOMEM;
    rc = add_text(r, b, text, &w->txt);
    return rc ? rc : read_references(r, b, w);
}

/* ------------------------------------------------------------ stage: prepare */

/* A worker's job: decode image i of the batch, preprocess it into its slot,
 * make its thumbnail. Touches only its own uimage and pixel slot. */
static void prepare_image(void *arg, int i) {
    batch *b = arg;
    uimage *u = &b->img[i];
    cs_error e;
    cs_error_clear(&e);
    cs_image img;
    const size_t per = 3 * (size_t)b->pp->size * (size_t)b->pp->size;
    /* Waits while other workers hold the decode memory (image.h), so a few
     * huge images cannot multiply the peak by the worker count. */
    int rc = u->data ? cs_image_load_memory_scaled(u->data, u->len, u->label, b->max_pixels,
                                                   b->budget, b->decode_min_side, &img, &e)
                     : cs_image_load_scaled(u->path, b->max_pixels, b->budget, b->decode_min_side,
                                            &img, &e);
    if (!rc) {
        rc = cs_image_preprocess(&img, b->pp, b->px + (size_t)u->px_slot * per, &e);
        if (!rc && u->want_thumb) rc = cs_image_thumbnail(&img, THUMB_SIDE, &u->thumb, &e);
        cs_image_free(&img);
    }
    if (rc) {
        u->rc = rc;
        u->error = strdup(e.msg[0] ? e.msg : clipscore_status_name(rc));
        if (!u->error) u->rc = CLIPSCORE_ENOMEM;
    }
}

/* Stage "read" (then "prepare" queued): fills b with up to B rows; *eof at
 * the end of the input. Looks the batch's inputs up in the caches,
 * tokenises its captions and queues its images for the workers. */
static int read_batch(run *r, batch *b, int *eof) {
    double t0 = cs_now();
    batch_clear(b);
    b->epoch = r->batches_read++ / EPOCH_BATCHES;
    if (b->epoch != r->epoch) {
        cs_embed_cache_clear(r->img_cache);
        cs_embed_cache_clear(r->txt_cache);
        r->epoch = b->epoch;
    }
    while (b->n_rows < r->B && !*eof) {
        cs_input_row in;
        int rc = cs_inputs_next(r->inputs, &in, r->e);
        if (rc < 0) return rc;
        if (rc == 0) {
            *eof = 1;
            break;
        }
        row *w = &b->rows[b->n_rows++];
        if ((rc = read_row(r, b, w, &in))) return rc;
    }
    int px = 0, n_jobs = 0;
    for (int i = 0; i < b->n_img; i++) {
        uimage *u = &b->img[i];
        const float *hit = u->want_thumb ? NULL : cs_embed_cache_get(r->img_cache, u->path);
        if (hit) {
            memcpy(u->emb, hit, (size_t)r->D * sizeof *hit);
            u->cached = 1;
        } else {
            u->px_slot = px++;
            b->jobs[n_jobs++] = i;
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
    r->rec.t.read += cs_now() - t0;
    cs_pool_submit(&r->pool, &b->decode, prepare_image, b, b->jobs, n_jobs);
    return 0;
}

/* ------------------------------------------------------------ stage: encode */

static int cmp_len(const void *a, const void *b, void *arg) {
    const utext *t = arg;
    return t[*(const int *)a].n_ids - t[*(const int *)b].n_ids;
}

/* Marks the images and captions some row still needs: a caption whose every
 * row has a failed image (a missing file, say) is not worth encoding, nor
 * an image whose every caption failed. */
static void mark_needed(batch *b) {
    for (int i = 0; i < b->n_rows; i++) {
        const row *w = &b->rows[i];
        if (w->error || w->img < 0 || w->txt < 0) continue;
        if (b->img[w->img].rc == 0 && b->txt[w->txt].rc == 0) {
            b->img[w->img].needed = 1;
            b->txt[w->txt].needed = 1;
            for (int k = 0; k < b->n_ref; k++)
                if (w->ref[k] >= 0) b->txt[w->ref[k]].needed = 1;
        }
    }
}

/* Stage "encode": the unique images and captions of the batch that are
 * needed and not in the caches. */
static int encode_batch(run *r, batch *b) {
    const size_t per = 3 * (size_t)r->R * (size_t)r->R, D = (size_t)r->D;
    int *order =
        cs_malloc((size_t)(b->n_img > b->n_txt ? b->n_img : b->n_txt) + 1, sizeof *order, r->e);
    float *tmp = cs_malloc(((size_t)r->TB + 1) * D, sizeof *tmp, r->e);
    int32_t *ids = cs_malloc((size_t)TEXT_CHUNK * (size_t)r->T, sizeof *ids, r->e);
    int lens[TEXT_CHUNK];
    int rc = order && tmp && ids ? 0 : CLIPSCORE_ENOMEM;
    mark_needed(b);

    /* Images: decoded slots, compacted so the encoder sees one contiguous batch. */
    int k = 0;
    for (int i = 0; !rc && i < b->n_img; i++) {
        uimage *u = &b->img[i];
        if (u->cached || u->rc || !u->needed) {
            u->px_slot = -1; /* its pixels may be overwritten now */
            continue;
        }
        if (u->px_slot != k)
            memmove(b->px + (size_t)k * per, b->px + (size_t)u->px_slot * per, per * sizeof *b->px);
        u->px_slot = k; /* where the writers find the pixels the encoder saw */
        order[k++] = i;
    }
    if (!rc && k) {
        double t0 = cs_now();
        rc = cs_ctx_encode_images(r->ctx, b->px, k, tmp, r->e);
        r->rec.t.image += cs_now() - t0;
        for (int j = 0; !rc && j < k; j++) {
            uimage *u = &b->img[order[j]];
            memcpy(u->emb, tmp + (size_t)j * D, D * sizeof *tmp);
            if (b->epoch == r->epoch) rc = cs_embed_cache_put(r->img_cache, u->path, u->emb, r->e);
        }
        r->rec.images_encoded += k;
    }

    /* Captions: sorted by token count and encoded in chunks, each cut to
     * its longest caption. */
    k = 0;
    for (int i = 0; !rc && i < b->n_txt; i++) {
        utext *u = &b->txt[i];
        if (u->cached || u->rc || !u->needed) continue;
        /* The cache again: this batch was read before the one before it
         * was encoded, so a caption or reference repeated from that one
         * is found only now. */
        const float *hit = cs_embed_cache_get(r->txt_cache, u->text);
        if (hit) {
            memcpy(u->emb, hit, D * sizeof *hit);
            u->cached = 1;
            continue;
        }
        order[k++] = i;
    }
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
            rc = cs_ctx_encode_tokens(r->ctx, ids, lens, m, r->T, tmp, r->e);
            for (int j = 0; !rc && j < m; j++) {
                utext *u = &b->txt[order[s + j]];
                memcpy(u->emb, tmp + (size_t)j * D, D * sizeof *tmp);
                if (b->epoch == r->epoch)
                    rc = cs_embed_cache_put(r->txt_cache, u->text, u->emb, r->e);
                r->rec.references_encoded += u->is_ref;
            }
        }
        r->rec.t.text += cs_now() - t0;
        r->rec.texts_encoded += k;
    }
    free(order);
    free(tmp);
    free(ids);
    return rc;
}

/* ------------------------------------------------------------ stage: combine */

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

/* RefCLIPScore (Hessel et al., 2021, section 3): the harmonic mean of
 * CLIP-S = 2.5 max(cos(image, caption), 0) and max(max over references r
 * of cos(caption, r), 0); 0 when both are 0; NaN when the row has no
 * usable reference (all empty, or none could be tokenised). */
static double refclipscore(const run *r, const batch *b, const row *w) {
    double best = -INFINITY;
    for (int k = 0; k < r->n_ref; k++) {
        if (w->ref[k] < 0 || b->txt[w->ref[k]].rc) continue;
        double c = cosine(b->txt[w->txt].emb, b->txt[w->ref[k]].emb, r->D);
        if (c > best) best = c; /* a NaN (zero-length) reference never wins */
    }
    if (best == -INFINITY) return NAN;
    double clip_s = 2.5 * (w->sim > 0 ? w->sim : 0), ref_s = best > 0 ? best : 0;
    return clip_s + ref_s > 0 ? 2 * clip_s * ref_s / (clip_s + ref_s) : 0;
}

/* Stage "combine": each row's similarity (and RefCLIPScore), or its error. */
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
        if (!w->error) w->refclip = refclipscore(r, b, w);
    }
    return 0;
}

/* ------------------------------------------------------------ stage: write */

static int write_row(run *r, cs_writer *w, const cs_scored_row *sr) {
    return w && w->ops->row ? w->ops->row(w, sr, r->e) : 0;
}

/* Stage "write": the summary counts and notes, then each row to every
 * writer, in input order. */
static int write_batch(run *r, batch *b) {
    const size_t per = 3 * (size_t)r->R * (size_t)r->R;
    double t0 = cs_now();
    int rc = 0;
    for (int i = 0; !rc && i < b->n_rows; i++) {
        row *w = &b->rows[i];
        const utext *ut = w->txt >= 0 ? &b->txt[w->txt] : NULL;
        clipscore_score_summary *sum = &r->rec.sum;
        sum->rows++;
        if (ut && (ut->flags & CLIPSCORE_TOKEN_TRUNCATED)) {
            sum->truncated++;
            if (!r->noted_truncated++)
                cs_progress_note(&r->progress,
                                 "clipscore: %s: row %ld: caption longer than the "
                                 "model's context; truncated (noted once; counted in the "
                                 "summary)\n",
                                 w->source, w->index + 1);
        }
        if (ut && (ut->flags & CLIPSCORE_TOKEN_INVALID_UTF8)) {
            sum->invalid_utf8++;
            if (!r->noted_utf8++)
                cs_progress_note(&r->progress,
                                 "clipscore: %s: row %ld: caption is not valid UTF-8; "
                                 "bad bytes replaced by U+FFFD (noted once; counted in the "
                                 "summary)\n",
                                 w->source, w->index + 1);
        }
        if (w->error) {
            sum->failed++;
            const char *path = w->img >= 0 && !b->img[w->img].data ? b->img[w->img].path : NULL;
            char where[64] = "";
            if (w->line > 0) snprintf(where, sizeof where, " (line %ld)", w->line);
            cs_progress_note(&r->progress, "clipscore: %s: row %ld%s%s%s: %s\n", w->source,
                             w->index + 1, where, path ? ", " : "", path ? path : "", w->error);
        } else {
            sum->scored++;
            r->sim_total += w->sim;
            r->rec.refclipscore_rows += !isnan(w->refclip);
        }
        if (w->error) {
            for (int k = 0; k < r->D; k++) r->nimg[k] = r->ntxt[k] = NAN;
        } else {
            cs_l2_normalise(b->img[w->img].emb, r->D, r->nimg);
            cs_l2_normalise(b->txt[w->txt].emb, r->D, r->ntxt);
        }
        const uimage *ui = w->img >= 0 ? &b->img[w->img] : NULL;
        cs_scored_row sr = {
            .index = w->index,
            .line = w->line,
            .n_fields = w->n,
            .fields = w->f,
            .lens = w->len,
            .caption = r->cap_field < w->n ? w->f[r->cap_field] : "",
            .error = w->error,
            .similarity = w->sim,
            .img_emb = r->nimg,
            .txt_emb = r->ntxt,
            .thumb = ui && ui->thumb.px ? &ui->thumb : NULL,
            .pixels = ui && ui->px_slot >= 0 ? b->px + (size_t)ui->px_slot * per : NULL,
            .image = r->img_field < w->n ? w->f[r->img_field] : "",
            .image_path = ui && !ui->data ? ui->path : NULL,
            .image_tar = ui && ui->data ? w->source : NULL,
            .image_key = r->sp->image_key,
            .refclipscore = w->refclip,
        };
        rc = write_row(r, r->csv_out, &sr);
        if (!rc) rc = write_row(r, r->npy_out, &sr);
        if (!rc) rc = write_row(r, r->fig_out, &sr);
        if (!rc) rc = write_row(r, r->report_out, &sr);
        if (!rc && r->journal) {
            double tj = cs_now();
            rc = cs_journal_add(r->journal, &sr, ut ? ut->flags : 0u,
                                r->npy_out || w->index < r->fig_limit, r->e);
            r->rec.t.journal += cs_now() - tj;
        }
    }
    if (!rc && r->journal) {
        double tj = cs_now();
        rc = cs_journal_batch_done(r->journal, (r->batches_written + 1) % EPOCH_BATCHES == 0, r->e);
        r->rec.t.journal += cs_now() - tj;
    }
    r->batches_written++;
    r->rec.t.write += cs_now() - t0;
    return rc;
}

/* ------------------------------------------------------------ resume */

/* A row of the stopped run, from its journal: counted and written as it
 * was then. */
static int replay_row(void *arg, const cs_journal_row *jr, cs_error *e) {
    run *r = arg;
    const cs_scored_row *sr = &jr->row;
    clipscore_score_summary *sum = &r->rec.sum;
    sum->rows++;
    sum->truncated += (jr->flags & CLIPSCORE_TOKEN_TRUNCATED) != 0;
    sum->invalid_utf8 += (jr->flags & CLIPSCORE_TOKEN_INVALID_UTF8) != 0;
    if (sr->error) {
        sum->failed++;
    } else {
        sum->scored++;
        r->sim_total += sr->similarity;
    }
    r->rec.refclipscore_rows += !isnan(sr->refclipscore);
    cs_scored_row row = *sr;
    row.caption = r->cap_field < sr->n_fields ? sr->fields[r->cap_field] : "";
    row.image = r->img_field < sr->n_fields ? sr->fields[r->img_field] : "";
    /* A tar member's image is found again by its tar (the source field). */
    if (!row.image_path && cs_inputs_sample_schema(r->inputs) && sr->n_fields > 1 &&
        cs_wds_kind(sr->fields[1]) == 1) {
        row.image_tar = sr->fields[1];
        row.image_key = r->sp->image_key;
    }
    int rc = write_row(r, r->csv_out, &row);
    if (!rc) rc = write_row(r, r->npy_out, &row);
    if (!rc) rc = write_row(r, r->fig_out, &row);
    if (!rc) rc = write_row(r, r->report_out, &row);
    (void)e;
    return rc;
}

/* What must not change between a stopped run and its continuation: the
 * inputs (size and modification time), the weights, every option that
 * changes what is written, the shard. */
static cJSON *run_identity(run *r) {
    const clipscore_score_params *sp = r->sp;
    char sha[65] = "";
    if (cs_ctx_weights_sha256(r->ctx, sha, r->e)) return NULL;
    clipscore_model_info mi;
    clipscore_get_model_info(r->ctx, &mi);
    cJSON *id = cJSON_CreateObject();
    cJSON *ins = cJSON_AddArrayToObject(id, "inputs");
    for (int i = 0; i < r->n_paths; i++) {
        struct stat st;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(ins, o);
        cJSON_AddStringToObject(o, "path", r->paths[i]);
        if (stat(r->paths[i], &st) == 0) {
            cJSON_AddNumberToObject(o, "size", (double)st.st_size);
            cJSON_AddNumberToObject(o, "mtime_ns",
                                    (double)st.st_mtim.tv_sec * 1e9 + (double)st.st_mtim.tv_nsec);
        }
    }
    cJSON_AddStringToObject(id, "weights_sha256", sha);
    cJSON *o = cJSON_AddObjectToObject(id, "options");
    cJSON_AddStringToObject(o, "template", sp->caption_template ? sp->caption_template : "{}");
    cJSON_AddStringToObject(o, "image_column", sp->image_column ? sp->image_column : "");
    cJSON_AddStringToObject(o, "caption_column", sp->caption_column ? sp->caption_column : "");
    cJSON_AddStringToObject(o, "image_root", sp->image_root ? sp->image_root : "");
    cJSON_AddStringToObject(o, "image_key", sp->image_key ? sp->image_key : "");
    cJSON_AddStringToObject(o, "caption_key", sp->caption_key ? sp->caption_key : "");
    cJSON_AddStringToObject(o, "metric",
                            sp->metric == CLIPSCORE_METRIC_CLIPSCORE ? "clipscore" : "cosine");
    cJSON_AddStringToObject(o, "precision", mi.precision);
    cJSON_AddStringToObject(o, "device", strncmp(mi.device, "cuda", 4) == 0 ? "cuda" : mi.device);
    cJSON_AddNumberToObject(o, "max_pixels", (double)cs_ctx_max_pixels(r->ctx));
    cJSON_AddStringToObject(o, "decode", cs_ctx_decode_min_side(r->ctx) ? "fast" : "exact");
    cJSON_AddBoolToObject(o, "embeddings", sp->save_embeddings != NULL);
    cJSON_AddNumberToObject(o, "figure_limit", r->fig_limit);
    cJSON *sh = cJSON_AddArrayToObject(id, "shard");
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(sp->shard_count > 0 ? sp->shard_index : 0));
    cJSON_AddItemToArray(sh, cJSON_CreateNumber(sp->shard_count > 0 ? sp->shard_count : 1));
    if (cJSON_GetArraySize(sh) != 2) {
        cJSON_Delete(id);
        cs_fail(r->e, CLIPSCORE_ENOMEM, "out of memory");
        return NULL;
    }
    return id;
}

/* Continues a stopped run when its journal is there (and resume is on),
 * else starts a journal; then skips the rows it had scored. Streams cannot
 * be read again: no journal for them. */
static int start_journal(run *r) {
    const clipscore_score_params *sp = r->sp;
    char *jp = cs_path_join(r->out_dir, CS_JOURNAL_NAME, r->e);
    if (!jp) return CLIPSCORE_ENOMEM;
    if ((!sp->resume || sp->restart) && cs_file_exists(jp)) unlink(jp);
    free(jp);
    if (!sp->resume || r->stream) return 0;
    cJSON *id = run_identity(r);
    if (!id) return r->e->code ? r->e->code : CLIPSCORE_ENOMEM;
    int64_t resumed = 0;
    int rc = cs_journal_open(r->out_dir, id, sp->restart, r->D, replay_row, r, &r->journal,
                             &resumed, r->e);
    if (rc) return rc;
    r->rec.journal = 1;
    r->rec.sum.resumed_rows = resumed;
    if (!resumed) return 0;
    /* The journal ends at an epoch mark: the epochs go on from there. */
    r->batches_read = r->batches_written = (long)(resumed / r->B);
    r->epoch = r->batches_read / EPOCH_BATCHES;
    cs_progress_note(&r->progress, "clipscore: resuming: %lld rows already scored\n",
                     (long long)resumed);
    if (!sp->progress)
        fprintf(stderr, "clipscore: resuming: %lld rows already scored\n", (long long)resumed);
    for (int64_t i = 0; i < resumed; i++) {
        cs_input_row in;
        rc = cs_inputs_next(r->inputs, &in, r->e);
        if (rc < 0) return rc;
        if (rc == 0)
            return cs_fail(r->e, CLIPSCORE_EFORMAT,
                           "the journal holds %lld rows but the inputs now have %lld; "
                           "use --restart",
                           (long long)resumed, (long long)i);
    }
    return 0;
}

/* ------------------------------------------------------------ setup */

/* Our column name, or name_2, name_3... when the input already has it. */
static char *free_column_name(int n, const char *const *header, const char *name, cs_error *e) {
    for (int k = 1; k < 100; k++) {
        char cand[64];
        if (k == 1)
            snprintf(cand, sizeof cand, "%s", name);
        else
            snprintf(cand, sizeof cand, "%s_%d", name, k);
        int taken = 0;
        for (int i = 0; i < n && !taken; i++) taken = strcmp(header[i], cand) == 0;
        if (!taken) return cs_strdup(cand, e);
    }
    cs_fail(e, CLIPSCORE_EFORMAT, "too many columns named %s", name);
    return NULL;
}

/* The --reference-column columns: found by name or #N, none of them the
 * image or caption column. */
static int find_reference_columns(run *r, int n_h, const char *const *names) {
    const clipscore_score_params *sp = r->sp;
    if (sp->n_reference_columns <= 0) return 0;
    if (cs_inputs_sample_schema(r->inputs))
        return cs_fail(r->e, CLIPSCORE_EARG,
                       "--reference-column needs CSV inputs that share one header (tars, "
                       "folders and CSVs of other headers have no reference columns)");
    r->col_ref = cs_calloc((size_t)sp->n_reference_columns, sizeof *r->col_ref, r->e);
    size_t *lens = cs_calloc((size_t)(n_h ? n_h : 1), sizeof *lens, r->e);
    if (!r->col_ref || !lens) {
        free(lens);
        return CLIPSCORE_ENOMEM;
    }
    for (int k = 0; k < n_h; k++) lens[k] = strlen(names[k]);
    /* The output header is the CSVs' own here: a record to look names up in. */
    cs_csv_record h = {.n = n_h, .fields = (char **)names, .lens = lens};
    int rc = 0;
    for (int k = 0; !rc && k < sp->n_reference_columns; k++) {
        int c = cs_csv_find_column(&h, r->input, sp->reference_columns[k], NULL, "reference", r->e);
        if (c < 0)
            rc = c;
        else if (c == r->img_field || c == r->cap_field)
            rc = cs_fail(r->e, CLIPSCORE_EARG, "%s: --reference-column %s is the %s column",
                         r->input, sp->reference_columns[k],
                         c == r->img_field ? "image" : "caption");
        else
            r->col_ref[r->n_ref++] = c;
    }
    free(lens);
    r->rec.reference_columns = r->col_ref;
    r->rec.header_names = names;
    return rc;
}

/* Same file? (by device and inode, so links and ./ spellings count). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* An input with no folder of its own: "-", a pipe or socket, a device, or
 * anything under /dev or /proc (/dev/stdin, <(...) as /dev/fd/N): its
 * "folder" is no place to write outputs or look for images. */
static int is_stream_input(const char *path) {
    if (strcmp(path, "-") == 0) return 1;
    if (strncmp(path, "/dev/", 5) == 0 || strncmp(path, "/proc/", 6) == 0) return 1;
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) return 1;
    char *real = realpath(path, NULL);
    int dev = real && (strncmp(real, "/dev/", 5) == 0 || strncmp(real, "/proc/", 6) == 0);
    free(real);
    return dev;
}

/* Checks one output path: not the input, and (unless it is optional, as
 * the figures are) not a folder. */
static int check_output(run *r, const char *dir, const char *name, const char *option,
                        int optional) {
    char *p = cs_path_join(dir, name, r->e);
    if (!p) return CLIPSCORE_ENOMEM;
    int rc = 0;
    struct stat st;
    for (int i = 0; !rc && i < r->n_paths; i++)
        if (same_file(p, r->paths[i]))
            rc = cs_fail(r->e, CLIPSCORE_EARG,
                         "%s would be overwritten by the output %s; choose another folder with %s",
                         r->paths[i], p, option);
    if (!rc && !optional && lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        rc = cs_fail(r->e, CLIPSCORE_EIO,
                     "the output %s is a folder; remove it or choose another "
                     "folder with %s",
                     p, option);
    free(p);
    return rc;
}

/* Whether the run.json of an earlier run in dir says it wrote the figures
 * (key "figures") or the report ("report"): then they are this tool's, and
 * are removed when this run writes none. */
static int previous_run_wrote(const char *dir, const char *key) {
    char *p = cs_path_join(dir, "run.json", NULL);
    char *text = NULL;
    size_t len = 0;
    struct stat st;
    int drew = 0;
    if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) &&
        cs_read_file(p, 1 << 20, &text, &len, NULL) == 0) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        const cJSON *tool = cJSON_GetObjectItemCaseSensitive(j, "tool");
        const cJSON *fig = cJSON_GetObjectItemCaseSensitive(j, key);
        drew = cJSON_IsString(tool) && strcmp(tool->valuestring, "clipscore") == 0 &&
               cJSON_IsTrue(fig);
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return drew;
}

/* The folder's lock and the clean-up of what killed runs left there. */
static int claim_folder(run *r, const char *dir, cs_output_lock *l) {
    int rc = cs_output_lock_take(dir, l, r->e);
    if (rc) return rc;
    int n = cs_output_remove_stale(dir, output_names, N_OUTPUT_NAMES);
    if (n)
        cs_progress_note(&r->progress,
                         "clipscore: removed %d temporary file%s left in %s by a run that was "
                         "stopped\n",
                         n, n == 1 ? "" : "s", dir);
    return 0;
}

static int same_dir(const char *a, const char *b) {
    return same_file(a, b);
}

static int setup(run *r) {
    const clipscore_score_params *sp = r->sp;
    int rc;
    if (sp->n_inputs > 0) {
        r->paths = sp->inputs;
        r->n_paths = sp->n_inputs;
    } else {
        r->paths = &sp->input_csv;
        r->n_paths = 1;
    }
    if (!r->paths || !r->paths[0] || !*r->paths[0])
        return cs_fail(r->e, CLIPSCORE_EARG, "no input given");
    if (sp->caption_template && !strstr(sp->caption_template, "{}"))
        return cs_fail(r->e, CLIPSCORE_EARG, "--template '%s' has no {} for the caption",
                       sp->caption_template);
    if (sp->shard_count < 0 ||
        (sp->shard_count > 0 && (sp->shard_index < 0 || sp->shard_index >= sp->shard_count)))
        return cs_fail(r->e, CLIPSCORE_EARG, "shard %d/%d: K must be in 0..N-1", sp->shard_index,
                       sp->shard_count);
    if (!isnan(sp->keep_fraction) && !(sp->keep_fraction > 0 && sp->keep_fraction <= 1))
        return cs_fail(r->e, CLIPSCORE_EARG, "--keep-fraction %g: must be in (0, 1]",
                       sp->keep_fraction);
    r->input = r->paths[0];
    const cs_clip_config *clip = cs_ctx_clip(r->ctx);
    r->B = sp->batch_size > 0 ? sp->batch_size : 32;
    r->TB = r->B * (1 + (sp->n_reference_columns > 0 ? sp->n_reference_columns : 0));
    r->D = clip->embed_dim;
    r->T = clip->context_length;
    r->R = cs_ctx_preprocess(r->ctx)->size;
    r->fig_limit = sp->figures ? (sp->figure_limit > 0 ? sp->figure_limit : 64) : 0;
#ifndef CLIPSCORE_HAVE_FIGURES
    r->fig_limit = 0;
#endif
    r->stream = is_stream_input(r->input);
    cs_inputs_params ip = {
        .paths = r->paths,
        .n_paths = r->n_paths,
        .image_column = sp->image_column,
        .caption_column = sp->caption_column,
        .image_root = sp->image_root,
        .image_key = sp->image_key,
        .caption_key = sp->caption_key,
        .shard_index = sp->shard_index,
        .shard_count = sp->shard_count,
    };
    if (sp->image_root && !cs_is_dir(sp->image_root))
        return cs_fail(r->e, CLIPSCORE_EARG, "--image-root %s: no such folder", sp->image_root);
    if ((rc = cs_inputs_open(&ip, &r->inputs, r->e))) return rc;
    const int n_h = cs_inputs_n_header(r->inputs);
    const char *const *h = cs_inputs_header(r->inputs);
    r->cap_field = cs_inputs_caption_field(r->inputs);
    r->img_field = cs_inputs_image_field(r->inputs);
    if ((rc = find_reference_columns(r, n_h, h))) return rc;
    r->rec.image_column = cs_inputs_image_column(r->inputs);
    r->rec.caption_column = cs_inputs_caption_column(r->inputs);
    if (!(r->sim_name = free_column_name(n_h, h, "similarity", r->e)) ||
        !(r->err_name = free_column_name(n_h, h, "error", r->e)) ||
        !(r->cs_name = free_column_name(n_h, h, "clipscore", r->e)) ||
        !(r->ref_name = free_column_name(n_h, h, "refclipscore", r->e)))
        return CLIPSCORE_ENOMEM;

    /* Outputs go beside the first input, or for a stream (which has no
     * folder) in the current folder. */
    r->out_dir = sp->output_dir ? cs_strdup(sp->output_dir, r->e)
                 : r->stream    ? cs_strdup(".", r->e)
                                : cs_path_dirname(r->input, r->e);
    if (!r->out_dir) return CLIPSCORE_ENOMEM;
    if ((rc = cs_mkdir_p(r->out_dir, r->e))) return rc;
    if (sp->save_embeddings && (rc = cs_mkdir_p(sp->save_embeddings, r->e))) return rc;

    /* Every output, whatever option names it, is checked against the input
     * before anything is written. */
    for (int i = 0; i < 4; i++)
        if ((rc = check_output(r, r->out_dir, output_names[i], "-o", i >= 2))) return rc;
    if (cs_keep_wanted(sp->keep_threshold, sp->keep_fraction) &&
        (rc = check_output(r, r->out_dir, output_names[OUT_KEPT], "-o", 0)))
        return rc;
    r->rec.keep = cs_keep_wanted(sp->keep_threshold, sp->keep_fraction);
    if (sp->report && (rc = check_output(r, r->out_dir, output_names[OUT_REPORT], "-o", 0)))
        return rc;
    for (int i = 4; sp->save_embeddings && i < 6; i++)
        if ((rc = check_output(r, sp->save_embeddings, output_names[i], "--save-embeddings", 0)))
            return rc;

    /* One run per folder at a time. */
    if ((rc = claim_folder(r, r->out_dir, &r->lock_out))) return rc;
    if (sp->save_embeddings && !same_dir(sp->save_embeddings, r->out_dir) &&
        (rc = claim_folder(r, sp->save_embeddings, &r->lock_emb)))
        return rc;
    r->stale_figures = !r->fig_limit && previous_run_wrote(r->out_dir, "figures");
    r->stale_report = !sp->report && previous_run_wrote(r->out_dir, "report");

    /* The writers, in the order they finish and are committed. */
    char *p = cs_path_join(r->out_dir, "output.csv", r->e);
    if (!p) return CLIPSCORE_ENOMEM;
    rc = cs_csv_writer_new(p, n_h, h, r->sim_name,
                           sp->metric == CLIPSCORE_METRIC_CLIPSCORE || r->n_ref ? r->cs_name : NULL,
                           r->n_ref ? r->ref_name : NULL, r->err_name, &r->csv_out, r->e);
    free(p);
    if (rc) return rc;
    if (sp->save_embeddings &&
        (rc = cs_npy_writer_new(sp->save_embeddings, r->D, &r->npy_out, r->e)))
        return rc;
    if (r->fig_limit &&
        (rc = cs_figures_writer_new(r->out_dir, r->fig_limit, r->D, &r->fig_out, r->e)))
        return rc;
    if (sp->report) {
        if (!(p = cs_path_join(r->out_dir, output_names[OUT_REPORT], r->e)))
            return CLIPSCORE_ENOMEM;
        rc = cs_report_writer_new(p, sp->report_pairs > 0 ? sp->report_pairs : 50,
                                  cs_ctx_preprocess(r->ctx), cs_ctx_max_pixels(r->ctx),
                                  sp->keep_threshold, &r->report_out, r->e);
        free(p);
        if (rc) return rc;
    }
    if (!(p = cs_path_join(r->out_dir, "run.json", r->e))) return CLIPSCORE_ENOMEM;
    rc = cs_run_json_writer_new(p, &r->json_out, r->e);
    free(p);
    if (rc) return rc;

    r->nimg = cs_malloc((size_t)r->D * 2, sizeof *r->nimg, r->e);
    if (!r->nimg) return CLIPSCORE_ENOMEM;
    r->ntxt = r->nimg + r->D;
    if ((rc = cs_embed_cache_new(CACHE_ENTRIES, r->D, &r->img_cache, r->e))) return rc;
    if ((rc = cs_embed_cache_new(CACHE_ENTRIES, r->D, &r->txt_cache, r->e))) return rc;
    if ((rc = cs_decode_budget_init(&r->budget, cs_decode_budget_default_bytes(), r->e))) return rc;
    r->budget_ready = 1;
    if ((rc = batch_alloc(r, &r->b[0])) || (rc = batch_alloc(r, &r->b[1]))) return rc;
    /* Decode workers: the cores libtorch's own threads leave over while it
     * encodes; at least one so decoding overlaps encoding. */
    int threads = cs_ctx_threads(r->ctx);
    if ((rc = cs_pool_start(&r->pool, threads > 1 ? threads - 1 : 1, 2 * r->B + 1, r->e)))
        return rc;
    if ((rc = start_journal(r))) return rc;
    /* The progress total: known for a shard of rows; counted for CSVs; for
     * tars and folders, counting would read them twice. */
    int64_t hint = cs_inputs_rows_hint(r->inputs);
    if (hint >= 0)
        r->progress.total = (long)hint;
    else if (r->progress.enabled && !r->stream && !cs_inputs_sample_schema(r->inputs) &&
             sp->shard_count <= 0) {
        long total = 0;
        for (int i = 0; i < r->n_paths && total >= 0; i++) {
            long n = cs_progress_count_rows(r->paths[i], cs_ctx_cancel_flag(r->ctx));
            total = n < 0 ? -1 : total + n;
        }
        r->progress.total = total;
    }
    return 0;
}

/* ------------------------------------------------------------ finish */

/* kept.csv, from output.csv's finished temporary. */
static int write_kept(run *r) {
    char *csv = cs_path_join(r->out_dir, output_names[0], r->e);
    char *kept = cs_path_join(r->out_dir, output_names[OUT_KEPT], r->e);
    int rc = csv && kept ? 0 : CLIPSCORE_ENOMEM;
    const char *tmp = rc ? NULL : cs_commit_tmp_path(&r->commit, csv);
    cs_atomic_file af;
    memset(&af, 0, sizeof af);
    cs_keep_result kr;
    if (!rc && !tmp) rc = cs_fail(r->e, CLIPSCORE_EINTERNAL, "output.csv is not finished");
    if (!rc)
        rc = cs_keep_write(tmp, r->sim_name, r->sp->keep_threshold, r->sp->keep_fraction, kept, &af,
                           &kr, r->e);
    if (!rc) rc = cs_commit_add(&r->commit, &af, r->e);
    if (!rc) {
        r->rec.sum.kept = kr.kept;
        r->rec.sum.keep_threshold = kr.threshold;
    }
    free(csv);
    free(kept);
    return rc;
}

/* Finishes the writers, output.csv first and run.json last, and commits
 * their files together. The figures are optional: one that cannot be drawn
 * is a warning and the scores are committed all the same. */
static int finish(run *r) {
    int rc = r->csv_out->ops->finish(r->csv_out, &r->rec, &r->commit, r->e);
    if (!rc && r->rec.keep) rc = write_kept(r);
    if (!rc && r->npy_out) rc = r->npy_out->ops->finish(r->npy_out, &r->rec, &r->commit, r->e);
    if (!rc && r->fig_out) {
        double t0 = cs_now();
        cs_error fe;
        cs_error_clear(&fe);
        r->rec.figures_written = r->fig_out->ops->finish(r->fig_out, &r->rec, &r->commit, &fe) == 0;
        if (!r->rec.figures_written)
            fprintf(stderr, "clipscore: warning: figures not written: %s\n", fe.msg);
        r->rec.t.figures = cs_now() - t0;
    }
    r->rec.t.total = cs_now() - r->progress.t_start;
    if (!rc && r->report_out) {
        double t0 = cs_now();
        rc = r->report_out->ops->finish(r->report_out, &r->rec, &r->commit, r->e);
        r->rec.report_written = !rc;
        r->rec.t.report = cs_now() - t0;
    }
    if (!rc) rc = r->json_out->ops->finish(r->json_out, &r->rec, &r->commit, r->e);
    if (!rc) rc = cs_commit_apply(&r->commit, r->e);
    /* Committed: the stopped run's rows are in the outputs now. */
    if (!rc && r->journal) {
        cs_journal_close(r->journal, 1);
        r->journal = NULL;
    }
    /* Figures of an earlier run would pass for this run's: remove them. */
    if (!rc && !r->rec.figures_written && (r->stale_figures || r->fig_limit)) {
        for (int i = 2; i < 4; i++) {
            char *p = cs_path_join(r->out_dir, output_names[i], NULL);
            struct stat st;
            if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) unlink(p);
            free(p);
        }
    }
    /* Likewise a report of an earlier run, when this run writes none. */
    if (!rc && r->stale_report) {
        char *p = cs_path_join(r->out_dir, output_names[OUT_REPORT], NULL);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode)) unlink(p);
        free(p);
    }
    return rc;
}

static void cleanup(run *r) {
    cs_pool_stop(&r->pool);
    if (r->budget_ready) cs_decode_budget_destroy(&r->budget);
    batch_free(&r->b[0]);
    batch_free(&r->b[1]);
    cs_commit_abort(&r->commit);     /* empty after a successful commit */
    cs_journal_close(r->journal, 0); /* kept: the same command continues */
    cs_writer_destroy(r->csv_out);
    cs_writer_destroy(r->npy_out);
    cs_writer_destroy(r->fig_out);
    cs_writer_destroy(r->report_out);
    cs_writer_destroy(r->json_out);
    cs_output_lock_release(&r->lock_emb);
    cs_output_lock_release(&r->lock_out);
    cs_inputs_close(r->inputs);
    cs_embed_cache_free(r->img_cache);
    cs_embed_cache_free(r->txt_cache);
    free(r->nimg);
    free(r->out_dir);
    free(r->sim_name);
    free(r->err_name);
    free(r->cs_name);
    free(r->ref_name);
    free(r->col_ref);
}

static void print_summary(run *r) {
    const clipscore_score_summary *s = &r->rec.sum;
    fprintf(stderr, "clipscore: %ld rows: %ld scored, %ld failed, %ld captions truncated",
            (long)s->rows, (long)s->scored, (long)s->failed, (long)s->truncated);
    if (s->invalid_utf8) fprintf(stderr, ", %ld with invalid UTF-8", (long)s->invalid_utf8);
    if (s->scored) fprintf(stderr, "; mean similarity %.4f", s->mean_similarity);
    fprintf(stderr, "; %.1f s\nclipscore: wrote %s/output.csv, run.json%s%s\n", s->seconds,
            r->out_dir, r->rec.report_written ? ", report.html" : "",
            r->rec.figures_written ? ", image_captions.jpg, similarity_matrix.jpg" : "");
}

static int cancelled(run *r) {
    if (r->journal)
        return cs_fail(r->e, CLIPSCORE_ECANCELED,
                       "interrupted after %ld rows; no output was replaced; the scored rows are "
                       "kept in %s/%s: run the same command to continue",
                       (long)r->rec.sum.rows, r->out_dir, CS_JOURNAL_NAME);
    return cs_fail(r->e, CLIPSCORE_ECANCELED, "interrupted after %ld rows; nothing was written",
                   (long)r->rec.sum.rows);
}

int clipscore_score_csv(clipscore_context *ctx, const clipscore_score_params *params,
                        clipscore_score_summary *summary) {
    /* The only place the cancel flag is cleared: a request that arrives
     * from here on, during start-up included, stops this run. */
    cs_ctx_cancel_clear(ctx);
    cs_error err;
    cs_error_clear(&err);
    run r;
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    r.sp = params;
    r.e = &err;
    cs_output_lock_init(&r.lock_out);
    cs_output_lock_init(&r.lock_emb);
    cs_commit_init(&r.commit);
    cs_progress_init(&r.progress, params->progress);
    r.rec.ctx = ctx;
    r.rec.sp = params;
    r.rec.input = params->n_inputs > 0 && params->inputs ? params->inputs[0] : params->input_csv;
    r.rec.sum.mean_similarity = NAN;
    r.rec.sum.keep_threshold = NAN;
    int rc = setup(&r);
    r.rec.batch_size = r.B;
    r.rec.inputs = r.paths;
    r.rec.n_inputs = r.n_paths;
    r.rec.shard_index = params->shard_index;
    r.rec.shard_count = params->shard_count;
    if (r.inputs) {
        r.rec.sample_schema = cs_inputs_sample_schema(r.inputs);
        cs_inputs_share(r.inputs, &r.rec.first_input, &r.rec.last_input, &r.rec.row_lo,
                        &r.rec.row_hi);
    }
    if (!rc) rc = cs_inputs_digest(r.paths, r.n_paths, r.rec.inputs_digest, &err);
    if (!rc && cs_ctx_cancelled(ctx)) rc = cancelled(&r);

    /* The loop: batch k+1 is read and queued for the decode workers before
     * batch k is encoded, so decoding overlaps the encoders. */
    int eof = 0, cur = 0;
    if (!rc) rc = read_batch(&r, &r.b[0], &eof);
    while (!rc && r.b[cur].n_rows > 0) {
        batch *b = &r.b[cur], *next = &r.b[1 - cur];
        if (cs_ctx_cancelled(ctx)) {
            rc = cancelled(&r);
            break;
        }
        if (!eof)
            rc = read_batch(&r, next, &eof);
        else
            batch_clear(next);
        double t0 = cs_now();
        cs_pool_wait(&r.pool, &b->decode);
        r.rec.t.wait += cs_now() - t0;
        r.rec.t.decode_cpu += b->decode.seconds;
        if (!rc) rc = encode_batch(&r, b);
        if (!rc) rc = combine_batch(&r, b);
        if (!rc) rc = write_batch(&r, b);
        cs_progress_update(&r.progress, (long)r.rec.sum.rows, 0);
        cur = 1 - cur;
    }
    /* Workers must be done with both batches before anything is freed; on a
     * failure, ones waiting for decode memory give up at once. */
    if (rc && r.budget_ready) cs_decode_budget_cancel(&r.budget);
    if (r.pool.q) {
        cs_pool_wait(&r.pool, &r.b[0].decode);
        cs_pool_wait(&r.pool, &r.b[1].decode);
    }
    if (!rc) {
        clipscore_score_summary *s = &r.rec.sum;
        int64_t held;
        r.rec.decode_budget = r.budget.total;
        cs_decode_budget_stats(&r.budget, &held, &r.rec.decode_peak, &r.rec.decode_waits);
        s->mean_similarity = s->scored ? r.sim_total / (double)s->scored : NAN;
        cs_progress_update(&r.progress, (long)s->rows, 1);
        rc = finish(&r);
    }
    r.rec.sum.seconds = cs_now() - r.progress.t_start;
    if (!rc && params->progress) print_summary(&r);
    if (summary) *summary = r.rec.sum;
    cleanup(&r);
    return rc ? cs_ctx_fail(ctx, rc, &err) : 0;
}
