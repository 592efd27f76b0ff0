/* test_image.c - tests of image.c and decode_budget.c: the Pillow-compatible
 * resampler against values computed with Pillow, the CLIP preprocessing
 * geometry and values, decoding round trips, the error paths (missing,
 * empty, truncated, corrupt, unsupported, over the pixel limit, files that
 * are not regular or far too long for their header), the decode memory
 * budget under threads, thumbnails and a timing; then, when the shared
 * conformance fixtures are present, all their images against the reference
 * tensor expected/pixels.npy (and those of its inputs/ set: WebP, TIFF,
 * JPEG 2000, BMP, GIF, ICO).
 * Leaves out: the model and everything after the pixel tensor. */
#include "test.h"
#include "image.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "stb_image_write_impl.h"
#include "test_files.h"

/* Compares bytes; reports the first difference. */
static void check_bytes(const char *what, const unsigned char *got, const unsigned char *want,
                        size_t n) {
    size_t i = 0;
    while (i < n && got[i] == want[i]) i++;
    CHECK_MSG(i == n, "%s: byte %zu is %d, expected %d", what, i, i < n ? got[i] : 0,
              i < n ? want[i] : 0);
}

/* ------------------------------------------------------------------------ */
/* Synthetic inputs. The expected outputs below were produced with Pillow 9.4
 * (Debian python3-pil) from the same formulas, e.g. for the first one:
 *     a[y, x, c] = (x*37 + y*53 + c*91) % 256   (uint8, 5 rows, 7 columns)
 *     Image.fromarray(a, "RGB").resize((3, 2), Image.BICUBIC)
 * and list(np.asarray(result).ravel()). */

static cs_image make_image(int w, int h, int ch) {
    cs_image img;
    cs_error e = {0};
    if (cs_image_alloc(&img, w, h, ch, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        exit(2);
    }
    return img;
}

static cs_image rgb7x5(void) {
    cs_image img = make_image(7, 5, 3);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 7; x++)
            for (int c = 0; c < 3; c++)
                img.px[(y * 7 + x) * 3 + c] = (x * 37 + y * 53 + c * 91) % 256;
    return img;
}

/* 1-pixel checkerboard: upscaling it overshoots, so clipping is exercised. */
static cs_image checker9(void) {
    cs_image img = make_image(9, 9, 1);
    for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++) img.px[y * 9 + x] = (x + y) & 1 ? 255 : 0;
    return img;
}

/* RGBA with alpha 0, 255 and values between, per column (row 2 differs). */
static cs_image rgba6x4(void) {
    static const int alpha[6] = {0, 255, 128, 30, 200, 255};
    cs_image img = make_image(6, 4, 4);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 6; x++) {
            unsigned char *p = img.px + (y * 6 + x) * 4;
            p[0] = x * 40;
            p[1] = 255 - y * 60;
            p[2] = (x * y * 25) % 256;
            p[3] = y != 2 ? alpha[x] : 255 - x * 50;
        }
    return img;
}

static cs_image la5(void) {
    cs_image img = make_image(5, 5, 2);
    for (int y = 0; y < 5; y++)
        for (int x = 0; x < 5; x++) {
            img.px[(y * 5 + x) * 2] = (x * 60 + y * 17) % 256;
            img.px[(y * 5 + x) * 2 + 1] = (x + y) * 30;
        }
    return img;
}

static cs_image gray5x3(void) {
    cs_image img = make_image(5, 3, 1);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 5; x++) img.px[y * 5 + x] = (x * 50 + y * 7) % 256;
    return img;
}

static void check_resize(const char *what, cs_image src, int w, int h, int nearest,
                         const unsigned char *want) {
    cs_error e = {0};
    cs_image out;
    int rc = nearest ? cs_image_resize_nearest(&src, w, h, &out, &e)
                     : cs_image_resize(&src, w, h, &out, &e);
    CHECK_MSG(rc == 0, "%s: %s", what, e.msg);
    if (rc) return;
    CHECK_EQ_INT(out.w, w);
    CHECK_EQ_INT(out.h, h);
    CHECK_EQ_INT(out.channels, src.channels);
    check_bytes(what, out.px, want, (size_t)w * h * src.channels);
    cs_image_free(&out);
}

static void test_resize_pillow(void) {
    static const unsigned char rgb_3x2[] = {74,  160, 112, 161, 155, 83,  150, 90,  168,
                                            182, 119, 119, 114, 110, 176, 109, 161, 108};
    static const unsigned char rgb_11x8[] = {
        0,   84,  174, 9,   100, 214, 36,  127, 222, 60,  151, 49,  83,  173, 0,   107, 198, 33,
        131, 254, 57,  154, 203, 80,  178, 28,  104, 216, 25,  131, 241, 56,  147, 17,  106, 218,
        31,  122, 187, 58,  150, 127, 82,  183, 40,  105, 215, 23,  129, 233, 55,  153, 192, 79,
        182, 123, 102, 216, 43,  126, 174, 54,  153, 134, 78,  169, 53,  144, 244, 69,  161, 136,
        96,  187, 7,   120, 204, 38,  143, 235, 70,  168, 249, 93,  192, 103, 117, 219, 26,  140,
        238, 72,  165, 107, 101, 192, 0,   116, 208, 86,  177, 88,  102, 212, 65,  129, 229, 45,
        152, 105, 75,  183, 70,  103, 219, 105, 126, 255, 76,  149, 222, 70,  178, 99,  106, 215,
        55,  134, 244, 44,  149, 255, 120, 222, 25,  135, 214, 50,  163, 170, 89,  199, 47,  113,
        193, 10,  135, 164, 50,  160, 196, 86,  195, 164, 117, 198, 40,  139, 165, 57,  172, 184,
        93,  192, 202, 153, 255, 78,  168, 162, 94,  197, 31,  122, 243, 50,  146, 166, 77,  168,
        20,  101, 193, 34,  126, 239, 65,  149, 190, 82,  172, 31,  108, 204, 30,  125, 223, 60,
        191, 130, 117, 215, 95,  133, 226, 53,  160, 146, 87,  184, 77,  117, 213, 36,  140, 231,
        54,  164, 159, 86,  191, 86,  119, 216, 38,  147, 147, 54,  163, 89,  76,  213, 29,  139,
        244, 53,  155, 241, 91,  182, 66,  115, 206, 15,  138, 241, 71,  162, 253, 96,  186, 92,
        118, 216, 10,  142, 242, 66,  169, 99,  96,  185, 0,   111};
    static const unsigned char checker_4x4[] = {125, 128, 128, 125, 128, 127, 127, 128,
                                                128, 127, 127, 128, 125, 128, 128, 125};
    static const unsigned char checker_13x13[] = {
        0,   151, 233, 0,   176, 206, 0,   206, 176, 0,   233, 151, 0,   148, 124, 112, 148,
        120, 116, 148, 116, 120, 148, 112, 124, 148, 221, 113, 59,  218, 96,  77,  221, 77,
        96,  218, 59,  113, 221, 4,   147, 218, 8,   170, 195, 4,   195, 170, 8,   218, 147,
        4,   171, 121, 96,  169, 113, 104, 171, 104, 113, 169, 96,  121, 171, 197, 116, 76,
        195, 104, 89,  197, 89,  104, 195, 76,  116, 197, 0,   148, 221, 4,   171, 197, 0,
        197, 171, 4,   221, 148, 0,   197, 116, 76,  195, 104, 89,  197, 89,  104, 195, 76,
        116, 197, 171, 121, 96,  169, 113, 104, 171, 104, 113, 169, 96,  121, 171, 4,   147,
        218, 8,   170, 195, 4,   195, 170, 8,   218, 147, 4,   221, 113, 59,  218, 96,  77,
        221, 77,  96,  218, 59,  113, 221, 148, 124, 112, 148, 120, 116, 148, 116, 120, 148,
        112, 124, 148, 0,   151, 233, 0,   176, 206, 0,   206, 176, 0,   233, 151, 0};
    /* Width unchanged: Pillow skips the horizontal pass. */
    static const unsigned char checker_9x4[] = {
        111, 144, 111, 144, 111, 144, 111, 144, 111, 129, 126, 129, 126, 129, 126, 129, 126, 129,
        129, 126, 129, 126, 129, 126, 129, 126, 129, 111, 144, 111, 144, 111, 144, 111, 144, 111};
    static const unsigned char rgba_3x5[] = {
        41,  255, 0,   130, 79,  255, 0,   109, 186, 255, 0,   207, 43,  221, 18,
        123, 77,  214, 30,  108, 186, 211, 83,  219, 27,  157, 24,  185, 88,  162,
        92,  121, 182, 191, 149, 109, 23,  121, 35,  207, 93,  117, 123, 126, 181,
        70,  129, 69,  42,  68,  89,  126, 77,  70,  120, 108, 186, 74,  86,  215};
    static const unsigned char la_3x3[] = {23,  22, 140, 71, 150, 120, 57,  71,  172,
                                           120, 92, 169, 85, 120, 197, 169, 123, 218};
    static const unsigned char near_7x4[] = {0,   50,  50,  100, 150, 150, 200, 7,   57,  57,
                                             107, 157, 157, 207, 7,   57,  57,  107, 157, 157,
                                             207, 14,  64,  64,  114, 164, 164, 214};
    static const unsigned char near_2x2[] = {50, 150, 64, 164};

    cs_image a = rgb7x5(), c = checker9(), r = rgba6x4(), l = la5(), g = gray5x3();
    check_resize("rgb 7x5 -> 3x2", a, 3, 2, 0, rgb_3x2);
    check_resize("rgb 7x5 -> 11x8", a, 11, 8, 0, rgb_11x8);
    check_resize("checker 9x9 -> 4x4", c, 4, 4, 0, checker_4x4);
    check_resize("checker 9x9 -> 13x13", c, 13, 13, 0, checker_13x13);
    check_resize("checker 9x9 -> 9x4", c, 9, 4, 0, checker_9x4);
    check_resize("rgba 6x4 -> 3x5 (premultiplied)", r, 3, 5, 0, rgba_3x5);
    check_resize("la 5x5 -> 3x3 (premultiplied)", l, 3, 3, 0, la_3x3);
    check_resize("gray 5x3 nearest -> 7x4", g, 7, 4, 1, near_7x4);
    check_resize("gray 5x3 nearest -> 2x2", g, 2, 2, 1, near_2x2);
    /* Same size: a copy, even for RGBA (no premultiply round trip). */
    check_resize("rgba same size", r, 6, 4, 0, r.px);
    cs_image_free(&a);
    cs_image_free(&c);
    cs_image_free(&r);
    cs_image_free(&l);
    cs_image_free(&g);
}

