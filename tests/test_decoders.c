/* test_decoders.c - regression cases for the decoders' agreement with
 * Pillow 9.4 (issue 15, and the PSD finding of issue 11's fuzzing), on files
 * written here byte by byte: PSD channels and layer records, BMP palettes,
 * 16-bit BMP colours and RLE, GIFs (palettes, transparency, LZW code sizes,
 * interlace, bad and missing codes; written with the test's own LZW
 * encoder), TGA pixel order
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
#include "test_pixels.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <zlib.h>

#include "stb_image_write_impl.h"

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
    check_image_pixels(what, &img, w, h, ch, palette, want);
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
    unsigned char d[100000]; /* room for a GIF's full code table and data past 64 KiB */
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

    /* A layer box with y0 > y1 and PackBits: Pillow's read of a negative
     * count of row lengths takes the rest of the layer block, and the next
     * channel's header is then missing (Pillow's
     * negative_top_left_layer.psd): corrupt. With one channel it parses. */
    for (int channels = 1; channels <= 3; channels += 2) {
        b.n = 0;
        psd_head(&b, 3, 1, 1, 3);
        unsigned li = 2 + 16 + 2 + 6 * (unsigned)channels + 12 + 4 + 2 * (unsigned)channels + 4;
        be32(&b, 4 + li);
        be32(&b, li);
        be16(&b, 1);
        be32(&b, 10); /* y0 */
        be32(&b, 0);  /* x0 */
        be32(&b, 0);  /* y1 */
        be32(&b, 1);  /* x1 */
        be16(&b, (unsigned)channels);
        for (int c = 0; c < channels; c++) {
            be16(&b, (unsigned)c);
            be32(&b, 0);
        }
        put(&b, "8BIMnorm\xff\0\0\0", 12);
        be32(&b, 0); /* no extra data */
        for (int c = 0; c < channels; c++) be16(&b, 1);
        be32(&b, 0); /* padding: what the first channel's read takes */
        be16(&b, 0);
        put(&b, "\1\2\3", 3);
        if (channels == 1) {
            const unsigned char px[] = {1, 2, 3};
            expect_pixels("PSD layer y0 > y1, one channel", b.d, b.n, 1, 1, 3, 0, px);
        } else {
            expect_error("PSD layer y0 > y1", b.d, b.n, CLIPSCORE_EFORMAT,
                         "corrupt PSD (layer records)");
        }
    }

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

/* ------------------------------------------------------------------------ */
/* GIF (written by the LZW encoder below)                                     */

/* LZW codes packed from the low bit up into sub-blocks of `block` bytes
 * (255 unless set), with a zero-size block between them when `split`. */
typedef struct code_writer {
    buf *b;
    int block, split;
    unsigned char pending[255];
    int npending;
    uint32_t acc;
    int nacc;
} code_writer;

static void cw_block(code_writer *w) {
    if (w->npending == 0) return;
    put8(w->b, (unsigned)w->npending);
    put(w->b, w->pending, (size_t)w->npending);
    if (w->split) put8(w->b, 0);
    w->npending = 0;
}
static void cw_code(code_writer *w, int code, int size) {
    w->acc |= (uint32_t)code << w->nacc;
    w->nacc += size;
    while (w->nacc >= 8) {
        w->pending[w->npending++] = (unsigned char)(w->acc & 0xff);
        if (w->npending == w->block) cw_block(w);
        w->acc >>= 8;
        w->nacc -= 8;
    }
}
static void cw_flush(code_writer *w) {
    if (w->nacc > 0) w->pending[w->npending++] = (unsigned char)(w->acc & 0xff);
    w->acc = 0;
    w->nacc = 0;
    cw_block(w);
}

/* Pixels (each below 2^bits) as LZW codes. Code sizes follow the decoder's
 * table, which grows one code behind the encoder's; a full table is
 * cleared, or kept as it is when keep_full (what iss634.gif does). */
static void lzw_encode(code_writer *w, int bits, const uint16_t *px, size_t n, int keep_full,
                       int end_code) {
    static uint16_t prefix[4096], suffix[4096];
    const int clear = 1 << bits;
    int size = bits + 1, enc_next = clear + 2, dec_next = clear + 2, first = 1;
    cw_code(w, clear, size);
    int cur = px[0];
    for (size_t i = 1; i <= n; i++) {
        if (i < n) {
            int found = -1;
            for (int c = clear + 2; c < enc_next && found < 0; c++)
                if (prefix[c] == cur && suffix[c] == px[i]) found = c;
            if (found >= 0) {
                cur = found;
                continue;
            }
        }
        cw_code(w, cur, size);
        if (!first && dec_next < 4096) {
            if (dec_next == (1 << size) - 1 && size < 12) size++;
            dec_next++;
        }
        first = 0;
        if (i == n) break;
        if (enc_next < 4096) {
            prefix[enc_next] = (uint16_t)cur;
            suffix[enc_next] = px[i];
            enc_next++;
        } else if (!keep_full) {
            cw_code(w, clear, size);
            size = bits + 1;
            enc_next = dec_next = clear + 2;
            first = 1;
        }
        cur = px[i];
    }
    if (end_code) cw_code(w, clear + 1, size);
}

/* One frame's GIF. */
typedef struct gif_spec {
    int sw, sh;               /* logical screen */
    const unsigned char *pal; /* global palette, RGB (NULL: none) */
    int colors;               /* its entries, a power of two from 2 to 256 */
    int trns;                 /* transparent index (-1: no graphic control) */
    int trns_kept;            /* a second graphic control, without the flag */
    int junk;                 /* a byte that starts no block, before the image */
    int left, top, fw, fh, interlace;
    int bits;         /* LZW minimum code size (0: 8) */
    int pixels;       /* pixels encoded (0: fw x fh; more: px as it is) */
    int no_end;       /* no end code, terminator or trailer */
    int keep_full;    /* a full code table kept */
    int block, split; /* sub-blocks (see code_writer) */
    const int *codes; /* code, size pairs written instead of pixels */
    int ncodes;
} gif_spec;

/* Writes the GIF; px: fw x fh indices in display order. */
static void gif_write(buf *b, const gif_spec *s, const uint16_t *px) {
    b->n = 0;
    put(b, "GIF89a", 6);
    le16(b, (unsigned)s->sw);
    le16(b, (unsigned)s->sh);
    int k = 0;
    while (s->pal && (2 << k) < s->colors) k++;
    put8(b, s->pal ? 0x80u | (unsigned)k : 0);
    put8(b, 0);
    put8(b, 0);
    if (s->pal) put(b, s->pal, (size_t)3 * s->colors);
    if (s->trns >= 0) {
        const unsigned char gce[] = {'!', 0xf9, 4, 1, 0, 0, (unsigned char)s->trns, 0};
        put(b, gce, sizeof gce);
    }
    if (s->trns_kept) {
        const unsigned char gce[] = {'!', 0xf9, 4, 0, 0, 0, 0, 0};
        put(b, gce, sizeof gce);
    }
    if (s->junk) put8(b, 'x');
    put8(b, ',');
    le16(b, (unsigned)s->left);
    le16(b, (unsigned)s->top);
    le16(b, (unsigned)s->fw);
    le16(b, (unsigned)s->fh);
    put8(b, s->interlace ? 0x40 : 0);
    int bits = s->bits ? s->bits : 8;
    put8(b, (unsigned)bits);
    code_writer w = {b, s->block ? s->block : 255, s->split, {0}, 0, 0, 0};
    if (s->codes) {
        for (int i = 0; i < s->ncodes; i++) cw_code(&w, s->codes[2 * i], s->codes[2 * i + 1]);
    } else {
        /* Interlaced rows go in four passes: every 8th from 0, from 4,
         * every 4th from 2, every 2nd from 1. */
        static uint16_t order[8192];
        size_t n = 0;
        if ((size_t)s->fw * (size_t)s->fh > sizeof order / sizeof order[0]) {
            fprintf(stderr, "GIF test frame too large\n");
            exit(2);
        }
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        for (int pass = 0; pass < (s->interlace ? 4 : 1); pass++)
            for (int y = s->interlace ? start[pass] : 0; y < s->fh;
                 y += s->interlace ? step[pass] : 1)
                for (int x = 0; x < s->fw; x++) order[n++] = px[(size_t)y * s->fw + x];
        /* More pixels than the frame has come from px as they are. */
        size_t count = s->pixels ? (size_t)s->pixels : n;
        lzw_encode(&w, bits, count > n ? px : order, count, s->keep_full, !s->no_end);
    }
    cw_flush(&w);
    if (!s->no_end) {
        put8(b, 0);
        put8(b, ';');
    }
}

