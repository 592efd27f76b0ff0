/* model_files.c - recognising a model's layout, reading its weights and
 * presenting them under OpenAI's names (see model_files.h).
 * Leaves out: parsing and checking the configuration (model_config.c),
 * downloading (fetch.c) and the forward pass (torch_shim.cpp). */
#define _GNU_SOURCE
#include "model_files.h"

#include "model_config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------ ownership */

static void *own(cs_model_files *mf, void *p, cs_error *e) {
    if (!p) return NULL;
    void **no = realloc(mf->owned, (size_t)(mf->n_owned + 1) * sizeof *no);
    if (!no) {
        free(p);
        cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        return NULL;
    }
    mf->owned = no;
    mf->owned[mf->n_owned++] = p;
    return p;
}

static int add_weight(cs_model_files *mf, const cs_tensor *t, int *cap, cs_error *e) {
    if (mf->n == *cap) {
        int nc = *cap ? *cap * 2 : 256;
        cs_tensor *nw = realloc(mf->weights, (size_t)nc * sizeof *nw);
        if (!nw) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        mf->weights = nw;
        *cap = nc;
    }
    mf->weights[mf->n++] = *t;
    return 0;
}

void cs_model_files_release(cs_model_files *mf, int i) {
    if (i < 0 || i >= mf->n) return;
    const cs_tensor *t = &mf->weights[i];
    const char *d = t->data, *base = mf->st.map;
    if (mf->st.mapped && d >= base && d + t->nbytes <= base + mf->st.map_len) {
        /* Only whole pages inside the tensor: its neighbours stay mapped. */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        uintptr_t lo = ((uintptr_t)d + page - 1) / page * page;
        uintptr_t hi = ((uintptr_t)d + t->nbytes) / page * page;
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
    } else if (mf->archive) {
        cs_archive_release(mf->archive, t->data);
    }
}

void cs_model_files_close(cs_model_files *mf) {
    if (!mf) return;
    free(mf->path);
    free(mf->dir);
    free(mf->weights_path);
    free(mf->config_path);
    free(mf->vocab_path);
    free(mf->merges_path);
    free(mf->bpe_gz_path);
    free(mf->weights);
    for (int i = 0; i < mf->n_owned; i++) free(mf->owned[i]);
    free(mf->owned);
    cs_safetensors_close(&mf->st);
    cs_archive_free(mf->archive);
    memset(mf, 0, sizeof *mf);
}

/* ------------------------------------------------------------ sources */

static int src_count(const cs_model_files *mf) {
    return mf->archive ? cs_archive_count(mf->archive) : mf->st.n;
}

static const cs_tensor *src_at(const cs_model_files *mf, int i) {
    return mf->archive ? cs_archive_tensor(mf->archive, i) : &mf->st.tensors[i];
}

static const cs_tensor *src_find(const cs_model_files *mf, const char *name) {
    int n = src_count(mf);
    for (int i = 0; i < n; i++) {
        const cs_tensor *t = src_at(mf, i);
        if (strcmp(t->name, name) == 0) return t;
    }
    return NULL;
}

/* N+1 when name is "<prefix>N.<...>", else 0: layer counts are the largest. */
static int layer_of(const char *name, const char *prefix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return 0;
    char *end;
    long v = strtol(name + pl, &end, 10);
    return end != name + pl && *end == '.' && v >= 0 && v < 1000 ? (int)v + 1 : 0;
}

/* Layer count among the source tensors' names. */
static int count_layers(const cs_model_files *mf, const char *prefix) {
    int n = src_count(mf), layers = 0;
    for (int i = 0; i < n; i++) {
        int l = layer_of(src_at(mf, i)->name, prefix);
        if (l > layers) layers = l;
    }
    return layers;
}

/* ------------------------------------------------------------ HF naming */

static const cs_tensor *need(const cs_model_files *mf, const char *name, cs_error *e) {
    const cs_tensor *t = src_find(mf, name);
    if (!t) cs_fail(e, CLIPSCORE_EMODEL, "%s: tensor %s is missing", mf->weights_path, name);
    return t;
}

static int map_rename(cs_model_files *mf, int *cap, const char *from, const char *to, cs_error *e) {
    const cs_tensor *t = need(mf, from, e);
    if (!t) return CLIPSCORE_EMODEL;
    char *name = own(mf, cs_strdup(to, e), e);
    if (!name) return CLIPSCORE_ENOMEM;
    cs_tensor v = *t;
    v.name = name;
    return add_weight(mf, &v, cap, e);
}

