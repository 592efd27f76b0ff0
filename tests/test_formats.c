/* test_formats.c - tests of the decoders behind image_formats.h: WebP
 * (still, lossless with alpha, lossy, animated), TIFF (strips, tiles, LZW,
 * planar, gray 1/4/8/16 bits, WhiteIsZero, palette, RGBA associated and
 * not, RGBX, CMYK), JPEG 2000 (JP2 and J2K, RGB, 16-bit gray; as Pillow 9.4
 * reads it: precision shifts, signed samples, tiles, subsampling, YCbCr,
 * the header's mode, JP2 header boxes it refuses), ICO (PNG and
 * DIB entries, the entry Pillow picks, alpha and AND masks), HEIF and AVIF
 * (against heif-convert's PNG when that tool is installed), 16-bit gray
 * PNG; for each format the pixel limit from the header, truncated and
 * corrupt files (errors, never crashes: run under ASan), and the decode
 * budget. Test files are written here with the libraries' own encoders.
 * Expected values of Pillow's conversions (CMYK, "RGBa") were computed with
 * Pillow 9.4 (Debian python3-pil), as noted where they are used.
 * Leaves out: preprocessing (test_image.c), the shared conformance images
 * (the conformance check). */
#include "test.h"
#include "image.h"
#include "image_formats.h"
#include "test_pixels.h"

#include <stdint.h>
#include <unistd.h>

#include <libheif/heif.h>
#include <openjpeg.h>
#include <tiffio.h>
#include <webp/decode.h>
#include <webp/encode.h>
#include <webp/mux.h>

#include "stb_image_write_impl.h"
#include "test_files.h"

/* A smooth test pattern, channel c of pixel (x, y). */
static unsigned pat(int x, int y, int c) {
    return (unsigned)(x * 7 + y * 5 + c * 60) % 256;
}

static unsigned char *pattern(int w, int h, int ch) {
    unsigned char *p = malloc((size_t)w * h * ch);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++)
                p[((size_t)y * w + x) * ch + c] = (unsigned char)pat(x, y, c);
    return p;
}

static int load(const char *path, int64_t max_pixels, cs_image *img) {
    cs_error e = {0};
    int rc = cs_image_load(path, max_pixels, img, &e);
    if (rc) fprintf(stderr, "  %s: %s\n", path, e.msg);
    return rc;
}

/* Loads path and compares size, channels, palette flag and every byte. */
static void expect_pixels(const char *what, const char *path, int w, int h, int ch, int palette,
                          const unsigned char *want) {
    cs_image img;
    int rc = load(path, 0, &img);
    CHECK_MSG(rc == 0, "%s: load failed (%d)", what, rc);
    if (rc) return;
    check_image_pixels(what, &img, w, h, ch, palette, want);
    cs_image_free(&img);
}

static void expect_error_code(const char *what, const void *d, size_t n, int64_t max_pixels,
                              int code) {
    cs_error e = {0};
    cs_image img;
    int rc = cs_image_load_memory(d, n, what, max_pixels, &img, &e);
    CHECK_MSG(rc == code, "%s (%zu bytes): got %d (%s), expected %d", what, n, rc, e.msg, code);
    CHECK_MSG(rc == 0 || strstr(e.msg, what) != NULL, "%s: message does not name it: %s", what,
              e.msg);
    if (!rc) cs_image_free(&img);
}

/* Truncations of a valid file at many points are errors (EFORMAT), and
 * corrupted copies (bytes overwritten at random) decode or fail cleanly. */
static void expect_robust(const char *what, const char *path, size_t min_cut) {
    size_t n;
    unsigned char *d = read_bytes(path, &n);
    char label[128];
    int bad = 0;
    for (int k = 1; k <= 16; k++) {
        size_t cut = n * k / 17;
        if (cut < min_cut) cut = min_cut;
        snprintf(label, sizeof label, "%s cut to %zu", what, cut);
        cs_error e = {0};
        cs_image img;
        int rc = cs_image_load_memory(d, cut, label, 0, &img, &e);
        if (rc == 0) cs_image_free(&img);
        if (rc != CLIPSCORE_EFORMAT && bad++ < 3)
            fprintf(stderr, "  %s: rc %d (%s)\n", label, rc, e.msg);
    }
    for (size_t cut = n - 1; cut + 8 >= n && cut > 0; cut--) {
        snprintf(label, sizeof label, "%s cut to %zu", what, cut);
        cs_error e = {0};
        cs_image img;
        int rc = cs_image_load_memory(d, cut, label, 0, &img, &e);
        if (rc == 0) cs_image_free(&img);
        if (rc != CLIPSCORE_EFORMAT && bad++ < 3)
            fprintf(stderr, "  %s: rc %d (%s)\n", label, rc, e.msg);
    }
    CHECK_MSG(bad == 0, "%s: %d truncations not refused", what, bad);

    unsigned char *c = malloc(n);
    uint32_t seed = 12345;
    int ok = 0, failed = 0;
    for (int iter = 0; iter < 60; iter++) {
        memcpy(c, d, n);
        int flips = 1 + iter % 8;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            c[at] = (unsigned char)(seed >> 16);
        }
        cs_error e = {0};
        cs_image img;
        int rc = cs_image_load_memory(c, n, what, 0, &img, &e);
        if (rc == 0) {
            CHECK(img.px && img.w > 0 && img.h > 0);
            cs_image_free(&img);
            ok++;
        } else {
            CHECK_MSG(rc < 0 && e.msg[0], "%s: corrupt copy: rc %d without a message", what, rc);
            failed++;
        }
    }
    fprintf(stderr, "  %s: corrupt copies: %d decoded, %d refused\n", what, ok, failed);
    free(c);
    free(d);
}

/* The limit is checked at w*h; the file loads at exactly w*h. */
static void expect_limit(const char *what, const char *path, int w, int h) {
    cs_error e = {0};
    cs_image img;
    int rc = cs_image_load(path, (int64_t)w * h - 1, &img, &e);
    CHECK_MSG(rc == CLIPSCORE_ELIMIT, "%s: over the limit: rc %d (%s)", what, rc, e.msg);
    rc = cs_image_load(path, (int64_t)w * h, &img, &e);
    CHECK_MSG(rc == 0, "%s: at the limit: rc %d (%s)", what, rc, e.msg);
    if (!rc) cs_image_free(&img);
    /* Through a budget: reserved while held, all given back after. */
    cs_decode_budget b;
    CHECK(cs_decode_budget_init(&b, (int64_t)64 << 20, &e) == 0);
    rc = cs_image_load_budgeted(path, 0, &b, &img, &e);
    CHECK_MSG(rc == 0, "%s: budgeted load: %s", what, e.msg);
    int64_t reserved, peak, waits;
    cs_decode_budget_stats(&b, &reserved, &peak, &waits);
    CHECK_MSG(reserved > 0 && peak >= reserved, "%s: reserved %lld, peak %lld", what,
              (long long)reserved, (long long)peak);
    if (!rc) cs_image_free(&img);
    cs_decode_budget_stats(&b, &reserved, &peak, &waits);
    CHECK_EQ_INT(reserved, 0);
    cs_decode_budget_destroy(&b);
}

/* Leaks inside the codec libraries, not ours: x265 keeps a small global
 * allocation for the process's life (when the HEIC encoder runs here), and
 * libheif 1.15's dav1d plugin loses 40 bytes on some corrupt AVIFs. Read by
 * LeakSanitizer in sanitizer builds, unused otherwise; visible, since the
 * build hides symbols by default and the sanitizer looks this one up. */
const char *__lsan_default_suppressions(void);
__attribute__((visibility("default"))) const char *__lsan_default_suppressions(void) {
    return "leak:libx265.so\nleak:libdav1d.so\n";
}

