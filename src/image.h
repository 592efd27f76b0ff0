/* image.h - image decoding and CLIP preprocessing.
 *
 * Covers: reading JPEG/PNG/TGA/HDR files (libjpeg, stb_image), BMP/PSD/PNM/GIF (first frame)
 * (readers of its own, as Pillow reads them) and WebP, TIFF, JPEG 2000,
 * ICO, HEIF/AVIF (image_formats.h), with a pixel limit checked from the header before the image is
 * decoded (and, but for TIFF and HEIF, read) whole, an optional decode memory budget shared by
 * decode threads, clear errors for formats not read (JPEG XL, BigTIFF, SVG, ...), Pillow-compatible
 * antialiased bicubic resize (separable convolution whose support scales with the downscale factor,
 * RGBA premultiplied), centre crop, normalisation; thumbnails for the figures. Leaves out: EXIF
 * orientation (the reference ignores it too; a TIFF's own Orientation tag is applied, as Pillow
 * does). */
#ifndef CLIPSCORE_IMAGE_H
#define CLIPSCORE_IMAGE_H

#include <stdint.h>

#include "decode_budget.h"
#include "util.h"

typedef struct cs_image {
    int w, h;
    int channels;             /* 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA or CMYK: cmyk) */
    unsigned char *px;        /* w*h*channels bytes, row-major, owned */
    int palette;              /* 1: palette or 1-bit file (Pillow mode "P" or "1"), which the
                                 reference resizes with nearest neighbour; 0 otherwise */
    cs_decode_budget *budget; /* where budget_bytes go back on cs_image_free (NULL: none) */
    int64_t budget_bytes;     /* reserved for px and what preprocessing it needs */
    int cmyk;                 /* 1: the 4 channels are C, M, Y, K (Pillow mode "CMYK": JPEG, TIFF),
                                 resized as they are and converted to RGB after, as the reference
                                 does; 0 otherwise (4 channels are RGBA) */
    unsigned char *pal;       /* Pillow mode "PA" (TIFF): 256 RGB entries (768 bytes, owned) and
                                 2 channels, palette index and alpha, which the reference resizes
                                 bicubic as plain numbers (neither nearest nor premultiplied);
                                 NULL otherwise. Pillow 9.4 gives the resized image its default
                                 palette, a gray ramp: only an image left at its size is looked
                                 up in its own */
    int ref_w, ref_h;         /* the size the reference's transform sizes its resize and crop
                                 from, when it is not w x h (0, 0: it is): Pillow reports a
                                 TIFF's size before load() turns it by its Orientation, and
                                 torchvision's Resize reads that size, then resizes the turned
                                 pixels to it (orientations 5-8 come out stretched) */
} cs_image;

typedef struct cs_preprocess_cfg {
    int size;      /* output resolution R (shorter side resized to R, then centre crop R x R) */
    float mean[3]; /* per-channel mean, on the 0..1 scale */
    float std[3];  /* per-channel std */
} cs_preprocess_cfg;

/* CLIP's defaults: 224, OpenAI mean and std. */
cs_preprocess_cfg cs_preprocess_default(void);

/* Decodes a file. Refuses images with more than max_pixels pixels
 * (CLIPSCORE_ELIMIT) before reading or decoding their data; missing files
 * and anything but a regular file (a folder, FIFO, device or socket: EIO,
 * without waiting on it), empty, truncated or corrupt files (EFORMAT), and
 * formats not supported (EUNSUPPORTED, naming the format) are errors with
 * the path in the message. Only the first 64 KiB are read before the format
 * and size are known (more only while a JPEG's frame header or a PNM/HDR
 * text header has not ended: up to 16 MiB / 1 MiB); a file longer than an
 * image of that format and size can need (uncompressed size plus a quarter,
 * or 16 bytes a pixel for JPEG, plus 32 MiB of metadata) is refused
 * (EFORMAT) without being read, except a GIF, of which only that much is
 * read (its first frame lies within it; later frames are not decoded).
 * TIFF and HEIF files may keep their directory or meta box after the pixel
 * data and hold more images than the one decoded: they are read whole (up
 * to 2 GiB), and the limit is checked before decoding (for HEIF on the
 * primary image's size as libheif reads it from the meta box). */
int cs_image_load(const char *path, int64_t max_pixels, cs_image *img, cs_error *e);
/* cs_image_load with a decode memory budget (NULL: none, as cs_image_load).
 * Once the header is read, and before the rest of the file is, reserves an
 * estimate of the decode's peak memory and waits (first come, first served)
 * until it fits. The estimate is the file's bytes plus what the decoder
 * allocates, measured with getrusage on stb_image 2.27 and libjpeg-turbo:
 *   PNG: the inflated rows + the pixels as stored (+ a converted copy when
 *        stb_image converts: palette, tRNS, 16 bits), e.g. 9000x9000 RGB:
 *        243 MB of pixels, peak 487 MB (= 2.0x); RGBA 649 MB, palette
 *        405 MB (1.7x of its 243 MB RGB result); the estimate matches these
 *        within 1%;
 *   JPEG: the pixels, + 2 bytes a pixel per component when progressive
 *        (6000x4000: 72 MB of pixels, peak 83 MB baseline, 154 MB
 *        progressive, file included), + a plane per component when
 *        stb_image decodes it (CMYK, or builds without libjpeg);
 *   HDR 16, BMP/TGA/PSD 8 bytes a pixel (stb_image's buffers,
 *        from its source; a bound for clipscore's own BMP and PSD readers
 *        too), PNM 3 (its own reader: the pixels), GIF 4 (its own reader:
 *        the canvas's indices, then RGB);
 *   WebP 12, HEIF 12, ICO 16, TIFF 4 + 2 a sample, JPEG 2000 4 + 8 a
 *        component bytes a pixel (the libraries' buffers as documented,
 *        not measured);
 *   and 1 MiB for the decoder's state and row buffers (a 640x480 JPEG:
 *        0.9 MB of pixels, peak 1.6 MB with its 143 KB file).
 * An image estimated above the whole budget waits until nothing else is
 * reserved and then decodes alone, so every image under max_pixels is still
 * decoded. After the decode the reservation shrinks to what the pixels and
 * their preprocessing need (w*h*channels, twice that with alpha for the
 * premultiplied copy cs_image_preprocess and cs_image_thumbnail make, plus
 * 1 KiB a row and 1 MiB for resampling buffers) and is held by img until
 * cs_image_free. A canceled budget makes a waiting or later call fail with
 * CLIPSCORE_ECANCELED ("<path>: canceled while waiting for decode memory");
 * a call already past its wait finishes its decode. */