/* HF stores projections as Linear weights [D, W]; OpenAI as matrices [W, D]. */
static int map_transpose(cs_model_files *mf, int *cap, const char *from, const char *to,
                         cs_error *e) {
    const cs_tensor *t = need(mf, from, e);
    if (!t) return CLIPSCORE_EMODEL;
    if (t->ndim != 2)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: tensor %s should have 2 dimensions",
                       mf->weights_path, from);
    size_t es = cs_dtype_size(t->dtype);
    int64_t r = t->shape[0], c = t->shape[1];
    unsigned char *buf = own(mf, cs_malloc((size_t)(r * c), es, e), e);
    char *name = own(mf, cs_strdup(to, e), e);
    if (!buf || !name) return CLIPSCORE_ENOMEM;
    const unsigned char *src = t->data;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) memcpy(buf + (j * r + i) * es, src + (i * c + j) * es, es);
    cs_tensor v = *t;
    v.name = name;
    v.shape[0] = c;
    v.shape[1] = r;
    v.data = buf;
    return add_weight(mf, &v, cap, e);
}

/* Stacks HF's q_proj, k_proj, v_proj (weight [W, W] or bias [W]) into
 * OpenAI's in_proj ([3W, W] or [3W]). */
static int map_qkv(cs_model_files *mf, int *cap, const char *layer, const char *kind,
                   const char *to, cs_error *e) {
    const cs_tensor *p[3];
    static const char *const qkv[3] = {"q", "k", "v"};
    for (int i = 0; i < 3; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s.self_attn.%s_proj.%s", layer, qkv[i], kind);
        if (!(p[i] = need(mf, name, e))) return CLIPSCORE_EMODEL;
        if (p[i]->dtype != p[0]->dtype || p[i]->ndim != p[0]->ndim || p[i]->nbytes != p[0]->nbytes)
            return cs_fail(e, CLIPSCORE_EMODEL, "%s: %s differs in shape or dtype from q_proj",
                           mf->weights_path, name);
    }
    unsigned char *buf = own(mf, cs_malloc(3, p[0]->nbytes, e), e);
    char *name = own(mf, cs_strdup(to, e), e);
    if (!buf || !name) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < 3; i++) memcpy(buf + (size_t)i * p[0]->nbytes, p[i]->data, p[0]->nbytes);
    cs_tensor v = *p[0];
    v.name = name;
    v.shape[0] *= 3;
    v.data = buf;
    v.nbytes = 3 * p[0]->nbytes;
    return add_weight(mf, &v, cap, e);
}

static int map_hf_blocks(cs_model_files *mf, int *cap, const char *hf, const char *oa, int layers,
                         cs_error *e) {
    static const char *const pairs[][2] = {
        {"layer_norm1.weight", "ln_1.weight"},
        {"layer_norm1.bias", "ln_1.bias"},
        {"self_attn.out_proj.weight", "attn.out_proj.weight"},
        {"self_attn.out_proj.bias", "attn.out_proj.bias"},
        {"layer_norm2.weight", "ln_2.weight"},
        {"layer_norm2.bias", "ln_2.bias"},
        {"mlp.fc1.weight", "mlp.c_fc.weight"},
        {"mlp.fc1.bias", "mlp.c_fc.bias"},
        {"mlp.fc2.weight", "mlp.c_proj.weight"},
        {"mlp.fc2.bias", "mlp.c_proj.bias"},
    };
    for (int i = 0; i < layers; i++) {
        char from[256], to[256], layer[200];
        snprintf(layer, sizeof layer, "%s%d", hf, i);
        for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
            snprintf(from, sizeof from, "%s.%s", layer, pairs[k][0]);
            snprintf(to, sizeof to, "%s%d.%s", oa, i, pairs[k][1]);
            int rc = map_rename(mf, cap, from, to, e);
            if (rc) return rc;
        }
        snprintf(to, sizeof to, "%s%d.attn.in_proj_weight", oa, i);
        int rc = map_qkv(mf, cap, layer, "weight", to, e);
        if (rc) return rc;
        snprintf(to, sizeof to, "%s%d.attn.in_proj_bias", oa, i);
        if ((rc = map_qkv(mf, cap, layer, "bias", to, e))) return rc;
    }
    return 0;
}