typedef struct buf {
    unsigned char *d;
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
    b->d = realloc(b->d, b->n + n);
    memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void put16(buf *b, unsigned v) {
    unsigned char x[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(b, x, 2);
}
static void put32(buf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(b, x, 4);
}

/* ------------------------------------------------------------------------ */
/* WebP                                                                      */

static void test_webp(void) {
    int w = 37, h = 23;
    /* Lossless RGBA: exact, alpha kept (every alpha > 0, since the encoder
     * may change the colour under alpha 0). */
    unsigned char *rgba = pattern(w, h, 4);
    for (size_t i = 0; i < (size_t)w * h; i++) rgba[4 * i + 3] = (unsigned char)(1 + i % 255);
    uint8_t *out = NULL;
    size_t n = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out);
    CHECK(n > 0);
    const char *p = tmp_path("alpha.webp");
    write_bytes(p, out, n);
    WebPFree(out);
    expect_pixels("lossless RGBA WebP", p, w, h, 4, 0, rgba);
    expect_limit("lossless RGBA WebP", p, w, h);
    expect_robust("lossless WebP", p, 1);

    /* Lossless RGB: mode RGB, 3 channels. */
    unsigned char *rgb = pattern(w, h, 3);
    n = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &out);
    p = tmp_path("rgb.webp");
    write_bytes(p, out, n);
    WebPFree(out);
    expect_pixels("lossless RGB WebP", p, w, h, 3, 0, rgb);

    /* Lossy: the same pixels as libwebp's plain decoder gives (the one
     * Pillow's animation decoder runs for each frame). */
    n = WebPEncodeRGB(rgb, w, h, w * 3, 80, &out);
    int dw, dh;
    uint8_t *want = WebPDecodeRGB(out, n, &dw, &dh);
    CHECK(want && dw == w && dh == h);
    p = tmp_path("lossy.webp");
    write_bytes(p, out, n);
    WebPFree(out);
    if (want) expect_pixels("lossy WebP", p, w, h, 3, 0, want);
    WebPFree(want);
    expect_robust("lossy WebP", p, 1);

    /* Animated: two frames, the first is the image. */
    WebPAnimEncoderOptions ao;
    CHECK(WebPAnimEncoderOptionsInit(&ao));
    WebPAnimEncoder *enc = WebPAnimEncoderNew(w, h, &ao);
    WebPConfig cfg;
    CHECK(WebPConfigInit(&cfg));
    cfg.lossless = 1;
    for (int f = 0; f < 2; f++) {
        WebPPicture pic;
        CHECK(WebPPictureInit(&pic));
        pic.use_argb = 1;
        pic.width = w;
        pic.height = h;
        unsigned char *frame = pattern(w, h, 4);
        for (size_t i = 0; i < (size_t)w * h; i++) {
            frame[4 * i + 3] = 255;
            if (f) frame[4 * i] = (unsigned char)(255 - frame[4 * i]);
        }
        CHECK(WebPPictureImportRGBA(&pic, frame, w * 4));
        CHECK(WebPAnimEncoderAdd(enc, &pic, f * 100, &cfg));
        WebPPictureFree(&pic);
        free(frame);
    }
    CHECK(WebPAnimEncoderAdd(enc, NULL, 200, NULL));
    WebPData anim;
    WebPDataInit(&anim);
    CHECK(WebPAnimEncoderAssemble(enc, &anim));
    WebPAnimEncoderDelete(enc);
    p = tmp_path("anim.webp");
    write_bytes(p, anim.bytes, anim.size);
    WebPDataClear(&anim);
    unsigned char *first = pattern(w, h, 4);
    cs_image img;
    CHECK(load(p, 0, &img) == 0);
    if (img.px) {
        /* Frames without alpha may still carry the canvas alpha flag:
         * compare the colour only. */
        int same = img.w == w && img.h == h;
        for (size_t i = 0; same && i < (size_t)w * h; i++)
            for (int c = 0; c < 3; c++)
                if (img.px[i * img.channels + c] != first[4 * i + c]) same = 0;
        CHECK_MSG(same, "animated WebP: not the first frame");
        cs_image_free(&img);
    }
    free(first);
    expect_robust("animated WebP", p, 1);

    /* A header claiming 16383 x 16383: refused from the header alone. */
    static const unsigned char big[] = "RIFF\x1a\0\0\0WEBPVP8L\x0e\0\0\0\x2f\xff\xff\xff\x0f";
    expect_error_code("huge.webp", big, sizeof big - 1, 1000000, CLIPSCORE_ELIMIT);
    free(rgba);
    free(rgb);
}

/* ------------------------------------------------------------------------ */
/* TIFF                                                                      */

typedef struct tiff_spec {
    int w, h, spp, bps, photometric;
    int planar;      /* PLANARCONFIG_CONTIG or _SEPARATE */
    int compression; /* COMPRESSION_NONE, _LZW, ... */
    int tiled;       /* 16 x 16 tiles */
    int nextra;
    uint16_t extra[2];
    const uint16_t *cmap; /* 3 << bps entries for palette images */
    int inkset;           /* for photometric separated: 0 = not written */
} tiff_spec;

/* Writes samples (packed rows, contiguous; for planar files one plane
 * after the other, each its packed rows). */
static void write_tiff(const char *path, const tiff_spec *s, const unsigned char *data) {
    TIFF *t = TIFFOpen(path, "w");
    if (!t) exit(2);
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)s->w);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)s->h);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)s->spp);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)s->bps);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)s->photometric);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, (uint16_t)s->planar);
    TIFFSetField(t, TIFFTAG_COMPRESSION, (uint16_t)s->compression);
    if (s->nextra) TIFFSetField(t, TIFFTAG_EXTRASAMPLES, (uint16_t)s->nextra, s->extra);
    if (s->cmap) {
        size_t k = (size_t)1 << s->bps;
        TIFFSetField(t, TIFFTAG_COLORMAP, s->cmap, s->cmap + k, s->cmap + 2 * k);
    }
    if (s->inkset) TIFFSetField(t, TIFFTAG_INKSET, (uint16_t)s->inkset);
    int planes = s->planar == PLANARCONFIG_SEPARATE ? s->spp : 1;
    size_t row = ((size_t)s->w * s->bps * (planes > 1 ? 1 : s->spp) + 7) / 8;
    if (s->tiled) {
        TIFFSetField(t, TIFFTAG_TILEWIDTH, 16u);
        TIFFSetField(t, TIFFTAG_TILELENGTH, 16u);
        size_t trow = (16 * (size_t)s->bps * (planes > 1 ? 1 : s->spp) + 7) / 8;
        unsigned char *tile = malloc(trow * 16);
        for (int p = 0; p < planes; p++)
            for (int y = 0; y < s->h; y += 16)
                for (int x = 0; x < s->w; x += 16) {
                    memset(tile, 0, trow * 16);
                    size_t off = (size_t)x * s->bps * (planes > 1 ? 1 : s->spp) / 8;
                    for (int r = 0; r < 16 && y + r < s->h; r++) {
                        size_t len = row - off < trow ? row - off : trow;
                        memcpy(tile + r * trow, data + (size_t)p * s->h * row + (y + r) * row + off,
                               len);
                    }
                    TIFFWriteTile(t, tile, (uint32_t)x, (uint32_t)y, 0, (uint16_t)p);
                }
        free(tile);
    } else {
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, 5u);
        for (int p = 0; p < planes; p++)
            for (int y = 0; y < s->h; y++)
                TIFFWriteScanline(t, (void *)(data + (size_t)p * s->h * row + (size_t)y * row),
                                  (uint32_t)y, (uint16_t)p);
    }
    TIFFClose(t);
}

