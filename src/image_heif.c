/* image_heif.c - HEIF/HEIC and AVIF through libheif, beyond the reference
 * (Pillow 9.4 reads neither): the primary image, decoded to 8-bit RGB (RGBA
 * when it has an alpha plane) with its transformations (rotation, mirror,
 * crop) applied, as libheif's heif-convert writes it to PNG.
 * Covers: the header probe (the largest 'ispe' property in the meta box,
 * an upper bound on the primary image's size), the limit checked again on
 * the primary image before decoding, libheif's errors as row errors.
 * Leaves out: other images in the file (thumbnails, bursts, depth maps),
 * more than 8 bits a sample (libheif reduces them; heif-convert writes
 * 16-bit PNGs, which read back with their high byte), colour profiles. */
#include "image_formats.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <libheif/heif.h>

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Walks the boxes in [pos, end) (end <= n): descends into meta, iprp and
 * ipco and notes the largest ispe. 1: meta walked; 0: the top level ran out
 * of bytes before meta ended (more needed); -1: corrupt. */
static int walk(const unsigned char *d, size_t pos, size_t end, int depth, uint64_t *best,
                uint32_t *bw, uint32_t *bh) {
    int need = depth == 0 ? 0 : -1; /* a short box: more bytes at the top, corrupt inside */
    while (pos < end) {
        if (end - pos < 8) return need;
        uint64_t len = be32(d + pos), hdr = 8;
        if (len == 1) {
            if (end - pos < 16) return need;
            len = (uint64_t)be32(d + pos + 8) << 32 | be32(d + pos + 12);
            hdr = 16;
        } else if (len == 0) {
            len = end - pos; /* to the end of the file */
        }
        if (len < hdr) return -1;
        if (len > end - pos) return need;
        const unsigned char *type = d + pos + 4;
        int meta = !memcmp(type, "meta", 4);
        if (depth < 4 && (meta || !memcmp(type, "iprp", 4) || !memcmp(type, "ipco", 4))) {
            size_t inner = pos + (size_t)hdr + (meta ? 4 : 0); /* meta is a full box */
            int r = walk(d, inner, pos + (size_t)len, depth + 1, best, bw, bh);
            if (r != 1) return r;
            if (depth == 0 && meta) return *best ? 1 : -1;
        } else if (!memcmp(type, "ispe", 4) && len >= hdr + 12) {
            uint32_t w = be32(d + pos + hdr + 4), h = be32(d + pos + hdr + 8);
            if ((uint64_t)w * h > *best) {
                *best = (uint64_t)w * h;
                *bw = w;
                *bh = h;
            }
        }
        pos += (size_t)len;
    }
    return depth == 0 ? 0 : 1;
}

int cs_heif_probe(const unsigned char *d, size_t n, int *w, int *h) {
    uint64_t best = 0;
    uint32_t bw = 0, bh = 0;
    int r = walk(d, 0, n, 0, &best, &bw, &bh);
    if (r != 1) return r;
    if (bw == 0 || bh == 0 || bw > INT_MAX || bh > INT_MAX) return -1;
    *w = (int)bw;
    *h = (int)bh;
    return 1;
}

/* libheif's messages may hold line breaks: one line for a row error. */
static const char *one_line(const char *msg, char *out, size_t cap) {
    size_t k = 0;
    for (const char *p = msg ? msg : ""; *p && k + 1 < cap; p++)
        if (*p != '\n' && *p != '\r')
            out[k++] = *p;
        else if (k && out[k - 1] != ' ')
            out[k++] = ' ';
    while (k && out[k - 1] == ' ') k--;
    out[k] = '\0';
    return out;
}

int cs_heif_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *handle = NULL;
    struct heif_image *im = NULL;
    int rc = 0;
    char line[256];
    if (!ctx) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory opening HEIF", label);
    struct heif_error err = heif_context_read_from_memory_without_copy(ctx, d, n, NULL);
    if (err.code == heif_error_Ok) err = heif_context_get_primary_image_handle(ctx, &handle);
    if (err.code != heif_error_Ok) {
        rc = cs_fail(e,
                     err.code == heif_error_Unsupported_feature ? CLIPSCORE_EUNSUPPORTED
                                                                : CLIPSCORE_EFORMAT,
                     "%s: truncated or corrupt HEIF/AVIF (%s)", label,
                     one_line(err.message, line, sizeof line));
        goto done;
    }
    int w = heif_image_handle_get_width(handle), h = heif_image_handle_get_height(handle);
    if (w < 1 || h < 1) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt HEIF/AVIF (size %dx%d)", label, w, h);
        goto done;
    }
    if ((rc = cs_image_check_limit(label, w, h, max_pixels, e))) goto done;
    int alpha = heif_image_handle_has_alpha_channel(handle);
    err =
        heif_decode_image(handle, &im, heif_colorspace_RGB,
                          alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, NULL);
    if (err.code != heif_error_Ok) {
        rc = cs_fail(e,
                     err.code == heif_error_Unsupported_feature ||
                             err.code == heif_error_Unsupported_filetype
                         ? CLIPSCORE_EUNSUPPORTED
                     : err.code == heif_error_Memory_allocation_error ? CLIPSCORE_ENOMEM
                                                                      : CLIPSCORE_EFORMAT,
                     "%s: truncated or corrupt HEIF/AVIF data (%s)", label,
                     one_line(err.message, line, sizeof line));
        goto done;
    }
    int stride = 0, ch = alpha ? 4 : 3;
    const uint8_t *p = heif_image_get_plane_readonly(im, heif_channel_interleaved, &stride);
    int iw = heif_image_get_width(im, heif_channel_interleaved);
    int ih = heif_image_get_height(im, heif_channel_interleaved);
    if (!p || iw < 1 || ih < 1 || stride < iw * ch ||
        heif_image_get_bits_per_pixel_range(im, heif_channel_interleaved) != 8) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt HEIF/AVIF (decoded plane)", label);
        goto done;
    }
    /* Transformations may change the size (rotation, clean aperture). */
    if ((rc = cs_image_check_limit(label, iw, ih, max_pixels, e))) goto done;
    if ((rc = cs_image_alloc(img, iw, ih, ch, e))) goto done;
    for (int y = 0; y < ih; y++)
        memcpy(img->px + (size_t)y * iw * ch, p + (size_t)y * stride, (size_t)iw * ch);
done:
    if (im) heif_image_release(im);
    if (handle) heif_image_handle_release(handle);
    heif_context_free(ctx);
    return rc;
}
