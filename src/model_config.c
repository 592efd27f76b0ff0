/* model_config.c - parsing and checking a CLIP model's configuration (see
 * model_config.h and clip_config.h).
 * Leaves out: locating files and reading weights (model_files.c). */
#include "model_config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_BYTES (16u << 20)

/* ------------------------------------------------------------ validation */

/* The ResNet part of cs_clip_config_validate (the shared fields are
 * checked already): the bounds keep 32w channels and the pool's grid
 * within the ViT bounds, so the same products fit. */
static int validate_resnet(const cs_clip_config *c, const char *label, cs_error *e) {
    int sum = 0;
    for (int i = 0; i < CS_CLIP_RESNET_STAGES; i++) {
        if (c->vision_stages[i] < 1 || c->vision_stages[i] > CS_CLIP_MAX_LAYERS)
            return cs_fail(e, CLIPSCORE_EMODEL, "%s: vision_stages[%d] is %d, expected 1 to %d",
                           label, i, c->vision_stages[i], CS_CLIP_MAX_LAYERS);
        sum += c->vision_stages[i];
    }
    if (sum != c->vision_layers)
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: vision_layers %d is not the sum of the stages' blocks (%d)", label,
                       c->vision_layers, sum);
    if (c->vision_width % 2 || c->vision_width > CS_CLIP_MAX_WIDTH / CS_CLIP_RESNET_REDUCTION)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: ResNet width %d, expected an even number up to %d",
                       label, c->vision_width, CS_CLIP_MAX_WIDTH / CS_CLIP_RESNET_REDUCTION);
    if (c->image_size % CS_CLIP_RESNET_REDUCTION)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: image_size %d is not a multiple of %d (a ResNet)",
                       label, c->image_size, CS_CLIP_RESNET_REDUCTION);
    int g = c->image_size / CS_CLIP_RESNET_REDUCTION;
    if (g * g > CS_CLIP_MAX_PATCHES)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: a %d x %d pooling grid, at most %d supported",
                       label, g, g, CS_CLIP_MAX_PATCHES);
    if (c->vision_width * CS_CLIP_RESNET_REDUCTION % c->vision_heads)
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: vision_heads %d do not divide the attention pool's width %d", label,
                       c->vision_heads, c->vision_width * CS_CLIP_RESNET_REDUCTION);
    return 0;
}

/* The ViT part: patches that tile the image, heads that divide the width. */
static int validate_vit(const cs_clip_config *c, const char *label, cs_error *e) {
    for (int i = 0; i < CS_CLIP_RESNET_STAGES; i++)
        if (c->vision_stages[i] != 0)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: vision_stages[%d] is %d: a ResNet needs blocks in every stage, "
                           "a ViT in none",
                           label, i, c->vision_stages[i]);
    if (c->image_size % c->patch_size)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: patch_size %d does not divide image_size %d",
                       label, c->patch_size, c->image_size);
    int g = c->image_size / c->patch_size; /* <= 4096: g*g fits */
    if (g * g > CS_CLIP_MAX_PATCHES)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: %d x %d patches, at most %d supported", label, g,
                       g, CS_CLIP_MAX_PATCHES);
    if (c->vision_width % c->vision_heads)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: vision_heads %d do not divide vision_width %d",
                       label, c->vision_heads, c->vision_width);
    return 0;
}

int cs_clip_config_validate(const cs_clip_config *c, const char *label, cs_error *e) {
    static const struct {
        const char *name;
        size_t off;
        int lo, hi;
    } f[] = {
        {"image_size", offsetof(cs_clip_config, image_size), 1, CS_CLIP_MAX_IMAGE_SIZE},
        {"patch_size", offsetof(cs_clip_config, patch_size), 1, CS_CLIP_MAX_IMAGE_SIZE},
        {"vision_width", offsetof(cs_clip_config, vision_width), 1, CS_CLIP_MAX_WIDTH},
        {"vision_layers", offsetof(cs_clip_config, vision_layers), 1, CS_CLIP_MAX_LAYERS},
        {"vision_heads", offsetof(cs_clip_config, vision_heads), 1, CS_CLIP_MAX_WIDTH},
        {"vision_mlp", offsetof(cs_clip_config, vision_mlp), 1, CS_CLIP_MAX_MLP},
        {"context_length", offsetof(cs_clip_config, context_length), 2, CS_CLIP_MAX_CONTEXT},
        {"vocab_size", offsetof(cs_clip_config, vocab_size), 1, CS_CLIP_MAX_VOCAB},
        {"text_width", offsetof(cs_clip_config, text_width), 1, CS_CLIP_MAX_WIDTH},
        {"text_layers", offsetof(cs_clip_config, text_layers), 1, CS_CLIP_MAX_LAYERS},
        {"text_heads", offsetof(cs_clip_config, text_heads), 1, CS_CLIP_MAX_WIDTH},
        {"text_mlp", offsetof(cs_clip_config, text_mlp), 1, CS_CLIP_MAX_MLP},
        {"embed_dim", offsetof(cs_clip_config, embed_dim), 1, CS_CLIP_MAX_WIDTH},
        {"quick_gelu", offsetof(cs_clip_config, quick_gelu), 0, 1},
    };
    if (!label) label = "model";
    const int resnet = cs_clip_config_is_resnet(c);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        int v;
        memcpy(&v, (const char *)c + f[i].off, sizeof v);
        /* A ResNet has neither patches nor a transformer MLP. */
        if (resnet && (f[i].off == offsetof(cs_clip_config, patch_size) ||
                       f[i].off == offsetof(cs_clip_config, vision_mlp))) {
            if (v != 0)
                return cs_fail(e, CLIPSCORE_EMODEL, "%s: %s is %d, expected 0 for a ResNet", label,
                               f[i].name, v);
            continue;
        }
        if (v < f[i].lo || v > f[i].hi)
            return cs_fail(e, CLIPSCORE_EMODEL, "%s: %s is %d, expected %d to %d", label, f[i].name,
                           v, f[i].lo, f[i].hi);
    }
    int rc = resnet ? validate_resnet(c, label, e) : validate_vit(c, label, e);
    if (rc) return rc;
    if (c->text_width % c->text_heads)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: text_heads %d do not divide text_width %d", label,
                       c->text_heads, c->text_width);
    if (!(c->ln_eps > 0 && c->ln_eps <= CS_CLIP_MAX_LN_EPS)) /* also refuses NaN */
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: ln_eps %g, expected a number in (0, %g]", label,
                       (double)c->ln_eps, (double)CS_CLIP_MAX_LN_EPS);
    return 0;
}

