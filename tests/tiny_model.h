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
} tiny_spec;

tiny_spec tiny_default_spec(void);

/* layout: "hf" (config.json, model.safetensors, F32) or "openclip"
 * (open_clip_config.json, open_clip_model.safetensors, F16 when f16).
 * Writes vocab.json and merges.txt too. Same seed, same weights. */
int tiny_model_write(const char *dir, const char *layout, const tiny_spec *s, unsigned seed,
                     int f16, cs_error *e);

/* Vocabulary size of the synthetic tokenizer (bytes, their word-end forms,
 * merges, two special tokens). */
int tiny_vocab_size(void);

#endif
