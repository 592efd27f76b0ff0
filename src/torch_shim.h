/* torch_shim.h - the C interface to libtorch: reading pickle/TorchScript
 * weight archives, and the CLIP image and text encoders.
 *
 * The implementation (torch_shim.cpp) is the project's only C++. Every C++
 * exception is caught at this boundary and returned as a negative status
 * with a message in the cs_error. Weights are handed over one named tensor
 * at a time, under OpenAI's names (see model_files.h), and copied: the
 * caller's buffers may be released after cs_torch_model_ready().
 *
 * Threads: a model may be used by one thread at a time. */
#ifndef CLIPSCORE_TORCH_SHIM_H
#define CLIPSCORE_TORCH_SHIM_H

#include <stdint.h>

#include "clip_config.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

struct cs_error;

/* --- weight archives (torch.save zip/pickle files, TorchScript archives) --- */

typedef struct cs_archive cs_archive;

/* Reads every tensor of a torch.save'd state dict (e.g. pytorch_model.bin) or
 * of a TorchScript module (parameters and buffers, e.g. OpenAI's ViT-B-32.pt)
 * onto the CPU. The views stay valid until cs_archive_free. Each tensor is
 * checked before it is copied: its view must lie inside the bytes the file
 * really holds for its storage, may not be larger than that storage (no
 * expanded views), and all copies together may not exceed the file's size;
 * else CLIPSCORE_EFORMAT naming the tensor. */
int cs_archive_open(const char *path, cs_archive **out, struct cs_error *e);
int cs_archive_count(const cs_archive *a);
const cs_tensor *cs_archive_tensor(const cs_archive *a, int i);
/* Drops the tensor whose data starts at `data` (after it was copied into a
 * model), so loading never holds two full copies of the weights. Its view
 * must not be used afterwards. No-op when no tensor matches. */
void cs_archive_release(cs_archive *a, const void *data);
void cs_archive_free(cs_archive *a);

/* --- the CLIP model --- */

typedef struct cs_torch_model cs_torch_model;

/* device: "auto", "cpu", "cuda", "cuda:N"; precision: "auto", "fp32", "fp16", "bf16". */
int cs_torch_model_create(const cs_clip_config *cfg, const char *device, const char *precision,
                          cs_torch_model **out, struct cs_error *e);
/* Hands over one weight under its OpenAI name; shape and dtype are checked
 * against the configuration. Unknown names are ignored (returns 1). */
int cs_torch_model_set(cs_torch_model *m, const cs_tensor *t, struct cs_error *e);
/* Checks that every weight was given and moves them to the device. */
int cs_torch_model_ready(cs_torch_model *m, struct cs_error *e);
void cs_torch_model_free(cs_torch_model *m);

const char *cs_torch_model_device(const cs_torch_model *m);    /* "cpu", "cuda:0" */
const char *cs_torch_model_precision(const cs_torch_model *m); /* "fp32", "fp16", "bf16" */

/* pixels [n][3][R][R] (float32, normalised) -> out [n][D] float32 projections. */
int cs_torch_encode_images(cs_torch_model *m, const float *pixels, int n, float *out,
                           struct cs_error *e);
/* ids [n][stride] token ids, lens[i] ids used in row i (ending with the end
 * token) -> out [n][D], read at each row's first largest id (the end
 * token), as the reference's argmax does. The batch is run only as far as its longest row:
 * with causal attention nothing after a row's end token changes its result. */
int cs_torch_encode_texts(cs_torch_model *m, const int32_t *ids, const int *lens, int n, int stride,
                          float *out, struct cs_error *e);

/* --- intermediate activations, for tests (internal: not in clipscore.h) --- */

/* Called once per stage, in order, with the stage's activations as
 * contiguous float32 (shape[0] is the batch), valid only during the call. */
typedef void (*cs_torch_trace_cb)(const char *stage, const float *data, const int64_t *shape,
                                  int ndim, void *user);
/* cs_torch_encode_images through the same forward pass (an optional hook in
 * it, not a copy), calling cb after each stage: "embed" (class token,
 * patches and positions, [n][g*g+1][Wv]), "ln_pre", "block.0" ... "block.<L-1>"
 * (after each residual block), "ln_post" (class token, [n][Wv]), "proj"
 * ([n][D], what out receives). A ResNet's stages: "stem" ([n][w][R/4][R/4]),
 * "layer1" ... "layer4", "attnpool" ([n][32w], before its output
 * projection), "proj". Activations are cast to float32 on the CPU. */
int cs_torch_trace_images(cs_torch_model *m, const float *pixels, int n, float *out,
                          cs_torch_trace_cb cb, void *user, struct cs_error *e);
/* Same for cs_torch_encode_texts: "embed" (token + position embeddings,
 * [n][l][Wt], l the batch's longest row), "block.0" ..., "ln_final"
 * ([n][l][Wt]), "pooled" (each row's end-token features, [n][Wt]), "proj". */
int cs_torch_trace_texts(cs_torch_model *m, const int32_t *ids, const int *lens, int n, int stride,
                         float *out, cs_torch_trace_cb cb, void *user, struct cs_error *e);

/* Host buffers for inputs: page-locked (pinned) when the model runs on
 * CUDA, so copies to the GPU are asynchronous DMA; plain malloc otherwise.
 * Free with cs_torch_host_free. NULL when out of memory. */
void *cs_torch_host_alloc(const cs_torch_model *m, size_t bytes);
void cs_torch_host_free(void *p);

/* 1 when libtorch's BLAS runs GEMMs on a thread pool of its own (OpenBLAS,
 * as in Debian's build) rather than on libtorch's OpenMP threads (MKL). */
int cs_torch_blas_has_own_threads(void);

/* Intra-op threads used by libtorch on the CPU. */
void cs_torch_set_threads(int n);
int cs_torch_get_threads(void);
/* Number of CUDA devices libtorch can use (0 on a CPU-only build). */
int cs_torch_cuda_device_count(void);
/* libtorch version string, e.g. "1.13.0". */
const char *cs_torch_version(void);

#ifdef __cplusplus
}
#endif

#endif
