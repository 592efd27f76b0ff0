/* test_model.c - model files and the torch shim against an independent,
 * plain-C forward pass of CLIP written here (double precision, no libtorch),
 * on tiny random models the test writes itself (a ViT and a ResNet), end to
 * end and stage by stage (cs_torch_trace_*); broken configurations (refused at load, naming
 * file and field), the configuration parser on raw buffers, and hostile
 * pytorch_model.bin archives written by hand (tests/torch_zip.c); then,
 * when the shared conformance fixtures exist, every layout against the
 * reference implementation's embeddings. Leaves out: CUDA (the tests run
 * on the CPU) and the command line (test_cli.py).
 *
 * Tolerances: the shim runs fp32 while the reference here accumulates in
 * double; through a few layers at width 64 the difference stays below 1e-4
 * relative to the embedding's largest entry (seen: ~1e-6). Layouts hold the
 * same numbers (weights are fp16-exact), so they agree to float rounding. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <sys/resource.h>
#include <unistd.h>
#include <math.h>
#include <stdint.h>

#include "model_config.h"
#include "model_files.h"
#include "test.h"
#include "tiny_model.h"
#include "torch_zip.h"
#include "torch_shim.h"

/* ------------------------------------------------------------ reference */

typedef struct ref {
    cs_safetensors st; /* open_clip layout, F32 */
    tiny_spec s;
} ref;

static const float *Wname(const ref *r, const char *name) {
    const cs_tensor *t = cs_safetensors_find(&r->st, name);
    if (!t || t->dtype != CS_DTYPE_F32) {
        fprintf(stderr, "reference: missing %s\n", name);
        exit(2);
    }
    return t->data;
}

static const float *W(const ref *r, const char *fmt, int i) {
    char name[160];
    snprintf(name, sizeof name, fmt, i);
    return Wname(r, name);
}

static void layer_norm(double *x, int n, int w, const float *g, const float *b) {
    for (int i = 0; i < n; i++) {
        double *r = x + (size_t)i * w, mean = 0, var = 0;
        for (int k = 0; k < w; k++) mean += r[k];
        mean /= w;
        for (int k = 0; k < w; k++) var += (r[k] - mean) * (r[k] - mean);
        var /= w;
        for (int k = 0; k < w; k++) r[k] = (r[k] - mean) / sqrt(var + 1e-5) * g[k] + b[k];
    }
}

/* out[n][o] = x[n][in] . w[o][in] + b[o] */
static void linear(double *out, const double *x, int n, int in, int o, const float *w,
                   const float *b) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < o; j++) {
            double s = b ? b[j] : 0;
            for (int k = 0; k < in; k++) s += x[(size_t)i * in + k] * w[(size_t)j * in + k];
            out[(size_t)i * o + j] = s;
        }
}

/* One residual block on x [L][Wd], in place. */
static void block(const ref *r, const char *pre, int li, double *x, int L, int Wd, int H,
                  int causal) {
    char f[160];
#define P(name) (snprintf(f, sizeof f, "%s.%%d.%s", pre, name), W(r, f, li))
    double *h = calloc((size_t)L * Wd, sizeof *h), *qkv = calloc((size_t)L * 3 * Wd, sizeof *qkv);
    double *att = calloc((size_t)L * Wd, sizeof *att), *o = calloc((size_t)L * Wd, sizeof *o);
    double *m = calloc((size_t)L * 4 * Wd, sizeof *m), *s = calloc((size_t)L, sizeof *s);
    memcpy(h, x, (size_t)L * Wd * sizeof *h);
    layer_norm(h, L, Wd, P("ln_1.weight"), P("ln_1.bias"));
    linear(qkv, h, L, Wd, 3 * Wd, P("attn.in_proj_weight"), P("attn.in_proj_bias"));
    int hd = Wd / H;
    for (int hh = 0; hh < H; hh++)
        for (int i = 0; i < L; i++) {
            double mx = -1e300, sum = 0;
            int last = causal ? i : L - 1;
            for (int j = 0; j <= last; j++) {
                double d = 0;
                for (int k = 0; k < hd; k++)
                    d += qkv[(size_t)i * 3 * Wd + hh * hd + k] *
                         qkv[(size_t)j * 3 * Wd + Wd + hh * hd + k];
                s[j] = d / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int j = 0; j <= last; j++) sum += (s[j] = exp(s[j] - mx));
            for (int k = 0; k < hd; k++) {
                double acc = 0;
                for (int j = 0; j <= last; j++)
                    acc += s[j] / sum * qkv[(size_t)j * 3 * Wd + 2 * Wd + hh * hd + k];
                att[(size_t)i * Wd + hh * hd + k] = acc;
            }
        }
    linear(o, att, L, Wd, Wd, P("attn.out_proj.weight"), P("attn.out_proj.bias"));
    for (size_t k = 0; k < (size_t)L * Wd; k++) x[k] += o[k];
    memcpy(h, x, (size_t)L * Wd * sizeof *h);
    layer_norm(h, L, Wd, P("ln_2.weight"), P("ln_2.bias"));
    linear(m, h, L, Wd, 4 * Wd, P("mlp.c_fc.weight"), P("mlp.c_fc.bias"));
    for (size_t k = 0; k < (size_t)L * 4 * Wd; k++) {
        double v = m[k];
        m[k] = r->s.quick_gelu ? v / (1 + exp(-1.702 * v)) : 0.5 * v * (1 + erf(v / sqrt(2.0)));
    }
    linear(o, m, L, 4 * Wd, Wd, P("mlp.c_proj.weight"), P("mlp.c_proj.bias"));
    for (size_t k = 0; k < (size_t)L * Wd; k++) x[k] += o[k];
#undef P
    free(h), free(qkv), free(att), free(o), free(m), free(s);
}

/* Stages of the reference's forward pass, recorded when a trace is given
 * (same names as cs_torch_trace_*). */
enum { MAX_STAGES = 32 };
typedef struct rtrace {
    int n;
    char name[MAX_STAGES][24];
    double *data[MAX_STAGES];
    size_t len[MAX_STAGES];
} rtrace;

static void rt_add(rtrace *t, const char *name, const double *x, size_t len) {
    if (!t || t->n == MAX_STAGES) return;
    snprintf(t->name[t->n], sizeof t->name[0], "%s", name);
    t->data[t->n] = malloc(len * sizeof *x);
    memcpy(t->data[t->n], x, len * sizeof *x);
    t->len[t->n++] = len;
}

static void rt_free(rtrace *t) {
    for (int i = 0; i < t->n; i++) free(t->data[i]);
    t->n = 0;
}

/* px [3][R][R] -> out [D] */
static void ref_image(const ref *r, const float *px, double *out, rtrace *tr) {
    const tiny_spec *s = &r->s;
    int P = s->patch, g = s->image_size / P, Wd = s->vision_width, L = g * g + 1, R = s->image_size;
    double *x = calloc((size_t)L * Wd, sizeof *x);
    const float *conv = W(r, "visual.conv1.weight", 0), *cls = W(r, "visual.class_embedding", 0);
    const float *pos = W(r, "visual.positional_embedding", 0);
    for (int c = 0; c < Wd; c++) x[c] = cls[c];
    for (int gy = 0; gy < g; gy++)
        for (int gx = 0; gx < g; gx++)
            for (int c = 0; c < Wd; c++) {
                double acc = 0;
                for (int ch = 0; ch < 3; ch++)
                    for (int ky = 0; ky < P; ky++)
                        for (int kx = 0; kx < P; kx++)
                            acc += conv[((size_t)(c * 3 + ch) * P + ky) * P + kx] *
                                   px[((size_t)ch * R + gy * P + ky) * R + gx * P + kx];
                x[(size_t)(1 + gy * g + gx) * Wd + c] = acc;
            }
    for (size_t k = 0; k < (size_t)L * Wd; k++) x[k] += pos[k];
    rt_add(tr, "embed", x, (size_t)L * Wd);
    layer_norm(x, L, Wd, W(r, "visual.ln_pre.weight", 0), W(r, "visual.ln_pre.bias", 0));
    rt_add(tr, "ln_pre", x, (size_t)L * Wd);
    for (int i = 0; i < s->vision_layers; i++) {
        char name[24];
        block(r, "visual.transformer.resblocks", i, x, L, Wd, s->vision_heads, 0);
        snprintf(name, sizeof name, "block.%d", i);
        rt_add(tr, name, x, (size_t)L * Wd);
    }
    layer_norm(x, 1, Wd, W(r, "visual.ln_post.weight", 0), W(r, "visual.ln_post.bias", 0));
    rt_add(tr, "ln_post", x, (size_t)Wd);
    const float *proj = W(r, "visual.proj", 0);
    for (int d = 0; d < s->embed_dim; d++) {
        double acc = 0;
        for (int k = 0; k < Wd; k++) acc += x[k] * proj[(size_t)k * s->embed_dim + d];
        out[d] = acc;
    }
    rt_add(tr, "proj", out, (size_t)s->embed_dim);
    free(x);
}

/* ids [n] ending with the end token -> out [D]; runs the full context as
 * the reference does (padding after the end token). */
