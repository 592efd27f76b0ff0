/* test_outputs.c - how a run's outputs are committed and its folders kept:
 * the commit (all or nothing before the first rename), the folder lock
 * (a second holder refused with the first's PID, in one process too), the
 * clean-up of a killed run's temporaries, and the embedding cache that
 * lets repeated images and captions skip the encoders (eviction order,
 * hits across batches). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commit.h"
#include "embed_cache.h"
#include "output_dir.h"
#include "test.h"

static char dir[256];

static char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void put(const char *name, const char *text) {
    FILE *f = fopen(path_in(name), "w");
    fputs(text, f);
    fclose(f);
}

static int has(const char *name, const char *text) {
    char buf[256] = "";
    FILE *f = fopen(path_in(name), "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strcmp(buf, text) == 0;
}

static int exists(const char *name) {
    struct stat st;
    return lstat(path_in(name), &st) == 0;
}

/* A finished temporary for name holding text. */
static void staged(cs_atomic_file *f, const char *name, const char *text) {
    cs_error e;
    CHECK_EQ_INT(cs_atomic_open(f, path_in(name), &e), 0);
    fputs(text, f->fp);
    CHECK_EQ_INT(cs_atomic_finish(f, &e), 0);
}

static int count_tmp(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | grep -c '\\.tmp\\.' > /dev/null", dir);
    return system(cmd) == 0;
}

static void test_commit(void) {
    cs_error e;
    cs_commit c;
    cs_atomic_file f;
    /* All files replaced together. */
    put("a.txt", "old a");
    put("b.txt", "old b");
    cs_commit_init(&c);
    staged(&f, "a.txt", "new a");
    CHECK_EQ_INT(cs_commit_add(&c, &f, &e), 0);
    CHECK(f.tmp_path == NULL); /* taken over */
    staged(&f, "b.txt", "new b");
    CHECK_EQ_INT(cs_commit_add(&c, &f, &e), 0);
    CHECK(cs_commit_has(&c, path_in("a.txt")) && !cs_commit_has(&c, path_in("c.txt")));
    CHECK(has("a.txt", "old a")); /* nothing moves before apply */
    CHECK_EQ_INT(cs_commit_apply(&c, &e), 0);
    CHECK(has("a.txt", "new a") && has("b.txt", "new b"));
    CHECK(!count_tmp());

    /* A folder where the second file goes: nothing replaced, no temporary left. */
    mkdir(path_in("d.txt"), 0755);
    cs_commit_init(&c);
    staged(&f, "a.txt", "newer a");
    cs_commit_add(&c, &f, &e);
    staged(&f, "d.txt", "d");
    cs_commit_add(&c, &f, &e);
    CHECK_EQ_INT(cs_commit_apply(&c, &e), CLIPSCORE_EIO);
    CHECK_MSG(strstr(e.msg, "d.txt") && strstr(e.msg, "no output was replaced"), "%s", e.msg);
    CHECK(has("a.txt", "new a"));
    CHECK(!count_tmp());
    rmdir(path_in("d.txt"));

    /* A temporary removed behind our back: nothing replaced either. */
    cs_commit_init(&c);
    staged(&f, "a.txt", "newer a");
    cs_commit_add(&c, &f, &e);
    staged(&f, "b.txt", "newer b");
    unlink(f.tmp_path);
    cs_commit_add(&c, &f, &e);
    CHECK_EQ_INT(cs_commit_apply(&c, &e), CLIPSCORE_EIO);
    CHECK(has("a.txt", "new a") && has("b.txt", "new b"));
    CHECK(!count_tmp());

    /* Abort removes every temporary and replaces nothing. */
    cs_commit_init(&c);
    staged(&f, "a.txt", "never");
    cs_commit_add(&c, &f, &e);
    cs_commit_abort(&c);
    CHECK(has("a.txt", "new a") && !count_tmp());
    cs_commit_abort(&c); /* twice is fine */
}