/* ------------------------------------------------------------ checked JSON */

typedef struct jctx {
    const char *label;
    const char *prefix; /* "vision_config." etc., for messages */
    cs_error *e;
} jctx;

static const char *json_type(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNumber(v)) return "a number";
    return "not valid";
}

/* 0: absent (or null), 1: *out set, <0: error naming the field. Doubles are
 * compared before any conversion: casting an out-of-range double to int (or
 * to float) is undefined behaviour. */
static int get_int_v(const jctx *j, const cJSON *v, const char *key, int lo, int hi, int *out) {
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s is %s, expected an integer", j->label,
                       j->prefix, key, json_type(v));
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi) || d != floor(d))
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s is %.9g, expected an integer in [%d, %d]",
                       j->label, j->prefix, key, d, lo, hi);
    *out = (int)d;
    return 1;
}

static int get_int(const jctx *j, const cJSON *obj, const char *key, int lo, int hi, int *out) {
    return get_int_v(j, cJSON_GetObjectItemCaseSensitive(obj, key), key, lo, hi, out);
}

static int get_double(const jctx *j, const cJSON *obj, const char *key, double lo, double hi,
                      double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v))
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s is %s, expected a number", j->label,
                       j->prefix, key, json_type(v));
    double d = v->valuedouble;
    if (!(d >= lo && d <= hi)) /* also NaN and infinities (1e400 parses to inf) */
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s is %.9g, expected a number in [%g, %g]",
                       j->label, j->prefix, key, d, lo, hi);
    *out = d;
    return 1;
}

/* Three numbers in [lo, hi] (per-channel mean or std). */
static int get_floats3(const jctx *j, const cJSON *obj, const char *key, double lo, double hi,
                       float out[3]) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s should be a list of 3 numbers", j->label,
                       j->prefix, key);
    for (int i = 0; i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x))
            return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s[%d] is %s, expected a number",
                           j->label, j->prefix, key, i, json_type(x));
        double d = x->valuedouble;
        if (!(d >= lo && d <= hi)) /* before the cast: a double beyond float's range is UB */
            return cs_fail(j->e, CLIPSCORE_EMODEL,
                           "%s: %s%s[%d] is %.9g, expected a number in [%g, %g]", j->label,
                           j->prefix, key, i, d, lo, hi);
        out[i] = (float)d;
    }
    return 1;
}

/* A sub-object, or NULL when absent; anything else there is an error. */
static int get_object(const jctx *j, const cJSON *obj, const char *key, const cJSON **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsObject(v))
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %s%s is %s, expected an object", j->label,
                       j->prefix, key, json_type(v));
    *out = v;
    return 1;
}

static int get_activation(const jctx *j, const cJSON *obj, int *quick_gelu) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "hidden_act");
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v) && strcmp(v->valuestring, "quick_gelu") == 0)
        *quick_gelu = 1;
    else if (cJSON_IsString(v) && strcmp(v->valuestring, "gelu") == 0)
        *quick_gelu = 0;
    else if (cJSON_IsString(v))
        return cs_fail(j->e, CLIPSCORE_EMODEL,
                       "%s: %shidden_act \"%s\" is not supported (quick_gelu, gelu)", j->label,
                       j->prefix, v->valuestring);
    else
        return cs_fail(j->e, CLIPSCORE_EMODEL, "%s: %shidden_act is %s, expected a string",
                       j->label, j->prefix, json_type(v));
    return 1;
}

/* ------------------------------------------------------------ the three files */

#define CHK(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_ < 0) return rc_;                                                                   \
    } while (0)

/* config.json: text_config and vision_config (text_config_dict and
 * vision_config_dict in files from old transformers releases). */