static void test_tiff(void) {
    int w = 40, h = 21;
    size_t px = (size_t)w * h;
    unsigned char *rgb = pattern(w, h, 3);
    tiff_spec s = {w, h,      3,    8, PHOTOMETRIC_RGB, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0,
                   0, {0, 0}, NULL, 0};
    const char *p = tmp_path("rgb.tif");
    write_tiff(p, &s, rgb);
    expect_pixels("RGB TIFF", p, w, h, 3, 0, rgb);
    expect_limit("RGB TIFF", p, w, h);
    expect_robust("RGB TIFF", p, 1);

    s.compression = COMPRESSION_LZW;
    p = tmp_path("lzw.tif");
    write_tiff(p, &s, rgb);
    expect_pixels("LZW TIFF", p, w, h, 3, 0, rgb);
    expect_robust("LZW TIFF", p, 1);

    s.compression = COMPRESSION_ADOBE_DEFLATE;
    s.tiled = 1;
    p = tmp_path("tiled.tif");
    write_tiff(p, &s, rgb);
    expect_pixels("tiled deflate TIFF", p, w, h, 3, 0, rgb);
    expect_robust("tiled TIFF", p, 1);

    /* Planar: R plane, G plane, B plane. */
    unsigned char *planes = malloc(px * 3);
    for (size_t i = 0; i < px; i++)
        for (int c = 0; c < 3; c++) planes[c * px + i] = rgb[3 * i + c];
    s.tiled = 0;
    s.compression = COMPRESSION_PACKBITS;
    s.planar = PLANARCONFIG_SEPARATE;
    p = tmp_path("planar.tif");
    write_tiff(p, &s, planes);
    expect_pixels("planar PackBits TIFF", p, w, h, 3, 0, rgb);
    free(planes);

    /* Gray 8 bits, and WhiteIsZero (inverted). */
    unsigned char *gray = pattern(w, h, 1), *inv = malloc(px);
    for (size_t i = 0; i < px; i++) inv[i] = (unsigned char)(255 - gray[i]);
    tiff_spec g = {
        w, h,      1,    8, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0,
        0, {0, 0}, NULL, 0};
    p = tmp_path("gray.tif");
    write_tiff(p, &g, gray);
    expect_pixels("gray TIFF", p, w, h, 1, 0, gray);
    g.photometric = PHOTOMETRIC_MINISWHITE;
    p = tmp_path("white.tif");
    write_tiff(p, &g, gray);
    expect_pixels("WhiteIsZero TIFF", p, w, h, 1, 0, inv);

    /* 16-bit gray: scaled v * 255 / 65535, rounded (not saturated as
     * Pillow's mode "I" is). */
    uint16_t g16[6] = {0, 128, 129, 32896, 65278, 65535};
    unsigned char g16want[6] = {0, 0, 1, 128, 254, 255};
    tiff_spec s16 = {
        6, 1,      1,    16, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0,
        0, {0, 0}, NULL, 0};
    p = tmp_path("gray16.tif");
    write_tiff(p, &s16, (const unsigned char *)g16);
    expect_pixels("16-bit gray TIFF", p, 6, 1, 1, 0, g16want);

    /* 16-bit RGB: the high byte (Pillow's "RGB;16"). */
    uint16_t r16[3] = {0x1234, 0xff00, 0x00ff};
    unsigned char r16want[3] = {0x12, 0xff, 0x00};
    tiff_spec sr16 = {
        1, 1, 3, 16, PHOTOMETRIC_RGB, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0, 0, {0, 0}, NULL, 0};
    p = tmp_path("rgb16.tif");
    write_tiff(p, &sr16, (const unsigned char *)r16);
    expect_pixels("16-bit RGB TIFF", p, 1, 1, 3, 0, r16want);

    /* Bilevel: mode "1" (palette flag: nearest-neighbour resize), 0/255. */
    unsigned char bits[2] = {0xa5, 0x3c}; /* one 10-pixel row padded to 2 bytes */
    unsigned char bwant[10] = {255, 0, 255, 0, 0, 255, 0, 255, 0, 0};
    tiff_spec sb = {
        10, 1,      1,    1, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, COMPRESSION_CCITTFAX4, 0,
        0,  {0, 0}, NULL, 0};
    p = tmp_path("bilevel.tif");
    write_tiff(p, &sb, bits);
    expect_pixels("bilevel TIFF (CCITT G4)", p, 10, 1, 1, 1, bwant);

    /* 4-bit gray: x17 (Pillow's "L;4"). */
    unsigned char nib[2] = {0x0f, 0x7a};
    unsigned char nwant[4] = {0, 255, 119, 170};
    tiff_spec s4 = {
        4, 1,      1,    4, PHOTOMETRIC_MINISBLACK, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0,
        0, {0, 0}, NULL, 0};
    p = tmp_path("gray4.tif");
    write_tiff(p, &s4, nib);
    expect_pixels("4-bit gray TIFF", p, 4, 1, 1, 0, nwant);

    /* 4-bit palette: mode "P", the colour map's high bytes. */
    uint16_t cmap[48];
    for (int i = 0; i < 16; i++) {
        cmap[i] = (uint16_t)(i * 4096 + 255);
        cmap[16 + i] = (uint16_t)(65535 - i * 4096);
        cmap[32 + i] = (uint16_t)(i * 257);
    }
    unsigned char idx[2] = {0x1f, 0x80};
    unsigned char pwant[12];
    int ids[4] = {1, 15, 8, 0};
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 3; c++) pwant[3 * i + c] = (unsigned char)(cmap[16 * c + ids[i]] >> 8);
    tiff_spec sp = {
        4, 1,      1,    4, PHOTOMETRIC_PALETTE, PLANARCONFIG_CONTIG, COMPRESSION_NONE, 0,
        0, {0, 0}, cmap, 0};
    p = tmp_path("palette.tif");
    write_tiff(p, &sp, idx);
    expect_pixels("palette TIFF", p, 4, 1, 3, 1, pwant);
    /* 8 bits, the directory first and the colour map last, as Pillow
     * writes them: cut inside the map, libtiff only warns (and would read
     * the image as gray). */
    {
        buf t = {NULL, 0};
        put(&t, "II*\0", 4);
        put32(&t, 8);
        put16(&t, 10);
        static const unsigned tags[10][3] = {{256, 3, 4}, {257, 3, 1},   {258, 3, 8}, {259, 3, 1},
                                             {262, 3, 3}, {273, 4, 134}, {277, 3, 1}, {278, 3, 1},
                                             {279, 4, 4}, {320, 3, 138}};
        for (int i = 0; i < 10; i++) {
            put16(&t, tags[i][0]);
            put16(&t, tags[i][1]);
            put32(&t, tags[i][0] == 320 ? 768 : 1);
            if (tags[i][1] == 4 || tags[i][0] == 320)
                put32(&t, tags[i][2]);
            else {
                put16(&t, tags[i][2]);
                put16(&t, 0);
            }
        }
        put32(&t, 0);
        static const unsigned char idx8[4] = {1, 15, 8, 0};
        put(&t, idx8, 4);
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 256; i++) put16(&t, i < 16 ? cmap[16 * c + i] : 0);
        CHECK_EQ_INT(t.n, 1674);
        p = tmp_path("palette_first.tif");
        write_bytes(p, t.d, t.n);
        expect_pixels("palette TIFF, directory first", p, 4, 1, 3, 1, pwant);
        for (size_t cut = t.n - 1; cut > t.n - 1500; cut -= 97)
            expect_error_code("palette TIFF cut in its colour map", t.d, cut, 0, CLIPSCORE_EFORMAT);
        free(t.d);
    }

    /* CMYK, and RGB as Pillow 9.4 converts it: */
    static const unsigned char cmyk[] = {0,   0,   0,   0,   255, 0,  0,   0,   10,  200, 128, 60,
                                         255, 255, 255, 255, 37,  91, 173, 201, 128, 128, 128, 1};
    static const unsigned char cmyk_rgb[] = {255, 255, 255, 0,  255, 255, 187, 42,  97,
                                             0,   0,   0,   46, 35,  17,  127, 127, 127};
    tiff_spec sc = {6,
                    1,
                    4,
                    8,
                    PHOTOMETRIC_SEPARATED,
                    PLANARCONFIG_CONTIG,
                    COMPRESSION_NONE,
                    0,
                    0,
                    {0, 0},
                    NULL,
                    INKSET_CMYK};
    p = tmp_path("cmyk.tif");
    write_tiff(p, &sc, cmyk);
    /* Kept as CMYK (the reference resizes in CMYK, then converts). */
    expect_pixels("CMYK TIFF", p, 6, 1, 4, 0, cmyk);
    {
        cs_image img;
        if (load(p, 0, &img) == 0) {
            CHECK_MSG(img.cmyk == 1, "CMYK TIFF: cmyk flag %d", img.cmyk);
            unsigned char rgb[18];
            for (int i = 0; i < 6; i++) cs_cmyk_to_rgb(img.px + 4 * i, rgb + 3 * i);
            CHECK_MSG(!memcmp(rgb, cmyk_rgb, sizeof rgb), "CMYK TIFF: Pillow's cmyk2rgb differs");
            cs_image_free(&img);
        }
    }

    /* RGBA: unassociated kept; associated unpremultiplied as Pillow's
     * "RGBa" unpacker does (values from Pillow 9.4); ExtraSamples 0 is
     * padding (mode RGBX: 3 channels). */
    static const unsigned char rgba[] = {100, 50, 25, 128, 200, 10,  0,  255, 30, 30,
                                         30,  0,  90, 60,  200, 100, 10, 20,  30, 7};
    static const unsigned char unpre[] = {199, 99, 49,  128, 200, 10,  0,   255, 0,   0,
                                          0,   0,  229, 153, 255, 100, 255, 255, 255, 7};
    static const unsigned char rgbx[] = {100, 50, 25, 200, 10, 0,  30, 30,
                                         30,  90, 60, 200, 10, 20, 30};
    tiff_spec sa = {5,
                    1,
                    4,
                    8,
                    PHOTOMETRIC_RGB,
                    PLANARCONFIG_CONTIG,
                    COMPRESSION_NONE,
                    0,
                    1,
                    {EXTRASAMPLE_UNASSALPHA, 0},
                    NULL,
                    0};
    p = tmp_path("rgba.tif");
    write_tiff(p, &sa, rgba);
    expect_pixels("RGBA TIFF", p, 5, 1, 4, 0, rgba);
    sa.extra[0] = EXTRASAMPLE_ASSOCALPHA;
    p = tmp_path("rgba_assoc.tif");
    write_tiff(p, &sa, rgba);
    expect_pixels("associated-alpha TIFF", p, 5, 1, 4, 0, unpre);
    sa.extra[0] = EXTRASAMPLE_UNSPECIFIED;
    p = tmp_path("rgbx.tif");
    write_tiff(p, &sa, rgba);
    expect_pixels("RGBX TIFF", p, 5, 1, 3, 0, rgbx);

    /* Float samples: named as not supported. */
    float fl[3] = {0.5f, 0.25f, 1.0f};
    TIFF *t = TIFFOpen(tmp_path("float.tif"), "w");
    TIFFSetField(t, TIFFTAG_IMAGEWIDTH, 1u);
    TIFFSetField(t, TIFFTAG_IMAGELENGTH, 1u);
    TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, (uint16_t)3);
    TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, (uint16_t)32);
    TIFFSetField(t, TIFFTAG_SAMPLEFORMAT, (uint16_t)SAMPLEFORMAT_IEEEFP);
    TIFFSetField(t, TIFFTAG_PHOTOMETRIC, (uint16_t)PHOTOMETRIC_RGB);
    TIFFSetField(t, TIFFTAG_PLANARCONFIG, (uint16_t)PLANARCONFIG_CONTIG);
    TIFFWriteScanline(t, fl, 0, 0);
    TIFFClose(t);
    size_t n;
    unsigned char *d = read_bytes(tmp_path("float.tif"), &n);
    expect_error_code("float.tif", d, n, 0, CLIPSCORE_EUNSUPPORTED);
    free(d);

    /* A directory claiming 100000 x 100000 with no pixel data at all: the
     * limit, from the header, not a read or decode error. */
    static const unsigned char big[] = {'I', 'I', 42, 0, 8,    0,    0,    0, 2, 0, 0, 1, 4,
                                        0,   1,   0,  0, 0,    0xa0, 0x86, 1, 0, 1, 1, 4, 0,
                                        1,   0,   0,  0, 0xa0, 0x86, 1,    0, 0, 0, 0, 0};
    expect_error_code("huge.tif", big, sizeof big, 1000000, CLIPSCORE_ELIMIT);
    free(rgb);
    free(gray);
    free(inv);
}

