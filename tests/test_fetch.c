/* test_fetch.c - model resolution and downloads (src/fetch.c) against the
 * test HTTP server on 127.0.0.1: registry names, the cache, checksum
 * failures, resumed and restarted transfers, 404, offline mode, concurrent
 * fetches, mirrors, and hf: repositories against an emulated hub.
 *
 * Leaves out: the real internet (no test touches it), TLS, and progress
 * output on a terminal. Fixtures are random files made here under /tmp. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fetch.h"
#include "http_server.h"
#include "sha256.h"
#include "test.h"

#define VITB32_SHA "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
#define MODEL_SIZE 300000
#define VOCAB_SIZE 20000

static char fx[512];       /* fixtures served over HTTP */
static char sha_model[65]; /* fx/model.bin */
static char sha_vocab[65]; /* fx/vocab.gz */

/* Temporary folders, removed at the end when every check passed. */
static char *tmpdirs[64];
static int n_tmpdirs;
static const char *tmpdir(const char *tag) {
    const char *d = test_tmpdir(tag);
    if (n_tmpdirs < 64) tmpdirs[n_tmpdirs++] = strdup(d);
    return d;
}
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}
static void remove_tmpdirs(int keep) {
    for (int i = 0; i < n_tmpdirs; i++) {
        if (!keep) nftw(tmpdirs[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(tmpdirs[i]);
    }
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static void write_random(const char *path, size_t n, uint32_t seed) {
    unsigned char *b = malloc(n);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b[i] = (unsigned char)x;
    }
    write_bytes(path, b, n);
    free(b);
}

static void write_text(const char *path, const char *s) {
    write_bytes(path, s, strlen(s));
}

static void mkdirs(const char *path) {
    cs_error e = {0};
    if (cs_mkdir_p(path, &e) != 0) {
        fprintf(stderr, "%s\n", e.msg);
        exit(2);
    }
}

static void fpath(char *out, size_t n, const char *dir, const char *name) {
    if (snprintf(out, n, "%s/%s", dir, name) >= (int)n) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(2);
    }
}

/* SHA-256 of a file, "" when unreadable. */
static const char *sha_of(const char *path) {
    static char hex[65];
    if (cs_sha256_file(path, hex, NULL) != 0) hex[0] = '\0';
    return hex;
}

static int exists(const char *dir, const char *name) {
    char p[1024];
    fpath(p, sizeof p, dir, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* Non-hidden entries in a folder; *parts counts the .part files. */
static int count_files(const char *dir, int *parts) {
    int n = 0;
    if (parts) *parts = 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        n++;
        size_t l = strlen(de->d_name);
        if (parts && l > 5 && strcmp(de->d_name + l - 5, ".part") == 0) (*parts)++;
    }
    closedir(d);
    return n;
}

/* stderr into a file between capture_begin and capture_end (which returns
 * what was written; caller frees). */
static int saved_stderr = -1;
static char capture_file[600];
static void capture_begin(void) {
    snprintf(capture_file, sizeof capture_file, "%s/stderr.txt", tmpdir("fetch-stderr"));
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || saved_stderr < 0) exit(2);
    dup2(fd, 2);
    close(fd);
}
static char *capture_end(void) {
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    char *text = NULL;
    if (cs_read_file(capture_file, 0, &text, NULL, NULL) != 0) text = strdup("(unreadable)");
    return text;
}

static char *fresh_cache(cs_fetch_opts *o) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", tmpdir("fetch-cache"));
    *o = cs_fetch_default_opts();
    o->offline = 0;
    o->progress = 0;
    o->cache_dir = dir;
    return dir;
}

static http_server *start(http_server_opts o) {
    if (!o.root) o.root = fx;
    if (!o.max_seconds) o.max_seconds = 60;
    http_server *s = http_server_start(&o);
    if (!s) exit(2);
    return s;
}

static char registry_path[512];

/* A registry with one entry of up to two files (name2 NULL: one). */
static void registry(const char *model, const char *name1, const char *url1, const char *sha1,
                     const char *name2, const char *url2, const char *sha2) {
    char json[4096];
    int n = snprintf(json, sizeof json,
                     "{\"%s\": {\"files\": {\"%s\": {\"url\": \"%s\", \"sha256\": \"%s\"}", model,
                     name1, url1, sha1);
    if (name2)
        n += snprintf(json + n, sizeof json - (size_t)n,
                      ", \"%s\": {\"url\": \"%s\", \"sha256\": \"%s\"}", name2, url2, sha2);
    snprintf(json + n, sizeof json - (size_t)n, "}}}\n");
    write_text(registry_path, json);
    setenv("CLIPSCORE_REGISTRY", registry_path, 1);
}