static int parse_hf(const cJSON *root, const char *label, cs_model_config *cfg, cs_error *e) {
    jctx j = {label, "", e};
    cs_clip_config *c = &cfg->clip;
    const cJSON *tc, *vc;
    CHK(get_object(&j, root, "text_config", &tc));
    if (!tc) CHK(get_object(&j, root, "text_config_dict", &tc));
    CHK(get_object(&j, root, "vision_config", &vc));
    if (!vc) CHK(get_object(&j, root, "vision_config_dict", &vc));
    CHK(get_int(&j, root, "projection_dim", 1, CS_CLIP_MAX_WIDTH, &c->embed_dim));
    double eps = 0;
    int act = -1;
    if (vc) {
        j.prefix = "vision_config.";
        CHK(get_int(&j, vc, "image_size", 1, CS_CLIP_MAX_IMAGE_SIZE, &c->image_size));
        CHK(get_int(&j, vc, "patch_size", 1, CS_CLIP_MAX_IMAGE_SIZE, &c->patch_size));
        CHK(get_int(&j, vc, "hidden_size", 1, CS_CLIP_MAX_WIDTH, &c->vision_width));
        CHK(get_int(&j, vc, "num_hidden_layers", 1, CS_CLIP_MAX_LAYERS, &c->vision_layers));
        CHK(get_int(&j, vc, "num_attention_heads", 1, CS_CLIP_MAX_WIDTH, &c->vision_heads));
        CHK(get_int(&j, vc, "intermediate_size", 1, CS_CLIP_MAX_MLP, &c->vision_mlp));
        CHK(get_activation(&j, vc, &act));
        CHK(get_double(&j, vc, "layer_norm_eps", 1e-30, CS_CLIP_MAX_LN_EPS, &eps));
        int ch = 3;
        CHK(get_int(&j, vc, "num_channels", 1, 1 << 20, &ch));
        if (ch != 3)
            return cs_fail(e, CLIPSCORE_EMODEL, "%s: vision_config.num_channels is %d, expected 3",
                           label, ch);
    }
    if (tc) {
        j.prefix = "text_config.";
        CHK(get_int(&j, tc, "max_position_embeddings", 2, CS_CLIP_MAX_CONTEXT, &c->context_length));
        CHK(get_int(&j, tc, "vocab_size", 1, CS_CLIP_MAX_VOCAB, &c->vocab_size));
        CHK(get_int(&j, tc, "hidden_size", 1, CS_CLIP_MAX_WIDTH, &c->text_width));
        CHK(get_int(&j, tc, "num_hidden_layers", 1, CS_CLIP_MAX_LAYERS, &c->text_layers));
        CHK(get_int(&j, tc, "num_attention_heads", 1, CS_CLIP_MAX_WIDTH, &c->text_heads));
        CHK(get_int(&j, tc, "intermediate_size", 1, CS_CLIP_MAX_MLP, &c->text_mlp));
        /* The vision tower's activation and epsilon win: the shim runs one
         * of each, and CLIP's towers have always shared them. */
        if (act < 0) CHK(get_activation(&j, tc, &act));
        if (eps == 0) CHK(get_double(&j, tc, "layer_norm_eps", 1e-30, CS_CLIP_MAX_LN_EPS, &eps));
    }
    if (act >= 0) c->quick_gelu = act;
    if (eps > 0) c->ln_eps = (float)eps;
    cfg->arch_kind = CS_CONFIG_HF;
    snprintf(cfg->arch_label, sizeof cfg->arch_label, "%s", label);
    return 0;
}

/* preprocessor_config.json: image_mean, image_std, crop_size (a number or
 * {"height", "width"}). */
static int parse_hf_preprocessor(const cJSON *root, const char *label, cs_model_config *cfg,
                                 cs_error *e) {
    jctx j = {label, "", e};
    int rc;
    CHK(rc = get_floats3(&j, root, "image_mean", CS_PP_MIN_MEAN, CS_PP_MAX_MEAN, cfg->mean));
    if (rc) cfg->has_mean = 1;
    CHK(rc = get_floats3(&j, root, "image_std", CS_PP_MIN_STD, CS_PP_MAX_STD, cfg->std));
    if (rc) cfg->has_std = 1;
    const cJSON *crop = cJSON_GetObjectItemCaseSensitive(root, "crop_size");
    if (cJSON_IsObject(crop)) {
        int h = 0, w = 0;
        j.prefix = "crop_size.";
        CHK(get_int(&j, crop, "height", 1, CS_CLIP_MAX_IMAGE_SIZE, &h));
        CHK(get_int(&j, crop, "width", 1, CS_CLIP_MAX_IMAGE_SIZE, &w));
        if (h && w && h != w)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: crop_size %d x %d is not square, which CLIP models are", label, w,
                           h);
        cfg->crop_size = h ? h : w;
    } else {
        CHK(get_int(&j, root, "crop_size", 1, CS_CLIP_MAX_IMAGE_SIZE, &cfg->crop_size));
    }
    snprintf(cfg->pp_label, sizeof cfg->pp_label, "%s", label);
    return 0;
}

/* image_size is a number or a square [h, w] pair in open_clip. */
static int get_oc_image_size(const jctx *j, const cJSON *vc, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(vc, "image_size");
    if (!cJSON_IsArray(v)) return get_int_v(j, v, "image_size", 1, CS_CLIP_MAX_IMAGE_SIZE, out);
    int h = 0, w = 0;
    if (cJSON_GetArraySize(v) != 2 ||
        get_int_v(j, cJSON_GetArrayItem(v, 0), "image_size[0]", 1, CS_CLIP_MAX_IMAGE_SIZE, &h) !=
            1 ||
        get_int_v(j, cJSON_GetArrayItem(v, 1), "image_size[1]", 1, CS_CLIP_MAX_IMAGE_SIZE, &w) !=
            1 ||
        h != w)
        return cs_fail(j->e, CLIPSCORE_EMODEL,
                       "%s: %simage_size should be a number or a square [size, size] pair",
                       j->label, j->prefix);
    *out = h;
    return 1;
}

/* open_clip_config.json: model_cfg {embed_dim, quick_gelu, vision_cfg,
 * text_cfg} and preprocess_cfg {mean, std}. */
