/* score_stats.h - what report.html says about a run's similarities, in
 * memory that does not grow with the row count.
 *
 * cs_score_stats: count, mean, min and max exactly; quantiles and the
 * histogram from a fixed histogram of CS_STATS_BINS bins over [-1, 1]
 * (values outside it, which rounding can make, count in the end bins), so a
 * quantile is exact to one bin: CS_STATS_RESOLUTION (1e-5). 1.6 MB whatever
 * the number of rows.
 *
 * cs_top: the N lowest (or highest) scores seen, by a bounded binary heap.
 * It keeps (score, row index) and a slot number per kept item; the caller
 * keeps its own payload (thumbnail, caption) per slot, so a row that
 * evicts another reuses the evicted row's slot.
 *
 * Leaves out: NaN (failed rows are the caller's to count) and anything about
 * how the numbers are shown (writer_report.c). */
#ifndef CLIPSCORE_SCORE_STATS_H
#define CLIPSCORE_SCORE_STATS_H

#include <stdint.h>

#include "util.h"

#define CS_STATS_BINS 200000
#define CS_STATS_RESOLUTION (2.0 / CS_STATS_BINS)

typedef struct cs_score_stats {
    int64_t n;
    double sum, min, max;
    uint64_t *bins; /* [CS_STATS_BINS], owned */
} cs_score_stats;

int cs_score_stats_init(cs_score_stats *s, cs_error *e);
void cs_score_stats_free(cs_score_stats *s);
/* Adds a finite value (NaN and infinities are ignored). */
void cs_score_stats_add(cs_score_stats *s, double v);
/* The q-quantile (0 <= q <= 1) as numpy's default (linear) defines it on
 * the sorted values, within CS_STATS_RESOLUTION: the value at rank
 * q*(n-1), read from the fine histogram, the position inside a bin taken
 * as evenly spread; clamped to [min, max]. NaN when there are no values. */
double cs_score_stats_quantile(const cs_score_stats *s, double q);
double cs_score_stats_mean(const cs_score_stats *s);

/* A coarse histogram for drawing: at most max_bins bins of equal width, a
 * whole number of fine bins each, covering [min, max] of the values. Writes
 * counts[0..*n_bins), the first bin's lower edge and the bin width. With no
 * values, *n_bins is 0. */
void cs_score_stats_histogram(const cs_score_stats *s, int max_bins, int64_t *counts, int *n_bins,
                              double *lo, double *width);

typedef struct cs_top_item {
    double score;
    long index; /* row index: ties are kept and ordered by it, earlier first */
    int slot;   /* the caller's payload slot, 0..cap-1 */
} cs_top_item;

typedef struct cs_top {
    int cap, n;
    int highest;        /* 1: keeps the highest scores; 0: the lowest */
    cs_top_item *items; /* [cap] heap order: the root is the first to go */
} cs_top;

int cs_top_init(cs_top *t, int cap, int highest, cs_error *e);
void cs_top_free(cs_top *t);
/* Offers a row (its index greater than every earlier one's). Returns the
 * slot the caller now fills with this row's payload (the previous holder of
 * that slot, if any, has been evicted), or -1 when the row is not kept. */
int cs_top_offer(cs_top *t, double score, long index);
/* The kept items in display order: lowest first (or highest first), equal
 * scores by row index. out has room for t->n; returns t->n. */
int cs_top_sorted(const cs_top *t, cs_top_item *out);

#endif