static void url_of(char *out, size_t n, http_server *s, const char *path) {
    snprintf(out, n, "http://127.0.0.1:%d%s", http_server_port(s), path);
}

/* GET requests for path, and the Range start of the k-th of them. */
static long long nth_range(http_server *s, const char *path, int k) {
    int seen = 0;
    for (int i = 0; i < http_server_nrequests(s); i++) {
        http_request rq;
        if (http_server_request(s, i, &rq) == 0 && strcmp(rq.method, "GET") == 0 &&
            strcmp(rq.path, path) == 0 && seen++ == k)
            return rq.range_start;
    }
    return -2;
}

static void test_cache_dir_env(void) {
    char *d = NULL;
    cs_error e = {0};
    setenv("CLIPSCORE_CACHE", "/x/cache", 1);
    CHECK_EQ_INT(cs_fetch_cache_dir(NULL, &d, &e), 0);
    CHECK_EQ_STR(d, "/x/cache");
    free(d);
    unsetenv("CLIPSCORE_CACHE");
    setenv("XDG_CACHE_HOME", "/y", 1);
    CHECK_EQ_INT(cs_fetch_cache_dir(NULL, &d, &e), 0);
    CHECK_EQ_STR(d, "/y/clipscore");
    free(d);
    unsetenv("XDG_CACHE_HOME");
    char *home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", "/z", 1);
    CHECK_EQ_INT(cs_fetch_cache_dir(NULL, &d, &e), 0);
    CHECK_EQ_STR(d, "/z/.cache/clipscore");
    free(d);
    cs_fetch_opts o = cs_fetch_default_opts();
    o.cache_dir = "/explicit";
    CHECK_EQ_INT(cs_fetch_cache_dir(&o, &d, &e), 0);
    CHECK_EQ_STR(d, "/explicit");
    free(d);
    if (home) setenv("HOME", home, 1);
    free(home);

    setenv("CLIPSCORE_OFFLINE", "1", 1);
    CHECK_EQ_INT(cs_fetch_default_opts().offline, 1);
    setenv("CLIPSCORE_OFFLINE", "0", 1);
    CHECK_EQ_INT(cs_fetch_default_opts().offline, 0);
    unsetenv("CLIPSCORE_OFFLINE");
    CHECK_EQ_INT(cs_fetch_default_opts().offline, 0);
    CHECK_EQ_STR(cs_default_model_name(), "ViT-B/32");
}

static void test_registry_fetch_then_cached(void) {
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){0});
    char u1[256], u2[256], want[1024], got_path[1024];
    url_of(u1, sizeof u1, s, "/model.bin");
    url_of(u2, sizeof u2, s, "/vocab.gz");
    registry("tiny", "tiny.pt", u1, sha_model, "vocab.gz", u2, sha_vocab);
    cs_error e = {0};
    char *path = NULL;
    int rc = cs_model_resolve("tiny", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    fpath(want, sizeof want, cache, "tiny");
    CHECK_EQ_STR(path, want);
    if (path) {
        fpath(got_path, sizeof got_path, path, "tiny.pt");
        CHECK_EQ_STR(sha_of(got_path), sha_model);
        fpath(got_path, sizeof got_path, path, "vocab.gz");
        CHECK_EQ_STR(sha_of(got_path), sha_vocab);
        int parts;
        CHECK_EQ_INT(count_files(path, &parts), 2);
        CHECK_EQ_INT(parts, 0);
    }
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 1);
    CHECK_EQ_INT(http_server_count(s, "GET", "/vocab.gz"), 1);
    free(path);
    path = NULL;

    /* With the server gone, the cache must serve without the network. */
    http_server_free(s);
    rc = cs_model_resolve("tiny", &o, &path, &e);
    CHECK_MSG(rc == 0, "cached run: rc %d: %s", rc, e.msg);
    CHECK_EQ_STR(path, want);
    free(path);
    path = NULL;
    o.offline = 1;
    rc = cs_model_resolve("tiny", &o, &path, &e);
    CHECK_MSG(rc == 0, "cached offline run: rc %d: %s", rc, e.msg);
    CHECK_EQ_STR(path, want);
    free(path);
    rc = cs_models_fetch("tiny", &o, NULL, &e);
    CHECK_MSG(rc == 0, "fetch of a cached model: rc %d: %s", rc, e.msg);

    /* The list shows built-ins and registry names, cached or not. */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    rc = cs_models_list(mem, &o, &e);
    fclose(mem);
    CHECK_MSG(rc == 0, "list: %s", e.msg);
    CHECK_MSG(text && strstr(text, "tiny ") && strstr(text, "cached"), "%s", text);
    CHECK_MSG(text && strstr(text, "ViT-B/32") && strstr(text, "ViT-L/14@336px"), "%s", text);
    CHECK_MSG(text && strstr(text, "* ViT-B/32"), "default not marked: %s", text);
    free(text);

    /* A local path is returned as is; an unknown name is refused. */
    char local[1024];
    fpath(local, sizeof local, fx, "model.bin");
    path = NULL;
    CHECK_EQ_INT(cs_model_resolve(local, &o, &path, &e), 0);
    CHECK_EQ_STR(path, local);
    free(path);
    path = NULL;
    CHECK_EQ_INT(cs_model_resolve(fx, &o, &path, &e), 0);
    CHECK_EQ_STR(path, fx);
    free(path);
    path = NULL;
    rc = cs_model_resolve("no-such-model", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_EARG);
    CHECK(path == NULL);
    CHECK_MSG(strstr(e.msg, "no-such-model") != NULL, "%s", e.msg);
    CHECK_EQ_INT(cs_models_fetch(local, &o, NULL, &e), CLIPSCORE_EARG);
    unsetenv("CLIPSCORE_REGISTRY");
}

