/* test_score_stats.c - the report's statistics against exact computations
 * on the sorted values: quantiles within the stated resolution (numpy's
 * linear definition), mean, min, max, the coarse histogram's counts and
 * edges; and the bounded heaps against a full sort, ties included. */
#include <stdint.h>
#include <stdlib.h>

#include "score_stats.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static double uniform(void) { /* xorshift64, [0, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.quantile(v, q) with the default method on sorted v. */
static double exact_quantile(const double *v, int n, double q) {
    double r = q * (n - 1);
    int j = (int)floor(r);
    if (j >= n - 1) return v[n - 1];
    return v[j] + (r - j) * (v[j + 1] - v[j]);
}

static void check_stats(const double *vals, int n, const char *what) {
    cs_score_stats s;
    cs_error e;
    CHECK(cs_score_stats_init(&s, &e) == 0);
    double *v = malloc((size_t)n * sizeof *v), sum = 0;
    for (int i = 0; i < n; i++) {
        v[i] = vals[i];
        sum += v[i];
        cs_score_stats_add(&s, v[i]);
    }
    cs_score_stats_add(&s, NAN); /* ignored */
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    CHECK_EQ_INT(s.n, n);
    CHECK_NEAR(cs_score_stats_mean(&s), sum / n, 1e-12);
    CHECK(s.min == v[0] && s.max == v[n - 1]);
    static const double qs[] = {0, 0.05, 0.25, 0.5, 0.75, 0.95, 1};
    double worst = 0;
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        double d = fabs(cs_score_stats_quantile(&s, qs[k]) - exact_quantile(v, n, qs[k]));
        if (d > worst) worst = d;
    }
    fprintf(stderr, "%s: %d values, largest quantile error %.3g (resolution %.3g)\n", what, n,
            worst, CS_STATS_RESOLUTION);
    CHECK_MSG(worst <= CS_STATS_RESOLUTION, "%s: quantile error %g", what, worst);

    int64_t counts[64];
    int nb;
    double lo, w;
    cs_score_stats_histogram(&s, 50, counts, &nb, &lo, &w);
    CHECK(nb >= 1 && nb <= 50);
    int64_t total = 0;
    for (int i = 0; i < nb; i++) total += counts[i];
    CHECK_EQ_INT(total, n);
    /* Values outside [-1, 1] (rounding) count in the end bins. */
    for (int j = 0; j < n; j++) v[j] = v[j] < -1 ? -1 : v[j] >= 1 ? 1 - 1e-12 : v[j];
    CHECK_MSG(lo <= v[0] + 1e-9 && v[n - 1] < lo + nb * w + 1e-9,
              "lo %.17g v0 %.17g top %.17g vn %.17g", lo, v[0], lo + nb * w, v[n - 1]);
    /* Each bin holds exactly the values in [lo + i*w, lo + (i+1)*w). */
    int bad = 0;
    for (int i = 0; i < nb; i++) {
        int64_t c = 0;
        for (int j = 0; j < n; j++) {
            double a = lo + i * w, b = lo + (i + 1) * w;
            /* values within rounding of an edge may fall either side */
            if (fabs(v[j] - a) < 1e-9 || fabs(v[j] - b) < 1e-9) goto next_bin;
            c += v[j] >= a && v[j] < b;
        }
        bad += c != counts[i];
    next_bin:;
    }
    CHECK_EQ_INT(bad, 0);
    free(v);
    cs_score_stats_free(&s);
}

static void test_stats(void) {
    enum { N = 20001 };
    double *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) v[i] = 0.15 + 0.2 * (uniform() + uniform() + uniform()) / 3;
    check_stats(v, N, "clustered");
    for (int i = 0; i < N; i++) v[i] = 2 * uniform() - 1;
    check_stats(v, N, "uniform");
    double two[] = {-0.5, 0.5};
    check_stats(two, 2, "two far apart"); /* median between bins, not inside one */
    double one[] = {0.3};
    check_stats(one, 1, "one");
    double edge[] = {-1.0000001, 1.0000002, 0.25, 0.25, 0.25};
    check_stats(edge, 5, "outside [-1,1] and ties");
    free(v);

    cs_score_stats s;
    cs_error e;
    CHECK(cs_score_stats_init(&s, &e) == 0);
    CHECK(isnan(cs_score_stats_quantile(&s, 0.5)) && isnan(cs_score_stats_mean(&s)));
    int64_t counts[50];
    int nb = -1;
    double lo, w;
    cs_score_stats_histogram(&s, 50, counts, &nb, &lo, &w);
    CHECK_EQ_INT(nb, 0);
    cs_score_stats_free(&s);
}

typedef struct pair {
    double score;
    long index;
} pair;

static int cmp_low(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}
static int cmp_high(const void *a, const void *b) {
    const pair *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

static void check_top(int n, int cap, int highest, int coarse) {
    cs_top t;
    cs_error e;
    CHECK(cs_top_init(&t, cap, highest, &e) == 0);
    pair *all = malloc((size_t)n * sizeof *all);
    long *owner = malloc((size_t)cap * sizeof *owner); /* row held by each slot */
    for (int i = 0; i < cap; i++) owner[i] = -1;
    int slot_errors = 0;
    for (int i = 0; i < n; i++) {
        double s = coarse ? floor(uniform() * 7) / 7 : uniform() * 2 - 1; /* coarse: many ties */
        all[i] = (pair){s, i};
        int slot = cs_top_offer(&t, s, i);
        if (slot >= 0) {
            slot_errors += slot >= cap;
            if (slot < cap) owner[slot] = i;
        }
    }
    CHECK_EQ_INT(slot_errors, 0);
    qsort(all, (size_t)n, sizeof *all, highest ? cmp_high : cmp_low);
    cs_top_item *out = malloc((size_t)cap * sizeof *out);
    int k = cs_top_sorted(&t, out);
    CHECK_EQ_INT(k, n < cap ? n : cap);
    int wrong = 0;
    for (int i = 0; i < k; i++) {
        wrong += out[i].score != all[i].score || out[i].index != all[i].index;
        wrong += owner[out[i].slot] != out[i].index; /* slots: one row each */
    }
    CHECK_MSG(wrong == 0, "n %d cap %d highest %d coarse %d: %d wrong", n, cap, highest, coarse,
              wrong);
    CHECK(cs_top_offer(&t, NAN, n) == -1);
    free(out);
    free(owner);
    free(all);
    cs_top_free(&t);
}

int main(void) {
    test_stats();
    for (int h = 0; h < 2; h++)
        for (int c = 0; c < 2; c++) {
            check_top(10000, 50, h, c);
            check_top(30, 50, h, c);
            check_top(1, 1, h, c);
        }
    return test_finish("test_score_stats");
}