/* A constant image stays constant at any size. With alpha 128 the colour
 * goes through Pillow's premultiply round trip: (200, 170, 140, 128) comes
 * back as (199, 169, 139, 128) from Pillow, and so it must here. */
static void test_constant(void) {
    static const int sizes[][2] = {{1, 1}, {5, 3}, {17, 13}, {40, 2}, {160, 90}, {2, 333}};
    static const unsigned char half_alpha[3] = {199, 169, 139};
    for (int ch = 1; ch <= 4; ch++) {
        int has_alpha = ch == 2 || ch == 4;
        for (int alpha = 255; alpha >= 128; alpha -= 127) {
            if (!has_alpha && alpha != 255) continue;
            cs_image img = make_image(37, 23, ch);
            unsigned char want[4];
            for (int c = 0; c < ch; c++) {
                int is_alpha = has_alpha && c == ch - 1;
                int v = is_alpha ? alpha : 200 - 30 * c;
                want[c] = is_alpha || alpha == 255 ? v : half_alpha[c];
                for (int i = 0; i < 37 * 23; i++) img.px[i * ch + c] = (unsigned char)v;
            }
            for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
                cs_error e = {0};
                cs_image out;
                CHECK(cs_image_resize(&img, sizes[s][0], sizes[s][1], &out, &e) == 0);
                int same = 1;
                for (int i = 0; i < out.w * out.h * ch; i++) same &= out.px[i] == want[i % ch];
                CHECK_MSG(same, "constant %d-channel image (alpha %d) changed at %dx%d", ch, alpha,
                          sizes[s][0], sizes[s][1]);
                cs_image_free(&out);
            }
            cs_image_free(&img);
        }
    }
}

static void test_geometry(void) {
    int w, h;
    cs_image_resized_size(451, 300, 224, &w, &h); /* int(224 * 451 / 300) = int(336.75) */
    CHECK(w == 336 && h == 224);
    cs_image_resized_size(300, 451, 224, &w, &h);
    CHECK(w == 224 && h == 336);
    cs_image_resized_size(1000, 872, 224, &w, &h); /* 256.88 -> 256 */
    CHECK(w == 256 && h == 224);
    cs_image_resized_size(102, 102, 224, &w, &h);
    CHECK(w == 224 && h == 224);
    cs_image_resized_size(1, 1000, 224, &w, &h);
    CHECK(w == 224 && h == 224000);
    /* Python's round() takes halves to the even neighbour. */
    CHECK_EQ_INT(cs_image_crop_offset(224, 224), 0);
    CHECK_EQ_INT(cs_image_crop_offset(225, 224), 0); /* round(0.5) = 0 */
    CHECK_EQ_INT(cs_image_crop_offset(226, 224), 1);
    CHECK_EQ_INT(cs_image_crop_offset(227, 224), 2);  /* round(1.5) = 2 */
    CHECK_EQ_INT(cs_image_crop_offset(229, 224), 2);  /* round(2.5) = 2 */
    CHECK_EQ_INT(cs_image_crop_offset(231, 224), 4);  /* round(3.5) = 4 */
    CHECK_EQ_INT(cs_image_crop_offset(301, 224), 38); /* round(38.5) = 38 */
    CHECK_EQ_INT(cs_image_crop_offset(336, 224), 56);
}

/* Preprocessing: values at a few positions, from the reference pipeline in
 * Python (Pillow resize, crop, convert("RGB"), /255, normalise, float32):
 *   rgb300x200:  a[y, x, c] = (x*3 + y*5 + c*40) % 256
 *   gray300x223: a[y, x] = (x*x + y*7) % 251  (upscaled to 301x224, left
 *                offset round(38.5) = 38)
 *   palette: the PNG below, a 6x5 two-bit palette image written by Pillow
 *            (optimize=True, bits=2), resized with nearest neighbour. */
static const int probe[5][3] = {{0, 0, 0}, {1, 100, 50}, {2, 223, 223}, {0, 17, 200}, {2, 111, 3}};

static void check_probes(const char *what, const float *out, const double *want) {
    for (int i = 0; i < 5; i++) {
        double got = out[(probe[i][0] * 224 + probe[i][1]) * 224 + probe[i][2]];
        CHECK_MSG(fabs(got - want[i]) <= 1e-6, "%s: [%d][%d][%d] = %.8f, expected %.8f", what,
                  probe[i][0], probe[i][1], probe[i][2], got, want[i]);
    }
}

