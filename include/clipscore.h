/* clipscore.h - public C API of clipscore: CLIP similarity of image/caption
 * pairs, on libtorch (CPU or CUDA).
 *
 * Typical use:
 *
 *     clipscore_params p = clipscore_default_params();
 *     p.model = "ViT-B/32";              // a known name, hf:ORG/NAME or a path
 *     char err[1024];
 *     clipscore_context *ctx = clipscore_init(&p, err, sizeof err);
 *     if (!ctx) { fprintf(stderr, "%s\n", err); ... }
 *
 *     clipscore_score_params sp = clipscore_default_score_params();
 *     sp.input_csv = "input.csv";
 *     clipscore_score_summary sum;
 *     int rc = clipscore_score_csv(ctx, &sp, &sum);   // output.csv, figures
 *     if (rc < 0) fprintf(stderr, "%s\n", clipscore_last_error(ctx));
 *     clipscore_free(ctx);
 *
 * Errors: every function returning int returns CLIPSCORE_OK (0) or a negative
 * clipscore_status; the message is then in clipscore_last_error(ctx), which,
 * like errno, is kept per thread. Functions without a context write their
 * message into a buffer the caller passes. Nothing in the library exits the
 * process or prints to stdout (except clipscore_models_list, to its FILE).
 *
 * Threads: the model a context holds is read-only once clipscore_init has
 * returned. clipscore_tokenize, clipscore_preprocess_image,
 * clipscore_get_model_info and clipscore_weights_sha256 may be called from
 * several threads at once on one context; the encode and score calls from
 * one thread at a time (the scorer runs its own worker threads inside).
 * clipscore_cancel may be called from anywhere, a signal handler included. */
#ifndef CLIPSCORE_H
#define CLIPSCORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(CLIPSCORE_SHARED)
#define CLIPSCORE_API __declspec(dllexport)
#elif defined(__GNUC__)
#define CLIPSCORE_API __attribute__((visibility("default")))
#else
#define CLIPSCORE_API
#endif

#define CLIPSCORE_VERSION "0.1.0"

typedef enum clipscore_status {
    CLIPSCORE_OK = 0,
    CLIPSCORE_EARG = -1,         /* invalid argument or option */
    CLIPSCORE_EIO = -2,          /* file could not be read or written */
    CLIPSCORE_EFORMAT = -3,      /* malformed input (CSV, image, model file) */
    CLIPSCORE_EMODEL = -4,       /* model files missing, inconsistent or unsupported */
    CLIPSCORE_EDEVICE = -5,      /* device unavailable (e.g. CUDA on a CPU build) */
    CLIPSCORE_ENOMEM = -6,       /* out of memory */
    CLIPSCORE_ENETWORK = -7,     /* download failed */
    CLIPSCORE_ECHECKSUM = -8,    /* downloaded data does not match its SHA-256 */
    CLIPSCORE_EUNSUPPORTED = -9, /* valid but unsupported (e.g. TIFF image) */
    CLIPSCORE_ELIMIT = -10,      /* input over a configured limit (pixels, size) */
    CLIPSCORE_EOFFLINE = -11,    /* needs the network but offline mode is on */
    CLIPSCORE_EINTERNAL = -12,   /* a bug: please report it */
    CLIPSCORE_ECANCELED = -13    /* stopped by clipscore_cancel() */
} clipscore_status;

typedef struct clipscore_context clipscore_context;

/* One line describing this build: version, libtorch version, CUDA devices
 * visible, optional features (figures, downloads). Static storage. */
CLIPSCORE_API const char *clipscore_build_info(void);

/* How JPEGs are decoded (clipscore_params.decode). */
typedef enum clipscore_decode {
    CLIPSCORE_DECODE_EXACT = 0, /* whole, as the reference (Pillow) does: identical pixels */
    CLIPSCORE_DECODE_FAST = 1   /* a JPEG whose shorter side is at least 4x the model's
                                   input is decoded at 1/2, 1/4 or 1/8 by libjpeg's DCT
                                   scaling (keeping that side >= 2x the input), then resized
                                   as usual: several times faster on photos, embeddings
                                   within a cosine of about 0.998 of the exact ones */
} clipscore_decode;