static int parse_openclip(const cJSON *root, const char *label, cs_model_config *cfg, cs_error *e) {
    jctx j = {label, "", e};
    cs_clip_config *c = &cfg->clip;
    const cJSON *mc, *vc, *tc, *pc;
    CHK(get_object(&j, root, "model_cfg", &mc));
    if (!mc) mc = root; /* a bare model config, as in open_clip's model_configs/ */
    j.prefix = mc == root ? "" : "model_cfg.";
    CHK(get_int(&j, mc, "embed_dim", 1, CS_CLIP_MAX_WIDTH, &c->embed_dim));
    /* open_clip's own default is nn.GELU unless quick_gelu is set. */
    const cJSON *qg = cJSON_GetObjectItemCaseSensitive(mc, "quick_gelu");
    if (qg && !cJSON_IsNull(qg) && !cJSON_IsBool(qg))
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: %squick_gelu is %s, expected true or false", label,
                       j.prefix, json_type(qg));
    c->quick_gelu = cJSON_IsTrue(qg) ? 1 : 0;
    CHK(get_object(&j, mc, "vision_cfg", &vc));
    CHK(get_object(&j, mc, "text_cfg", &tc));
    if (vc) {
        j.prefix = "vision_cfg.";
        static const char *const unsupported[] = {"timm_model_name", "attentional_pool",
                                                  "no_ln_pre", "final_ln_after_pool",
                                                  "global_average_pool"};
        for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(vc, unsupported[i]);
            if (u && !cJSON_IsFalse(u) && !cJSON_IsNull(u))
                return cs_fail(e, CLIPSCORE_EMODEL, "%s: vision_cfg.%s is not supported", label,
                               unsupported[i]);
        }
        /* A list of blocks per stage is a ResNet (open_clip's ModifiedResNet). */
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(vc, "layers");
        if (cJSON_IsArray(layers)) {
            if (cJSON_GetArraySize(layers) != CS_CLIP_RESNET_STAGES)
                return cs_fail(e, CLIPSCORE_EMODEL,
                               "%s: vision_cfg.layers has %d stages, a ResNet CLIP has %d", label,
                               cJSON_GetArraySize(layers), CS_CLIP_RESNET_STAGES);
            int sum = 0;
            for (int i = 0; i < CS_CLIP_RESNET_STAGES; i++) {
                char key[32];
                snprintf(key, sizeof key, "layers[%d]", i);
                if (get_int_v(&j, cJSON_GetArrayItem(layers, i), key, 1, CS_CLIP_MAX_LAYERS,
                              &c->vision_stages[i]) != 1)
                    return cs_fail(e, CLIPSCORE_EMODEL,
                                   "%s: vision_cfg.%s should be a number of blocks, 1 to %d", label,
                                   key, CS_CLIP_MAX_LAYERS);
                sum += c->vision_stages[i];
            }
            c->vision_layers = sum;
        } else {
            CHK(get_int(&j, vc, "layers", 1, CS_CLIP_MAX_LAYERS, &c->vision_layers));
        }
        CHK(get_oc_image_size(&j, vc, &c->image_size));
        CHK(get_int(&j, vc, "patch_size", 1, CS_CLIP_MAX_IMAGE_SIZE, &c->patch_size));
        CHK(get_int(&j, vc, "width", 1, CS_CLIP_MAX_WIDTH, &c->vision_width));
        CHK(get_int(&j, vc, "head_width", 1, CS_CLIP_MAX_WIDTH, &cfg->vision_head_width));
        CHK(get_double(&j, vc, "mlp_ratio", 1e-3, 64, &cfg->vision_mlp_ratio));
    }
    if (tc) {
        j.prefix = "text_cfg.";
        const cJSON *hf = cJSON_GetObjectItemCaseSensitive(tc, "hf_model_name");
        if (hf && !cJSON_IsNull(hf))
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: text towers from transformers (text_cfg.hf_model_name %s) are not "
                           "supported",
                           label, cJSON_IsString(hf) ? hf->valuestring : "");
        CHK(get_int(&j, tc, "context_length", 2, CS_CLIP_MAX_CONTEXT, &c->context_length));
        CHK(get_int(&j, tc, "vocab_size", 1, CS_CLIP_MAX_VOCAB, &c->vocab_size));
        CHK(get_int(&j, tc, "width", 1, CS_CLIP_MAX_WIDTH, &c->text_width));
        CHK(get_int(&j, tc, "layers", 1, CS_CLIP_MAX_LAYERS, &c->text_layers));
        CHK(get_int(&j, tc, "heads", 1, CS_CLIP_MAX_WIDTH, &c->text_heads));
        CHK(get_double(&j, tc, "mlp_ratio", 1e-3, 64, &cfg->text_mlp_ratio));
    }
    j.prefix = "preprocess_cfg.";
    CHK(get_object(&j, root, "preprocess_cfg", &pc));
    if (pc) {
        int rc;
        CHK(rc = get_floats3(&j, pc, "mean", CS_PP_MIN_MEAN, CS_PP_MAX_MEAN, cfg->mean));
        if (rc) cfg->has_mean = 1;
        CHK(rc = get_floats3(&j, pc, "std", CS_PP_MIN_STD, CS_PP_MAX_STD, cfg->std));
        if (rc) cfg->has_std = 1;
        snprintf(cfg->pp_label, sizeof cfg->pp_label, "%s", label);
    }
    cfg->arch_kind = CS_CONFIG_OPENCLIP;
    snprintf(cfg->arch_label, sizeof cfg->arch_label, "%s", label);
    return 0;
}

void cs_model_config_init(cs_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->clip.quick_gelu = -1;
    cfg->arch_kind = CS_CONFIG_KINDS; /* none */
}

