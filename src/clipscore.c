/* clipscore.c - the public API's context: resolving and loading a model,
 * tokenising, preprocessing and encoding; the context's rules are in
 * context.h. The batch scorer is pipeline.c. */
#define _GNU_SOURCE
#include "clipscore.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <unistd.h>

#include "context.h"
#include "model_files.h"
#include "npy.h"
#include "sha256.h"
#include "tokenizer.h"
#include "torch_shim.h"
#ifdef CLIPSCORE_HAVE_FETCH
#include "fetch.h"
#endif

struct clipscore_context {
    clipscore_params params;
    int threads;       /* cores to use (--threads or the core count) */
    int torch_threads; /* libtorch intra-op threads (see torch_threads below) */
    char *model_name;  /* as requested */
    char *model_path;  /* resolved local folder or file */
    char *layout;
    char *weights_path;
    cs_clip_config clip;
    cs_preprocess_cfg preprocess;
    cs_tokenizer *tok;
    cs_torch_model *model;
    double load_seconds; /* resolving and loading the model */
    atomic_int cancel;   /* set by clipscore_cancel (lock-free: signal-safe) */
    pthread_mutex_t sha_mu;
    char sha256[65]; /* of weights_path, "" until computed (guarded by sha_mu) */
    /* The hash of weights_path is computed on its own thread while the
     * model loads (see start_hashing); joined under sha_mu. */
    pthread_t sha_thread;
    int sha_running;     /* sha_thread started and not joined */
    atomic_int sha_stop; /* clipscore_free: give up hashing */
    char sha_result[65]; /* the thread's result, "" when it failed */
};

/* The last failed public call's message, per thread (context.h). */
static _Thread_local struct {
    const clipscore_context *ctx;
    char msg[sizeof(((cs_error *)0)->msg)];
} last_error;

int cs_ctx_fail(const clipscore_context *ctx, int rc, const cs_error *e) {
    last_error.ctx = ctx;
    snprintf(last_error.msg, sizeof last_error.msg, "%s",
             e->msg[0] ? e->msg : clipscore_status_name(rc));
    return rc;
}

/* A public call's result: a failure is recorded for clipscore_last_error. */
static int done(const clipscore_context *ctx, int rc, const cs_error *e) {
    return rc < 0 ? cs_ctx_fail(ctx, rc, e) : rc;
}

clipscore_params clipscore_default_params(void) {
    clipscore_params p;
    memset(&p, 0, sizeof p);
    p.model = "ViT-B/32";
    p.device = "auto";
    p.precision = "auto";
    p.threads = 0;
    p.max_pixels = 100000000;
    p.offline = 0;
    p.quiet = 0;
    p.decode = CLIPSCORE_DECODE_EXACT;
    return p;
}

const char *clipscore_build_info(void) {
    static char info[256];
    if (!info[0]) {
        int cuda = cs_torch_cuda_device_count();
        snprintf(info, sizeof info,
                 "clipscore %s (libtorch %s, CUDA devices: %d, figures: %s, downloads: %s)",
                 CLIPSCORE_VERSION, cs_torch_version(), cuda,
#ifdef CLIPSCORE_HAVE_FIGURES
                 "yes",
#else
                 "no",
#endif
#ifdef CLIPSCORE_HAVE_FETCH
                 "yes"
#else
                 "no"
#endif
        );
    }
    return info;
}

const char *clipscore_status_name(int status) {
    switch (status) {
    case CLIPSCORE_OK:
        return "OK";
    case CLIPSCORE_EARG:
        return "EARG";
    case CLIPSCORE_EIO:
        return "EIO";
    case CLIPSCORE_EFORMAT:
        return "EFORMAT";
    case CLIPSCORE_EMODEL:
        return "EMODEL";
    case CLIPSCORE_EDEVICE:
        return "EDEVICE";
    case CLIPSCORE_ENOMEM:
        return "ENOMEM";
    case CLIPSCORE_ENETWORK:
        return "ENETWORK";
    case CLIPSCORE_ECHECKSUM:
        return "ECHECKSUM";
    case CLIPSCORE_EUNSUPPORTED:
        return "EUNSUPPORTED";
    case CLIPSCORE_ELIMIT:
        return "ELIMIT";
    case CLIPSCORE_EOFFLINE:
        return "EOFFLINE";
    case CLIPSCORE_EINTERNAL:
        return "EINTERNAL";
    case CLIPSCORE_ECANCELED:
        return "ECANCELED";
    default:
        return "UNKNOWN";
    }
}

/* Worker threads: the cores this process may use. */
static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) n = CPU_COUNT(&set);
#endif
    return n > 0 ? (int)n : 1;
}

