/* worker_pool.h - a fixed pool of threads running jobs in groups.
 *
 * The scorer queues the image decodes of one batch as a group and, while
 * the encoders work on the previous batch, the workers run them; it then
 * waits for the group. A job is a function and an index; the queue holds
 * at most `capacity` jobs (the scorer never has more than two batches in
 * flight). Jobs must not block on each other. */
#ifndef CLIPSCORE_WORKER_POOL_H
#define CLIPSCORE_WORKER_POOL_H

#include <pthread.h>

#include "util.h"

typedef void (*cs_job_fn)(void *arg, int index);

/* Jobs waited for together. Fields are guarded by the pool's mutex. */
typedef struct cs_job_group {
    int pending;    /* jobs queued or running */
    double seconds; /* summed run time of its jobs, over all workers */
} cs_job_group;

typedef struct cs_job {
    cs_job_fn fn;
    void *arg;
    int index;
    cs_job_group *group;
} cs_job;

typedef struct cs_worker_pool {
    pthread_mutex_t mu;
    pthread_cond_t has_job, job_done;
    cs_job *q; /* ring buffer [cap] */
    int cap, head, len;
    int stop;
    int n; /* threads running */
    pthread_t *th;
} cs_worker_pool;

/* Starts n threads (at least one must start) with room for `capacity`
 * queued jobs. */
int cs_pool_start(cs_worker_pool *p, int n, int capacity, cs_error *e);
/* Lets the queued jobs finish, then stops and joins the threads. Safe on a
 * zeroed pool and when called twice. */
void cs_pool_stop(cs_worker_pool *p);
/* Queues n jobs fn(arg, index[i]) in group g. The caller guarantees the
 * room (capacity); overflowing it is a bug and asserts. */
void cs_pool_submit(cs_worker_pool *p, cs_job_group *g, cs_job_fn fn, void *arg, const int *index,
                    int n);
/* Waits until every job of g has run. */
void cs_pool_wait(cs_worker_pool *p, cs_job_group *g);

#endif