static void ref_text(const ref *r, const int32_t *ids, int n, double *out, rtrace *tr) {
    const tiny_spec *s = &r->s;
    int L = s->context_length, Wd = s->text_width;
    double *x = calloc((size_t)L * Wd, sizeof *x);
    const float *tok = W(r, "token_embedding.weight", 0), *pos = W(r, "positional_embedding", 0);
    for (int i = 0; i < L; i++) {
        int id = i < n ? ids[i] : 0;
        for (int k = 0; k < Wd; k++)
            x[(size_t)i * Wd + k] = tok[(size_t)id * Wd + k] + pos[(size_t)i * Wd + k];
    }
    rt_add(tr, "embed", x, (size_t)L * Wd);
    for (int i = 0; i < s->text_layers; i++) {
        char name[24];
        block(r, "transformer.resblocks", i, x, L, Wd, s->text_heads, 1);
        snprintf(name, sizeof name, "block.%d", i);
        rt_add(tr, name, x, (size_t)L * Wd);
    }
    if (tr) { /* every position, as the shim's "ln_final" stage */
        layer_norm(x, L, Wd, W(r, "ln_final.weight", 0), W(r, "ln_final.bias", 0));
        rt_add(tr, "ln_final", x, (size_t)L * Wd);
    }
    double *e = x + (size_t)(n - 1) * Wd;
    if (!tr) layer_norm(e, 1, Wd, W(r, "ln_final.weight", 0), W(r, "ln_final.bias", 0));
    rt_add(tr, "pooled", e, (size_t)Wd);
    const float *proj = W(r, "text_projection", 0);
    for (int d = 0; d < s->embed_dim; d++) {
        double acc = 0;
        for (int k = 0; k < Wd; k++) acc += e[k] * proj[(size_t)k * s->embed_dim + d];
        out[d] = acc;
    }
    rt_add(tr, "proj", out, (size_t)s->embed_dim);
    free(x);
}

/* ------------------------------------------------------------ ResNet reference */

/* A feature map [c][h][w]. */
typedef struct fmap {
    int c, h, w;
    double *d;
} fmap;

static fmap fm_new(int c, int h, int w) {
    fmap f = {c, h, w, calloc((size_t)c * h * w, sizeof(double))};
    if (!f.d) exit(2);
    return f;
}

/* Weight "<p><name>" of the reference's file. */
static const float *Wp(const ref *r, const char *p, const char *name) {
    char n[160];
    snprintf(n, sizeof n, "%s%s", p, name);
    return Wname(r, n);
}

/* conv(x, "<p><conv>.weight" [o][x.c][k][k], stride, pad) followed by the
 * batch norm "<p><bn>.*" as PyTorch runs it in inference mode, (y - mean) /
 * sqrt(var + 1e-5) * weight + bias, not folded; then ReLU when relu. */
static fmap conv_bn(const ref *r, const char *p, const char *conv, const char *bn, fmap x, int o,
                    int k, int stride, int pad, int relu) {
    char n[96];
    snprintf(n, sizeof n, "%s.weight", conv);
    const float *w = Wp(r, p, n);
    snprintf(n, sizeof n, "%s.weight", bn);
    const float *g = Wp(r, p, n);
    snprintf(n, sizeof n, "%s.bias", bn);
    const float *b = Wp(r, p, n);
    snprintf(n, sizeof n, "%s.running_mean", bn);
    const float *mean = Wp(r, p, n);
    snprintf(n, sizeof n, "%s.running_var", bn);
    const float *var = Wp(r, p, n);
    fmap y = fm_new(o, (x.h + 2 * pad - k) / stride + 1, (x.w + 2 * pad - k) / stride + 1);
    for (int oc = 0; oc < o; oc++)
        for (int oy = 0; oy < y.h; oy++)
            for (int ox = 0; ox < y.w; ox++) {
                double acc = 0;
                for (int ic = 0; ic < x.c; ic++)
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                            if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
                            acc += w[(((size_t)oc * x.c + ic) * k + ky) * k + kx] *
                                   x.d[((size_t)ic * x.h + iy) * x.w + ix];
                        }
                double v = (acc - mean[oc]) / sqrt((double)var[oc] + 1e-5) * g[oc] + b[oc];
                y.d[((size_t)oc * y.h + oy) * y.w + ox] = relu && v < 0 ? 0 : v;
            }
    return y;
}

/* k x k average pool, stride k (nn.AvgPool2d(k)). */
static fmap avg_pool(fmap x, int k) {
    fmap y = fm_new(x.c, x.h / k, x.w / k);
    for (int c = 0; c < x.c; c++)
        for (int oy = 0; oy < y.h; oy++)
            for (int ox = 0; ox < y.w; ox++) {
                double acc = 0;
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                        acc += x.d[((size_t)c * x.h + oy * k + ky) * x.w + ox * k + kx];
                y.d[((size_t)c * y.h + oy) * y.w + ox] = acc / (k * k);
            }
    return y;
}

/* One bottleneck block (clip/model.py's Bottleneck); frees x. */
static fmap bottleneck(const ref *r, const char *p, fmap x, int planes, int stride) {
    fmap a = conv_bn(r, p, "conv1", "bn1", x, planes, 1, 1, 0, 1);
    fmap b = conv_bn(r, p, "conv2", "bn2", a, planes, 3, 1, 1, 1);
    free(a.d);
    if (stride > 1) {
        fmap t = avg_pool(b, stride);
        free(b.d);
        b = t;
    }
    fmap y = conv_bn(r, p, "conv3", "bn3", b, planes * 4, 1, 1, 0, 0);
    free(b.d);
    fmap id = x;
    if (stride > 1 || x.c != planes * 4) {
        fmap t = stride > 1 ? avg_pool(x, stride) : x;
        id = conv_bn(r, p, "downsample.0", "downsample.1", t, planes * 4, 1, 1, 0, 0);
        if (t.d != x.d) free(t.d);
    }
    for (size_t i = 0; i < (size_t)y.c * y.h * y.w; i++) {
        double v = y.d[i] + id.d[i];
        y.d[i] = v < 0 ? 0 : v;
    }
    if (id.d != x.d) free(id.d);
    free(x.d);
    return y;
}

/* px [3][R][R] -> out [D] through the ResNet tower, stages as the shim
 * traces them: "stem", "layer1" ... "layer4", "attnpool", "proj". */
static void ref_resnet_image(const ref *r, const float *px, double *out, rtrace *tr) {
    const tiny_spec *s = &r->s;
    const int R = s->image_size, w = s->vision_width;
    fmap x = fm_new(3, R, R);
    for (size_t i = 0; i < (size_t)3 * R * R; i++) x.d[i] = px[i];
    static const char *const conv[] = {"conv1", "conv2", "conv3"}, *const bn[] = {"bn1", "bn2",
                                                                                  "bn3"};
    const int ch[] = {w / 2, w / 2, w};
    for (int i = 0; i < 3; i++) {
        fmap y = conv_bn(r, "visual.", conv[i], bn[i], x, ch[i], 3, i == 0 ? 2 : 1, 1, 1);
        free(x.d);
        x = y;
    }
    fmap y = avg_pool(x, 2);
    free(x.d);
    x = y;
    rt_add(tr, "stem", x.d, (size_t)x.c * x.h * x.w);
    for (int st = 0; st < 4; st++) {
        for (int b = 0; b < s->stages[st]; b++) {
            char p[64];
            snprintf(p, sizeof p, "visual.layer%d.%d.", st + 1, b);
            x = bottleneck(r, p, x, w << st, b == 0 && st > 0 ? 2 : 1);
        }
        char name[16];
        snprintf(name, sizeof name, "layer%d", st + 1);
        rt_add(tr, name, x.d, (size_t)x.c * x.h * x.w);
    }
    /* Attention pool: tokens [L][C], the mean first, positions added. */
    const int C = x.c, HW = x.h * x.w, L = HW + 1, H = s->vision_heads, hd = C / H;
    double *t = calloc((size_t)L * C, sizeof *t), *q = calloc((size_t)C, sizeof *q);
    double *k = calloc((size_t)L * C, sizeof *k), *v = calloc((size_t)L * C, sizeof *v);
    double *o = calloc((size_t)C, sizeof *o), *sc = calloc((size_t)L, sizeof *sc);
    const float *pos = Wname(r, "visual.attnpool.positional_embedding");
    for (int c = 0; c < C; c++) {
        double m = 0;
        for (int j = 0; j < HW; j++) m += t[(size_t)(1 + j) * C + c] = x.d[(size_t)c * HW + j];
        t[c] = m / HW;
    }
    for (size_t i = 0; i < (size_t)L * C; i++) t[i] += pos[i];
    linear(q, t, 1, C, C, Wname(r, "visual.attnpool.q_proj.weight"),
           Wname(r, "visual.attnpool.q_proj.bias"));
    linear(k, t, L, C, C, Wname(r, "visual.attnpool.k_proj.weight"),
           Wname(r, "visual.attnpool.k_proj.bias"));
    linear(v, t, L, C, C, Wname(r, "visual.attnpool.v_proj.weight"),
           Wname(r, "visual.attnpool.v_proj.bias"));
    for (int h = 0; h < H; h++) {
        double mx = -1e300, sum = 0;
        for (int j = 0; j < L; j++) {
            double d = 0;
            for (int e = 0; e < hd; e++) d += q[h * hd + e] * k[(size_t)j * C + h * hd + e];
            sc[j] = d / sqrt((double)hd);
            if (sc[j] > mx) mx = sc[j];
        }
        for (int j = 0; j < L; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int e = 0; e < hd; e++) {
            double acc = 0;
            for (int j = 0; j < L; j++) acc += sc[j] / sum * v[(size_t)j * C + h * hd + e];
            o[h * hd + e] = acc;
        }
    }
    rt_add(tr, "attnpool", o, (size_t)C);
    linear(out, o, 1, C, s->embed_dim, Wname(r, "visual.attnpool.c_proj.weight"),
           Wname(r, "visual.attnpool.c_proj.bias"));
    rt_add(tr, "proj", out, (size_t)s->embed_dim);
    free(x.d), free(t), free(q), free(k), free(v), free(o), free(sc);
}