static const unsigned char palette_png[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
    0x52, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x05, 0x02, 0x03, 0x00, 0x00, 0x00, 0x1b,
    0x36, 0x75, 0x75, 0x00, 0x00, 0x00, 0x0c, 0x50, 0x4c, 0x54, 0x45, 0xff, 0x00, 0x00, 0x00,
    0x80, 0xff, 0x14, 0xc8, 0x28, 0xfa, 0xfa, 0x0a, 0x50, 0x8c, 0xfb, 0x70, 0x00, 0x00, 0x00,
    0x17, 0x49, 0x44, 0x41, 0x54, 0x78, 0xda, 0x63, 0x50, 0x52, 0x60, 0xb8, 0x7b, 0x81, 0xa1,
    0xa3, 0x81, 0xa1, 0xbc, 0x80, 0x41, 0x49, 0x01, 0x00, 0x21, 0x61, 0x04, 0x21, 0xbc, 0x10,
    0x62, 0x32, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

static void test_preprocess(void) {
    static const double want_rgb[5] = {0.39750149846076965, -0.6715377569198608,
                                       -1.0536178350448608, 1.871942400932312, 1.6624149084091187};
    static const double want_gray[5] = {1.0106353759765625, 1.0693633556365967, 0.38260897994041443,
                                        -0.960152268409729, 1.3353533744812012};
    static const double want_pal[5] = {1.9303361177444458, -1.7520971298217773, -0.9114170670509338,
                                       1.9303361177444458, -0.9114170670509338};
    cs_preprocess_cfg cfg = cs_preprocess_default();
    CHECK_EQ_INT(cfg.size, 224);
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    cs_error e = {0};

    cs_image rgb = make_image(300, 200, 3);
    for (int y = 0; y < 200; y++)
        for (int x = 0; x < 300; x++)
            for (int c = 0; c < 3; c++)
                rgb.px[(y * 300 + x) * 3 + c] = (x * 3 + y * 5 + c * 40) % 256;
    CHECK(cs_image_preprocess(&rgb, &cfg, out, &e) == 0);
    check_probes("rgb300x200", out, want_rgb);
    cs_image_free(&rgb);

    cs_image gray = make_image(300, 223, 1);
    for (int y = 0; y < 223; y++)
        for (int x = 0; x < 300; x++) gray.px[y * 300 + x] = (x * x + y * 7) % 251;
    CHECK(cs_image_preprocess(&gray, &cfg, out, &e) == 0);
    check_probes("gray300x223", out, want_gray);
    cs_image_free(&gray);

    /* Palette PNG: detected, and resized with nearest neighbour, so every
     * output pixel is one of the four palette colours. */
    cs_image pal;
    int rc = cs_image_load_memory(palette_png, sizeof palette_png, "palette.png", 0, &pal, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(pal.w == 6 && pal.h == 5 && pal.channels == 3 && pal.palette == 1);
        CHECK(cs_image_preprocess(&pal, &cfg, out, &e) == 0);
        check_probes("palette png", out, want_pal);
        static const unsigned char colours[4][3] = {
            {255, 0, 0}, {0, 128, 255}, {20, 200, 40}, {250, 250, 10}};
        int all_palette = 1;
        for (int i = 0; i < 224 * 224; i++) {
            int found = 0;
            for (int k = 0; k < 4; k++) {
                int same = 1;
                for (int c = 0; c < 3; c++) {
                    float v = ((float)colours[k][c] / 255.0f - cfg.mean[c]) / cfg.std[c];
                    same &= out[c * 224 * 224 + i] == v;
                }
                found |= same;
            }
            all_palette &= found;
        }
        CHECK_MSG(all_palette, "palette image: a pixel is not a palette colour (not nearest)");
        cs_image_free(&pal);
    }

    /* Invalid arguments, and a ratio whose long side would not fit. */
    cs_image empty = {0};
    CHECK_EQ_INT(cs_image_preprocess(&empty, &cfg, out, &e), CLIPSCORE_EARG);
    cs_image line = make_image(1, 100000, 1);
    memset(line.px, 7, 100000);
    CHECK_EQ_INT(cs_image_preprocess(&line, &cfg, out, &e), CLIPSCORE_ELIMIT);
    cs_image_free(&line);
    free(out);
}

/* ------------------------------------------------------------------------ */
/* Decoding and errors                                                       */

typedef struct membuf {
    unsigned char *data;
    size_t len, cap;
} membuf;

static void membuf_write(void *ctx, void *data, int size) {
    membuf *m = ctx;
    if (m->len + (size_t)size > m->cap) {
        m->cap = (m->len + (size_t)size) * 2;
        m->data = realloc(m->data, m->cap);
        if (!m->data) exit(2);
    }
    memcpy(m->data + m->len, data, (size_t)size);
    m->len += (size_t)size;
}

/* A smooth test picture with some detail (w x h x ch). */
static unsigned char *picture(int w, int h, int ch) {
    unsigned char *p = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                int v = (x * 255 / w + y * 128 / h + c * 60 + ((x / 8 + y / 8) % 2) * 40) % 256;
                p[((size_t)y * w + x) * ch + c] = (unsigned char)v;
            }
    return p;
}

static int expect_error(const char *path, int64_t max_pixels, int code, const char *needle) {
    cs_error e = {0};
    cs_image img = {0};
    img.px = (unsigned char *)"x"; /* a failed load must leave no pointer behind */
    int rc = cs_image_load(path, max_pixels, &img, &e);
    CHECK_MSG(rc == code, "%s: got %d (%s), expected %d", path, rc, e.msg, code);
    CHECK_MSG(strstr(e.msg, path) != NULL, "message does not name the file: %s", e.msg);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "message lacks \"%s\": %s", needle, e.msg);
    CHECK(img.px == NULL && img.w == 0);
    return rc;
}

/* An 8x8 gray JPEG written by Pillow (quality 50, optimize=True) from
 * a[y, x] = (x*30 + y*20) % 256, and the first 16 pixels Pillow decodes. */
static const unsigned char gray_jpeg[] = {
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x10, 0x0b, 0x0c, 0x0e, 0x0c, 0x0a, 0x10,
    0x0e, 0x0d, 0x0e, 0x12, 0x11, 0x10, 0x13, 0x18, 0x28, 0x1a, 0x18, 0x16, 0x16, 0x18, 0x31, 0x23,
    0x25, 0x1d, 0x28, 0x3a, 0x33, 0x3d, 0x3c, 0x39, 0x33, 0x38, 0x37, 0x40, 0x48, 0x5c, 0x4e, 0x40,
    0x44, 0x57, 0x45, 0x37, 0x38, 0x50, 0x6d, 0x51, 0x57, 0x5f, 0x62, 0x67, 0x68, 0x67, 0x3e, 0x4d,
    0x71, 0x79, 0x70, 0x64, 0x78, 0x5c, 0x65, 0x67, 0x63, 0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08,
    0x00, 0x08, 0x01, 0x01, 0x11, 0x00, 0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xc4, 0x00, 0x20,
    0x10, 0x00, 0x01, 0x02, 0x05, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x11, 0x22, 0x41, 0x00, 0x12, 0x21, 0x31, 0x91, 0xff, 0xda,
    0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, 0x21, 0x43, 0x72, 0x19, 0x58, 0x7f, 0x6b, 0x6a,
    0x89, 0x5d, 0xac, 0x34, 0xaa, 0xde, 0x72, 0x78, 0xc0, 0xec, 0xf9, 0x51, 0x51, 0xaf, 0xff, 0xd9};
static const unsigned char gray_jpeg_pillow[16] = {6,  12, 65,  97, 115, 147, 195, 204,
                                                   32, 35, 115, 92, 108, 189, 188, 220};

static void test_decode(void) {
    cs_error e = {0};
    unsigned char *pic = picture(64, 48, 4);
    static const int kinds[4] = {1, 2, 3, 4};
    for (int k = 0; k < 4; k++) {
        int ch = kinds[k];
        unsigned char *src = picture(64, 48, ch);
        char name[32];
        snprintf(name, sizeof name, "rt%d.png", ch);
        const char *path = tmp_path(name);
        CHECK(stbi_write_png(path, 64, 48, ch, src, 64 * ch) != 0);
        cs_image img;
        int rc = cs_image_load(path, 0, &img, &e);
        CHECK_MSG(rc == 0, "%s", e.msg);
        if (rc == 0) {
            CHECK(img.w == 64 && img.h == 48 && img.channels == ch && img.palette == 0);
            check_bytes(path, img.px, src, (size_t)64 * 48 * ch);
            cs_image_free(&img);
        }
        free(src);
    }
    /* A gray JPEG keeps one channel; its pixels agree with Pillow's (libjpeg)
     * decode within the IDCT rounding. */
    cs_image img;
    int rc = cs_image_load_memory(gray_jpeg, sizeof gray_jpeg, "gray.jpg", 0, &img, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(img.w == 8 && img.h == 8 && img.channels == 1);
        int close = 1;
        for (int i = 0; i < 16; i++) close &= abs(img.px[i] - gray_jpeg_pillow[i]) <= 3;
        CHECK_MSG(close, "gray JPEG decodes differently from Pillow");
        cs_image_free(&img);
    }
    /* stb_image_write's JPEGs are always YCbCr: three channels. BMP and TGA
     * decode to the bytes written. */
    const char *jpg = tmp_path("rgb.jpg");
    CHECK(stbi_write_jpg(jpg, 64, 48, 1, pic, 90) != 0);
    CHECK(cs_image_load(jpg, 0, &img, &e) == 0 && img.channels == 3 && img.w == 64);
    cs_image_free(&img);
    const char *bmp = tmp_path("rgb.bmp");
    unsigned char *rgb = picture(64, 48, 3);
    CHECK(stbi_write_bmp(bmp, 64, 48, 3, rgb) != 0);
    if (cs_image_load(bmp, 0, &img, &e) == 0) {
        CHECK(img.channels == 3);
        check_bytes("bmp", img.px, rgb, 64 * 48 * 3);
        cs_image_free(&img);
    } else {
        CHECK_MSG(0, "%s", e.msg);
    }
    const char *tga = tmp_path("rgba.tga");
    stbi_write_tga_with_rle = 0;
    CHECK(stbi_write_tga(tga, 64, 48, 4, pic) != 0);
    if (cs_image_load(tga, 0, &img, &e) == 0) {
        CHECK(img.channels == 4);
        check_bytes("tga", img.px, pic, 64 * 48 * 4);
        cs_image_free(&img);
    } else {
        CHECK_MSG(0, "%s", e.msg);
    }
    free(rgb);
    free(pic);
}

