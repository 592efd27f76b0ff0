/* writer_figures.c - image_captions.jpg and similarity_matrix.jpg: the first
 * `limit` rows are kept (thumbnail, caption, score, normalised embeddings)
 * so memory does not grow with the row count, and drawn at the end (see
 * writer.h, figures.h). Built without figures, the constructor says so. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "writer.h"
#ifdef CLIPSCORE_HAVE_FIGURES
#include "figures.h"

typedef struct fig_writer {
    cs_writer base;
    char *dir;
    int limit, dim, n;
    cs_image *thumbs;    /* [limit], px NULL when none */
    char **caps, **errs; /* [limit] */
    float *scores;       /* [limit] */
    float *img, *txt;    /* [limit][dim], normalised */
} fig_writer;

static int fig_row(cs_writer *w, const cs_scored_row *r, cs_error *e) {
    fig_writer *f = (fig_writer *)w;
    if (f->n >= f->limit) return 0;
    int j = f->n++;
    f->scores[j] = r->error ? NAN : (float)r->similarity;
    memcpy(f->img + (size_t)j * f->dim, r->img_emb, (size_t)f->dim * sizeof *f->img);
    memcpy(f->txt + (size_t)j * f->dim, r->txt_emb, (size_t)f->dim * sizeof *f->txt);
    if (!(f->caps[j] = cs_strdup(r->caption, e))) return CLIPSCORE_ENOMEM;
    if (r->error && !(f->errs[j] = cs_strdup(r->error, e))) return CLIPSCORE_ENOMEM;
    if (r->thumb && r->thumb->px) {
        /* A copy: one decoded thumbnail may serve several rows. */
        const cs_image *t = r->thumb;
        int rc = cs_image_alloc(&f->thumbs[j], t->w, t->h, t->channels, e);
        if (rc) return rc;
        memcpy(f->thumbs[j].px, t->px, (size_t)t->w * (size_t)t->h * (size_t)t->channels);
    }
    return 0;
}

static int fig_finish(cs_writer *w, const cs_run_record *run, cs_commit *c, cs_error *e) {
    fig_writer *f = (fig_writer *)w;
    int n = f->n;
    float *sim = cs_malloc((size_t)(n ? n : 1) * (size_t)(n ? n : 1), sizeof *sim, e);
    if (!sim) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double s = 0;
            for (int k = 0; k < f->dim; k++)
                s += (double)f->img[(size_t)i * f->dim + k] * f->txt[(size_t)j * f->dim + k];
            sim[(size_t)i * n + j] = (float)s; /* NaN rows stay NaN */
        }
    char *p1 = cs_path_join(f->dir, "image_captions.jpg", e);
    char *p2 = cs_path_join(f->dir, "similarity_matrix.jpg", e);
    cs_atomic_file a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int rc = p1 && p2 ? 0 : CLIPSCORE_ENOMEM;
    /* A folder in the way would fail the whole commit later: find it now,
     * while a figure failure is still only a warning. */
    struct stat st;
    for (int i = 0; !rc && i < 2; i++)
        if (lstat(i ? p2 : p1, &st) == 0 && S_ISDIR(st.st_mode))
            rc = cs_fail(e, CLIPSCORE_EIO, "%s is a folder", i ? p2 : p1);
    if (!rc)
        rc = cs_figure_image_captions(p1, &a, n, f->thumbs, (const char *const *)f->caps, f->scores,
                                      (const char *const *)f->errs, run->sum.rows, e);
    if (!rc)
        rc = cs_figure_similarity_matrix(p2, &b, n, sim, (const char *const *)f->caps,
                                         run->sum.rows, e);
    /* Both or neither: a lone figure would be mistaken for this run's pair. */
    if (!rc) rc = cs_commit_add(c, &a, e);
    if (!rc) rc = cs_commit_add(c, &b, e);
    if (rc) {
        cs_atomic_abort(&a);
        cs_atomic_abort(&b);
    }
    free(p1);
    free(p2);
    free(sim);
    /* Drops pango's and fontconfig's caches (they come back on next use),
     * so a run leaves no memory held behind. */
    cs_figures_shutdown();
    return rc;
}

static void fig_destroy(cs_writer *w) {
    fig_writer *f = (fig_writer *)w;
    for (int i = 0; i < f->limit; i++) {
        if (f->thumbs) cs_image_free(&f->thumbs[i]);
        if (f->caps) free(f->caps[i]);
        if (f->errs) free(f->errs[i]);
    }
    free(f->thumbs);
    free(f->caps);
    free(f->errs);
    free(f->scores);
    free(f->img);
    free(f->txt);
    free(f->dir);
    free(f);
}

static const cs_writer_ops fig_ops = {"figures", fig_row, fig_finish, fig_destroy};

int cs_figures_writer_new(const char *dir, int limit, int dim, cs_writer **out, cs_error *e) {
    *out = NULL;
    fig_writer *f = cs_calloc(1, sizeof *f, e);
    if (!f) return CLIPSCORE_ENOMEM;
    f->base.ops = &fig_ops;
    f->limit = limit;
    f->dim = dim;
    size_t L = (size_t)limit;
    f->dir = cs_strdup(dir, e);
    f->thumbs = cs_calloc(L, sizeof *f->thumbs, e);
    f->caps = cs_calloc(L, sizeof *f->caps, e);
    f->errs = cs_calloc(L, sizeof *f->errs, e);
    f->scores = cs_calloc(L, sizeof *f->scores, e);
    f->img = cs_calloc(L * (size_t)dim, sizeof *f->img, e);
    f->txt = cs_calloc(L * (size_t)dim, sizeof *f->txt, e);
    if (!f->dir || !f->thumbs || !f->caps || !f->errs || !f->scores || !f->img || !f->txt) {
        fig_destroy(&f->base);
        return CLIPSCORE_ENOMEM;
    }
    *out = &f->base;
    return 0;
}

#else

int cs_figures_writer_new(const char *dir, int limit, int dim, cs_writer **out, cs_error *e) {
    (void)dir;
    (void)limit;
    (void)dim;
    *out = NULL;
    return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                   "this build draws no figures (CLIPSCORE_FIGURES=OFF)");
}

#endif
