/* test_decode_fast.c - `--decode fast` (CLIPSCORE_DECODE_FAST): the DCT
 * scale chosen for each size (the largest of 1/2, 1/4, 1/8 that keeps the
 * shorter side at least min_side, libjpeg rounding up), the size a large
 * generated JPEG decodes to, the smaller decode memory it reserves, and how
 * close it stays to the exact path: the preprocessed pixels at 224 px, and
 * the embeddings of a tiny random model through the public API. Exact
 * decoding itself is tested in test_image.c and by the conformance check. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clipscore.h"
#include "decode_budget.h"
#include "image.h"
#include "stb_image_write_impl.h"
#include "test.h"
#include "tiny_model.h"

/* A photo-like image: smooth shading, a few hard edges, fine stripes and
 * noise, so that the reduced decode has detail to lose. */
static unsigned char *photo(int w, int h) {
    unsigned char *px = malloc((size_t)w * h * 3);
    if (!px) exit(2);
    unsigned seed = 12345;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double u = (double)x / w, v = (double)y / h;
            int disc = (u - 0.6) * (u - 0.6) + (v - 0.4) * (v - 0.4) < 0.04;
            int bar = u > 0.1 && u < 0.25;
            double stripes = 20 * sin(x * 0.35) * (v > 0.7);
            for (int c = 0; c < 3; c++) {
                seed = seed * 1103515245u + 12345u;
                double noise = (double)((seed >> 16) % 21) - 10;
                double val = 60 + 120 * u * (c == 0) + 100 * v * (c == 1) +
                             80 * (1 - u) * (c == 2) + 70 * disc - 50 * bar + stripes + noise;
                px[((size_t)y * w + x) * 3 + c] = (unsigned char)(val < 0     ? 0
                                                                  : val > 255 ? 255
                                                                              : val);
            }
        }
    return px;
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

static void test_scale_choice(void) {
    /* 12 MP at ViT-B/32 (min_side 448): 3024 / 4 = 756 >= 448, / 8 = 378 not. */
    CHECK_EQ_INT(cs_image_jpeg_scale(4032, 3024, 448), 4);
    CHECK_EQ_INT(cs_image_jpeg_scale(3024, 4032, 448), 4); /* portrait: the same */
    CHECK_EQ_INT(cs_image_jpeg_scale(4032, 3024, 0), 1);   /* exact */
    CHECK_EQ_INT(cs_image_jpeg_scale(640, 480, 448), 1);   /* 240 < 448 */
    CHECK_EQ_INT(cs_image_jpeg_scale(1200, 896, 448), 2);
    /* libjpeg rounds the scaled size up: ceil(895 / 2) = 448, ceil(894 / 2) = 447. */
    CHECK_EQ_INT(cs_image_jpeg_scale(1200, 895, 448), 2);
    CHECK_EQ_INT(cs_image_jpeg_scale(1200, 894, 448), 1);
    CHECK_EQ_INT(cs_image_jpeg_scale(8000, 3584, 448), 8);
    CHECK_EQ_INT(cs_image_jpeg_scale(8000, 3577, 448), 8); /* ceil(447.1) = 448 */
    CHECK_EQ_INT(cs_image_jpeg_scale(8000, 3576, 448), 4); /* 447 */
    CHECK_EQ_INT(cs_image_jpeg_scale(1000, 1000, 672), 1); /* ViT-L/14@336px */
    CHECK_EQ_INT(cs_image_jpeg_scale(6000, 4000, 672), 4);
}

/* A 2400x1800 JPEG (4:2:0, as cameras write) decoded at each min_side. */
static void test_decode_sizes(const char *jpg) {
    struct {
        int min_side, w, h;
    } cases[] = {{0, 2400, 1800},   {448, 600, 450}, {900, 1200, 900},
                 {901, 2400, 1800}, {64, 300, 225},  {226, 600, 450}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cs_image img;
        cs_error e = {0};
        int rc = cs_image_load_scaled(jpg, 0x7fffffff, NULL, cases[i].min_side, &img, &e);
        CHECK_MSG(rc == 0, "min_side %d: %s", cases[i].min_side, e.msg);
        if (rc) continue;
        CHECK_MSG(img.w == cases[i].w && img.h == cases[i].h && img.channels == 3,
                  "min_side %d: %dx%dx%d, expected %dx%dx3", cases[i].min_side, img.w, img.h,
                  img.channels, cases[i].w, cases[i].h);
        cs_image_free(&img);
    }
}