/* CLIPSCORE_GIF_DUMP=DIR writes each case's file (NAME.gif) and the bytes
 * expected of it (NAME.want: w, h, channels, then the pixels; empty for a
 * refusal), to check them against Pillow by hand. */
static void gif_dump(const char *name, const buf *b, int w, int h, int ch,
                     const unsigned char *want) {
    const char *dir = getenv("CLIPSCORE_GIF_DUMP");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/%s.gif", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) fwrite(b->d, 1, b->n, f), fclose(f);
    snprintf(path, sizeof path, "%s/%s.want", dir, name);
    if ((f = fopen(path, "wb"))) {
        if (want) fprintf(f, "%d %d %d\n", w, h, ch), fwrite(want, 1, (size_t)w * h * ch, f);
        fclose(f);
    }
}
static void gif_expect(const char *name, const buf *b, int w, int h, int ch,
                       const unsigned char *want) {
    gif_dump(name, b, w, h, ch, want);
    expect_pixels(name, b->d, b->n, w, h, ch, ch == 3, want);
}
static void gif_refused(const char *name, const buf *b, const char *needle) {
    gif_dump(name, b, 0, 0, 0, NULL);
    expect_error(name, b->d, b->n, CLIPSCORE_EFORMAT, needle);
}

static void test_gif(void) {
    static buf b;
    static unsigned char want[72 * 72 * 3];
    const unsigned char pal[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    /* Most cases: 2x2, the palette above, minimum code size 2. */
    const gif_spec small = {
        .sw = 2, .sh = 2, .pal = pal, .colors = 4, .trns = -1, .fw = 2, .fh = 2, .bits = 2};

    /* Transparent index 1 (green): Pillow keeps its colour, in the frame
     * and in the canvas around it (filled with that index). */
    const uint16_t px[] = {1, 2};
    gif_spec s = {.sw = 3, .sh = 1, .pal = pal, .colors = 4, .trns = 1, .fw = 2, .fh = 1};
    gif_write(&b, &s, px);
    const unsigned char trns[] = {0, 255, 0, 0, 0, 255, 0, 255, 0};
    gif_expect("transparent-index", &b, 3, 1, 3, trns);
    /* A second graphic control block without the flag keeps the index. */
    s.trns_kept = 1;
    gif_write(&b, &s, px);
    gif_expect("transparent-index-kept", &b, 3, 1, 3, trns);
    /* No transparency: the canvas outside the frame is index 0 (red); a
     * frame past the screen grows the canvas (3x1 screen, frame at x=2). */
    s = (gif_spec){
        .sw = 3, .sh = 1, .pal = pal, .colors = 4, .trns = -1, .left = 2, .fw = 2, .fh = 1};
    gif_write(&b, &s, px);
    const unsigned char grown[] = {255, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255};
    gif_expect("frame-past-screen", &b, 4, 1, 3, grown);
    /* A byte that starts no block is skipped, as Pillow skips it. */
    s.junk = 1;
    gif_write(&b, &s, px);
    gif_expect("junk-before-image", &b, 4, 1, 3, grown);

    /* A gray-ramp palette is mode "L": one channel, the indices. */
    const unsigned char ramp[] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3};
    const uint16_t idx[] = {3, 0, 2, 1};
    const unsigned char idx8[] = {3, 0, 2, 1};
    s = small;
    s.pal = ramp;
    gif_write(&b, &s, idx);
    gif_expect("gray-ramp", &b, 2, 2, 1, idx8);
    /* No palette at all (stb_image refused it): "L" too. */
    s.pal = NULL;
    gif_write(&b, &s, idx);
    gif_expect("no-palette", &b, 2, 2, 1, idx8);
    /* A frame at x 0 of width 0: Pillow's decoder takes it for the whole
     * canvas (its "no extent"), whatever the frame's y. */
    s.top = 1, s.fw = 0, s.fh = 1, s.pixels = 4;
    gif_write(&b, &s, idx);
    gif_expect("zero-width-at-x0", &b, 2, 2, 1, idx8);
    s.left = 1; /* elsewhere an empty frame is refused */
    gif_write(&b, &s, idx);
    gif_refused("zero-width-at-x1", &b, "corrupt GIF (frame 0x1)");

    /* Sub-blocks split by zero-size blocks: Pillow's decoder reads on
     * through them (a terminator is no boundary while the frame is not
     * full). */
    s = small;
    s.block = 1;
    s.split = 1;
    gif_write(&b, &s, idx);
    const unsigned char idx_rgb[] = {255, 255, 255, 255, 0, 0, 0, 0, 255, 0, 255, 0};
    gif_expect("terminators-inside-data", &b, 2, 2, 3, idx_rgb);
    /* The frame is complete at its last pixel: no end code, terminator or
     * trailer needed. */
    s = small;
    s.no_end = 1;
    gif_write(&b, &s, idx);
    gif_expect("no-end-code", &b, 2, 2, 3, idx_rgb);
    /* Cut inside the image data: truncated (Pillow: "image file is
     * truncated"). */
    s.no_end = 0;
    gif_write(&b, &s, idx);
    size_t whole = b.n;
    b.n -= 4;
    gif_refused("cut-in-data", &b, "truncated GIF");
    /* An end code before the frame is full: truncated too. */
    b.n = whole;
    s.pixels = 3;
    gif_write(&b, &s, idx);
    gif_refused("early-end-code", &b, "truncated GIF (end code");

    /* Minimum code size 11 (issue_2811.gif; giflib refused it) and 12:
     * indices past 255 keep their low byte, as Pillow stores them (past
     * the 4 entries of the palette: Pillow's gray ramp). */
    const uint16_t wide[] = {0x101, 0x2ff, 5, 0x7fe};
    s = (gif_spec){
        .sw = 4, .sh = 1, .pal = pal, .colors = 4, .trns = -1, .fw = 4, .fh = 1, .bits = 11};
    gif_write(&b, &s, wide);
    const unsigned char wide_rgb[] = {0, 255, 0, 255, 255, 255, 5, 5, 5, 254, 254, 254};
    gif_expect("code-size-11", &b, 4, 1, 3, wide_rgb);
    const uint16_t wider[] = {0xfff, 0x100, 2, 3};
    s.bits = 12;
    gif_write(&b, &s, wider);
    const unsigned char wider_rgb[] = {255, 255, 255, 255, 0, 0, 0, 0, 255, 255, 255, 255};
    gif_expect("code-size-12", &b, 4, 1, 3, wider_rgb);
    /* 13 is past Pillow's 12-bit codes. */
    b.d[13 + 12 + 10] = 13;
    gif_refused("code-size-13", &b, "LZW minimum code size 13");

    /* Interlaced: rows come in four passes (10 rows: all four used). */
    uint16_t rows[2 * 10];
    unsigned char rows8[2 * 10];
    for (int i = 0; i < 20; i++) rows[i] = (uint16_t)(i * 12), rows8[i] = (unsigned char)(i * 12);
    s = (gif_spec){.sw = 2, .sh = 10, .trns = -1, .fw = 2, .fh = 10, .interlace = 1};
    gif_write(&b, &s, rows);
    gif_expect("interlaced", &b, 2, 10, 1, rows8);

    /* Bad codes (minimum code size 2: clear 4, end 5, first free 6): a
     * first code after a clear that is no pixel, a code past the next
     * free one. Pillow: "broken data stream". */
    const int not_pixel[] = {4, 3, 6, 3};
    s = small;
    s.codes = not_pixel;
    s.ncodes = 2;
    gif_write(&b, &s, NULL);
    gif_refused("first-code-not-a-pixel", &b, "corrupt GIF (LZW code 6");
    const int past_next[] = {4, 3, 1, 3, 7, 3};
    s.codes = past_next, s.ncodes = 3;
    gif_write(&b, &s, NULL);
    gif_refused("code-past-next", &b, "past the next free code 6");
    /* An end code, then more codes: Pillow reads its data in 64 KiB pieces
     * and stops at an end code only when the file has no more, so with
     * 70000 bytes after the frame it decodes on (and completes the frame)
     * (the last code is 4 bits: the table reached 7 before it). */
    const int end_then_more[] = {4, 3, 3, 3, 5, 3, 0, 3, 2, 3, 1, 4};
    s.codes = end_then_more, s.ncodes = 6;
    gif_write(&b, &s, NULL);
    gif_refused("end-code-then-codes", &b, "truncated GIF (end code");
    for (int i = 0; i < 70000; i++) put8(&b, 0); /* after the trailer, never read */
    gif_expect("end-code-then-codes-64k", &b, 2, 2, 3, idx_rgb);

    /* A full code table without a clear code (iss634.gif, "too many codes"
     * to giflib): the table stays as it is and decoding goes on; and the
     * same with the usual clear. 72x72 noise fills the table. */
    static uint16_t noise[72 * 72];
    static unsigned char pal256[256 * 3];
    uint32_t r = 12345;
    for (int i = 0; i < 256; i++)
        pal256[3 * i] = (unsigned char)i, pal256[3 * i + 1] = (unsigned char)(255 - i),
                   pal256[3 * i + 2] = (unsigned char)(i ^ 0x55);
    for (int i = 0; i < 72 * 72; i++) {
        r = r * 1103515245u + 12345u;
        noise[i] = (uint16_t)((r >> 16) & 0xff);
        memcpy(want + 3 * i, pal256 + 3 * noise[i], 3);
    }
    s = (gif_spec){.sw = 72, .sh = 72, .pal = pal256, .colors = 256, .trns = -1, .fw = 72};
    s.fh = 72, s.keep_full = 1;
    gif_write(&b, &s, noise);
    gif_expect("full-table-kept", &b, 72, 72, 3, want);
    s.keep_full = 0;
    gif_write(&b, &s, noise);
    gif_expect("full-table-cleared", &b, 72, 72, 3, want);

    /* Blocks Pillow's parser refuses: an empty graphic control block, a
     * NETSCAPE2.0 block without its data. */
    s = small;
    s.trns = 1;
    gif_write(&b, &s, idx);
    b.d[13 + 12 + 2] = 0; /* the graphic control's block size */
    gif_refused("empty-graphic-control", &b, "graphic control");
    s.trns = -1;
    gif_write(&b, &s, idx);
    whole = b.n;
    memmove(b.d + 25 + 15, b.d + 25, whole - 25);
    memcpy(b.d + 25, "!\xff\x0bNETSCAPE2.0\x00", 15);
    b.n = whole + 15;
    gif_refused("netscape-without-data", &b, "NETSCAPE2.0");

    /* A decompression bomb: a 2x2 screen, a first frame claiming
     * 60000x60000, cut short: over the pixel limit, not "truncated". */
    s = small;
    gif_write(&b, &s, idx);
    b.n -= 4;
    b.d[13 + 12 + 5] = 0x60, b.d[13 + 12 + 6] = 0xea; /* frame width 60000 */
    b.d[13 + 12 + 7] = 0x60, b.d[13 + 12 + 8] = 0xea; /* frame height */
    cs_image img;
    cs_error e = {0};
    int rc = cs_image_load_memory(b.d, b.n, "bomb.gif", 1000000, &img, &e);
    CHECK_MSG(rc == CLIPSCORE_ELIMIT && strstr(e.msg, "60000x60000"), "GIF bomb: %d %s", rc, e.msg);
    if (rc == 0) cs_image_free(&img);
}
/* ------------------------------------------------------------------------ */
/* TGA                                                                        */