/* ------------------------------------------------------------------------ */
/* JPEG 2000                                                                 */

/* Encodes im losslessly (reversible 5/3, one layer) to path: a codestream
 * when j2k, else a JP2 file; numres resolutions, tiles of tile x tile (0:
 * one). Frees im. */
static void opj_encode_file(opj_image_t *im, const char *path, int j2k, int numres, int tile) {
    opj_cparameters_t p;
    opj_set_default_encoder_parameters(&p);
    p.tcp_numlayers = 1;
    p.tcp_rates[0] = 0; /* lossless */
    p.cp_disto_alloc = 1;
    p.numresolution = numres;
    if (tile) {
        p.tile_size_on = OPJ_TRUE;
        p.cp_tdx = p.cp_tdy = tile;
    }
    opj_codec_t *codec = opj_create_compress(j2k ? OPJ_CODEC_J2K : OPJ_CODEC_JP2);
    opj_stream_t *s = opj_stream_create_default_file_stream(path, OPJ_FALSE);
    CHECK(codec && s && opj_setup_encoder(codec, &p, im));
    CHECK(opj_start_compress(codec, im, s) && opj_encode(codec, s) && opj_end_compress(codec, s));
    opj_stream_destroy(s);
    opj_destroy_codec(codec);
    opj_image_destroy(im);
}

/* Writes a lossless (reversible 5/3) file with nc components of prec bits. */
static void write_jp2(const char *path, int j2k, int w, int h, int nc, int prec,
                      const uint16_t *samples) {
    opj_image_cmptparm_t cp[4];
    memset(cp, 0, sizeof cp);
    for (int c = 0; c < nc; c++) {
        cp[c].dx = cp[c].dy = 1;
        cp[c].w = (OPJ_UINT32)w;
        cp[c].h = (OPJ_UINT32)h;
        cp[c].prec = (OPJ_UINT32)prec;
        cp[c].sgnd = 0;
    }
    opj_image_t *im =
        opj_image_create((OPJ_UINT32)nc, cp, nc >= 3 ? OPJ_CLRSPC_SRGB : OPJ_CLRSPC_GRAY);
    im->x0 = im->y0 = 0;
    im->x1 = (OPJ_UINT32)w;
    im->y1 = (OPJ_UINT32)h;
    for (int c = 0; c < nc; c++)
        for (int i = 0; i < w * h; i++) im->comps[c].data[i] = samples[(size_t)i * nc + c];
    opj_encode_file(im, path, j2k, w >= 8 && h >= 8 ? 3 : 1 /* tiny images allow one */, 0);
}

