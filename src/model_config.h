/* model_config.h - a CLIP model's configuration: parsing config.json,
 * open_clip_config.json and preprocessor_config.json, inferring the
 * architecture from tensor shapes, and combining the two.
 *
 * Covers: reading every JSON number through a checked helper (integers
 * must be integral and in range, floats finite and in range, so nothing
 * reaches an undefined float-to-int or double-to-float conversion), the
 * range checks of every declared value, the inference of the architecture
 * from the weights' shapes as OpenAI's build_model does, and the check that
 * declared sizes agree with those shapes (errors name the file, the field,
 * the tensor and both shapes). Leaves out: finding the files and reading
 * the weights (model_files.h), the forward pass (torch_shim.h). Links no
 * libtorch, so a fuzzer can drive the parser alone.
 *
 * Fuzzing: the parser works on a buffer; nothing here touches files except
 * cs_model_config_read_file. A libFuzzer harness:
 *
 *     int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
 *         if (size < 1) return 0;
 *         cs_model_config cfg;
 *         cs_model_config_init(&cfg);
 *         cs_error e = {0};
 *         cs_model_config_parse_json((const char *)data + 1, size - 1, "fuzz",
 *                                    (cs_model_config_kind)(data[0] % CS_CONFIG_KINDS),
 *                                    &cfg, &e);
 *         return 0;
 *     }
 *
 * The buffer need not be NUL-terminated; any bytes are accepted (invalid
 * JSON is CLIPSCORE_EMODEL). Link cs_model_config (cs_util, cJSON). To go
 * on through the shape checks, pass the parsed cfg with tensor views
 * (shapes only: data may be NULL) to cs_model_config_resolve. */
#ifndef CLIPSCORE_MODEL_CONFIG_H
#define CLIPSCORE_MODEL_CONFIG_H

#include <stddef.h>

#include "clip_config.h"
#include "image.h"
#include "tensor.h"
#include "util.h"

typedef enum cs_model_config_kind {
    CS_CONFIG_HF = 0,              /* transformers config.json */
    CS_CONFIG_HF_PREPROCESSOR = 1, /* transformers preprocessor_config.json */
    CS_CONFIG_OPENCLIP = 2,        /* open_clip_config.json (model_cfg + preprocess_cfg) */
    CS_CONFIG_KINDS = 3
} cs_model_config_kind;

/* What the config files declare. Every value was range-checked when it was
 * parsed; "not declared" is 0 (quick_gelu: -1, mean/std: has_mean/has_std
 * 0), and the shapes then decide. */
typedef struct cs_model_config {
    cs_clip_config clip;                     /* declared sizes, 0 where not declared */
    int vision_head_width, text_head_width;  /* open_clip: heads = width / head_width */
    double vision_mlp_ratio, text_mlp_ratio; /* open_clip: mlp = int(width * ratio) */
    int crop_size;                           /* preprocessor crop size, 0 when not declared */
    int has_mean, has_std;
    float mean[3], std[3];
    /* Where the values came from, for messages: the architecture file
     * (HF or open_clip; "" when none) and the preprocessing file. */
    cs_model_config_kind arch_kind;
    char arch_label[512], pp_label[512];
} cs_model_config;

/* Bounds on preprocessing values (on the 0..1 pixel scale): a mean outside
 * the pixel range, or a std so small that normalised pixels overflow or so
 * large that they vanish, cannot be a working model. */
#define CS_PP_MIN_MEAN 0.0
#define CS_PP_MAX_MEAN 1.0
#define CS_PP_MIN_STD 1e-3
#define CS_PP_MAX_STD 10.0

/* Sets every field to "not declared". */
void cs_model_config_init(cs_model_config *cfg);

/* Parses one config file's text (len bytes, NUL not needed) of the given
 * kind into cfg, which must have been initialised with cs_model_config_init
 * (several files of different kinds may be parsed into the same cfg; a
 * later file's values replace an earlier one's). label names the file in
 * messages. Returns 0, or CLIPSCORE_EMODEL with "<label>: <field>: ..."
 * when the text is not a JSON object, a value has the wrong type, is not
 * integral, is out of range, or asks for something unsupported (an
 * activation other than quick_gelu/gelu, a timm or transformers tower, ...).
 * On failure cfg may be partly filled. No allocation outlives the call. */
int cs_model_config_parse_json(const char *json, size_t len, const char *label,
                               cs_model_config_kind kind, cs_model_config *cfg, cs_error *e);

/* Reads a config file (at most 16 MiB) and parses it as above. */
int cs_model_config_read_file(const char *path, cs_model_config_kind kind, cs_model_config *cfg,
                              cs_error *e);

/* Infers the architecture from weights under OpenAI's names, as OpenAI's
 * build_model does: sizes from the shapes, heads = width / 64, quick_gelu,
 * ln_eps 1e-5. Errors (CLIPSCORE_EMODEL) name label (the weight file) and
 * the tensor that is missing or has an impossible shape. */
int cs_clip_config_infer(const cs_tensor *w, int n, const char *label, cs_clip_config *c,
                         cs_error *e);

/* The final configuration: inferred from the weights (cs_clip_config_infer),
 * with heads, activation, epsilon and preprocessing taken from cfg where it
 * declares them. A declared size that differs from the weights is an error
 * naming the file, the field, the tensor, its shape and the shape the
 * declared value needs. The result is validated (cs_clip_config_validate).
 * pp gets the image size and cfg's mean/std (CLIP's defaults otherwise). */
int cs_model_config_resolve(const cs_model_config *cfg, const cs_tensor *w, int n,
                            const char *weights_label, cs_clip_config *clip, cs_preprocess_cfg *pp,
                            cs_error *e);

#endif