static void test_errors(void) {
    unsigned char *pic = picture(120, 90, 3);
    size_t len;

    expect_error(tmp_path("does-not-exist.png"), 0, CLIPSCORE_EIO, "No such file");
    expect_error(tmp, 0, CLIPSCORE_EIO, "folder");
    const char *empty = tmp_path("empty.jpg");
    write_bytes(empty, "", 0);
    expect_error(empty, 0, CLIPSCORE_EFORMAT, "empty file");

    /* Truncated JPEG: cut in the middle of the scan, and just the EOI. */
    const char *jpg = tmp_path("full.jpg");
    CHECK(stbi_write_jpg(jpg, 120, 90, 3, pic, 90) != 0);
    unsigned char *j = read_bytes(jpg, &len);
    const char *jcut = tmp_path("cut.jpg");
    write_bytes(jcut, j, len / 2);
    expect_error(jcut, 0, CLIPSCORE_EFORMAT, "truncated");
    const char *jeoi = tmp_path("no-eoi.jpg");
    write_bytes(jeoi, j, len - 2);
    expect_error(jeoi, 0, CLIPSCORE_EFORMAT, "truncated");
    /* The whole file still loads, also over the limit check (10800 <= 10800). */
    cs_image img;
    cs_error e = {0};
    CHECK(cs_image_load(jpg, 120 * 90, &img, &e) == 0);
    cs_image_free(&img);
    expect_error(jpg, 120 * 90 - 1, CLIPSCORE_ELIMIT, "limit");
    /* Corrupt scan data: the marker structure survives, the Huffman data not. */
    const char *jbad = tmp_path("corrupt.jpg");
    unsigned char *jc = malloc(len);
    memcpy(jc, j, len);
    for (size_t i = len / 2; i < len / 2 + 64; i++) jc[i] = 0xff;
    jc[len / 2 + 64] = 0xc4; /* FF C4 with a bogus length inside the scan */
    write_bytes(jbad, jc, len);
    expect_error(jbad, 0, CLIPSCORE_EFORMAT, "JPEG");
    free(jc);
    free(j);

    /* A Huffman table whose code counts sum past 256 (stb_image 2.27 would
     * write past its tables; under UBSan this test would abort). */
    unsigned char bad_dht[sizeof gray_jpeg];
    memcpy(bad_dht, gray_jpeg, sizeof gray_jpeg);
    size_t at = 2;
    while (at + 1 < sizeof bad_dht && !(bad_dht[at] == 0xff && bad_dht[at + 1] == 0xc4)) at++;
    bad_dht[at + 5] = 0xff; /* counts of 1- and 2-bit codes */
    bad_dht[at + 6] = 0xff;
    const char *dht = tmp_path("bad-dht.jpg");
    write_bytes(dht, bad_dht, sizeof bad_dht);
    expect_error(dht, 0, CLIPSCORE_EFORMAT, "Huffman");

    /* Truncated PNG: without IEND, and cut inside IDAT. */
    const char *png = tmp_path("full.png");
    CHECK(stbi_write_png(png, 120, 90, 3, pic, 120 * 3) != 0);
    unsigned char *p = read_bytes(png, &len);
    const char *pend = tmp_path("no-iend.png");
    write_bytes(pend, p, len - 12);
    expect_error(pend, 0, CLIPSCORE_EFORMAT, "truncated");
    const char *pcut = tmp_path("cut.png");
    write_bytes(pcut, p, len / 2);
    expect_error(pcut, 0, CLIPSCORE_EFORMAT, "truncated");
    /* Corrupt IDAT contents (chunk structure intact): stb_image's reason. */
    const char *pbad = tmp_path("corrupt.png");
    unsigned char *pc = malloc(len);
    memcpy(pc, p, len);
    memset(pc + 41, 0xaa, 40); /* IDAT data starts at 41: 8 + 25 (IHDR) + 8 */
    write_bytes(pbad, pc, len);
    expect_error(pbad, 0, CLIPSCORE_EFORMAT, "corrupt PNG data");
    free(pc);
    free(p);

    /* Truncated BMP and PNM pixel arrays (stb_image would pad them). */
    const char *bmp = tmp_path("full.bmp");
    CHECK(stbi_write_bmp(bmp, 120, 90, 3, pic) != 0);
    unsigned char *b = read_bytes(bmp, &len);
    const char *bcut = tmp_path("cut.bmp");
    write_bytes(bcut, b, len - 100);
    expect_error(bcut, 0, CLIPSCORE_EFORMAT, "truncated");
    free(b);
    const char *pnm = tmp_path("cut.ppm");
    unsigned char ppm[15 + 300];
    memcpy(ppm, "P6\n# c\n10 10\n255\n", 17);
    memset(ppm + 17, 7, sizeof ppm - 17);
    write_bytes(pnm, ppm, sizeof ppm); /* 298 of 300 pixel bytes */
    expect_error(pnm, 0, CLIPSCORE_EFORMAT, "truncated");

    /* Formats read by their own decoders (test_formats.c) name themselves
     * when broken; formats not read are named as such. */
    static const unsigned char tiff[] = {'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const char *tif = tmp_path("photo.tif");
    write_bytes(tif, tiff, sizeof tiff);
    expect_error(tif, 0, CLIPSCORE_EFORMAT, "corrupt TIFF");
    static const unsigned char webp[] = "RIFF\x24\0\0\0WEBPVP8 \x18\0\0\0\x30\x01\0\x9d\x01\x2a";
    const char *wp = tmp_path("photo.webp");
    write_bytes(wp, webp, sizeof webp - 1);
    expect_error(wp, 0, CLIPSCORE_EFORMAT, "WebP");
    static const unsigned char avif[] = "\0\0\0\x1c"
                                        "ftypavif\0\0\0\0avifmif1miaf";
    const char *av = tmp_path("photo.avif");
    write_bytes(av, avif, sizeof avif - 1);
    expect_error(av, 0, CLIPSCORE_EFORMAT, "AVIF");
    static const unsigned char jxl[] = "\0\0\0\x0cJXL \r\n\x87\n\0\0\0\x14"
                                       "ftypjxl ";
    const char *jx = tmp_path("photo.jxl");
    write_bytes(jx, jxl, sizeof jxl - 1);
    expect_error(jx, 0, CLIPSCORE_EUNSUPPORTED, "JPEG XL images are not supported");
    static const unsigned char bigtiff[] = {'I', 'I', 43, 0, 8, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0};
    const char *btf = tmp_path("photo.btf");
    write_bytes(btf, bigtiff, sizeof bigtiff);
    expect_error(btf, 0, CLIPSCORE_EUNSUPPORTED, "BigTIFF");
    const char *svg = tmp_path("drawing.svg");
    const char *svg_text = "<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n";
    write_bytes(svg, svg_text, strlen(svg_text));
    expect_error(svg, 0, CLIPSCORE_EUNSUPPORTED, "SVG");
    const char *html = tmp_path("page.jpg");
    const char *html_text = "<!DOCTYPE html>\n<html><body>Not found</body></html>\n";
    write_bytes(html, html_text, strlen(html_text));
    expect_error(html, 0, CLIPSCORE_EFORMAT, "HTML");
    static const unsigned char junk[] = {0xab, 0xcd, 0x13, 0x37, 0x00, 0xff, 0x42, 0x99,
                                         0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                         0xfe, 0xed, 0xfa, 0xce, 0x11, 0x22, 0x33, 0x44};
    const char *jk = tmp_path("junk.png");
    write_bytes(jk, junk, sizeof junk);
    expect_error(jk, 0, CLIPSCORE_EFORMAT, "unknown image format");

    /* A PNG that claims 20000 x 20000: refused from the header, before any
     * decoding (its IDAT holds next to nothing, so decoding would fail with
     * EFORMAT instead, or try to allocate 1.2 GB). */
    static const unsigned char big[] = {
        0x89, 'P',  'N', 'G', '\r', '\n', 0x1a, '\n', /* signature */
        0,    0,    0,   13,  'I',  'H',  'D',  'R',  0,    0,    0x4e, 0x20, 0, 0,
        0x4e, 0x20, 8,   2,   0,    0,    0,    0,    0,    0,    0, /* CRC (unchecked) */
        0,    0,    0,   2,   'I',  'D',  'A',  'T',  0x78, 0x9c, 0,    0,    0, 0, /* a stub */
        0,    0,    0,   0,   'I',  'E',  'N',  'D',  0xae, 0x42, 0x60, 0x82};
    const char *bp = tmp_path("huge.png");
    write_bytes(bp, big, sizeof big);
    expect_error(bp, 100000000, CLIPSCORE_ELIMIT, "20000x20000");

    /* From memory, the label names the source. */
    CHECK_EQ_INT(cs_image_load_memory(junk, sizeof junk, "row 7", 0, &img, &e), CLIPSCORE_EFORMAT);
    CHECK(strstr(e.msg, "row 7") != NULL);
    free(pic);
}

/* ------------------------------------------------------------------------ */
/* Hostile files: not regular, far too long, truncated RLE                   */

/* A read that blocks (a FIFO) or a decoder that loops (truncated HDR) must
 * fail the test, not hang it: the watchdog ends the process. */
static void on_watchdog(int sig) {
    (void)sig;
    static const char msg[] = "test_image: watchdog: a load blocked or looped\n";
    if (write(2, msg, sizeof msg - 1) < 0) _exit(3);
    _exit(3);
}

static void watchdog(unsigned seconds) {
    signal(SIGALRM, on_watchdog);
    alarm(seconds);
}

static long max_rss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void test_special_files(void) {
    watchdog(20);
    /* A FIFO with no writer: opening or reading it for real would wait
     * forever. */
    const char *fifo = tmp_path("photo-fifo.jpg");
    CHECK(mkfifo(fifo, 0600) == 0);
    double t0 = cs_now();
    expect_error(fifo, 0, CLIPSCORE_EIO, "not a regular file (a FIFO)");
    CHECK_MSG(cs_now() - t0 < 2.0, "FIFO took %.1f s", cs_now() - t0);
    /* Devices: /dev/null would read as empty, /dev/zero never ends. */
    expect_error("/dev/null", 0, CLIPSCORE_EIO, "not a regular file (a character device)");
    t0 = cs_now();
    expect_error("/dev/zero", 100000000, CLIPSCORE_EIO, "character device");
    CHECK_MSG(cs_now() - t0 < 2.0, "/dev/zero took %.1f s", cs_now() - t0);
    /* A Unix socket cannot even be opened; the message says what it is. */
    const char *sock = tmp_path("photo-sock.png");
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (fd >= 0 && strlen(sock) < sizeof addr.sun_path) {
        strcpy(addr.sun_path, sock);
        CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
        expect_error(sock, 0, CLIPSCORE_EIO, "not a regular file (a socket)");
    }
    if (fd >= 0) close(fd);
    alarm(0);
}

/* A sparse file of `size` bytes starting with `head`. */
static void write_sparse(const char *path, const void *head, size_t len, off_t size) {
    write_bytes(path, head, len);
    if (truncate(path, size) != 0) {
        perror(path);
        exit(2);
    }
}

/* Huge regular files are judged from their first bytes: read whole (as the
 * old reader did, doubling a buffer towards 4 GB) they would take seconds
 * and gigabytes. Both time and peak memory are checked; the bounds are far
 * above what reading a header costs and far below reading 1.9 GB. */
static void test_huge_files(void) {
    const off_t huge = (off_t)1900 << 20;
    const char *zeros = tmp_path("zeros.jpg");
    write_sparse(zeros, "", 0, huge);
    long rss0 = max_rss_kb();
    double t0 = cs_now();
    expect_error(zeros, 100000000, CLIPSCORE_EFORMAT, "unknown image format");
    double dt = cs_now() - t0;
    CHECK_MSG(dt < 1.0, "a 1.9 GB file of zeros took %.2f s to refuse", dt);
    CHECK_MSG(max_rss_kb() - rss0 < 256 * 1024, "refusing it raised the peak RSS by %ld MB",
              (max_rss_kb() - rss0) / 1024);
    unlink(zeros); /* sparse, but no need to leave 1.9 GB files about */

    /* A valid 64x64 PNG header followed by 1.9 GB of (sparse) junk: no
     * 64x64 PNG needs that much, so it is refused before the rest is read. */
    static const unsigned char png_head[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I',  'H',  'D',  'R', 0,
        0,    0,   64,  0,   0,    0,    64,   8,    2, 0, 0, 0,  0x25, 0x0b, 0xe6, 0x89};
    const char *junk = tmp_path("junk-after-header.png");
    write_sparse(junk, png_head, sizeof png_head, huge);
    rss0 = max_rss_kb();
    t0 = cs_now();
    expect_error(junk, 100000000, CLIPSCORE_EFORMAT, "more than a 64x64 PNG can need");
    dt = cs_now() - t0;
    CHECK_MSG(dt < 1.0, "a PNG header with 1.9 GB of junk took %.2f s to refuse", dt);
    CHECK_MSG(max_rss_kb() - rss0 < 256 * 1024, "refusing it raised the peak RSS by %ld MB",
              (max_rss_kb() - rss0) / 1024);
    unlink(junk);

    /* Data appended within reason (a JPEG "motion photo" appends a video)
     * still loads. */
    unsigned char *pic = picture(64, 48, 3);
    const char *jpg = tmp_path("appended.jpg");
    CHECK(stbi_write_jpg(jpg, 64, 48, 3, pic, 90) != 0);
    size_t len;
    unsigned char *j = read_bytes(jpg, &len);
    size_t big = len + (3u << 20);
    unsigned char *withtail = calloc(big, 1);
    memcpy(withtail, j, len);
    write_bytes(jpg, withtail, big);
    cs_error e = {0};
    cs_image img;
    int rc = cs_image_load(jpg, 0, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 64 && img.h == 48, "JPEG with 3 MB appended: %s", e.msg);
    cs_image_free(&img);

    /* A JPEG whose frame header comes after 128 KiB of metadata (two full
     * APP1 segments): the header read goes on until it finds the size. */
    size_t meta = 2 * (2 + 65535);
    unsigned char *m = calloc(len + meta, 1);
    memcpy(m, j, 2); /* SOI */
    for (int k = 0; k < 2; k++) {
        unsigned char *seg = m + 2 + (size_t)k * (2 + 65535);
        seg[0] = 0xff;
        seg[1] = 0xe1;
        seg[2] = 0xff;
        seg[3] = 0xff;
    }
    memcpy(m + 2 + meta, j + 2, len - 2);
    const char *mj = tmp_path("big-metadata.jpg");
    write_bytes(mj, m, len + meta);
    rc = cs_image_load(mj, 0, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 64 && img.h == 48, "JPEG with 128 KiB of metadata: %s", e.msg);
    cs_image_free(&img);

    /* A GIF followed by far more than its first frame can need (later
     * frames, say): only the start is read, and the first frame decodes. */
    static const unsigned char gif[] = {
        'G',  'I', 'F',  '8',  '9',  'a', 2,   0,   2,   0,
        0x80, 0,   0,    0,    0,    0,   255, 255, 255,    /* palette: black, white */
        0x2c, 0,   0,    0,    0,    2,   0,   2,   0,   0, /* image descriptor */
        2,    3,   0x44, 0x02, 0x05, 0,                     /* LZW: 0,1,1,0 (as giflib writes it) */
        0x3b};
    const char *gp = tmp_path("long.gif");
    write_sparse(gp, gif, sizeof gif, (off_t)200 << 20);
    rss0 = max_rss_kb();
    rc = cs_image_load(gp, 0, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 2 && img.h == 2, "GIF with 200 MB after it: %s", e.msg);
    CHECK_MSG(max_rss_kb() - rss0 < 150 * 1024, "reading its start raised the peak RSS by %ld MB",
              (max_rss_kb() - rss0) / 1024);
    cs_image_free(&img);
    unlink(gp);
    free(m);
    free(withtail);
    free(j);
    free(pic);
}

static void put_le16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put_be16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}
static void put_be32(unsigned char *p, uint32_t v) {
    put_be16(p, v >> 16);
    put_be16(p + 2, v & 0xffff);
}

