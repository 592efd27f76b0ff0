/* writer_npy.c - --save-embeddings: image_embeddings.npy and
 * text_embeddings.npy, float32 [rows][D], L2-normalised, in input order,
 * NaN rows where a row was not scored (see writer.h). */
#include <stdlib.h>

#include "npy.h"
#include "writer.h"

typedef struct npy_writer {
    cs_writer base;
    cs_npy_stream img, txt;
} npy_writer;

static int npy_row(cs_writer *w, const cs_scored_row *r, cs_error *e) {
    npy_writer *n = (npy_writer *)w;
    int rc = cs_npy_stream_append(&n->img, r->img_emb, 1, e);
    return rc ? rc : cs_npy_stream_append(&n->txt, r->txt_emb, 1, e);
}

static int npy_finish(cs_writer *w, const cs_run_record *run, cs_commit *c, cs_error *e) {
    (void)run;
    npy_writer *n = (npy_writer *)w;
    cs_atomic_file f;
    int rc = cs_npy_stream_finish(&n->img, &f, e);
    if (!rc) rc = cs_commit_add(c, &f, e);
    if (!rc) rc = cs_npy_stream_finish(&n->txt, &f, e);
    if (!rc) rc = cs_commit_add(c, &f, e);
    return rc;
}

static void npy_destroy(cs_writer *w) {
    npy_writer *n = (npy_writer *)w;
    if (n->img.file.tmp_path) cs_npy_stream_abort(&n->img);
    if (n->txt.file.tmp_path) cs_npy_stream_abort(&n->txt);
    free(n);
}

static const cs_writer_ops npy_ops = {"embeddings", npy_row, npy_finish, npy_destroy};

int cs_npy_writer_new(const char *dir, int dim, cs_writer **out, cs_error *e) {
    *out = NULL;
    npy_writer *n = cs_calloc(1, sizeof *n, e);
    if (!n) return CLIPSCORE_ENOMEM;
    n->base.ops = &npy_ops;
    int64_t row_shape[1] = {dim};
    char *pi = cs_path_join(dir, "image_embeddings.npy", e);
    char *pt = cs_path_join(dir, "text_embeddings.npy", e);
    int rc = pi && pt ? 0 : CLIPSCORE_ENOMEM;
    if (!rc) rc = cs_npy_stream_open(&n->img, pi, 1, row_shape, e);
    if (!rc) rc = cs_npy_stream_open(&n->txt, pt, 1, row_shape, e);
    free(pi);
    free(pt);
    if (rc) {
        npy_destroy(&n->base);
        return rc;
    }
    *out = &n->base;
    return 0;
}
