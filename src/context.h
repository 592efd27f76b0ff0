/* context.h - the library context behind the opaque clipscore_context
 * (internal: shared by clipscore.c and pipeline.c). */
#ifndef CLIPSCORE_CONTEXT_H
#define CLIPSCORE_CONTEXT_H

#include <signal.h>

#include "clipscore.h"
#include "image.h"
#include "tokenizer.h"
#include "torch_shim.h"
#include "util.h"

struct clipscore_context {
    clipscore_params params;
    int threads;       /* cores to use (--threads or the core count) */
    int torch_threads; /* libtorch intra-op threads (see clipscore.c) */
    char *model_name;  /* as requested */
    char *model_path;  /* resolved local folder or file */
    char *layout;
    char *weights_path;
    char sha256[65]; /* of weights_path, "" until computed */
    cs_clip_config clip;
    cs_preprocess_cfg preprocess;
    cs_tokenizer *tok;
    cs_torch_model *model;
    double load_seconds;          /* resolving and loading the model */
    volatile sig_atomic_t cancel; /* set by clipscore_cancel (signal-safe) */
    cs_error err;                 /* last error */
};

/* Tokenises with the context's tokenizer and context length; ids must hold
 * clip.context_length entries. */
int cs_ctx_tokenize(clipscore_context *ctx, const char *text, int32_t *ids, int *n_ids,
                    unsigned *flags, cs_error *e);

#endif
