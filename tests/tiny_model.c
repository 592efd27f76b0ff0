/* tiny_model.c - a tiny random CLIP written to disk for the tests (see
 * tiny_model.h). Weights are drawn from a fixed-seed generator and rounded
 * to fp16-exact values, so the F32 and F16 layouts hold the same numbers. */
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

/* The merges of the synthetic tokenizer, in rank order. Each joins two
 * tokens that exist already (bytes or earlier merges). */
static const char *const merges[] = {
    "t h", "h e</w>",  "th e</w>", "a n",     "i n",        "e r",      "o n",     "r e",
    "a t", "an d</w>", "i s</w>",  "o f</w>", "c a",        "ca t</w>", "d o",     "do g</w>",
    "p h", "o t",      "o o</w>",  "ph ot",   "phot o</w>", "re d</w>", "o g</w>",
};
#define N_MERGES (int)(sizeof merges / sizeof merges[0])

int tiny_vocab_size(void) {
    return 512 + N_MERGES + 2;
}

tiny_spec tiny_default_spec(void) {
    tiny_spec s = {32, 8, 64, 2, 2, 64, 2, 2, 16, 32, 1, {0, 0, 0, 0}};
    return s;
}

tiny_spec tiny_resnet_spec(void) {
    tiny_spec s = tiny_default_spec();
    s.image_size = 64;
    s.patch = 0;
    s.vision_width = 8;
    s.vision_heads = 4;
    s.vision_layers = 5;
    s.stages[0] = 1, s.stages[1] = 2, s.stages[2] = 1, s.stages[3] = 1;
    return s;
}

static uint64_t rng_state;
static double rnd(void) { /* xorshift64*, uniform in [-1, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t v = rng_state * 2685821657736338717ull;
    return (double)(v >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static uint16_t f32_to_f16(float f) { /* exact for the fp16-representable values used here */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    int exp = (int)((x >> 23) & 0xff) - 127 + 15;
    uint32_t mant = x & 0x7fffffu;
    if (exp <= 0) return (uint16_t)sign; /* tiny values flushed: none are drawn */
    return (uint16_t)(sign | ((uint32_t)exp << 10) | (mant >> 13));
}

static float round_f16(float f) {
    /* keep 10 mantissa bits and a normal exponent */
    if (fabsf(f) < 1e-4f) return 0.0f;
    uint32_t x;
    memcpy(&x, &f, 4);
    x += 0x1000u; /* round to nearest */
    x &= ~0x1fffu;
    memcpy(&f, &x, 4);
    return f;
}

typedef struct wlist {
    int n, cap;
    cs_tensor *t;
    char **names;
    void **bufs;
} wlist;

static int wl_add(wlist *w, const char *name, int ndim, const int64_t *shape, double scale,
                  double offset, int f16, cs_error *e) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t);
        w->names = realloc(w->names, (size_t)w->cap * sizeof *w->names);
        w->bufs = realloc(w->bufs, (size_t)w->cap * sizeof *w->bufs);
        if (!w->t || !w->names || !w->bufs) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    size_t es = f16 ? 2 : 4;
    void *buf = malloc((size_t)n * es + 1);
    char *nm = strdup(name);
    if (!buf || !nm) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        float v = round_f16((float)(offset + scale * rnd()));
        if (f16)
            ((uint16_t *)buf)[i] = f32_to_f16(v);
        else
            ((float *)buf)[i] = v;
    }
    cs_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = f16 ? CS_DTYPE_F16 : CS_DTYPE_F32;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->data = buf;
    t->nbytes = (size_t)n * es;
    w->names[w->n] = nm;
    w->bufs[w->n] = buf;
    w->n++;
    return 0;
}

static void wl_free(wlist *w) {
    for (int i = 0; i < w->n; i++) {
        free(w->names[i]);
        free(w->bufs[i]);
    }
    free(w->t);
    free(w->names);
    free(w->bufs);
}