static void test_lock(void) {
    cs_error e;
    cs_output_lock a, b;
    CHECK_EQ_INT(cs_output_lock_take(dir, &a, &e), 0);
    CHECK(exists(CS_OUTPUT_LOCK_NAME));
    /* A second holder in the same process is refused too, naming the PID. */
    CHECK_EQ_INT(cs_output_lock_take(dir, &b, &e), CLIPSCORE_EIO);
    char want[64];
    snprintf(want, sizeof want, "PID %ld", (long)getpid());
    CHECK_MSG(strstr(e.msg, want) != NULL, "%s", e.msg);
    CHECK(b.fd == -1);
    /* And in another process. */
    pid_t child = fork();
    if (child == 0) {
        cs_output_lock c;
        _exit(cs_output_lock_take(dir, &c, &e) == CLIPSCORE_EIO ? 0 : 1);
    }
    int st = 0;
    waitpid(child, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cs_output_lock_release(&a);
    CHECK(!exists(CS_OUTPUT_LOCK_NAME));
    cs_output_lock_release(&a); /* twice is fine */
    CHECK_EQ_INT(cs_output_lock_take(dir, &b, &e), 0);
    cs_output_lock_release(&b);
    /* A folder that cannot hold the lock file. */
    CHECK(cs_output_lock_take("/nonexistent/clipscore", &b, &e) == CLIPSCORE_EIO);
    CHECK(strstr(e.msg, "/nonexistent/clipscore") != NULL);
}

static void test_stale(void) {
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    char n1[64], n2[64], n3[64], n4[64];
    snprintf(n1, sizeof n1, "output.csv.tmp.%ld", (long)dead);
    snprintf(n2, sizeof n2, "run.json.tmp.%ld", (long)getppid()); /* alive */
    snprintf(n3, sizeof n3, "mine.txt.tmp.%ld", (long)dead);      /* not our name */
    snprintf(n4, sizeof n4, "output.csv.tmp.%ldx", (long)dead);   /* not a PID */
    put(n1, "x");
    put(n2, "x");
    put(n3, "x");
    put(n4, "x");
    static const char *const names[] = {"output.csv", "run.json"};
    CHECK_EQ_INT(cs_output_remove_stale(dir, names, 2), 1);
    CHECK(!exists(n1) && exists(n2) && exists(n3) && exists(n4));
    unlink(path_in(n2));
    unlink(path_in(n3));
    unlink(path_in(n4));
}

static void test_embed_cache(void) {
    cs_error e;
    cs_embed_cache *c;
    const int dim = 3;
    CHECK_EQ_INT(cs_embed_cache_new(4, dim, &c, &e), 0);
    float v[3];
    char key[16];
    /* Batch 1 puts k0..k3; batch 2 finds them (hits across batches). */
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "k%d", i);
        v[0] = (float)i, v[1] = (float)-i, v[2] = 0.5f;
        CHECK_EQ_INT(cs_embed_cache_put(c, key, v, &e), 0);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "k%d", i);
        const float *got = cs_embed_cache_get(c, key);
        CHECK(got && got[0] == (float)i && got[1] == (float)-i && got[2] == 0.5f);
    }
    CHECK_EQ_INT(cs_embed_cache_hits(c), 4);
    CHECK(cs_embed_cache_get(c, "k9") == NULL);
    /* Full: each put replaces the oldest entry (FIFO), whatever was read. */
    v[0] = 40;
    CHECK_EQ_INT(cs_embed_cache_put(c, "k4", v, &e), 0);
    CHECK(cs_embed_cache_get(c, "k0") == NULL);
    CHECK(cs_embed_cache_get(c, "k1") && cs_embed_cache_get(c, "k4")[0] == 40);
    v[0] = 50;
    CHECK_EQ_INT(cs_embed_cache_put(c, "k5", v, &e), 0);
    CHECK(cs_embed_cache_get(c, "k1") == NULL && cs_embed_cache_get(c, "k2") != NULL);
    /* Many more keys than slots: lookups stay right (backward-shift
     * deletion leaves no stale entries in the table). */
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "m%d", i);
        v[0] = (float)i;
        CHECK_EQ_INT(cs_embed_cache_put(c, key, v, &e), 0);
        const float *got = cs_embed_cache_get(c, key);
        CHECK(got && got[0] == (float)i);
        if (i >= 4) {
            snprintf(key, sizeof key, "m%d", i - 4);
            CHECK(cs_embed_cache_get(c, key) == NULL);
        }
    }
    cs_embed_cache_free(c);
    CHECK(cs_embed_cache_new(0, dim, &c, &e) == CLIPSCORE_EARG);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/clipscore-outputs-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    test_commit();
    test_lock();
    test_stale();
    test_embed_cache();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_outputs");
}