static void test_checksum_mismatch(void) {
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){0});
    char u[256], dir[1024];
    url_of(u, sizeof u, s, "/model.bin");
    registry("bad", "bad.pt", u, sha_vocab, NULL, NULL, NULL); /* the wrong hash */
    cs_error e = {0};
    char *path = NULL;
    capture_begin();
    int rc = cs_model_resolve("bad", &o, &path, &e);
    char *err = capture_end();
    CHECK_MSG(err[0] == '\0', "quiet run wrote: %s", err); /* progress off: nothing */
    free(err);
    CHECK_EQ_INT(rc, CLIPSCORE_ECHECKSUM);
    CHECK_EQ_INT(e.code, CLIPSCORE_ECHECKSUM);
    CHECK(path == NULL);
    CHECK_MSG(strstr(e.msg, "checksum") && strstr(e.msg, u), "%s", e.msg);
    fpath(dir, sizeof dir, cache, "bad");
    int parts;
    CHECK_EQ_INT(count_files(dir, &parts), 0);
    CHECK(!exists(dir, "bad.pt"));
    CHECK(!exists(dir, "bad.pt.part"));
    CHECK(!exists(dir, ".clipscore-manifest.json"));
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 1);
    http_server_free(s);
}

static void test_resume_after_cut(void) {
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){.cut_after = 100000, .cut_times = 1});
    char u[256], f[1024];
    url_of(u, sizeof u, s, "/model.bin");
    registry("res", "res.pt", u, sha_model, NULL, NULL, NULL);
    cs_error e = {0};
    char *path = NULL;
    o.progress = 1;
    capture_begin();
    long long read_back = cs_fetch_bytes_read_back();
    int rc = cs_model_resolve("res", &o, &path, &e);
    char *err = capture_end();
    o.progress = 0;
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    /* Not a terminal: plain lines, the last one the finished file. */
    CHECK_MSG(strstr(err, "fetching res into ") && strstr(err, "retrying") &&
                  strstr(err, "res.pt: resuming after 97.7 KiB") && strstr(err, "(100%)") &&
                  !strchr(err, '\r'),
              "progress: %s", err);
    free(err);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 2);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 0), -1);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 1), 100000);
    /* Verified while written: the cut and the resume within one run read
     * nothing back. */
    CHECK_EQ_INT(cs_fetch_bytes_read_back() - read_back, 0);
    if (path) {
        fpath(f, sizeof f, path, "res.pt");
        CHECK_EQ_STR(sha_of(f), sha_model);
        CHECK(!exists(path, "res.pt.part"));
    }
    free(path);
    http_server_free(s);

    /* A .part left by an earlier run is resumed from where it ends. */
    s = start((http_server_opts){0});
    url_of(u, sizeof u, s, "/model.bin");
    registry("res2", "res2.pt", u, sha_model, NULL, NULL, NULL);
    char dir[1024], src[1024];
    fpath(dir, sizeof dir, cache, "res2");
    mkdirs(dir);
    fpath(src, sizeof src, fx, "model.bin");
    char *data = NULL;
    size_t len = 0;
    cs_read_file(src, 0, &data, &len, NULL);
    fpath(f, sizeof f, dir, "res2.pt.part");
    write_bytes(f, data, 123456);
    free(data);
    path = NULL;
    read_back = cs_fetch_bytes_read_back();
    rc = cs_model_resolve("res2", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 1);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 0), 123456);
    /* Only the earlier run's prefix is read back, to resume the hash. */
    CHECK_EQ_INT(cs_fetch_bytes_read_back() - read_back, 123456);
    fpath(f, sizeof f, dir, "res2.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    CHECK(!exists(dir, "res2.pt.part"));
    free(path);

    /* A stale .part of other content: resumed, fails to verify, and gets one
     * clean download. */
    fpath(dir, sizeof dir, cache, "res3");
    mkdirs(dir);
    fpath(f, sizeof f, dir, "res3.pt.part");
    write_random(f, 50000, 99);
    registry("res3", "res3.pt", u, sha_model, NULL, NULL, NULL);
    path = NULL;
    read_back = cs_fetch_bytes_read_back();
    rc = cs_model_resolve("res3", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(cs_fetch_bytes_read_back() - read_back, 50000);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 3);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 1), 50000);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 2), -1);
    fpath(f, sizeof f, dir, "res3.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    free(path);

    /* A .part longer than the file: the server answers 416, start over. */
    fpath(dir, sizeof dir, cache, "res4");
    mkdirs(dir);
    fpath(f, sizeof f, dir, "res4.pt.part");
    write_random(f, MODEL_SIZE + 1000, 7);
    registry("res4", "res4.pt", u, sha_model, NULL, NULL, NULL);
    path = NULL;
    read_back = cs_fetch_bytes_read_back();
    rc = cs_model_resolve("res4", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    /* Its prefix was hashed, then dropped with the truncation (416). */
    CHECK_EQ_INT(cs_fetch_bytes_read_back() - read_back, MODEL_SIZE + 1000);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 3), MODEL_SIZE + 1000);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 4), -1);
    fpath(f, sizeof f, dir, "res4.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    free(path);
    http_server_free(s);
}

