/* image_ico.c - Windows icons (ICO) as Pillow 9.4 reads them: the entry it
 * picks (largest area, then deepest colour, then the last in the file),
 * decoded as the PNG it may hold (mode as that PNG's) or as a DIB (bitmap
 * without file header, twice its height for the AND mask), which becomes
 * RGBA: alpha from the fourth byte of 32-bit entries, from the AND mask
 * (1 = transparent) for the others.
 * Covers: the header probe (the chosen entry's size, from the embedded
 * header when present), entry bounds, the DIB decoded by image.c's BMP
 * reader through a BMP file header made here.
 * Leaves out: the other entries, CUR cursors (type 2: not sniffed), DIBs
 * with OS/2 core headers or negative heights (EUNSUPPORTED). */
#include "image_formats.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static unsigned le16(const unsigned char *p) {
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct ico_entry {
    int w, h;     /* from the directory (0 means 256) */
    unsigned bpp; /* from the directory */
    uint32_t size, offset;
} ico_entry;

/* Pillow's colour depth of an entry: bpp, else ceil(log2(colours)) when
 * that is not 0, else 256. */
static unsigned color_depth(const unsigned char *t) {
    unsigned bpp = le16(t + 6), colors = t[2];
    if (bpp) return bpp;
    unsigned bits = 0;
    while ((1u << bits) < colors) bits++;
    return bits ? bits : 256;
}

/* The entry Pillow opens: it sorts by depth, then (stably) by area, and
 * reverses, so the largest area wins, then the deepest, then the later. */
static int pick(const unsigned char *d, size_t n, ico_entry *out, int64_t *end) {
    if (n < 6) return 0;
    unsigned count = le16(d + 4);
    if (count == 0) return -1;
    if (6 + 16 * (size_t)count > n) return 0;
    int64_t best_area = -1;
    unsigned best_depth = 0;
    *end = 0;
    for (unsigned i = 0; i < count; i++) {
        const unsigned char *t = d + 6 + 16 * (size_t)i;
        int w = t[0] ? t[0] : 256, h = t[1] ? t[1] : 256;
        int64_t area = (int64_t)w * h;
        unsigned depth = color_depth(t);
        uint32_t size = le32(t + 8), offset = le32(t + 12);
        if ((int64_t)offset + size > *end) *end = (int64_t)offset + size;
        if (area > best_area || (area == best_area && depth >= best_depth)) {
            best_area = area;
            best_depth = depth;
            out->w = w;
            out->h = h;
            out->bpp = le16(t + 6);
            out->size = size;
            out->offset = offset;
        }
    }
    return 1;
}

int cs_ico_probe(const unsigned char *d, size_t n, int *w, int *h, int64_t *end) {
    ico_entry en;
    int r = pick(d, n, &en, end);
    if (r != 1) return r;
    *w = en.w;
    *h = en.h;
    /* The embedded header's size is what gets decoded. */
    size_t o = en.offset;
    if (o < n && n - o >= 24 && !memcmp(d + o, "\x89PNG\r\n\x1a\n", 8)) {
        uint32_t pw = be32(d + o + 16), ph = be32(d + o + 20);
        if (pw == 0 || ph == 0 || pw > INT_MAX || ph > INT_MAX) return -1;
        *w = (int)pw;
        *h = (int)ph;
    } else if (o < n && n - o >= 12) {
        int32_t dw = (int32_t)le32(d + o + 4), dh = (int32_t)le32(d + o + 8);
        if (dw <= 0 || dh < 2) return -1;
        *w = dw;
        *h = dh / 2;
    }
    return 1;
}

/* A DIB entry: a BMP file header is put in front (with the height halved)
 * so that image.c's BMP reader decodes the colour bitmap; alpha is added
 * as Pillow does. */