/* ------------------------------------------------------------ helpers */

static cs_torch_model *load(const char *dir, const char *precision, cs_model_files *mf_out) {
    cs_error e = {0};
    cs_model_files mf;
    if (cs_model_files_open(dir, &mf, &e)) {
        fprintf(stderr, "%s: %s\n", dir, e.msg);
        return NULL;
    }
    cs_torch_model *m = NULL;
    int rc = cs_torch_model_create(&mf.clip, "cpu", precision, &m, &e);
    for (int i = 0; !rc && i < mf.n; i++) rc = cs_torch_model_set(m, &mf.weights[i], &e) < 0;
    if (!rc) rc = cs_torch_model_ready(m, &e);
    if (rc) {
        fprintf(stderr, "%s: %s\n", dir, e.msg);
        cs_torch_model_free(m);
        m = NULL;
    }
    if (mf_out)
        *mf_out = mf;
    else
        cs_model_files_close(&mf);
    return m;
}

static double max_abs(const float *a, const double *b, int n, double *scale) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        if (fabs(a[i] - b[i]) > d) d = fabs(a[i] - b[i]);
        if (fabs(b[i]) > s) s = fabs(b[i]);
    }
    *scale = s;
    return d;
}

static double cosine(const float *a, const float *b, int n) {
    double d = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++)
        d += (double)a[i] * b[i], na += (double)a[i] * a[i], nb += (double)b[i] * b[i];
    return d / sqrt(na * nb);
}

static uint64_t seed = 12345;
static float frand(void) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((seed >> 40) / 16777216.0 * 2.0 - 1.0);
}

/* ------------------------------------------------------------ tests */

static void test_tiny(void) {
    const char *tmp = test_tmpdir("model");
    char hf[600], oc[600], oc16[600];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(oc, sizeof oc, "%s/openclip", tmp);
    snprintf(oc16, sizeof oc16, "%s/openclip16", tmp);
    tiny_spec s = tiny_default_spec();
    cs_error e = {0};
    CHECK_EQ_INT(tiny_model_write(hf, "hf", &s, 7, 0, &e), 0);
    CHECK_EQ_INT(tiny_model_write(oc, "openclip", &s, 7, 0, &e), 0);
    CHECK_EQ_INT(tiny_model_write(oc16, "openclip", &s, 7, 1, &e), 0);

    ref r = {.s = s};
    char path[700];
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", oc);
    if (cs_safetensors_open(path, &r.st, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        CHECK(0);
        return;
    }

    cs_model_files mf;
    cs_torch_model *m_hf = load(hf, "fp32", &mf);
    CHECK(m_hf != NULL);
    if (m_hf) {
        CHECK_EQ_STR(mf.layout, "hf-safetensors");
        CHECK_EQ_INT(mf.clip.vision_width, 64);
        CHECK_EQ_INT(mf.clip.vision_heads, 2); /* from config.json, not width/64 */
        CHECK_EQ_INT(mf.clip.image_size, 32);
        CHECK_EQ_INT(mf.clip.patch_size, 8);
        CHECK_EQ_INT(mf.clip.context_length, 16);
        CHECK_EQ_INT(mf.clip.vocab_size, tiny_vocab_size());
        CHECK_EQ_INT(mf.clip.embed_dim, 32);
        CHECK_EQ_INT(mf.clip.quick_gelu, 1);
        CHECK(mf.vocab_path && mf.merges_path && !mf.bpe_gz_path);
        cs_model_files_close(&mf);
    }
    cs_torch_model *m_oc = load(oc, "fp32", NULL), *m_oc16 = load(oc16, "fp32", NULL);
    CHECK(m_oc && m_oc16);
    if (!m_hf || !m_oc || !m_oc16) return;

    enum { N = 3 };
    const int R = s.image_size, D = s.embed_dim;
    float *px = malloc(sizeof(float) * N * 3 * R * R);
    for (int i = 0; i < N * 3 * R * R; i++) px[i] = 2.0f * frand();
    float e_hf[N * 32], e_oc[N * 32], e_oc16[N * 32];
    CHECK_EQ_INT(cs_torch_encode_images(m_hf, px, N, e_hf, &e), 0);
    CHECK_EQ_INT(cs_torch_encode_images(m_oc, px, N, e_oc, &e), 0);
    CHECK_EQ_INT(cs_torch_encode_images(m_oc16, px, N, e_oc16, &e), 0);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double want[32], scale;
        ref_image(&r, px + (size_t)i * 3 * R * R, want, NULL);
        double d = max_abs(e_hf + i * D, want, D, &scale) / scale;
        if (d > worst) worst = d;
        CHECK_MSG(d < 1e-4, "image %d: max |torch - reference| / max |reference| = %g", i, d);
        CHECK_MSG(max_abs(e_oc + i * D, want, D, &scale) / scale < 1e-4,
                  "open_clip layout, image %d", i);
        CHECK_MSG(max_abs(e_oc16 + i * D, want, D, &scale) / scale < 1e-4, "F16 layout, image %d",
                  i);
    }
    fprintf(stderr, "image encoder vs plain-C reference: worst relative difference %.2e\n", worst);

    /* Texts of different lengths in one batch: the batch is cut to its
     * longest row; each row must equal the full-context reference and the
     * row encoded alone. */
    const int T = s.context_length, V = tiny_vocab_size();
    int32_t ids[4 * 16];
    int lens[4] = {2, 5, 16, 9};
    for (int i = 0; i < 4; i++) {
        ids[i * T] = V - 2;
        for (int j = 1; j < lens[i] - 1; j++)
            ids[i * T + j] = (int32_t)((frand() + 1) * 0.5 * (V - 3));
        ids[i * T + lens[i] - 1] = V - 1;
        for (int j = lens[i]; j < T; j++) ids[i * T + j] = 0;
    }
    float t_hf[4 * 32], t_one[32], t_oc[4 * 32];
    CHECK_EQ_INT(cs_torch_encode_texts(m_hf, ids, lens, 4, T, t_hf, &e), 0);
    CHECK_EQ_INT(cs_torch_encode_texts(m_oc, ids, lens, 4, T, t_oc, &e), 0);
    worst = 0;
    for (int i = 0; i < 4; i++) {
        double want[32], scale;
        ref_text(&r, ids + i * T, lens[i], want, NULL);
        double d = max_abs(t_hf + i * D, want, D, &scale) / scale;
        if (d > worst) worst = d;
        CHECK_MSG(d < 1e-4, "text %d (%d tokens): relative difference %g", i, lens[i], d);
        CHECK_MSG(max_abs(t_oc + i * D, want, D, &scale) / scale < 1e-4,
                  "open_clip layout, text %d", i);
        CHECK_EQ_INT(cs_torch_encode_texts(m_hf, ids + i * T, &lens[i], 1, T, t_one, &e), 0);
        double dd = 0;
        for (int k = 0; k < D; k++) dd = fmax(dd, fabs(t_one[k] - t_hf[i * D + k]));
        CHECK_MSG(dd < 1e-5, "text %d alone vs in a batch: %g", i, dd);
    }
    fprintf(stderr, "text encoder vs plain-C reference: worst relative difference %.2e\n", worst);

    /* Bad token ids and lengths are refused, not read out of bounds. */
    int32_t bad[2] = {V - 2, V + 5};
    int two = 2, zero = 0;
    CHECK(cs_torch_encode_texts(m_hf, bad, &two, 1, 2, t_one, &e) < 0);
    CHECK(strstr(e.msg, "vocabulary") != NULL);
    CHECK(cs_torch_encode_texts(m_hf, bad, &zero, 1, 2, t_one, &e) < 0);

    /* bf16 on the CPU: close to fp32. */
    cs_torch_model *m_bf = load(hf, "bf16", NULL);
    CHECK(m_bf != NULL);
    if (m_bf) {
        float b16[N * 32];
        CHECK_EQ_INT(cs_torch_encode_images(m_bf, px, N, b16, &e), 0);
        for (int i = 0; i < N; i++)
            CHECK_MSG(cosine(b16 + i * D, e_hf + i * D, D) > 0.99, "bf16 image %d", i);
        cs_torch_model_free(m_bf);
    }
    cs_torch_model_free(m_hf);
    cs_torch_model_free(m_oc);
    cs_torch_model_free(m_oc16);
    cs_safetensors_close(&r.st);

    /* The exact-GELU activation (open_clip's default), same checks. */
    {
        tiny_spec g = s;
        g.quick_gelu = 0;
        char gdir[600], gref[600];
        snprintf(gdir, sizeof gdir, "%s/gelu-hf", tmp);
        snprintf(gref, sizeof gref, "%s/gelu-openclip", tmp);
        CHECK_EQ_INT(tiny_model_write(gdir, "hf", &g, 9, 0, &e), 0);
        CHECK_EQ_INT(tiny_model_write(gref, "openclip", &g, 9, 0, &e), 0);
        ref rg = {.s = g};
        snprintf(path, sizeof path, "%s/open_clip_model.safetensors", gref);
        CHECK_EQ_INT(cs_safetensors_open(path, &rg.st, &e), 0);
        cs_model_files gmf;
        cs_torch_model *mg = load(gdir, "fp32", &gmf);
        CHECK(mg != NULL);
        if (mg && rg.st.n) {
            CHECK_EQ_INT(gmf.clip.quick_gelu, 0);
            float ge[32], gt[32];
            double want[32], scale;
            CHECK_EQ_INT(cs_torch_encode_images(mg, px, 1, ge, &e), 0);
            ref_image(&rg, px, want, NULL);
            CHECK_MSG(max_abs(ge, want, D, &scale) / scale < 1e-4, "gelu image vs reference");
            CHECK_EQ_INT(cs_torch_encode_texts(mg, ids + 2 * T, &lens[2], 1, T, gt, &e), 0);
            ref_text(&rg, ids + 2 * T, lens[2], want, NULL);
            CHECK_MSG(max_abs(gt, want, D, &scale) / scale < 1e-4, "gelu text vs reference");
            cs_model_files_close(&gmf);
        }
        cs_torch_model_free(mg);
        cs_safetensors_close(&rg.st);
    }

    free(px);

    /* Devices and precisions a CPU build must refuse clearly. */
    cs_model_files mf2;
    CHECK_EQ_INT(cs_model_files_open(hf, &mf2, &e), 0);
    cs_torch_model *m = NULL;
    CHECK_EQ_INT(cs_torch_model_create(&mf2.clip, "cpu", "fp16", &m, &e), CLIPSCORE_EARG);
    CHECK(strstr(e.msg, "fp16") != NULL);
    CHECK_EQ_INT(cs_torch_model_create(&mf2.clip, "tpu", "fp32", &m, &e), CLIPSCORE_EARG);
    if (cs_torch_cuda_device_count() == 0) {
        CHECK_EQ_INT(cs_torch_model_create(&mf2.clip, "cuda", "auto", &m, &e), CLIPSCORE_EDEVICE);
        CHECK(strstr(e.msg, "CUDA") != NULL);
    }
    /* A weight of the wrong shape is named. */
    CHECK_EQ_INT(cs_torch_model_create(&mf2.clip, "cpu", "fp32", &m, &e), 0);
    cs_tensor t = mf2.weights[0];
    t.shape[0] += 1;
    CHECK(cs_torch_model_set(m, &t, &e) < 0 || strcmp(t.name, "logit_scale") == 0);
    /* Missing weights are listed by name. */
    CHECK_EQ_INT(cs_torch_model_ready(m, &e), CLIPSCORE_EMODEL);
    CHECK(strstr(e.msg, "missing") != NULL);
    cs_torch_model_free(m);
    cs_model_files_close(&mf2);

    /* Broken folders. */
    char bad_dir[700];
    snprintf(bad_dir, sizeof bad_dir, "%s/empty", tmp);
    cs_mkdir_p(bad_dir, &e);
    CHECK_EQ_INT(cs_model_files_open(bad_dir, &mf2, &e), CLIPSCORE_EMODEL);
    CHECK(strstr(e.msg, "no weights") != NULL);
    CHECK_EQ_INT(cs_model_files_open("/nonexistent/model", &mf2, &e), CLIPSCORE_EMODEL);
    /* A truncated weight file is a format error naming it. */
    snprintf(path, sizeof path, "%s/model.safetensors", hf);
    CHECK_EQ_INT(truncate(path, 1000), 0);
    CHECK(cs_model_files_open(hf, &mf2, &e) < 0);
    CHECK(strstr(e.msg, "model.safetensors") != NULL);
    /* Unsupported activation in config.json. */
    tiny_model_write(hf, "hf", &s, 7, 0, &e);
    snprintf(path, sizeof path, "%s/config.json", hf);
    FILE *f = fopen(path, "w");
    fputs("{\"vision_config\": {\"hidden_act\": \"relu\"}}", f);
    fclose(f);
    CHECK_EQ_INT(cs_model_files_open(hf, &mf2, &e), CLIPSCORE_EMODEL);
    CHECK(strstr(e.msg, "relu") != NULL);
}

