/* image_pnm.c - Netpbm files (P1-P6) as Pillow 9.4's PpmImagePlugin reads
 * them.
 *
 * Covers: the text header (tokens, comments), plain (ASCII: P1, P2, P3) and
 * binary (P4, P5, P6) pixels; Pillow's modes ("1" for bitmaps, where 1 is
 * black; "L"; "RGB") and its scaling of samples to 8 bits,
 * round(v / maxval * 255) with Python's rounding (halves to even); a file
 * whose pixels run out is truncated, a plain sample above maxval corrupt.
 * 16-bit gray (maxval > 255, Pillow's mode "I", which its RGB conversion
 * saturates) is scaled to 8 bits instead, as the other decoders do
 * (cs_gray16_to_8 of the sample scaled to 16 bits).
 * Leaves out: PAM (P7), PFM and Pillow's own "Py" variants. */
#include "image_formats.h"

#include <math.h>
#include <string.h>

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The header: magic, width, height and (but for bitmaps) maxval. *pos: the
 * first byte of the pixels (after the single whitespace byte that ends the
 * last number). 1: read; 0: more bytes needed; -1: corrupt (*why). */
static int header(const unsigned char *d, size_t n, int *kind, uint32_t v[3], size_t *pos,
                  const char **why) {
    *why = "corrupt PNM header";
    if (n < 3) return 0;
    if (d[0] != 'P' || d[1] < '1' || d[1] > '6' || !is_space(d[2])) return -1;
    *kind = d[1] - '0';
    int count = *kind == 1 || *kind == 4 ? 2 : 3;
    size_t p = 2;
    for (int i = 0; i < count; i++) {
        for (;;) { /* whitespace and comments */
            while (p < n && is_space(d[p])) p++;
            if (p < n && d[p] == '#') {
                while (p < n && d[p] != '\n' && d[p] != '\r') p++;
                continue;
            }
            break;
        }
        if (p >= n) return 0;
        if (d[p] < '0' || d[p] > '9') return -1;
        uint64_t x = 0;
        while (p < n && d[p] >= '0' && d[p] <= '9') {
            x = x * 10 + (uint64_t)(d[p++] - '0');
            if (x > (1u << 30)) {
                *why = "corrupt PNM header (number too large)";
                return -1;
            }
        }
        if (p >= n) return 0;
        if (!is_space(d[p])) return -1;
        v[i] = (uint32_t)x;
    }
    if (count == 2) v[2] = 1;
    *pos = p + 1;
    if (v[0] == 0 || v[1] == 0 || v[2] == 0 || v[2] > 65535) {
        *why = "corrupt PNM header (size or maxval)";
        return -1;
    }
    return 1;
}

int cs_pnm_probe(const unsigned char *d, size_t n, int *w, int *h) {
    int kind;
    uint32_t v[3];
    size_t pos;
    const char *why;
    int r = header(d, n, &kind, v, &pos, &why);
    if (r == 1) {
        *w = (int)v[0];
        *h = (int)v[1];
    }
    return r;
}

/* A sample scaled to 8 bits as Pillow does (gray16: to 16 bits, then ours). */
static unsigned char scale(uint32_t x, uint32_t maxval, int gray16) {
    if (gray16) {
        double v = nearbyint((double)x / maxval * 65535.0);
        return cs_gray16_to_8(v > 65535 ? 65535u : (unsigned)v);
    }
    if (maxval == 255) return (unsigned char)x;
    double v = nearbyint((double)x / maxval * 255.0);
    return (unsigned char)(v > 255 ? 255 : v);
}

int cs_pnm_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    int kind;
    uint32_t v[3];
    size_t pos;
    const char *why;
    int r = header(d, n, &kind, v, &pos, &why);
    if (r == 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNM header", label);
    if (r < 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s", label, why);
    int rc = cs_image_check_limit(label, (int)v[0], (int)v[1], max_pixels, e);
    if (rc) return rc;
    int ch = kind == 3 || kind == 6 ? 3 : 1, bitmap = kind == 1 || kind == 4;
    uint32_t maxval = v[2];
    int gray16 = ch == 1 && maxval > 255;
    if ((rc = cs_image_alloc(img, (int)v[0], (int)v[1], ch, e))) return rc;
    img->palette = bitmap; /* mode "1": nearest-neighbour resize */
    size_t w = v[0], h = v[1], total = w * h * (size_t)ch;
    const char *cut = "%s: truncated PNM (pixel data incomplete)";
    if (kind == 4) {
        size_t row = (w + 7) / 8;
        if (pos > n || (n - pos) / row < h) {
            cs_image_free(img);
            return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
        }
        for (size_t y = 0; y < h; y++)
            for (size_t x = 0; x < w; x++)
                img->px[y * w + x] = (d[pos + y * row + x / 8] >> (7 - x % 8)) & 1 ? 0 : 255;
    } else if (kind >= 5) {
        size_t bytes = maxval > 255 ? 2 : 1;
        if (pos > n || (n - pos) / bytes < total) {
            cs_image_free(img);
            return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
        }
        for (size_t i = 0; i < total; i++) {
            const unsigned char *p = d + pos + i * bytes;
            uint32_t x = bytes == 2 ? (uint32_t)p[0] << 8 | p[1] : p[0];
            /* Pillow's raw path (maxval 255) keeps bytes; its scaling
             * clamps samples above maxval. */
            img->px[i] = scale(x > maxval ? maxval : x, maxval, gray16);
        }
    } else {
        /* Plain: decimal samples split by whitespace and comments; a
         * bitmap's are single digits, spaces optional. */
        pos--; /* the whitespace byte may be the only separator */
        for (size_t i = 0; i < total; i++) {
            for (;;) {
                while (pos < n && is_space(d[pos])) pos++;
                if (pos < n && d[pos] == '#') {
                    while (pos < n && d[pos] != '\n' && d[pos] != '\r') pos++;
                    continue;
                }
                break;
            }
            if (pos >= n) {
                cs_image_free(img);
                return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
            }
            if (bitmap) {
                if (d[pos] != '0' && d[pos] != '1') {
                    cs_image_free(img);
                    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNM (bitmap digit)", label);
                }
                img->px[i] = d[pos++] == '1' ? 0 : 255;
                continue;
            }
            uint32_t x = 0;
            int digits = 0;
            while (pos < n && d[pos] >= '0' && d[pos] <= '9' && digits < 10)
                x = x * 10 + (uint32_t)(d[pos++] - '0'), digits++;
            if (!digits || x > maxval || (pos < n && !is_space(d[pos]) && d[pos] != '#')) {
                cs_image_free(img);
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: corrupt PNM (sample %zu is not a number up to %u)", label, i,
                               (unsigned)maxval);
            }
            img->px[i] = scale(x, maxval, gray16);
        }
    }
    return 0;
}
