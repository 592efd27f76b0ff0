/* image_bmp.c - Windows BMP files as Pillow 9.4's BmpImagePlugin reads them.
 *
 * Covers: OS/2 (12-byte) and Windows (40, 64, 108, 124-byte) headers; 1, 4
 * and 8-bit palettes (Pillow's modes: "1" for a black-and-white palette,
 * "L" for the gray ramp, else "P"; a palette is completed to 256 entries
 * with Pillow's default, the gray ramp i,i,i, so an index past the file's
 * palette is a defined colour); RLE8 and RLE4 (Pillow's decoder, quirks
 * included: its data must fill the image); 16-bit 5-5-5 and 5-6-5 with
 * Pillow's channel expansion (v * 255 / 31, truncated); 24-bit; 32-bit
 * BGRX and Pillow's bitfield layouts, with alpha where Pillow has it.
 * Leaves out: what Pillow 9.4 refuses (other header sizes, bitfield
 * layouts, embedded JPEG/PNG: EUNSUPPORTED). */
#include "image_formats.h"

#include <stdlib.h>
#include <string.h>

static uint32_t rl32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static unsigned rl16(const unsigned char *p) {
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

typedef struct bmp_info {
    uint32_t offset, hsize;
    int64_t w, h;
    int top_down;
    unsigned bits, compression, colors, padding;
    uint32_t mask[4];
    size_t palette_at; /* where the palette starts */
} bmp_info;

/* 1: parsed; 0: more bytes needed; -1: not a BMP Pillow reads (*why). */
static int parse(const unsigned char *d, size_t n, bmp_info *b, const char **why) {
    *why = "corrupt header";
    if (n < 18) return 0;
    memset(b, 0, sizeof *b);
    b->offset = rl32(d + 10);
    b->hsize = rl32(d + 14);
    if (b->hsize == 12) {
        if (n < 26) return 0;
        b->w = rl16(d + 18);
        b->h = rl16(d + 20);
        b->bits = rl16(d + 24);
        b->padding = 3;
    } else if (b->hsize == 40 || b->hsize == 64 || b->hsize == 108 || b->hsize == 124) {
        if (n < 54) return 0;
        b->top_down = d[25] == 0xff;
        b->w = rl32(d + 18);
        b->h = b->top_down ? (int64_t)((1ull << 32) - rl32(d + 22)) : (int64_t)rl32(d + 22);
        b->bits = rl16(d + 28);
        b->compression = rl32(d + 30);
        b->colors = rl32(d + 46);
        b->padding = 4;
        if (b->compression == 3) {
            if (b->hsize >= 56) {
                for (int k = 0; k < 4; k++) b->mask[k] = rl32(d + 54 + 4 * k);
            } else {
                if (n < 66) return 0; /* the masks follow the header */
                for (int k = 0; k < 3; k++) b->mask[k] = rl32(d + 54 + 4 * k);
            }
        }
    } else {
        *why = "unsupported header size";
        return -1;
    }
    b->palette_at = 14 + b->hsize + (b->compression == 3 && b->hsize < 56 ? 12 : 0);
    if (!b->colors && b->bits <= 8) b->colors = 1u << b->bits; /* only palettes use it */
    if (b->offset == 14 + b->hsize && b->bits <= 8) b->offset += 4 * b->colors;
    if (b->w == 0 || b->h == 0 || b->w > (1 << 24) || b->h > (1 << 24)) {
        *why = "bad size";
        return -1;
    }
    return 1;
}

int cs_bmp_probe(const unsigned char *d, size_t n, int *w, int *h) {
    bmp_info b;
    const char *why;
    int r = parse(d, n, &b, &why);
    if (r == 1) {
        *w = (int)b.w;
        *h = (int)b.h;
    }
    return r;
}

/* Pillow's RLE decoder (BmpRleDecoder.decode), into idx (w*h, rows in file
 * order). Returns how many pixels it produced. */
static size_t rle_decode(const unsigned char *d, size_t n, size_t pos, int rle4, size_t w, size_t h,
                         unsigned char *idx) {
    size_t len = 0, x = 0, total = w * h;
#define RLE_PUT(v)                                                                                 \
    do {                                                                                           \
        if (len < total) idx[len] = (unsigned char)(v);                                            \
        len++;                                                                                     \
    } while (0)
    while (len < total) {
        if (pos >= n || n - pos < 2) break;
        unsigned count = d[pos], byte = d[pos + 1];
        pos += 2;
        if (count) {
            if (x + count > w) count = x < w ? (unsigned)(w - x) : 0;
            for (unsigned i = 0; i < count; i++)
                RLE_PUT(rle4 ? (i % 2 == 0 ? byte >> 4 : byte & 15) : byte);
            x += count;
        } else if (byte == 0) { /* end of line: pad to a row boundary */
            while (len % w) RLE_PUT(0);
            x = 0;
        } else if (byte == 1) { /* end of bitmap */
            break;
        } else if (byte == 2) {
            /* delta: Pillow reads two bytes, then two more for the offsets */
            if (n - pos < 2) break;
            pos += 2;
            if (n - pos < 2) break;
            size_t right = d[pos], up = d[pos + 1];
            pos += 2;
            for (size_t i = 0; i < right + up * w && len < total; i++) RLE_PUT(0);
            x = len % w;
        } else { /* absolute run */
            size_t want = rle4 ? byte / 2 : byte, got = n - pos < want ? n - pos : want;
            for (size_t i = 0; i < got; i++) {
                if (rle4) {
                    RLE_PUT(d[pos + i] >> 4);
                    RLE_PUT(d[pos + i] & 15);
                } else {
                    RLE_PUT(d[pos + i]);
                }
            }
            pos += got;
            if (got < want) break;
            x += byte;
            if (pos % 2) pos++;
        }
    }
#undef RLE_PUT
    return len;
}

int cs_bmp_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    bmp_info b;
    const char *why;
    int r = parse(d, n, &b, &why);
    if (r == 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated BMP (header)", label);
    if (r < 0)
        return cs_fail(
            e, r == -1 && strcmp(why, "bad size") ? CLIPSCORE_EUNSUPPORTED : CLIPSCORE_EFORMAT,
            "%s: %s BMP (%s)", label, strcmp(why, "bad size") ? "unsupported" : "corrupt", why);
    int rc = cs_image_check_limit(label, (int)b.w, (int)b.h, max_pixels, e);
    if (rc) return rc;
    /* The raw layout: Pillow's rawmode for bits and compression. */
    enum { RAW_PAL, RAW_15, RAW_16, RAW_24, RAW_32 } kind;
    int alpha_at = -1, rgb_at[3] = {2, 1, 0}; /* byte of R, G, B (and A) in a 32-bit pixel */
    unsigned bits = b.bits;
    if (b.compression == 1 || b.compression == 2) {
        if (bits > 8)
            return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: RLE BMP with %u bits a pixel", label,
                           bits);
        kind = RAW_PAL;
    } else if (b.compression == 4 || b.compression == 5) {
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: BMP with embedded %s is not supported",
                       label, b.compression == 4 ? "JPEG" : "PNG");
    } else if (b.compression != 0 && b.compression != 3) {
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: BMP compression %u is not supported", label,
                       b.compression);
    } else if (bits == 1 || bits == 4 || bits == 8) {
        kind = RAW_PAL;
    } else if (bits == 16 || bits == 24 || bits == 32) {
        kind = bits == 16 ? RAW_15 : bits == 24 ? RAW_24 : RAW_32;
        if (b.compression == 3) {
            const uint32_t *m = b.mask;
            int ok = 0;
            if (bits == 32) {
                /* (mask of R, G, B, A) -> the bytes of R, G, B, A */
                static const struct {
                    uint32_t m[4];
                    int at[4];
                } layouts[] = {
                    {{0xff0000, 0xff00, 0xff, 0}, {2, 1, 0, -1}},         /* BGRX */
                    {{0xff000000, 0xff0000, 0xff00, 0}, {3, 2, 1, -1}},   /* XBGR */
                    {{0xff000000, 0xff0000, 0xff00, 0xff}, {3, 2, 1, 0}}, /* ABGR */
                    {{0xff, 0xff00, 0xff0000, 0xff000000}, {0, 1, 2, 3}}, /* RGBA */
                    {{0xff0000, 0xff00, 0xff, 0xff000000}, {2, 1, 0, 3}}, /* BGRA */
                    {{0, 0, 0, 0}, {2, 1, 0, 3}},                         /* BGRA */
                };
                for (size_t k = 0; k < sizeof layouts / sizeof layouts[0] && !ok; k++)
                    if (!memcmp(m, layouts[k].m, sizeof layouts[k].m)) {
                        for (int c = 0; c < 3; c++) rgb_at[c] = layouts[k].at[c];
                        alpha_at = layouts[k].at[3];
                        ok = 1;
                    }
            } else if (bits == 24) {
                ok = m[0] == 0xff0000 && m[1] == 0xff00 && m[2] == 0xff;
            } else {
                ok = m[1] == 0x3e0 || m[1] == 0x7e0;
                if (m[0] == 0xf800 && m[1] == 0x7e0 && m[2] == 0x1f)
                    kind = RAW_16;
                else if (!(m[0] == 0x7c00 && m[1] == 0x3e0 && m[2] == 0x1f))
                    ok = 0;
            }
            if (!ok)
                return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                               "%s: BMP bitfields layout is not supported", label);
        }
    } else {
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: %u-bit BMP is not supported", label, bits);
    }

    /* Palette: Pillow reads `colors` entries (a short read is kept short)
     * and completes it with its default palette, the gray ramp. */
    unsigned char pal[256][3];
    int mode_ch = 3, palette_flag = 0;
    if (kind == RAW_PAL) {
        if (b.colors > 256)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt BMP (palette of %u colours)", label,
                           b.colors);
        size_t avail = b.palette_at < n ? (n - b.palette_at) / b.padding : 0;
        size_t have = avail < b.colors ? avail : b.colors;
        int gray = have == b.colors;
        for (unsigned i = 0; i < 256; i++) {
            const unsigned char *p = d + b.palette_at + (size_t)i * b.padding;
            if (i < have) {
                pal[i][0] = p[2], pal[i][1] = p[1], pal[i][2] = p[0];
                unsigned v = b.colors == 2 ? (i ? 255 : 0) : i;
                if (p[0] != v || p[1] != v || p[2] != v) gray = 0;
            } else {
                pal[i][0] = pal[i][1] = pal[i][2] = (unsigned char)i;
            }
        }
        /* "1" (two colours, black and white) and "L" keep one channel;
         * "P" and "1" are resized with nearest neighbour. */
        mode_ch = gray ? 1 : 3;
        palette_flag = !gray || b.colors == 2;
    } else if (alpha_at >= 0) {
        mode_ch = 4;
    }
    if ((rc = cs_image_alloc(img, (int)b.w, (int)b.h, mode_ch, e))) return rc;
    img->palette = palette_flag;
    size_t w = (size_t)b.w, h = (size_t)b.h;
    unsigned char *idx = NULL;
    if (b.compression == 1 || b.compression == 2) {
        if (!(idx = cs_malloc(w, h, e))) {
            cs_image_free(img);
            return CLIPSCORE_ENOMEM;
        }
        size_t got = b.offset < n ? rle_decode(d, n, b.offset, b.compression == 2, w, h, idx) : 0;
        if (got < w * h) {
            free(idx);
            cs_image_free(img);
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: truncated or corrupt BMP (RLE data ends after %zu of %zu pixels)",
                           label, got, w * h);
        }
    }
    size_t stride = ((w * bits + 31) >> 3) & ~(size_t)3, rowbytes = (w * bits + 7) / 8;
    /* The last row needs no padding (Pillow's raw decoder skips it before
     * the next row only). */
    if (!idx &&
        (b.offset > n || n - b.offset < rowbytes || (n - b.offset - rowbytes) / stride < h - 1)) {
        cs_image_free(img);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated BMP (pixel data incomplete)", label);
    }
    for (size_t y = 0; y < h; y++) {
        /* Rows are stored bottom-up unless the height was negative. */
        size_t out_y = b.top_down ? y : h - 1 - y;
        unsigned char *o = img->px + out_y * w * (size_t)mode_ch;
        const unsigned char *s = idx ? idx + y * w : d + b.offset + y * stride;
        for (size_t x = 0; x < w; x++, o += mode_ch) {
            unsigned v;
            switch (kind) {
            case RAW_PAL:
                v = idx         ? s[x]
                    : bits == 8 ? s[x]
                    : bits == 4 ? (s[x / 2] >> (x % 2 ? 0 : 4)) & 15
                                : (s[x / 8] >> (7 - x % 8)) & 1;
                o[0] = pal[v][0];
                if (mode_ch == 3) o[1] = pal[v][1], o[2] = pal[v][2];
                break;
            case RAW_15:
                v = rl16(s + 2 * x);
                o[0] = (unsigned char)(((v >> 10) & 31) * 255 / 31);
                o[1] = (unsigned char)(((v >> 5) & 31) * 255 / 31);
                o[2] = (unsigned char)((v & 31) * 255 / 31);
                break;
            case RAW_16:
                v = rl16(s + 2 * x);
                o[0] = (unsigned char)(((v >> 11) & 31) * 255 / 31);
                o[1] = (unsigned char)(((v >> 5) & 63) * 255 / 63);
                o[2] = (unsigned char)((v & 31) * 255 / 31);
                break;
            case RAW_24:
                o[0] = s[3 * x + 2], o[1] = s[3 * x + 1], o[2] = s[3 * x];
                break;
            default:
                for (int c = 0; c < 3; c++) o[c] = s[4 * x + (size_t)rgb_at[c]];
                if (alpha_at >= 0) o[3] = s[4 * x + (size_t)alpha_at];
                break;
            }
        }
    }
    free(idx);
    return 0;
}