/* ------------------------------------------------------------ stage by stage */

/* What the shim's trace hands over, kept as doubles. */
typedef struct strace {
    rtrace t;
    int64_t batch[MAX_STAGES];
} strace;

static void collect(const char *stage, const float *data, const int64_t *shape, int ndim,
                    void *user) {
    strace *s = user;
    size_t len = 1;
    for (int i = 0; i < ndim; i++) len *= (size_t)shape[i];
    if (s->t.n == MAX_STAGES) return;
    double *d = malloc(len * sizeof *d);
    for (size_t i = 0; i < len; i++) d[i] = data[i];
    s->batch[s->t.n] = shape[0];
    rt_add(&s->t, stage, d, len);
    free(d);
}

/* Tolerance of each stage, relative to the stage's largest reference value.
 * The shim computes in fp32, the reference in double, so the differences
 * are fp32 rounding, growing with each stage that sums many products:
 * - "embed": one patch convolution (3*P*P = 192 products) plus positions,
 *   or an embedding lookup plus positions: ~1e-7, allowed 1e-5;
 * - "ln_pre": a layer norm of that (divides by a std near 1): 1e-5;
 * - "block.N": attention (softmax over <= 17 scores, two width-64 matrix
 *   products) and the width-256 MLP, compounding block after block; the
 *   end-to-end bound of the tests above, 1e-4, holds for each block (seen:
 *   ~1e-6);
 * - "ln_post", "ln_final", "pooled", "proj": norms and one projection of
 *   the last block's output, 1e-4 as the embeddings themselves. */
static double stage_tol(const char *stage) {
    return strcmp(stage, "embed") == 0 || strcmp(stage, "ln_pre") == 0 ? 1e-5 : 1e-4;
}

/* Compares row `row` of every traced stage with the reference's stages for
 * that row; text_len (0 for images) is how many positions the shim ran
 * (the text tower runs only to the batch's longest row, the reference the
 * whole context: positions before text_len must agree). Prints
 * the largest difference per stage; returns the first stage over its
 * tolerance, or NULL. */
static const char *compare_stages(const char *what, const strace *got, const rtrace *want, int row,
                                  int text_len, int W) {
    const char *first_bad = NULL;
    CHECK_EQ_INT(got->t.n, want->n);
    for (int k = 0; k < got->t.n && k < want->n; k++) {
        CHECK_EQ_STR(got->t.name[k], want->name[k]);
        size_t per_row = got->t.len[k] / (size_t)got->batch[k];
        const double *g = got->t.data[k] + (size_t)row * per_row, *w = want->data[k];
        /* per-position stages of the text tower: the shim holds text_len
         * positions, the reference the whole context */
        if (text_len > 0 && per_row != want->len[k]) CHECK(per_row == (size_t)text_len * W);
        double d = 0, scale = 0;
        for (size_t i = 0; i < per_row && i < want->len[k]; i++) {
            d = fmax(d, fabs(g[i] - w[i]));
            scale = fmax(scale, fabs(w[i]));
        }
        double rel = d / (scale > 0 ? scale : 1), tol = stage_tol(want->name[k]);
        fprintf(stderr, "  %s row %d %-9s max |shim - reference| %.2e (relative %.2e, tol %.0e)\n",
                what, row, want->name[k], d, rel, tol);
        if (rel > tol && !first_bad) first_bad = want->name[k];
    }
    return first_bad;
}

/* The forward pass stage by stage against the plain-C reference, so that
 * a discrepancy is pinned to the stage that introduces it rather than seen
 * only in the final embedding. */
static void test_stages(void) {
    const char *tmp = test_tmpdir("stages");
    char dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/openclip", tmp);
    tiny_spec s = tiny_default_spec();
    cs_error e = {0};
    CHECK_EQ_INT(tiny_model_write(dir, "openclip", &s, 11, 0, &e), 0);
    ref r = {.s = s};
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", dir);
    CHECK_EQ_INT(cs_safetensors_open(path, &r.st, &e), 0);
    cs_torch_model *m = load(dir, "fp32", NULL);
    CHECK(m != NULL);
    if (!m || !r.st.n) {
        cs_torch_model_free(m);
        cs_safetensors_close(&r.st);
        return;
    }
    enum { N = 2 };
    const int R = s.image_size, D = s.embed_dim, T = s.context_length, V = tiny_vocab_size();
    float *px = malloc(sizeof(float) * N * 3 * R * R), emb[N * 32], traced[N * 32];
    for (int i = 0; i < N * 3 * R * R; i++) px[i] = 2.0f * frand();

    strace st = {0};
    CHECK_EQ_INT(cs_torch_trace_images(m, px, N, traced, collect, &st, &e), 0);
    CHECK_EQ_INT(st.t.n, 2 + s.vision_layers + 2);
    /* the trace runs the same forward pass: the same bits come out */
    CHECK_EQ_INT(cs_torch_encode_images(m, px, N, emb, &e), 0);
    CHECK(memcmp(emb, traced, sizeof(float) * N * (size_t)D) == 0);
    for (int i = 0; i < N; i++) {
        rtrace want = {0};
        double out[32];
        ref_image(&r, px + (size_t)i * 3 * R * R, out, &want);
        const char *bad = compare_stages("image", &st, &want, i, 0, s.vision_width);
        CHECK_MSG(bad == NULL, "image %d: stage %s is the first beyond its tolerance", i,
                  bad ? bad : "");
        rt_free(&want);
    }
    rt_free(&st.t);

    /* Two texts, the longer 9 of 16 positions: the shim runs 9. */
    int32_t ids[N * 16];
    int lens[N] = {5, 9};
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < T; j++) ids[i * T + j] = 0;
        ids[i * T] = V - 2;
        for (int j = 1; j < lens[i] - 1; j++)
            ids[i * T + j] = (int32_t)((frand() + 1) * 0.5 * (V - 3));
        ids[i * T + lens[i] - 1] = V - 1;
    }
    memset(&st, 0, sizeof st);
    CHECK_EQ_INT(cs_torch_trace_texts(m, ids, lens, N, T, traced, collect, &st, &e), 0);
    CHECK_EQ_INT(st.t.n, 1 + s.text_layers + 3);
    CHECK_EQ_INT(cs_torch_encode_texts(m, ids, lens, N, T, emb, &e), 0);
    CHECK(memcmp(emb, traced, sizeof(float) * N * (size_t)D) == 0);
    for (int i = 0; i < N; i++) {
        rtrace want = {0};
        double out[32];
        ref_text(&r, ids + i * T, lens[i], out, &want);
        const char *bad = compare_stages("text", &st, &want, i, 9, s.text_width);
        CHECK_MSG(bad == NULL, "text %d: stage %s is the first beyond its tolerance", i,
                  bad ? bad : "");
        rt_free(&want);
    }
    rt_free(&st.t);
    CHECK(cs_torch_trace_images(m, px, N, traced, NULL, NULL, &e) == CLIPSCORE_EARG);
    free(px);
    cs_torch_model_free(m);
    cs_safetensors_close(&r.st);
}

