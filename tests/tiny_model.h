/* tiny_model.h - writes a small randomly initialised CLIP model folder for
 * tests that must run without downloaded weights: the real architecture at
 * toy sizes, a synthetic byte-level BPE vocabulary, in the Hugging Face or
 * the open_clip/OpenAI tensor layout. */
#ifndef CLIPSCORE_TINY_MODEL_H
#define CLIPSCORE_TINY_MODEL_H

#include "tensor.h"
#include "util.h"

typedef struct tiny_spec {
    int image_size, patch; /* 32, 8 */
    int vision_width, vision_layers, vision_heads;
    int text_width, text_layers, text_heads, context_length;
    int embed_dim;
    int quick_gelu;
    /* A ResNet image tower when stages[0] > 0: bottleneck blocks per stage,
     * vision_width the stem width, vision_heads the attention pool's heads
     * (patch and vision_layers unused; image_size a multiple of 32). */
    int stages[4];
} tiny_spec;

tiny_spec tiny_default_spec(void);
/* A tiny ResNet CLIP: 64 px, width 8, stages [1, 2, 1, 1], 4 heads on the
 * pool's 256 channels; the text tower of tiny_default_spec. */
tiny_spec tiny_resnet_spec(void);

/* layout: "hf" (config.json, model.safetensors, F32) or "openclip"
 * (open_clip_config.json, open_clip_model.safetensors, F16 when f16); a
 * ResNet only as "openclip" (transformers has no ResNet CLIP). Batch norms
 * get running statistics (variances in [0.5, 1.5)).
 * Writes vocab.json and merges.txt too. Same seed, same weights. */
int tiny_model_write(const char *dir, const char *layout, const tiny_spec *s, unsigned seed,
                     int f16, cs_error *e);

/* Vocabulary size of the synthetic tokenizer (bytes, their word-end forms,
 * merges, two special tokens). */
int tiny_vocab_size(void);

#endif