/* libtorch's intra-op (OpenMP) threads. With MKL, GEMMs run on those same
 * threads: give them every core. With OpenBLAS (Debian's libtorch), GEMMs
 * run on OpenBLAS's own threads, and OpenMP's threads, which spin for a
 * while after each parallel region, then fight them for the cores: measured
 * on 2 cores, the text encoder ran at 60 GFLOP/s with 2 OpenMP threads and
 * 130 with 1 (images 110-135 against 153). So one OpenMP thread, unless
 * OMP_WAIT_POLICY=PASSIVE stops the spinning (then every core: images
 * reached 160-166 GFLOP/s). The decode workers are separate (pipeline.c). */
static int torch_threads(int cores) {
    const char *wp = getenv("OMP_WAIT_POLICY");
    int passive = wp && strcasecmp(wp, "passive") == 0;
    return cs_torch_blas_has_own_threads() && !passive ? 1 : cores;
}

static int resolve_model(clipscore_context *ctx, cs_error *e) {
    const char *spec = ctx->params.model;
#ifdef CLIPSCORE_HAVE_FETCH
    cs_fetch_opts fo = cs_fetch_default_opts();
    if (ctx->params.offline) fo.offline = 1;
    fo.progress = !ctx->params.quiet;
    return cs_model_resolve(spec, &fo, &ctx->model_path, e);
#else
    if (!cs_is_dir(spec) && !cs_file_exists(spec))
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "--model %s: no such folder or file (this build cannot download models: "
                       "it was configured with CLIPSCORE_FETCH=OFF)",
                       spec);
    ctx->model_path = cs_strdup(spec, e);
    return ctx->model_path ? 0 : CLIPSCORE_ENOMEM;
#endif
}

/* Where hashes of weight files are remembered between runs (the model
 * cache folder), NULL when there is none. Caller frees. */
static char *sha256_memo_path(void) {
#ifdef CLIPSCORE_HAVE_FETCH
    cs_error e;
    char *dir = NULL;
    cs_fetch_opts fo = cs_fetch_default_opts();
    if (cs_fetch_cache_dir(&fo, &dir, &e) != 0) return NULL;
    char *p = cs_mkdir_p(dir, &e) == 0 ? cs_path_join(dir, "weights-sha256.txt", &e) : NULL;
    free(dir);
    return p;
#else
    return NULL;
#endif
}

static void *hash_weights(void *arg) {
    clipscore_context *ctx = arg;
    cs_error e;
    char *memo = sha256_memo_path();
    if (cs_sha256_file_memo(ctx->weights_path, memo, &ctx->sha_stop, ctx->sha_result, &e) != 0)
        ctx->sha_result[0] = '\0'; /* cs_ctx_weights_sha256 retries, for the message */
    free(memo);
    return NULL;
}

/* run.json records the weight file's SHA-256. Hashed after the load, a
 * first run (before the memo knows the file) paid 0.55 CPU-s more for a
 * 605 MB file even with libcrypto; hashed beside the load, on a core the
 * loader leaves idle (copying tensors is one thread), it adds no wall time
 * where a core is free (on a saturated machine its CPU time still counts),
 * and the file's pages are in the cache for whichever of the two reads
 * second. */
static void start_hashing(clipscore_context *ctx) {
    ctx->sha_running = pthread_create(&ctx->sha_thread, NULL, hash_weights, ctx) == 0;
}

static int load_model(clipscore_context *ctx, cs_error *e) {
    cs_model_files mf;
    int rc = cs_model_files_open(ctx->model_path, &mf, e);
    if (rc) return rc;
    ctx->clip = mf.clip;
    ctx->preprocess = mf.preprocess;
    if (!(ctx->layout = cs_strdup(mf.layout, e)) ||
        !(ctx->weights_path = cs_strdup(mf.weights_path, e))) {
        cs_model_files_close(&mf);
        return CLIPSCORE_ENOMEM;
    }
    start_hashing(ctx);
    if (mf.vocab_path)
        rc = cs_tokenizer_load_hf(mf.vocab_path, mf.merges_path, &ctx->tok, e);
    else
        rc = cs_tokenizer_load_bpe_gz(mf.bpe_gz_path, &ctx->tok, e);
    if (!rc && cs_tokenizer_vocab_size(ctx->tok) > mf.clip.vocab_size)
        rc = cs_fail(e, CLIPSCORE_EMODEL, "%s: the tokenizer has %d tokens but the model only %d",
                     mf.dir, cs_tokenizer_vocab_size(ctx->tok), mf.clip.vocab_size);
    if (!rc)
        rc = cs_torch_model_create(&mf.clip, ctx->params.device, ctx->params.precision, &ctx->model,
                                   e);
    for (int i = 0; !rc && i < mf.n; i++) {
        rc = cs_torch_model_set(ctx->model, &mf.weights[i], e);
        if (rc > 0) rc = 0; /* a tensor the model does not use (logit_scale, ...) */
        cs_model_files_release(&mf, i);
    }
    if (!rc) rc = cs_torch_model_ready(ctx->model, e);
    if (rc) cs_fail_prefix(e, "model %s", mf.dir);
    cs_model_files_close(&mf);
    return rc;
}

