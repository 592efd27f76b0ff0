/* test_decoders.c - regression cases for the decoders' agreement with
 * Pillow 9.4 (issue 15, and the PSD finding of issue 11's fuzzing), on files
 * written here byte by byte: PSD channels and layer records, BMP palettes,
 * 16-bit BMP colours and RLE, GIF palettes and transparency, TGA pixel order
 * and truncation, ASCII and 1-bit PNM, and the wording of some refusals.
 * The expected pixels are what Pillow 9.4 gives for the same bytes (as
 * noted at each case). Every decoded pixel is also written to /dev/null,
 * so that the same program run under valgrind (the test_decoders_valgrind
 * CTest, built without the sanitizers) reports any pixel that depends on
 * uninitialised memory.
 * Leaves out: resampling (test_image.c) and the other formats' libraries
 * (test_formats.c). */
#include "test.h"
#include "image.h"

#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

static int devnull = -1;

/* Decodes bytes; on success hands every pixel to write(2) (valgrind checks
 * syscall buffers for uninitialised bytes). Returns the status. */
static int decode(const char *what, const void *d, size_t n, cs_image *img, cs_error *e) {
    memset(e, 0, sizeof *e);
    int rc = cs_image_load_memory(d, n, what, 0, img, e);
    if (rc == 0 && devnull >= 0) {
        size_t bytes = (size_t)img->w * img->h * img->channels;
        CHECK_MSG(write(devnull, img->px, bytes) == (ssize_t)bytes, "%s: write", what);
    }
    return rc;
}

/* Decodes and compares with the expected size, channels and pixels. */
static void expect_pixels(const char *what, const void *d, size_t n, int w, int h, int ch,
                          int palette, const unsigned char *want) {
    cs_image img;
    cs_error e;
    int rc = decode(what, d, n, &img, &e);
    CHECK_MSG(rc == 0, "%s: %s", what, e.msg);
    if (rc) return;
    CHECK_MSG(img.w == w && img.h == h && img.channels == ch,
              "%s: %dx%d with %d channels, want %dx%d with %d", what, img.w, img.h, img.channels, w,
              h, ch);
    CHECK_MSG(img.palette == palette, "%s: palette flag %d, want %d", what, img.palette, palette);
    if (img.w == w && img.h == h && img.channels == ch) {
        size_t total = (size_t)w * h * ch, i = 0;
        while (i < total && img.px[i] == want[i]) i++;
        CHECK_MSG(i == total, "%s: byte %zu is %d, want %d", what, i, i < total ? img.px[i] : 0,
                  i < total ? want[i] : 0);
    }
    cs_image_free(&img);
}