int cs_model_config_parse_json(const char *json, size_t len, const char *label,
                               cs_model_config_kind kind, cs_model_config *cfg, cs_error *e) {
    if (!label) label = "config";
    cJSON *root = json ? cJSON_ParseWithLength(json, len) : NULL;
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: not a valid JSON object", label);
    }
    int rc;
    switch (kind) {
    case CS_CONFIG_HF:
        rc = parse_hf(root, label, cfg, e);
        break;
    case CS_CONFIG_HF_PREPROCESSOR:
        rc = parse_hf_preprocessor(root, label, cfg, e);
        break;
    case CS_CONFIG_OPENCLIP:
        rc = parse_openclip(root, label, cfg, e);
        break;
    default:
        rc = cs_fail(e, CLIPSCORE_EINTERNAL, "%s: unknown configuration kind %d", label, (int)kind);
    }
    cJSON_Delete(root);
    return rc;
}

int cs_model_config_read_file(const char *path, cs_model_config_kind kind, cs_model_config *cfg,
                              cs_error *e) {
    char *text;
    size_t len;
    int rc = cs_read_file(path, MAX_CONFIG_BYTES, &text, &len, e);
    if (rc) return rc;
    rc = cs_model_config_parse_json(text, len, path, kind, cfg, e);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ shapes */

static const cs_tensor *find(const cs_tensor *w, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (w[i].name && strcmp(w[i].name, name) == 0) return &w[i];
    return NULL;
}

static void shape_str(const int64_t *s, int nd, char *out, size_t cap) {
    size_t k = 0;
    out[0] = 0;
    k += (size_t)snprintf(out + k, cap - k, "[");
    for (int i = 0; i < nd && k < cap; i++)
        k += (size_t)snprintf(out + k, cap - k, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (k < cap) snprintf(out + k, cap - k, "]");
}

/* N+1 when name is "<prefix>N.<...>" with N < 1000, else 0. */
static int layer_of(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    char *end;
    long v = strtol(name + pl, &end, 10);
    return end != name + pl && *end == '.' && v >= 0 && v < 1000 ? (int)v + 1 : 0;
}

static int count_layers(const cs_tensor *w, int n, const char *prefix) {
    int layers = 0;
    for (int i = 0; i < n; i++) {
        int l = w[i].name ? layer_of(w[i].name, prefix) : 0;
        if (l > layers) layers = l;
    }
    return layers;
}

/* Dimension d of t as an int in [1, hi], or an error naming the tensor. */
static int dim(const cs_tensor *t, int d, int64_t hi, const char *label, int *out, cs_error *e) {
    if (t->shape[d] < 1 || t->shape[d] > hi) {
        char s[160];
        shape_str(t->shape, t->ndim, s, sizeof s);
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: tensor %s has shape %s: dimension %d must be 1 to %lld", label, t->name,
                       s, d, (long long)hi);
    }
    *out = (int)t->shape[d];
    return 0;
}

/* The tensor `name`, of rank `rank`; an error naming it otherwise. */
static int need(const cs_tensor *w, int n, const char *name, int rank, const char *label,
                const cs_tensor **out, cs_error *e) {
    *out = find(w, n, name);
    if (!*out)
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: not a CLIP checkpoint that clipscore knows: tensor %s is missing",
                       label, name);
    if ((*out)->ndim != rank) {
        char s[160];
        shape_str((*out)->shape, (*out)->ndim, s, sizeof s);
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: tensor %s has shape %s, expected %d dimensions",
                       label, name, s, rank);
    }
    return 0;
}

/* A square grid plus one (the class or mean token) from a position count,
 * or 0 when pos is not one. */
static int grid_of(int pos) {
    int grid = (int)lround(sqrt((double)(pos - 1)));
    return grid >= 1 && grid * grid + 1 == pos ? grid : 0;
}

/* The ViT image tower: patch convolution, positions, blocks. */
static int infer_vit(const cs_tensor *w, int n, const char *label, cs_clip_config *c, cs_error *e) {
    const cs_tensor *conv, *pe, *fc;
    int rc, ch = 0, pw = 0, pos = 0; /* set by dim() on success; zeroed for the compiler */
    if ((rc = need(w, n, "visual.conv1.weight", 4, label, &conv, e)) ||
        (rc = need(w, n, "visual.positional_embedding", 2, label, &pe, e)) ||
        (rc = need(w, n, "visual.transformer.resblocks.0.mlp.c_fc.weight", 2, label, &fc, e)) ||
        (rc = dim(conv, 0, CS_CLIP_MAX_WIDTH, label, &c->vision_width, e)) ||
        (rc = dim(conv, 1, 3, label, &ch, e)) ||
        (rc = dim(conv, 2, CS_CLIP_MAX_IMAGE_SIZE, label, &c->patch_size, e)) ||
        (rc = dim(conv, 3, CS_CLIP_MAX_IMAGE_SIZE, label, &pw, e)) ||
        (rc = dim(pe, 0, CS_CLIP_MAX_PATCHES + 1, label, &pos, e)) ||
        (rc = dim(fc, 0, CS_CLIP_MAX_MLP, label, &c->vision_mlp, e)))
        return rc;
    /* A square grid of patches plus the class token: refuse anything else
     * rather than round it to a grid the weights do not have. */
    int grid = grid_of(pos);
    if (ch != 3 || pw != c->patch_size || !grid) {
        char s0[160], s1[160];
        shape_str(conv->shape, conv->ndim, s0, sizeof s0);
        shape_str(pe->shape, pe->ndim, s1, sizeof s1);
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: tensors visual.conv1.weight %s and visual.positional_embedding %s are "
                       "not an RGB square patch embedding and a square grid plus class token",
                       label, s0, s1);
    }
    if ((int64_t)grid * c->patch_size > CS_CLIP_MAX_IMAGE_SIZE)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: image size %lld is above %d", label,
                       (long long)grid * c->patch_size, CS_CLIP_MAX_IMAGE_SIZE);
    c->image_size = c->patch_size * grid;
    c->vision_layers = count_layers(w, n, "visual.transformer.resblocks.");
    c->vision_heads = c->vision_width / 64 > 0 ? c->vision_width / 64 : 1;
    return 0;
}