static void test_jp2(void) {
    int w = 33, h = 19;
    size_t px = (size_t)w * h;
    unsigned char *rgb = pattern(w, h, 3);
    uint16_t *s = malloc(px * 4 * sizeof *s);
    for (size_t i = 0; i < px * 3; i++) s[i] = rgb[i];
    const char *p = tmp_path("rgb.jp2");
    write_jp2(p, 0, w, h, 3, 8, s);
    expect_pixels("JP2 RGB", p, w, h, 3, 0, rgb);
    expect_limit("JP2 RGB", p, w, h);
    expect_robust("JP2", p, 1);
    p = tmp_path("rgb.j2k");
    write_jp2(p, 1, w, h, 3, 8, s);
    expect_pixels("J2K codestream RGB", p, w, h, 3, 0, rgb);
    expect_limit("J2K codestream", p, w, h);
    expect_robust("J2K", p, 1);

    /* RGBA (4 components): mode RGBA. */
    unsigned char *rgba = pattern(w, h, 4);
    for (size_t i = 0; i < px * 4; i++) s[i] = rgba[i];
    p = tmp_path("rgba.jp2");
    write_jp2(p, 0, w, h, 4, 8, s);
    expect_pixels("JP2 RGBA", p, w, h, 4, 0, rgba);

    /* 16-bit gray: scaled to 8 bits; 4-bit gray: shifted up (Pillow's
     * precision shift). */
    uint16_t g16[6] = {0, 128, 129, 32896, 65278, 65535};
    unsigned char g16want[6] = {0, 0, 1, 128, 254, 255};
    p = tmp_path("gray16.jp2");
    write_jp2(p, 0, 6, 1, 1, 16, g16);
    expect_pixels("JP2 16-bit gray", p, 6, 1, 1, 0, g16want);
    uint16_t g4[4] = {0, 1, 9, 15};
    unsigned char g4want[4] = {0, 16, 144, 240};
    p = tmp_path("gray4.j2k");
    write_jp2(p, 1, 4, 1, 1, 4, g4);
    expect_pixels("J2K 4-bit gray", p, 4, 1, 1, 0, g4want);

    /* Headers claiming 100000 x 100000 (codestream SIZ; JP2 ihdr), the
     * data cut off: the limit, not a decode error. */
    static const unsigned char big_j2k[] = {
        0xff, 0x4f, 0xff, 0x51, 0, 41, 0, 0, 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 0,
        0,    0,    0,    0,    0, 0,  0, 0, 0, 1, 0,    0,    0, 1, 0,    0,    0,
        0,    0,    0,    0,    0, 0,  0, 3, 7, 1, 1,    7,    1, 1, 7,    1,    1};
    expect_error_code("huge.j2k", big_j2k, sizeof big_j2k, 1000000, CLIPSCORE_ELIMIT);
    static const unsigned char big_jp2[] = {
        0,   0,   0,    12,   'j', 'P', ' ',  ' ',  13, 10, 0x87, 10, 0,   0,   0,   20,
        'f', 't', 'y',  'p',  'j', 'p', '2',  ' ',  0,  0,  0,    0,  'j', 'p', '2', ' ',
        0,   0,   0,    45,   'j', 'p', '2',  'h',  0,  0,  0,    22, 'i', 'h', 'd', 'r',
        0,   1,   0x86, 0xa0, 0,   1,   0x86, 0xa0, 0,  3,  7,    7,  0,   0};
    expect_error_code("huge.jp2", big_jp2, sizeof big_jp2, 1000000, CLIPSCORE_ELIMIT);
    free(rgb);
    free(rgba);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* JPEG 2000 as Pillow 9.4 reads it (issue 15)                               */

/* A lossless codestream or JP2 file (by name's extension), kept in the
 * test's folder as name: nc components of prec bits (signed
 * when sgnd), component c subsampled sub[2c] x sub[2c+1] (NULL: none),
 * tiles of tile x tile (0: one), component c's samples in v[c] (each
 * ceil(w/dx) x ceil(h/dy)). Returns the file's bytes (malloc'd). */
static unsigned char *jp2_encode(const char *name, int w, int h, int nc, int prec, int sgnd,
                                 const int *sub, int tile, const int *const *v, size_t *len) {
    opj_image_cmptparm_t cp[4];
    memset(cp, 0, sizeof cp);
    for (int c = 0; c < nc; c++) {
        cp[c].dx = (OPJ_UINT32)(sub ? sub[2 * c] : 1);
        cp[c].dy = (OPJ_UINT32)(sub ? sub[2 * c + 1] : 1);
        cp[c].w = ((OPJ_UINT32)w + cp[c].dx - 1) / cp[c].dx;
        cp[c].h = ((OPJ_UINT32)h + cp[c].dy - 1) / cp[c].dy;
        cp[c].prec = (OPJ_UINT32)prec;
        cp[c].sgnd = (OPJ_UINT32)sgnd;
    }
    opj_image_t *im = opj_image_create((OPJ_UINT32)nc, cp, OPJ_CLRSPC_UNSPECIFIED);
    im->x1 = (OPJ_UINT32)w;
    im->y1 = (OPJ_UINT32)h;
    for (int c = 0; c < nc; c++) memcpy(im->comps[c].data, v[c], sizeof(int) * cp[c].w * cp[c].h);
    const char *path = tmp_path(name);
    opj_encode_file(im, path, strstr(name, ".j2k") != NULL, 1, tile);
    return read_bytes(path, len);
}

/* Decodes bytes and compares with the expected pixels, each within tol. */
static void jp2_expect(const char *what, const unsigned char *d, size_t n, int w, int h, int ch,
                       const unsigned char *want, int tol) {
    cs_error e = {0};
    cs_image img;
    int rc = cs_image_load_memory(d, n, what, 0, &img, &e);
    CHECK_MSG(rc == 0, "%s: %s", what, e.msg);
    if (rc) return;
    CHECK_MSG(img.w == w && img.h == h && img.channels == ch, "%s: %dx%d, %d channels", what, img.w,
              img.h, img.channels);
    if (img.w == w && img.h == h && img.channels == ch) {
        size_t i = 0, k = (size_t)w * h * ch;
        while (i < k && abs(img.px[i] - want[i]) <= tol) i++;
        CHECK_MSG(i == k, "%s: byte %zu is %d, expected %d", what, i, i < k ? img.px[i] : 0,
                  i < k ? want[i] : 0);
    }
    cs_image_free(&img);
}

/* Refused with EFORMAT and a message holding needle. */
static void jp2_refused(const char *what, const unsigned char *d, size_t n, const char *needle) {
    cs_error e = {0};
    cs_image img;
    int rc = cs_image_load_memory(d, n, what, 0, &img, &e);
    CHECK_MSG(rc == CLIPSCORE_EFORMAT && strstr(e.msg, needle), "%s: got %d (%s), expected \"%s\"",
              what, rc, e.msg, needle);
    if (!rc) cs_image_free(&img);
}

static void jp2_box(buf *b, const char *type, const void *payload, size_t n) {
    unsigned char h[8] = {(unsigned char)((n + 8) >> 24), (unsigned char)((n + 8) >> 16),
                          (unsigned char)((n + 8) >> 8), (unsigned char)(n + 8)};
    memcpy(h + 4, type, 4);
    put(b, h, 8);
    put(b, payload, n);
}

/* A JP2 file around a codestream, written here box by box: ihdr for
 * nc components of bpc + 1 bits, and `extra` (whole boxes) after it in
 * jp2h. */
static buf jp2_wrap(const unsigned char *cs, size_t csn, uint32_t w, uint32_t h, unsigned nc,
                    unsigned bpc, const buf *extra) {
    buf b = {0};
    put(&b, "\0\0\0\x0cjP  \r\n\x87\n", 12);
    jp2_box(&b, "ftyp", "jp2 \0\0\0\0jp2 ", 12);
    unsigned char ihdr[14] = {(unsigned char)(h >> 24),
                              (unsigned char)(h >> 16),
                              (unsigned char)(h >> 8),
                              (unsigned char)h,
                              (unsigned char)(w >> 24),
                              (unsigned char)(w >> 16),
                              (unsigned char)(w >> 8),
                              (unsigned char)w,
                              0,
                              (unsigned char)nc,
                              (unsigned char)bpc,
                              7,
                              0,
                              0};
    buf head = {0};
    jp2_box(&head, "ihdr", ihdr, sizeof ihdr);
    jp2_box(&head, "colr", "\x01\0\0\0\0\0\x11", 7);
    if (extra) put(&head, extra->d, extra->n);
    jp2_box(&b, "jp2h", head.d, head.n);
    jp2_box(&b, "jp2c", cs, csn);
    free(head.d);
    return b;
}

static void test_jp2_pillow(void) {
    /* The expected pixels of every case below are what Pillow 9.4 gives for
     * the file written here (checked with Debian's python3-pil).
     * Precision shift, as Pillow's unpackers do it: 9 bits to 8 is
     * (v + 1) >> 1 kept to 8 bits, so white (511) wraps to black... */
    static const int g9[8] = {0, 1, 2, 255, 256, 509, 510, 511};
    const int *v[4] = {g9};
    size_t n;
    unsigned char *d = jp2_encode("g9.j2k", 8, 1, 1, 9, 0, NULL, 0, v, &n);
    static const unsigned char g9want[8] = {0, 1, 1, 128, 128, 255, 255, 0};
    jp2_expect("9-bit gray J2K (mode L)", d, n, 8, 1, 1, g9want, 0);
    free(d);
    /* ... and a JP2 with 9 bits is L too (its ihdr holds 8 = bits - 1). */
    d = jp2_encode("g9.jp2", 8, 1, 1, 9, 0, NULL, 0, v, &n);
    jp2_expect("9-bit gray JP2 (mode L)", d, n, 8, 1, 1, g9want, 0);
    free(d);
    /* 10 bits and more, one component: "I;16", v << (16 - prec), which
     * clipscore scales to 8 bits (v * 255 / 65535 rounded). */
    static const int g10[4] = {0, 1, 512, 1023};
    v[0] = g10;
    d = jp2_encode("g10.j2k", 4, 1, 1, 10, 0, NULL, 0, v, &n);
    static const unsigned char g10want[4] = {0, 0, 128, 255};
    jp2_expect("10-bit gray J2K (mode I;16)", d, n, 4, 1, 1, g10want, 0);
    free(d);
    /* 12-bit RGB: (v + 8) >> 4, 4088 and up wrap to 0. */
    static const int r12[4] = {0, 8, 4087, 4088}, g12[4] = {4095, 2048, 23, 24},
                     b12[4] = {100, 200, 300, 400};
    const int *rgb12[3] = {r12, g12, b12};
    d = jp2_encode("rgb12.j2k", 4, 1, 3, 12, 0, NULL, 0, rgb12, &n);
    static const unsigned char rgb12want[12] = {0, 0, 6, 1, 128, 13, 255, 1, 19, 0, 2, 25};
    jp2_expect("12-bit RGB J2K", d, n, 4, 1, 3, rgb12want, 0);
    free(d);
    /* Signed: offset by half the range, then the same shift (12 bits: -2048
     * is 0, -1 rounds to 128, 2047 wraps); 4-bit gray and alpha (LA). */
    static const int s12[4] = {-2048, -1, 0, 2047};
    const int *srgb[3] = {s12, s12, s12};
    d = jp2_encode("srgb12.j2k", 4, 1, 3, 12, 1, NULL, 0, srgb, &n);
    static const unsigned char s12want[12] = {0, 0, 0, 128, 128, 128, 128, 128, 128, 0, 0, 0};
    jp2_expect("signed 12-bit RGB J2K", d, n, 4, 1, 3, s12want, 0);
    free(d);
    static const int s4[4] = {-8, -1, 0, 7}, a4[4] = {-8, 7, 0, -1};
    const int *la4[2] = {s4, a4};
    d = jp2_encode("sla4.j2k", 4, 1, 2, 4, 1, NULL, 0, la4, &n);
    static const unsigned char la4want[8] = {0, 0, 112, 240, 128, 128, 240, 112};
    jp2_expect("signed 4-bit LA J2K", d, n, 4, 1, 2, la4want, 0);
    free(d);

    /* Tiles (3x3 tiles of 4x4 on a 10x9 image), and RGB with all
     * components subsampled 2x2 (repeated), against the source. */
    int tw = 10, th = 9, pl[3][90];
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < tw * th; i++) pl[c][i] = (i * 37 + c * 91) % 256;
    const int *tiled[3] = {pl[0], pl[1], pl[2]};
    d = jp2_encode("tiled.j2k", tw, th, 3, 8, 0, NULL, 4, tiled, &n);
    unsigned char tiledwant[270];
    for (int i = 0; i < tw * th * 3; i++) tiledwant[i] = (unsigned char)pl[i % 3][i / 3];
    jp2_expect("tiled RGB J2K", d, n, tw, th, 3, tiledwant, 0);
    free(d);
    static const int sub2[6] = {2, 2, 2, 2, 2, 2};
    d = jp2_encode("sub2.j2k", 4, 4, 3, 8, 0, sub2, 0, tiled, &n); /* 2x2 of each plane */
    unsigned char sub2want[48];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++)
                sub2want[(y * 4 + x) * 3 + c] = (unsigned char)pl[c][(y / 2) * 2 + x / 2];
    jp2_expect("RGB J2K subsampled 2x2", d, n, 4, 4, 3, sub2want, 0);
    free(d);
    /* Chroma subsampled (4:2:0): YCbCr, converted (Pillow 9.4 gives these
     * colours; within one level, see ycc_to_rgb). */
    static const int yy[4] = {76, 150, 29, 128}, cb[1] = {85}, cr[1] = {255};
    const int *ycc[3] = {yy, cb, cr};
    static const int s420[6] = {1, 1, 2, 2, 2, 2};
    d = jp2_encode("ycc420.j2k", 2, 2, 3, 8, 0, s420, 0, ycc, &n);
    static const unsigned char yccwant[12] = {254, 0, 0, 255, 74, 73, 207, 0, 0, 255, 52, 51};
    jp2_expect("YCbCr 4:2:0 J2K", d, n, 2, 2, 3, yccwant, 1);
    free(d);

    /* Gray with a subsampled component: Pillow has no unpacker for it
     * ("broken data stream"). */
    static const int z[16] = {0};
    const int *zz[2] = {z, z};
    static const int subg[2] = {2, 1}, subla[4] = {1, 1, 1, 2};
    d = jp2_encode("subgray.j2k", 4, 4, 1, 8, 0, subg, 0, zz, &n);
    jp2_refused("subsampled gray J2K", d, n, "component 0 subsampled 2x1");
    free(d);
    d = jp2_encode("subla.jp2", 4, 4, 2, 8, 0, subla, 0, zz, &n);
    jp2_refused("subsampled LA JP2", d, n, "component 1 subsampled 1x2");
    free(d);

    /* JP2 header boxes, written here around a codestream: Pillow reads the
     * boxes of jp2h, and those of "res " up to resc, only when each fits in
     * its parent. */
    static const int g8[4] = {0, 1, 200, 255};
    v[0] = g8;
    d = jp2_encode("g8.j2k", 4, 1, 1, 8, 0, NULL, 0, v, &n);
    unsigned char resc[10] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 0}, res_ok[18], res_bad[18];
    memcpy(res_ok, "\0\0\0\x12resc", 8);
    memcpy(res_ok + 8, resc, 10);
    memcpy(res_bad, res_ok, 18);
    res_bad[3] = 0x13; /* resc one byte longer than "res " holds */
    buf ok = {0}, bad = {0};
    jp2_box(&ok, "res ", res_ok, 18);
    jp2_box(&bad, "res ", res_bad, 18);
    buf f = jp2_wrap(d, n, 4, 1, 1, 7, &ok);
    jp2_expect("JP2 with a res box", f.d, f.n, 4, 1, 1, (const unsigned char[]){0, 1, 200, 255}, 0);
    write_bytes(tmp_path("res_ok.jp2"), f.d, f.n);
    free(f.d);
    f = jp2_wrap(d, n, 4, 1, 1, 7, &bad);
    jp2_refused("resc overrunning res", f.d, f.n, "invalid header length, box 'resc'");
    write_bytes(tmp_path("res_bad.jp2"), f.d, f.n);
    free(f.d);
    /* An ihdr of 10 bytes (Pillow reads 11 from it). */
    buf ihdr10 = {0};
    jp2_box(&ihdr10, "ihdr", "\0\0\0\1\0\0\0\4\0\1", 10);
    f = jp2_wrap(d, n, 4, 1, 1, 7, &ihdr10);
    jp2_refused("short ihdr", f.d, f.n, "not enough data in header, box 'ihdr'");
    write_bytes(tmp_path("ihdr10.jp2"), f.d, f.n);
    free(f.d);
    /* The header's mode rules: an ihdr saying RGB over a gray codestream
     * gives gray as RGB (Pillow's gray_rgb unpacker); one saying LA over it
     * has no unpacker. */
    f = jp2_wrap(d, n, 4, 1, 3, 7, NULL);
    static const unsigned char grgb[12] = {0, 0, 0, 1, 1, 1, 200, 200, 200, 255, 255, 255};
    jp2_expect("RGB ihdr over gray", f.d, f.n, 4, 1, 3, grgb, 0);
    write_bytes(tmp_path("rgb_over_gray.jp2"), f.d, f.n);
    free(f.d);
    f = jp2_wrap(d, n, 4, 1, 2, 7, NULL);
    jp2_refused("LA ihdr over gray", f.d, f.n, "components that do not fit that mode");
    write_bytes(tmp_path("la_over_gray.jp2"), f.d, f.n);
    free(f.d);
    free(ok.d);
    free(bad.d);
    free(ihdr10.d);
    free(d);
}