clipscore_context *clipscore_init(const clipscore_params *params, char *err, size_t err_len) {
    cs_error e;
    cs_error_clear(&e);
    clipscore_context *ctx = cs_calloc(1, sizeof *ctx, &e);
    int rc = ctx ? 0 : CLIPSCORE_ENOMEM;
    if (ctx) {
        pthread_mutex_init(&ctx->sha_mu, NULL);
        atomic_init(&ctx->cancel, 0);
        atomic_init(&ctx->sha_stop, 0);
        ctx->params = params ? *params : clipscore_default_params();
        if (!ctx->params.model || !*ctx->params.model) ctx->params.model = "ViT-B/32";
        const char *off = getenv("CLIPSCORE_OFFLINE");
        if (off && *off && strcmp(off, "0") != 0) ctx->params.offline = 1;
        if (ctx->params.max_pixels <= 0) ctx->params.max_pixels = 100000000;
        if (ctx->params.decode != CLIPSCORE_DECODE_EXACT &&
            ctx->params.decode != CLIPSCORE_DECODE_FAST)
            rc = cs_fail(&e, CLIPSCORE_EARG, "decode mode %d: not CLIPSCORE_DECODE_EXACT or _FAST",
                         (int)ctx->params.decode);
        ctx->threads = ctx->params.threads > 0 ? ctx->params.threads : default_threads();
        /* Copy the strings the context keeps so callers may free theirs. */
        ctx->model_name = rc ? NULL : cs_strdup(ctx->params.model, &e);
        if (!rc && !ctx->model_name) rc = CLIPSCORE_ENOMEM;
        ctx->params.model = ctx->model_name;
    }
    double t0 = cs_now();
    if (!rc) rc = resolve_model(ctx, &e);
    if (!rc) cs_torch_set_threads(ctx->torch_threads = torch_threads(ctx->threads));
    if (!rc) rc = load_model(ctx, &e);
    if (rc) {
        if (err && err_len)
            cs_copy_elided(err, err_len, e.msg[0] ? e.msg : clipscore_status_name(rc));
        clipscore_free(ctx);
        return NULL;
    }
    ctx->load_seconds = cs_now() - t0;
    ctx->params.device = cs_torch_model_device(ctx->model);
    ctx->params.precision = cs_torch_model_precision(ctx->model);
    return ctx;
}

void clipscore_free(clipscore_context *ctx) {
    if (!ctx) return;
    if (ctx->sha_running) {
        atomic_store(&ctx->sha_stop, 1);
        pthread_join(ctx->sha_thread, NULL);
    }
    cs_torch_model_free(ctx->model);
    cs_tokenizer_free(ctx->tok);
    free(ctx->model_name);
    free(ctx->model_path);
    free(ctx->layout);
    free(ctx->weights_path);
    pthread_mutex_destroy(&ctx->sha_mu);
    free(ctx);
}

void clipscore_cancel(clipscore_context *ctx) {
    if (ctx) atomic_store(&ctx->cancel, 1);
}

const char *clipscore_last_error(const clipscore_context *ctx) {
    if (!ctx) return "no context";
    return last_error.ctx == ctx ? last_error.msg : "";
}

/* ---- the internal interface (context.h) ---- */