static void test_server_ignores_range(void) {
    cs_fetch_opts o;
    fresh_cache(&o);
    http_server *s =
        start((http_server_opts){.cut_after = 100000, .cut_times = 1, .ignore_range = 1});
    char u[256], f[1024];
    url_of(u, sizeof u, s, "/model.bin");
    registry("ign", "ign.pt", u, sha_model, NULL, NULL, NULL);
    cs_error e = {0};
    char *path = NULL;
    long long read_back = cs_fetch_bytes_read_back();
    int rc = cs_model_resolve("ign", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    /* The restart from byte 0 starts the hash over, without reading. */
    CHECK_EQ_INT(cs_fetch_bytes_read_back() - read_back, 0);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 2);
    CHECK_EQ_INT(nth_range(s, "/model.bin", 1), 100000); /* asked, but got the whole file */
    if (path) {
        fpath(f, sizeof f, path, "ign.pt");
        CHECK_EQ_STR(sha_of(f), sha_model);
        struct stat st;
        CHECK(stat(f, &st) == 0 && st.st_size == MODEL_SIZE);
    }
    free(path);
    http_server_free(s);
}

static void test_not_found(void) {
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){0});
    char u[256], dir[1024];
    url_of(u, sizeof u, s, "/nope.bin");
    registry("gone", "gone.pt", u, sha_model, NULL, NULL, NULL);
    cs_error e = {0};
    char *path = NULL;
    int rc = cs_model_resolve("gone", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ENETWORK);
    CHECK(path == NULL);
    CHECK_MSG(strstr(e.msg, "not found (HTTP 404)") && strstr(e.msg, u), "%s", e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", "/nope.bin"), 1); /* a 404 is not retried */
    fpath(dir, sizeof dir, cache, "gone");
    CHECK(!exists(dir, "gone.pt"));
    CHECK(!exists(dir, "gone.pt.part"));
    http_server_free(s);
}

static void test_transient_errors_retried(void) {
    cs_fetch_opts o;
    fresh_cache(&o);
    http_server *s = start((http_server_opts){.fail_name = "model.bin", .fail_status = 503});
    char u[256];
    url_of(u, sizeof u, s, "/model.bin");
    registry("busy", "busy.pt", u, sha_model, NULL, NULL, NULL);
    cs_error e = {0};
    char *path = NULL;
    int rc = cs_model_resolve("busy", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ENETWORK);
    CHECK_MSG(strstr(e.msg, "HTTP 503") && strstr(e.msg, u), "%s", e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 3); /* tried, then retried twice */
    http_server_free(s);
}

static void test_offline(void) {
    cs_fetch_opts o;
    fresh_cache(&o);
    o.offline = 1;
    http_server *s = start((http_server_opts){0});
    char mirror[128];
    url_of(mirror, sizeof mirror, s, "");
    setenv("CLIPSCORE_MIRROR", mirror, 1);
    setenv("HF_ENDPOINT", mirror, 1);
    cs_error e = {0};
    char *path = NULL;
    int rc = cs_model_resolve(NULL, &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_EOFFLINE);
    CHECK(path == NULL);
    CHECK_MSG(strstr(e.msg, "clipscore models fetch ViT-B/32") != NULL, "%s", e.msg);
    rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_EOFFLINE);
    CHECK_MSG(strstr(e.msg, "clipscore models fetch hf:org/clip-a") != NULL, "%s", e.msg);
    CHECK_EQ_INT(cs_models_fetch("ViT-L/14", &o, NULL, &e), CLIPSCORE_EOFFLINE);
    CHECK_EQ_INT(http_server_nrequests(s), 0);
    unsetenv("CLIPSCORE_MIRROR");
    unsetenv("HF_ENDPOINT");
    http_server_free(s);
}