/* ------------------------------------------------------------------------ */
/* ICO                                                                       */

/* A DIB entry: 24 or 32 bits from rgba (w x h), with the AND mask from
 * mask (1 = transparent, w x h bytes). */
static buf make_dib(int w, int h, int bpp, const unsigned char *rgba, const unsigned char *mask) {
    buf b = {NULL, 0};
    put32(&b, 40);
    put32(&b, (uint32_t)w);
    put32(&b, (uint32_t)(2 * h));
    put16(&b, 1);
    put16(&b, (unsigned)bpp);
    for (int i = 0; i < 6; i++) put32(&b, 0);
    size_t stride = ((size_t)w * bpp / 8 + 3) / 4 * 4;
    for (int y = h - 1; y >= 0; y--) {
        unsigned char row[1024] = {0};
        for (int x = 0; x < w; x++) {
            const unsigned char *s = rgba + ((size_t)y * w + x) * 4;
            unsigned char *o = row + (size_t)x * bpp / 8;
            o[0] = s[2];
            o[1] = s[1];
            o[2] = s[0];
            if (bpp == 32) o[3] = s[3];
        }
        put(&b, row, stride);
    }
    size_t mstride = ((size_t)w + 31) / 32 * 4;
    for (int y = h - 1; y >= 0; y--) {
        unsigned char row[64] = {0};
        for (int x = 0; x < w; x++)
            if (mask[(size_t)y * w + x]) row[x / 8] |= (unsigned char)(0x80 >> (x % 8));
        put(&b, row, mstride);
    }
    return b;
}