/* ------------------------------------------------------------ ResNet */

/* A ResNet CLIP (tests/tiny_model.c's tiny_resnet_spec) against the plain-C
 * reference above, stage by stage: the reference runs each batch norm as
 * PyTorch does, the shim folds them into the convolutions, so a folding
 * mistake shows at "stem". Tolerances as for the ViT (stage_tol): fp32
 * against double through convolutions of at most 9*64 products a sum, the
 * attention over 5 tokens and two width-256 projections; seen ~1e-6. */
static void test_resnet(void) {
    const char *tmp = test_tmpdir("resnet");
    char dir[700], dir16[700], path[800];
    snprintf(dir, sizeof dir, "%s/openclip", tmp);
    snprintf(dir16, sizeof dir16, "%s/openclip16", tmp);
    tiny_spec s = tiny_resnet_spec();
    cs_error e = {0};
    CHECK_EQ_INT(tiny_model_write(dir, "openclip", &s, 21, 0, &e), 0);
    CHECK_EQ_INT(tiny_model_write(dir16, "openclip", &s, 21, 1, &e), 0);
    CHECK(tiny_model_write(dir, "hf", &s, 21, 0, &e) == CLIPSCORE_EARG);
    ref r = {.s = s};
    snprintf(path, sizeof path, "%s/open_clip_model.safetensors", dir);
    CHECK_EQ_INT(cs_safetensors_open(path, &r.st, &e), 0);

    /* The architecture from the shapes alone, as build_model reads it. */
    cs_clip_config c;
    CHECK_MSG(cs_clip_config_infer(r.st.tensors, r.st.n, "tiny", &c, &e) == 0, "%s", e.msg);
    CHECK(cs_clip_config_is_resnet(&c));
    CHECK_EQ_INT(c.vision_stages[0], 1);
    CHECK_EQ_INT(c.vision_stages[1], 2);
    CHECK_EQ_INT(c.vision_stages[2], 1);
    CHECK_EQ_INT(c.vision_stages[3], 1);
    CHECK_EQ_INT(c.vision_layers, 5);
    CHECK_EQ_INT(c.vision_width, 8);
    CHECK_EQ_INT(c.vision_heads, 4); /* 32 * 8 / 64 */
    CHECK_EQ_INT(c.image_size, 64);  /* 2x2 grid + mean token: 5 positions */
    CHECK_EQ_INT(c.patch_size, 0);
    CHECK_EQ_INT(cs_clip_config_validate(&c, "tiny", &e), 0);

    cs_model_files mf;
    cs_torch_model *m = load(dir, "fp32", &mf), *m16 = load(dir16, "fp32", NULL);
    CHECK(m && m16);
    if (m) {
        CHECK_EQ_STR(mf.layout, "openclip");
        CHECK_EQ_INT(mf.clip.vision_stages[1], 2);
        CHECK_EQ_INT(mf.clip.vision_heads, 4); /* head_width 64 in the config */
        CHECK_EQ_INT(mf.preprocess.size, 64);
        cs_model_files_close(&mf);
    }
    if (!m || !m16 || !r.st.n) {
        cs_torch_model_free(m);
        cs_torch_model_free(m16);
        cs_safetensors_close(&r.st);
        return;
    }
    enum { N = 2 };
    const int R = s.image_size, D = s.embed_dim;
    float *px = malloc(sizeof(float) * N * 3 * R * R), emb[N * 32], traced[N * 32], e16[N * 32];
    for (int i = 0; i < N * 3 * R * R; i++) px[i] = 2.0f * frand();
    strace st = {0};
    CHECK_EQ_INT(cs_torch_trace_images(m, px, N, traced, collect, &st, &e), 0);
    CHECK_EQ_INT(st.t.n, 1 + 4 + 2);
    CHECK_EQ_INT(cs_torch_encode_images(m, px, N, emb, &e), 0);
    CHECK(memcmp(emb, traced, sizeof(float) * N * (size_t)D) == 0);
    CHECK_EQ_INT(cs_torch_encode_images(m16, px, N, e16, &e), 0);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        rtrace want = {0};
        double out[32], scale;
        ref_resnet_image(&r, px + (size_t)i * 3 * R * R, out, &want);
        const char *bad = compare_stages("resnet", &st, &want, i, 0, 0);
        CHECK_MSG(bad == NULL, "resnet image %d: stage %s is the first beyond its tolerance", i,
                  bad ? bad : "");
        double d = max_abs(emb + i * D, out, D, &scale) / scale;
        worst = fmax(worst, d);
        CHECK_MSG(d < 1e-4, "resnet image %d: relative difference %g", i, d);
        CHECK_MSG(max_abs(e16 + i * D, out, D, &scale) / scale < 1e-4, "F16 layout, image %d", i);
        rt_free(&want);
    }
    fprintf(stderr, "ResNet image encoder vs plain-C reference: worst relative difference %.2e\n",
            worst);
    rt_free(&st.t);
    free(px);
    cs_torch_model_free(m);
    cs_torch_model_free(m16);
    cs_safetensors_close(&r.st);
}

/* ------------------------------------------------------------ hostile archives */

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Opens a one-tensor archive; returns the status, message in e. */
static int open_one(const char *dir, const char *tag, const torch_zip_tensor *t, cs_error *e) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s.bin", dir, tag);
    if (torch_zip_write(path, t, 1, e)) return 99;
    cs_archive *a = NULL;
    int rc = cs_archive_open(path, &a, e);
    cs_archive_free(a);
    return rc;
}

/* Defect 6: a 1 KB pytorch_model.bin holding a stride-0 (expanded) tensor
 * of 500M elements made the loader allocate 2 GB (.contiguous()) before
 * failing. Every view is now bounded by the bytes its storage really holds
 * before anything is copied. Run first, so that the peak RSS measured is
 * this load's and not an earlier test's. */
