/* writer_csv.c - output.csv: every input row, its fields byte for byte, plus
 * the run's columns (see writer.h). Written to a temporary beside the
 * destination, handed to the commit at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv_io.h"
#include "writer.h"

typedef struct csv_writer {
    cs_writer base;
    cs_atomic_file file;
    int n_header;
    int clipscore;   /* write the clipscore column */
    int refclip;     /* write the refclipscore column */
    const char **fv; /* scratch row [cap] */
    size_t *lv;
    int cap;
} csv_writer;

static int csv_row(cs_writer *w, const cs_scored_row *r, cs_error *e) {
    csv_writer *c = (csv_writer *)w;
    int nh = c->n_header;
    int total = (r->n_fields > nh ? r->n_fields : nh) + 4;
    if (total > c->cap) {
        const char **fv = realloc(c->fv, (size_t)total * sizeof *fv);
        if (fv) c->fv = fv;
        size_t *lv = fv ? realloc(c->lv, (size_t)total * sizeof *lv) : NULL;
        if (lv) c->lv = lv;
        if (!fv || !lv) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        c->cap = total;
    }
    char sim[32] = "", csc[32] = "", ref[32] = "";
    if (!r->error) {
        snprintf(sim, sizeof sim, "%.6f", r->similarity);
        snprintf(csc, sizeof csc, "%.6f", 2.5 * (r->similarity > 0 ? r->similarity : 0.0));
        if (!isnan(r->refclipscore)) snprintf(ref, sizeof ref, "%.6f", r->refclipscore);
    }
    /* Short rows are padded to the header's width so the added columns line
     * up; surplus fields of long rows are kept after them. */
    int n = 0;
    for (int k = 0; k < nh; k++) {
        c->fv[n] = k < r->n_fields ? r->fields[k] : "";
        c->lv[n++] = k < r->n_fields ? r->lens[k] : 0;
    }
    c->fv[n] = sim;
    c->lv[n++] = strlen(sim);
    if (c->clipscore) {
        c->fv[n] = csc;
        c->lv[n++] = strlen(csc);
    }
    if (c->refclip) {
        c->fv[n] = ref;
        c->lv[n++] = strlen(ref);
    }
    c->fv[n] = r->error ? r->error : "";
    c->lv[n] = strlen(c->fv[n]);
    n++;
    for (int k = nh; k < r->n_fields; k++) {
        c->fv[n] = r->fields[k];
        c->lv[n++] = r->lens[k];
    }
    return cs_csv_write_record(c->file.fp, c->fv, c->lv, n, e);
}

static int csv_finish(cs_writer *w, const cs_run_record *run, cs_commit *commit, cs_error *e) {
    (void)run;
    csv_writer *c = (csv_writer *)w;
    int rc = cs_atomic_finish(&c->file, e);
    return rc ? rc : cs_commit_add(commit, &c->file, e);
}

static void csv_destroy(cs_writer *w) {
    csv_writer *c = (csv_writer *)w;
    if (c->file.tmp_path) cs_atomic_abort(&c->file);
    free(c->fv);
    free(c->lv);
    free(c);
}

static const cs_writer_ops csv_ops = {"output.csv", csv_row, csv_finish, csv_destroy};

int cs_csv_writer_new(const char *path, int n_header, const char *const *header,
                      const char *sim_name, const char *clipscore_name, const char *refclip_name,
                      const char *err_name, cs_writer **out, cs_error *e) {
    *out = NULL;
    csv_writer *c = cs_calloc(1, sizeof *c, e);
    if (!c) return CLIPSCORE_ENOMEM;
    c->base.ops = &csv_ops;
    c->n_header = n_header;
    c->clipscore = clipscore_name != NULL;
    c->refclip = refclip_name != NULL;
    c->cap = n_header + 4;
    c->fv = cs_malloc((size_t)c->cap, sizeof *c->fv, e);
    c->lv = cs_malloc((size_t)c->cap, sizeof *c->lv, e);
    int rc = c->fv && c->lv ? 0 : CLIPSCORE_ENOMEM;
    if (!rc) rc = cs_atomic_open(&c->file, path, e);
    if (!rc) {
        int n = 0;
        for (int i = 0; i < n_header; i++) c->fv[n++] = header[i];
        c->fv[n++] = sim_name;
        if (clipscore_name) c->fv[n++] = clipscore_name;
        if (refclip_name) c->fv[n++] = refclip_name;
        c->fv[n++] = err_name;
        rc = cs_csv_write_record(c->file.fp, c->fv, NULL, n, e);
    }
    if (rc) {
        csv_destroy(&c->base);
        return rc;
    }
    *out = &c->base;
    return 0;
}