static void test_tga(void) {
    /* Uncompressed 24-bit, 3x1, right-to-left (descriptor 0x30: top-down,
     * right to left): the file's first pixel is the rightmost (Pillow
     * flips these; stb_image did not). */
    buf b = {{0}, 0};
    unsigned char head[18] = {0};
    head[2] = 2;
    head[12] = 3;
    head[14] = 1;
    head[16] = 24;
    head[17] = 0x30;
    put(&b, head, sizeof head);
    put(&b, "\x01\x02\x03\x04\x05\x06\x07\x08\x09", 9); /* BGR */
    const unsigned char want[] = {9, 8, 7, 6, 5, 4, 3, 2, 1};
    expect_pixels("TGA right to left", b.d, b.n, 3, 1, 3, 0, want);
    /* Left to right, the same bytes: as stored. */
    b.d[17] = 0x20;
    const unsigned char ltr[] = {3, 2, 1, 6, 5, 4, 9, 8, 7};
    expect_pixels("TGA left to right", b.d, b.n, 3, 1, 3, 0, ltr);
}

/* ------------------------------------------------------------------------ */
/* JPEG: bytes between segments                                               */

static void jpeg_out(void *ctx, void *data, int size) {
    put(ctx, data, (size_t)size);
}

static void test_jpeg_junk(void) {
    /* "FF 00 00 02" between two segments before the frame header (Pillow's
     * jpeg_ff00_header.jpg has it after its Adobe segment): libjpeg skips
     * it and so does Pillow; stb_image's header parser, asked for the size,
     * refused the file. */
    unsigned char px[16 * 8 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 7);
    buf j = {{0}, 0};
    CHECK(stbi_write_jpg_to_func(jpeg_out, &j, 16, 8, 3, px, 90));
    size_t at = 4 + ((size_t)j.d[4] << 8 | j.d[5]); /* after SOI and APP0 */
    buf b = {{0}, 0};
    put(&b, j.d, at);
    put(&b, "\xff\x00\x00\x02", 4);
    put(&b, j.d + at, j.n - at);
    cs_image img;
    cs_error e;
    int rc = decode("JPEG with junk between segments", b.d, b.n, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 16 && img.h == 8, "JPEG with junk between segments: %s", e.msg);
    if (rc == 0) cs_image_free(&img);
}

/* ------------------------------------------------------------------------ */
/* PNG chunks and JPEG segments Pillow refuses (or lets pass)                */

/* Appends a PNG chunk; crc_ok 0 spoils its CRC. */
static void png_chunk(buf *b, const char *type, const void *body, uint32_t len, int crc_ok) {
    be32(b, len);
    put(b, type, 4);
    if (len) put(b, body, len);
    uint32_t crc = (uint32_t)crc32(crc32(0L, (const unsigned char *)type, 4), body, (uInt)len);
    be32(b, crc_ok ? crc : crc ^ 1);
}

/* The parts of a small PNG stb_image_write makes: its IHDR chunk and its
 * IDAT chunk, whole (length, name, body, CRC). */
typedef struct png_parts {
    buf file;
    size_t ihdr_at, ihdr_n, idat_at, idat_n;
} png_parts;

static void png_parts_make(png_parts *p) {
    unsigned char px[4 * 2 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 29);
    memset(&p->file, 0, sizeof p->file);
    CHECK(stbi_write_png_to_func(jpeg_out, &p->file, 4, 2, 3, px, 12));
    size_t pos = 8;
    while (pos + 12 <= p->file.n) {
        size_t len = (size_t)p->file.d[pos] << 24 | (size_t)p->file.d[pos + 1] << 16 |
                     (size_t)p->file.d[pos + 2] << 8 | p->file.d[pos + 3];
        if (!memcmp(p->file.d + pos + 4, "IHDR", 4)) p->ihdr_at = pos, p->ihdr_n = 12 + len;
        if (!memcmp(p->file.d + pos + 4, "IDAT", 4)) p->idat_at = pos, p->idat_n = 12 + len;
        pos += 12 + len;
    }
    CHECK(p->ihdr_n == 25 && p->idat_n > 12);
}

