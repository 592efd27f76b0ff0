/* fuzz_model_config.c - fuzzes the model configuration parser and the
 * checks against the weights' shapes (model_config.h).
 *
 * Input: byte 0 picks the kinds of up to two config files and the weights'
 * shapes; the rest is the first file's text, up to a NUL byte, then the
 * second file's (parsed into the same configuration, as config.json and
 * preprocessor_config.json are). The parsed configuration is then resolved
 * against the shapes of a tiny ViT or of ViT-B/32 (shapes only, no data).
 *
 * Invariants: a failure says why (negative status, message); a resolved
 * configuration passes cs_clip_config_validate and its preprocessing is
 * finite and in the documented bounds, at the model's resolution. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_common.h"
#include "model_config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 0;
}

/* The tensors clipscore's inference reads, under OpenAI's names. */
typedef struct vit_shapes {
    int image, patch, vwidth, vlayers, twidth, tlayers, context, vocab, embed;
} vit_shapes;

static const vit_shapes shapes[2] = {
    {32, 8, 64, 2, 64, 2, 16, 537, 32},          /* the tests' tiny model (tiny_model.c) */
    {224, 32, 768, 12, 512, 12, 77, 49408, 512}, /* ViT-B/32 */
};

enum { MAX_TENSORS = 6 + 2 * 12 };
static char names[MAX_TENSORS][64];

static int tensor(cs_tensor *t, int i, const char *name, int ndim, int64_t a, int64_t b, int64_t c,
                  int64_t d) {
    memset(&t[i], 0, sizeof t[i]);
    snprintf(names[i], sizeof names[i], "%s", name);
    t[i].name = names[i];
    t[i].dtype = CS_DTYPE_F32;
    t[i].ndim = ndim;
    int64_t s[4] = {a, b, c, d};
    for (int k = 0; k < ndim; k++) t[i].shape[k] = s[k];
    return i + 1;
}

static int make_tensors(const vit_shapes *v, cs_tensor *t) {
    int n = 0, grid = v->image / v->patch;
    char name[64];
    n = tensor(t, n, "visual.conv1.weight", 4, v->vwidth, 3, v->patch, v->patch);
    n = tensor(t, n, "visual.positional_embedding", 2, grid * grid + 1, v->vwidth, 0, 0);
    n = tensor(t, n, "text_projection", 2, v->twidth, v->embed, 0, 0);
    n = tensor(t, n, "positional_embedding", 2, v->context, v->twidth, 0, 0);
    n = tensor(t, n, "token_embedding.weight", 2, v->vocab, v->twidth, 0, 0);
    n = tensor(t, n, "ln_final.weight", 1, v->twidth, 0, 0, 0);
    for (int i = 0; i < v->vlayers; i++) {
        snprintf(name, sizeof name, "visual.transformer.resblocks.%d.mlp.c_fc.weight", i);
        n = tensor(t, n, name, 2, 4 * v->vwidth, v->vwidth, 0, 0);
    }
    for (int i = 0; i < v->tlayers; i++) {
        snprintf(name, sizeof name, "transformer.resblocks.%d.mlp.c_fc.weight", i);
        n = tensor(t, n, name, 2, 4 * v->twidth, v->twidth, 0, 0);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const unsigned sel = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    const char *nul = memchr(text, '\0', len);
    size_t len1 = nul ? (size_t)(nul - text) : len;

    cs_model_config cfg;
    cs_model_config_init(&cfg);
    cs_error e = {0};
    int rc = cs_model_config_parse_json(text, len1, "first.json",
                                        (cs_model_config_kind)(sel % CS_CONFIG_KINDS), &cfg, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        return 0;
    }
    if (nul) {
        cs_error_clear(&e);
        rc =
            cs_model_config_parse_json(nul + 1, len - len1 - 1, "second.json",
                                       (cs_model_config_kind)(sel / 3 % CS_CONFIG_KINDS), &cfg, &e);
        if (rc) {
            FUZZ_CHECK_ERROR(rc, e);
            return 0;
        }
    }

    cs_tensor t[MAX_TENSORS];
    int n = make_tensors(&shapes[(sel >> 7) & 1], t);
    cs_clip_config clip;
    cs_preprocess_cfg pp = cs_preprocess_default();
    cs_error_clear(&e);
    rc = cs_model_config_resolve(&cfg, t, n, "weights", &clip, &pp, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        return 0;
    }
    cs_error ve = {0};
    FUZZ_CHECK(cs_clip_config_validate(&clip, "resolved", &ve) == 0, "resolved but invalid: %s",
               ve.msg);
    FUZZ_CHECK(pp.size == clip.image_size, "preprocessing at %d for a %d model", pp.size,
               clip.image_size);
    for (int c = 0; c < 3; c++) {
        FUZZ_CHECK(isfinite(pp.mean[c]) && pp.mean[c] >= CS_PP_MIN_MEAN &&
                       pp.mean[c] <= CS_PP_MAX_MEAN,
                   "mean[%d] = %g", c, (double)pp.mean[c]);
        FUZZ_CHECK(isfinite(pp.std[c]) && pp.std[c] >= (float)CS_PP_MIN_STD &&
                       pp.std[c] <= CS_PP_MAX_STD,
                   "std[%d] = %g", c, (double)pp.std[c]);
    }
    return 0;
}