/* Expects a refusal with this status whose message contains needle. */
static void expect_error(const char *what, const void *d, size_t n, int code, const char *needle) {
    cs_image img;
    cs_error e;
    int rc = decode(what, d, n, &img, &e);
    CHECK_MSG(rc == code, "%s: status %d, want %d (%s)", what, rc, code, e.msg);
    CHECK_MSG(strstr(e.msg, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", what, e.msg,
              needle);
    if (rc == 0) cs_image_free(&img);
}

/* ------------------------------------------------------------------------ */
/* Little byte writers                                                        */

typedef struct buf {
    unsigned char d[8192];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t k) {
    if (b->n + k > sizeof b->d) {
        fprintf(stderr, "test buffer overflow\n");
        exit(2);
    }
    memcpy(b->d + b->n, p, k);
    b->n += k;
}
static void put8(buf *b, unsigned v) {
    unsigned char c = (unsigned char)v;
    put(b, &c, 1);
}
static void be16(buf *b, unsigned v) {
    put8(b, v >> 8);
    put8(b, v);
}
static void be32(buf *b, uint32_t v) {
    be16(b, v >> 16);
    be16(b, v & 0xffff);
}
static void le16(buf *b, unsigned v) {
    put8(b, v);
    put8(b, v >> 8);
}
static void le32(buf *b, uint32_t v) {
    le16(b, v & 0xffff);
    le16(b, v >> 16);
}

/* ------------------------------------------------------------------------ */
/* PSD                                                                        */

/* A PSD header and empty colour-mode and resource sections. */
static void psd_head(buf *b, unsigned channels, unsigned h, unsigned w, unsigned mode) {
    put(b, "8BPS", 4);
    be16(b, 1);
    put(b, "\0\0\0\0\0\0", 6);
    be16(b, channels);
    be32(b, h);
    be32(b, w);
    be16(b, 8);
    be16(b, mode);
    be32(b, 0); /* colour mode data */
    be32(b, 0); /* resources */
}

static void test_psd(void) {
    /* The fuzzing finding: 6 channels (RGB + 3 extra), 2x2, raw, an alpha
     * neither 0 nor 255 and colours below it. stb_image removed a "white
     * matte" with float casts that overflowed; Pillow reads mode RGB (a
     * fifth or later channel is no alpha to it) and keeps the values. */
    buf b = {{0}, 0};
    psd_head(&b, 6, 2, 2, 3);
    be32(&b, 0); /* layers */
    be16(&b, 0); /* raw */
    for (unsigned i = 0; i < 6 * 4; i++) put8(&b, i == 12 ? 3 : i);
    const unsigned char rgb[] = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
    expect_pixels("6-channel PSD", b.d, b.n, 2, 2, 3, 0, rgb);

    /* Exactly four channels: RGBA as stored (Image.open(f).getdata()). */
    b.n = 0;
    psd_head(&b, 4, 1, 2, 3);
    be32(&b, 0);
    be16(&b, 0);
    const unsigned char planes[] = {10, 20, 30, 40, 50, 60, 1, 128};
    put(&b, planes, sizeof planes);
    const unsigned char rgba[] = {10, 30, 50, 1, 20, 40, 60, 128};
    expect_pixels("4-channel PSD", b.d, b.n, 2, 1, 4, 0, rgba);

    /* Gray with an extra channel, PackBits: Pillow reads one channel and
     * takes the row counts of that one only (rows 2 and 2 bytes). */
    b.n = 0;
    psd_head(&b, 2, 2, 3, 1);
    be32(&b, 0);
    be16(&b, 1);
    be16(&b, 2); /* row 1: a run of 3 x 7 */
    be16(&b, 4); /* row 2: literal 3 bytes */
    put8(&b, 0xfe);
    put8(&b, 7);
    put8(&b, 2);
    put8(&b, 1);
    put8(&b, 2);
    put8(&b, 3);
    const unsigned char gray[] = {7, 7, 7, 1, 2, 3};
    expect_pixels("gray PackBits PSD", b.d, b.n, 3, 2, 1, 0, gray);

    /* A layer record with a channel id Pillow cannot name (4): corrupt. */
    b.n = 0;
    psd_head(&b, 3, 1, 1, 3);
    be32(&b, 4 + 2 + 16 + 2 + 6); /* layer and mask section */
    be32(&b, 2 + 16 + 2 + 6);     /* layer info */
    be16(&b, 1);
    for (int k = 0; k < 4; k++) be32(&b, k < 2 ? 0 : 1);
    be16(&b, 1);
    be16(&b, 4);
    be32(&b, 0);
    be16(&b, 0);
    put(&b, "\1\2\3", 3);
    expect_error("PSD layer channel 4", b.d, b.n, CLIPSCORE_EFORMAT, "corrupt PSD (layer records)");

    /* The layer section claims more bytes than the file has. */
    b.n = 0;
    psd_head(&b, 3, 1, 1, 3);
    be32(&b, 100);
    be32(&b, 96);
    be16(&b, 0);
    expect_error("PSD short layers", b.d, b.n, CLIPSCORE_EFORMAT, "truncated PSD");

    /* CMYK is refused, not read as RGBA. */
    b.n = 0;
    psd_head(&b, 4, 1, 1, 4);
    be32(&b, 0);
    be16(&b, 0);
    put(&b, "\1\2\3\4", 4);
    expect_error("CMYK PSD", b.d, b.n, CLIPSCORE_EUNSUPPORTED, "CMYK PSD");
}

/* ------------------------------------------------------------------------ */
/* BMP                                                                        */

/* A BMP file header and a 40-byte info header; the palette (colors
 * entries of 4 bytes, BGRX) follows. */
static void bmp_head(buf *b, int w, int h, unsigned bits, unsigned compression, unsigned colors,
                     uint32_t offset) {
    put(b, "BM", 2);
    le32(b, 0);
    le32(b, 0);
    le32(b, offset);
    le32(b, 40);
    le32(b, (uint32_t)w);
    le32(b, (uint32_t)h);
    le16(b, 1);
    le16(b, bits);
    le32(b, compression);
    le32(b, 0);
    le32(b, 0);
    le32(b, 0);
    le32(b, colors);
    le32(b, 0);
}

static void test_bmp(void) {
    /* 8-bit, a palette of two colours (red, blue), indices 0, 1, 5 and 200
     * past its end: Pillow shows those as its default palette entries, the
     * gray ramp (stb_image read them from uninitialised memory). */
    buf b = {{0}, 0};
    bmp_head(&b, 4, 1, 8, 0, 2, 54 + 8);
    put(&b, "\0\0\xff\0\xff\0\0\0", 8);
    put(&b, "\0\1\5\xc8", 4);
    const unsigned char pal[] = {255, 0, 0, 0, 0, 255, 5, 5, 5, 200, 200, 200};
    expect_pixels("BMP index past the palette", b.d, b.n, 4, 1, 3, 1, pal);

    /* 16-bit 5-5-5, bottom-up rows: Pillow expands v * 255 / 31,
     * truncated (16 -> 131; bit replication would give 132). */
    b.n = 0;
    bmp_head(&b, 2, 2, 16, 0, 0, 54);
    le16(&b, 16 << 10 | 1 << 5 | 31); /* bottom row */
    le16(&b, 0x7fff);
    le16(&b, 0); /* top row */
    le16(&b, 30);
    const unsigned char rgb15[] = {0, 0, 0, 0, 0, 246, 131, 8, 255, 255, 255, 255};
    expect_pixels("BMP 16-bit 555", b.d, b.n, 2, 2, 3, 0, rgb15);

    /* 16-bit 5-6-5 (bitfields): green 32 -> 32 * 255 / 63 = 129. */
    b.n = 0;
    bmp_head(&b, 1, 1, 16, 3, 0, 66);
    le32(&b, 0xf800);
    le32(&b, 0x7e0);
    le32(&b, 0x1f);
    le16(&b, 16 << 11 | 32 << 5 | 1);
    le16(&b, 0);
    const unsigned char rgb16[] = {131, 129, 8};
    expect_pixels("BMP 16-bit 565", b.d, b.n, 1, 1, 3, 0, rgb16);

    /* RLE8, 3x2, non-gray palette: a run, an end of line, a literal run
     * (padded to an even length), the end of the bitmap. */
    b.n = 0;
    bmp_head(&b, 3, 2, 8, 1, 3, 54 + 12);
    put(&b, "\x10\x20\x30\0\x40\x50\x60\0\x70\x80\x90\0", 12);
    put(&b, "\x03\x01\x00\x00", 4);         /* bottom row: 1 1 1; end of line */
    put(&b, "\x00\x03\x00\x02\x01\x00", 6); /* top row: literal 0 2 1 (+pad) */
    put(&b, "\x00\x01", 2);
    const unsigned char rle[] = {0x30, 0x20, 0x10, 0x90, 0x80, 0x70, 0x60, 0x50, 0x40,
                                 0x60, 0x50, 0x40, 0x60, 0x50, 0x40, 0x60, 0x50, 0x40};
    expect_pixels("BMP RLE8", b.d, b.n, 3, 2, 3, 1, rle);

    /* RLE data that ends before the image is full: refused, as Pillow does
     * ("not enough image data"). */
    b.n -= 8;
    expect_error("BMP RLE8 cut", b.d, b.n, CLIPSCORE_EFORMAT, "RLE data ends after 3 of 6");

    /* A pixel array shorter than the header says. */
    b.n = 0;
    bmp_head(&b, 4, 4, 24, 0, 0, 54);
    for (int i = 0; i < 40; i++) put8(&b, i);
    expect_error("BMP cut", b.d, b.n, CLIPSCORE_EFORMAT, "truncated BMP");
}

int main(void) {
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    test_psd();
    test_bmp();
    if (devnull >= 0) close(devnull);
    return test_finish("test_decoders");
}