/* A PNG of: signature, IHDR, `before` (chunks), IDAT, `after`, IEND. */
static void png_compose(const png_parts *p, const buf *before, const buf *after, buf *out) {
    memset(out, 0, sizeof *out);
    put(out, "\x89PNG\r\n\x1a\n", 8);
    put(out, p->file.d + p->ihdr_at, p->ihdr_n);
    if (before) put(out, before->d, before->n);
    put(out, p->file.d + p->idat_at, p->idat_n);
    if (after) put(out, after->d, after->n);
    png_chunk(out, "IEND", "", 0, 1);
}

/* An fcTL body: sequence number, a frame of w x h at (x, y). */
static void fctl(buf *b, uint32_t seq, uint32_t w, uint32_t h, uint32_t x, uint32_t y) {
    buf c = {{0}, 0};
    be32(&c, seq);
    be32(&c, w);
    be32(&c, h);
    be32(&c, x);
    be32(&c, y);
    be16(&c, 1);
    be16(&c, 10);
    put8(&c, 0);
    put8(&c, 0);
    png_chunk(b, "fcTL", c.d, (uint32_t)c.n, 1);
}

static void actl(buf *b, uint32_t frames) {
    buf c = {{0}, 0};
    be32(&c, frames);
    be32(&c, 0);
    png_chunk(b, "acTL", c.d, (uint32_t)c.n, 1);
}

static void fdat(buf *b, uint32_t seq) {
    /* the frame's data does not matter: Pillow refuses on the number */
    unsigned char c[8] = {(unsigned char)(seq >> 24),
                          (unsigned char)(seq >> 16),
                          (unsigned char)(seq >> 8),
                          (unsigned char)seq,
                          0x78,
                          0x9c,
                          3,
                          0};
    png_chunk(b, "fdAT", c, sizeof c, 1);
}

static void expect_png_ok(const char *what, const buf *f) {
    cs_image img;
    cs_error e;
    int rc = decode(what, f->d, f->n, &img, &e);
    CHECK_MSG(rc == 0 && img.w == 4 && img.h == 2, "%s: %s", what, e.msg);
    if (rc == 0) cs_image_free(&img);
}

static void test_png_chunks(void) {
    png_parts p;
    png_parts_make(&p);
    buf f, before, after;
    png_compose(&p, NULL, NULL, &f);
    expect_png_ok("PNG as written", &f);

    /* Pillow checks the CRC of every chunk before the image data (Pillow's
     * unknown_compression_method.png: a bad iCCP CRC) and none after. */
    memset(&before, 0, sizeof before);
    png_chunk(&before, "tEXt", "Title\0x", 7, 0);
    png_compose(&p, &before, NULL, &f);
    expect_error("PNG, bad CRC before IDAT", f.d, f.n, CLIPSCORE_EFORMAT,
                 "bad CRC in its tEXt chunk");
    png_compose(&p, NULL, &before, &f);
    expect_png_ok("PNG, bad CRC after IDAT", &f);
    memcpy(f.d + 8 + 21, "\0\0\0\0", 4); /* IHDR's own CRC */
    expect_error("PNG, bad IHDR CRC", f.d, f.n, CLIPSCORE_EFORMAT, "bad CRC in its IHDR chunk");

    /* Chunk names: four letters, digits or '_' before the image data. */
    memset(&before, 0, sizeof before);
    png_chunk(&before, "ab-d", "x", 1, 1);
    png_compose(&p, &before, NULL, &f);
    expect_error("PNG, chunk name with '-'", f.d, f.n, CLIPSCORE_EFORMAT, "chunk named 0x61622d64");
    png_compose(&p, NULL, &before, &f);
    expect_png_ok("PNG, chunk name with '-' after IDAT", &f);

    /* APNG frame numbers (Pillow's apng/chunk_no_fctl.png: an fdAT with no
     * fcTL before it). */
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    actl(&before, 1);
    fdat(&after, 0);
    png_compose(&p, &before, &after, &f);
    expect_error("APNG, fdAT without fcTL", f.d, f.n, CLIPSCORE_EFORMAT, "frame sequence errors");
    memset(&before, 0, sizeof before);
    fctl(&before, 1, 4, 2, 0, 0);
    png_compose(&p, &before, NULL, &f);
    expect_error("APNG, first fcTL numbered 1", f.d, f.n, CLIPSCORE_EFORMAT,
                 "frame sequence errors");
    memset(&before, 0, sizeof before);
    fctl(&before, 0, 4, 2, 1, 0);
    png_compose(&p, &before, NULL, &f);
    expect_error("APNG, frame past the image", f.d, f.n, CLIPSCORE_EFORMAT,
                 "frame outside the image");
    /* Animated: Pillow stops at the second frame's fcTL, whatever follows. */
    memset(&before, 0, sizeof before);
    memset(&after, 0, sizeof after);
    actl(&before, 2);
    fctl(&before, 0, 4, 2, 0, 0);
    fctl(&after, 1, 4, 2, 0, 0);
    fdat(&after, 7);
    png_compose(&p, &before, &after, &f);
    expect_png_ok("APNG, second frame misnumbered", &f);
    /* Not animated (one frame): it reads on, and refuses the misnumbered fdAT. */
    memset(&before, 0, sizeof before);
    actl(&before, 1);
    fctl(&before, 0, 4, 2, 0, 0);
    png_compose(&p, &before, &after, &f);
    expect_error("APNG of one frame, misnumbered fdAT after", f.d, f.n, CLIPSCORE_EFORMAT,
                 "frame sequence errors");
    memset(&after, 0, sizeof after);
    fdat(&after, 1);
    png_compose(&p, &before, &after, &f);
    expect_png_ok("APNG of one frame, fdAT numbered 1", &f);
    memset(&before, 0, sizeof before);
    png_chunk(&before, "acTL", "\0\0\0\1", 4, 1);
    png_compose(&p, &before, NULL, &f);
    expect_error("APNG, short acTL", f.d, f.n, CLIPSCORE_EFORMAT, "truncated acTL");

    /* Chunks too short for what Pillow unpacks, and compression methods. */
    static const struct {
        const char *type, *body;
        uint32_t len;
        const char *needle; /* NULL: read */
    } cases[] = {
        {"pHYs", "\0\0\0\1\0\0\0\1", 8, "truncated pHYs"},
        {"pHYs", "\0\0\0\1\0\0\0\1\1", 9, NULL},
        {"gAMA", "\0\0\1", 3, "truncated gAMA"},
        {"sRGB", "", 0, "truncated sRGB"},
        {"tRNS", "\0\1\0\2\0", 5, "truncated tRNS"}, /* RGB needs 6 bytes */
        {"tRNS", "\0\1\0\2\0\3", 6, NULL},
        {"iCCP", "name", 4, "iCCP chunk without a profile name"},
        {"iCCP", "name\0\1", 6, NULL}, /* Pillow reads the NUL as the method */
        {"zTXt", "key\0\1x", 6, "unknown compression method in a zTXt"},
        {"zTXt", "key", 3, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "PNG, %s of %u bytes", cases[i].type, (unsigned)cases[i].len);
        /* Before and after IDAT (Pillow reads a sound tRNS after IDAT too,
         * but stb_image refuses it there, as the PNG standard does). */
        int places = !memcmp(cases[i].type, "tRNS", 4) && !cases[i].needle ? 1 : 2;
        for (int where = 0; where < places; where++) {
            memset(&before, 0, sizeof before);
            png_chunk(&before, cases[i].type, cases[i].body, cases[i].len, 1);
            png_compose(&p, where ? NULL : &before, where ? &before : NULL, &f);
            if (cases[i].needle)
                expect_error(what, f.d, f.n, CLIPSCORE_EFORMAT, cases[i].needle);
            else
                expect_png_ok(what, &f);
        }
    }
}