static int decode_dib(const unsigned char *p, size_t len, unsigned dir_bpp, const char *label,
                      int64_t max_pixels, cs_image *img, cs_error *e) {
    if (len < 40 || le32(p) < 40 || le32(p) > len)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: ICO entry with an unknown bitmap header",
                       label);
    uint32_t hs = le32(p), compression = le32(p + 16), used = le32(p + 32);
    int32_t w = (int32_t)le32(p + 4), h2 = (int32_t)le32(p + 8);
    unsigned bpp = le16(p + 14);
    if (w <= 0 || h2 < 2 || w > (1 << 16) || h2 > (1 << 17))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt ICO entry (size %dx%d)", label, w, h2);
    int h = h2 / 2;
    int rc = cs_image_check_limit(label, w, h, max_pixels, e);
    if (rc) return rc;
    uint64_t palette = bpp <= 8 ? 4ull * (used && used <= 256 ? used : 1u << bpp) : 0;
    if (compression == 3 && hs == 40) palette += 12; /* the bit masks */
    uint64_t pixels = hs + palette;
    if (pixels > len) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated ICO entry", label);
    size_t blen = 14 + len;
    unsigned char *bmp = cs_malloc(blen, 1, e);
    if (!bmp) return CLIPSCORE_ENOMEM;
    memcpy(bmp + 14, p, len);
    bmp[0] = 'B';
    bmp[1] = 'M';
    for (int i = 0; i < 4; i++) {
        bmp[2 + i] = (unsigned char)(blen >> (8 * i));
        bmp[6 + i] = 0;
        bmp[10 + i] = (unsigned char)((14 + pixels) >> (8 * i));
        bmp[14 + 8 + i] = (unsigned char)((uint32_t)h >> (8 * i));
    }
    cs_image rgb;
    rc = cs_image_load_memory(bmp, blen, label, max_pixels, &rgb, e);
    free(bmp);
    if (rc) return rc;
    if (rgb.w != w || rgb.h != h) {
        cs_image_free(&rgb);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt ICO entry", label);
    }
    /* Alpha: 32-bit entries (by the directory's depth, as Pillow checks)
     * carry it in each pixel's fourth byte; the others in the AND mask
     * after the colour bitmap, 1 bit a pixel, rows padded to 32 bits. Both
     * are stored bottom-up. */
    size_t stride = dir_bpp == 32 ? (size_t)w * 4 : ((size_t)w + 31) / 32 * 4;
    size_t need = stride * (size_t)h;
    const unsigned char *mask = dir_bpp == 32 ? p + pixels : p + len - need;
    if ((dir_bpp == 32 && len - pixels < need) || (dir_bpp != 32 && len < need)) {
        cs_image_free(&rgb);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated ICO entry (alpha)", label);
    }
    if ((rc = cs_image_alloc(img, w, h, 4, e))) {
        cs_image_free(&rgb);
        return rc;
    }
    for (int y = 0; y < h; y++) {
        const unsigned char *m = mask + (size_t)(h - 1 - y) * stride;
        for (int x = 0; x < w; x++) {
            const unsigned char *s = rgb.px + ((size_t)y * w + x) * rgb.channels;
            unsigned char *o = img->px + ((size_t)y * w + x) * 4;
            for (int c = 0; c < 3; c++) o[c] = s[rgb.channels >= 3 ? c : 0];
            o[3] = dir_bpp == 32 ? m[4 * x + 3] : (m[x / 8] >> (7 - x % 8) & 1) ? 0 : 255;
        }
    }
    cs_image_free(&rgb);
    return 0;
}

int cs_ico_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    ico_entry en;
    int64_t end;
    int r = pick(d, n, &en, &end);
    if (r != 1)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s ICO directory", label,
                       r == 0 ? "truncated" : "corrupt");
    if (en.offset < 6 || (uint64_t)en.offset + en.size > n || en.size < 8)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt ICO (entry at %u, %u bytes)",
                       label, (unsigned)en.offset, (unsigned)en.size);
    const unsigned char *p = d + en.offset;
    if (!memcmp(p, "\x89PNG\r\n\x1a\n", 8))
        return cs_image_load_memory(p, en.size, label, max_pixels, img, e);
    return decode_dib(p, en.size, en.bpp, label, max_pixels, img, e);
}
