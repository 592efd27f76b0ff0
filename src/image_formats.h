/* image_formats.h - internal interface between image.c and the decoders that
 * live in their own files: WebP (image_webp.c, libwebp), TIFF (image_tiff.c,
 * libtiff), JPEG 2000 (image_jp2.c, libopenjp2), ICO (image_ico.c),
 * HEIF/AVIF (image_heif.c, libheif), PSD (image_psd.c), BMP
 * (image_bmp.c), PNM (image_pnm.c) and GIF (image_gif.c).
 * Covers: each format's header probe (size before decoding, for the pixel
 * limit and the decode budget) and its decoder into a cs_image with Pillow
 * 9.4's mode (channels, palette flag).
 * Leaves out: sniffing, reading files and budgets (image.c does those). */
#ifndef CLIPSCORE_IMAGE_FORMATS_H
#define CLIPSCORE_IMAGE_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"

/* Header probes on the first n bytes of a file: 1 when the image size is
 * known (*w x *h, what the decoder will produce), 0 when more bytes are
 * needed, -1 when the header is corrupt. *ncomp (may be NULL): samples a
 * pixel as stored, for cost estimates (0: unknown). */
int cs_webp_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp);
int cs_tiff_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp);
int cs_jp2_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp);
/* The entry Pillow picks (the largest): its size from the embedded PNG or
 * DIB header when those bytes are there, else from the directory. *end: the
 * byte after the furthest entry (the file needs no more). */
int cs_ico_probe(const unsigned char *d, size_t n, int *w, int *h, int64_t *end);
/* The largest image-spatial-extent property (ispe) in the meta box: a bound
 * on the primary image's coded size (the decoder checks the limit on the
 * primary image's size after its transformations, from the meta box). */
int cs_heif_probe(const unsigned char *d, size_t n, int *w, int *h);

/* Decoders of a whole file in memory. The header's size has passed the
 * pixel limit; the decoders check again what their library reports before
 * it allocates pixels. Errors: EFORMAT (truncated, corrupt), EUNSUPPORTED
 * (a variant not read), ELIMIT, ENOMEM, each naming label. */
int cs_webp_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e);
int cs_tiff_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e);
int cs_jp2_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);
/* The largest entry, decoded as PNG or as a DIB through cs_image_load_memory. */
int cs_ico_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);
int cs_heif_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e);
/* BMP (image_bmp.c) as Pillow reads it. The probe: 1 with the size, 0 when
 * more bytes are needed, -1 for a header Pillow refuses. */
int cs_bmp_probe(const unsigned char *d, size_t n, int *w, int *h);
int cs_bmp_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);
/* PNM, P1-P6 (image_pnm.c), as Pillow reads it; the probe as cs_bmp_probe. */
int cs_pnm_probe(const unsigned char *d, size_t n, int *w, int *h);
int cs_pnm_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);
/* The first frame of a GIF (image_gif.c, clipscore's own reader), as Pillow
 * opens it. The probe: 1 with the canvas size (the logical screen grown to
 * hold the first frame) when the bytes reach that frame's data, else 0
 * (cs_gif_decode says why). */
int cs_gif_probe(const unsigned char *d, size_t n, int *w, int *h);
int cs_gif_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);
/* PSD (image_psd.c) as Pillow reads it; returns 1, with nothing decoded,
 * for a 16-bit three-channel RGB file, which stb_image reads instead. */
int cs_psd_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e);

/* Shared by the decoders: Pillow keeps 16-bit gray as mode "I" and saturates
 * it to white when converting to 8 bits; clipscore scales it instead,
 * v * 255 / 65535 rounded. */
static inline unsigned char cs_gray16_to_8(unsigned v) {
    return (unsigned char)((v * 255u + 32767u) / 65535u);
}

/* Pillow 9.4's cmyk2rgb (Convert.c): each of R, G, B is
 * nk - nk * c / 255 (rounded as its MULDIV255 does), nk = 255 - k. */
static inline void cs_cmyk_to_rgb(const unsigned char *cmyk, unsigned char *rgb) {
    unsigned nk = 255u - cmyk[3];
    for (int c = 0; c < 3; c++) {
        unsigned t = cmyk[c] * nk + 128u;
        rgb[c] = (unsigned char)(nk - (((t >> 8) + t) >> 8));
    }
}

/* Fails with ELIMIT when w x h exceeds max_pixels (> 0). */
int cs_image_check_limit(const char *label, int w, int h, int64_t max_pixels, cs_error *e);

#endif