/* An ICO of the given entries (dims and depths as the directory says). */
static void write_ico(const char *path, int count, const buf *entries, const int *dims,
                      const int *bpps) {
    buf f = {NULL, 0};
    put16(&f, 0);
    put16(&f, 1);
    put16(&f, (unsigned)count);
    uint32_t off = 6 + 16 * (uint32_t)count;
    for (int i = 0; i < count; i++) {
        unsigned char wh[4] = {(unsigned char)dims[2 * i], (unsigned char)dims[2 * i + 1], 0, 0};
        put(&f, wh, 4);
        put16(&f, 1);
        put16(&f, (unsigned)bpps[i]);
        put32(&f, (uint32_t)entries[i].n);
        put32(&f, off);
        off += (uint32_t)entries[i].n;
    }
    for (int i = 0; i < count; i++) put(&f, entries[i].d, entries[i].n);
    write_bytes(path, f.d, f.n);
    free(f.d);
}

static void test_ico(void) {
    int w = 20, h = 12;
    size_t px = (size_t)w * h;
    unsigned char *rgba = pattern(w, h, 4), *mask = malloc(px), *masked = malloc(px * 4);
    for (size_t i = 0; i < px; i++) {
        mask[i] = i % 3 == 0;
        memcpy(masked + 4 * i, rgba + 4 * i, 3);
        masked[4 * i + 3] = mask[i] ? 0 : 255;
    }
    /* A small 24-bit entry and a larger 32-bit one: the larger, with its
     * own alpha (the AND mask ignored). */
    unsigned char *small = pattern(8, 8, 4), *small_mask = calloc(64, 1);
    buf e[3];
    e[0] = make_dib(8, 8, 24, small, small_mask);
    e[1] = make_dib(w, h, 32, rgba, mask);
    int dims[6] = {8, 8, w, h, 0, 0}, bpps[3] = {24, 32, 0};
    const char *p = tmp_path("two.ico");
    write_ico(p, 2, e, dims, bpps);
    expect_pixels("ICO 32-bit entry", p, w, h, 4, 0, rgba);
    expect_limit("ICO 32-bit entry", p, w, h);
    expect_robust("ICO DIB", p, 1);
    free(e[1].d);

    /* 24-bit only: alpha from the AND mask. */
    e[1] = make_dib(w, h, 24, rgba, mask);
    bpps[1] = 24;
    p = tmp_path("mask.ico");
    write_ico(p, 2, e, dims, bpps);
    expect_pixels("ICO 24-bit entry with AND mask", p, w, h, 4, 0, masked);

    /* Same size, deeper colour wins; and a PNG entry (as the PNG's mode). */
    buf e2[2];
    e2[0] = make_dib(w, h, 32, rgba, mask);
    int len = 0;
    unsigned char *png = stbi_write_png_to_mem(rgba, w * 4, w, h, 4, &len);
    e2[1].d = png;
    e2[1].n = (size_t)len;
    int dims2[4] = {w, h, w, h}, bpps2[2] = {32, 8};
    p = tmp_path("deeper.ico");
    write_ico(p, 2, (buf[]){e[1], e2[0]}, dims2, (int[]){24, 32});
    expect_pixels("ICO deeper entry of equal size", p, w, h, 4, 0, rgba);
    unsigned char *big = pattern(2 * w, 2 * h, 4);
    png = stbi_write_png_to_mem(big, 2 * w * 4, 2 * w, 2 * h, 4, &len);
    free(e2[1].d);
    e2[1].d = png;
    e2[1].n = (size_t)len;
    dims2[2] = 2 * w;
    dims2[3] = 2 * h;
    p = tmp_path("png.ico");
    write_ico(p, 2, e2, dims2, bpps2);
    expect_pixels("ICO PNG entry", p, 2 * w, 2 * h, 4, 0, big);
    expect_limit("ICO PNG entry", p, 2 * w, 2 * h);
    expect_robust("ICO PNG", p, 1);

    /* A PNG entry whose header claims 20000 x 20000 (directory: 16x16):
     * the embedded size counts, from the header. */
    static const unsigned char huge[] = {
        0,   0,   1,   0,   1, 0,    16,   16,   0,   0,    1,    0,    32,   0, 33, 0, 0,
        0,   22,  0,   0,   0, 0x89, 'P',  'N',  'G', '\r', '\n', 0x1a, '\n', 0, 0,  0, 13,
        'I', 'H', 'D', 'R', 0, 0,    0x4e, 0x20, 0,   0,    0x4e, 0x20, 8,    6, 0,  0, 0};
    expect_error_code("huge.ico", huge, sizeof huge, 1000000, CLIPSCORE_ELIMIT);
    free(e[0].d);
    free(e[1].d);
    free(e2[0].d);
    free(e2[1].d);
    free(rgba);
    free(mask);
    free(masked);
    free(small);
    free(small_mask);
    free(big);
}

/* ------------------------------------------------------------------------ */
/* HEIF / AVIF                                                               */