#define ADD(name, scale, offset, ...)                                                              \
    do {                                                                                           \
        int64_t sh_[] = {__VA_ARGS__};                                                             \
        rc = wl_add(&w, name, (int)(sizeof sh_ / sizeof sh_[0]), sh_, scale, offset, f16, e);      \
        if (rc) goto done;                                                                         \
    } while (0)
#define ADD0(name, scale, offset)                                                                  \
    do {                                                                                           \
        rc = wl_add(&w, name, 0, NULL, scale, offset, f16, e);                                     \
        if (rc) goto done;                                                                         \
    } while (0)

/* A convolution's weight and the batch norm after it, under OpenAI's
 * names: conv "<p><conv>.weight" [o, i, k, k], norm "<p><bn>.*" [o]. */
static int add_conv_bn(wlist *w, const char *p, const char *conv, const char *bn, int64_t o,
                       int64_t i, int64_t k, int f16, cs_error *e) {
    char n[160];
    int64_t cs[] = {o, i, k, k};
    snprintf(n, sizeof n, "%s%s.weight", p, conv);
    int rc = wl_add(w, n, 4, cs, 1.0 / sqrt((double)(i * k * k)), 0, f16, e);
    static const struct {
        const char *name;
        double scale, offset;
    } norm[] = {{"weight", 0.2, 1.0},
                {"bias", 0.1, 0},
                {"running_mean", 0.2, 0},
                {"running_var", 0.5, 1.0}};
    for (size_t j = 0; !rc && j < sizeof norm / sizeof norm[0]; j++) {
        snprintf(n, sizeof n, "%s%s.%s", p, bn, norm[j].name);
        rc = wl_add(w, n, 1, &o, norm[j].scale, norm[j].offset, f16, e);
    }
    return rc;
}

/* The ResNet image tower, as OpenAI's ModifiedResNet names it. */
static int draw_resnet(wlist *w, const tiny_spec *s, int f16, cs_error *e) {
    const int64_t vw = s->vision_width, pool = 32 * vw, g = s->image_size / 32;
    int rc = add_conv_bn(w, "visual.", "conv1", "bn1", vw / 2, 3, 3, f16, e);
    if (!rc) rc = add_conv_bn(w, "visual.", "conv2", "bn2", vw / 2, vw / 2, 3, f16, e);
    if (!rc) rc = add_conv_bn(w, "visual.", "conv3", "bn3", vw, vw / 2, 3, f16, e);
    int64_t in = vw;
    for (int st = 0; st < 4; st++) {
        const int64_t planes = vw << st;
        for (int b = 0; !rc && b < s->stages[st]; b++) {
            char p[64];
            snprintf(p, sizeof p, "visual.layer%d.%d.", st + 1, b);
            const int64_t bin = b == 0 ? in : planes * 4;
            rc = add_conv_bn(w, p, "conv1", "bn1", planes, bin, 1, f16, e);
            if (!rc) rc = add_conv_bn(w, p, "conv2", "bn2", planes, planes, 3, f16, e);
            if (!rc) rc = add_conv_bn(w, p, "conv3", "bn3", planes * 4, planes, 1, f16, e);
            if (!rc && b == 0) /* stride 2 after stage 1, or a width change */
                rc = add_conv_bn(w, p, "downsample.0", "downsample.1", planes * 4, bin, 1, f16, e);
        }
        in = planes * 4;
    }
    int64_t ps[] = {g * g + 1, pool}, ws[] = {pool, pool}, os[] = {s->embed_dim, pool};
    if (!rc) rc = wl_add(w, "visual.attnpool.positional_embedding", 2, ps, 0.1, 0, f16, e);
    static const char *const qkv[] = {"q_proj", "k_proj", "v_proj"};
    for (int i = 0; !rc && i < 3; i++) {
        char n[64];
        snprintf(n, sizeof n, "visual.attnpool.%s.weight", qkv[i]);
        rc = wl_add(w, n, 2, ws, 1.0 / sqrt((double)pool), 0, f16, e);
        snprintf(n, sizeof n, "visual.attnpool.%s.bias", qkv[i]);
        if (!rc) rc = wl_add(w, n, 1, ws, 0.05, 0, f16, e);
    }
    if (!rc) rc = wl_add(w, "visual.attnpool.c_proj.weight", 2, os, 0.1, 0, f16, e);
    if (!rc) rc = wl_add(w, "visual.attnpool.c_proj.bias", 1, os, 0.05, 0, f16, e);
    return rc;
}