typedef struct conc_arg {
    const cs_fetch_opts *o;
    int rc;
    char *path;
    cs_error e;
} conc_arg;

static void *conc_fetch(void *p) {
    conc_arg *a = p;
    a->rc = cs_model_resolve("conc", a->o, &a->path, &a->e);
    return NULL;
}

static void test_concurrent(void) {
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    /* Slow responses make the two fetches overlap. */
    http_server *s = start((http_server_opts){.delay_ms = 300});
    char u1[256], u2[256], f[1024], dir[1024];
    url_of(u1, sizeof u1, s, "/model.bin");
    url_of(u2, sizeof u2, s, "/vocab.gz");
    registry("conc", "conc.pt", u1, sha_model, "vocab.gz", u2, sha_vocab);
    conc_arg a[2];
    memset(a, 0, sizeof a);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        a[i].o = &o;
        pthread_create(&t[i], NULL, conc_fetch, &a[i]);
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK_MSG(a[i].rc == 0, "thread %d: rc %d: %s", i, a[i].rc, a[i].e.msg);
        free(a[i].path);
    }
    /* One copy fetched: the second fetcher waited on the lock, then found it. */
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 1);
    CHECK_EQ_INT(http_server_count(s, "GET", "/vocab.gz"), 1);
    fpath(dir, sizeof dir, cache, "conc");
    int parts;
    CHECK_EQ_INT(count_files(dir, &parts), 2);
    CHECK_EQ_INT(parts, 0);
    fpath(f, sizeof f, dir, "conc.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    fpath(f, sizeof f, dir, "vocab.gz");
    CHECK_EQ_STR(sha_of(f), sha_vocab);

    /* The same with two processes. */
    registry("conc2", "conc.pt", u1, sha_model, NULL, NULL, NULL);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork();
        if (pid[i] == 0) {
            cs_error ce = {0};
            char *p = NULL;
            int rc = cs_model_resolve("conc2", &o, &p, &ce);
            if (rc) fprintf(stderr, "child: %s\n", ce.msg);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < 2; i++) {
        int st = 0;
        CHECK(pid[i] > 0 && waitpid(pid[i], &st, 0) == pid[i]);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d: status %d", i, st);
    }
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 2);
    fpath(dir, sizeof dir, cache, "conc2");
    CHECK_EQ_INT(count_files(dir, &parts), 1);
    fpath(f, sizeof f, dir, "conc.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    http_server_free(s);
    unsetenv("CLIPSCORE_REGISTRY");
}

static void test_mirror(void) {
    cs_error e = {0};
    char *u = cs_fetch_mirror_url("https://openaipublic.azureedge.net/clip/models/abc/ViT-B-32.pt",
                                  "http://127.0.0.1:8080", &e);
    CHECK_EQ_STR(u, "http://127.0.0.1:8080/clip/models/abc/ViT-B-32.pt");
    free(u);
    u = cs_fetch_mirror_url("https://host:8443/a/b.bin?x=1&y=2", "https://mirror.lan/models/", &e);
    CHECK_EQ_STR(u, "https://mirror.lan/models/a/b.bin?x=1&y=2");
    free(u);
    u = cs_fetch_mirror_url("http://host", "http://m:1", &e);
    CHECK_EQ_STR(u, "http://m:1/");
    free(u);
    u = cs_fetch_mirror_url("https://host/x", "ftp://m", &e);
    CHECK(u == NULL);
    CHECK_EQ_INT(e.code, CLIPSCORE_EARG);

    /* The built-in ViT-B/32 through a mirror: the request keeps the path.
     * The fake file cannot match OpenAI's hash, so nothing is cached. */
    unsetenv("CLIPSCORE_REGISTRY");
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){0});
    char mirror[128], dir[1024];
    url_of(mirror, sizeof mirror, s, "");
    setenv("CLIPSCORE_MIRROR", mirror, 1);
    const char *vpath = "/clip/models/" VITB32_SHA "/ViT-B-32.pt";
    char *path = NULL;
    int rc = cs_model_resolve("ViT-B/32", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ECHECKSUM);
    CHECK_EQ_INT(http_server_count(s, "GET", vpath), 1);
    CHECK_MSG(strstr(e.msg, mirror) && strstr(e.msg, vpath), "%s", e.msg);
    fpath(dir, sizeof dir, cache, "ViT-B-32");
    CHECK(!exists(dir, "ViT-B-32.pt"));
    CHECK(!exists(dir, "ViT-B-32.pt.part"));

    /* A registry entry overrides the built-in name (and the mirror applies
     * to registry URLs too). */
    registry("ViT-B/32", "ViT-B-32.pt", "https://models.example.invalid/model.bin", sha_model,
             "bpe_simple_vocab_16e6.txt.gz", "https://models.example.invalid/vocab.gz", sha_vocab);
    rc = cs_model_resolve("ViT-B/32", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    CHECK_EQ_STR(path, dir);
    CHECK_EQ_INT(http_server_count(s, "GET", "/model.bin"), 1);
    CHECK_EQ_INT(http_server_count(s, "GET", "/vocab.gz"), 1);
    char f[1024];
    fpath(f, sizeof f, dir, "ViT-B-32.pt");
    CHECK_EQ_STR(sha_of(f), sha_model);
    free(path);
    unsetenv("CLIPSCORE_REGISTRY");
    unsetenv("CLIPSCORE_MIRROR");
    http_server_free(s);
}