/* RLE TGA, PSD and HDR files whose data ends early: stb_image reads zeros
 * past the end (a grey picture, or for HDR an endless loop), so they are
 * refused after walking their packets. */
static void test_truncated_rle(void) {
    watchdog(30);
    /* 58 bytes claiming 9000x9000 24-bit pixels: 10 run packets of 128. */
    unsigned char tga[58] = {0};
    tga[2] = 10; /* RLE true colour */
    put_le16(tga + 12, 9000);
    put_le16(tga + 14, 9000);
    tga[16] = 24;
    tga[17] = 0x20;
    for (int k = 0; k < 10; k++) {
        tga[18 + 4 * k] = 0xff;
        tga[19 + 4 * k] = 0x40;
    }
    const char *tp = tmp_path("claims-9000x9000.tga");
    write_bytes(tp, tga, sizeof tga);
    expect_error(tp, 100000000, CLIPSCORE_EFORMAT, "truncated TGA");
    /* A whole RLE TGA still decodes to the bytes written. */
    unsigned char *pic = picture(64, 48, 4);
    const char *rle = tmp_path("rle.tga");
    stbi_write_tga_with_rle = 1;
    CHECK(stbi_write_tga(rle, 64, 48, 4, pic) != 0);
    cs_error e = {0};
    cs_image img;
    if (cs_image_load(rle, 0, &img, &e) == 0) {
        CHECK(img.w == 64 && img.h == 48 && img.channels == 4);
        check_bytes("rle tga", img.px, pic, 64 * 48 * 4);
        cs_image_free(&img);
    } else {
        CHECK_MSG(0, "%s", e.msg);
    }
    /* ... and one byte less is truncated. */
    size_t len;
    unsigned char *t = read_bytes(rle, &len);
    const char *rcut = tmp_path("rle-cut.tga");
    write_bytes(rcut, t, len - 26 - 1); /* stb_image_write adds a 26-byte footer */
    expect_error(rcut, 0, CLIPSCORE_EFORMAT, "truncated TGA");
    free(t);

    /* PSD, 3 channels of 8 bits, raw: 4x3 whole, then short. */
    unsigned char psd[26 + 12 + 2 + 36];
    memset(psd, 0, sizeof psd);
    memcpy(psd, "8BPS\0\1", 6);
    put_be16(psd + 12, 3);
    put_be32(psd + 14, 3); /* height */
    put_be32(psd + 18, 4); /* width */
    put_be16(psd + 22, 8);
    put_be16(psd + 24, 3);                                             /* RGB */
    for (int i = 0; i < 36; i++) psd[40 + i] = (unsigned char)(i * 7); /* planar R, G, B */
    const char *pp = tmp_path("whole.psd");
    write_bytes(pp, psd, sizeof psd);
    int rc = cs_image_load(pp, 0, &img, &e);
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (rc == 0) {
        CHECK(img.w == 4 && img.h == 3);
        CHECK(img.px[0] == 0 && img.px[1] == 12 * 7 && img.px[2] == 24 * 7);
        cs_image_free(&img);
    }
    const char *pcut = tmp_path("cut.psd");
    write_bytes(pcut, psd, sizeof psd - 1);
    expect_error(pcut, 0, CLIPSCORE_EFORMAT, "truncated PSD");
    /* PackBits: a row table that promises more bytes than follow. */
    unsigned char prle[26 + 12 + 2 + 18 + 4];
    memcpy(prle, psd, 38);
    put_be16(prle + 38, 1);
    for (int r = 0; r < 9; r++) put_be16(prle + 40 + 2 * r, 2); /* 2 bytes a row */
    memset(prle + 58, 0, 4);                                    /* only 2 of the 9 rows */
    const char *prc = tmp_path("cut-rle.psd");
    write_bytes(prc, prle, sizeof prle);
    expect_error(prc, 0, CLIPSCORE_EFORMAT, "truncated PSD");

    /* HDR with run-length scanlines 16 wide: 4 rows whole, then cut. */
    static const char hdr_head[] = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 16\n";
    size_t hl = sizeof hdr_head - 1;
    unsigned char hdr[sizeof hdr_head - 1 + 4 * 12];
    memcpy(hdr, hdr_head, hl);
    for (int r = 0; r < 4; r++) {
        unsigned char *s = hdr + hl + 12 * r;
        s[0] = 2, s[1] = 2, s[2] = 0, s[3] = 16;
        for (int c = 0; c < 4; c++) s[4 + 2 * c] = 128 + 16, s[5 + 2 * c] = c == 3 ? 128 : 100;
    }
    const char *hp = tmp_path("whole.hdr");
    write_bytes(hp, hdr, sizeof hdr);
    rc = cs_image_load(hp, 0, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 16 && img.h == 4, "%s", e.msg);
    cs_image_free(&img);
    const char *hc = tmp_path("cut.hdr");
    write_bytes(hc, hdr, sizeof hdr - 5); /* stb_image would loop forever on this */
    expect_error(hc, 0, CLIPSCORE_EFORMAT, "truncated HDR");
    /* Flat (too narrow for RLE): 4x4 needs 64 bytes. */
    static const char flat_head[] = "#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 4 +X 4\n";
    unsigned char flat[sizeof flat_head - 1 + 60];
    memset(flat, 90, sizeof flat);
    memcpy(flat, flat_head, sizeof flat_head - 1);
    const char *hf = tmp_path("cut-flat.hdr");
    write_bytes(hf, flat, sizeof flat);
    expect_error(hf, 0, CLIPSCORE_EFORMAT, "truncated HDR");
    free(pic);
    alarm(0);
}

