/* test_api.c - the public API's promises about threads and state, on a tiny
 * model the test writes: clipscore_tokenize from several threads at once
 * gives each the same ids as one thread alone; clipscore_last_error is per
 * thread (a failure in one thread is not seen by another); a cancel request
 * made before clipscore_score_csv is cleared on its entry, one made during
 * the run stops it with CLIPSCORE_ECANCELED and no output; the weight
 * file's SHA-256, hashed on a thread beside the load, is the file's, and a
 * context freed at once (its hash unfinished or not) leaves nothing behind. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clipscore.h"
#include "sha256.h"
#include "test.h"
#include "tiny_model.h"

enum { N_THREADS = 4, N_TEXTS = 64, MAXT = 77 };

static clipscore_context *ctx;
static char texts[N_TEXTS][64];
static int32_t want[N_TEXTS][MAXT];
static int want_n[N_TEXTS];

typedef struct worker_arg {
    int id, mismatches, fail_seen;
    char last_after[64];
} worker_arg;

static void *tokenize_worker(void *p) {
    worker_arg *a = p;
    for (int rep = 0; rep < 50; rep++)
        for (int i = 0; i < N_TEXTS; i++) {
            int32_t ids[MAXT];
            int n = 0;
            if (a->id == 0 && i % 7 == 0) {
                /* Thread 0 also fails on purpose: ids do not fit in 1. */
                if (clipscore_tokenize(ctx, texts[i], ids, 1, &n, NULL) == CLIPSCORE_EARG)
                    a->fail_seen++;
                continue;
            }
            if (clipscore_tokenize(ctx, texts[i], ids, MAXT, &n, NULL) != 0 || n != want_n[i] ||
                memcmp(ids, want[i], (size_t)n * sizeof *ids) != 0)
                a->mismatches++;
        }
    snprintf(a->last_after, sizeof a->last_after, "%s", clipscore_last_error(ctx));
    return NULL;
}

static void *cancel_soon(void *p) {
    (void)p;
    usleep(200 * 1000);
    clipscore_cancel(ctx);
    return NULL;
}

int main(void) {
    const char *tmp = test_tmpdir("api");
    char model[600], csv[600], out[600], out2[600];
    snprintf(model, sizeof model, "%s/model", tmp);
    cs_error e;
    tiny_spec s = tiny_default_spec();
    CHECK_EQ_INT(tiny_model_write(model, "hf", &s, 3, 0, &e), 0);
    clipscore_params p = clipscore_default_params();
    p.model = model;
    p.device = "cpu";
    p.quiet = 1;
    char err[1024];
    /* A memo of hashes of our own, so the load thread really hashes. */
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    setenv("CLIPSCORE_CACHE", cache, 1);
    /* Freed at once: the hash thread is stopped or joined (ASan and
     * LeakSanitizer watch the rest). */
    for (int i = 0; i < 3; i++) {
        clipscore_context *quick = clipscore_init(&p, err, sizeof err);
        CHECK_MSG(quick != NULL, "%s", err);
        clipscore_free(quick);
    }
    ctx = clipscore_init(&p, err, sizeof err);
    CHECK_MSG(ctx != NULL, "%s", err);
    if (!ctx) return test_finish("test_api");
    clipscore_model_info mi;
    CHECK_EQ_INT(clipscore_get_model_info(ctx, &mi), 0);
    char sha[65], want_sha[65];
    CHECK_EQ_INT(clipscore_weights_sha256(ctx, sha), 0);
    CHECK_EQ_INT(cs_sha256_file(mi.weights_file, want_sha, &e), 0);
    CHECK_EQ_STR(sha, want_sha);
    CHECK_EQ_INT(clipscore_weights_sha256(ctx, sha), 0); /* again: the remembered one */
    CHECK_EQ_STR(sha, want_sha);

    /* Single-threaded answers first. */
    for (int i = 0; i < N_TEXTS; i++) {
        snprintf(texts[i], sizeof texts[i], "caption %d of a cat%s", i, i % 3 ? " and a dog" : "");
        CHECK_EQ_INT(clipscore_tokenize(ctx, texts[i], want[i], MAXT, &want_n[i], NULL), 0);
    }
    pthread_t th[N_THREADS];
    worker_arg args[N_THREADS];
    memset(args, 0, sizeof args);
    for (int t = 0; t < N_THREADS; t++) {
        args[t].id = t;
        pthread_create(&th[t], NULL, tokenize_worker, &args[t]);
    }
    for (int t = 0; t < N_THREADS; t++) pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++) CHECK_EQ_INT(args[t].mismatches, 0);
    CHECK(args[0].fail_seen > 0);
    CHECK_MSG(strstr(args[0].last_after, "do not fit") != NULL, "%s", args[0].last_after);
    for (int t = 1; t < N_THREADS; t++) CHECK_EQ_STR(args[t].last_after, "");

    /* Cancel: a request made before the call is cleared on entry. */
    snprintf(csv, sizeof csv, "%s/in.csv", tmp);
    FILE *f = fopen(csv, "w");
    fputs("image,caption\n", f);
    for (int i = 0; i < 20000; i++) fprintf(f, "missing%d.png,caption %d\n", i % 50, i);
    fclose(f);
    snprintf(out, sizeof out, "%s/out", tmp);
    clipscore_score_params sp = clipscore_default_score_params();
    sp.input_csv = csv;
    sp.output_dir = out;
    sp.figures = 0;
    sp.progress = 0;
    clipscore_cancel(ctx);
    clipscore_score_summary sum;
    CHECK_EQ_INT(clipscore_score_csv(ctx, &sp, &sum), 0);
    CHECK_EQ_INT(sum.rows, 20000);
    /* ... and one made during the run stops it: nothing written. */
    snprintf(out2, sizeof out2, "%s/out2", tmp);
    sp.output_dir = out2;
    sp.batch_size = 1;
    FILE *big = fopen(csv, "a");
    for (int i = 0; i < 2000000; i++) fprintf(big, "missing%d.png,more %d\n", i % 50, i % 1000);
    fclose(big);
    pthread_t canceller;
    pthread_create(&canceller, NULL, cancel_soon, NULL);
    int rc = clipscore_score_csv(ctx, &sp, &sum);
    pthread_join(canceller, NULL);
    CHECK_EQ_INT(rc, CLIPSCORE_ECANCELED);
    CHECK_MSG(strstr(clipscore_last_error(ctx), "interrupted") != NULL, "%s",
              clipscore_last_error(ctx));
    char p2[700];
    snprintf(p2, sizeof p2, "%s/output.csv", out2);
    struct stat st;
    CHECK(stat(p2, &st) != 0);
    clipscore_free(ctx);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_finish("test_api");
}