typedef struct clipscore_params {
    const char *model;  /* "ViT-B/32" (default), other known name, hf:ORG/NAME[@REV],
                           registry name, or a local model folder / file */
    const char *device; /* "auto" (default: cuda if available, else cpu), "cpu", "cuda", "cuda:N" */
    const char *precision; /* "auto" (default: fp32 on CPU, fp16 on CUDA), "fp32", "fp16", "bf16" */
    int threads;           /* worker threads; 0 (default): from the core count */
    int64_t max_pixels;    /* images with more pixels are refused; default 100,000,000 */
    int offline; /* 1: never use the network (default 0; CLIPSCORE_OFFLINE=1 also sets it) */
    int quiet;   /* 1: no progress output on stderr (default 0) */
    clipscore_decode decode; /* CLIPSCORE_DECODE_EXACT (default) or _FAST; applies to
                                clipscore_preprocess_image and clipscore_score_csv */
} clipscore_params;

CLIPSCORE_API clipscore_params clipscore_default_params(void);

/* Loads the model (fetching it first when it is a known name not yet cached).
 * Returns NULL on failure with a message in err (if err is not NULL). */
CLIPSCORE_API clipscore_context *clipscore_init(const clipscore_params *params, char *err,
                                                size_t err_len);
CLIPSCORE_API void clipscore_free(clipscore_context *ctx);
/* The message of the last call on ctx that failed in this thread ("" when
 * none did). Valid until this thread's next failing call. */
CLIPSCORE_API const char *clipscore_last_error(const clipscore_context *ctx);
/* Short name of a status code, e.g. "EFORMAT". */
CLIPSCORE_API const char *clipscore_status_name(int status);

typedef struct clipscore_model_info {
    const char *name;         /* as requested, e.g. "ViT-B/32" */
    const char *path;         /* resolved local folder or file */
    const char *layout;       /* "hf-safetensors", "hf-bin", "openclip-safetensors", "openai-jit" */
    const char *weights_file; /* the weight file that was loaded */
    const char *device;       /* e.g. "cpu", "cuda:0" */
    const char *precision;    /* "fp32", "fp16", "bf16" */
    int image_size;           /* input resolution in pixels */
    int embed_dim;            /* embedding width */
    int context_length;       /* text tokens, start and end included */
    /* A ResNet image tower (clipscore_get_vision_stages says which) has
     * patch_size 0, vision_width its stem width, vision_layers the blocks
     * of all stages and vision_heads the attention pool's heads. */
    int vision_width, vision_layers, vision_heads, patch_size;
    int text_width, text_layers, text_heads, vocab_size;
    int quick_gelu; /* 1: x*sigmoid(1.702x), 0: exact GELU */
} clipscore_model_info;

/* Fills info; the strings stay valid until clipscore_free(ctx). */
CLIPSCORE_API int clipscore_get_model_info(const clipscore_context *ctx,
                                           clipscore_model_info *info);
/* A ResNet image tower's bottleneck blocks per stage (RN50: 3, 4, 6, 3)
 * into stages[4]; returns 4 for a ResNet, 0 for a ViT (stages all 0). */
CLIPSCORE_API int clipscore_get_vision_stages(const clipscore_context *ctx, int stages[4]);
/* SHA-256 (64 hex digits) of the weight file, computed on first call. */
CLIPSCORE_API int clipscore_weights_sha256(clipscore_context *ctx, char out[65]);

/* Token flags reported by clipscore_tokenize. */
#define CLIPSCORE_TOKEN_TRUNCATED 1u    /* text was cut to the context length */
#define CLIPSCORE_TOKEN_INVALID_UTF8 2u /* invalid UTF-8 bytes were replaced by U+FFFD */