/* ------------------------------------------------------------------------ */
/* The decode memory budget                                                  */

typedef struct reserver {
    cs_decode_budget *b;
    int64_t bytes;
    int rc;
    volatile int done; /* read by the main thread while this one runs */
    double granted_at;
} reserver;

static void *reserve_thread(void *arg) {
    reserver *r = arg;
    cs_error e = {0};
    r->rc = cs_decode_budget_reserve(r->b, r->bytes, &e);
    r->granted_at = cs_now();
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

static int is_done(reserver *r) {
    return __atomic_load_n(&r->done, __ATOMIC_SEQ_CST);
}

/* Waits until `tickets` requests have been made of b (so a thread started
 * to reserve is known to be inside the call, not merely not yet started). */
static void wait_for_tickets(cs_decode_budget *b, uint64_t tickets) {
    double t0 = cs_now();
    for (;;) {
        pthread_mutex_lock(&b->mu);
        uint64_t t = b->next_ticket;
        pthread_mutex_unlock(&b->mu);
        if (t >= tickets || cs_now() - t0 > 10.0) break;
        sleep_ms(1);
    }
}

static void test_budget_basic(void) {
    watchdog(30);
    cs_error e = {0};
    cs_decode_budget b;
    CHECK_EQ_INT(cs_decode_budget_init(&b, 0, &e), CLIPSCORE_EARG);
    CHECK(cs_decode_budget_init(&b, 1000, &e) == 0);
    int64_t reserved, peak, waits;

    /* What does not fit waits for a release. */
    CHECK(cs_decode_budget_reserve(&b, 600, &e) == 0);
    reserver r1 = {&b, 600, 1, 0, 0};
    pthread_t t1;
    pthread_create(&t1, NULL, reserve_thread, &r1);
    wait_for_tickets(&b, 2);
    sleep_ms(50);
    CHECK_MSG(!is_done(&r1), "600 + 600 bytes were granted from a budget of 1000");
    cs_decode_budget_release(&b, 600);
    pthread_join(t1, NULL);
    CHECK_EQ_INT(r1.rc, 0);

    /* First come, first served: 500 waits behind 600; then 50, which would
     * fit, still waits behind 500. */
    reserver r2 = {&b, 500, 1, 0, 0}, r3 = {&b, 50, 1, 0, 0};
    pthread_t t2, t3;
    pthread_create(&t2, NULL, reserve_thread, &r2);
    wait_for_tickets(&b, 3);
    pthread_create(&t3, NULL, reserve_thread, &r3);
    wait_for_tickets(&b, 4);
    sleep_ms(50);
    CHECK_MSG(!is_done(&r2), "500 + 600 bytes were granted from a budget of 1000");
    CHECK_MSG(!is_done(&r3), "a later small request overtook a waiting one");
    cs_decode_budget_release(&b, 600);
    pthread_join(t2, NULL);
    pthread_join(t3, NULL);
    CHECK(r2.rc == 0 && r3.rc == 0);
    cs_decode_budget_release(&b, 500);
    cs_decode_budget_release(&b, 50);

    /* Larger than the whole budget: granted when nothing else is held, and
     * then it runs alone. */
    CHECK(cs_decode_budget_reserve(&b, 5000, &e) == 0);
    reserver r4 = {&b, 1, 1, 0, 0};
    pthread_t t4;
    pthread_create(&t4, NULL, reserve_thread, &r4);
    wait_for_tickets(&b, 6);
    sleep_ms(50);
    CHECK_MSG(!is_done(&r4), "a request was granted beside an oversized one");
    cs_decode_budget_shrink(&b, 5000, 2000); /* still over the budget */
    sleep_ms(50);
    CHECK(!is_done(&r4));
    cs_decode_budget_release(&b, 2000);
    pthread_join(t4, NULL);
    CHECK_EQ_INT(r4.rc, 0);
    cs_decode_budget_release(&b, 1);
    cs_decode_budget_stats(&b, &reserved, &peak, &waits);
    CHECK_EQ_INT(reserved, 0);
    CHECK_EQ_INT(peak, 5000);
    CHECK_EQ_INT(waits, 4);

    /* Cancel wakes a waiter, which reserves nothing; later calls fail at
     * once; releases still work. */
    CHECK(cs_decode_budget_reserve(&b, 1000, &e) == 0);
    reserver r5 = {&b, 10, 1, 0, 0};
    pthread_t t5;
    pthread_create(&t5, NULL, reserve_thread, &r5);
    wait_for_tickets(&b, 8);
    sleep_ms(20);
    CHECK(!is_done(&r5));
    double t0 = cs_now();
    cs_decode_budget_cancel(&b);
    pthread_join(t5, NULL);
    CHECK_EQ_INT(r5.rc, CLIPSCORE_ECANCELED);
    CHECK_MSG(r5.granted_at - t0 < 1.0, "cancel took %.2f s to wake the waiter",
              r5.granted_at - t0);
    CHECK_EQ_INT(cs_decode_budget_reserve(&b, 1, &e), CLIPSCORE_ECANCELED);
    cs_decode_budget_release(&b, 1000);
    cs_decode_budget_stats(&b, &reserved, NULL, NULL);
    CHECK_EQ_INT(reserved, 0);
    cs_decode_budget_destroy(&b);
    CHECK(cs_decode_budget_default_bytes() >= ((int64_t)256 << 20));
    alarm(0);
}

typedef struct loader {
    cs_decode_budget *b;
    const char *paths[6];
    int failures;
    int64_t held_max; /* largest reservation an image held after its decode */
    char msg[1100];
} loader;

static void *load_thread(void *arg) {
    loader *l = arg;
    cs_preprocess_cfg cfg = cs_preprocess_default();
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 6; i++) {
            cs_error e = {0};
            cs_image img;
            int rc = cs_image_load_budgeted(l->paths[i], 0, l->b, &img, &e);
            if (!rc) rc = cs_image_preprocess(&img, &cfg, out, &e);
            if (rc) {
                l->failures++;
                snprintf(l->msg, sizeof l->msg, "%s", e.msg);
            }
            if (img.budget_bytes > l->held_max) l->held_max = img.budget_bytes;
            sleep_ms(2); /* hold the pixels a while, as a worker does */
            cs_image_free(&img);
        }
    free(out);
    return NULL;
}