/* The ResNet image tower, as OpenAI's build_model reads it: blocks per
 * stage from the block numbers, the width from the first block, the
 * resolution from the attention pool's positions (32 pixels a cell), heads
 * = 32w / 64. */
static int infer_resnet(const cs_tensor *w, int n, const char *label, cs_clip_config *c,
                        cs_error *e) {
    const cs_tensor *l1, *pe;
    int rc, pos = 0;
    if ((rc = need(w, n, "visual.layer1.0.conv1.weight", 4, label, &l1, e)) ||
        (rc = need(w, n, "visual.attnpool.positional_embedding", 2, label, &pe, e)) ||
        (rc = dim(l1, 0, CS_CLIP_MAX_WIDTH / CS_CLIP_RESNET_REDUCTION, label, &c->vision_width,
                  e)) ||
        (rc = dim(pe, 0, CS_CLIP_MAX_PATCHES + 1, label, &pos, e)))
        return rc;
    int grid = grid_of(pos);
    if (!grid) {
        char s[160];
        shape_str(pe->shape, pe->ndim, s, sizeof s);
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: tensor visual.attnpool.positional_embedding %s is not a square grid "
                       "plus the mean token",
                       label, s);
    }
    if ((int64_t)grid * CS_CLIP_RESNET_REDUCTION > CS_CLIP_MAX_IMAGE_SIZE)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: image size %lld is above %d", label,
                       (long long)grid * CS_CLIP_RESNET_REDUCTION, CS_CLIP_MAX_IMAGE_SIZE);
    c->image_size = grid * CS_CLIP_RESNET_REDUCTION;
    c->vision_layers = 0;
    for (int s = 0; s < CS_CLIP_RESNET_STAGES; s++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "visual.layer%d.", s + 1);
        c->vision_stages[s] = count_layers(w, n, prefix);
        if (!c->vision_stages[s])
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: a ResNet CLIP without blocks in stage %d (no tensor %s0.*)", label,
                           s + 1, prefix);
        c->vision_layers += c->vision_stages[s];
    }
    c->vision_heads = c->vision_width * CS_CLIP_RESNET_REDUCTION / 64;
    if (c->vision_heads < 1) c->vision_heads = 1;
    return 0;
}

int cs_clip_config_infer(const cs_tensor *w, int n, const char *label, cs_clip_config *c,
                         cs_error *e) {
    if (!label) label = "model";
    memset(c, 0, sizeof *c);
    const cs_tensor *proj, *pos, *tok, *lnf, *fc;
    int rc;
    if ((rc = need(w, n, "text_projection", 2, label, &proj, e)) ||
        (rc = need(w, n, "positional_embedding", 2, label, &pos, e)) ||
        (rc = need(w, n, "token_embedding.weight", 2, label, &tok, e)) ||
        (rc = need(w, n, "ln_final.weight", 1, label, &lnf, e)) ||
        (rc = need(w, n, "transformer.resblocks.0.mlp.c_fc.weight", 2, label, &fc, e)) ||
        (rc = dim(proj, 1, CS_CLIP_MAX_WIDTH, label, &c->embed_dim, e)) ||
        (rc = dim(pos, 0, CS_CLIP_MAX_CONTEXT, label, &c->context_length, e)) ||
        (rc = dim(tok, 0, CS_CLIP_MAX_VOCAB, label, &c->vocab_size, e)) ||
        (rc = dim(lnf, 0, CS_CLIP_MAX_WIDTH, label, &c->text_width, e)) ||
        (rc = dim(fc, 0, CS_CLIP_MAX_MLP, label, &c->text_mlp, e)))
        return rc;
    /* A ResNet tower has an attention pool where a ViT has positions. */
    if (find(w, n, "visual.attnpool.positional_embedding") ||
        find(w, n, "visual.layer1.0.conv1.weight"))
        rc = infer_resnet(w, n, label, c, e);
    else
        rc = infer_vit(w, n, label, c, e);
    if (rc) return rc;
    c->text_layers = count_layers(w, n, "transformer.resblocks.");
    c->text_heads = c->text_width / 64 > 0 ? c->text_width / 64 : 1;
    c->quick_gelu = 1; /* OpenAI's models */
    c->ln_eps = 1e-5f;
    return 0;
}

/* Where each declared size shows in the weights, and its name per file kind. */
typedef struct field_map {
    size_t off;               /* in cs_clip_config */
    const char *hf, *oc;      /* field names in config.json / open_clip_config.json */
    const char *tensor;       /* the tensor whose shape holds it (NULL: layer counts) */
    int dim0, dim1;           /* dimensions of that tensor it sets (dim1 -1: one) */
    const char *layer_prefix; /* for layer counts */
} field_map;