int cs_image_load_budgeted(const char *path, int64_t max_pixels, cs_decode_budget *budget,
                           cs_image *img, cs_error *e);
/* cs_image_load_budgeted that may decode a large JPEG smaller (the
 * opt-in `--decode fast`): with min_side > 0, libjpeg decodes at 1/2, 1/4
 * or 1/8 of the size (its DCT scaling, cs_image_jpeg_scale), the largest
 * reduction that leaves the shorter side at least min_side pixels, and the
 * budget reserves for that smaller output. img then has the reduced size.
 * Other formats, and JPEGs stb_image decodes (CMYK), are decoded whole.
 * min_side 0 is cs_image_load_budgeted. */
int cs_image_load_scaled(const char *path, int64_t max_pixels, cs_decode_budget *budget,
                         int min_side, cs_image *img, cs_error *e);
/* The denominator (1, 2, 4 or 8) cs_image_load_scaled decodes a w x h JPEG
 * at for min_side: the largest whose ceil(shorter side / d) >= min_side;
 * 1 when min_side <= 0 or the build has no libjpeg. */
int cs_image_jpeg_scale(int w, int h, int min_side);
/* Same, from memory (no budget); label names the source in messages. */
int cs_image_load_memory(const void *data, size_t len, const char *label, int64_t max_pixels,
                         cs_image *img, cs_error *e);
/* From memory with a decode memory budget and cs_image_load_scaled's
 * min_side (the data itself being the caller's: a tar member, say). The
 * reservation is the full-size decode's even when a JPEG is decoded
 * smaller. */
int cs_image_load_memory_scaled(const void *data, size_t len, const char *label, int64_t max_pixels,
                                cs_decode_budget *budget, int min_side, cs_image *img, cs_error *e);
/* Frees the pixels and gives back their budget reservation, if any. */
void cs_image_free(cs_image *img);
/* Which decoder reads JPEGs in this build: "libjpeg" (identical to the
 * reference, when built with CLIPSCORE_HAVE_LIBJPEG) or "stb_image". */
const char *cs_image_jpeg_decoder(void);
/* Allocates an uninitialised w x h image with the given channel count. */
int cs_image_alloc(cs_image *img, int w, int h, int channels, cs_error *e);

/* Pillow-compatible bicubic (antialiased) resize to w x h. Channels are kept;
 * 2 and 4 channel images are resized with premultiplied alpha as Pillow does
 * (but "PA", img->pal, whose index and alpha are resized as they are; dst
 * gets Pillow's gray ramp for a palette, or a copy at the same size). */
int cs_image_resize(const cs_image *src, int w, int h, cs_image *dst, cs_error *e);
/* Pillow's nearest-neighbour resize (what it uses for palette images; a
 * "PA" palette is copied). */
int cs_image_resize_nearest(const cs_image *src, int w, int h, cs_image *dst, cs_error *e);

/* The reference's geometry: the size w x h becomes when its shorter side is
 * resized to `size` (the longer side int(size * long / short)), and the
 * centre-crop offset int(round((total - crop) / 2.0)), Python's round
 * taking halves to the even neighbour. */
void cs_image_resized_size(int w, int h, int size, int *rw, int *rh);
int cs_image_crop_offset(int total, int crop);

/* The reference preprocessing: resize shorter side to R (longer side
 * int(R * long / short)), centre crop R x R (offsets round((size - R) / 2)),
 * drop alpha / expand gray to RGB / convert CMYK (Pillow's cmyk2rgb, after
 * the resize as there; "PA" as gray levels of its resized index, as
 * Pillow 9.4's resize leaves it, or looked up when the resize is a copy),
 * scale to 0..1, normalise.
 * Palette images (img->palette) are resized with nearest neighbour, as
 * Pillow does for modes "P" and "1"; a same-size resize is a plain copy.
 * An aspect ratio whose long side would exceed 2^24 is CLIPSCORE_ELIMIT.
 * out: float [3][R][R], channel-major. */
int cs_image_preprocess(const cs_image *img, const cs_preprocess_cfg *cfg, float *out, cs_error *e);

/* An RGB (3-channel) copy fitting in max_side x max_side, aspect kept, for figures:
 * the longer side becomes max_side (small images are enlarged), bicubic as above,
 * transparent parts composited over white, CMYK converted ("PA" resized
 * nearest and looked up in its palette: the figure shows its colours). */
int cs_image_thumbnail(const cs_image *img, int max_side, cs_image *thumb, cs_error *e);

#endif
