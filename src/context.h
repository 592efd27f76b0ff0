/* context.h - the library context's internal interface (the struct itself
 * is private to clipscore.c).
 *
 * The rules, in one place:
 *   - Everything clipscore_init loads (model, tokenizer, configuration,
 *     paths, thread counts) is read-only afterwards; the accessors below
 *     return const views. The one value computed later, the weights'
 *     SHA-256, is computed once under a lock.
 *   - Per-call state is per call: each call works with its own cs_error,
 *     and the message of a failed public call is kept per thread
 *     (clipscore_last_error), so concurrent clipscore_tokenize calls do not
 *     share a buffer.
 *   - The cancel flag is atomic: clipscore_cancel sets it (from a signal
 *     handler or another thread); clipscore_score_csv clears it on entry
 *     and nothing else clears it.
 *   - The scorer encodes through cs_ctx_encode_* like the public encode
 *     calls; only clipscore.c talks to the torch shim. */
#ifndef CLIPSCORE_CONTEXT_H
#define CLIPSCORE_CONTEXT_H

#include <stdatomic.h>
#include <stdint.h>

#include "clip_config.h"
#include "clipscore.h"
#include "image.h"
#include "util.h"

const cs_clip_config *cs_ctx_clip(const clipscore_context *ctx);
const cs_preprocess_cfg *cs_ctx_preprocess(const clipscore_context *ctx);
int cs_ctx_threads(const clipscore_context *ctx);       /* cores to use */
int cs_ctx_torch_threads(const clipscore_context *ctx); /* libtorch intra-op threads */
int64_t cs_ctx_max_pixels(const clipscore_context *ctx);
/* The min_side of cs_image_load_scaled: 0 with exact decoding, twice the
 * model's input resolution with --decode fast. */
int cs_ctx_decode_min_side(const clipscore_context *ctx);
double cs_ctx_load_seconds(const clipscore_context *ctx);
const char *cs_ctx_torch_version(void);

/* The cancel flag (see the rules above). */
const atomic_int *cs_ctx_cancel_flag(const clipscore_context *ctx);
int cs_ctx_cancelled(const clipscore_context *ctx);
void cs_ctx_cancel_clear(clipscore_context *ctx);

/* Records a failed call's status and message as this thread's last error
 * on ctx and returns rc (for `return cs_ctx_fail(ctx, rc, &e);`). */
int cs_ctx_fail(const clipscore_context *ctx, int rc, const cs_error *e);

/* Tokenises with the model's tokenizer; ids holds context_length entries.
 * Thread-safe. */
int cs_ctx_tokenize(const clipscore_context *ctx, const char *text, int32_t *ids, int *n_ids,
                    unsigned *flags, cs_error *e);
/* pixels [n][3][R][R] -> emb [n][D] (projections, not normalised). */
int cs_ctx_encode_images(clipscore_context *ctx, const float *pixels, int n, float *emb,
                         cs_error *e);
/* ids [n][stride] with lens[i] ids in row i -> emb [n][D]. */
int cs_ctx_encode_tokens(clipscore_context *ctx, const int32_t *ids, const int *lens, int n,
                         int stride, float *emb, cs_error *e);
/* Buffers for image batches (pinned on CUDA); free with cs_ctx_host_free. */
void *cs_ctx_host_alloc(const clipscore_context *ctx, size_t bytes);
void cs_ctx_host_free(void *p);
/* The weights' SHA-256 (64 hex digits), computed once. */
int cs_ctx_weights_sha256(clipscore_context *ctx, char out[65], cs_error *e);

#endif