static void make_hub(void) {
    char d[1024], f[1200];
    const char *small[] = {"config.json", "vocab.json", "merges.txt", "preprocessor_config.json",
                           "README.md"};
    fpath(d, sizeof d, fx, "hub/org/clip-a");
    mkdirs(d);
    for (int i = 0; i < 5; i++) {
        fpath(f, sizeof f, d, small[i]);
        write_text(f, small[i]); /* content does not matter here */
    }
    fpath(f, sizeof f, d, "model.safetensors");
    write_random(f, MODEL_SIZE, 11);
    fpath(f, sizeof f, d, "pytorch_model.bin");
    write_random(f, 200000, 12);

    fpath(d, sizeof d, fx, "hub/org/oc-b");
    mkdirs(d);
    const char *oc[] = {"open_clip_config.json", "vocab.json", "merges.txt", "README.md"};
    for (int i = 0; i < 4; i++) {
        fpath(f, sizeof f, d, oc[i]);
        write_text(f, oc[i]);
    }
    fpath(f, sizeof f, d, "open_clip_model.safetensors");
    write_random(f, 250000, 13);

    fpath(d, sizeof d, fx, "hub/org/empty");
    mkdirs(d);
    fpath(f, sizeof f, d, "README.md");
    write_text(f, "nothing here");
}