/* Other formats are decoded whole whatever min_side says. */
static void test_other_formats(const char *tmp) {
    char png[600];
    snprintf(png, sizeof png, "%s/photo.png", tmp);
    unsigned char *px = photo(1000, 800);
    CHECK(stbi_write_png(png, 1000, 800, 3, px, 1000 * 3) != 0);
    free(px);
    cs_image img;
    cs_error e = {0};
    int rc = cs_image_load_scaled(png, 0x7fffffff, NULL, 64, &img, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (!rc) {
        CHECK(img.w == 1000 && img.h == 800);
        cs_image_free(&img);
    }
}

/* The decode memory reserved (the budget's peak) is smaller in fast mode. */
static void test_budget(const char *jpg) {
    int64_t peak[2];
    for (int fast = 0; fast < 2; fast++) {
        cs_decode_budget b;
        cs_error e = {0};
        CHECK_EQ_INT(cs_decode_budget_init(&b, (int64_t)1 << 30, &e), 0);
        cs_image img;
        int rc = cs_image_load_scaled(jpg, 0x7fffffff, &b, fast ? 448 : 0, &img, &e);
        CHECK_MSG(rc == 0, "%s", e.msg);
        if (!rc) cs_image_free(&img);
        int64_t held, waits;
        cs_decode_budget_stats(&b, &held, &peak[fast], &waits);
        CHECK_EQ_INT(held, 0);
        cs_decode_budget_destroy(&b);
    }
    /* Exact: 2400x1800x3 = 13.0 MB of pixels; fast: 600x450x3 = 0.8 MB. */
    CHECK_MSG(peak[1] < peak[0] - 12000000, "fast reserved %lld bytes, exact %lld",
              (long long)peak[1], (long long)peak[0]);
}

/* Preprocessed pixels (224 px, normalised) and a tiny model's embeddings
 * stay close to the exact path's. */
static void test_fidelity(const char *tmp, const char *jpg) {
    cs_preprocess_cfg cfg = cs_preprocess_default();
    size_t n = 3 * (size_t)cfg.size * cfg.size;
    float *px[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    for (int fast = 0; fast < 2; fast++) {
        cs_image img;
        cs_error e = {0};
        int rc = cs_image_load_scaled(jpg, 0x7fffffff, NULL, fast ? 2 * cfg.size : 0, &img, &e);
        if (!rc) rc = cs_image_preprocess(&img, &cfg, px[fast], &e);
        CHECK_MSG(rc == 0, "%s", e.msg);
        if (!rc) cs_image_free(&img);
    }
    double max_diff = 0;
    for (size_t i = 0; i < n; i++) max_diff = fmax(max_diff, fabs((double)px[0][i] - px[1][i]));
    double pc = cosine(px[0], px[1], n);
    printf("pixels at 224: cosine %.6f, largest difference %.3f (normalised units)\n", pc,
           max_diff);
    /* Measured 0.9999: the 1/4 decode averages what the antialiased resize
     * would have averaged anyway. 0.999 leaves room for other libjpeg
     * builds; a wrong scale or crop geometry gives < 0.9. */
    CHECK_MSG(pc > 0.999, "pixel cosine %.6f", pc);
    CHECK(max_diff > 0); /* the two paths really differ */
    free(px[0]);
    free(px[1]);

    /* Embeddings through the public API (tiny model: 32 px input, so fast
     * decodes at 1/8; min_side 64). */
    char model[600];
    snprintf(model, sizeof model, "%s/model", tmp);
    cs_error e = {0};
    tiny_spec s = tiny_default_spec();
    CHECK_EQ_INT(tiny_model_write(model, "hf", &s, 5, 0, &e), 0);
    clipscore_context *ctx[2];
    float *emb[2] = {NULL, NULL};
    int dim = 0;
    for (int fast = 0; fast < 2; fast++) {
        clipscore_params p = clipscore_default_params();
        p.model = model;
        p.device = "cpu";
        p.quiet = 1;
        p.decode = fast ? CLIPSCORE_DECODE_FAST : CLIPSCORE_DECODE_EXACT;
        char err[1024];
        ctx[fast] = clipscore_init(&p, err, sizeof err);
        CHECK_MSG(ctx[fast] != NULL, "%s", err);
        if (!ctx[fast]) return;
        clipscore_model_info mi;
        clipscore_get_model_info(ctx[fast], &mi);
        dim = mi.embed_dim;
        float *in = malloc(3 * sizeof(float) * mi.image_size * mi.image_size);
        emb[fast] = malloc(sizeof(float) * dim);
        CHECK_EQ_INT(clipscore_preprocess_image(ctx[fast], jpg, in), 0);
        CHECK_EQ_INT(clipscore_encode_images(ctx[fast], in, 1, emb[fast]), 0);
        free(in);
    }
    double ec = cosine(emb[0], emb[1], (size_t)dim);
    printf("tiny model embeddings: cosine %.6f\n", ec);
    /* 32 px from 1/8 decode; measured 0.9999+; 0.998 is the figure the
     * README promises for ViT-B/32 on photos. */
    CHECK_MSG(ec >= 0.998, "embedding cosine %.6f", ec);
    CHECK(ec < 1.0 || memcmp(emb[0], emb[1], sizeof(float) * dim) != 0);
    for (int i = 0; i < 2; i++) {
        free(emb[i]);
        clipscore_free(ctx[i]);
    }

    /* A mode that is neither is refused. */
    clipscore_params p = clipscore_default_params();
    p.model = model;
    p.quiet = 1;
    p.decode = (clipscore_decode)7;
    char err[1024];
    clipscore_context *bad = clipscore_init(&p, err, sizeof err);
    CHECK(bad == NULL && strstr(err, "decode mode 7") != NULL);
    clipscore_free(bad);
}

int main(void) {
    const char *tmp = test_tmpdir("decode_fast");
    char jpg[600];
    snprintf(jpg, sizeof jpg, "%s/photo.jpg", tmp);
    int w = 2400, h = 1800;
    unsigned char *px = photo(w, h);
    /* Quality 85: stb_image_write subsamples chroma (4:2:0) below 90. */
    CHECK(stbi_write_jpg(jpg, w, h, 3, px, 85) != 0);
    free(px);

    test_scale_choice();
    test_decode_sizes(jpg);
    test_other_formats(tmp);
    test_budget(jpg);
    test_fidelity(tmp, jpg);

    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    return test_finish("test_decode_fast");
}