static void test_budget_loads(void) {
    watchdog(120);
    /* Six 200x150 RGBA PNGs: each estimated at ~1.3 MB to decode (1 MiB of
     * decoder state, the inflated rows and the pixels, 0.12 MB each, and
     * the file); a 3 MB budget lets two decode at once, and four threads
     * want more. */
    char names[6][32];
    loader ls[4];
    memset(ls, 0, sizeof ls);
    for (int i = 0; i < 6; i++) {
        unsigned char *p = picture(200, 150, 4);
        for (int k = 0; k < 200 * 150; k++) p[k * 4 + 3] = (unsigned char)(k * (i + 1));
        snprintf(names[i], sizeof names[i], "budget%d.png", i);
        const char *path = tmp_path(names[i]);
        CHECK(stbi_write_png(path, 200, 150, 4, p, 200 * 4) != 0);
        for (int t = 0; t < 4; t++) ls[t].paths[i] = strdup(path);
        free(p);
    }
    cs_error e = {0};
    cs_decode_budget b;
    const int64_t total = 3000000;
    CHECK(cs_decode_budget_init(&b, total, &e) == 0);
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        ls[t].b = &b;
        pthread_create(&th[t], NULL, load_thread, &ls[t]);
    }
    for (int t = 0; t < 4; t++) pthread_join(th[t], NULL);
    int64_t reserved, peak, waits;
    cs_decode_budget_stats(&b, &reserved, &peak, &waits);
    for (int t = 0; t < 4; t++) {
        CHECK_MSG(ls[t].failures == 0, "thread %d: %d loads failed: %s", t, ls[t].failures,
                  ls[t].msg);
        /* What an image holds after its decode: pixels, and (RGBA) the
         * premultiplied copy preprocessing makes, plus resampling rows. */
        CHECK_MSG(ls[t].held_max >= 2 * 200 * 150 * 4, "an image held only %lld bytes",
                  (long long)ls[t].held_max);
    }
    fprintf(stderr, "budget: %lld bytes, peak reserved %lld, %lld of 72 loads waited\n",
            (long long)total, (long long)peak, (long long)waits);
    CHECK_MSG(peak <= total, "reserved %lld bytes of a %lld budget at once", (long long)peak,
              (long long)total);
    CHECK_MSG(peak > total / 4, "peak reservation %lld: decodes were not counted", (long long)peak);
    CHECK_MSG(waits > 0, "no load ever waited: the budget did not limit anything");
    CHECK_EQ_INT(reserved, 0);

    /* An image estimated above the whole budget still decodes, alone. */
    cs_decode_budget tiny;
    CHECK(cs_decode_budget_init(&tiny, 1000, &e) == 0);
    cs_image img;
    int rc = cs_image_load_budgeted(ls[0].paths[0], 0, &tiny, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 200, "oversized image: %s", e.msg);
    cs_decode_budget_stats(&tiny, &reserved, &peak, NULL);
    CHECK_MSG(peak > 1000 && reserved == img.budget_bytes && img.budget == &tiny,
              "oversized image: peak %lld, reserved %lld, held %lld", (long long)peak,
              (long long)reserved, (long long)img.budget_bytes);
    /* While it holds its pixels, a second load waits; cancel wakes it. */
    loader waiter;
    memset(&waiter, 0, sizeof waiter);
    waiter.b = &tiny;
    for (int i = 0; i < 6; i++) waiter.paths[i] = ls[0].paths[0];
    pthread_t wt;
    pthread_create(&wt, NULL, load_thread, &waiter);
    sleep_ms(100);
    double t0 = cs_now();
    cs_decode_budget_cancel(&tiny);
    pthread_join(wt, NULL);
    CHECK_MSG(cs_now() - t0 < 2.0, "cancel took %.2f s", cs_now() - t0);
    CHECK_EQ_INT(waiter.failures, 18);
    CHECK_MSG(strstr(waiter.msg, "canceled") && strstr(waiter.msg, "budget0.png"),
              "canceled load: %s", waiter.msg);
    cs_image_free(&img);
    cs_decode_budget_stats(&tiny, &reserved, NULL, NULL);
    CHECK_EQ_INT(reserved, 0);
    cs_decode_budget_destroy(&tiny);
    cs_decode_budget_destroy(&b);
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 6; i++) free((char *)ls[t].paths[i]);
    alarm(0);
}

static void test_thumbnail(void) {
    cs_error e = {0};
    cs_image src = make_image(1000, 800, 4), t;
    unsigned char *p = picture(1000, 800, 4);
    memcpy(src.px, p, (size_t)1000 * 800 * 4);
    for (int i = 0; i < 1000 * 800; i++) src.px[i * 4 + 3] = i % 1000 < 500 ? 255 : 0;
    CHECK(cs_image_thumbnail(&src, 128, &t, &e) == 0);
    CHECK(t.w == 128 && t.h == 102 && t.channels == 3);
    /* The transparent right half shows white. */
    CHECK(t.px[(50 * 128 + 120) * 3] == 255 && t.px[(50 * 128 + 120) * 3 + 2] == 255);
    cs_image_free(&t);
    cs_image small = make_image(30, 60, 1);
    memset(small.px, 90, 30 * 60);
    CHECK(cs_image_thumbnail(&small, 128, &t, &e) == 0);
    CHECK(t.w == 64 && t.h == 128 && t.channels == 3 && t.px[0] == 90 && t.px[2] == 90);
    cs_image_free(&t);
    CHECK_EQ_INT(cs_image_thumbnail(&small, 0, &t, &e), CLIPSCORE_EARG);
    cs_image_free(&small);
    cs_image_free(&src);
    free(p);
}

