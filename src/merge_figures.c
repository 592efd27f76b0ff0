/* merge_figures.c - the figures of a merged run, drawn again from its first
 * rows: their images read again (from the files, tars or folders the rows
 * name) and encoded with the parts' model, as one scoring run draws them.
 *
 * Covers: finding each row's image (a tar member or folder file by key, a
 * CSV row's path against its CSV's folder or the image root), decoding it
 * for the thumbnail and the image encoder, encoding the captions with the
 * run's template, and the figures writer (writer.h).
 * Leaves out: the merge itself (merge.c). A row whose image is not
 * reachable from this machine makes the figures a warning, not a failure. */
#define _GNU_SOURCE
#include "merge_figures.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "csv_io.h"
#include "image.h"
#include "webdataset.h"
#include "writer.h"

#define THUMB_SIDE 256 /* as the scorer's figures */

static const char *str(const cJSON *j, const char *key) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, key));
}

/* The figure rows: the first `limit` records of the merged output.csv. */
typedef struct fig_rows {
    int n;
    char **caption, **error, **key, **source;
    double *sim;
} fig_rows;

static void rows_free(fig_rows *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->caption[i]);
        free(f->error[i]);
        free(f->key[i]);
        free(f->source[i]);
    }
    free(f->caption);
    free(f->error);
    free(f->key);
    free(f->source);
    free(f->sim);
}

static char *field(const cs_csv_record *r, int k) {
    return strdup(k >= 0 && k < r->n ? r->fields[k] : "");
}

static int read_rows(const char *csv, const cJSON *run, int limit, fig_rows *f, cs_error *e) {
    cs_csv_reader *r = NULL;
    int rc = cs_csv_open(csv, &r, e);
    if (rc) return rc;
    const cs_csv_record *h = cs_csv_header(r);
    int sample = strcmp(str(run, "columns") ? str(run, "columns") : "", "input") != 0;
    int c_key = cs_csv_column_named(h, sample ? "key" : str(run, "image_column"), 0);
    int c_src = sample ? cs_csv_column_named(h, "source", 0) : -1;
    int c_cap = cs_csv_column_named(h, sample ? "caption" : str(run, "caption_column"), 0);
    int c_sim = -1, c_err = -1;
    for (int k = 0; k < h->n; k++) {
        if (c_sim < 0 && strncmp(h->fields[k], "similarity", 10) == 0) c_sim = k;
        if (strncmp(h->fields[k], "error", 5) == 0) c_err = k;
    }
    f->caption = calloc((size_t)limit, sizeof *f->caption);
    f->error = calloc((size_t)limit, sizeof *f->error);
    f->key = calloc((size_t)limit, sizeof *f->key);
    f->source = calloc((size_t)limit, sizeof *f->source);
    f->sim = calloc((size_t)limit, sizeof *f->sim);
    if (!f->caption || !f->error || !f->key || !f->source || !f->sim)
        rc = cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    if (!rc && (c_key < 0 || c_cap < 0 || c_sim < 0))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: its columns do not say where the images are", csv);
    cs_csv_record rec;
    int malformed;
    while (!rc && f->n < limit && (rc = cs_csv_next(r, &rec, &malformed, e)) == 1) {
        int i = f->n++;
        f->caption[i] = field(&rec, c_cap);
        f->key[i] = field(&rec, c_key);
        f->source[i] = c_src >= 0 ? field(&rec, c_src) : NULL;
        f->error[i] = c_err >= 0 && c_err < rec.n && rec.lens[c_err] ? field(&rec, c_err) : NULL;
        f->sim[i] = c_sim < rec.n && rec.lens[c_sim] ? strtod(rec.fields[c_sim], NULL) : NAN;
        rc = f->caption[i] && f->key[i] ? 0 : cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    }
    cs_csv_close(r);
    return rc < 0 ? rc : 0;
}

/* Decodes row i's image. */
static int load_image(const cJSON *run, const fig_rows *f, int i, int64_t max_pixels, int min_side,
                      cs_image *img, cs_error *e) {
    const char *src = f->source[i];
    if (!src) { /* the CSV layout: paths against the first input's folder */
        const cJSON *ins = cJSON_GetObjectItemCaseSensitive(run, "inputs");
        src = cJSON_GetStringValue(cJSON_GetArrayItem(ins, 0));
    }
    if (!src) return cs_fail(e, CLIPSCORE_EFORMAT, "run.json names no input");
    if (cs_wds_kind(src)) {
        cs_wds_options o;
        memset(&o, 0, sizeof o);
        o.image_key = str(run, "image_key");
        o.caption_key = str(run, "caption_key");
        cs_wds_reader *holder = NULL;
        cs_wds_sample s;
        int rc = cs_wds_find(src, &o, f->key[i], &holder, &s, e);
        if (rc == 1) rc = cs_fail(e, CLIPSCORE_EIO, "%s: no sample %s", src, f->key[i]);
        if (!rc && s.image)
            rc = cs_image_load_memory_scaled(s.image, s.image_len, f->key[i], max_pixels, NULL,
                                             min_side, img, e);
        else if (!rc && s.image_path)
            rc = cs_image_load_scaled(s.image_path, max_pixels, NULL, min_side, img, e);
        else if (!rc)
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: sample %s has no image", src, f->key[i]);
        cs_wds_close(holder);
        return rc;
    }
    const char *root = str(run, "image_root");
    char *base = root ? strdup(root) : cs_path_dirname(src, e);
    char *path = base ? cs_path_join(base, f->key[i], e) : NULL;
    int rc =
        path ? cs_image_load_scaled(path, max_pixels, NULL, min_side, img, e) : CLIPSCORE_ENOMEM;
    free(base);
    free(path);
    return rc;
}