/* Tokenises text exactly as CLIP's reference tokenizer does: start token,
 * BPE ids, end token, truncated to the context length with the end token
 * last. Writes up to max_ids ids and their count; flags may be NULL. */
CLIPSCORE_API int clipscore_tokenize(clipscore_context *ctx, const char *text, int32_t *ids,
                                     int max_ids, int *n_ids, unsigned *flags);

/* Decodes an image file and preprocesses it as CLIP does (bicubic resize of
 * the shorter side, centre crop, normalisation) into pixels[3][R][R],
 * R = info.image_size. */
CLIPSCORE_API int clipscore_preprocess_image(clipscore_context *ctx, const char *path,
                                             float *pixels);

/* Image embeddings (projections, not normalised): pixels [n][3][R][R] -> emb [n][D]. */
CLIPSCORE_API int clipscore_encode_images(clipscore_context *ctx, const float *pixels, int n,
                                          float *emb);
/* Text embeddings (projections, not normalised): n UTF-8 strings -> emb [n][D].
 * flags (may be NULL) receives the token flags of each text. */
CLIPSCORE_API int clipscore_encode_texts(clipscore_context *ctx, const char *const *texts, int n,
                                         float *emb, unsigned *flags);

typedef enum clipscore_metric {
    CLIPSCORE_METRIC_COSINE = 0,   /* similarity column only */
    CLIPSCORE_METRIC_CLIPSCORE = 1 /* also clipscore = 2.5 * max(cosine, 0) */
} clipscore_metric;

typedef struct clipscore_score_params {
    const char *input_csv;    /* required; "-" reads standard input */
    const char *output_dir;   /* NULL (default): the input's folder; for "-", a pipe or a
                                 device (/dev/stdin, <(...)): the current folder */
    const char *image_column; /* NULL: detect (image, image_path, filepath, file, path, url, ...) */
    const char *caption_column;   /* NULL: detect (caption, text, title, ...) */
    const char *image_root;       /* NULL: relative image paths resolve against the CSV's folder
                                     (the current folder for "-", pipes and devices) */
    const char *caption_template; /* "{}" (default); "{}" is replaced by the caption */
    clipscore_metric metric;      /* default CLIPSCORE_METRIC_COSINE */
    int batch_size;               /* pairs per encoder batch; default 32 */
    const char *save_embeddings;  /* folder for image_/text_embeddings.npy, NULL: none */
    int figures;                  /* 1 (default): write the two JPEG figures */
    int figure_limit;             /* pairs shown in the figures; default 64 */
    int progress;                 /* 1 (default): progress on stderr (bar on a terminal) */
    int report;                   /* 1 (default): write report.html */
    int report_pairs; /* lowest and highest pairs, and failed rows, in report.html; default 50 */
    /* Reference captions for RefCLIPScore (Hessel et al., 2021): column names
     * or #N, one reference a column, empty cells ignored. With any, output.csv
     * gains `clipscore` and `refclipscore` columns. Default: none (NULL, 0). */
    const char *const *reference_columns;
    int n_reference_columns;
    /* Several inputs, one run (input_csv is then ignored): CSVs, webdataset
     * tars (.tar, .tar.gz, ...) and img2dataset "files" folders, in order.
     * With any tar or folder, or CSVs of different headers, output.csv's
     * columns are key, source, url, caption (see README). */
    const char *const *inputs;
    int n_inputs;
    const char *image_key;   /* tars/folders: image member extension; NULL: jpg, png, webp, ... */
    const char *caption_key; /* tars/folders: caption member extension; NULL: "txt" */
    int shard_index;         /* score only share K (shard_index) of N (shard_count); */
    int shard_count;         /* 0 (default): everything. See README "Shards" */
    int resume;              /* 1 (default): journal scored rows in the output folder and
                                continue a stopped run of the same inputs and options */
    int restart;             /* 1: discard a stopped run's journal and start over */
    double keep_threshold;   /* write kept.csv: rows with similarity >= this (NaN: none) */
    double keep_fraction;    /* ... and/or the top fraction of scored rows (NaN: none) */
} clipscore_score_params;