/* Timings are the best of a few runs (the machine may be shared); they are
 * printed, not checked. */
static void test_timing(void) {
    cs_error e = {0};
    cs_preprocess_cfg cfg = cs_preprocess_default();
    float *out = malloc(sizeof(float) * 3 * 224 * 224);
    cs_image img = make_image(1000, 800, 3);
    unsigned char *p = picture(1000, 800, 3);
    memcpy(img.px, p, (size_t)1000 * 800 * 3);
    unsigned char *q = picture(640, 480, 3);
    membuf m = {0};
    CHECK(stbi_write_jpg_to_func(membuf_write, &m, 640, 480, 3, q, 90) != 0);
    double best_pre = 1e9, best_resize = 1e9, best_jpg = 1e9;
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        double t0 = cs_now();
        ok &= cs_image_preprocess(&img, &cfg, out, &e) == 0;
        double t1 = cs_now();
        cs_image full;
        ok &= cs_image_resize(&img, 280, 224, &full, &e) == 0;
        double t2 = cs_now();
        cs_image_free(&full);
        /* The scorer's usual case: decode a 640x480 JPEG and preprocess it. */
        cs_image j;
        ok &= cs_image_load_memory(m.data, m.len, "timing.jpg", 0, &j, &e) == 0;
        ok &= cs_image_preprocess(&j, &cfg, out, &e) == 0;
        double t3 = cs_now();
        cs_image_free(&j);
        if (t1 - t0 < best_pre) best_pre = t1 - t0;
        if (t2 - t1 < best_resize) best_resize = t2 - t1;
        if (t3 - t2 < best_jpg) best_jpg = t3 - t2;
    }
    CHECK_MSG(ok, "%s", e.msg);
    fprintf(stderr,
            "timing: preprocess 1000x800 RGB -> 224x224: %.2f ms; resize 1000x800 -> 280x224: "
            "%.2f ms; decode (%s) + preprocess 640x480 JPEG: %.2f ms\n",
            best_pre * 1e3, best_resize * 1e3, cs_image_jpeg_decoder(), best_jpg * 1e3);
    free(m.data);
    free(q);
    free(p);
    free(out);
    cs_image_free(&img);
}

/* ------------------------------------------------------------------------ */
/* Conformance fixtures                                                      */

/* Reads a float32 little-endian C-order .npy file; returns the data. */
static float *read_npy(const char *path, int64_t shape[4], int *ndim) {
    size_t len;
    unsigned char *d = read_bytes(path, &len);
    if (len < 10 || memcmp(d, "\x93NUMPY", 6) != 0) {
        free(d);
        return NULL;
    }
    size_t hl = d[8] | (size_t)d[9] << 8, off = 10;
    if (d[6] >= 2) {
        hl = d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        off = 12;
    }
    if (off + hl > len) {
        free(d);
        return NULL;
    }
    char *hdr = malloc(hl + 1);
    memcpy(hdr, d + off, hl);
    hdr[hl] = '\0';
    float *out = NULL;
    const char *s = strstr(hdr, "'shape': (");
    if (strstr(hdr, "'<f4'") && strstr(hdr, "'fortran_order': False") && s) {
        s += 10;
        int64_t count = 1;
        *ndim = 0;
        while (*s && *s != ')' && *ndim < 4) {
            shape[(*ndim)++] = strtoll(s, (char **)&s, 10);
            count *= shape[*ndim - 1];
            while (*s == ',' || *s == ' ') s++;
        }
        if (off + hl + (size_t)count * 4 <= len) {
            out = malloc((size_t)count * 4);
            memcpy(out, d + off + hl, (size_t)count * 4);
        }
    }
    free(hdr);
    free(d);
    return out;
}

static void test_conformance(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/expected/images.json", dir);
    size_t len;
    char *json = (char *)read_bytes(path, &len);
    snprintf(path, sizeof path, "%s/expected/pixels.npy", dir);
    int64_t shape[4];
    int ndim = 0;
    float *want = read_npy(path, shape, &ndim);
    CHECK_MSG(want && ndim == 4 && shape[1] == 3 && shape[2] == 224 && shape[3] == 224,
              "%s: not a float32 [N,3,224,224] array", path);
    if (!want) {
        free(json);
        return;
    }
    cs_preprocess_cfg cfg = cs_preprocess_default();
    float *got = malloc(sizeof(float) * 3 * 224 * 224);
    size_t plane = (size_t)3 * 224 * 224;
    int n = 0, exact = 0;
    double worst_max = 0;
    int libjpeg = !strcmp(cs_image_jpeg_decoder(), "libjpeg");
    /* images.json is a flat array of file names. */
    for (char *s = strchr(json, '"'); s; s = strchr(s, '"')) {
        char *end = strchr(s + 1, '"');
        if (!end) break;
        *end = '\0';
        const char *name = s + 1;
        s = end + 1;
        CHECK_MSG(n < shape[0], "more names than rows in pixels.npy");
        if (n >= shape[0]) break;
        snprintf(path, sizeof path, "%s/images/%s", dir, name);
        cs_error e = {0};
        cs_image img;
        int rc = cs_image_load(path, 100000000, &img, &e);
        if (rc == 0) rc = cs_image_preprocess(&img, &cfg, got, &e);
        CHECK_MSG(rc == 0, "%s", e.msg);
        cs_image_free(&img);
        if (rc == 0) {
            const float *w = want + (size_t)n * plane;
            double sum = 0, mx = 0;
            size_t differ = 0;
            for (size_t i = 0; i < plane; i++) {
                double d = fabs((double)got[i] - (double)w[i]);
                sum += d;
                if (d > mx) mx = d;
                differ += d > 1e-6;
            }
            double mean = sum / (double)plane;
            fprintf(stderr, "conformance: %-24s mean |d| %.2e  max |d| %.2e  (%zu of %zu differ)\n",
                    name, mean, mx, differ, plane);
            CHECK_MSG(mean <= 0.003 && mx <= 0.05, "%s: mean %g max %g over tolerance", name, mean,
                      mx);
            /* Every format decodes as in the reference, so the resampler
             * must match exactly; JPEGs only when libjpeg decodes them
             * (stb_image's IDCT differs by a level here and there), and
             * not CMYK, converted before resizing here, after there. */
            const char *dot = strrchr(name, '.');
            int jpeg = dot && (!strcmp(dot, ".jpg") || !strcmp(dot, ".jpeg"));
            if ((!jpeg || libjpeg) && !strstr(name, "cmyk"))
                CHECK_MSG(mx <= 1e-6, "%s: not identical to the reference (max %g)", name, mx);
            exact += mx <= 1e-6;
            if (mx > worst_max) worst_max = mx;
        }
        n++;
    }
    CHECK_MSG(n == shape[0], "%d names for %lld rows", n, (long long)shape[0]);
    fprintf(stderr,
            "conformance: %d of %d images identical to the reference, worst max |d| %.3g (JPEG "
            "decoder: %s)\n",
            exact, n, worst_max, cs_image_jpeg_decoder());
    free(got);
    free(want);
    free(json);
}

int main(void) {
    tmp = test_tmpdir("image");
    test_resize_pillow();
    test_constant();
    test_geometry();
    test_preprocess();
    test_decode();
    test_errors();
    test_special_files();
    test_huge_files();
    test_truncated_rle();
    test_budget_basic();
    test_budget_loads();
    test_thumbnail();
    test_timing();
    const char *conf = test_conformance_dir();
    if (conf) {
        test_conformance(conf);
        /* The second set: WebP, TIFF, JPEG 2000, BMP, GIF, ICO. */
        char inputs[1024];
        snprintf(inputs, sizeof inputs, "%s/inputs", conf);
        struct stat st;
        if (stat(inputs, &st) == 0)
            test_conformance(inputs);
        else
            fprintf(stderr, "conformance inputs/ set not found: skipped that part\n");
    } else
        fprintf(stderr, "conformance fixtures not found: skipped that part\n");
    return test_finish("test_image");
}