static int draw(clipscore_context *ctx, const cJSON *run, const fig_rows *f, const char *out_dir,
                int limit, int64_t total_rows, cs_commit *c, cs_error *e) {
    const cs_preprocess_cfg *pp = cs_ctx_preprocess(ctx);
    const int D = cs_ctx_clip(ctx)->embed_dim, R = pp->size, n = f->n;
    const size_t per = 3 * (size_t)R * (size_t)R;
    float *px = calloc((size_t)n * per + 1, sizeof *px);
    float *img_emb = calloc((size_t)n * D + 1, sizeof *img_emb);
    float *txt_emb = calloc((size_t)n * D + 1, sizeof *txt_emb);
    cs_image *thumbs = calloc((size_t)n + 1, sizeof *thumbs);
    char **texts = calloc((size_t)n + 1, sizeof *texts);
    int rc = px && img_emb && txt_emb && thumbs && texts
                 ? 0
                 : cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        if (!(texts[i] = cs_apply_template(str(run, "template"), f->caption[i], NULL)))
            rc = cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        if (rc || f->error[i]) continue; /* failed rows are drawn with their error */
        cs_image img;
        rc = load_image(run, f, i, cs_ctx_max_pixels(ctx), cs_ctx_decode_min_side(ctx), &img, e);
        if (!rc) {
            rc = cs_image_preprocess(&img, pp, px + (size_t)i * per, e);
            if (!rc) rc = cs_image_thumbnail(&img, THUMB_SIDE, &thumbs[i], e);
            cs_image_free(&img);
        }
    }
    if (!rc)
        rc = clipscore_encode_images(ctx, px, n, img_emb)
                 ? cs_fail(e, CLIPSCORE_EMODEL, "%s", clipscore_last_error(ctx))
                 : 0;
    if (!rc)
        rc = clipscore_encode_texts(ctx, (const char *const *)texts, n, txt_emb, NULL)
                 ? cs_fail(e, CLIPSCORE_EMODEL, "%s", clipscore_last_error(ctx))
                 : 0;
    cs_writer *w = NULL;
    if (!rc) rc = cs_figures_writer_new(out_dir, limit, D, &w, e);
    for (int i = 0; !rc && i < n; i++) {
        float *ie = img_emb + (size_t)i * D, *te = txt_emb + (size_t)i * D;
        cs_l2_normalise(ie, D, ie);
        cs_l2_normalise(te, D, te);
        if (f->error[i])
            for (int k = 0; k < D; k++) ie[k] = te[k] = NAN;
        cs_scored_row sr = {.index = i,
                            .caption = f->caption[i],
                            .error = f->error[i],
                            .similarity = f->sim[i],
                            .img_emb = ie,
                            .txt_emb = te,
                            .thumb = thumbs[i].px ? &thumbs[i] : NULL};
        rc = w->ops->row(w, &sr, e);
    }
    if (!rc) {
        cs_run_record rec;
        memset(&rec, 0, sizeof rec);
        rec.sum.rows = total_rows;
        rc = w->ops->finish(w, &rec, c, e);
    }
    cs_writer_destroy(w);
    for (int i = 0; thumbs && i < n; i++) cs_image_free(&thumbs[i]);
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(thumbs);
    free(texts);
    free(px);
    free(img_emb);
    free(txt_emb);
    return rc;
}

int cs_merge_redraw_figures(const cJSON *run, const char *merged_csv, const char *out_dir,
                            int limit, int64_t total_rows, cs_commit *c, cs_error *e) {
#ifndef CLIPSCORE_HAVE_FIGURES
    (void)run, (void)merged_csv, (void)out_dir, (void)limit, (void)total_rows, (void)c;
    return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "this build draws no figures");
#else
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(run, "model");
    const char *path = str(model, "path"), *sha = str(model, "weights_sha256");
    if (!path || !sha) return cs_fail(e, CLIPSCORE_EFORMAT, "run.json does not name the model");
    fig_rows f;
    memset(&f, 0, sizeof f);
    int rc = read_rows(merged_csv, run, limit, &f, e);
    clipscore_params p = clipscore_default_params();
    p.model = path;
    p.quiet = 1;
    p.offline = 1;
    const char *decode = str(run, "decode");
    p.decode =
        decode && strcmp(decode, "fast") == 0 ? CLIPSCORE_DECODE_FAST : CLIPSCORE_DECODE_EXACT;
    p.max_pixels =
        (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(run, "max_pixels"));
    if (p.max_pixels <= 0) p.max_pixels = clipscore_default_params().max_pixels;
    clipscore_context *ctx = NULL;
    if (!rc && !(ctx = clipscore_init(&p, e->msg, sizeof e->msg))) rc = e->code = CLIPSCORE_EMODEL;
    char have[65] = "";
    if (!rc && clipscore_weights_sha256(ctx, have) == 0 && strcmp(have, sha) != 0)
        rc = cs_fail(e, CLIPSCORE_EMODEL,
                     "the model at %s is no longer the parts' (SHA-256 %s, not %s)", path, have,
                     sha);
    if (!rc) rc = draw(ctx, run, &f, out_dir, limit, total_rows, c, e);
    clipscore_free(ctx);
    rows_free(&f);
    return rc;
#endif
}