const cs_clip_config *cs_ctx_clip(const clipscore_context *ctx) {
    return &ctx->clip;
}
const cs_preprocess_cfg *cs_ctx_preprocess(const clipscore_context *ctx) {
    return &ctx->preprocess;
}
int cs_ctx_threads(const clipscore_context *ctx) {
    return ctx->threads;
}
int cs_ctx_torch_threads(const clipscore_context *ctx) {
    return ctx->torch_threads;
}
int64_t cs_ctx_max_pixels(const clipscore_context *ctx) {
    return ctx->params.max_pixels;
}
int cs_ctx_decode_min_side(const clipscore_context *ctx) {
    return ctx->params.decode == CLIPSCORE_DECODE_FAST ? 2 * ctx->preprocess.size : 0;
}
double cs_ctx_load_seconds(const clipscore_context *ctx) {
    return ctx->load_seconds;
}
const char *cs_ctx_torch_version(void) {
    return cs_torch_version();
}
const atomic_int *cs_ctx_cancel_flag(const clipscore_context *ctx) {
    return &ctx->cancel;
}
int cs_ctx_cancelled(const clipscore_context *ctx) {
    return atomic_load(&ctx->cancel) != 0;
}
void cs_ctx_cancel_clear(clipscore_context *ctx) {
    atomic_store(&ctx->cancel, 0);
}
void *cs_ctx_host_alloc(const clipscore_context *ctx, size_t bytes) {
    return cs_torch_host_alloc(ctx->model, bytes);
}
void cs_ctx_host_free(void *p) {
    cs_torch_host_free(p);
}
int cs_ctx_encode_images(clipscore_context *ctx, const float *pixels, int n, float *emb,
                         cs_error *e) {
    return cs_torch_encode_images(ctx->model, pixels, n, emb, e);
}
int cs_ctx_encode_tokens(clipscore_context *ctx, const int32_t *ids, const int *lens, int n,
                         int stride, float *emb, cs_error *e) {
    return cs_torch_encode_texts(ctx->model, ids, lens, n, stride, emb, e);
}

int clipscore_get_model_info(const clipscore_context *ctx, clipscore_model_info *info) {
    memset(info, 0, sizeof *info);
    info->name = ctx->model_name;
    info->path = ctx->model_path;
    info->layout = ctx->layout;
    info->weights_file = ctx->weights_path;
    info->device = cs_torch_model_device(ctx->model);
    info->precision = cs_torch_model_precision(ctx->model);
    info->image_size = ctx->clip.image_size;
    info->embed_dim = ctx->clip.embed_dim;
    info->context_length = ctx->clip.context_length;
    info->vision_width = ctx->clip.vision_width;
    info->vision_layers = ctx->clip.vision_layers;
    info->vision_heads = ctx->clip.vision_heads;
    info->patch_size = ctx->clip.patch_size;
    info->text_width = ctx->clip.text_width;
    info->text_layers = ctx->clip.text_layers;
    info->text_heads = ctx->clip.text_heads;
    info->vocab_size = ctx->clip.vocab_size;
    info->quick_gelu = ctx->clip.quick_gelu;
    return 0;
}

int clipscore_get_vision_stages(const clipscore_context *ctx, int stages[4]) {
    memcpy(stages, ctx->clip.vision_stages, sizeof ctx->clip.vision_stages);
    return cs_clip_config_is_resnet(&ctx->clip) ? CS_CLIP_RESNET_STAGES : 0;
}

int cs_ctx_weights_sha256(clipscore_context *ctx, char out[65], cs_error *e) {
    int rc = 0;
    pthread_mutex_lock(&ctx->sha_mu);
    if (ctx->sha_running) {
        pthread_join(ctx->sha_thread, NULL);
        ctx->sha_running = 0;
        memcpy(ctx->sha256, ctx->sha_result, sizeof ctx->sha256);
    }
    if (!ctx->sha256[0]) {
        char *memo = sha256_memo_path();
        rc = cs_sha256_file_memo(ctx->weights_path, memo, NULL, ctx->sha256, e);
        free(memo);
        if (rc) ctx->sha256[0] = '\0';
    }
    if (!rc) memcpy(out, ctx->sha256, 65);
    pthread_mutex_unlock(&ctx->sha_mu);
    return rc;
}

int clipscore_weights_sha256(clipscore_context *ctx, char out[65]) {
    cs_error e;
    cs_error_clear(&e);
    return done(ctx, cs_ctx_weights_sha256(ctx, out, &e), &e);
}

int cs_ctx_tokenize(const clipscore_context *ctx, const char *text, int32_t *ids, int *n_ids,
                    unsigned *flags, cs_error *e) {
    return cs_tokenizer_encode(ctx->tok, text, ctx->clip.context_length, ids, n_ids, flags, e);
}

int clipscore_tokenize(clipscore_context *ctx, const char *text, int32_t *ids, int max_ids,
                       int *n_ids, unsigned *flags) {
    cs_error e;
    cs_error_clear(&e);
    int ctxlen = ctx->clip.context_length;
    int32_t *buf = cs_malloc((size_t)ctxlen, sizeof *buf, &e);
    if (!buf) return done(ctx, CLIPSCORE_ENOMEM, &e);
    int n = 0;
    int rc = cs_ctx_tokenize(ctx, text, buf, &n, flags, &e);
    if (!rc) {
        if (n > max_ids)
            rc = cs_fail(&e, CLIPSCORE_EARG, "%d ids do not fit in %d", n, max_ids);
        else
            memcpy(ids, buf, (size_t)n * sizeof *ids);
        *n_ids = n;
    }
    free(buf);
    return done(ctx, rc, &e);
}

