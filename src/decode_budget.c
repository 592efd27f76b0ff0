/* decode_budget.c - the decode memory budget (see decode_budget.h).
 *
 * Covers: a mutex-protected counter with first-come first-served waiting on
 * one condition variable, and the default size.
 * Leaves out: estimating what a decode needs (image.c). */
#include "decode_budget.h"

#include <string.h>
#include <unistd.h>

int64_t cs_decode_budget_default_bytes(void) {
    const int64_t lo = (int64_t)256 << 20, hi = (int64_t)2 << 30;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0) return lo;
    int64_t quarter = (int64_t)pages / 4 * page;
    return quarter < lo ? lo : quarter > hi ? hi : quarter;
}

int cs_decode_budget_init(cs_decode_budget *b, int64_t bytes, cs_error *e) {
    memset(b, 0, sizeof *b);
    if (bytes <= 0)
        return cs_fail(e, CLIPSCORE_EARG, "decode memory budget: invalid size %lld",
                       (long long)bytes);
    if (pthread_mutex_init(&b->mu, NULL))
        return cs_fail(e, CLIPSCORE_EINTERNAL, "decode memory budget: cannot create a mutex");
    if (pthread_cond_init(&b->changed, NULL)) {
        pthread_mutex_destroy(&b->mu);
        return cs_fail(e, CLIPSCORE_EINTERNAL,
                       "decode memory budget: cannot create a condition variable");
    }
    b->total = bytes;
    return 0;
}

void cs_decode_budget_destroy(cs_decode_budget *b) {
    if (!b || b->total <= 0) return;
    pthread_cond_destroy(&b->changed);
    pthread_mutex_destroy(&b->mu);
    memset(b, 0, sizeof *b);
}

int cs_decode_budget_reserve(cs_decode_budget *b, int64_t bytes, cs_error *e) {
    if (bytes < 0) bytes = 0;
    pthread_mutex_lock(&b->mu);
    uint64_t ticket = b->next_ticket++;
    int waited = 0;
    for (;;) {
        if (b->canceled) {
            pthread_mutex_unlock(&b->mu);
            return cs_fail(e, CLIPSCORE_ECANCELED, "canceled while waiting for decode memory");
        }
        /* Strict arrival order: a small request does not overtake a large
         * one waiting for room, or the large one could wait forever. An
         * oversized request needs an empty budget instead of room. */
        if (ticket == b->serving && (b->holders == 0 || bytes <= b->total - b->reserved)) break;
        waited = 1;
        pthread_cond_wait(&b->changed, &b->mu);
    }
    b->serving++;
    b->holders++;
    b->reserved += bytes;
    if (b->reserved > b->peak) b->peak = b->reserved;
    b->waits += waited;
    /* The next in line may fit too. */
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void cs_decode_budget_shrink(cs_decode_budget *b, int64_t held_bytes, int64_t to_bytes) {
    if (to_bytes < 0) to_bytes = 0;
    if (to_bytes >= held_bytes) return;
    pthread_mutex_lock(&b->mu);
    b->reserved -= held_bytes - to_bytes;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
}

void cs_decode_budget_release(cs_decode_budget *b, int64_t bytes) {
    if (bytes < 0) bytes = 0;
    pthread_mutex_lock(&b->mu);
    b->reserved -= bytes;
    b->holders--;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
}

void cs_decode_budget_cancel(cs_decode_budget *b) {
    pthread_mutex_lock(&b->mu);
    b->canceled = 1;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
}

void cs_decode_budget_stats(cs_decode_budget *b, int64_t *reserved, int64_t *peak, int64_t *waits) {
    pthread_mutex_lock(&b->mu);
    if (reserved) *reserved = b->reserved;
    if (peak) *peak = b->peak;
    if (waits) *waits = b->waits;
    pthread_mutex_unlock(&b->mu);
}
