/* image.h - image decoding (stb_image) and CLIP preprocessing.
 *
 * Covers: reading JPEG/PNG/BMP/GIF(first frame)/PSD/TGA/PNM/HDR files with a
 * pixel limit checked from the header before the image is decoded whole,
 * clear errors for formats stb_image does not read (TIFF, WebP, AVIF, ...),
 * Pillow-compatible antialiased bicubic resize (separable convolution whose
 * support scales with the downscale factor, RGBA premultiplied), centre
 * crop, normalisation; thumbnails for the figures.
 * Leaves out: EXIF orientation (the reference ignores it too). */
#ifndef CLIPSCORE_IMAGE_H
#define CLIPSCORE_IMAGE_H

#include <stdint.h>

#include "util.h"

typedef struct cs_image {
    int w, h;
    int channels;      /* 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA), as stored in the file */
    unsigned char *px; /* w*h*channels bytes, row-major, owned */
    int palette;       /* 1: palette or 1-bit file (Pillow mode "P" or "1"), which the
                          reference resizes with nearest neighbour; 0 otherwise */
} cs_image;

typedef struct cs_preprocess_cfg {
    int size;      /* output resolution R (shorter side resized to R, then centre crop R x R) */
    float mean[3]; /* per-channel mean, on the 0..1 scale */
    float std[3];  /* per-channel std */
} cs_preprocess_cfg;

/* CLIP's defaults: 224, OpenAI mean and std. */
cs_preprocess_cfg cs_preprocess_default(void);

/* Decodes a file. Refuses images with more than max_pixels pixels
 * (CLIPSCORE_ELIMIT) before decoding their data; missing files (EIO), empty,
 * truncated or corrupt files (EFORMAT), and formats not supported
 * (EUNSUPPORTED, naming the format) are errors with the path in the message. */
int cs_image_load(const char *path, int64_t max_pixels, cs_image *img, cs_error *e);
/* Same, from memory; label names the source in messages. */
int cs_image_load_memory(const void *data, size_t len, const char *label, int64_t max_pixels,
                         cs_image *img, cs_error *e);
void cs_image_free(cs_image *img);
/* Which decoder reads JPEGs in this build: "libjpeg" (identical to the
 * reference, when built with CLIPSCORE_HAVE_LIBJPEG) or "stb_image". */
const char *cs_image_jpeg_decoder(void);
/* Allocates an uninitialised w x h image with the given channel count. */
int cs_image_alloc(cs_image *img, int w, int h, int channels, cs_error *e);

/* Pillow-compatible bicubic (antialiased) resize to w x h. Channels are kept;
 * 2 and 4 channel images are resized with premultiplied alpha as Pillow does. */
int cs_image_resize(const cs_image *src, int w, int h, cs_image *dst, cs_error *e);
/* Pillow's nearest-neighbour resize (what it uses for palette images). */
int cs_image_resize_nearest(const cs_image *src, int w, int h, cs_image *dst, cs_error *e);

/* The reference's geometry: the size w x h becomes when its shorter side is
 * resized to `size` (the longer side int(size * long / short)), and the
 * centre-crop offset int(round((total - crop) / 2.0)), Python's round
 * taking halves to the even neighbour. */
void cs_image_resized_size(int w, int h, int size, int *rw, int *rh);
int cs_image_crop_offset(int total, int crop);

/* The reference preprocessing: resize shorter side to R (longer side
 * int(R * long / short)), centre crop R x R (offsets round((size - R) / 2)),
 * drop alpha / expand gray to RGB, scale to 0..1, normalise.
 * Palette images (img->palette) are resized with nearest neighbour, as
 * Pillow does for modes "P" and "1"; a same-size resize is a plain copy.
 * An aspect ratio whose long side would exceed 2^24 is CLIPSCORE_ELIMIT.
 * out: float [3][R][R], channel-major. */
int cs_image_preprocess(const cs_image *img, const cs_preprocess_cfg *cfg, float *out, cs_error *e);

/* An RGB (3-channel) copy fitting in max_side x max_side, aspect kept, for figures:
 * the longer side becomes max_side (small images are enlarged), bicubic as above,
 * transparent parts composited over white. */
int cs_image_thumbnail(const cs_image *img, int max_side, cs_image *thumb, cs_error *e);

#endif