/* The OpenAI names, in the order build_model would see them. Weights are
 * drawn in one fixed order so both layouts get the same numbers. */
static int draw_weights(wlist *wo, const tiny_spec *s, int f16, cs_error *e) {
    wlist w = {0};
    int rc = 0;
    const int resnet = s->stages[0] > 0;
    const int64_t g = resnet ? 0 : s->image_size / s->patch, vw = s->vision_width,
                  tw = s->text_width;
    if (resnet) {
        rc = draw_resnet(&w, s, f16, e);
        if (rc) goto done;
    } else {
        ADD("visual.conv1.weight", 0.05, 0, vw, 3, s->patch, s->patch);
        ADD("visual.class_embedding", 0.5, 0, vw);
        ADD("visual.positional_embedding", 0.1, 0, g * g + 1, vw);
        ADD("visual.ln_pre.weight", 0.1, 1.0, vw);
        ADD("visual.ln_pre.bias", 0.1, 0, vw);
    }
    for (int pass = resnet ? 1 : 0; pass < 2; pass++) {
        const char *pre = pass == 0 ? "visual.transformer.resblocks" : "transformer.resblocks";
        int64_t W = pass == 0 ? vw : tw;
        int L = pass == 0 ? s->vision_layers : s->text_layers;
        for (int i = 0; i < L; i++) {
            char n[128];
#define B(suffix, scale, offset, ...)                                                              \
    snprintf(n, sizeof n, "%s.%d.%s", pre, i, suffix);                                             \
    ADD(n, scale, offset, __VA_ARGS__)
            B("ln_1.weight", 0.1, 1.0, W);
            B("ln_1.bias", 0.1, 0, W);
            B("attn.in_proj_weight", 0.15, 0, 3 * W, W);
            B("attn.in_proj_bias", 0.05, 0, 3 * W);
            B("attn.out_proj.weight", 0.1, 0, W, W);
            B("attn.out_proj.bias", 0.05, 0, W);
            B("ln_2.weight", 0.1, 1.0, W);
            B("ln_2.bias", 0.1, 0, W);
            B("mlp.c_fc.weight", 0.1, 0, 4 * W, W);
            B("mlp.c_fc.bias", 0.05, 0, 4 * W);
            B("mlp.c_proj.weight", 0.05, 0, W, 4 * W);
            B("mlp.c_proj.bias", 0.05, 0, W);
#undef B
        }
        if (pass == 0) {
            ADD("visual.ln_post.weight", 0.1, 1.0, vw);
            ADD("visual.ln_post.bias", 0.1, 0, vw);
            ADD("visual.proj", 0.1, 0, vw, s->embed_dim);
        }
        if (pass == 0 || resnet) {
            ADD("token_embedding.weight", 0.3, 0, tiny_vocab_size(), tw);
            ADD("positional_embedding", 0.05, 0, s->context_length, tw);
        }
    }
    ADD("ln_final.weight", 0.1, 1.0, tw);
    ADD("ln_final.bias", 0.1, 0, tw);
    ADD("text_projection", 0.1, 0, tw, s->embed_dim);
    ADD0("logit_scale", 0.0, 4.6052);
done:
    *wo = w;
    return rc;
}

static const cs_tensor *wfind(const wlist *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0) return &w->t[i];
    return NULL;
}

/* Rewrites OpenAI-named weights under transformers' names: q/k/v split,
 * projections transposed. */