static void test_archive_bounds(void) {
    const char *tmp = test_tmpdir("archive");
    cs_error e = {0};
    float four[4] = {1, 2, 3, 4}, six[6] = {1, 2, 3, 4, 5, 6};

    /* Warm libtorch up on a good archive, so the measurement below sees
     * only the hostile load. A transposed (non-contiguous) view is a legal
     * tensor: it is materialised, with its values in the view's order. */
    torch_zip_tensor tr = {"w", 2, {3, 2}, {1, 3}, 0, 6, six, sizeof six, 0, 0};
    char path[700];
    snprintf(path, sizeof path, "%s/transposed.bin", tmp);
    CHECK_EQ_INT(torch_zip_write(path, &tr, 1, &e), 0);
    cs_archive *a = NULL;
    CHECK_MSG(cs_archive_open(path, &a, &e) == 0, "%s", e.msg);
    if (a) {
        const cs_tensor *v = cs_archive_tensor(a, 0);
        CHECK(v && v->ndim == 2 && v->shape[0] == 3 && v->shape[1] == 2 && v->nbytes == 24);
        static const float want[6] = {1, 4, 2, 5, 3, 6};
        CHECK(v && memcmp(v->data, want, sizeof want) == 0);
    }
    cs_archive_free(a);

    long before = max_rss_kb();
    double t0 = cs_now();
    torch_zip_tensor ex = {"visual.conv1.weight", 1, {500000000}, {0}, 0, 1, four, 4, 0, 0};
    int rc = open_one(tmp, "expanded", &ex, &e);
    double secs = cs_now() - t0;
    long grown = max_rss_kb() - before;
    fprintf(stderr, "stride-0 500M-element tensor: rc %d in %.3f s, peak RSS grew %ld KB: %s\n", rc,
            secs, grown, e.msg);
    CHECK_EQ_INT(rc, CLIPSCORE_EFORMAT);
    CHECK(strstr(e.msg, "visual.conv1.weight") && strstr(e.msg, "expanded"));
    CHECK_MSG(grown < 100 * 1024, "peak RSS grew by %ld KB", grown);

    /* A storage claiming more elements than its record holds: the view
     * would read past the 16 bytes the file has. */
    torch_zip_tensor lie = {"ln_final.weight", 1, {64}, {1}, 0, 64, four, sizeof four, 0, 0};
    CHECK_EQ_INT(open_one(tmp, "claims", &lie, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "ln_final.weight") && strstr(e.msg, "storage holding 16 bytes"), "%s",
              e.msg);
    /* A view past the end of an honest storage. */
    torch_zip_tensor past = {"ln_final.bias", 1, {8}, {1}, 0, 4, four, sizeof four, 0, 0};
    CHECK_EQ_INT(open_one(tmp, "past", &past, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "ln_final.bias") && strstr(e.msg, "reaches byte 32"), "%s", e.msg);
    torch_zip_tensor off = {"ln_final.bias", 1, {2}, {1}, 3, 4, four, sizeof four, 0, 0};
    CHECK_EQ_INT(open_one(tmp, "offset", &off, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "offset 3"), "%s", e.msg);
    /* Strides that overflow int64 when multiplied out. */
    torch_zip_tensor big = {"x", 2, {1LL << 40, 1LL << 40}, {1LL << 40, 1}, 0, 4, four, 16, 0, 0};
    CHECK_EQ_INT(open_one(tmp, "overflow", &big, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "overflow"), "%s", e.msg); /* libtorch's own check, or ours */
    /* Transposed views that each fit their storage but all share one:
     * copying every one of them would take NV times the file's bytes. */
    enum { NV = 64 };
    torch_zip_tensor many[NV];
    char names[NV][16];
    for (int i = 0; i < NV; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        torch_zip_tensor m = {names[i], 2, {2, 2}, {1, 2}, 0, 4, four, sizeof four, 0, i ? 1 : 0};
        many[i] = m;
    }
    snprintf(path, sizeof path, "%s/many.bin", tmp);
    CHECK_EQ_INT(torch_zip_write(path, many, NV, &e), 0);
    a = NULL;
    CHECK_EQ_INT(cs_archive_open(path, &a, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "exceed the archive's own size"), "%s", e.msg);
    cs_archive_free(a);
    /* The same views, each over a storage of its own, load. */
    for (int i = 0; i < NV; i++) many[i].same_storage_as = 0;
    CHECK_EQ_INT(torch_zip_write(path, many, NV, &e), 0);
    a = NULL;
    CHECK_MSG(cs_archive_open(path, &a, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(cs_archive_count(a), NV);
    cs_archive_free(a);
    /* One 4 MB record loaded again for each of 16 tensors (the unpickler
     * reads a record anew for every persistent id naming it): 64 MB from
     * a 4 MB file is refused before it is all read. */
    enum { RN = 1 << 20 };
    float *rec = calloc(RN, sizeof *rec);
    torch_zip_tensor rr[16];
    for (int i = 0; i < 16; i++) {
        torch_zip_tensor m = {names[i], 1, {RN}, {1}, 0, RN, rec, RN * sizeof *rec, 0, i ? -1 : 0};
        rr[i] = m;
    }
    snprintf(path, sizeof path, "%s/reread.bin", tmp);
    CHECK_EQ_INT(torch_zip_write(path, rr, 16, &e), 0);
    free(rec);
    before = max_rss_kb();
    a = NULL;
    CHECK_EQ_INT(cs_archive_open(path, &a, &e), CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "reads more than"), "%s", e.msg);
    cs_archive_free(a);
    fprintf(stderr, "one 4 MB record read for 16 tensors: peak RSS grew %ld KB: %s\n",
            max_rss_kb() - before, e.msg);
    /* Two tensors over one memoised storage, as torch.save writes tied
     * weights, load and share nothing they should not. */
    rr[1].same_storage_as = 1;
    rr[1].shape[0] = RN / 2;
    rec = calloc(RN, sizeof *rec);
    rr[0].data = rec;
    CHECK_EQ_INT(torch_zip_write(path, rr, 2, &e), 0);
    free(rec);
    a = NULL;
    CHECK_MSG(cs_archive_open(path, &a, &e) == 0, "%s", e.msg);
    CHECK_EQ_INT(cs_archive_count(a), 2);
    cs_archive_free(a);
}

/* The tiny model as a hand-written pytorch_model.bin (HF names) loads and
 * gives the same embeddings as its safetensors twin: the writer above
 * produces what libtorch reads, so the refusals are about the views. */
static void test_bin_layout(void) {
    const char *tmp = test_tmpdir("bin");
    char hf[600], bin[600], path[700];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(bin, sizeof bin, "%s/hf-bin", tmp);
    tiny_spec s = tiny_default_spec();
    cs_error e = {0};
    CHECK_EQ_INT(tiny_model_write(hf, "hf", &s, 3, 0, &e), 0);
    CHECK_EQ_INT(tiny_model_write(bin, "hf", &s, 3, 0, &e), 0);
    cs_safetensors st;
    snprintf(path, sizeof path, "%s/model.safetensors", bin);
    CHECK_EQ_INT(cs_safetensors_open(path, &st, &e), 0);
    torch_zip_tensor *t = calloc((size_t)st.n, sizeof *t);
    for (int i = 0; i < st.n; i++) {
        const cs_tensor *w = &st.tensors[i];
        torch_zip_tensor *z = &t[i]; /* zeroed: own storage, F32, offset 0 */
        z->name = w->name;
        z->ndim = w->ndim;
        z->storage_numel = (int64_t)(w->nbytes / 4);
        z->data = w->data;
        z->data_bytes = w->nbytes;
        int64_t stride = 1;
        for (int d = w->ndim - 1; d >= 0; d--)
            z->shape[d] = w->shape[d], z->stride[d] = stride, stride *= w->shape[d];
    }
    snprintf(path, sizeof path, "%s/pytorch_model.bin", bin);
    CHECK_EQ_INT(torch_zip_write(path, t, st.n, &e), 0);
    free(t);
    cs_safetensors_close(&st);
    snprintf(path, sizeof path, "%s/model.safetensors", bin);
    unlink(path);
    cs_model_files mf;
    cs_torch_model *m_bin = load(bin, "fp32", &mf), *m_st = load(hf, "fp32", NULL);
    CHECK(m_bin && m_st);
    if (m_bin) {
        CHECK_EQ_STR(mf.layout, "hf-bin");
        cs_model_files_close(&mf);
    }
    if (m_bin && m_st) {
        const int R = s.image_size;
        float *px = malloc(sizeof(float) * 3 * R * R), a[32], b[32];
        for (int i = 0; i < 3 * R * R; i++) px[i] = frand();
        CHECK_EQ_INT(cs_torch_encode_images(m_bin, px, 1, a, &e), 0);
        CHECK_EQ_INT(cs_torch_encode_images(m_st, px, 1, b, &e), 0);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)s.embed_dim) == 0);
        free(px);
    }
    cs_torch_model_free(m_bin);
    cs_torch_model_free(m_st);
}

/* ------------------------------------------------------------ broken configurations */

/* Replaces the first occurrence of `from` in a file with `to`. */
static int patch_file(const char *path, const char *from, const char *to) {
    char *text;
    size_t len;
    cs_error e = {0};
    if (cs_read_file(path, 0, &text, &len, &e)) return -1;
    char *at = strstr(text, from);
    int rc = -1;
    if (at) {
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(text, 1, (size_t)(at - text), f);
            fputs(to, f);
            fputs(at + strlen(from), f);
            rc = fclose(f);
        }
    }
    free(text);
    return rc;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

/* A fresh tiny model in `layout` whose `file` gets `from` replaced by `to`
 * (or, when from is NULL, the whole text `to`); opening it must fail with
 * CLIPSCORE_EMODEL and a message holding each of the needles (the file,
 * the field, the tensor and shapes where one is involved). */
static void expect_refused(const char *tmp, const char *layout, const char *file, const char *from,
                           const char *to, const char *needle1, const char *needle2,
                           const char *needle3) {
    static int k;
    char dir[700], path[800];
    snprintf(dir, sizeof dir, "%s/bad%d", tmp, k++);
    /* "openclip-resnet": the open_clip layout of tiny_resnet_spec */
    int resnet = strcmp(layout, "openclip-resnet") == 0;
    tiny_spec s = resnet ? tiny_resnet_spec() : tiny_default_spec();
    cs_error e = {0};
    CHECK_EQ_INT(tiny_model_write(dir, resnet ? "openclip" : layout, &s, 7, 0, &e), 0);
    snprintf(path, sizeof path, "%s/%s", dir, file);
    CHECK_EQ_INT(from ? patch_file(path, from, to) : write_text(path, to), 0);
    cs_model_files mf;
    int rc = cs_model_files_open(dir, &mf, &e);
    CHECK_MSG(rc == CLIPSCORE_EMODEL, "%s: %s -> %s: rc %d", file, from ? from : "", to, rc);
    if (rc == 0) cs_model_files_close(&mf);
    if (rc) fprintf(stderr, "refused: %s\n", e.msg);
    const char *needles[3] = {needle1, needle2, needle3};
    for (int i = 0; i < 3; i++)
        if (needles[i])
            CHECK_MSG(rc && strstr(e.msg, needles[i]) != NULL, "%s: \"%s\" not in \"%s\"", file,
                      needles[i], e.msg);
}

/* Defect 5: values that used to pass the loader (and fail every row later,
 * or reach an undefined float-to-int cast) are refused at load, naming the
 * file and the field. */