static int map_hf(cs_model_files *mf, cs_error *e) {
    int cap = 0, rc;
    static const char *const pairs[][2] = {
        {"vision_model.embeddings.patch_embedding.weight", "visual.conv1.weight"},
        {"vision_model.embeddings.class_embedding", "visual.class_embedding"},
        {"vision_model.embeddings.position_embedding.weight", "visual.positional_embedding"},
        {"vision_model.post_layernorm.weight", "visual.ln_post.weight"},
        {"vision_model.post_layernorm.bias", "visual.ln_post.bias"},
        {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
        {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
        {"text_model.final_layer_norm.weight", "ln_final.weight"},
        {"text_model.final_layer_norm.bias", "ln_final.bias"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
        if ((rc = map_rename(mf, &cap, pairs[k][0], pairs[k][1], e))) return rc;
    /* transformers spells it "pre_layrnorm" (sic); accept the corrected name too. */
    const char *pre = src_find(mf, "vision_model.pre_layrnorm.weight")
                          ? "vision_model.pre_layrnorm"
                          : "vision_model.pre_layernorm";
    char from[128];
    snprintf(from, sizeof from, "%s.weight", pre);
    if ((rc = map_rename(mf, &cap, from, "visual.ln_pre.weight", e))) return rc;
    snprintf(from, sizeof from, "%s.bias", pre);
    if ((rc = map_rename(mf, &cap, from, "visual.ln_pre.bias", e))) return rc;
    if ((rc = map_transpose(mf, &cap, "visual_projection.weight", "visual.proj", e))) return rc;
    if ((rc = map_transpose(mf, &cap, "text_projection.weight", "text_projection", e))) return rc;
    rc = map_hf_blocks(mf, &cap, "vision_model.encoder.layers.", "visual.transformer.resblocks.",
                       count_layers(mf, "vision_model.encoder.layers."), e);
    if (rc) return rc;
    return map_hf_blocks(mf, &cap, "text_model.encoder.layers.", "transformer.resblocks.",
                         count_layers(mf, "text_model.encoder.layers."), e);
}

/* OpenAI / open_clip names are already ours; strip a "module." prefix left
 * by DataParallel checkpoints. */
static int map_openai(cs_model_files *mf, cs_error *e) {
    int cap = 0, n = src_count(mf);
    for (int i = 0; i < n; i++) {
        cs_tensor v = *src_at(mf, i);
        if (strncmp(v.name, "module.", 7) == 0) v.name += 7;
        int rc = add_weight(mf, &v, &cap, e);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------ layout */

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* Sets *out to dir/name when that file exists, else NULL. */
static int probe(const char *dir, const char *name, char **out, cs_error *e) {
    *out = NULL;
    char *p = cs_path_join(dir, name, e);
    if (!p) return CLIPSCORE_ENOMEM;
    if (cs_file_exists(p))
        *out = p;
    else
        free(p);
    return 0;
}

/* The single file in dir ending in suffix (e.g. ".pt"); NULL if none. */
static int probe_suffix(const char *dir, const char *suffix, char **out, cs_error *e) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_suffix(de->d_name, suffix)) continue;
        if (*out) {
            rc = cs_fail(e, CLIPSCORE_EMODEL,
                         "%s: several *%s files; pass the one to use with --model", dir, suffix);
            free(*out);
            *out = NULL;
            break;
        }
        if (!(*out = cs_path_join(dir, de->d_name, e))) {
            rc = CLIPSCORE_ENOMEM;
            break;
        }
        if (!cs_file_exists(*out)) {
            free(*out);
            *out = NULL;
        }
    }
    closedir(d);
    return rc;
}

static int find_files(cs_model_files *mf, cs_error *e) {
    int rc;
    if (cs_is_dir(mf->path)) {
        if (!(mf->dir = cs_strdup(mf->path, e))) return CLIPSCORE_ENOMEM;
    } else if (cs_file_exists(mf->path)) {
        if (!(mf->dir = cs_path_dirname(mf->path, e))) return CLIPSCORE_ENOMEM;
        if (!(mf->weights_path = cs_strdup(mf->path, e))) return CLIPSCORE_ENOMEM;
    } else {
        return cs_fail(e, CLIPSCORE_EMODEL, "--model %s: no such folder or file", mf->path);
    }
    char *hf_cfg, *oc_cfg;
    if ((rc = probe(mf->dir, "config.json", &hf_cfg, e))) return rc;
    if ((rc = probe(mf->dir, "open_clip_config.json", &oc_cfg, e))) {
        free(hf_cfg);
        return rc;
    }
    if (!mf->weights_path) {
        static const char *const names[] = {"model.safetensors", "pytorch_model.bin",
                                            "open_clip_model.safetensors",
                                            "open_clip_pytorch_model.bin"};
        for (size_t i = 0; i < 4 && !mf->weights_path; i++)
            if ((rc = probe(mf->dir, names[i], &mf->weights_path, e))) break;
        if (!rc && !mf->weights_path) rc = probe_suffix(mf->dir, ".pt", &mf->weights_path, e);
        if (!rc && !mf->weights_path &&
            !(rc = probe_suffix(mf->dir, ".safetensors", &mf->weights_path, e)) &&
            !mf->weights_path)
            rc = cs_fail(e, CLIPSCORE_EMODEL,
                         "%s: no weights found (expected model.safetensors, pytorch_model.bin, "
                         "open_clip_model.safetensors or an OpenAI .pt file)",
                         mf->dir);
    }
    if (rc) {
        free(hf_cfg);
        free(oc_cfg);
        return rc;
    }
    const char *base = strrchr(mf->weights_path, '/');
    base = base ? base + 1 : mf->weights_path;
    int is_oc = strncmp(base, "open_clip", 9) == 0 || (oc_cfg && !hf_cfg);
    if (is_oc) {
        mf->layout = "openclip";
        mf->config_path = oc_cfg;
        free(hf_cfg);
    } else if (has_suffix(base, ".pt") || has_suffix(base, ".pth")) {
        mf->layout = "openai-jit";
        free(hf_cfg);
        free(oc_cfg);
    } else {
        mf->layout = has_suffix(base, ".bin") ? "hf-bin" : "hf-safetensors";
        mf->config_path = hf_cfg;
        free(oc_cfg);
    }
    /* The tokenizer: vocab.json + merges.txt, or OpenAI's gzip'd merges. */
    if ((rc = probe(mf->dir, "vocab.json", &mf->vocab_path, e))) return rc;
    if ((rc = probe(mf->dir, "merges.txt", &mf->merges_path, e))) return rc;
    if (!mf->vocab_path || !mf->merges_path) {
        free(mf->vocab_path);
        free(mf->merges_path);
        mf->vocab_path = mf->merges_path = NULL;
        if ((rc = probe(mf->dir, "bpe_simple_vocab_16e6.txt.gz", &mf->bpe_gz_path, e))) return rc;
        if (!mf->bpe_gz_path && (rc = probe_suffix(mf->dir, ".txt.gz", &mf->bpe_gz_path, e)))
            return rc;
        if (!mf->bpe_gz_path)
            return cs_fail(e, CLIPSCORE_EMODEL,
                           "%s: no tokenizer found (expected vocab.json + merges.txt, or "
                           "bpe_simple_vocab_16e6.txt.gz)",
                           mf->dir);
    }
    return 0;
}

/* The configuration files beside the weights, checked against the
 * weights' shapes (model_config.h). */
static int read_configs(cs_model_files *mf, cs_error *e) {
    cs_model_config cfg;
    cs_model_config_init(&cfg);
    int rc = 0, hf = strncmp(mf->layout, "hf-", 3) == 0;
    if (mf->config_path)
        rc = cs_model_config_read_file(mf->config_path, hf ? CS_CONFIG_HF : CS_CONFIG_OPENCLIP,
                                       &cfg, e);
    if (!rc && hf) {
        char *pp = cs_path_join(mf->dir, "preprocessor_config.json", e);
        if (!pp) return CLIPSCORE_ENOMEM;
        if (cs_file_exists(pp))
            rc = cs_model_config_read_file(pp, CS_CONFIG_HF_PREPROCESSOR, &cfg, e);
        free(pp);
    }
    if (!rc)
        rc = cs_model_config_resolve(&cfg, mf->weights, mf->n, mf->weights_path, &mf->clip,
                                     &mf->preprocess, e);
    return rc;
}

int cs_model_files_open(const char *path, cs_model_files *mf, cs_error *e) {
    memset(mf, 0, sizeof *mf);
    mf->preprocess = cs_preprocess_default();
    int rc = CLIPSCORE_ENOMEM;
    if (!(mf->path = cs_strdup(path, e))) goto fail;
    if ((rc = find_files(mf, e))) goto fail;

    if (has_suffix(mf->weights_path, ".safetensors"))
        rc = cs_safetensors_open(mf->weights_path, &mf->st, e);
    else
        rc = cs_archive_open(mf->weights_path, &mf->archive, e);
    if (rc) goto fail;

    if (src_find(mf, "vision_model.embeddings.patch_embedding.weight"))
        rc = map_hf(mf, e);
    else
        rc = map_openai(mf, e);
    if (rc) goto fail;
    if ((rc = read_configs(mf, e))) goto fail;
    return 0;
fail:
    cs_model_files_close(mf);
    return rc;
}