CLIPSCORE_API clipscore_score_params clipscore_default_score_params(void);

typedef struct clipscore_score_summary {
    int64_t rows;           /* data rows read */
    int64_t scored;         /* rows with a similarity */
    int64_t failed;         /* rows with an error */
    int64_t truncated;      /* captions cut to the context length */
    int64_t invalid_utf8;   /* captions with invalid UTF-8 replaced */
    double mean_similarity; /* over scored rows; NaN when none */
    double seconds;         /* wall time of the whole run */
    int64_t resumed_rows;   /* rows taken from a stopped run's journal */
    int64_t kept;           /* rows in kept.csv (0 when no keep option) */
    double keep_threshold;  /* the similarity threshold kept.csv used (NaN: none) */
} clipscore_score_summary;

/* Scores every row of params->input_csv and writes output.csv, run.json and
 * (unless disabled) image_captions.jpg, similarity_matrix.jpg and report.html. Returns 0
 * when the outputs were written, even if some rows failed (see summary);
 * negative when the run could not be completed (nothing half-written is
 * left behind). */
CLIPSCORE_API int clipscore_score_csv(clipscore_context *ctx, const clipscore_score_params *params,
                                      clipscore_score_summary *summary);

/* Asks a running clipscore_score_csv to stop after the batch in hand; it then
 * returns CLIPSCORE_ECANCELED and leaves no output behind. Safe to call from
 * a signal handler or another thread. The request stays until the next
 * clipscore_score_csv begins (which clears it on entry). */
CLIPSCORE_API void clipscore_cancel(clipscore_context *ctx);

/* Merging the parts of a sharded run (clipscore_score_params.shard_*). */
typedef struct clipscore_merge_params {
    const char *output_dir;   /* required: where the merged outputs go */
    const char *const *parts; /* the parts' output folders, any order */
    int n_parts;
    double keep_threshold, keep_fraction; /* as in clipscore_score_params (NaN: none) */
    int progress;                         /* 1: a summary on stderr */
    int report;                           /* 1 (default): report.html of the merged rows */
    int report_pairs;                     /* as in clipscore_score_params; default 50 */
} clipscore_merge_params;

CLIPSCORE_API clipscore_merge_params clipscore_default_merge_params(void);

/* Checks that the parts are every share 0..N-1 of one sharded run, each
 * finished once, all with the same inputs, model weights and scoring
 * options, and writes output.csv (rows in input order), run.json (summed
 * counts), the embeddings when every part saved them, kept.csv when asked
 * (the fraction over all parts), and the figures when the first part drew
 * them and holds all of their rows. Nothing is replaced unless all is
 * written. On failure err receives the message, naming the part. */
CLIPSCORE_API int clipscore_merge(const clipscore_merge_params *params,
                                  clipscore_score_summary *summary, char *err, size_t err_len);

/* Model names and the download cache, without loading a model. params
 * gives offline and quiet (NULL: defaults). On failure err (if not NULL)
 * receives the message. */
/* Prints the known names, where each comes from and whether it is cached. */
CLIPSCORE_API int clipscore_models_list(FILE *out, const clipscore_params *params, char *err,
                                        size_t err_len);
/* Downloads (or finds in the cache) a model by name; path receives its
 * local folder or file. */
CLIPSCORE_API int clipscore_models_fetch(const char *name, const clipscore_params *params,
                                         char *path, size_t path_len, char *err, size_t err_len);

/* Writes a float32 array as a NumPy .npy file (little-endian, C order),
 * atomically: shape[0..ndim) with 1 <= ndim <= 4. */
CLIPSCORE_API int clipscore_write_npy(const char *path, const float *data, int ndim,
                                      const int64_t *shape, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