static void test_bad_configs(void) {
    const char *tmp = test_tmpdir("badcfg");
    static const char *const pp_ok =
        "{\"crop_size\": {\"height\": 32, \"width\": 32}, \"image_mean\": [0.48, 0.45, 0.40], "
        "\"image_std\": [0.26, 0.26, 0.27]}";
    /* The untouched model and a sane preprocessor config load. */
    {
        char dir[700], path[800];
        snprintf(dir, sizeof dir, "%s/good", tmp);
        tiny_spec s = tiny_default_spec();
        cs_error e = {0};
        CHECK_EQ_INT(tiny_model_write(dir, "hf", &s, 7, 0, &e), 0);
        snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
        CHECK_EQ_INT(write_text(path, pp_ok), 0);
        cs_model_files mf;
        CHECK_MSG(cs_model_files_open(dir, &mf, &e) == 0, "%s", e.msg);
        CHECK_NEAR(mf.preprocess.std[2], 0.27, 1e-6);
        CHECK_EQ_INT(mf.preprocess.size, 32);
        cs_model_files_close(&mf);
    }
    const char *pj = "preprocessor_config.json";
    expect_refused(tmp, "hf", pj, NULL,
                   "{\"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0, 0, 0]}", pj,
                   "image_std[0]", NULL);
    expect_refused(tmp, "hf", pj, NULL, "{\"image_mean\": [1e39, 0.5, 0.5]}", pj, "image_mean[0]",
                   NULL);
    expect_refused(tmp, "hf", pj, NULL, "{\"image_mean\": [0.5, 0.5]}", pj, "image_mean", NULL);
    expect_refused(tmp, "hf", pj, NULL, "{\"image_std\": [0.2, 1e400, 0.2]}", pj, "image_std[1]",
                   NULL);
    expect_refused(tmp, "hf", pj, NULL, "{\"crop_size\": {\"height\": 0, \"width\": 0}}", pj,
                   "crop_size.height", NULL);
    expect_refused(tmp, "hf", pj, NULL, "{\"crop_size\": 48}", pj, "crop_size 48", NULL);

    const char *cj = "config.json";
    /* 1e30 went through an undefined float-to-int cast. */
    expect_refused(tmp, "hf", cj, "\"num_attention_heads\": 2", "\"num_attention_heads\": 1e30", cj,
                   "text_config.num_attention_heads", NULL);
    expect_refused(tmp, "hf", cj, "\"num_attention_heads\": 2", "\"num_attention_heads\": 2.5", cj,
                   "text_config.num_attention_heads", "integer");
    expect_refused(tmp, "hf", cj, "\"num_attention_heads\": 2", "\"num_attention_heads\": 3", cj,
                   "text_config.num_attention_heads", "divide");
    expect_refused(tmp, "hf", cj, "\"vocab_size\": ", "\"vocab_size\": \"1\", \"x\": ", cj,
                   "text_config.vocab_size", "a string");
    expect_refused(tmp, "hf", cj, "\"layer_norm_eps\": 1e-05", "\"layer_norm_eps\": -1", cj,
                   "vision_config.layer_norm_eps", NULL);
    /* Sizes that disagree with the weights name the tensor and both shapes
     * (they used to be ignored: the shapes won silently). */
    expect_refused(tmp, "hf", cj, "\"patch_size\": 8", "\"patch_size\": 16", cj,
                   "vision_config.patch_size",
                   "visual.conv1.weight of shape [64, 3, 16, 16]; it has [64, 3, 8, 8]");
    expect_refused(tmp, "hf", cj, "\"patch_size\": 8", "\"patch_size\": 0", cj,
                   "vision_config.patch_size", NULL);
    expect_refused(
        tmp, "hf", cj,
        "\"hidden_size\": 64, \"num_attention_heads\": 2, \"num_hidden_layers\": 2, \"image_size\"",
        "\"hidden_size\": 0, \"num_attention_heads\": 2, \"num_hidden_layers\": 2, \"image_size\"",
        cj, "vision_config.hidden_size", NULL);
    expect_refused(tmp, "hf", cj, "\"image_size\": 32", "\"image_size\": 40", cj,
                   "vision_config.image_size",
                   "visual.positional_embedding of shape [26, 64]; it has [17, 64]");
    expect_refused(tmp, "hf", cj, "\"projection_dim\": 32", "\"projection_dim\": 48", cj,
                   "projection_dim", "text_projection of shape [64, 48]; it has [64, 32]");
    expect_refused(tmp, "hf", cj, "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3", cj,
                   "text_config.num_hidden_layers", "transformer.resblocks.");

    const char *oj = "open_clip_config.json";
    expect_refused(tmp, "openclip", oj, "\"std\": [0.26862954", "\"std\": [-0.26862954", oj,
                   "preprocess_cfg.std[0]", NULL);
    expect_refused(tmp, "openclip", oj, "\"width\": 64", "\"width\": 96", oj, "vision_cfg.width",
                   "visual.conv1.weight of shape [96, 3, 8, 8]; it has [64, 3, 8, 8]");
    expect_refused(tmp, "openclip", oj, "\"head_width\": 32", "\"head_width\": 48", oj,
                   "vision_cfg.head_width", NULL);
    expect_refused(tmp, "openclip", oj, "\"heads\": 2", "\"heads\": 1e300", oj, "text_cfg.heads",
                   NULL);
    expect_refused(tmp, "openclip", oj, "\"quick_gelu\": true", "\"quick_gelu\": 1", oj,
                   "quick_gelu", NULL);
    expect_refused(tmp, "openclip", oj, "\"patch_size\": 8",
                   "\"patch_size\": 8, \"mlp_ratio\": 4.5", oj, "vision_cfg.mlp_ratio 4.5",
                   "[288, 64]; it has [256, 64]");
    /* A ResNet's declared sizes against its weights; a list of stages
     * declared for a ViT's weights and the other way round. */
    const char *rn = "openclip-resnet";
    expect_refused(tmp, rn, oj, "[1, 2, 1, 1]", "[1, 2, 2, 1]", oj, "vision_cfg.layers",
                   "[1, 2, 1, 1] blocks per stage");
    expect_refused(tmp, rn, oj, "\"width\": 8", "\"width\": 16", oj, "vision_cfg.width",
                   "visual.layer1.0.conv1.weight of shape [16, 8, 1, 1]; it has [8, 8, 1, 1]");
    expect_refused(tmp, rn, oj, "\"image_size\": 64", "\"image_size\": 96", oj,
                   "vision_cfg.image_size",
                   "visual.attnpool.positional_embedding of shape [10, 256]; it has [5, 256]");
    expect_refused(tmp, rn, oj, "\"patch_size\": null", "\"patch_size\": 32", oj,
                   "vision_cfg.patch_size", "no patches");
    expect_refused(tmp, rn, oj, "\"head_width\": 64", "\"head_width\": 48", oj,
                   "vision_cfg.head_width", "256");
    expect_refused(tmp, rn, oj, "[1, 2, 1, 1]", "5", oj, "vision_cfg.layers is 5",
                   "blocks per stage");
    expect_refused(tmp, "openclip", oj, "\"layers\": 2, \"width\": 64",
                   "\"layers\": [1, 1, 1, 1], \"width\": 64", oj, "a list of stages",
                   "weights are a ViT");
}

/* The parser on buffers, as a fuzzer calls it: no NUL terminator needed,
 * garbage and wrong types refused with a message, nothing read past len. */