static int to_hf(const wlist *o, wlist *h, const tiny_spec *s, cs_error *e) {
    int rc = 0;
    memset(h, 0, sizeof *h);
    static const char *const ren[][2] = {
        {"visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"},
        {"visual.class_embedding", "vision_model.embeddings.class_embedding"},
        {"visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"},
        {"visual.ln_pre.weight", "vision_model.pre_layrnorm.weight"},
        {"visual.ln_pre.bias", "vision_model.pre_layrnorm.bias"},
        {"visual.ln_post.weight", "vision_model.post_layernorm.weight"},
        {"visual.ln_post.bias", "vision_model.post_layernorm.bias"},
        {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
        {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
        {"ln_final.weight", "text_model.final_layer_norm.weight"},
        {"ln_final.bias", "text_model.final_layer_norm.bias"},
        {"logit_scale", "logit_scale"},
    };
    static const char *const blk[][2] = {
        {"ln_1.weight", "layer_norm1.weight"},
        {"ln_1.bias", "layer_norm1.bias"},
        {"attn.out_proj.weight", "self_attn.out_proj.weight"},
        {"attn.out_proj.bias", "self_attn.out_proj.bias"},
        {"ln_2.weight", "layer_norm2.weight"},
        {"ln_2.bias", "layer_norm2.bias"},
        {"mlp.c_fc.weight", "mlp.fc1.weight"},
        {"mlp.c_fc.bias", "mlp.fc1.bias"},
        {"mlp.c_proj.weight", "mlp.fc2.weight"},
        {"mlp.c_proj.bias", "mlp.fc2.bias"},
    };
    h->cap = o->n * 2;
    h->t = calloc((size_t)h->cap, sizeof *h->t);
    h->names = calloc((size_t)h->cap, sizeof *h->names);
    h->bufs = calloc((size_t)h->cap, sizeof *h->bufs);
    if (!h->t || !h->names || !h->bufs) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
#define PUSH(nm, tens, buf)                                                                        \
    do {                                                                                           \
        char *nm_ = (nm);                                                                          \
        h->t[h->n] = tens;                                                                         \
        h->names[h->n] = nm_;                                                                      \
        h->t[h->n].name = nm_;                                                                     \
        h->bufs[h->n] = buf;                                                                       \
        h->n++;                                                                                    \
    } while (0)
    for (size_t k = 0; k < sizeof ren / sizeof ren[0]; k++) {
        const cs_tensor *t = wfind(o, ren[k][0]);
        void *buf = malloc(t->nbytes + 1);
        memcpy(buf, t->data, t->nbytes);
        cs_tensor c = *t;
        c.data = buf;
        PUSH(strdup(ren[k][1]), c, buf);
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *op = pass == 0 ? "visual.transformer.resblocks" : "transformer.resblocks";
        const char *hp = pass == 0 ? "vision_model.encoder.layers" : "text_model.encoder.layers";
        int L = pass == 0 ? s->vision_layers : s->text_layers;
        for (int i = 0; i < L; i++) {
            char a[160], b[160];
            for (size_t k = 0; k < sizeof blk / sizeof blk[0]; k++) {
                snprintf(a, sizeof a, "%s.%d.%s", op, i, blk[k][0]);
                snprintf(b, sizeof b, "%s.%d.%s", hp, i, blk[k][1]);
                const cs_tensor *t = wfind(o, a);
                void *buf = malloc(t->nbytes);
                memcpy(buf, t->data, t->nbytes);
                cs_tensor c = *t;
                c.data = buf;
                PUSH(strdup(b), c, buf);
            }
            for (int wb = 0; wb < 2; wb++) {
                snprintf(a, sizeof a, "%s.%d.attn.in_proj_%s", op, i, wb ? "bias" : "weight");
                const cs_tensor *t = wfind(o, a);
                size_t third = t->nbytes / 3;
                for (int q = 0; q < 3; q++) {
                    snprintf(b, sizeof b, "%s.%d.self_attn.%c_proj.%s", hp, i, "qkv"[q],
                             wb ? "bias" : "weight");
                    void *buf = malloc(third);
                    memcpy(buf, (const char *)t->data + q * third, third);
                    cs_tensor c = *t;
                    c.shape[0] /= 3;
                    c.nbytes = third;
                    c.data = buf;
                    PUSH(strdup(b), c, buf);
                }
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        const cs_tensor *t = wfind(o, k ? "text_projection" : "visual.proj");
        size_t es = cs_dtype_size(t->dtype);
        int64_t r = t->shape[0], c = t->shape[1];
        unsigned char *buf = malloc(t->nbytes);
        for (int64_t i = 0; i < r; i++)
            for (int64_t j = 0; j < c; j++)
                memcpy(buf + (j * r + i) * es, (const unsigned char *)t->data + (i * c + j) * es,
                       es);
        cs_tensor ct = *t;
        ct.shape[0] = c;
        ct.shape[1] = r;
        ct.data = buf;
        PUSH(strdup(k ? "text_projection.weight" : "visual_projection.weight"), ct, buf);
    }
#undef PUSH
    return rc;
}

/* CLIP's byte-to-unicode table: printable Latin-1 bytes map to themselves,
 * the others to U+0100 upwards, in byte order. */
static void byte_unicode(int b, char out[8]) {
    static int table[256], ready;
    if (!ready) {
        int n = 0;
        for (int i = 0; i < 256; i++) {
            int printable =
                (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
            table[i] = printable ? i : 256 + n++;
        }
        ready = 1;
    }
    int cp = table[b];
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

static void json_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else
            fputc(c, f);
    }
}

static int write_tokenizer(const char *dir, cs_error *e) {
    char *pv = cs_path_join(dir, "vocab.json", e), *pm = cs_path_join(dir, "merges.txt", e);
    FILE *fv = pv ? fopen(pv, "wb") : NULL, *fm = pm ? fopen(pm, "wb") : NULL;
    int rc = fv && fm ? 0 : cs_fail(e, CLIPSCORE_EIO, "cannot write the tokenizer into %s", dir);
    if (!rc) {
        int id = 0;
        fputc('{', fv);
        for (int pass = 0; pass < 2; pass++)
            for (int b = 0; b < 256; b++) {
                char u[8];
                byte_unicode(b, u);
                fprintf(fv, "%s\"", id ? "," : "");
                json_escape(fv, u);
                fprintf(fv, "%s\":%d", pass ? "</w>" : "", id++);
            }
        fprintf(fm, "#version: 0.2\n");
        for (int k = 0; k < N_MERGES; k++) {
            char joined[64];
            const char *sp = strchr(merges[k], ' ');
            snprintf(joined, sizeof joined, "%.*s%s", (int)(sp - merges[k]), merges[k], sp + 1);
            fprintf(fv, ",\"%s\":%d", joined, id++);
            fprintf(fm, "%s\n", merges[k]);
        }
        fprintf(fv, ",\"<|startoftext|>\":%d,\"<|endoftext|>\":%d}", id, id + 1);
    }
    if (fv && fclose(fv) != 0 && !rc) rc = cs_fail(e, CLIPSCORE_EIO, "%s: write failed", pv);
    if (fm && fclose(fm) != 0 && !rc) rc = cs_fail(e, CLIPSCORE_EIO, "%s: write failed", pm);
    free(pv);
    free(pm);
    return rc;
}

int tiny_model_write(const char *dir, const char *layout, const tiny_spec *s, unsigned seed,
                     int f16, cs_error *e) {
    int rc = cs_mkdir_p(dir, e);
    if (rc) return rc;
    rng_state = 0x9E3779B97F4A7C15ull ^ seed;
    wlist o = {0}, h = {0};
    int hf = strcmp(layout, "hf") == 0;
    if (hf && s->stages[0] > 0)
        return cs_fail(e, CLIPSCORE_EARG, "tiny_model_write: a ResNet has no Hugging Face layout");
    rc = draw_weights(&o, s, f16, e);
    char *cfg = NULL, *wpath = NULL;
    if (!rc && hf) rc = to_hf(&o, &h, s, e);
    if (!rc) {
        wpath = cs_path_join(dir, hf ? "model.safetensors" : "open_clip_model.safetensors", e);
        rc = wpath ? cs_safetensors_write(wpath, hf ? h.t : o.t, hf ? h.n : o.n, e)
                   : CLIPSCORE_ENOMEM;
    }
    if (!rc) {
        cfg = cs_path_join(dir, hf ? "config.json" : "open_clip_config.json", e);
        FILE *f = cfg ? fopen(cfg, "wb") : NULL;
        if (!f)
            rc = cs_fail(e, CLIPSCORE_EIO, "cannot write the config into %s", dir);
        else {
            const char *act = s->quick_gelu ? "quick_gelu" : "gelu";
            if (hf)
                fprintf(f,
                        "{\"model_type\": \"clip\", \"projection_dim\": %d,\n"
                        " \"text_config\": {\"hidden_size\": %d, \"num_attention_heads\": %d, "
                        "\"num_hidden_layers\": %d, \"max_position_embeddings\": %d, "
                        "\"vocab_size\": %d, "
                        "\"hidden_act\": \"%s\"},\n"
                        " \"vision_config\": {\"hidden_size\": %d, \"num_attention_heads\": %d, "
                        "\"num_hidden_layers\": %d, \"image_size\": %d, \"patch_size\": %d, "
                        "\"hidden_act\": \"%s\", \"layer_norm_eps\": 1e-05}}\n",
                        s->embed_dim, s->text_width, s->text_heads, s->text_layers,
                        s->context_length, tiny_vocab_size(), act, s->vision_width, s->vision_heads,
                        s->vision_layers, s->image_size, s->patch, act);
            else if (s->stages[0] > 0) /* as open_clip's RN50.json: stages, no patches */
                fprintf(f,
                        "{\"model_cfg\": {\"embed_dim\": %d, \"quick_gelu\": %s,\n"
                        " \"vision_cfg\": {\"image_size\": %d, \"layers\": [%d, %d, %d, %d], "
                        "\"width\": %d, \"patch_size\": null, \"head_width\": %d},\n"
                        " \"text_cfg\": {\"context_length\": %d, \"vocab_size\": %d, "
                        "\"width\": %d, \"heads\": %d, \"layers\": %d}}}\n",
                        s->embed_dim, s->quick_gelu ? "true" : "false", s->image_size, s->stages[0],
                        s->stages[1], s->stages[2], s->stages[3], s->vision_width,
                        32 * s->vision_width / s->vision_heads, s->context_length,
                        tiny_vocab_size(), s->text_width, s->text_heads, s->text_layers);
            else
                fprintf(
                    f,
                    "{\"model_cfg\": {\"embed_dim\": %d, \"quick_gelu\": %s,\n"
                    " \"vision_cfg\": {\"image_size\": %d, \"layers\": %d, \"width\": %d, "
                    "\"patch_size\": %d, \"head_width\": %d},\n"
                    " \"text_cfg\": {\"context_length\": %d, \"vocab_size\": %d, \"width\": %d, "
                    "\"heads\": %d, \"layers\": %d}},\n"
                    " \"preprocess_cfg\": {\"mean\": [0.48145466, 0.4578275, 0.40821073], "
                    "\"std\": [0.26862954, 0.26130258, 0.27577711]}}\n",
                    s->embed_dim, s->quick_gelu ? "true" : "false", s->image_size, s->vision_layers,
                    s->vision_width, s->patch, s->vision_width / s->vision_heads, s->context_length,
                    tiny_vocab_size(), s->text_width, s->text_heads, s->text_layers);
            if (fclose(f) != 0) rc = cs_fail(e, CLIPSCORE_EIO, "%s: write failed", cfg);
        }
    }
    if (!rc) rc = write_tokenizer(dir, e);
    wl_free(&o);
    wl_free(&h);
    free(cfg);
    free(wpath);
    return rc;
}
