/* score_stats.c - streaming statistics of similarities and bounded heaps of
 * the lowest and highest (see score_stats.h). */
#include "score_stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int bin_of(double v) {
    double k = floor((v + 1.0) / CS_STATS_RESOLUTION);
    if (k < 0) return 0;
    if (k > CS_STATS_BINS - 1) return CS_STATS_BINS - 1;
    return (int)k;
}

int cs_score_stats_init(cs_score_stats *s, cs_error *e) {
    memset(s, 0, sizeof *s);
    s->min = INFINITY;
    s->max = -INFINITY;
    s->bins = cs_calloc(CS_STATS_BINS, sizeof *s->bins, e);
    return s->bins ? 0 : CLIPSCORE_ENOMEM;
}

void cs_score_stats_free(cs_score_stats *s) {
    free(s->bins);
    s->bins = NULL;
}

void cs_score_stats_add(cs_score_stats *s, double v) {
    if (!isfinite(v)) return;
    s->n++;
    s->sum += v;
    if (v < s->min) s->min = v;
    if (v > s->max) s->max = v;
    s->bins[bin_of(v)]++;
}

double cs_score_stats_mean(const cs_score_stats *s) {
    return s->n ? s->sum / (double)s->n : NAN;
}

/* The value of rank j (0-based) of the sorted values, estimated as if the
 * values in its bin were evenly spread across it: within one bin. */
static double value_at(const cs_score_stats *s, int64_t j) {
    int64_t c = 0;
    for (int k = 0; k < CS_STATS_BINS; k++) {
        int64_t m = (int64_t)s->bins[k];
        if (j < c + m) {
            double v = -1.0 + (k + ((double)(j - c) + 0.5) / (double)m) * CS_STATS_RESOLUTION;
            return v < s->min ? s->min : v > s->max ? s->max : v;
        }
        c += m;
    }
    return s->max;
}

double cs_score_stats_quantile(const cs_score_stats *s, double q) {
    if (!s->n) return NAN;
    if (!(q > 0)) return s->min;
    if (q >= 1) return s->max;
    double r = q * (double)(s->n - 1);
    int64_t j = (int64_t)floor(r);
    double f = r - (double)j, a = value_at(s, j);
    return f > 0 ? a + f * (value_at(s, j + 1) - a) : a;
}

void cs_score_stats_histogram(const cs_score_stats *s, int max_bins, int64_t *counts, int *n_bins,
                              double *lo, double *width) {
    *n_bins = 0;
    *lo = 0;
    *width = 0;
    if (!s->n || max_bins < 1) return;
    int k0 = bin_of(s->min), k1 = bin_of(s->max), span = k1 - k0 + 1;
    int per = (span + max_bins - 1) / max_bins;
    int n = (span + per - 1) / per;
    for (int i = 0; i < n; i++) counts[i] = 0;
    for (int k = k0; k <= k1; k++) counts[(k - k0) / per] += (int64_t)s->bins[k];
    *n_bins = n;
    *lo = -1.0 + k0 * CS_STATS_RESOLUTION;
    *width = per * CS_STATS_RESOLUTION;
}

/* ---- the bounded heap ---------------------------------------------------- */

/* Whether a leaves before b: the root of the heap is the first to go. */
static int worse(const cs_top *t, const cs_top_item *a, const cs_top_item *b) {
    if (a->score != b->score) return t->highest ? a->score < b->score : a->score > b->score;
    return a->index > b->index;
}

int cs_top_init(cs_top *t, int cap, int highest, cs_error *e) {
    memset(t, 0, sizeof *t);
    t->cap = cap;
    t->highest = highest;
    t->items = cs_calloc((size_t)(cap > 0 ? cap : 1), sizeof *t->items, e);
    return t->items ? 0 : CLIPSCORE_ENOMEM;
}

void cs_top_free(cs_top *t) {
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

static void swap(cs_top_item *a, cs_top_item *b) {
    cs_top_item x = *a;
    *a = *b;
    *b = x;
}

static void sift_up(cs_top *t, int i) {
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(t, &t->items[i], &t->items[p])) break;
        swap(&t->items[i], &t->items[p]);
        i = p;
    }
}

static void sift_down(cs_top *t, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && worse(t, &t->items[l], &t->items[m])) m = l;
        if (r < t->n && worse(t, &t->items[r], &t->items[m])) m = r;
        if (m == i) return;
        swap(&t->items[i], &t->items[m]);
        i = m;
    }
}

int cs_top_offer(cs_top *t, double score, long index) {
    if (t->cap < 1 || !isfinite(score)) return -1;
    cs_top_item it = {score, index, t->n};
    if (t->n < t->cap) {
        t->items[t->n++] = it;
        sift_up(t, t->n - 1);
        return it.slot;
    }
    if (!worse(t, &t->items[0], &it)) return -1;
    it.slot = t->items[0].slot; /* the evicted row's payload slot */
    t->items[0] = it;
    sift_down(t, 0);
    return it.slot;
}

static int cmp_lowest(const void *pa, const void *pb) {
    const cs_top_item *a = pa, *b = pb;
    if (a->score != b->score) return a->score < b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

static int cmp_highest(const void *pa, const void *pb) {
    const cs_top_item *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

int cs_top_sorted(const cs_top *t, cs_top_item *out) {
    if (t->n) memcpy(out, t->items, (size_t)t->n * sizeof *out);
    qsort(out, (size_t)t->n, sizeof *out, t->highest ? cmp_highest : cmp_lowest);
    return t->n;
}