static void test_hf(void) {
    make_hub();
    char root[1024], ep[128], want[1024], f[1024], src[1024];
    fpath(root, sizeof root, fx, "hub");
    cs_fetch_opts o;
    const char *cache = fresh_cache(&o);
    http_server *s = start((http_server_opts){.root = root, .hub = 1});
    url_of(ep, sizeof ep, s, "/"); /* a trailing slash is tolerated */
    setenv("HF_ENDPOINT", ep, 1);
    setenv("HF_TOKEN", "secret-token", 1);
    cs_error e = {0};
    char *path = NULL;

    /* transformers layout */
    int rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    fpath(want, sizeof want, cache, "hf/org--clip-a/main");
    CHECK_EQ_STR(path, want);
    const char *a_files[] = {"config.json", "model.safetensors", "vocab.json", "merges.txt",
                             "preprocessor_config.json"};
    for (int i = 0; i < 5; i++) {
        CHECK_MSG(exists(want, a_files[i]), "%s missing", a_files[i]);
        fpath(f, sizeof f, want, a_files[i]);
        fpath(src, sizeof src, root, "org/clip-a");
        char sf[1200];
        fpath(sf, sizeof sf, src, a_files[i]);
        char expect[65];
        snprintf(expect, sizeof expect, "%s", sha_of(sf));
        CHECK_EQ_STR(sha_of(f), expect);
    }
    CHECK(!exists(want, "README.md"));
    CHECK(!exists(want, "pytorch_model.bin")); /* safetensors preferred */
    CHECK_EQ_INT(count_files(want, NULL), 5);
    CHECK_EQ_INT(http_server_count(s, "GET", "/api/models/org/clip-a/revision/main"), 1);
    const char *lfs_path = "/org/clip-a/resolve/" HTTP_HUB_COMMIT "/model.safetensors";
    CHECK_EQ_INT(http_server_count(s, "GET", lfs_path), 1); /* pinned to the listed commit */
    CHECK_EQ_INT(http_server_count(s, "HEAD", NULL), 0);    /* the listing had the sha256 */
    int authed = 0, n = http_server_nrequests(s), blobs = 0;
    for (int i = 0; i < n; i++) {
        http_request rq;
        http_server_request(s, i, &rq);
        authed += strcmp(rq.auth, "Bearer secret-token") == 0;
        blobs += strcmp(rq.query, "blobs=true") == 0;
    }
    CHECK_EQ_INT(authed, n);
    CHECK_EQ_INT(blobs, 1);
    free(path);
    path = NULL;

    /* open_clip layout, at a revision */
    rc = cs_model_resolve("hf:org/oc-b@v1", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    fpath(want, sizeof want, cache, "hf/org--oc-b/v1");
    CHECK_EQ_STR(path, want);
    CHECK(exists(want, "open_clip_config.json") && exists(want, "open_clip_model.safetensors") &&
          exists(want, "vocab.json") && exists(want, "merges.txt"));
    CHECK_EQ_INT(count_files(want, NULL), 4);
    CHECK_EQ_INT(http_server_count(s, "GET", "/api/models/org/oc-b/revision/v1"), 1);
    free(path);
    path = NULL;

    /* neither layout; a missing repository; a bad name */
    rc = cs_model_resolve("hf:org/empty", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_EMODEL);
    CHECK_MSG(strstr(e.msg, "open_clip_config.json") != NULL, "%s", e.msg);
    rc = cs_model_resolve("hf:org/nothere", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ENETWORK);
    CHECK_MSG(strstr(e.msg, "404") && strstr(e.msg, "/api/models/org/nothere"), "%s", e.msg);
    CHECK_EQ_INT(cs_model_resolve("hf:noslash", &o, &path, &e), CLIPSCORE_EARG);
    CHECK_EQ_INT(cs_model_resolve("hf:a/b/c", &o, &path, &e), CLIPSCORE_EARG);
    CHECK(path == NULL);

    /* A refresh asks the hub again but downloads only what changed. */
    fpath(f, sizeof f, root, "org/clip-a/config.json");
    write_text(f, "{\"changed\": true}");
    int before_cfg =
        http_server_count(s, "GET", "/org/clip-a/resolve/" HTTP_HUB_COMMIT "/config.json");
    rc = cs_models_fetch("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "refresh: rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", "/api/models/org/clip-a/revision/main"), 2);
    CHECK_EQ_INT(http_server_count(s, "GET", lfs_path), 1);
    CHECK_EQ_INT(http_server_count(s, "GET", "/org/clip-a/resolve/" HTTP_HUB_COMMIT "/config.json"),
                 before_cfg + 1);
    fpath(want, sizeof want, cache, "hf/org--clip-a/main");
    CHECK_EQ_STR(path, want);
    fpath(f, sizeof f, want, "config.json");
    char *cfg = NULL;
    cs_read_file(f, 0, &cfg, NULL, NULL);
    CHECK_EQ_STR(cfg, "{\"changed\": true}");
    free(cfg);
    free(path);
    path = NULL;
    http_server_free(s);

    /* Cached: served with the hub gone, online and offline. */
    rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "cached hf: rc %d: %s", rc, e.msg);
    CHECK_EQ_STR(path, want);
    free(path);
    path = NULL;
    o.offline = 1;
    rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "cached hf offline: rc %d: %s", rc, e.msg);
    free(path);
    path = NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    CHECK_EQ_INT(cs_models_list(mem, &o, &e), 0);
    fclose(mem);
    CHECK_MSG(text && strstr(text, "hf:org/clip-a ") && strstr(text, "hf:org/oc-b@v1"), "%s", text);
    free(text);
    o.offline = 0;

    /* A refresh that fails before any file changed keeps the old copy. */
    fpath(f, sizeof f, root, "org/clip-a/model.safetensors");
    write_random(f, MODEL_SIZE, 21); /* a new version on the hub */
    char new_sha[65];
    snprintf(new_sha, sizeof new_sha, "%s", sha_of(f));
    s = start((http_server_opts){
        .root = root, .hub = 1, .fail_name = "model.safetensors", .fail_status = 403});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", ep, 1);
    rc = cs_models_fetch("hf:org/clip-a", &o, NULL, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ENETWORK);
    CHECK_MSG(strstr(e.msg, "HTTP 403") && strstr(e.msg, "model.safetensors"), "%s", e.msg);
    CHECK(!exists(want, "model.safetensors.part")); /* nothing arrived: no empty .part */
    o.offline = 1;
    rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "old copy after a failed refresh: rc %d: %s", rc, e.msg);
    free(path);
    path = NULL;
    o.offline = 0;
    /* One that fails after a file was replaced leaves the folder
     * incomplete rather than mixing versions. */
    fpath(f, sizeof f, root, "org/clip-a/config.json");
    write_text(f, "{\"changed\": 1234}"); /* the same size as before */
    rc = cs_models_fetch("hf:org/clip-a", &o, NULL, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ENETWORK);
    o.offline = 1;
    CHECK_EQ_INT(cs_model_resolve("hf:org/clip-a", &o, &path, &e), CLIPSCORE_EOFFLINE);
    o.offline = 0;
    http_server_free(s);
    s = start((http_server_opts){.root = root, .hub = 1});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", ep, 1);
    rc = cs_model_resolve("hf:org/clip-a", &o, &path, &e);
    CHECK_MSG(rc == 0, "completed refresh: rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", lfs_path), 1);
    fpath(f, sizeof f, want, "model.safetensors");
    CHECK_EQ_STR(sha_of(f), new_sha);
    fpath(f, sizeof f, want, "config.json");
    cfg = NULL;
    cs_read_file(f, 0, &cfg, NULL, NULL);
    CHECK_EQ_STR(cfg, "{\"changed\": 1234}");
    free(cfg);
    free(path);
    path = NULL;
    http_server_free(s);

    /* An LFS file that does not match the hub's sha256: nothing cached. */
    s = start((http_server_opts){.root = root, .hub = 1, .hub_bad_sha = "model.safetensors"});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", ep, 1);
    rc = cs_model_resolve("hf:org/clip-a@bad", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ECHECKSUM);
    CHECK_MSG(strstr(e.msg, "model.safetensors") != NULL, "%s", e.msg);
    fpath(want, sizeof want, cache, "hf/org--clip-a/bad");
    CHECK(!exists(want, "model.safetensors"));
    CHECK(!exists(want, "model.safetensors.part"));
    CHECK(!exists(want, ".clipscore-manifest.json"));
    http_server_free(s);

    /* A listing without lfs objects: the sha256 comes from X-Linked-Etag. */
    s = start((http_server_opts){.root = root, .hub = 1, .hub_no_lfs = 1});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", ep, 1);
    rc = cs_model_resolve("hf:org/clip-a@etag", &o, &path, &e);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(http_server_count(s, "HEAD", lfs_path), 1);
    free(path);
    path = NULL;
    http_server_free(s);
    s = start((http_server_opts){
        .root = root, .hub = 1, .hub_no_lfs = 1, .hub_bad_sha = "model.safetensors"});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", ep, 1);
    rc = cs_model_resolve("hf:org/clip-a@etag-bad", &o, &path, &e);
    CHECK_EQ_INT(rc, CLIPSCORE_ECHECKSUM);
    CHECK_EQ_INT(http_server_count(s, "HEAD", lfs_path), 1);
    http_server_free(s);

    /* CLIPSCORE_MIRROR applies to hub URLs as well. */
    s = start((http_server_opts){.root = root, .hub = 1});
    url_of(ep, sizeof ep, s, "");
    setenv("HF_ENDPOINT", "https://hub.example.invalid", 1);
    setenv("CLIPSCORE_MIRROR", ep, 1);
    rc = cs_model_resolve("hf:org/oc-b", &o, &path, &e);
    CHECK_MSG(rc == 0, "mirrored hub: rc %d: %s", rc, e.msg);
    CHECK_EQ_INT(http_server_count(s, "GET", "/api/models/org/oc-b/revision/main"), 1);
    free(path);
    http_server_free(s);
    unsetenv("CLIPSCORE_MIRROR");
    unsetenv("HF_ENDPOINT");
    unsetenv("HF_TOKEN");
}