static const field_map fields[] = {
    {offsetof(cs_clip_config, vision_width), "vision_config.hidden_size", "vision_cfg.width",
     "visual.conv1.weight", 0, -1, NULL},
    {offsetof(cs_clip_config, patch_size), "vision_config.patch_size", "vision_cfg.patch_size",
     "visual.conv1.weight", 2, 3, NULL},
    {offsetof(cs_clip_config, vision_layers), "vision_config.num_hidden_layers",
     "vision_cfg.layers", NULL, 0, -1, "visual.transformer.resblocks."},
    {offsetof(cs_clip_config, vision_mlp), "vision_config.intermediate_size",
     "vision_cfg.mlp_ratio", "visual.transformer.resblocks.0.mlp.c_fc.weight", 0, -1, NULL},
    {offsetof(cs_clip_config, context_length), "text_config.max_position_embeddings",
     "text_cfg.context_length", "positional_embedding", 0, -1, NULL},
    {offsetof(cs_clip_config, vocab_size), "text_config.vocab_size", "text_cfg.vocab_size",
     "token_embedding.weight", 0, -1, NULL},
    {offsetof(cs_clip_config, text_width), "text_config.hidden_size", "text_cfg.width",
     "ln_final.weight", 0, -1, NULL},
    {offsetof(cs_clip_config, text_layers), "text_config.num_hidden_layers", "text_cfg.layers",
     NULL, 0, -1, "transformer.resblocks."},
    {offsetof(cs_clip_config, text_mlp), "text_config.intermediate_size", "text_cfg.mlp_ratio",
     "transformer.resblocks.0.mlp.c_fc.weight", 0, -1, NULL},
    {offsetof(cs_clip_config, embed_dim), "projection_dim", "embed_dim", "text_projection", 1, -1,
     NULL},
};

static int get_field(const cs_clip_config *c, size_t off) {
    int v;
    memcpy(&v, (const char *)c + off, sizeof v);
    return v;
}

/* Declared value v for field f differs from the weights: name both shapes. */
static int conflict(const cs_model_config *cfg, const field_map *f, int v, const cs_tensor *w,
                    int n, int inferred, cs_error *e) {
    const char *field = cfg->arch_kind == CS_CONFIG_OPENCLIP ? f->oc : f->hf;
    char ratio[96];
    if (cfg->arch_kind == CS_CONFIG_OPENCLIP && strstr(field, "mlp_ratio")) {
        /* The value shown is the MLP width the ratio gives. */
        snprintf(ratio, sizeof ratio, "%s %g: the MLP width", field,
                 f->off == offsetof(cs_clip_config, vision_mlp) ? cfg->vision_mlp_ratio
                                                                : cfg->text_mlp_ratio);
        field = ratio;
    }
    if (!f->tensor)
        return cs_fail(
            e, CLIPSCORE_EMODEL, "%s: %s is %d, but the weights hold %d blocks (%s0 to %s%d)",
            cfg->arch_label, field, v, inferred, f->layer_prefix, f->layer_prefix, inferred - 1);
    const cs_tensor *t = find(w, n, f->tensor);
    char have[160], want[160];
    int64_t s[CS_MAX_DIMS];
    memcpy(s, t->shape, sizeof s);
    s[f->dim0] = v;
    if (f->dim1 >= 0) s[f->dim1] = v;
    shape_str(t->shape, t->ndim, have, sizeof have);
    shape_str(s, t->ndim, want, sizeof want);
    return cs_fail(e, CLIPSCORE_EMODEL,
                   "%s: %s is %d, which needs tensor %s of shape %s; it has %s", cfg->arch_label,
                   field, v, f->tensor, want, have);
}

/* The declared ResNet sizes against the weights' (c, inferred): the
 * stages (vision_cfg.layers), the width, the image size; a declared patch
 * size is refused (open_clip writes null). */
static int resolve_resnet(const cs_model_config *cfg, const cs_clip_config *c, const cs_tensor *w,
                          int n, cs_error *e) {
    const cs_clip_config *d = &cfg->clip;
    const char *label = cfg->arch_label;
    int oc = cfg->arch_kind == CS_CONFIG_OPENCLIP;
    if (d->patch_size)
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: %s is %d, but the weights are a ResNet CLIP (tensor "
                       "visual.attnpool.positional_embedding), which has no patches",
                       label, oc ? "vision_cfg.patch_size" : "vision_config.patch_size",
                       d->patch_size);
    const int *have = c->vision_stages;
    if (cs_clip_config_is_resnet(d) ? memcmp(d->vision_stages, have, sizeof c->vision_stages) != 0
                                    : d->vision_layers != 0) {
        char want[64] = "";
        if (cs_clip_config_is_resnet(d))
            snprintf(want, sizeof want, "[%d, %d, %d, %d]", d->vision_stages[0],
                     d->vision_stages[1], d->vision_stages[2], d->vision_stages[3]);
        else
            snprintf(want, sizeof want, "%d", d->vision_layers);
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: %s is %s, but the weights hold [%d, %d, %d, %d] blocks per stage "
                       "(visual.layer1 to visual.layer4)",
                       label, oc ? "vision_cfg.layers" : "vision_config.num_hidden_layers", want,
                       have[0], have[1], have[2], have[3]);
    }
    if (d->vision_width && d->vision_width != c->vision_width) {
        static const field_map width = {offsetof(cs_clip_config, vision_width),
                                        "vision_config.hidden_size",
                                        "vision_cfg.width",
                                        "visual.layer1.0.conv1.weight",
                                        0,
                                        -1,
                                        NULL};
        return conflict(cfg, &width, d->vision_width, w, n, c->vision_width, e);
    }
    if (d->image_size && d->image_size != c->image_size) {
        const char *field = oc ? "vision_cfg.image_size" : "vision_config.image_size";
        const cs_tensor *t = find(w, n, "visual.attnpool.positional_embedding");
        char s[160];
        shape_str(t->shape, t->ndim, s, sizeof s);
        if (d->image_size % CS_CLIP_RESNET_REDUCTION)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: %s %d is not a multiple of 32 (a ResNet's pooling grid)", label,
                           field, d->image_size);
        long long g = d->image_size / CS_CLIP_RESNET_REDUCTION;
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: %s is %d, which needs tensor visual.attnpool.positional_embedding of "
                       "shape [%lld, %lld]; it has %s",
                       label, field, d->image_size, g * g + 1, (long long)t->shape[1], s);
    }
    return 0;
}