static void test_config_parse_buffer(void) {
    cs_model_config cfg;
    cs_error e = {0};
    const char *ok = "{\"vision_config\": {\"num_attention_heads\": 12}}XXXX";
    cs_model_config_init(&cfg);
    /* len stops before the trailing garbage */
    CHECK_EQ_INT(cs_model_config_parse_json(ok, strlen(ok) - 4, "buf", CS_CONFIG_HF, &cfg, &e), 0);
    CHECK_EQ_INT(cfg.clip.vision_heads, 12);
    CHECK_EQ_INT(cfg.clip.text_heads, 0); /* not declared */
    CHECK_EQ_INT(cfg.clip.quick_gelu, -1);
    static const struct {
        int kind;
        const char *json, *needle;
    } bad[] = {
        {CS_CONFIG_HF, "", "not a valid JSON object"},
        {CS_CONFIG_HF, "[1, 2]", "not a valid JSON object"},
        {CS_CONFIG_HF, "{\"vision_config\": [1]}", "vision_config is an array"},
        {CS_CONFIG_HF, "{\"vision_config\": {\"image_size\": -224}}", "vision_config.image_size"},
        {CS_CONFIG_HF, "{\"text_config\": {\"vocab_size\": 1e300}}", "text_config.vocab_size"},
        {CS_CONFIG_HF, "{\"text_config\": {\"hidden_act\": 7}}", "text_config.hidden_act"},
        {CS_CONFIG_HF, "{\"vision_config\": {\"num_channels\": 4}}", "num_channels"},
        {CS_CONFIG_HF_PREPROCESSOR, "{\"crop_size\": {\"height\": 32, \"width\": 64}}",
         "not square"},
        {CS_CONFIG_HF_PREPROCESSOR, "{\"image_std\": [\"a\", 1, 1]}", "image_std[0] is a string"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"vision_cfg\": {\"layers\": [3, 4, 6]}}}",
         "has 3 stages"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"vision_cfg\": {\"layers\": [3, 0, 6, 3]}}}",
         "vision_cfg.layers[1]"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"vision_cfg\": {\"layers\": [3, 4, \"6\", 3]}}}",
         "vision_cfg.layers[2]"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"vision_cfg\": {\"image_size\": [224, 256]}}}",
         "square"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"vision_cfg\": {\"mlp_ratio\": 1e308}}}",
         "vision_cfg.mlp_ratio"},
        {CS_CONFIG_OPENCLIP, "{\"model_cfg\": {\"text_cfg\": {\"hf_model_name\": \"x\"}}}",
         "transformers"},
        {7, "{}", "unknown configuration kind"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cs_model_config_init(&cfg);
        /* a heap copy without NUL, so ASan sees any read past the end */
        size_t n = strlen(bad[i].json);
        char *buf = malloc(n ? n : 1);
        memcpy(buf, bad[i].json, n);
        int rc =
            cs_model_config_parse_json(buf, n, "buf", (cs_model_config_kind)bad[i].kind, &cfg, &e);
        free(buf);
        CHECK_MSG(rc < 0 && strstr(e.msg, bad[i].needle), "%s: rc %d, \"%s\"", bad[i].json, rc,
                  e.msg);
    }
    /* Validation of a complete configuration: products stay bounded. */
    cs_clip_config c = {.image_size = 224,
                        .patch_size = 32,
                        .vision_width = 768,
                        .vision_layers = 12,
                        .vision_heads = 12,
                        .vision_mlp = 3072,
                        .context_length = 77,
                        .vocab_size = 49408,
                        .text_width = 512,
                        .text_layers = 12,
                        .text_heads = 8,
                        .text_mlp = 2048,
                        .embed_dim = 512,
                        .quick_gelu = 1,
                        .ln_eps = 1e-5f};
    CHECK_EQ_INT(cs_clip_config_validate(&c, "ok", &e), 0);
    cs_clip_config big = c;
    big.image_size = 4096, big.patch_size = 1;
    CHECK(cs_clip_config_validate(&big, "big", &e) == CLIPSCORE_EMODEL && strstr(e.msg, "patches"));
    big = c;
    big.vocab_size = 1 << 30;
    CHECK(cs_clip_config_validate(&big, "big", &e) == CLIPSCORE_EMODEL &&
          strstr(e.msg, "vocab_size"));
    big = c;
    big.ln_eps = NAN;
    CHECK(cs_clip_config_validate(&big, "nan", &e) == CLIPSCORE_EMODEL && strstr(e.msg, "ln_eps"));
    /* ResNets: RN50 and RN50x64 validate; every stage needs blocks, the
     * width bounds the pool's 32w channels, the image size is a multiple
     * of 32, the heads divide 32w. */
    cs_clip_config rn50 = c;
    rn50.patch_size = 0, rn50.vision_mlp = 0, rn50.vision_width = 64, rn50.vision_heads = 32;
    rn50.vision_stages[0] = 3, rn50.vision_stages[1] = 4, rn50.vision_stages[2] = 6;
    rn50.vision_stages[3] = 3, rn50.vision_layers = 16, rn50.embed_dim = 1024;
    CHECK_MSG(cs_clip_config_validate(&rn50, "rn50", &e) == 0, "%s", e.msg);
    cs_clip_config rn64 = rn50;
    rn64.image_size = 448, rn64.vision_width = 128, rn64.vision_heads = 64;
    rn64.vision_stages[0] = 3, rn64.vision_stages[1] = 15, rn64.vision_stages[2] = 36;
    rn64.vision_stages[3] = 10, rn64.vision_layers = 64;
    CHECK_MSG(cs_clip_config_validate(&rn64, "rn64", &e) == 0, "%s", e.msg);
    static const struct {
        int field, value;
        const char *needle;
    } rbad[] = {
        {0, 0, "vision_stages[3]"},  {1, 600, "ResNet width 600"}, {2, 7, "ResNet width 7"},
        {3, 240, "multiple of 32"},  {4, 7, "vision_heads 7"},     {5, 17, "vision_layers 17"},
        {6, 32, "patch_size is 32"},
    };
    for (size_t i = 0; i < sizeof rbad / sizeof rbad[0]; i++) {
        cs_clip_config b = rn50;
        int *f[] = {&b.vision_stages[3], &b.vision_width,  &b.vision_width, &b.image_size,
                    &b.vision_heads,     &b.vision_layers, &b.patch_size};
        *f[rbad[i].field] = rbad[i].value;
        CHECK_MSG(cs_clip_config_validate(&b, "rn", &e) == CLIPSCORE_EMODEL &&
                      strstr(e.msg, rbad[i].needle),
                  "case %zu: \"%s\" not in \"%s\"", i, rbad[i].needle, e.msg);
    }
    cs_clip_config vit = c; /* a ViT with stages past the first */
    vit.vision_stages[2] = 1;
    CHECK(cs_clip_config_validate(&vit, "vit", &e) == CLIPSCORE_EMODEL &&
          strstr(e.msg, "vision_stages[2]"));
    /* The shim refuses what the validation refuses. */
    cs_torch_model *m = NULL;
    CHECK(cs_torch_model_create(&big, "cpu", "fp32", &m, &e) == CLIPSCORE_EMODEL && !m);
}

/* ------------------------------------------------------------ conformance */

static float *load_npy(const char *path, int64_t *rows, int64_t *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char h[10];
    if (fread(h, 1, 10, f) != 10) {
        fclose(f);
        return NULL;
    }
    int hl = h[8] | h[9] << 8;
    char *hdr = calloc((size_t)hl + 1, 1);
    if (fread(hdr, 1, (size_t)hl, f) != (size_t)hl) hl = -1;
    char *sh = strstr(hdr, "'shape': (");
    int64_t dims[4] = {1, 1, 1, 1};
    int nd = 0;
    for (char *p = sh ? sh + 10 : hdr; sh && *p && *p != ')' && nd < 4; p++)
        if (*p >= '0' && *p <= '9') dims[nd++] = strtoll(p, &p, 10), p--;
    free(hdr);
    *rows = dims[0];
    *cols = dims[1] * (nd > 2 ? dims[2] : 1) * (nd > 3 ? dims[3] : 1);
    size_t n = (size_t)(*rows * *cols);
    float *d = malloc(n * sizeof *d);
    if (hl < 0 || fread(d, sizeof *d, n, f) != n) {
        free(d);
        d = NULL;
    }
    fclose(f);
    return d;
}

static void test_conformance(const char *dir) {
    char p[1024];
    int64_t ni, pc, wi_n, d, wt_n, dt;
    snprintf(p, sizeof p, "%s/expected/pixels.npy", dir);
    float *px = load_npy(p, &ni, &pc);
    snprintf(p, sizeof p, "%s/expected/image_embeddings.npy", dir);
    float *wi = load_npy(p, &wi_n, &d);
    snprintf(p, sizeof p, "%s/expected/text_embeddings.npy", dir);
    float *wt = load_npy(p, &wt_n, &dt);
    CHECK(px && wi && wt);
    /* token ids of the first 200 captions */
    snprintf(p, sizeof p, "%s/expected/tokens.jsonl", dir);
    FILE *f = fopen(p, "rb");
    CHECK(f != NULL);
    enum { NT = 200 };
    static int32_t ids[NT * 77];
    int lens[NT], nt = 0;
    char line[65536];
    while (f && nt < NT && fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line), *a = cJSON_GetObjectItem(j, "ids");
        lens[nt] = cJSON_GetArraySize(a);
        for (int k = 0; k < lens[nt]; k++) ids[nt * 77 + k] = cJSON_GetArrayItem(a, k)->valueint;
        cJSON_Delete(j);
        nt++;
    }
    if (f) fclose(f);
    if (!px || !wi || !wt) return;
    static const char *const layouts[] = {"model-hf", "model-hf-bin", "model-openclip",
                                          "model-openai-jit"};
    for (int l = 0; l < 4; l++) {
        snprintf(p, sizeof p, "%s/%s", dir, layouts[l]);
        cs_torch_model *m = load(p, "fp32", NULL);
        CHECK_MSG(m != NULL, "%s loads", layouts[l]);
        if (!m) continue;
        cs_error e = {0};
        float *gi = malloc((size_t)(ni * d) * sizeof *gi),
              *gt = malloc((size_t)(nt * dt) * sizeof *gt);
        CHECK_EQ_INT(cs_torch_encode_images(m, px, (int)ni, gi, &e), 0);
        for (int s = 0; s < nt; s += 50)
            CHECK_EQ_INT(cs_torch_encode_texts(m, ids + s * 77, lens + s, nt - s < 50 ? nt - s : 50,
                                               77, gt + (size_t)s * dt, &e),
                         0);
        double ci = 1, ct = 1;
        for (int i = 0; i < ni; i++) ci = fmin(ci, cosine(gi + i * d, wi + i * d, (int)d));
        for (int i = 0; i < nt; i++) ct = fmin(ct, cosine(gt + i * dt, wt + i * dt, (int)dt));
        fprintf(stderr, "%s: min cosine to reference: images %.7f, texts %.7f\n", layouts[l], ci,
                ct);
        CHECK_MSG(ci >= 0.9999, "%s image embeddings: min cosine %.7f", layouts[l], ci);
        CHECK_MSG(ct >= 0.9999, "%s text embeddings: min cosine %.7f", layouts[l], ct);
        free(gi);
        free(gt);
        cs_torch_model_free(m);
    }
    free(px);
    free(wi);
    free(wt);
}

int main(void) {
    cs_torch_set_threads(2);
    test_archive_bounds();
    test_tiny();
    test_bin_layout();
    test_stages();
    test_resnet();
    test_bad_configs();
    test_config_parse_buffer();
    const char *conf = test_conformance_dir();
    if (conf)
        test_conformance(conf);
    else
        fprintf(stderr, "conformance fixtures not found: skipped that part\n");
    return test_finish("test_model");
}
