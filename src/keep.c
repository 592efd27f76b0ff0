/* keep.c - kept.csv from a finished output.csv (see keep.h). */
#include "keep.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csv_io.h"

/* The similarity of a record, NaN when it has none (a failed row). */
static double record_sim(const cs_csv_record *rec, int col) {
    if (col >= rec->n || rec->lens[col] == 0) return NAN;
    char *end = NULL;
    double v = strtod(rec->fields[col], &end);
    return end && *end == '\0' ? v : NAN;
}

static int open_with_column(const char *path, const char *sim_column, cs_csv_reader **r, int *col,
                            cs_error *e) {
    int rc = cs_csv_open(path, r, e);
    if (rc) return rc;
    *col = cs_csv_find_column(cs_csv_header(*r), path, sim_column, NULL, "similarity", e);
    if (*col < 0) {
        rc = *col;
        cs_csv_close(*r);
        *r = NULL;
    }
    return rc;
}

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Pass 1 for a fraction: the k-th highest score and how many rows scoring
 * exactly that are kept (the first ones in input order). */
static int fraction_cut(const char *path, const char *sim_column, double fraction, double *cut,
                        int64_t *ties, cs_error *e) {
    cs_csv_reader *r = NULL;
    int col, rc = open_with_column(path, sim_column, &r, &col, e);
    if (rc) return rc;
    size_t n = 0, cap = 1024;
    double *v = cs_malloc(cap, sizeof *v, e);
    cs_csv_record rec;
    int malformed;
    while (v && (rc = cs_csv_next(r, &rec, &malformed, e)) == 1) {
        double s = record_sim(&rec, col);
        if (isnan(s)) continue;
        if (n == cap) {
            double *nv = realloc(v, 2 * cap * sizeof *v);
            if (!nv) break;
            v = nv;
            cap *= 2;
        }
        v[n++] = s;
    }
    cs_csv_close(r);
    if (!v || rc == 1) {
        free(v);
        return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory reading the scores of %s", path);
    }
    if (rc < 0) {
        free(v);
        return rc;
    }
    *cut = INFINITY;
    *ties = 0;
    if (n) {
        size_t k = (size_t)ceil(fraction * (double)n - 1e-9);
        if (k < 1) k = 1;
        if (k > n) k = n;
        qsort(v, n, sizeof *v, cmp_desc);
        *cut = v[k - 1];
        size_t above = 0;
        while (above < n && v[above] > *cut) above++;
        *ties = (int64_t)(k - above);
    }
    free(v);
    return 0;
}

int cs_keep_write(const char *output_csv, const char *sim_column, double threshold, double fraction,
                  const char *dest, cs_atomic_file *out, cs_keep_result *res, cs_error *e) {
    res->kept = 0;
    res->threshold = NAN;
    double cut = -INFINITY;
    int64_t ties = 0; /* rows scoring exactly `cut` still to keep */
    int tie_rule = 0; /* 0: every row at the cut is kept (a threshold) */
    int rc = 0;
    if (!isnan(fraction)) {
        if ((rc = fraction_cut(output_csv, sim_column, fraction, &cut, &ties, e))) return rc;
        tie_rule = 1;
    }
    if (!isnan(threshold) && threshold > cut) { /* the threshold decides alone */
        cut = threshold;
        tie_rule = 0;
    }
    cs_csv_reader *r = NULL;
    int col;
    if ((rc = open_with_column(output_csv, sim_column, &r, &col, e))) return rc;
    if ((rc = cs_atomic_open(out, dest, e))) {
        cs_csv_close(r);
        return rc;
    }
    const cs_csv_record *h = cs_csv_header(r);
    rc = cs_csv_write_record(out->fp, (const char *const *)h->fields, h->lens, h->n, e);
    cs_csv_record rec;
    int malformed;
    while (!rc && (rc = cs_csv_next(r, &rec, &malformed, e)) == 1) {
        double s = record_sim(&rec, col);
        int keep = !isnan(s) && (s > cut || (s == cut && (!tie_rule || ties > 0)));
        if (keep && s == cut && tie_rule) ties--;
        rc = 0;
        if (!keep) continue;
        res->kept++;
        rc = cs_csv_write_record(out->fp, (const char *const *)rec.fields, rec.lens, rec.n, e);
    }
    cs_csv_close(r);
    if (!rc) rc = cs_atomic_finish(out, e);
    if (rc) {
        if (out->tmp_path) cs_atomic_abort(out);
        return rc < 0 ? rc : CLIPSCORE_EIO;
    }
    res->threshold = isfinite(cut) ? cut : NAN;
    return 0;
}
