/* decode_budget.h - a memory budget shared by the threads that decode images.
 *
 * Covers: a byte counter that decode workers reserve from before they read
 * and decode an image and give back when its pixels are freed, so that the
 * memory all decodes hold at once stays under a fixed total whatever the
 * images (a 300 KB PNG can decode to gigabytes). Reservations are served in
 * the order they were asked for (a large one is not starved by a stream of
 * small ones). One larger than the whole budget waits until nothing else is
 * reserved and then runs alone, so every image under the pixel limit is
 * still decoded and nothing deadlocks (as long as each thread holds at most
 * one reservation while it asks for another: a worker decodes one image at a
 * time). A cancel wakes every waiter.
 * Leaves out: measuring memory (the sizes are the caller's estimates; see
 * cs_image_load_budgeted in image.h for how images are estimated).
 *
 * Use:
 *     cs_decode_budget b;
 *     cs_decode_budget_init(&b, cs_decode_budget_default_bytes(), &e);
 *     ... workers: cs_image_load_budgeted(path, max_pixels, &b, &img, &e);
 *                  ...use img...; cs_image_free(&img);   (gives the bytes back)
 *     ... to stop: cs_decode_budget_cancel(&b);  (waiters fail with ECANCELED)
 *     ... after the workers have joined: cs_decode_budget_destroy(&b);
 * All functions but init and destroy are safe to call from any thread. */
#ifndef CLIPSCORE_DECODE_BUDGET_H
#define CLIPSCORE_DECODE_BUDGET_H

#include <pthread.h>
#include <stdint.h>

#include "util.h"

typedef struct cs_decode_budget {
    pthread_mutex_t mu;
    pthread_cond_t changed; /* a release, a grant or a cancel */
    int64_t total;          /* bytes that may be reserved at once */
    int64_t reserved;       /* bytes reserved now */
    int64_t peak;           /* highest `reserved` so far */
    int holders;            /* reservations held now */
    uint64_t next_ticket;   /* first-come first-served order */
    uint64_t serving;       /* the ticket whose turn it is */
    int64_t waits;          /* reservations that had to wait */
    int canceled;           /* sticky: set by cs_decode_budget_cancel */
} cs_decode_budget;

/* A sensible total for a machine: a quarter of its physical memory, at
 * least 256 MiB and at most 2 GiB (a 2 GiB budget lets ten 12-megapixel
 * photos decode at once; a 100-megapixel PNG then runs mostly alone). */
int64_t cs_decode_budget_default_bytes(void);

/* bytes > 0. CLIPSCORE_EARG for a bad size, CLIPSCORE_EINTERNAL if the
 * mutex or condition variable cannot be created. */
int cs_decode_budget_init(cs_decode_budget *b, int64_t bytes, cs_error *e);
/* No reservation may be held or awaited any more. */
void cs_decode_budget_destroy(cs_decode_budget *b);

/* Waits until `bytes` fit beside what is reserved (or, when bytes exceed the
 * whole budget, until nothing else is reserved), in arrival order, then
 * reserves them. Returns 0, or CLIPSCORE_ECANCELED (nothing reserved) once
 * the budget is canceled, also when called after the cancel. */
int cs_decode_budget_reserve(cs_decode_budget *b, int64_t bytes, cs_error *e);
/* Gives back part of a reservation (to_bytes < held_bytes): the holder has
 * freed its working memory and keeps only to_bytes. */
void cs_decode_budget_shrink(cs_decode_budget *b, int64_t held_bytes, int64_t to_bytes);
/* Gives back a whole reservation of `bytes` (what it holds now). */
void cs_decode_budget_release(cs_decode_budget *b, int64_t bytes);
/* Makes every current and later reserve() fail with CLIPSCORE_ECANCELED, so
 * that workers stop promptly; releases still work. Not undone: a new run
 * uses a new budget. */
void cs_decode_budget_cancel(cs_decode_budget *b);

/* Counters, for tests and the run's statistics (any pointer may be NULL):
 * bytes reserved now, the highest total ever reserved (at most the budget,
 * unless a single reservation larger than it ran alone), and how many
 * reservations had to wait. */
void cs_decode_budget_stats(cs_decode_budget *b, int64_t *reserved, int64_t *peak, int64_t *waits);

#endif