/* A JPEG with `seg` (whole segments) in place of its JFIF segment. */
static void jpeg_with(const buf *seg, buf *out) {
    unsigned char px[8 * 8 * 3];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (unsigned char)(i * 5);
    buf j = {{0}, 0};
    CHECK(stbi_write_jpg_to_func(jpeg_out, &j, 8, 8, 3, px, 90));
    size_t at = 4 + ((size_t)j.d[4] << 8 | j.d[5]); /* after SOI and APP0 */
    memset(out, 0, sizeof *out);
    put(out, "\xff\xd8", 2);
    put(out, seg->d, seg->n);
    put(out, j.d + at, j.n - at);
}

static void jpeg_segment(buf *b, unsigned marker, const void *body, size_t n) {
    put8(b, 0xff);
    put8(b, marker);
    be16(b, (unsigned)n + 2);
    put(b, body, n);
}

static void test_jpeg_segments(void) {
    /* Pillow reads the first EXIF segment for a resolution while no JFIF
     * segment with units 1 gave one, and fails on a TIFF header cut short
     * (Pillow's truncated_exif_dpi.jpg: 7 bytes of it). */
    static const unsigned char jfif_dpi[14] = {'J', 'F', 'I', 'F', 0, 1, 1, 1, 0, 72, 0, 72, 0, 0};
    static const unsigned char jfif_none[14] = {'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0};
    static const struct {
        const void *jfif;
        const char *exif;
        size_t exif_n;
        const char *needle;
    } cases[] = {
        {NULL, "Exif\0\0MM\0*\0\0\0", 13, "EXIF segment cut short: 7 bytes"},
        {jfif_none, "Exif\0\0MM\0*\0\0\0", 13, "EXIF segment cut short"},
        {jfif_dpi, "Exif\0\0MM\0*\0\0\0", 13, NULL},
        {NULL, "Exif\0\0MM\0*\0\0\0\x08", 14, NULL},
        {NULL, "Exif\0\0XX\0*\0\0", 12, NULL}, /* no TIFF header: Pillow shrugs */
        {NULL, "Exif\0\0", 6, NULL},
        {NULL, "Exif\0\0II+\0\x08\0\0\0\0\0\0\0", 18, "BigTIFF"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "JPEG, EXIF case %zu", i);
        buf seg = {{0}, 0}, f;
        if (cases[i].jfif) jpeg_segment(&seg, 0xe0, cases[i].jfif, 14);
        jpeg_segment(&seg, 0xe1, cases[i].exif, cases[i].exif_n);
        jpeg_with(&seg, &f);
        if (cases[i].needle) {
            expect_error(what, f.d, f.n, CLIPSCORE_EFORMAT, cases[i].needle);
        } else {
            cs_image img;
            cs_error e;
            int rc = decode(what, f.d, f.n, &img, &e);
            CHECK_MSG(rc == 0 && img.w == 8, "%s: %s", what, e.msg);
            if (rc == 0) cs_image_free(&img);
        }
    }
    /* JFIF and Adobe segments too short for the version Pillow reads. */
    buf seg = {{0}, 0}, f;
    jpeg_segment(&seg, 0xe0, "JFIF\0\1", 6);
    jpeg_with(&seg, &f);
    expect_error("JPEG, JFIF of 6 bytes", f.d, f.n, CLIPSCORE_EFORMAT, "JFIF segment of 6 bytes");
    memset(&seg, 0, sizeof seg);
    jpeg_segment(&seg, 0xee, "Adobe\0", 6);
    jpeg_with(&seg, &f);
    expect_error("JPEG, Adobe of 6 bytes", f.d, f.n, CLIPSCORE_EFORMAT, "Adobe segment of 6 bytes");
}

/* ------------------------------------------------------------------------ */
/* PNM                                                                        */

static void test_pnm(void) {
    /* Plain (ASCII) gray with maxval 10, a comment between samples: Pillow
     * scales round(v / 10 * 255), halves to even (5 -> 127.5 -> 128). */
    const char p2[] = "P2\n# c\n3 1\n10\n0 5 # x\n 10\n";
    const unsigned char g[] = {0, 128, 255};
    expect_pixels("PNM P2", p2, sizeof p2 - 1, 3, 1, 1, 0, g);
    /* Plain RGB. */
    const char p3[] = "P3 1 1 255 1 2 3";
    const unsigned char rgb[] = {1, 2, 3};
    expect_pixels("PNM P3", p3, sizeof p3 - 1, 1, 1, 3, 0, rgb);
    /* Plain and binary bitmaps: 1 is black; mode "1" (nearest resize). */
    const char p1[] = "P1\n3 2\n101\n0 1 0\n";
    const unsigned char bits[] = {0, 255, 0, 255, 0, 255};
    expect_pixels("PNM P1", p1, sizeof p1 - 1, 3, 2, 1, 1, bits);
    const char p4[] = "P4\n3 2\n\xa0\x40";
    expect_pixels("PNM P4", p4, sizeof p4 - 1, 3, 2, 1, 1, bits);
    /* Binary gray with maxval 100: scaled too (stb_image kept 50 as 50). */
    const char p5[] = "P5 2 1 100\n\x32\x64";
    const unsigned char g5[] = {128, 255};
    expect_pixels("PNM P5 maxval 100", p5, sizeof p5 - 1, 2, 1, 1, 0, g5);
    /* A sample above maxval, and plain data that ends early. */
    const char big[] = "P2 2 1 10 3 11";
    expect_error("PNM P2 over maxval", big, sizeof big - 1, CLIPSCORE_EFORMAT, "corrupt PNM");
    const char cut[] = "P3 2 1 255 1 2 3 4";
    expect_error("PNM P3 cut", cut, sizeof cut - 1, CLIPSCORE_EFORMAT, "truncated PNM");
    /* A number too long for the header (stb_image's parser overflowed). */
    const char huge[] = "P5 99999999999 1 255\n";
    expect_error("PNM huge", huge, sizeof huge - 1, CLIPSCORE_EFORMAT, "number too large");
}

/* XBM and XPM are named, not called text files; a PNG cut inside a chunk
 * whose name is binary has it in hex. */
/* Writes the CRC of the IHDR chunk of a PNG in memory (d: the file). */
static void ihdr_crc(unsigned char *d) {
    uint32_t crc = (uint32_t)crc32(0L, d + 12, 17);
    for (int k = 0; k < 4; k++) d[29 + k] = (unsigned char)(crc >> (24 - 8 * k));
}

static void test_text_formats(void) {
    unsigned char png[] = {0x89, 'P', 'N',  'G',  '\r', '\n', 0x1a, '\n', 0, 0, 0,
                           13,   'I', 'H',  'D',  'R',  0,    0,    0,    1, 0, 0,
                           0,    1,   8,    2,    0,    0,    0,    0,    0, 0, 0,
                           0,    0,   0x20, 0x01, 0x7f, 0xc3, 'X',  1,    2};
    ihdr_crc(png);
    expect_error("PNG binary chunk name", png, sizeof png, CLIPSCORE_EFORMAT,
                 "ends inside a 0x7fc35801 chunk");
    /* An IHDR naming a compression method other than 0 (deflate): refused
     * before stb_image is asked (which refused it as "bad comp method"),
     * naming the method. */
    unsigned char bad[sizeof png];
    memcpy(bad, png, sizeof png);
    bad[8 + 8 + 10] = 1;
    ihdr_crc(bad);
    expect_error("PNG compression method 1", bad, sizeof bad, CLIPSCORE_EFORMAT,
                 "unknown compression method 1");
    const char xbm[] = "#define im_width 8\n#define im_height 1\nstatic char im_bits[] = {0x01};\n";
    expect_error("XBM", xbm, sizeof xbm - 1, CLIPSCORE_EUNSUPPORTED,
                 "XBM images are not supported");
    const char xpm[] = "/* XPM */\nstatic char *x[] = {\"1 1 1 1\", \"a c #ff0000\", \"a\"};\n";
    expect_error("XPM", xpm, sizeof xpm - 1, CLIPSCORE_EUNSUPPORTED,
                 "XPM images are not supported");
}

/* ------------------------------------------------------------------------ */
/* CMYK: resized in CMYK, converted after (the reference's order)            */

static void test_cmyk_order(void) {
    /* A 4x4 CMYK image through the preprocessing at 2x2 (mean 0, std 1:
     * the output is v / 255). Expected, from Pillow 9.4:
     *   im.resize((2, 2), BICUBIC).convert("RGB")
     * (converting first gives (167, 157, 29), (62, 118, 118), ...). */
    cs_image img;
    cs_error e = {0};
    if (cs_image_alloc(&img, 4, 4, 4, &e)) exit(2);
    img.cmyk = 1;
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            unsigned char *p = img.px + (y * 4 + x) * 4;
            p[0] = (unsigned char)((x * 70 + y * 20) % 256);
            p[1] = (unsigned char)((x * 30 + y * 90) % 256);
            p[2] = (unsigned char)((255 - x * 60) % 256);
            p[3] = (unsigned char)((y * 80) % 256);
        }
    const unsigned char want[4][3] = {{166, 142, 29}, {57, 110, 118}, {39, 32, 9}, {22, 33, 35}};
    cs_preprocess_cfg cfg = {2, {0, 0, 0}, {1, 1, 1}};
    float out[3 * 4];
    int rc = cs_image_preprocess(&img, &cfg, out, &e);
    CHECK_MSG(rc == 0, "CMYK preprocess: %s", e.msg);
    for (int i = 0; rc == 0 && i < 4; i++)
        for (int c = 0; c < 3; c++) {
            int got = (int)lroundf(out[c * 4 + i] * 255.0f);
            CHECK_MSG(got == want[i][c], "CMYK pixel %d channel %d: %d, want %d", i, c, got,
                      want[i][c]);
        }
    cs_image_free(&img);
}

