/* image_webp.c - WebP through libwebp's animation decoder, as Pillow 9.4
 * reads it (WebPAnimDecoder for still and animated files alike).
 * Covers: the header probe (canvas size from WebPGetFeatures), the first
 * frame composited on its canvas, mode RGB or RGBA as the file's alpha
 * flag says.
 * Leaves out: later frames, ICC profiles and EXIF (the reference ignores
 * both). */
#include "image_formats.h"

#include <stdlib.h>
#include <string.h>

#include <webp/decode.h>
#include <webp/demux.h>

int cs_webp_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp) {
    WebPBitstreamFeatures f;
    VP8StatusCode s = WebPGetFeatures(d, n, &f);
    if (s == VP8_STATUS_NOT_ENOUGH_DATA) return 0;
    if (s != VP8_STATUS_OK || f.width < 1 || f.height < 1) return -1;
    *w = f.width;
    *h = f.height;
    if (ncomp) *ncomp = f.has_alpha ? 4 : 3;
    return 1;
}

int cs_webp_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    WebPBitstreamFeatures f;
    if (WebPGetFeatures(d, n, &f) != VP8_STATUS_OK)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt WebP header", label);
    int rc = cs_image_check_limit(label, f.width, f.height, max_pixels, e);
    if (rc) return rc;
    WebPAnimDecoderOptions opt;
    if (!WebPAnimDecoderOptionsInit(&opt))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: libwebp version mismatch", label);
    /* Pillow asks for straight (not premultiplied) RGBA and names the mode
     * RGB when the file has no alpha. One thread: decode workers already
     * run side by side. */
    opt.color_mode = MODE_RGBA;
    opt.use_threads = 0;
    WebPData data = {d, n};
    /* The demuxer behind it refuses incomplete files (no partial parse). */
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &opt);
    if (!dec) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt WebP", label);
    WebPAnimInfo info;
    uint8_t *frame = NULL;
    int ts = 0;
    if (!WebPAnimDecoderGetInfo(dec, &info) || (int)info.canvas_width != f.width ||
        (int)info.canvas_height != f.height) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt WebP (canvas size)", label);
    } else if (!WebPAnimDecoderGetNext(dec, &frame, &ts) || !frame) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt WebP data", label);
    } else {
        int ch = f.has_alpha ? 4 : 3;
        rc = cs_image_alloc(img, f.width, f.height, ch, e);
        if (!rc) {
            size_t px = (size_t)f.width * (size_t)f.height;
            if (ch == 4)
                memcpy(img->px, frame, px * 4);
            else
                for (size_t i = 0; i < px; i++) memcpy(img->px + i * 3, frame + i * 4, 3);
        }
    }
    WebPAnimDecoderDelete(dec); /* owns frame */
    return rc;
}
