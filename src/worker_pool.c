/* worker_pool.c - the decode workers (see worker_pool.h). Leaves out: job
 * priorities and resizing; the scorer's use needs neither. */
#include "worker_pool.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void *worker(void *arg) {
    cs_worker_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->len == 0) pthread_cond_wait(&p->has_job, &p->mu);
        if (p->len == 0) break; /* stopping and drained */
        cs_job j = p->q[p->head];
        p->head = (p->head + 1) % p->cap;
        p->len--;
        pthread_mutex_unlock(&p->mu);
        double t0 = cs_now();
        j.fn(j.arg, j.index);
        double dt = cs_now() - t0;
        pthread_mutex_lock(&p->mu);
        j.group->seconds += dt;
        assert(j.group->pending > 0);
        if (--j.group->pending == 0) pthread_cond_broadcast(&p->job_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int cs_pool_start(cs_worker_pool *p, int n, int capacity, cs_error *e) {
    memset(p, 0, sizeof *p);
    if (n < 1 || capacity < 1) return cs_fail(e, CLIPSCORE_EARG, "worker pool: %d threads", n);
    p->cap = capacity;
    p->q = cs_malloc((size_t)capacity, sizeof *p->q, e);
    p->th = cs_calloc((size_t)n, sizeof *p->th, e);
    if (!p->q || !p->th) {
        free(p->q);
        free(p->th);
        memset(p, 0, sizeof *p);
        return CLIPSCORE_ENOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->has_job, NULL);
    pthread_cond_init(&p->job_done, NULL);
    int err = 0;
    for (int i = 0; i < n; i++) {
        if ((err = pthread_create(&p->th[i], NULL, worker, p)) != 0) break;
        p->n++;
    }
    if (p->n == 0) {
        cs_pool_stop(p);
        return cs_fail(e, CLIPSCORE_EINTERNAL, "cannot start worker threads: %s", strerror(err));
    }
    return 0;
}

void cs_pool_stop(cs_worker_pool *p) {
    if (!p->q) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->has_job);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n; i++) pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->has_job);
    pthread_cond_destroy(&p->job_done);
    free(p->q);
    free(p->th);
    memset(p, 0, sizeof *p);
}

void cs_pool_submit(cs_worker_pool *p, cs_job_group *g, cs_job_fn fn, void *arg, const int *index,
                    int n) {
    pthread_mutex_lock(&p->mu);
    assert(!p->stop && p->len + n <= p->cap);
    for (int i = 0; i < n; i++) {
        p->q[(p->head + p->len) % p->cap] = (cs_job){fn, arg, index[i], g};
        p->len++;
        g->pending++;
    }
    if (n) pthread_cond_broadcast(&p->has_job);
    pthread_mutex_unlock(&p->mu);
}

void cs_pool_wait(cs_worker_pool *p, cs_job_group *g) {
    pthread_mutex_lock(&p->mu);
    while (g->pending > 0) pthread_cond_wait(&p->job_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