/* ------------------------------------------------------------------------ */
/* TIFF: Orientation, "PA", and layouts Pillow refuses                       */

/* An IFD entry, SHORT (3) or LONG (4); StripOffsets and StripByteCounts
 * with no values get the strips'. */
typedef struct tiff_entry {
    unsigned tag, type;
    uint32_t count;
    const uint32_t *v;
} tiff_entry;
#define TE(tag, type, ...)                                                                         \
    {                                                                                              \
        tag, type, sizeof((uint32_t[]){__VA_ARGS__}) / sizeof(uint32_t), (uint32_t[]) {            \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }
#define TE_STRIPS(tag)                                                                             \
    { tag, 4, 0, NULL }

/* One entry's values (count of them; StripOffsets/StripByteCounts with no
 * values: the strips' offsets and lengths). */
static void tiff_values(buf *b, const tiff_entry *t, uint32_t count, const uint32_t *off,
                        const size_t *len) {
    for (uint32_t k = 0; k < count; k++) {
        uint32_t v = t->v ? t->v[k] : t->tag == 273 ? off[k] : (uint32_t)len[k];
        if (t->type == 3)
            le16(b, v);
        else
            le32(b, v);
    }
}

/* A little-endian TIFF: header, the strips (len[i] bytes each, one after
 * another in data), the entries in the order given, their longer values. */
static void tiff_make(buf *b, const tiff_entry *t, int nt, const unsigned char *data,
                      const size_t *len, int nstrips) {
    uint32_t off[64];
    b->n = 0;
    put(b, "II*\0\0\0\0\0", 8);
    for (int s = 0; s < nstrips; s++) {
        off[s] = (uint32_t)b->n;
        put(b, data, len[s]);
        data += len[s];
        if (b->n % 2) put8(b, 0);
    }
    uint32_t ifd = (uint32_t)b->n, at = ifd + 2 + 12u * (uint32_t)nt + 4;
    for (int k = 0; k < 4; k++) b->d[4 + k] = (unsigned char)(ifd >> (8 * k));
    le16(b, (unsigned)nt);
    for (int i = 0; i < nt; i++) {
        uint32_t count = t[i].v ? t[i].count : (uint32_t)nstrips;
        uint32_t size = count * (t[i].type == 3 ? 2 : 4);
        le16(b, t[i].tag);
        le16(b, t[i].type);
        le32(b, count);
        if (size > 4) {
            le32(b, at);
            at += size;
        } else {
            tiff_values(b, &t[i], count, off, len);
            for (; size < 4; size++) put8(b, 0);
        }
    }
    le32(b, 0); /* no next directory */
    for (int i = 0; i < nt; i++) {
        uint32_t count = t[i].v ? t[i].count : (uint32_t)nstrips;
        if (count * (t[i].type == 3 ? 2 : 4) > 4) tiff_values(b, &t[i], count, off, len);
    }
}

/* PackBits of rows of n bytes, as literal runs. out gets the size. */
static size_t packbits(unsigned char *out, const unsigned char *in, size_t n, int rows) {
    size_t k = 0;
    for (int r = 0; r < rows; r++)
        for (size_t i = 0; i < n; i += 128) {
            size_t run = n - i < 128 ? n - i : 128;
            out[k++] = (unsigned char)(run - 1);
            memcpy(out + k, in + (size_t)r * n + i, run);
            k += run;
        }
    return k;
}

static void test_tiff(void) {
    buf b;
    char what[96];
    /* Orientation, uncompressed (Pillow's own reader) and PackBits
     * (libtiff's): Pillow 9.4 transposes after decoding either way. A 3x4
     * gray image 10, 20, ..., 120; expected, per tag value, from Pillow. */
    unsigned char g[12], pb[64];
    for (int i = 0; i < 12; i++) g[i] = (unsigned char)(10 * (i + 1));
    static const unsigned char turned[9][12] = {
        {0},
        {10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120},
        {30, 20, 10, 60, 50, 40, 90, 80, 70, 120, 110, 100},
        {120, 110, 100, 90, 80, 70, 60, 50, 40, 30, 20, 10},
        {100, 110, 120, 70, 80, 90, 40, 50, 60, 10, 20, 30},
        {10, 40, 70, 100, 20, 50, 80, 110, 30, 60, 90, 120},
        {100, 70, 40, 10, 110, 80, 50, 20, 120, 90, 60, 30},
        {120, 90, 60, 30, 110, 80, 50, 20, 100, 70, 40, 10},
        {30, 60, 90, 120, 20, 50, 80, 110, 10, 40, 70, 100}};
    for (unsigned o = 1; o <= 8; o++)
        for (int packed = 0; packed < 2; packed++) {
            size_t len[2] = {6, 6};
            const unsigned char *data = g;
            if (packed) {
                len[0] = packbits(pb, g, 3, 2);
                len[1] = packbits(pb + len[0], g + 6, 3, 2);
                data = pb;
            }
            tiff_entry t[] = {
                TE(256, 3, 3), TE(257, 3, 4),  TE(258, 3, 8), TE(259, 3, packed ? 32773 : 1),
                TE(262, 3, 1), TE_STRIPS(273), TE(274, 3, o), TE(277, 3, 1),
                TE(278, 3, 2), TE_STRIPS(279)};
            tiff_make(&b, t, 10, data, len, 2);
            snprintf(what, sizeof what, "TIFF orientation %u%s", o, packed ? " (PackBits)" : "");
            int turn = o >= 5;
            expect_pixels(what, b.d, b.n, turn ? 4 : 3, turn ? 3 : 4, 1, 0, turned[o]);
        }
    /* The reference's Resize reads the size Pillow reports before load()
     * turns the image, and resizes the turned pixels to it: a 3x5 image
     * with orientation 6 (5x3 once turned) is stretched back to 3x5 at
     * size 3, and to 2x3 at size 2. Expected from Pillow 9.4 and
     * torchvision 0.14: T.Resize / T.CenterCrop / convert("RGB") on
     * Image.open() (no load() before, as the original script). */
    {
        unsigned char g15[15];
        for (int i = 0; i < 15; i++) g15[i] = (unsigned char)(10 * (i + 1));
        size_t len15 = 15;
        tiff_entry t15[] = {TE(256, 3, 3), TE(257, 3, 5),  TE(258, 3, 8), TE(259, 3, 1),
                            TE(262, 3, 1), TE_STRIPS(273), TE(274, 3, 6), TE(277, 3, 1),
                            TE(278, 3, 5), TE_STRIPS(279)};
        tiff_make(&b, t15, 10, g15, &len15, 1);
        cs_image img;
        cs_error e;
        int rc = decode("TIFF orientation 6, 3x5", b.d, b.n, &img, &e);
        CHECK_MSG(rc == 0 && img.w == 5 && img.h == 3 && img.ref_w == 3 && img.ref_h == 5,
                  "TIFF orientation 6, 3x5: %dx%d, reported %dx%d (%s)", img.w, img.h, img.ref_w,
                  img.ref_h, e.msg);
        static const unsigned char want3[] = {122, 73, 24, 129, 80, 31, 136, 87, 38};
        static const unsigned char want2[] = {104, 36, 114, 46};
        for (int size = 3; rc == 0 && size >= 2; size--) {
            cs_preprocess_cfg cfg = {size, {0, 0, 0}, {1, 1, 1}};
            float out[3 * 9];
            const unsigned char *want = size == 3 ? want3 : want2;
            CHECK(cs_image_preprocess(&img, &cfg, out, &e) == 0);
            for (int i = 0; i < size * size; i++) {
                int got = (int)lroundf(out[i] * 255.0f);
                CHECK_MSG(got == want[i], "orientation 6 at %d: pixel %d is %d, want %d", size, i,
                          got, want[i]);
            }
        }
        if (rc == 0) cs_image_free(&img);
    }

    /* Every mode turns: RGB with 6 (clockwise), "PA" with 8, bilevel with 3. */
    unsigned char rgb[18];
    for (int i = 0; i < 18; i++) rgb[i] = (unsigned char)(i + 1);
    size_t rlen = packbits(pb, rgb, 9, 2);
    tiff_entry trgb[] = {TE(256, 3, 3), TE(257, 3, 2),  TE(258, 3, 8, 8, 8), TE(259, 3, 32773),
                         TE(262, 3, 2), TE_STRIPS(273), TE(274, 3, 6),       TE(277, 3, 3),
                         TE(278, 3, 2), TE_STRIPS(279)};
    tiff_make(&b, trgb, 10, pb, &rlen, 1);
    const unsigned char rgb6[] = {10, 11, 12, 1, 2, 3, 13, 14, 15, 4, 5, 6, 16, 17, 18, 7, 8, 9};
    expect_pixels("RGB TIFF orientation 6", b.d, b.n, 2, 3, 3, 0, rgb6);
    const unsigned char bits[] = {0xb0, 0x40, 0xe0, 0x20}; /* 10x2, 1 is black */
    size_t blen = packbits(pb, bits, 2, 2);
    tiff_entry tbits[] = {TE(256, 3, 10), TE(257, 3, 2),  TE(258, 3, 1), TE(259, 3, 32773),
                          TE(262, 3, 0),  TE_STRIPS(273), TE(274, 3, 3), TE(277, 3, 1),
                          TE(278, 3, 2),  TE_STRIPS(279)};
    tiff_make(&b, tbits, 10, pb, &blen, 1);
    const unsigned char bits3[] = {255, 255, 255, 255, 255, 255, 255, 0, 0,   0,
                                   0,   255, 255, 255, 255, 255, 0,   0, 255, 0};
    expect_pixels("bilevel TIFF orientation 3", b.d, b.n, 10, 2, 1, 1, bits3);

    /* "PA": palette index and unassociated alpha. The colour map's entries
     * are distinct, so that a lookup shows. */
    static uint32_t cmap[768];
    for (int i = 0; i < 256; i++) {
        cmap[i] = (uint32_t)(i * 257 * 7) % 65536;
        cmap[256 + i] = (uint32_t)(i * 257 * 3) % 65536;
        cmap[512 + i] = 65535u - (uint32_t)i * 257;
    }
    const unsigned char pa[] = {5, 255, 6, 0, 7, 128, 8, 1, 9, 2, 10, 3}; /* 3x2 */
    size_t palen = sizeof pa;
    tiff_entry tpa[] = {TE(256, 3, 3), TE(257, 3, 2),  TE(258, 3, 8, 8),    TE(259, 3, 1),
                        TE(262, 3, 3), TE_STRIPS(273), TE(274, 3, 8),       TE(277, 3, 2),
                        TE(278, 3, 2), TE_STRIPS(279), {320, 3, 768, cmap}, TE(338, 3, 2)};
    tiff_make(&b, tpa, 12, pa, &palen, 1);
    const unsigned char pa8[] = {7, 128, 10, 3, 6, 0, 9, 2, 5, 255, 8, 1};
    expect_pixels("PA TIFF orientation 8", b.d, b.n, 2, 3, 2, 0, pa8);

    /* Through the preprocessing (mean 0, std 1: out * 255 is the level). A
     * 4x2 "PA" at size 2 is left at its size (Pillow copies it, palette and
     * all: colours); at size 1 it is resampled, and Pillow 9.4's resampled
     * "PA" has its default palette, a gray ramp: the resampled index is the
     * level. Expected from Pillow: Resize/CenterCrop/convert("RGB"). */
    const unsigned char pa4[] = {0,  255, 40, 255, 200, 128, 255, 0,
                                 10, 255, 90, 64,  120, 255, 30,  255};
    size_t pa4len = packbits(pb, pa4, 8, 2);
    tiff_entry tpa4[] = {TE(256, 3, 4),  TE(257, 3, 2),       TE(258, 3, 8, 8), TE(259, 3, 32773),
                         TE(262, 3, 3),  TE_STRIPS(273),      TE(277, 3, 2),    TE(278, 3, 2),
                         TE_STRIPS(279), {320, 3, 768, cmap}, TE(338, 3, 2)};
    tiff_make(&b, tpa4, 11, pb, &pa4len, 1);
    cs_image img;
    cs_error e;
    int rc = decode("PA TIFF 4x2", b.d, b.n, &img, &e);
    CHECK_MSG(rc == 0 && img.channels == 2 && img.pal && !img.palette, "PA TIFF 4x2: %s", e.msg);
    if (rc == 0) {
        static const unsigned char want2[] = {25,  120, 215, 125, 90,  55,
                                              120, 15,  165, 75,  105, 135};
        static const unsigned char want1[] = {46, 46, 46};
        for (int size = 2; size >= 1; size--) {
            cs_preprocess_cfg cfg = {size, {0, 0, 0}, {1, 1, 1}};
            float out[3 * 4];
            const unsigned char *want = size == 2 ? want2 : want1;
            CHECK(cs_image_preprocess(&img, &cfg, out, &e) == 0);
            for (int i = 0; i < size * size; i++)
                for (int c = 0; c < 3; c++) {
                    int got = (int)lroundf(out[c * size * size + i] * 255.0f);
                    CHECK_MSG(got == want[3 * i + c],
                              "PA at %d: pixel %d channel %d is %d, want %d", size, i, c, got,
                              want[3 * i + c]);
                }
        }
        /* The thumbnail shows the palette's colours (nearest, then looked
         * up, alpha over white): pixel 2 is index 200 at alpha 128. */
        cs_image th;
        CHECK(cs_image_thumbnail(&img, 4, &th, &e) == 0 && th.channels == 3);
        if (th.px) {
            const unsigned char *c200 = (const unsigned char[]){125, 90, 55};
            for (int c = 0; c < 3; c++) {
                int want = (c200[c] * 128 + 255 * 127 + 127) / 255;
                CHECK_MSG(th.px[2 * 3 + c] == want, "PA thumbnail channel %d is %d, want %d", c,
                          th.px[2 * 3 + c], want);
            }
            cs_image_free(&th);
        }
        cs_image_free(&img);
    }

    /* YCbCr, not JPEG: libtiff's RGBA reader, a strip a call as Pillow
     * asks it. With an Orientation that flips, libtiff flips each strip
     * and Pillow the whole image again: 4 (and 3) reverse the strips'
     * order but not their rows. Y 10..80 and neutral chroma give gray. */
    unsigned char ycc[24];
    for (int i = 0; i < 8; i++) {
        ycc[3 * i] = (unsigned char)(10 * (i + 1));
        ycc[3 * i + 1] = ycc[3 * i + 2] = 128;
    }
    size_t ylen[2];
    ylen[0] = packbits(pb, ycc, 6, 2);
    ylen[1] = packbits(pb + ylen[0], ycc + 12, 6, 2);
    for (unsigned o = 3; o <= 4; o++) {
        tiff_entry ty[] = {TE(256, 3, 2), TE(257, 3, 4),  TE(258, 3, 8, 8, 8), TE(259, 3, 32773),
                           TE(262, 3, 6), TE_STRIPS(273), TE(274, 3, o),       TE(277, 3, 3),
                           TE(278, 3, 2), TE_STRIPS(279), TE(530, 3, 1, 1)};
        tiff_make(&b, ty, 11, pb, ylen, 2);
        unsigned char want[24];
        const unsigned char levels[] = {50, 60, 70, 80, 10, 20, 30, 40};
        for (int i = 0; i < 24; i++) want[i] = levels[i / 3];
        snprintf(what, sizeof what, "YCbCr TIFF orientation %u", o);
        expect_pixels(what, b.d, b.n, 2, 4, 3, 0, want);
    }

    /* Two ImageWidth (or BitsPerSample) entries that disagree: libtiff
     * reads the first, Pillow the last, and refuses the file (Pillow's
     * crash-74d2a784...tif, crash-0da013a1...tif). Agreeing ones are read. */
    size_t glen = packbits(pb, g, 3, 4);
    for (int k = 0; k < 3; k++) {
        uint32_t second = k == 0 ? 3 : 6;
        tiff_entry td[] = {
            TE(256, 3, 3),  TE(257, 3, 4),
            TE(258, 3, 8),  TE(259, 3, 32773),
            TE(262, 3, 1),  TE_STRIPS(273),
            TE(277, 3, 1),  TE(278, 3, 4),
            TE_STRIPS(279), k == 2 ? (tiff_entry)TE(258, 3, 4) : (tiff_entry)TE(256, 4, second)};
        tiff_make(&b, td, 10, pb, &glen, 1);
        if (k == 0)
            expect_pixels("TIFF with ImageWidth twice", b.d, b.n, 3, 4, 1, 0, turned[1]);
        else
            expect_error("TIFF with two different widths", b.d, b.n, CLIPSCORE_EFORMAT,
                         k == 1 ? "two different ImageWidth entries"
                                : "two different BitsPerSample entries");
    }

    /* Uncompressed with separate planes: Pillow gives each offset a band
     * in turn and refuses one past the last plane (its
     * tiff_overflow_rows_per_strip.tif: 39 offsets, 3 planes of one strip,
     * RowsPerStrip 2^31 + 1). 2x2 RGB, a strip a plane. */
    const unsigned char planes[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 1, 2, 3, 4};
    size_t plen[4] = {4, 4, 4, 4};
    for (int extra = 0; extra < 2; extra++) {
        tiff_entry tp[] = {
            TE(256, 3, 2),  TE(257, 3, 2), TE(258, 3, 8, 8, 8),     TE(259, 3, 1),  TE(262, 3, 2),
            TE_STRIPS(273), TE(277, 3, 3), TE(278, 4, 0x80000001u), TE_STRIPS(279), TE(284, 3, 2)};
        tiff_make(&b, tp, 10, planes, plen, 3 + extra);
        const unsigned char want[] = {1, 5, 9, 2, 6, 10, 3, 7, 11, 4, 8, 12};
        if (extra)
            expect_error("planar TIFF, a strip too many", b.d, b.n, CLIPSCORE_EFORMAT,
                         "4 strip offsets, 3 expected");
        else
            expect_pixels("planar TIFF", b.d, b.n, 2, 2, 3, 0, want);
    }

    /* RowsPerStrip past 2^31 - 1 (but for 2^32 - 1, "all of them"):
     * Pillow's libtiff decoder refuses it; its own reader of uncompressed
     * files does not. */
    const uint32_t rps[3] = {0x80000001u, 0xffffffffu, 0x80000001u};
    for (int k = 0; k < 3; k++) {
        int packed = k < 2;
        size_t l = packed ? packbits(pb, g, 3, 4) : 12;
        tiff_entry tr[] = {
            TE(256, 3, 3), TE(257, 3, 4),  TE(258, 3, 8), TE(259, 3, packed ? 32773 : 1),
            TE(262, 3, 1), TE_STRIPS(273), TE(277, 3, 1), TE(278, 4, rps[k]),
            TE_STRIPS(279)};
        tiff_make(&b, tr, 9, packed ? pb : g, &l, 1);
        snprintf(what, sizeof what, "TIFF RowsPerStrip %u%s", rps[k], packed ? " (PackBits)" : "");
        if (k == 0)
            expect_error(what, b.d, b.n, CLIPSCORE_EFORMAT, "RowsPerStrip 2147483649");
        else
            expect_pixels(what, b.d, b.n, 3, 4, 1, 0, turned[1]);
    }
    /* Through libtiff's RGBA reader Pillow's limit is its buffer: 4 bytes a
     * pixel times the rows of a strip under 2^31 (2 pixels wide: 268435455
     * rows at most). */
    for (int k = 0; k < 2; k++) {
        tiff_entry ty[] = {TE(256, 3, 2),       TE(257, 3, 4),
                           TE(258, 3, 8, 8, 8), TE(259, 3, 32773),
                           TE(262, 3, 6),       TE_STRIPS(273),
                           TE(277, 3, 3),       TE(278, 4, k ? 268435456u : 268435455u),
                           TE_STRIPS(279),      TE(530, 3, 1, 1)};
        size_t l = packbits(pb, ycc, 6, 4);
        tiff_make(&b, ty, 10, pb, &l, 1);
        if (k)
            expect_error("YCbCr TIFF, long strips", b.d, b.n, CLIPSCORE_EFORMAT,
                         "268435456 rows a strip");
        else {
            unsigned char want[24];
            for (int i = 0; i < 24; i++) want[i] = (unsigned char)(10 * (i / 3 + 1));
            expect_pixels("YCbCr TIFF", b.d, b.n, 2, 4, 3, 0, want);
        }
    }
}

/* Decodes every file of a folder (the fuzz regressions): whatever the
 * verdict, a decoded image must be a function of the file (valgrind). */
static void decode_folder(const char *dir) {
    DIR *dd = opendir(dir);
    CHECK_MSG(dd != NULL, "%s: cannot open", dir);
    if (!dd) return;
    struct dirent *ent;
    int files = 0;
    while ((ent = readdir(dd))) {
        if (ent->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        cs_image img;
        cs_error e = {0};
        if (cs_image_load(path, 4000000, &img, &e) == 0) {
            size_t bytes = (size_t)img.w * img.h * img.channels;
            CHECK_MSG(write(devnull, img.px, bytes) == (ssize_t)bytes, "%s: write", path);
            cs_image_free(&img);
        } else {
            CHECK_MSG(e.msg[0] != '\0', "%s: refused without a message", path);
        }
        files++;
    }
    closedir(dd);
    CHECK_MSG(files > 0, "%s: no files", dir);
}

/* Arguments: folders of files to decode as well (CTest passes the image
 * fuzz regressions). */
int main(int argc, char **argv) {
    devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    test_psd();
    test_bmp();
    test_pnm();
    test_gif();
    test_tga();
    test_text_formats();
    test_cmyk_order();
    test_jpeg_junk();
    test_png_chunks();
    test_jpeg_segments();
    test_tiff();
    for (int i = 1; i < argc; i++) decode_folder(argv[i]);
    if (devnull >= 0) close(devnull);
    return test_finish("test_decoders");
}
