/* keep.h - kept.csv: the rows of an output.csv worth keeping, by a
 * similarity threshold, the top fraction of scored rows, or both.
 *
 * Covers: reading a finished output.csv twice (the fraction needs every
 * score before the first row is written: one double a scored row), the
 * selection rule and writing kept.csv as a finished temporary for the
 * commit. Used by the scorer and by the merge of shards, so a fraction is
 * taken over all of a sharded run's rows.
 *
 * The rule: with a threshold T, rows whose similarity (as written in
 * output.csv) is >= T; with a fraction F, the k = ceil(F * scored) rows of
 * highest similarity, ties at the k-th score kept in input order; with
 * both, rows that pass both. Failed rows are never kept. Rows keep their
 * input order.
 * Leaves out: committing (commit.h). */
#ifndef CLIPSCORE_KEEP_H
#define CLIPSCORE_KEEP_H

#include <stdint.h>

#include "util.h"

typedef struct cs_keep_result {
    int64_t kept;
    double threshold; /* the threshold used: T, or the fraction's cut (NaN: no rows) */
} cs_keep_result;

/* Reads output_csv (column sim_column holds the similarity), writes the
 * kept rows with output_csv's header to a finished temporary in *out for
 * dest. threshold / fraction: NaN for none (at least one is set). */
int cs_keep_write(const char *output_csv, const char *sim_column, double threshold, double fraction,
                  const char *dest, cs_atomic_file *out, cs_keep_result *res, cs_error *e);

static inline int cs_keep_wanted(double threshold, double fraction) {
    return threshold == threshold || fraction == fraction; /* either is not NaN */
}

#endif