static int write_heif(const char *path, enum heif_compression_format fmt, int w, int h,
                      const unsigned char *rgb) {
    struct heif_context *ctx = heif_context_alloc();
    struct heif_encoder *enc = NULL;
    struct heif_error err = heif_context_get_encoder_for_format(ctx, fmt, &enc);
    if (err.code != heif_error_Ok) {
        heif_context_free(ctx);
        return -1; /* no encoder in this libheif */
    }
    heif_encoder_set_lossy_quality(enc, 92);
    struct heif_image *im = NULL;
    heif_image_create(w, h, heif_colorspace_RGB, heif_chroma_interleaved_RGB, &im);
    heif_image_add_plane(im, heif_channel_interleaved, w, h, 8);
    int stride;
    uint8_t *p = heif_image_get_plane(im, heif_channel_interleaved, &stride);
    for (int y = 0; y < h; y++)
        memcpy(p + (size_t)y * stride, rgb + (size_t)y * w * 3, (size_t)w * 3);
    err = heif_context_encode_image(ctx, im, enc, NULL, NULL);
    if (err.code == heif_error_Ok) err = heif_context_write_to_file(ctx, path);
    heif_image_release(im);
    heif_encoder_release(enc);
    heif_context_free(ctx);
    return err.code == heif_error_Ok ? 0 : -1;
}

static void test_heif_one(const char *name, enum heif_compression_format fmt) {
    int w = 64, h = 48;
    unsigned char *rgb = pattern(w, h, 3);
    /* Smooth (no wrap-around edges): lossy coding keeps it close. */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * w + x) * 3 + c] = (unsigned char)(40 + x + 2 * y + 20 * c);
    char file[64];
    snprintf(file, sizeof file, "photo.%s", name);
    const char *p = tmp_path(file);
    if (write_heif(p, fmt, w, h, rgb)) {
        fprintf(stderr, "  no %s encoder in libheif: %s skipped\n", name, name);
        free(rgb);
        return;
    }
    cs_image img;
    int rc = load(p, 0, &img);
    CHECK_MSG(rc == 0, "%s: load failed", name);
    if (!rc) {
        CHECK(img.w == w && img.h == h && img.channels == 3 && !img.palette);
        double sum = 0;
        for (size_t i = 0; i < (size_t)w * h * 3 && img.w == w && img.h == h; i++)
            sum += abs((int)img.px[i] - (int)rgb[i]);
        double mean = sum / ((double)w * h * 3);
        CHECK_MSG(mean < 4.0, "%s: mean |difference| to the source %.2f", name, mean);
        /* heif-convert's PNG, read as any PNG, is the same picture. */
        char cmd[2048];
        const char *png = tmp_path("converted.png");
        unlink(png);
        snprintf(cmd, sizeof cmd, "heif-convert '%s' '%s' >/dev/null 2>&1", p, png);
        if (system(cmd) == 0) {
            cs_image ref;
            CHECK(load(png, 0, &ref) == 0);
            if (ref.px) {
                CHECK(ref.w == img.w && ref.h == img.h && ref.channels == img.channels);
                CHECK_MSG(ref.w == img.w && ref.h == img.h && ref.channels == img.channels &&
                              !memcmp(ref.px, img.px, (size_t)w * h * 3),
                          "%s: differs from heif-convert's PNG", name);
                cs_image_free(&ref);
            }
        } else {
            fprintf(stderr, "  heif-convert not found: %s not compared with it\n", name);
        }
        cs_image_free(&img);
    }
    expect_limit(name, p, w, h);
    expect_robust(name, p, 1);
    free(rgb);
}

static void test_heif(void) {
    test_heif_one("heic", heif_compression_HEVC);
    test_heif_one("avif", heif_compression_AV1);
}

/* ------------------------------------------------------------------------ */
/* 16-bit gray PNG                                                           */

static void test_png_gray16(void) {
    /* A 6x1 16-bit gray PNG (hand-made, stored/uncompressed deflate). */
    uint16_t v[6] = {0, 128, 129, 32896, 65278, 65535};
    unsigned char want[6] = {0, 0, 1, 128, 254, 255};
    unsigned char raw[13];
    raw[0] = 0; /* filter: none */
    for (int i = 0; i < 6; i++) {
        raw[1 + 2 * i] = (unsigned char)(v[i] >> 8);
        raw[2 + 2 * i] = (unsigned char)v[i];
    }
    int len = 0;
    /* stb_image_write writes 8-bit PNGs only: zlib data from its helper,
     * chunks assembled here. */
    unsigned char *z = stbi_zlib_compress(raw, sizeof raw, &len, 8);
    buf f = {NULL, 0};
    put(&f, "\x89PNG\r\n\x1a\n", 8);
    unsigned char ihdr[25] = {0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0,
                              6, 0, 0, 0,  1,   16,  0,   0,   0, 0};
    uint32_t crc = stbiw__crc32(ihdr + 4, 17);
    for (int i = 0; i < 4; i++) ihdr[21 + i] = (unsigned char)(crc >> (24 - 8 * i));
    put(&f, ihdr, 25);
    unsigned char hdr[8] = {(unsigned char)(len >> 24),
                            (unsigned char)(len >> 16),
                            (unsigned char)(len >> 8),
                            (unsigned char)len,
                            'I',
                            'D',
                            'A',
                            'T'};
    put(&f, hdr, 8);
    put(&f, z, (size_t)len);
    unsigned char *chunk = malloc((size_t)len + 4);
    memcpy(chunk, "IDAT", 4);
    memcpy(chunk + 4, z, (size_t)len);
    crc = stbiw__crc32(chunk, len + 4);
    unsigned char c4[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16),
                           (unsigned char)(crc >> 8), (unsigned char)crc};
    put(&f, c4, 4);
    put(&f, "\0\0\0\0IEND\xae\x42\x60\x82", 12);
    const char *p = tmp_path("gray16.png");
    write_bytes(p, f.d, f.n);
    expect_pixels("16-bit gray PNG", p, 6, 1, 1, 0, want);
    free(chunk);
    free(f.d);
    STBIW_FREE(z);
}

/* ------------------------------------------------------------------------ */

/* test_formats --write DIR: one valid file of each new format, for the
 * command-line test (test_formats_cli.py). */
static int write_fixtures(void) {
    int w = 64, h = 48;
    unsigned char *rgb = pattern(w, h, 3), *rgba = pattern(w, h, 4), *mask = calloc(64 * 48, 1);
    uint8_t *out = NULL;
    size_t n = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out);
    write_bytes(tmp_path("alpha.webp"), out, n);
    WebPFree(out);
    n = WebPEncodeRGB(rgb, w, h, w * 3, 75, &out);
    write_bytes(tmp_path("lossy.webp"), out, n);
    WebPFree(out);
    tiff_spec s = {w, h,      3,    8, PHOTOMETRIC_RGB, PLANARCONFIG_CONTIG, COMPRESSION_LZW, 0,
                   0, {0, 0}, NULL, 0};
    write_tiff(tmp_path("lzw.tif"), &s, rgb);
    tiff_spec c = {w,
                   h,
                   4,
                   8,
                   PHOTOMETRIC_SEPARATED,
                   PLANARCONFIG_CONTIG,
                   COMPRESSION_NONE,
                   0,
                   0,
                   {0, 0},
                   NULL,
                   INKSET_CMYK};
    write_tiff(tmp_path("cmyk.tif"), &c, rgba);
    uint16_t *samples = malloc((size_t)w * h * 3 * sizeof *samples);
    for (size_t i = 0; i < (size_t)w * h * 3; i++) samples[i] = rgb[i];
    write_jp2(tmp_path("photo.jp2"), 0, w, h, 3, 8, samples);
    write_jp2(tmp_path("photo.j2k"), 1, w, h, 3, 8, samples);
    buf e[1] = {make_dib(w, h, 32, rgba, mask)};
    int dims[2] = {w, h}, bpps[1] = {32};
    write_ico(tmp_path("icon.ico"), 1, e, dims, bpps);
    int rc = write_heif(tmp_path("photo.heic"), heif_compression_HEVC, w, h, rgb);
    if (!rc) rc = write_heif(tmp_path("photo.avif"), heif_compression_AV1, w, h, rgb);
    free(e[0].d);
    free(samples);
    free(rgb);
    free(rgba);
    free(mask);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write")) {
        tmp = argv[2];
        return write_fixtures();
    }
    tmp = test_tmpdir("formats");
    test_webp();
    test_tiff();
    test_jp2();
    test_jp2_pillow();
    test_ico();
    test_heif();
    test_png_gray16();
    return test_finish("test_formats");
}