int main(void) {
    alarm(300); /* a hung transfer fails the test instead of stalling CI */
    signal(SIGPIPE, SIG_IGN);
    /* Only the 127.0.0.1 servers started here are ever contacted. */
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    unsetenv("CLIPSCORE_MIRROR");
    unsetenv("CLIPSCORE_REGISTRY");
    unsetenv("CLIPSCORE_OFFLINE");
    unsetenv("HF_TOKEN");
    unsetenv("HF_ENDPOINT");

    snprintf(fx, sizeof fx, "%s", tmpdir("fetch-fixtures"));
    char f[1024], d[1024];
    fpath(f, sizeof f, fx, "model.bin");
    write_random(f, MODEL_SIZE, 1);
    snprintf(sha_model, sizeof sha_model, "%s", sha_of(f));
    fpath(f, sizeof f, fx, "vocab.gz");
    write_random(f, VOCAB_SIZE, 2);
    snprintf(sha_vocab, sizeof sha_vocab, "%s", sha_of(f));
    fpath(d, sizeof d, fx, "clip/models/" VITB32_SHA);
    mkdirs(d);
    fpath(f, sizeof f, d, "ViT-B-32.pt");
    write_random(f, 50000, 3);
    fpath(registry_path, sizeof registry_path, tmpdir("fetch-registry"), "registry.json");

    test_cache_dir_env();
    test_registry_fetch_then_cached();
    test_checksum_mismatch();
    test_resume_after_cut();
    test_server_ignores_range();
    test_not_found();
    test_transient_errors_retried();
    test_offline();
    test_concurrent();
    test_mirror();
    test_hf();
    remove_tmpdirs(test_failures > 0); /* kept for a look when something failed */
    return test_finish("test_fetch");
}