int cs_model_config_resolve(const cs_model_config *cfg, const cs_tensor *w, int n,
                            const char *weights_label, cs_clip_config *clip, cs_preprocess_cfg *pp,
                            cs_error *e) {
    cs_clip_config c;
    int rc = cs_clip_config_infer(w, n, weights_label, &c, e);
    if (rc) return rc;
    const cs_clip_config *d = &cfg->clip;
    int oc = cfg->arch_kind == CS_CONFIG_OPENCLIP;
    /* open_clip declares MLP widths as ratios of the widths. */
    cs_clip_config dd = *d;
    /* Widths <= 2^14 and ratios <= 64: the products fit in int; a ratio
     * giving no MLP at all conflicts as -1. */
    if (oc && cfg->vision_mlp_ratio > 0)
        dd.vision_mlp = (int)(c.vision_width * cfg->vision_mlp_ratio);
    if (oc && cfg->vision_mlp_ratio > 0 && dd.vision_mlp < 1) dd.vision_mlp = -1;
    if (oc && cfg->text_mlp_ratio > 0) dd.text_mlp = (int)(c.text_width * cfg->text_mlp_ratio);
    if (oc && cfg->text_mlp_ratio > 0 && dd.text_mlp < 1) dd.text_mlp = -1;
    const int rn = cs_clip_config_is_resnet(&c);
    if (!rn && cs_clip_config_is_resnet(d))
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: vision_cfg.layers is a list of stages (a ResNet), but the weights are "
                       "a ViT (no tensor visual.attnpool.positional_embedding)",
                       cfg->arch_label);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        /* A ResNet's vision sizes are checked by resolve_resnet. */
        if (rn && fields[i].tensor != NULL && strncmp(fields[i].tensor, "visual.", 7) == 0)
            continue;
        if (rn && fields[i].layer_prefix && strncmp(fields[i].layer_prefix, "visual.", 7) == 0)
            continue;
        int v = get_field(&dd, fields[i].off), have = get_field(&c, fields[i].off);
        if (v && v != have) return conflict(cfg, &fields[i], v, w, n, have, e);
    }
    if (rn) {
        if ((rc = resolve_resnet(cfg, &c, w, n, e))) return rc;
    } else if (d->image_size && d->image_size != c.image_size) {
        /* The image size shows in the position count: (R / P)^2 + 1 rows. */
        const char *field = oc ? "vision_cfg.image_size" : "vision_config.image_size";
        const cs_tensor *t = find(w, n, "visual.positional_embedding");
        char have[160];
        shape_str(t->shape, t->ndim, have, sizeof have);
        if (d->image_size % c.patch_size)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: %s %d is not a multiple of the patch size %d (tensor "
                           "visual.conv1.weight)",
                           cfg->arch_label, field, d->image_size, c.patch_size);
        long long g = d->image_size / c.patch_size;
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: %s is %d, which needs tensor visual.positional_embedding of shape "
                       "[%lld, %lld]; it has %s",
                       cfg->arch_label, field, d->image_size, g * g + 1, (long long)t->shape[1],
                       have);
    }
    /* What the shapes cannot tell. */
    if (d->vision_heads) c.vision_heads = d->vision_heads;
    if (d->text_heads) c.text_heads = d->text_heads;
    /* A ResNet's heads attend over the pool's 32w channels. */
    const int attn_width = rn ? c.vision_width * CS_CLIP_RESNET_REDUCTION : c.vision_width;
    if (oc && cfg->vision_head_width) {
        if (attn_width % cfg->vision_head_width)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: vision_cfg.head_width %d does not divide the width %d (tensor "
                           "%s)",
                           cfg->arch_label, cfg->vision_head_width, attn_width,
                           rn ? "visual.attnpool.positional_embedding" : "visual.conv1.weight");
        c.vision_heads = attn_width / cfg->vision_head_width;
    }
    if (attn_width % c.vision_heads)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: %s %d does not divide the width %d",
                       cfg->arch_label, oc ? "vision heads" : "vision_config.num_attention_heads",
                       c.vision_heads, attn_width);
    if (c.text_width % c.text_heads)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: %s %d does not divide the width %d",
                       cfg->arch_label, oc ? "text_cfg.heads" : "text_config.num_attention_heads",
                       c.text_heads, c.text_width);
    if (d->quick_gelu >= 0) c.quick_gelu = d->quick_gelu;
    if (d->ln_eps > 0) c.ln_eps = d->ln_eps;
    if ((rc = cs_clip_config_validate(&c, weights_label, e))) return rc;

    pp->size = c.image_size;
    if (cfg->crop_size && cfg->crop_size != c.image_size)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: crop_size %d differs from the model's %d",
                       cfg->pp_label, cfg->crop_size, c.image_size);
    if (cfg->has_mean) memcpy(pp->mean, cfg->mean, sizeof pp->mean);
    if (cfg->has_std) memcpy(pp->std, cfg->std, sizeof pp->std);
    *clip = c;
    return 0;
}