int clipscore_preprocess_image(clipscore_context *ctx, const char *path, float *pixels) {
    cs_error e;
    cs_error_clear(&e);
    cs_image img;
    int rc = cs_image_load_scaled(path, ctx->params.max_pixels, NULL, cs_ctx_decode_min_side(ctx),
                                  &img, &e);
    if (rc) return done(ctx, rc, &e);
    rc = cs_image_preprocess(&img, &ctx->preprocess, pixels, &e);
    cs_image_free(&img);
    return done(ctx, rc, &e);
}

int clipscore_encode_images(clipscore_context *ctx, const float *pixels, int n, float *emb) {
    cs_error e;
    cs_error_clear(&e);
    return done(ctx, cs_ctx_encode_images(ctx, pixels, n, emb, &e), &e);
}

int clipscore_encode_texts(clipscore_context *ctx, const char *const *texts, int n, float *emb,
                           unsigned *flags) {
    cs_error e;
    cs_error_clear(&e);
    int ctxlen = ctx->clip.context_length;
    int32_t *ids = cs_malloc((size_t)n * (size_t)ctxlen, sizeof *ids, &e);
    int *lens = cs_malloc((size_t)n, sizeof *lens, &e);
    int rc = ids && lens ? 0 : CLIPSCORE_ENOMEM;
    for (int i = 0; !rc && i < n; i++) {
        unsigned f = 0;
        rc = cs_ctx_tokenize(ctx, texts[i], ids + (size_t)i * ctxlen, &lens[i], &f, &e);
        if (flags) flags[i] = f;
    }
    if (!rc) rc = cs_ctx_encode_tokens(ctx, ids, lens, n, ctxlen, emb, &e);
    free(ids);
    free(lens);
    return done(ctx, rc, &e);
}

/* ---- model names and the cache, for callers without a context ---- */

static int fail_out(char *err, size_t err_len, const cs_error *e, int rc) {
    if (err && err_len)
        cs_copy_elided(err, err_len, e->msg[0] ? e->msg : clipscore_status_name(rc));
    return rc;
}

#ifdef CLIPSCORE_HAVE_FETCH
static cs_fetch_opts fetch_opts(const clipscore_params *p) {
    cs_fetch_opts fo = cs_fetch_default_opts();
    clipscore_params d = clipscore_default_params();
    if (!p) p = &d;
    if (p->offline) fo.offline = 1;
    fo.progress = !p->quiet;
    return fo;
}
#endif

int clipscore_models_list(FILE *out, const clipscore_params *params, char *err, size_t err_len) {
    cs_error e;
    cs_error_clear(&e);
#ifdef CLIPSCORE_HAVE_FETCH
    cs_fetch_opts fo = fetch_opts(params);
    int rc = cs_models_list(out, &fo, &e);
#else
    (void)out;
    (void)params;
    int rc = cs_fail(&e, CLIPSCORE_EUNSUPPORTED,
                     "this build has no model downloads (CLIPSCORE_FETCH=OFF)");
#endif
    return rc ? fail_out(err, err_len, &e, rc) : 0;
}

int clipscore_models_fetch(const char *name, const clipscore_params *params, char *path,
                           size_t path_len, char *err, size_t err_len) {
    cs_error e;
    cs_error_clear(&e);
#ifdef CLIPSCORE_HAVE_FETCH
    cs_fetch_opts fo = fetch_opts(params);
    char *where = NULL;
    int rc = cs_models_fetch(name, &fo, &where, &e);
    if (!rc && path && path_len) {
        if (strlen(where) >= path_len)
            rc = cs_fail(&e, CLIPSCORE_EARG, "the path of %s does not fit in %zu bytes", name,
                         path_len);
        else
            memcpy(path, where, strlen(where) + 1);
    }
    free(where);
#else
    (void)name;
    (void)params;
    (void)path;
    (void)path_len;
    int rc = cs_fail(&e, CLIPSCORE_EUNSUPPORTED,
                     "this build has no model downloads (CLIPSCORE_FETCH=OFF)");
#endif
    return rc ? fail_out(err, err_len, &e, rc) : 0;
}

int clipscore_write_npy(const char *path, const float *data, int ndim, const int64_t *shape,
                        char *err, size_t err_len) {
    cs_error e;
    cs_error_clear(&e);
    int rc = cs_npy_write_f32(path, data, ndim, shape, &e);
    return rc ? fail_out(err, err_len, &e, rc) : 0;
}
