/* clip_config.h - the architecture of a CLIP model, ViT or ResNet (widths,
 * layers, heads, sizes) and its validation.
 *
 * Covers: the configuration struct the weight loader and the torch shim
 * share, the bounds every value must respect, and the check of a complete
 * configuration against them. Leaves out: where the values come from
 * (model_config.h parses config files and infers them from tensor shapes)
 * and the image preprocessing settings (image.h). No libtorch here.
 *
 * Why bounds: every buffer the model needs is a product of these values
 * (token embedding vocab x width, positions grid^2 x width, ...). With each
 * factor bounded as below the products fit in int64_t and each dimension
 * in int, so no size computation downstream can overflow. The bounds are
 * generous: the largest published CLIP ViT (bigG/14: width 1664, MLP 8192,
 * 48 layers) is far inside them. */
#ifndef CLIPSCORE_CLIP_CONFIG_H
#define CLIPSCORE_CLIP_CONFIG_H

#ifdef __cplusplus
extern "C" {
#endif

struct cs_error;

typedef struct cs_clip_config {
    int image_size;   /* input resolution R */
    int patch_size;   /* P: R/P patches per side */
    int vision_width; /* Wv */
    int vision_layers;
    int vision_heads;
    int vision_mlp;     /* hidden width of the MLP, usually 4*Wv */
    int context_length; /* T */
    int vocab_size;
    int text_width; /* Wt */
    int text_layers;
    int text_heads;
    int text_mlp;
    int embed_dim;  /* D */
    int quick_gelu; /* 1: x*sigmoid(1.702x) (OpenAI), 0: exact erf GELU */
    float ln_eps;   /* layer norm epsilon, 1e-5 */
    /* ResNet image towers (OpenAI's ModifiedResNet: RN50 ... RN50x64):
     * bottleneck blocks per stage, all 0 for a ViT. For a ResNet,
     * vision_width is the stem's output width w (the first stage's
     * bottleneck width; the last stage puts out 32w channels, the width of
     * the attention pool), vision_layers the blocks of all stages,
     * vision_heads the attention pool's heads, patch_size and vision_mlp
     * 0; the image size is a multiple of 32, the grid the pool sees. */
    int vision_stages[4];
} cs_clip_config;

#define CS_CLIP_RESNET_STAGES 4
#define CS_CLIP_RESNET_REDUCTION 32 /* image size / the attention pool's grid */

/* 1 when c describes a ResNet image tower. */
static inline int cs_clip_config_is_resnet(const cs_clip_config *c) {
    return c->vision_stages[0] > 0;
}

/* Upper bounds (inclusive); every size is at least 1. */
#define CS_CLIP_MAX_IMAGE_SIZE 4096 /* R */
#define CS_CLIP_MAX_PATCHES 65536   /* (R/P)^2: attention is quadratic in it */
#define CS_CLIP_MAX_WIDTH 16384     /* Wv, Wt, D */
#define CS_CLIP_MAX_MLP 131072      /* MLP hidden widths */
#define CS_CLIP_MAX_LAYERS 999      /* the loader reads block numbers below 1000 */
#define CS_CLIP_MAX_CONTEXT 16384   /* T */
#define CS_CLIP_MAX_VOCAB (1 << 22) /* 4M tokens */
/* Layer norm epsilon: positive and below this. */
#define CS_CLIP_MAX_LN_EPS 0.1f

/* Checks a complete configuration: every size in [1, its bound] (context
 * length at least 2: a start and an end token), patch size dividing the
 * image size, heads dividing the widths, the patch count within bounds
 * (ResNet: every stage 1 to CS_CLIP_MAX_LAYERS blocks, an even stem width
 * whose 32-fold fits CS_CLIP_MAX_WIDTH, the image size a multiple of 32),
 * quick_gelu 0 or 1, ln_eps finite in (0, CS_CLIP_MAX_LN_EPS]. Returns 0,
 * or CLIPSCORE_EMODEL with a message "<label>: <field> ..." naming the
 * first offending field (label: the model's file or folder). */
int cs_clip_config_validate(const cs_clip_config *c, const char *label, struct cs_error *e);

#ifdef __cplusplus
}
#endif

#endif
