/* model_files.h - finding and reading a CLIP model on disk.
 *
 * Covers the four layouts users download (see README "Model formats"):
 *   hf-safetensors   config.json + model.safetensors (+ preprocessor_config.json)
 *   hf-bin           config.json + pytorch_model.bin
 *   openclip         open_clip_config.json + open_clip_model.safetensors
 *                    (or open_clip_pytorch_model.bin)
 *   openai-jit       a TorchScript archive such as ViT-B-32.pt
 * with the tokenizer beside the weights (vocab.json + merges.txt, or
 * bpe_simple_vocab_16e6.txt.gz). The architecture is inferred from the
 * tensor shapes and checked against the config files, which add what shapes
 * cannot tell (heads, activation, epsilon, preprocessing); see
 * model_config.h. Weights are presented under
 * OpenAI's names (visual.conv1.weight, transformer.resblocks.0.attn.in_proj_weight,
 * ...): Hugging Face's separate q/k/v projections are stacked and its
 * projection matrices transposed. */
#ifndef CLIPSCORE_MODEL_FILES_H
#define CLIPSCORE_MODEL_FILES_H

#include "image.h"
#include "safetensors.h"
#include "tensor.h"
#include "torch_shim.h"
#include "util.h"

typedef struct cs_model_files {
    char *path;         /* as given */
    char *dir;          /* folder holding the files */
    const char *layout; /* "hf-safetensors", "hf-bin", "openclip", "openai-jit" (static) */
    char *weights_path; /* the weight file */
    char *config_path;  /* config.json / open_clip_config.json, NULL when none */
    char *vocab_path;   /* vocab.json, NULL for the .gz layout */
    char *merges_path;  /* merges.txt, NULL for the .gz layout */
    char *bpe_gz_path;  /* bpe_simple_vocab_16e6.txt.gz, NULL for the json layout */

    cs_clip_config clip;          /* architecture */
    cs_preprocess_cfg preprocess; /* resolution, mean, std */

    int n;              /* weights under OpenAI names */
    cs_tensor *weights; /* views into the sources below or into owned buffers */

    /* owned */
    cs_safetensors st;
    cs_archive *archive;
    int n_owned;
    void **owned; /* stacked q/k/v, transposed projections, names */
} cs_model_files;

/* Opens a model folder or weight file, reads its configuration and weights.
 * Errors name the folder and what is missing or wrong. */
int cs_model_files_open(const char *path, cs_model_files *mf, cs_error *e);
/* Gives back the memory behind weight i once the model has its own copy:
 * mapped safetensors pages are dropped (MADV_DONTNEED), archive tensors
 * freed. The view must not be read afterwards. */
void cs_model_files_release(cs_model_files *mf, int i);
/* Releases everything; safe on a zeroed struct. */
void cs_model_files_close(cs_model_files *mf);

#endif
