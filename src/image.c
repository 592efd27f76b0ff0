/* image.c - image decoding and the reference (OpenAI CLIP) preprocessing.
 *
 * Covers: reading a file in two steps (its header first: format, size, the
 * pixel limit and a decode memory reservation are settled before the rest
 * is read, and the rest is read only as far as such an image can need; only
 * regular files are read at all), telling its format from the magic bytes
 * (and naming formats not read; WebP, TIFF, JPEG 2000, ICO, HEIF/AVIF,
 * PSD, BMP, PNM and GIF go to the decoders of image_formats.h), structural
 * checks that stb_image does not make (a truncated JPEG/PNG/TGA/HDR is
 * an error, not an image padded with grey), decoding PNG/TGA/HDR with
 * stb_image (TGAs stored right to left mirrored, as Pillow does), and a
 * resampler that reproduces Pillow 9.4's
 * ImagingResample (antialiased bicubic, 8-bit fixed point, premultiplied
 * alpha; CMYK resized as it is, then converted; a TIFF's "PA" resized as
 * index and alpha numbers, the index then a gray level as in Pillow 9.4)
 * and its nearest-neighbour
 * scaling for palette images, so that the
 * preprocessed tensor matches torchvision's Resize/CenterCrop/ToTensor/
 * Normalize byte for byte on PNGs.
 * JPEGs go through libjpeg instead when the build provides it (see below).
 * Leaves out: EXIF orientation and colour profiles (the reference ignores
 * both), animation (first frame only), Pillow's handling of 16-bit gray PNGs
 * (mode "I", which it saturates to white; here they are scaled to 8 bits,
 * v * 255 / 65535 rounded), and measuring memory (decode costs are
 * estimates, see decode_cost()). CMYK JPEGs stay CMYK through the resize, as
 * in the reference, when libjpeg decodes them (stb_image converts first). */
#include "image.h"
#include "image_formats.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>
#include <zlib.h>

/* Optional: JPEGs through libjpeg(-turbo), the decoder Pillow uses, which
 * makes them identical to the reference (stb_image's IDCT and colour
 * conversion round differently, by a level or two on ~1% of pixels) and is
 * faster. The build enables it by defining CLIPSCORE_HAVE_LIBJPEG and
 * linking libjpeg; without it stb_image decodes JPEGs too. */
#if defined(CLIPSCORE_HAVE_LIBJPEG)
#include <setjmp.h>
#include <stddef.h>

#include <jpeglib.h>
#endif

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static unsigned be16(const unsigned char *p) {
    return (unsigned)p[0] << 8 | p[1];
}
static unsigned le16(const unsigned char *p) {
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

int cs_image_alloc(cs_image *img, int w, int h, int channels, cs_error *e) {
    memset(img, 0, sizeof *img);
    if (w < 1 || h < 1 || channels < 1 || channels > 4)
        return cs_fail(e, CLIPSCORE_EARG, "image: invalid size %dx%d with %d channels", w, h,
                       channels);
    img->px = cs_malloc((size_t)w * (size_t)h, (size_t)channels, e);
    if (!img->px) return CLIPSCORE_ENOMEM;
    img->w = w;
    img->h = h;
    img->channels = channels;
    return 0;
}

void cs_image_free(cs_image *img) {
    if (!img) return;
    free(img->px);
    free(img->pal);
    if (img->budget) cs_decode_budget_release(img->budget, img->budget_bytes);
    memset(img, 0, sizeof *img);
}

static int valid_image(const cs_image *img) {
    return img && img->px && img->w > 0 && img->h > 0 && img->channels >= 1 && img->channels <= 4;
}

/* ------------------------------------------------------------------------ */
/* Format detection                                                          */

typedef enum {
    FMT_UNKNOWN = 0,
    FMT_PNG,
    FMT_JPEG,
    FMT_GIF,
    FMT_BMP,
    FMT_PSD,
    FMT_HDR,
    FMT_PNM,
    FMT_TGA,
    /* Decoded in their own files (image_formats.h). */
    FMT_WEBP,
    FMT_TIFF,
    FMT_JP2,
    FMT_ICO,
    FMT_HEIF
} img_format;

static const char *format_name(img_format f) {
    switch (f) {
    case FMT_PNG:
        return "PNG";
    case FMT_JPEG:
        return "JPEG";
    case FMT_GIF:
        return "GIF";
    case FMT_BMP:
        return "BMP";
    case FMT_PSD:
        return "PSD";
    case FMT_HDR:
        return "Radiance HDR";
    case FMT_PNM:
        return "PNM";
    case FMT_TGA:
        return "TGA";
    case FMT_WEBP:
        return "WebP";
    case FMT_TIFF:
        return "TIFF";
    case FMT_JP2:
        return "JPEG 2000";
    case FMT_ICO:
        return "ICO";
    case FMT_HEIF:
        return "HEIF/AVIF";
    default:
        return "image";
    }
}

static int starts(const unsigned char *d, size_t n, const void *magic, size_t m) {
    return n >= m && memcmp(d, magic, m) == 0;
}

/* Finds needle in the first `limit` bytes of d (ASCII, case-insensitive). */
static int contains_ci(const unsigned char *d, size_t n, size_t limit, const char *needle) {
    size_t m = strlen(needle);
    if (n > limit) n = limit;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m && (d[i + j] | 0x20) == (unsigned char)(needle[j] | 0x20)) j++;
        if (j == m) return 1;
    }
    return 0;
}

/* ISO base media files (AVIF, HEIF, MP4, ...): which brand the ftyp box names. */
static const char *isobmff_name(const unsigned char *d, size_t n) {
    uint32_t box = be32(d);
    size_t end = box >= 16 && box <= n ? box : (n < 64 ? n : 64);
    static const char *const heif[] = {"heic", "heix", "hevc", "hevx", "heim",
                                       "heis", "hevm", "hevs", "mif1", "msf1"};
    for (size_t i = 8; i + 4 <= end; i += 4)
        if (!memcmp(d + i, "avif", 4) || !memcmp(d + i, "avis", 4)) return "AVIF";
    for (size_t i = 8; i + 4 <= end; i += 4)
        for (size_t k = 0; k < sizeof heif / sizeof heif[0]; k++)
            if (!memcmp(d + i, heif[k], 4)) return "HEIF/HEIC";
    if (!memcmp(d + 8, "crx ", 4)) return "Canon CR3 raw";
    return "ISO media (MP4/QuickTime)";
}

/* Recognises the formats read (returned) and a list of common ones that
 * are not (FMT_UNKNOWN with *unsupported naming it). Text files get
 * *text set instead: they are not images at all. */
static img_format sniff(const unsigned char *d, size_t n, const char **unsupported,
                        const char **text) {
    *unsupported = NULL;
    *text = NULL;
    if (starts(d, n, "\x89PNG\r\n\x1a\n", 8)) return FMT_PNG;
    if (starts(d, n, "\xff\xd8\xff", 3)) return FMT_JPEG;
    if (starts(d, n, "GIF87a", 6) || starts(d, n, "GIF89a", 6)) return FMT_GIF;
    if (starts(d, n, "BM", 2) && n >= 18) return FMT_BMP;
    if (starts(d, n, "8BPS\x00\x01", 6)) return FMT_PSD;
    if (starts(d, n, "#?RADIANCE\n", 11) || starts(d, n, "#?RGBE\n", 7)) return FMT_HDR;
    /* Any "P1".."P6" start: image_pnm.c reads it (stb_image's PNM reader,
     * whose integer parser overflows on long numbers, is never asked). */
    if (n >= 3 && d[0] == 'P' && d[1] >= '1' && d[1] <= '6') return FMT_PNM;

    if (starts(d, n, "II*\0", 4) || starts(d, n, "MM\0*", 4)) return FMT_TIFF;
    if (starts(d, n, "RIFF", 4) && n >= 12 && !memcmp(d + 8, "WEBP", 4)) return FMT_WEBP;
    if (starts(d, n, "\0\0\0\x0cjP  \r\n\x87\n", 12) || starts(d, n, "\xff\x4f\xff\x51", 4))
        return FMT_JP2;
    if (starts(d, n, "\0\0\1\0", 4) && n >= 22 && le16(d + 4) > 0) return FMT_ICO;

    const char *u = NULL;
    if (n >= 12 && !memcmp(d + 4, "ftyp", 4)) {
        u = isobmff_name(d, n);
        if (!strcmp(u, "AVIF") || !strcmp(u, "HEIF/HEIC")) return FMT_HEIF;
    } else if (starts(d, n, "II+\0", 4) || starts(d, n, "MM\0+", 4))
        u = "BigTIFF";
    else if (starts(d, n, "\xff\x0a", 2) || starts(d, n, "\0\0\0\x0cJXL \r\n\x87\n", 12))
        u = "JPEG XL";
    else if (starts(d, n, "8BPS\x00\x02", 6))
        u = "PSB (large Photoshop)";
    else if (starts(d, n, "%PDF", 4))
        u = "PDF";
    else if (starts(d, n, "%!PS", 4) || starts(d, n, "\xc5\xd0\xd3\xc6", 4))
        u = "PostScript/EPS";
    else if (starts(d, n, "icns", 4))
        u = "ICNS";
    else if (starts(d, n, "DDS ", 4))
        u = "DDS";
    else if (starts(d, n, "\x76\x2f\x31\x01", 4))
        u = "OpenEXR";
    else if (starts(d, n, "qoif", 4))
        u = "QOI";
    else if (starts(d, n, "BPG\xfb", 4))
        u = "BPG";
    else if (starts(d, n, "gimp xcf", 8))
        u = "GIMP XCF";
    else if (starts(d, n, "\x8aMNG", 4))
        u = "MNG";
    else if (starts(d, n, "\x8bJNG", 4))
        u = "JNG";
    else if (starts(d, n, "SIMPLE  =", 9))
        u = "FITS";
    else if (starts(d, n, "/* XPM */", 9))
        u = "XPM";
    else if (starts(d, n, "#define ", 8) && contains_ci(d, n, 256, "_width "))
        u = "XBM";
    else if (starts(d, n, "P7\n", 3))
        u = "PAM";
    else if (starts(d, n, "PF\n", 3) || starts(d, n, "Pf\n", 3))
        u = "PFM";
    if (u) {
        *unsupported = u;
        return FMT_UNKNOWN;
    }

    /* Text: SVG, an HTML page saved in place of an image, or anything else
     * printable. Judged on the first bytes only. */
    size_t probe = n < 256 ? n : 256, printable = 0;
    for (size_t i = 0; i < probe; i++)
        if ((d[i] >= 0x20 && d[i] < 0x7f) || d[i] == '\n' || d[i] == '\r' || d[i] == '\t' ||
            d[i] >= 0x80)
            printable++;
    if (printable == probe) {
        if (contains_ci(d, n, 4096, "<svg"))
            *unsupported = "SVG";
        else if (contains_ci(d, n, 4096, "<html") || contains_ci(d, n, 4096, "<!doctype html"))
            *text = "an HTML page";
        else if (probe >= 16)
            *text = "a text file";
        if (*unsupported || *text) return FMT_UNKNOWN;
    }
    /* TGA has no magic number: image.c asks stb_image whether it parses. */
    return FMT_UNKNOWN;
}

/* ------------------------------------------------------------------------ */
/* Structural checks (truncation) and what Pillow would make of the file     */

typedef struct file_facts {
    int w, h;     /* from the header where we parse it ourselves, else 0 */
    int req_comp; /* channels to ask stb_image for (0: as stored) */
    int palette;  /* Pillow opens it as mode "P" or "1" */
    int gray16;   /* 16-bit gray PNG: scaled to 8 bits here (cs_gray16_to_8) */
} file_facts;

/* A chunk's name for a message: its letters, or its bytes in hex (a corrupt
 * file's bytes are no text for a message). */
static void png_chunk_name(const unsigned char *type, char name[16]) {
    int letters = 1;
    for (int k = 0; k < 4; k++) letters &= (type[k] | 0x20) >= 'a' && (type[k] | 0x20) <= 'z';
    if (letters)
        snprintf(name, 16, "%.4s", (const char *)type);
    else
        snprintf(name, 16, "0x%02x%02x%02x%02x", type[0], type[1], type[2], type[3]);
}

/* Pillow's rule for a chunk name (its is_cid: four "word" characters). */
static int png_word_name(const unsigned char *type) {
    for (int k = 0; k < 4; k++) {
        int c = type[k];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* The APNG state Pillow 9.4 keeps while it reads the chunks. */
typedef struct apng_state {
    int frames_set;  /* a valid acTL was read (its frame count is Pillow's im_n_frames) */
    uint32_t frames; /* that count */
    int64_t seq;     /* the last fcTL/fdAT sequence number, -1 before the first */
    int bbox;        /* an fcTL came before the first IDAT */
    int animated;    /* decided at the first IDAT: more than one frame */
} apng_state;

/* What Pillow 9.4's PNG chunk handlers refuse in a chunk's body
 * (PngImagePlugin's chunk_*): the APNG chunks' lengths and sequence
 * numbers, and ancillary chunks too short for the fields it unpacks or
 * naming a compression method other than deflate. The reference cannot
 * open such a file, so neither does clipscore, although stb_image would
 * skip the chunk. w, h: the IHDR size; color: its colour type. */
static int png_chunk_pillow(const unsigned char *type, const unsigned char *b, uint32_t len,
                            uint32_t w, uint32_t h, int color, apng_state *st, const char *label,
                            cs_error *e) {
    const char *why = NULL;
    if (!memcmp(type, "acTL", 4)) {
        if (len < 8)
            why = "APNG with a truncated acTL chunk";
        else if (st->frames_set)
            st->frames_set = 0; /* a second acTL: no longer an APNG */
        else if (be32(b) != 0 && be32(b) <= 0x80000000u) {
            st->frames_set = 1;
            st->frames = be32(b);
        }
    } else if (!memcmp(type, "fcTL", 4)) {
        if (len < 26) {
            why = "APNG with a truncated fcTL chunk";
        } else if ((int64_t)be32(b) != st->seq + 1) {
            why = "APNG with frame sequence errors";
        } else {
            st->seq = be32(b);
            if ((uint64_t)be32(b + 12) + be32(b + 4) > w ||
                (uint64_t)be32(b + 16) + be32(b + 8) > h)
                why = "APNG with a frame outside the image";
        }
    } else if (!memcmp(type, "fdAT", 4)) {
        if (len < 4)
            why = "APNG with a truncated fdAT chunk";
        else if (st->seq < 0 || (int64_t)be32(b) != st->seq + 1)
            why = "APNG with frame sequence errors";
        else
            st->seq = be32(b);
    } else if (!memcmp(type, "pHYs", 4) && len < 9) {
        why = "truncated pHYs chunk";
    } else if (!memcmp(type, "gAMA", 4) && len < 4) {
        why = "truncated gAMA chunk";
    } else if (!memcmp(type, "sRGB", 4) && len < 1) {
        why = "truncated sRGB chunk";
    } else if (!memcmp(type, "tRNS", 4) && ((color == 0 && len < 2) || (color == 2 && len < 6))) {
        why = "truncated tRNS chunk";
    } else if (!memcmp(type, "iCCP", 4)) {
        /* Pillow takes the byte at the keyword's NUL as the compression
         * method, so only a chunk without that NUL fails there. */
        if (len == 0 || !memchr(b, 0, len)) why = "iCCP chunk without a profile name";
    } else if (!memcmp(type, "zTXt", 4)) {
        /* keyword, NUL, compression method (0: deflate), text */
        const unsigned char *nul = len ? memchr(b, 0, len) : NULL;
        if (nul && (size_t)(nul - b) + 1 < len && nul[1] != 0)
            why = "unknown compression method in a zTXt chunk";
    }
    if (!why) return 0;
    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (%s)", label, why);
}

/* Walks the PNG chunks up to IEND; notes the IHDR facts. Checks what
 * Pillow 9.4 checks when it opens and loads a PNG: the CRC of every chunk
 * before the first IDAT (not after: it reads those without checking), chunk
 * names, and the chunk bodies png_chunk_pillow looks at, up to IEND or, in
 * an animated PNG, up to the next frame's fcTL. */
static int check_png(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    size_t pos = 8;
    int seen_ihdr = 0, trns = 0, color = 0, depth = 0, seen_idat = 0, pillow_done = 0;
    apng_state apng = {.seq = -1};
    for (;;) {
        if (pos + 8 > n) {
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNG (no IEND chunk at the end)",
                           label);
        }
        uint32_t len = be32(d + pos);
        const unsigned char *type = d + pos + 4;
        if (len > 0x7fffffffu)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (bad chunk length)", label);
        if ((uint64_t)pos + 12 + len > n) {
            char name[16];
            png_chunk_name(type, name);
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNG (ends inside a %s chunk)",
                           label, name);
        }
        const unsigned char *body = d + pos + 8;
        if (!png_word_name(type) && !seen_idat) {
            char name[16];
            png_chunk_name(type, name);
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (chunk named %s)", label, name);
        }
        if (!png_word_name(type) && seen_idat) pillow_done = 1; /* Pillow stops reading there */
        int image_data = !memcmp(type, "IDAT", 4) || (!memcmp(type, "fdAT", 4) && !seen_idat);
        if (!seen_idat && !image_data &&
            (uint32_t)crc32(crc32(0L, type, 4), body, (uInt)len) != be32(body + len)) {
            char name[16];
            png_chunk_name(type, name);
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (bad CRC in its %s chunk)", label,
                           name);
        }
        if (seen_idat && apng.animated && !memcmp(type, "fcTL", 4)) pillow_done = 1;
        if (seen_ihdr && !pillow_done && memcmp(type, "IDAT", 4) && memcmp(type, "IEND", 4)) {
            int rc = png_chunk_pillow(type, body, len, (uint32_t)f->w, (uint32_t)f->h, color, &apng,
                                      label, e);
            if (rc) return rc;
        }
        if (image_data && !seen_idat) {
            /* Pillow's frame count: the acTL's, plus the default image when
             * no fcTL came first (it is then no frame of the animation). */
            uint64_t frames = apng.frames_set ? apng.frames : 1;
            if (apng.frames_set && !apng.bbox) frames++;
            apng.animated = frames > 1;
            seen_idat = 1;
        }
        if (!memcmp(type, "fcTL", 4) && !seen_idat) apng.bbox = 1;
        if (!seen_ihdr) {
            if (memcmp(type, "IHDR", 4) != 0 || len != 13)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (first chunk is not IHDR)",
                               label);
            uint32_t w = be32(body), h = be32(body + 4);
            if (w == 0 || h == 0 || w > INT_MAX || h > INT_MAX)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (size %ux%u)", label,
                               (unsigned)w, (unsigned)h);
            if (body[10] != 0) /* only deflate exists (stb_image refuses others too) */
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: corrupt PNG (unknown compression method %d)", label, body[10]);
            f->w = (int)w;
            f->h = (int)h;
            depth = body[8];
            color = body[9];
            seen_ihdr = 1;
        } else if (!memcmp(type, "tRNS", 4)) {
            trns = 1;
        } else if (!memcmp(type, "IEND", 4)) {
            break;
        }
        pos += 12 + (size_t)len;
    }
    /* Pillow keeps the colour type's own bands: a tRNS chunk on a gray or RGB
     * image stays metadata (mode "L"/"RGB"), which is why the alpha channel
     * stb_image would add for it is not asked for. */
    switch (color) {
    case 0:
        f->req_comp = 1;
        break;
    case 2:
        f->req_comp = 3;
        break;
    case 3:
        f->req_comp = trns ? 4 : 3;
        break;
    case 4:
        f->req_comp = 2;
        break;
    case 6:
        f->req_comp = 4;
        break;
    default:
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (colour type %d)", label, color);
    }
    f->palette = color == 3 || (color == 0 && depth == 1);
    f->gray16 = color == 0 && depth == 16;
    return 0;
}

/* What Pillow 9.4's JPEG opener makes of an APPn segment (JpegImagePlugin
 * APP), for the segments that make it refuse the file: a JFIF or Adobe
 * segment too short for the version it reads unguarded, and an EXIF
 * segment whose TIFF header is cut short. Pillow parses the first EXIF
 * segment after each APPn marker while no JFIF segment (units 1) has given
 * it a resolution, to find one there; its TIFF reader then needs the
 * whole 8-byte header of a TIFF prefix (a little-endian BigTIFF prefix
 * always fails: it reads the offset past those 8 bytes). A header that is
 * no TIFF prefix, or an absent one, it shrugs off (72 dpi). Deeper EXIF
 * faults that also stop it (an empty resolution tag) are not followed. */
typedef struct jpeg_app_state {
    int have_dpi;
    const unsigned char *exif; /* the first "Exif\0" segment's bytes */
    size_t exif_len;
} jpeg_app_state;

static int jpeg_app(jpeg_app_state *st, int marker, const unsigned char *s, size_t len,
                    const char *label, cs_error *e) {
    if (marker == 0xe0 && len >= 4 && !memcmp(s, "JFIF", 4)) {
        if (len < 7)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (JFIF segment of %zu bytes)",
                           label, len);
        if (len >= 12 && s[7] == 1) st->have_dpi = 1;
    } else if (marker == 0xe1 && len >= 5 && !memcmp(s, "Exif", 5)) {
        if (!st->exif) {
            st->exif = s;
            st->exif_len = len;
        }
    } else if (marker == 0xee && len >= 5 && !memcmp(s, "Adobe", 5) && len < 7) {
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (Adobe segment of %zu bytes)", label,
                       len);
    }
    if (st->have_dpi || !st->exif) return 0;
    const unsigned char *t = st->exif;
    size_t tn = st->exif_len;
    if (tn >= 6 && t[5] == 0) { /* "Exif\0\0" is dropped; else the whole segment is read */
        t += 6;
        tn -= 6;
    }
    static const char prefixes[6][4] = {"MM\0*", "II*\0", "MM*\0", "II\0*", "MM\0+", "II+\0"};
    int tiff = 0;
    for (int i = 0; tn >= 4 && i < 6; i++) tiff |= !memcmp(t, prefixes[i], 4);
    if (tiff && tn < 8)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: corrupt JPEG (EXIF segment cut short: %zu bytes of its 8-byte TIFF "
                       "header)",
                       label, tn);
    if (tiff && t[2] == '+')
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: corrupt JPEG (EXIF segment with a BigTIFF header)", label);
    st->have_dpi = 1; /* Pillow found a resolution or settled on 72 dpi */
    return 0;
}

/* Walks the JPEG markers through every scan up to EOI. Also names the
 * JPEG variants stb_image does not decode, and refuses what Pillow's
 * opener refuses in the segments before the first scan (jpeg_app). */
static int check_jpeg(const unsigned char *d, size_t n, const char *label, cs_error *e) {
    size_t pos = 2;
    int seen_sof = 0, seen_sos = 0;
    jpeg_app_state app = {0};
    for (;;) {
        /* Skip anything that is not a marker (libjpeg tolerates it too). */
        while (pos < n && d[pos] != 0xff) pos++;
        while (pos < n && d[pos] == 0xff) pos++;
        if (pos >= n) break;
        int m = d[pos++];
        if (m == 0xd9) return 0; /* EOI */
        if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7)) continue;
        if (pos + 2 > n) break;
        size_t len = (size_t)d[pos] << 8 | d[pos + 1];
        if (len < 2)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (bad segment length)", label);
        if (pos + len > n) break;
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            const char *what = NULL;
            if (m == 0xc3 || m == 0xc7 || m == 0xcb || m == 0xcf)
                what = "lossless JPEG";
            else if (m >= 0xc5 && m <= 0xc7)
                what = "hierarchical JPEG";
            else if (m >= 0xcd)
                what = "hierarchical JPEG";
#if !defined(CLIPSCORE_HAVE_LIBJPEG)
            else if (m >= 0xc9)
                what = "arithmetic-coded JPEG";
#endif
            if (what)
                return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: %s is not supported", label, what);
            if (len >= 3 && d[pos + 2] != 8)
                return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: %d-bit JPEG is not supported", label,
                               d[pos + 2]);
            seen_sof = 1;
        }
        if (m == 0xc4) {
            /* stb_image 2.27 trusts the code counts of a Huffman table and
             * writes past its 256-entry arrays when they sum higher, so the
             * tables are checked here first. */
            size_t p = pos + 2, end = pos + len;
            while (p < end) {
                if (end - p < 17 || d[p] >> 4 > 1 || (d[p] & 15) > 3)
                    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (bad Huffman table)",
                                   label);
                size_t sum = 0;
                for (int i = 1; i <= 16; i++) sum += d[p + i];
                if (sum > 256 || end - p - 17 < sum)
                    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (bad Huffman table)",
                                   label);
                p += 17 + sum;
            }
        }
        if (m >= 0xe0 && m <= 0xef && !seen_sos) {
            int rc = jpeg_app(&app, m, d + pos + 2, len - 2, label, e);
            if (rc) return rc;
        }
        pos += len;
        if (m == 0xda) {
            seen_sos = 1;
            if (!seen_sof)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG (scan before frame header)",
                               label);
            /* Entropy-coded data: runs until a marker other than a stuffed
             * zero or a restart marker. */
            for (;;) {
                const unsigned char *p = memchr(d + pos, 0xff, n - pos);
                if (!p) {
                    pos = n;
                    break;
                }
                pos = (size_t)(p - d);
                if (pos + 1 >= n) {
                    pos = n;
                    break;
                }
                int x = d[pos + 1];
                if (x == 0x00 || (x >= 0xd0 && x <= 0xd7))
                    pos += 2;
                else if (x == 0xff)
                    pos++;
                else
                    break;
            }
        }
    }
    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated JPEG (no end-of-image marker)", label);
}

/* A GIF's canvas (the screen grown to hold the first frame: a
 * "decompression bomb" claims a huge one), for the pixel limit; the
 * verdicts on its structure are cs_gif_decode's. */
static int check_gif(const unsigned char *d, size_t n, file_facts *f) {
    if (cs_gif_probe(d, n, &f->w, &f->h) != 1) f->w = f->h = 0;
    return 0;
}

/* TGA: colour-mapped files are mode "P" in Pillow; uncompressed ones must
 * hold all their pixels, and so must the packets of RLE ones (stb_image
 * reads zeros past the end: a few bytes could claim 9000x9000 pixels). */
static int check_tga(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    if (n < 18) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated TGA (header)", label);
    int type = d[2];
    f->palette = type == 1 || type == 9;
    uint64_t pos = 18 + (uint64_t)d[0];
    if (d[1]) pos += (uint64_t)le16(d + 5) * ((d[7] + 7u) / 8u);
    uint64_t pixels = (uint64_t)le16(d + 12) * le16(d + 14), bpp = (d[16] + 7u) / 8u;
    if (type == 1 || type == 2 || type == 3) {
        if (pos + pixels * bpp > n)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated TGA (pixel data incomplete)",
                           label);
    } else if ((type == 9 || type == 10 || type == 11) && bpp > 0) {
        /* Each packet takes at least one byte, so this walk is bounded by
         * the file's length, whatever size the header claims. */
        uint64_t got = 0;
        while (got < pixels) {
            if (pos >= n)
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: truncated TGA (RLE data ends after %llu of %llu pixels)", label,
                               (unsigned long long)got, (unsigned long long)pixels);
            unsigned c = d[pos++];
            uint64_t count = (c & 127u) + 1, bytes = c & 128u ? bpp : count * bpp;
            if (n - pos < bytes)
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: truncated TGA (RLE data ends after %llu of %llu pixels)", label,
                               (unsigned long long)got, (unsigned long long)pixels);
            pos += bytes;
            got += count;
        }
    }
    return 0;
}

/* PSD: the composite image after three length-prefixed sections, raw or
 * PackBits with a table of row byte counts. stb_image reads at most the
 * first four channels. Odd headers are left to stb_image's messages. */
static int check_psd(const unsigned char *d, size_t n, const char *label, cs_error *e) {
    if (n < 26) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (header)", label);
    uint64_t channels = be16(d + 12), h = be32(d + 14), w = be32(d + 18), depth = be16(d + 22);
    /* stb_image refuses sides over 2^20 itself; the cap keeps the sums
     * below in range. */
    if (channels < 1 || channels > 16 || (depth != 8 && depth != 16) || w == 0 || h == 0 ||
        w > (1u << 24) || h > (1u << 24))
        return 0;
    uint64_t pos = 26;
    for (int section = 0; section < 3; section++) { /* colour mode, resources, layers */
        if (n - pos < 4 || n - pos - 4 < be32(d + pos))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (before the image data)",
                           label);
        pos += 4 + (uint64_t)be32(d + pos);
    }
    if (n - pos < 2)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (before the image data)", label);
    unsigned compression = be16(d + pos);
    pos += 2;
    uint64_t used = channels < 4 ? channels : 4, need;
    if (compression == 0) {
        need = used * w * h * (depth / 8);
    } else if (compression == 1) {
        uint64_t table = 2 * h * channels;
        if (n - pos < table)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (row table incomplete)", label);
        need = table;
        for (uint64_t r = 0; r < used * h; r++) need += be16(d + pos + 2 * r);
    } else {
        return 0;
    }
    if (n - pos < need)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (pixel data incomplete)", label);
    return 0;
}

/* Radiance HDR: flat RGBE or run-length scanlines. A truncated RLE file is
 * worse than grey here: stb_image 2.27 reads zero counts past the end and
 * loops forever. Headers stb_image would refuse are left to it. */
static int check_hdr(const unsigned char *d, size_t n, const char *label, cs_error *e) {
    size_t pos = 0;
    while (pos + 1 < n && !(d[pos] == '\n' && d[pos + 1] == '\n')) pos++;
    if (pos + 1 >= n) return 0;
    pos += 2;
    /* The resolution line, "-Y h +X w". */
    char line[64];
    size_t k = 0;
    while (pos < n && d[pos] != '\n' && k + 1 < sizeof line) line[k++] = (char)d[pos++];
    line[k] = '\0';
    if (pos >= n || d[pos] != '\n') return 0;
    pos++;
    long h = 0, w = 0;
    char *s = line;
    if (strncmp(s, "-Y ", 3)) return 0;
    h = strtol(s + 3, &s, 10);
    while (*s == ' ') s++;
    if (strncmp(s, "+X ", 3)) return 0;
    w = strtol(s + 3, NULL, 10);
    if (w < 1 || h < 1 || w > (1 << 20) || h > (1 << 20)) return 0;
    const char *cut = "%s: truncated HDR (pixel data incomplete)";
    uint64_t flat = 4 * (uint64_t)w * (uint64_t)h;
    if (w < 8 || w >= 32768) return n - pos < flat ? cs_fail(e, CLIPSCORE_EFORMAT, cut, label) : 0;
    for (long j = 0; j < h; j++) {
        if (n - pos < 4) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
        if (d[pos] != 2 || d[pos + 1] != 2 || (d[pos + 2] & 0x80)) {
            /* Not run-length encoded: stb_image reads the whole image flat. */
            if (j > 0) return 0;
            return n - pos < flat ? cs_fail(e, CLIPSCORE_EFORMAT, cut, label) : 0;
        }
        if (((long)d[pos + 2] << 8 | d[pos + 3]) != w) return 0;
        pos += 4;
        for (int c = 0; c < 4; c++) {
            /* Every packet takes a byte or more: bounded by the file. */
            for (long got = 0; got < w;) {
                if (pos >= n) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
                unsigned count = d[pos++];
                size_t bytes = count > 128 ? 1 : count;
                if (count > 128) count -= 128;
                if (count > (unsigned long)(w - got)) return 0; /* stb_image: "corrupt" */
                if (n - pos < bytes) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
                pos += bytes;
                got += count;
            }
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* JPEG through libjpeg (optional)                                           */

const char *cs_image_jpeg_decoder(void) {
#if defined(CLIPSCORE_HAVE_LIBJPEG)
    return "libjpeg";
#else
    return "stb_image";
#endif
}

int cs_image_jpeg_scale(int w, int h, int min_side) {
#if defined(CLIPSCORE_HAVE_LIBJPEG)
    /* libjpeg's scaled size is ceil(side / d) (jdiv_round_up). */
    int64_t side = w < h ? w : h;
    for (int d = 8; min_side > 0 && d > 1; d /= 2)
        if ((side + d - 1) / d >= min_side) return d;
#else
    (void)w, (void)h, (void)min_side;
#endif
    return 1;
}

#if defined(CLIPSCORE_HAVE_LIBJPEG)
/* All state lives behind one pointer, so nothing a longjmp skips over is
 * held in a local variable. */
typedef struct jpeg_job {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr err;
    jmp_buf on_error;
    char msg[JMSG_LENGTH_MAX];
    unsigned char *px;
    int w, h, channels;
    int min_side; /* > 0: decode at 1/2, 1/4 or 1/8 while the shorter side stays this long */
} jpeg_job;

static void jpeg_job_error(j_common_ptr c) {
    jpeg_job *job = (jpeg_job *)(void *)((char *)c->err - offsetof(jpeg_job, err));
    c->err->format_message(c, job->msg);
    longjmp(job->on_error, 1);
}

/* Warnings (corrupt but decodable data) are ignored, as Pillow does. */
static void jpeg_job_message(j_common_ptr c, int level) {
    (void)c;
    (void)level;
}

/* 0: decoded; 1: a libjpeg error (job->msg); 2: colour layout left to
 * stb_image (neither 1, 3 nor 4 components); 3: out of memory. */
static int jpeg_job_run(jpeg_job *job, const unsigned char *d, size_t n) {
    if (setjmp(job->on_error)) return 1;
    jpeg_create_decompress(&job->cinfo);
    jpeg_mem_src(&job->cinfo, d, (unsigned long)n);
    jpeg_read_header(&job->cinfo, TRUE);
    /* Pillow's defaults: islow IDCT, fancy upsampling; gray stays gray. */
    if (job->cinfo.num_components == 1)
        job->cinfo.out_color_space = JCS_GRAYSCALE;
    else if (job->cinfo.num_components == 3)
        job->cinfo.out_color_space = JCS_RGB;
    else if (job->cinfo.num_components == 4) /* CMYK, or YCCK made CMYK */
        job->cinfo.out_color_space = JCS_CMYK;
    else
        return 2;
    job->cinfo.dct_method = JDCT_ISLOW;
    job->cinfo.do_fancy_upsampling = TRUE;
    /* --decode fast: libjpeg's DCT scaling (what Pillow's draft() asks
     * for) skips most of the IDCT and colour work of a large photo. */
    job->cinfo.scale_num = 1;
    job->cinfo.scale_denom = (unsigned)cs_image_jpeg_scale(
        (int)job->cinfo.image_width, (int)job->cinfo.image_height, job->min_side);
    jpeg_start_decompress(&job->cinfo);
    job->w = (int)job->cinfo.output_width;
    job->h = (int)job->cinfo.output_height;
    job->channels = job->cinfo.output_components;
    size_t row = (size_t)job->w * (size_t)job->channels;
    job->px = malloc(row * (size_t)job->h);
    if (!job->px) return 3;
    while (job->cinfo.output_scanline < job->cinfo.output_height) {
        JSAMPROW r = job->px + (size_t)job->cinfo.output_scanline * row;
        jpeg_read_scanlines(&job->cinfo, &r, 1);
    }
    jpeg_finish_decompress(&job->cinfo);
    return 0;
}

/* Returns 0 (decoded into img), a negative status, or 1 when stb_image
 * should decode the file instead. */
static int decode_libjpeg(const unsigned char *d, size_t n, const char *label, int min_side,
                          cs_image *img, cs_error *e) {
    jpeg_job *job = cs_calloc(1, sizeof *job, e);
    if (!job) return CLIPSCORE_ENOMEM;
    job->min_side = min_side;
    job->cinfo.err = jpeg_std_error(&job->err);
    job->err.error_exit = jpeg_job_error;
    job->err.emit_message = jpeg_job_message;
    int r = jpeg_job_run(job, d, n);
    jpeg_destroy_decompress(&job->cinfo);
    int rc = 0;
    if (r == 0) {
        img->w = job->w;
        img->h = job->h;
        img->channels = job->channels;
        img->px = job->px;
        if (job->channels == 4) {
            /* Pillow's "CMYK;I": Adobe's inverted CMYK assumed for every
             * file; kept as CMYK until after the resize. */
            size_t bytes = (size_t)job->w * (size_t)job->h * 4;
            for (size_t i = 0; i < bytes; i++) img->px[i] = (unsigned char)(255 - img->px[i]);
            img->cmyk = 1;
        }
    } else {
        free(job->px);
        if (r == 1)
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG data (%s)", label, job->msg);
        else if (r == 2)
            rc = 1;
        else
            rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory decoding JPEG", label);
    }
    free(job);
    return rc;
}
#endif

/* ------------------------------------------------------------------------ */
/* What the header tells: format, size, bounds and costs                     */

/* Sniffs the format; unsupported formats and text files are errors. TGA,
 * which has no magic number, is recognised when stb_image parses its header
 * (its other header parsers stop at their magic), loosely, so check_tga()
 * matters. */
static int sniff_or_fail(const unsigned char *d, size_t n, const char *label, img_format *fmt,
                         cs_error *e) {
    const char *unsupported, *text;
    *fmt = sniff(d, n, &unsupported, &text);
    if (unsupported)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: %s images are not supported (use PNG, JPEG, WebP, TIFF, JPEG "
                       "2000, BMP, GIF, ICO, HEIC/AVIF, TGA, PSD, PNM or HDR)",
                       label, unsupported);
    if (text) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s, not an image", label, text);
    if (*fmt == FMT_UNKNOWN) {
        /* Without a magic number the only format left that stb_image reads
         * is TGA; the TGA header test is loose, so check_tga() matters.
         * stbi_info tries every format, and some of its parsers go past a
         * magic the sniffer rejected (JPEG after 0xFF fill bytes, "P5" with
         * no space) into code that check_jpeg()/check_pnm() guard: so only a
         * TGA colour-map type (0 or 1, byte 1) gets that far; it rules out
         * every other format's magic. */
        int w, h, c;
        if (n < 3 || d[1] > 1 || !stbi_info_from_memory(d, (int)n, &w, &h, &c))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: unknown image format (not PNG, JPEG, ...)",
                           label);
        *fmt = FMT_TGA;
    }
    return 0;
}

/* The IHDR of a PNG. 1: read; 0: more bytes needed; -1: not a valid IHDR.
 * *trns is 0 only when these bytes show the first IDAT with no tRNS before
 * it (stb_image then adds no alpha channel). */
static int png_header(const unsigned char *d, size_t n, int *w, int *h, int *depth, int *color,
                      int *trns) {
    if (n < 33) return 0;
    if (be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0) return -1;
    uint32_t pw = be32(d + 16), ph = be32(d + 20);
    if (pw == 0 || ph == 0 || pw > INT_MAX || ph > INT_MAX) return -1;
    *w = (int)pw;
    *h = (int)ph;
    *depth = d[24];
    *color = d[25];
    *trns = 1;
    for (size_t pos = 8; pos + 8 <= n;) {
        uint32_t len = be32(d + pos);
        if (!memcmp(d + pos + 4, "tRNS", 4) || len > 0x7fffffffu) break;
        if (!memcmp(d + pos + 4, "IDAT", 4)) {
            *trns = 0;
            break;
        }
        pos += 12 + (size_t)len;
    }
    return 1;
}

/* Walks JPEG markers (as check_jpeg does) to the frame header. 1: found;
 * 0: more bytes needed; -1: corrupt (a scan or the end before any frame).
 * *progressive: the frame is progressive (whole-image coefficients). */
static int jpeg_frame(const unsigned char *d, size_t n, int *w, int *h, int *ncomp,
                      int *progressive) {
    size_t pos = 2;
    for (;;) {
        while (pos < n && d[pos] != 0xff) pos++;
        while (pos < n && d[pos] == 0xff) pos++;
        if (pos >= n) return 0;
        int m = d[pos++];
        if (m == 0xd9 || m == 0xda) return -1;
        if (m == 0x00 || m == 0x01 || m == 0xd8 || (m >= 0xd0 && m <= 0xd7)) continue;
        if (pos + 2 > n) return 0;
        size_t len = be16(d + pos);
        if (len < 2) return -1;
        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) {
            if (pos + 8 > n) return 0;
            *h = (int)be16(d + pos + 3);
            *w = (int)be16(d + pos + 5);
            *ncomp = d[pos + 7];
            *progressive = (m & 3) == 2;
            return len >= 8 && *w > 0 && *h > 0 ? 1 : -1;
        }
        pos += len;
    }
}

/* A PSD's size from its 26-byte header. 1: read; -1: a side 0 or over 2^24. */
static int psd_size(const unsigned char *d, int *w, int *h) {
    uint32_t ph = be32(d + 14), pw = be32(d + 18);
    if (pw == 0 || ph == 0 || pw > (1u << 24) || ph > (1u << 24)) return -1;
    *w = (int)pw;
    *h = (int)ph;
    return 1;
}

/* Room for what a file holds besides its pixels (metadata, colour
 * profiles, thumbnails, a palette, chunk and packet overhead). */
#define META_SLACK ((int64_t)32 << 20)

/* What a w x h image of this format costs, from its header in d:
 * *peak: the decode's memory besides the file's own bytes (stb_image and
 *   libjpeg: the pixels, any copy converted from them and working buffers;
 *   see cs_image_load_budgeted in image.h for the measured figures);
 * *max_file: the longest file such an image can need, generously: its
 *   uncompressed size (worst-case RLE expansion included) plus a quarter,
 *   or 16 bytes a pixel for JPEG (4 components at ~27 bits a coefficient,
 *   byte stuffing), 10x the composite for PSD (its layers), plus
 *   META_SLACK, at most INT_MAX (the decoders take an int length). */
static void decode_cost(img_format fmt, const unsigned char *d, size_t n, int w, int h,
                        int64_t *peak, int64_t *max_file) {
    /* stb_image refuses sides over 2^20, so larger ones cost no more; the
     * clamp keeps the products in range. */
    int64_t cw = w < (1 << 20) ? w : (1 << 20), rows = h < (1 << 20) ? h : (1 << 20);
    int64_t px = cw * rows, mf;
    switch (fmt) {
    case FMT_PNG: {
        int pw, ph, depth = 16, color = 6, trns = 1;
        if (png_header(d, n, &pw, &ph, &depth, &color, &trns) != 1) depth = 16, color = 6;
        int nf = color == 0 ? 1 : color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;
        int64_t bd = depth > 8 ? 2 : 1;
        /* Inflated rows (Adam7 adds at most 7 filter bytes a row), then the
         * pixels with the file's channels (tRNS adds alpha to gray/RGB),
         * then stb_image's conversion copy (palette expansion, the alpha we
         * do not ask for dropped, 16 to 8 bits) when one is made. */
        int64_t raw = rows * (8 + (cw * nf * depth + 7) / 8);
        int first = color == 3 ? 1 : nf + (trns && (color == 0 || color == 2));
        int want = color == 3 ? (trns ? 4 : 3) : nf;
        int64_t second = color == 3 || first != want || bd == 2 ? px * want * bd : 0;
        *peak = raw + px * first * bd + second;
        /* Adam7: each pass is decoded apart and copied in; the largest is
         * half the image. */
        if (n > 28 && d[28] == 1) *peak += px * first * bd / 2;
        mf = raw;
        break;
    }
    case FMT_JPEG: {
        int jw, jh, ncomp = 4, progressive = 1;
        if (jpeg_frame(d, n, &jw, &jh, &ncomp, &progressive) != 1 || ncomp < 1 || ncomp > 4)
            ncomp = 4, progressive = 1;
        /* The output pixels; progressive files keep whole-image coefficient
         * arrays, 2 bytes a sample (measured: 6000x4000 4:2:0, 72 MB of
         * pixels, 72 MB more when progressive). stb_image (no libjpeg)
         * also keeps a plane per component; libjpeg's CMYK, 4 a pixel. */
        *peak = px * (ncomp == 1 ? 1 : 3) + (progressive ? 2 * px * ncomp : 0);
#if defined(CLIPSCORE_HAVE_LIBJPEG)
        if (ncomp != 1 && ncomp != 3)
#endif
            *peak += px * ncomp;
        mf = 16 * px;
        break;
    }
    case FMT_GIF: /* image_gif.c: the canvas's indices, then RGB */
        *peak = 4 * px;
        mf = 4 * px;
        break;
    case FMT_HDR: /* floats (12 bytes a pixel), then the 8-bit conversion */
        *peak = 16 * px;
        mf = 5 * px + 4 * rows;
        break;
    case FMT_PSD: {
        int64_t ch = n >= 26 ? be16(d + 12) : 16, bd = n >= 26 && be16(d + 22) == 8 ? 1 : 2;
        *peak = 8 * px;
        mf = 10 * (ch * px * bd + 2 * rows * ch);
        break;
    }
    case FMT_PNM: /* the pixels (image_pnm.c decodes in place) */
        *peak = 3 * px;
        /* binary: 2 bytes a sample; plain (P1-P3): "65535 " a sample */
        mf = n > 1 && d[1] >= '1' && d[1] <= '3' ? 18 * px : 6 * px;
        break;
    case FMT_BMP:
        *peak = 8 * px;
        mf = 4 * px + 4 * rows;
        break;
    case FMT_WEBP: /* libwebp's animation decoder: two RGBA canvases; our copy */
        *peak = 12 * px;
        /* Lossless WebP of noise stays under its raw size; an animation
         * (VP8X flag 2) holds any number of frames, all read. */
        mf = n >= 21 && !memcmp(d + 12, "VP8X", 4) && (d[20] & 2) ? INT_MAX : 4 * px;
        break;
    case FMT_TIFF: { /* the samples as stored (2 bytes at most), then ours */
        int tw, th, nc = 4;
        if (cs_tiff_probe(d, n, &tw, &th, &nc) != 1) nc = 4;
        *peak = px * (2 * nc + 4);
        mf = INT_MAX; /* pages and the directory may lie anywhere */
        break;
    }
    case FMT_JP2: { /* openjp2: a 32-bit sample a component, tile buffers */
        int jw, jh, nc = 4;
        if (cs_jp2_probe(d, n, &jw, &jh, &nc) != 1) nc = 4;
        *peak = px * (8 * nc + 4);
        mf = 4 * px * nc;
        break;
    }
    case FMT_ICO: { /* a PNG or DIB entry, plus its RGBA conversion */
        int iw, ih;
        int64_t end = INT_MAX;
        if (cs_ico_probe(d, n, &iw, &ih, &end) != 1) end = INT_MAX;
        *peak = 16 * px;
        mf = end; /* no entry reaches further */
        break;
    }
    case FMT_HEIF: /* libheif: YCbCr planes (up to 16 bits), then RGB(A) */
        *peak = 12 * px;
        mf = INT_MAX; /* thumbnails, bursts, depth maps */
        break;
    default: /* TGA: 4 bytes a pixel, a 1-byte packet header each at worst */
        *peak = 8 * px;
        mf = 5 * px;
        break;
    }
    mf += mf / 4 + META_SLACK;
    *max_file = mf < INT_MAX ? mf : INT_MAX;
    /* The decoder's own state and row buffers (libjpeg: ~0.5 MB measured
     * on a 640x480 file). */
    *peak += (int64_t)1 << 20;
}

/* Reads the format and size from the first n bytes of a file. 1: known;
 * 0: more bytes needed; 2: not told by the header although these bytes are
 * the whole file (decode_memory() then reports why); negative: an error. */
static int probe_header(const unsigned char *d, size_t n, int complete, const char *label,
                        img_format *fmt, int *w, int *h, cs_error *e) {
    int rc = sniff_or_fail(d, n, label, fmt, e);
    if (rc) return rc;
    int r, c = 0, unused[3];
    int64_t end;
    if (*fmt == FMT_PNG)
        r = png_header(d, n, w, h, &unused[0], &unused[1], &unused[2]);
    else if (*fmt == FMT_WEBP)
        r = cs_webp_probe(d, n, w, h, NULL);
    else if (*fmt == FMT_TIFF)
        r = cs_tiff_probe(d, n, w, h, NULL);
    else if (*fmt == FMT_JP2)
        r = cs_jp2_probe(d, n, w, h, NULL);
    else if (*fmt == FMT_ICO)
        r = cs_ico_probe(d, n, w, h, &end);
    else if (*fmt == FMT_HEIF)
        r = cs_heif_probe(d, n, w, h);
    else if (*fmt == FMT_JPEG)
        r = jpeg_frame(d, n, w, h, &c, &unused[0]);
    else if (*fmt == FMT_BMP)
        r = cs_bmp_probe(d, n, w, h);
    else if (*fmt == FMT_PNM)
        r = cs_pnm_probe(d, n, w, h);
    else if (*fmt == FMT_PSD) /* stb_image reads RGB ones only; image_psd.c all */
        r = n < 26 ? 0 : psd_size(d, w, h);
    else /* stb_image's header parsers stop at the end of the buffer; only the
          * text header of HDR can be longer than a first read */
        r = stbi_info_from_memory(d, (int)n, w, h, &c) ? 1 : *fmt == FMT_HDR ? 0 : -1;
    if (r == 1) return 1;
    if (complete) return 2;
    if (r == 0) return 0;
    const char *why =
        *fmt == FMT_GIF || *fmt == FMT_HDR || *fmt == FMT_TGA ? stbi_failure_reason() : NULL;
    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt %s header (%s)", label, format_name(*fmt),
                   why && *why ? why : "unreadable");
}

static int check_limit(const char *label, int w, int h, int64_t max_pixels, cs_error *e) {
    int64_t pixels = (int64_t)w * h;
    if (max_pixels > 0 && pixels > max_pixels)
        return cs_fail(e, CLIPSCORE_ELIMIT,
                       "%s: %dx%d is %lld pixels, over the limit of %lld (raise max_pixels to "
                       "allow it)",
                       label, w, h, (long long)pixels, (long long)max_pixels);
    return 0;
}

int cs_image_check_limit(const char *label, int w, int h, int64_t max_pixels, cs_error *e) {
    return check_limit(label, w, h, max_pixels, e);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                   */

/* A decode's share of a budget. */
typedef struct reservation {
    cs_decode_budget *budget; /* NULL: no budget */
    int64_t bytes;            /* held now */
    int held;
} reservation;

static int reserve(reservation *r, int64_t bytes, const char *label, cs_error *e) {
    if (!r || !r->budget || r->held) return 0;
    if (cs_decode_budget_reserve(r->budget, bytes, NULL))
        return cs_fail(e, CLIPSCORE_ECANCELED, "%s: canceled while waiting for decode memory",
                       label);
    r->held = 1;
    r->bytes = bytes;
    return 0;
}

/* The formats image_formats.h decodes: the size from the header, the pixel
 * limit and the reservation, then the format's decoder. */
static int decode_library(img_format fmt, const unsigned char *d, size_t len, const char *label,
                          int64_t max_pixels, reservation *res, cs_image *img, cs_error *e) {
    int w = 0, h = 0, r;
    int64_t end;
    switch (fmt) {
    case FMT_WEBP:
        r = cs_webp_probe(d, len, &w, &h, NULL);
        break;
    case FMT_TIFF:
        r = cs_tiff_probe(d, len, &w, &h, NULL);
        break;
    case FMT_JP2:
        r = cs_jp2_probe(d, len, &w, &h, NULL);
        break;
    case FMT_ICO:
        r = cs_ico_probe(d, len, &w, &h, &end);
        break;
    default:
        r = cs_heif_probe(d, len, &w, &h);
        break;
    }
    if (r != 1)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s %s header", label,
                       r == 0 ? "truncated or corrupt" : "corrupt", format_name(fmt));
    /* HEIF: see cs_image_load_budgeted (its decoder checks the limit). */
    int rc = fmt == FMT_HEIF ? 0 : check_limit(label, w, h, max_pixels, e);
    if (rc) return rc;
    if (res && res->budget && !res->held) {
        int64_t peak, max_file;
        decode_cost(fmt, d, len, w, h, &peak, &max_file);
        if ((rc = reserve(res, (int64_t)len + peak, label, e))) return rc;
    }
    switch (fmt) {
    case FMT_WEBP:
        return cs_webp_decode(d, len, label, max_pixels, img, e);
    case FMT_TIFF:
        return cs_tiff_decode(d, len, label, max_pixels, img, e);
    case FMT_JP2:
        return cs_jp2_decode(d, len, label, max_pixels, img, e);
    case FMT_ICO:
        return cs_ico_decode(d, len, label, max_pixels, img, e);
    default:
        return cs_heif_decode(d, len, label, max_pixels, img, e);
    }
}

/* Decodes a whole file in memory; reserves from res (when it has a budget
 * and holds nothing yet) once the size is known, before decoding. */
static int decode_memory(const unsigned char *d, size_t len, const char *label, int64_t max_pixels,
                         int min_side, reservation *res, cs_image *img, cs_error *e) {
    (void)min_side; /* used by the libjpeg path only */
    memset(img, 0, sizeof *img);
    if (!label) label = "(memory)";
    if (!d || len == 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: empty file", label);
    if (len > (size_t)INT_MAX)
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: file larger than %d bytes", label, INT_MAX);

    img_format fmt;
    int rc = sniff_or_fail(d, len, label, &fmt, e);
    if (rc) return rc;
    if (fmt >= FMT_WEBP) return decode_library(fmt, d, len, label, max_pixels, res, img, e);
    int iw = 0, ih = 0, icomp = 0;

    /* The structure is checked before stb_image parses anything of a known
     * format (its JPEG header parser already reads Huffman tables). */
    file_facts f = {0, 0, 0, 0, 0};
    switch (fmt) {
    case FMT_PNG:
        rc = check_png(d, len, label, &f, e);
        break;
    case FMT_JPEG: {
        rc = check_jpeg(d, len, label, e);
        /* The size from the frame header, as libjpeg reads it: stb_image's
         * header parser refuses some files libjpeg reads (0xFF 0x00 in a
         * segment before the frame). */
        int ncomp, progressive;
        if (!rc && jpeg_frame(d, len, &f.w, &f.h, &ncomp, &progressive) != 1) f.w = f.h = 0;
        break;
    }
    case FMT_GIF:
        rc = check_gif(d, len, &f);
        break;
    case FMT_BMP: /* cs_bmp_decode checks its own structure */
        if (cs_bmp_probe(d, len, &f.w, &f.h) != 1)
            return cs_bmp_decode(d, len, label, max_pixels, img, e); /* its message */
        break;
    case FMT_PNM: /* cs_pnm_decode checks its own structure */
        if (cs_pnm_probe(d, len, &f.w, &f.h) != 1)
            return cs_pnm_decode(d, len, label, max_pixels, img, e); /* its message */
        break;
    case FMT_TGA:
        rc = check_tga(d, len, label, &f, e);
        break;
    case FMT_PSD: /* cs_psd_decode checks its own structure */
        if (len >= 26) psd_size(d, &f.w, &f.h);
        break;
    case FMT_HDR:
        rc = check_hdr(d, len, label, e);
        break;
    default:
        break;
    }
    /* A file both cut short and over the pixel limit (a decompression bomb
     * is often both) is reported as over the limit. */
    if (rc && f.w > 0 && check_limit(label, f.w, f.h, max_pixels, e)) return CLIPSCORE_ELIMIT;
    if (rc) return rc;

    /* The pixel limit, from the header, before any pixel is decoded. A PNG
     * header was read above (so even sizes stb_image calls "too large"
     * report the limit); the others' come from stb_image. */
    if (f.w > 0) {
        iw = f.w;
        ih = f.h;
    } else if (!stbi_info_from_memory(d, (int)len, &iw, &ih, &icomp)) {
        const char *why = stbi_failure_reason();
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt %s header (%s)", label, format_name(fmt),
                       why && *why ? why : "unreadable");
    }
    if ((rc = check_limit(label, iw, ih, max_pixels, e))) return rc;
    if (res && res->budget && !res->held) {
        int64_t peak, max_file;
        decode_cost(fmt, d, len, iw, ih, &peak, &max_file);
        if ((rc = reserve(res, (int64_t)len + peak, label, e))) return rc;
    }

    if (fmt == FMT_BMP) return cs_bmp_decode(d, len, label, max_pixels, img, e);
    if (fmt == FMT_PNM) return cs_pnm_decode(d, len, label, max_pixels, img, e);
    if (fmt == FMT_GIF) return cs_gif_decode(d, len, label, max_pixels, img, e);
    if (fmt == FMT_PSD) {
        /* Pillow's reading, not stb_image's (which removes a "white matte"
         * from 4-channel files, with float casts that overflow); stb_image
         * only for the 16-bit RGB files Pillow does not read. */
        rc = cs_psd_decode(d, len, label, max_pixels, img, e);
        if (rc <= 0) return rc;
        if ((rc = check_psd(d, len, label, e))) return rc;
    }
#if defined(CLIPSCORE_HAVE_LIBJPEG)
    if (fmt == FMT_JPEG) {
        rc = decode_libjpeg(d, len, label, min_side, img, e);
        if (rc <= 0) return rc;
    }
#endif
    int w = 0, h = 0, comp = 0;
    unsigned char *px = NULL;
    if (f.gray16) {
        /* Pillow opens these as mode "I" and saturates them to white in
         * the 8-bit conversion; the full range is scaled down instead. */
        stbi_us *wide = stbi_load_16_from_memory(d, (int)len, &w, &h, &comp, 1);
        if (wide && w > 0 && h > 0) {
            size_t npx = (size_t)w * (size_t)h;
            px = malloc(npx);
            if (!px) {
                stbi_image_free(wide);
                return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory decoding %dx%d PNG", label,
                               w, h);
            }
            for (size_t i = 0; i < npx; i++) px[i] = cs_gray16_to_8(wide[i]);
        }
        stbi_image_free(wide);
    } else {
        px = stbi_load_from_memory(d, (int)len, &w, &h, &comp, f.req_comp);
    }
    if (!px) {
        const char *why = stbi_failure_reason();
        if (why && !strcmp(why, "outofmem"))
            return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory decoding %dx%d %s", label, iw,
                           ih, format_name(fmt));
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt %s data (%s)", label, format_name(fmt),
                       why && *why ? why : "decoder failed");
    }
    int channels = f.req_comp ? f.req_comp : comp;
    if (w < 1 || h < 1 || channels < 1 || channels > 4) {
        stbi_image_free(px);
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt %s (decodes to %dx%d, %d channels)",
                       label, format_name(fmt), w, h, channels);
    }
    if (fmt == FMT_TGA && len > 17 && (d[17] & 0x10)) {
        /* Right-to-left pixel order (descriptor bit 4): stb_image honours
         * only the vertical bit; Pillow flips these left to right. */
        for (int y = 0; y < h; y++) {
            unsigned char *row = px + (size_t)y * (size_t)w * (size_t)channels;
            for (int a = 0, b = w - 1; a < b; a++, b--)
                for (int c = 0; c < channels; c++) {
                    unsigned char t = row[(size_t)a * channels + c];
                    row[(size_t)a * channels + c] = row[(size_t)b * channels + c];
                    row[(size_t)b * channels + c] = t;
                }
        }
    }
    img->w = w;
    img->h = h;
    img->channels = channels;
    img->px = px; /* stb_image allocates with malloc: cs_image_free's free() matches */
    img->palette = f.palette;
    return 0;
}

/* After a decode: the decoder's working memory is gone; the pixels and
 * what preprocessing and thumbnails allocate beside them stay reserved,
 * held by img until cs_image_free. */
static void keep_pixels_reserved(reservation *res, cs_image *img) {
    if (!res->held) return;
    int64_t bytes = (int64_t)img->w * img->h * img->channels;
    int64_t keep = bytes * (img->channels == 2 || img->channels == 4 ? 2 : 1) +
                   (int64_t)img->h * 1024 + ((int64_t)1 << 20);
    if (keep > res->bytes) keep = res->bytes;
    cs_decode_budget_shrink(res->budget, res->bytes, keep);
    img->budget = res->budget;
    img->budget_bytes = keep;
    res->held = 0;
}

int cs_image_load_memory(const void *data, size_t len, const char *label, int64_t max_pixels,
                         cs_image *img, cs_error *e) {
    return decode_memory(data, len, label, max_pixels, 0, NULL, img, e);
}

int cs_image_load_memory_scaled(const void *data, size_t len, const char *label, int64_t max_pixels,
                                cs_decode_budget *budget, int min_side, cs_image *img,
                                cs_error *e) {
    reservation res = {budget, 0, 0};
    int rc = decode_memory(data, len, label, max_pixels, min_side, &res, img, e);
    if (!rc) keep_pixels_reserved(&res, img);
    if (res.held) cs_decode_budget_release(budget, res.bytes);
    return rc;
}

/* The first read: enough for every header but a JPEG's with large metadata
 * segments before its frame, or a long PNM/HDR text header. */
#define HEADER_BYTES ((size_t)64 << 10)

/* Reads from fd until *n reaches `limit` or the file ends (*eof), doubling
 * the buffer (up to limit) when it is full. */
static int read_upto(int fd, const char *path, unsigned char **buf, size_t *cap, size_t *n,
                     size_t limit, int *eof, cs_error *e) {
    while (*n < limit && !*eof) {
        if (*n == *cap) {
            size_t nc = *cap < limit / 2 ? *cap * 2 : limit;
            unsigned char *nb = realloc(*buf, nc);
            if (!nb)
                return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory reading %zu bytes", path,
                               nc);
            *buf = nb;
            *cap = nc;
        }
        ssize_t r = read(fd, *buf + *n, *cap - *n);
        if (r < 0) {
            if (errno == EINTR) continue;
            return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
        }
        if (r == 0)
            *eof = 1;
        else
            *n += (size_t)r;
    }
    return 0;
}

static const char *file_kind(mode_t m) {
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "a special file";
}

/* Opens path as a regular file: anything else (a FIFO could block a reader
 * forever, /dev/zero never ends) is refused before a byte is read. */
static int open_regular(const char *path, int *fd, struct stat *st, cs_error *e) {
    /* O_NONBLOCK: opening a FIFO does not wait for a writer. The type is
     * then checked on the open descriptor, so it cannot change between the
     * check and the reads. */
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0) {
        int err = errno;
        struct stat ls; /* only to word the message: sockets give ENXIO */
        if (err == ENXIO && stat(path, &ls) == 0 && !S_ISREG(ls.st_mode))
            return cs_fail(e, CLIPSCORE_EIO, "%s: not a regular file (%s)", path,
                           file_kind(ls.st_mode));
        return cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(err));
    }
    int rc = 0;
    if (fstat(*fd, st) != 0)
        rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(st->st_mode))
        rc = cs_fail(e, CLIPSCORE_EIO, "%s: is a folder, not a file", path);
    else if (!S_ISREG(st->st_mode))
        rc = cs_fail(e, CLIPSCORE_EIO, "%s: not a regular file (%s)", path, file_kind(st->st_mode));
    if (rc) {
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int cs_image_load_budgeted(const char *path, int64_t max_pixels, cs_decode_budget *budget,
                           cs_image *img, cs_error *e) {
    return cs_image_load_scaled(path, max_pixels, budget, 0, img, e);
}

int cs_image_load_scaled(const char *path, int64_t max_pixels, cs_decode_budget *budget,
                         int min_side, cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    if (!path || !*path) return cs_fail(e, CLIPSCORE_EARG, "image path is empty");
    int fd;
    struct stat st;
    int rc = open_regular(path, &fd, &st, e);
    if (rc) return rc;

    /* The decoders take an int length: one byte more tells a longer file.
     * A size of 0 may be a file whose size the kernel does not know (/proc):
     * it is read to its end, within the same bounds. */
    const size_t limit = (size_t)INT_MAX + 1;
    int sized = st.st_size > 0;
    size_t want = sized && (uint64_t)st.st_size < limit ? (size_t)st.st_size : limit;
    size_t cap = want < HEADER_BYTES ? want : HEADER_BYTES, n = 0, head = cap;
    unsigned char *buf = cs_malloc(cap, 1, e);
    reservation res = {budget, 0, 0};
    int eof = 0, known;
    int64_t max_file = INT_MAX;
    img_format fmt = FMT_UNKNOWN;
    int w = 0, h = 0;
    if (!buf) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }

    /* 1. The header: the first 64 KiB (all of a small file), more only
     * while the header has not ended. */
    for (;;) {
        if ((rc = read_upto(fd, path, &buf, &cap, &n, head, &eof, e))) goto done;
        if (n == 0) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: empty file", path);
            goto done;
        }
        known = probe_header(buf, n, eof || n >= want, path, &fmt, &w, &h, e);
        if (known < 0) {
            rc = known;
            goto done;
        }
        if (known) break;
        /* A TIFF's directory and a HEIF's meta box may follow the pixel
         * data, at the end of the file: those are read whole if need be. */
        size_t head_max = fmt == FMT_JPEG                      ? (size_t)16 << 20
                          : fmt == FMT_TIFF || fmt == FMT_HEIF ? limit
                                                               : (size_t)1 << 20;
        if (head >= head_max) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: corrupt %s header (no image size in the first %zu MiB)", path,
                         format_name(fmt), head_max >> 20);
            goto done;
        }
        head = head * 2 < head_max ? head * 2 : head_max;
    }

    /* 2. The pixel limit, the file's bound and the memory reservation,
     * before the rest is read. */
    if (known == 1) {
        /* A HEIF's ispe is the coded size, which a clean aperture may crop:
         * cs_heif_decode checks the primary image's own size, from the
         * meta box, before decoding. */
        if (fmt != FMT_HEIF && (rc = check_limit(path, w, h, max_pixels, e))) goto done;
        int64_t peak;
        decode_cost(fmt, buf, n, w, h, &peak, &max_file);
        int jw, jh, nc, prog, d = fmt == FMT_JPEG ? cs_image_jpeg_scale(w, h, min_side) : 1;
        if (d > 1 && jpeg_frame(buf, n, &jw, &jh, &nc, &prog) == 1 && (nc == 1 || nc == 3)) {
            /* libjpeg's scaled output replaces the full-size pixels; the
             * coefficients of a progressive file stay full size. */
            int64_t sw = (w + d - 1) / d, sh = (h + d - 1) / d;
            peak -= ((int64_t)w * h - sw * sh) * (nc == 1 ? 1 : 3);
        }
        if (!eof && n < want) {
            if (sized && (uint64_t)st.st_size > (uint64_t)max_file && fmt != FMT_GIF &&
                fmt != FMT_TIFF && fmt != FMT_HEIF) {
                rc = cs_fail(e, CLIPSCORE_EFORMAT,
                             "%s: %lld bytes, more than a %dx%d %s can need (%lld at most): not "
                             "an image, or one with junk appended",
                             path, (long long)st.st_size, w, h, format_name(fmt),
                             (long long)max_file);
                goto done;
            }
            /* A GIF's first frame (the one decoded) lies within the bound;
             * later frames are not read. TIFF and HEIF files may hold more
             * images than the one decoded (pages, thumbnails), anywhere:
             * their bound is INT_MAX. Files of unknown size are read to
             * the bound and one byte more, which tells one that is longer. */
            if ((size_t)max_file < want)
                want = (size_t)max_file + (sized || fmt == FMT_GIF ? 0 : 1);
        }
        if ((rc = reserve(&res, (int64_t)(n < want ? want : n) + peak, path, e))) goto done;
    }

    /* 3. The rest, into the same buffer: sized at once when the size is
     * known, so a file is read once and copied at most once (64 KiB). */
    if (!eof && n < want) {
        if (sized && cap < want) {
            unsigned char *nb = realloc(buf, want);
            if (!nb) {
                rc =
                    cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory reading %zu bytes", path, want);
                goto done;
            }
            buf = nb;
            cap = want;
        }
        if ((rc = read_upto(fd, path, &buf, &cap, &n, want, &eof, e))) goto done;
        if (n > (size_t)max_file) { /* only a file of unknown size gets here */
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: more than a %dx%d %s can need (%lld bytes at most): not an image, "
                         "or one with junk appended",
                         path, w, h, format_name(fmt), (long long)max_file);
            goto done;
        }
    }
    close(fd);
    fd = -1;

    rc = decode_memory(buf, n, path, max_pixels, min_side, &res, img, e);
    free(buf);
    buf = NULL;
    if (!rc) keep_pixels_reserved(&res, img);
done:
    if (fd >= 0) close(fd);
    free(buf);
    if (res.held) cs_decode_budget_release(budget, res.bytes);
    return rc;
}

int cs_image_load(const char *path, int64_t max_pixels, cs_image *img, cs_error *e) {
    return cs_image_load_budgeted(path, max_pixels, NULL, img, e);
}

/* ------------------------------------------------------------------------ */
/* Pillow's resampler                                                        */

/* Fixed-point precision of the 8-bit path: 32 bits minus 8 for the pixel and
 * 2 for the filter's overshoot, as in Pillow. */
#define PREC_BITS 22

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Coefficients of one axis, for output samples [first, first + n) of a
 * resize from in_size to out_size. */
typedef struct axis_kernel {
    int ksize;     /* coefficients stored per sample */
    int *start;    /* first input index of each sample */
    int *count;    /* inputs used by each sample */
    int32_t *coef; /* n * ksize fixed-point weights */
} axis_kernel;

static void kernel_free(axis_kernel *k) {
    free(k->start);
    free(k->count);
    free(k->coef);
    memset(k, 0, sizeof *k);
}

static int kernel_init(axis_kernel *k, int in_size, int out_size, int first, int n, cs_error *e) {
    memset(k, 0, sizeof *k);
    /* The arithmetic follows Pillow's precompute_coeffs step by step (same
     * double expressions, same truncations) so the weights agree exactly. */
    double scale = (double)in_size / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    double ss = 1.0 / filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *w = cs_malloc((size_t)ksize, sizeof *w, e);
    k->start = cs_malloc((size_t)n, sizeof *k->start, e);
    k->count = cs_malloc((size_t)n, sizeof *k->count, e);
    k->coef = cs_calloc((size_t)n * (size_t)ksize, sizeof *k->coef, e);
    if (!w || !k->start || !k->count || !k->coef) {
        free(w);
        kernel_free(k);
        return CLIPSCORE_ENOMEM;
    }
    k->ksize = ksize;
    for (int i = 0; i < n; i++) {
        int xx = first + i;
        double center = (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = bicubic((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *c = k->coef + (size_t)i * ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? w[x] / ww : w[x];
            c[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC_BITS))
                         : (int32_t)(0.5 + v * (1 << PREC_BITS));
        }
        k->start[i] = xmin;
        k->count[i] = xmax;
    }
    free(w);
    return 0;
}

static inline unsigned char clip8(int32_t v) {
    if (v < 0) return 0;
    v >>= PREC_BITS;
    return v > 255 ? 255 : (unsigned char)v;
}

/* One row of the horizontal pass; `ch` is a constant at each call site so
 * the compiler specialises the channel loop. */
#if defined(__GNUC__)
#define CS_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define CS_ALWAYS_INLINE inline
#endif

static CS_ALWAYS_INLINE void hpass_row(const unsigned char *in, unsigned char *out,
                                       const axis_kernel *k, int n, int ch) {
    for (int xx = 0; xx < n; xx++) {
        const int32_t *c = k->coef + (size_t)xx * k->ksize;
        const unsigned char *p = in + (size_t)k->start[xx] * ch;
        int cnt = k->count[xx];
        int32_t s0 = 1 << (PREC_BITS - 1), s1 = s0, s2 = s0, s3 = s0;
        for (int x = 0; x < cnt; x++, p += ch) {
            int32_t cv = c[x];
            s0 += p[0] * cv;
            if (ch > 1) s1 += p[1] * cv;
            if (ch > 2) s2 += p[2] * cv;
            if (ch > 3) s3 += p[3] * cv;
        }
        out[0] = clip8(s0);
        if (ch > 1) out[1] = clip8(s1);
        if (ch > 2) out[2] = clip8(s2);
        if (ch > 3) out[3] = clip8(s3);
        out += ch;
    }
}

static void hpass(const unsigned char *src, size_t src_stride, int rows, int ch,
                  const axis_kernel *k, int n, unsigned char *dst, size_t dst_stride) {
    for (int r = 0; r < rows; r++) {
        const unsigned char *in = src + (size_t)r * src_stride;
        unsigned char *out = dst + (size_t)r * dst_stride;
        switch (ch) {
        case 1:
            hpass_row(in, out, k, n, 1);
            break;
        case 2:
            hpass_row(in, out, k, n, 2);
            break;
        case 3:
            hpass_row(in, out, k, n, 3);
            break;
        default:
            hpass_row(in, out, k, n, 4);
            break;
        }
    }
}

/* Vertical pass: every byte of a row shares the row's weights, so rows are
 * processed as flat arrays. src row r is input row r + src_row0. */
static void vpass(const unsigned char *src, size_t src_stride, int src_row0, int row_bytes,
                  const axis_kernel *k, int n, unsigned char *dst, size_t dst_stride,
                  int32_t *acc) {
    for (int yy = 0; yy < n; yy++) {
        const int32_t *c = k->coef + (size_t)yy * k->ksize;
        const unsigned char *in = src + (size_t)(k->start[yy] - src_row0) * src_stride;
        for (int i = 0; i < row_bytes; i++) acc[i] = 1 << (PREC_BITS - 1);
        for (int y = 0; y < k->count[yy]; y++, in += src_stride) {
            int32_t cv = c[y];
            for (int i = 0; i < row_bytes; i++) acc[i] += in[i] * cv;
        }
        unsigned char *out = dst + (size_t)yy * dst_stride;
        for (int i = 0; i < row_bytes; i++) out[i] = clip8(acc[i]);
    }
}

/* Resizes src (w x h x ch bytes) to out_w x out_h as Pillow's
 * ImagingResample does, but computes only the window [x0, x0 + cw) x
 * [y0, y0 + chh) of the result (each output pixel depends only on its own
 * coefficients, so the window is identical to cropping the full result).
 * A pass is skipped when its dimension does not change, as in Pillow. */
static int resample_window(const unsigned char *src, int w, int h, int ch, int out_w, int out_h,
                           int x0, int y0, int cw, int chh, unsigned char *dst, cs_error *e) {
    int need_h = out_w != w, need_v = out_h != h;
    axis_kernel kx = {0}, ky = {0};
    unsigned char *tmp = NULL;
    int32_t *acc = NULL;
    int rc = 0;
    size_t row_bytes = (size_t)cw * ch;
    if (need_h && (rc = kernel_init(&kx, w, out_w, x0, cw, e))) goto done;
    if (need_v && (rc = kernel_init(&ky, h, out_h, y0, chh, e))) goto done;

    /* Source rows the vertical pass reads (all of the window's own rows
     * when there is no vertical pass). Starts and ends never decrease. */
    int r0 = need_v ? ky.start[0] : y0;
    int r1 = need_v ? ky.start[chh - 1] + ky.count[chh - 1] : y0 + chh;
    const unsigned char *mid;
    size_t mid_stride;
    int mid_row0;
    if (need_h && !need_v) { /* one pass, straight into the window */
        hpass(src + (size_t)r0 * w * ch, (size_t)w * ch, chh, ch, &kx, cw, dst, row_bytes);
        goto done;
    }
    if (need_h) {
        tmp = cs_malloc((size_t)(r1 - r0), row_bytes, e);
        if (!tmp) {
            rc = CLIPSCORE_ENOMEM;
            goto done;
        }
        hpass(src + (size_t)r0 * w * ch, (size_t)w * ch, r1 - r0, ch, &kx, cw, tmp, row_bytes);
        mid = tmp;
        mid_stride = row_bytes;
        mid_row0 = r0;
    } else {
        mid = src + (size_t)x0 * ch;
        mid_stride = (size_t)w * ch;
        mid_row0 = 0;
    }
    if (need_v) {
        acc = cs_malloc(row_bytes, sizeof *acc, e);
        if (!acc) {
            rc = CLIPSCORE_ENOMEM;
            goto done;
        }
        vpass(mid, mid_stride, mid_row0, (int)row_bytes, &ky, chh, dst, row_bytes, acc);
    } else {
        for (int y = 0; y < chh; y++)
            memcpy(dst + (size_t)y * row_bytes, mid + (size_t)(y0 + y - mid_row0) * mid_stride,
                   row_bytes);
    }
done:
    kernel_free(&kx);
    kernel_free(&ky);
    free(tmp);
    free(acc);
    return rc;
}

/* Pillow's RGBA -> RGBa (and LA -> La): c * a / 255 rounded, as MULDIV255. */
static unsigned char *premultiply(const cs_image *src, cs_error *e) {
    size_t n = (size_t)src->w * src->h;
    int ch = src->channels, a = ch - 1;
    unsigned char *p = cs_malloc(n, (size_t)ch, e);
    if (!p) return NULL;
    const unsigned char *s = src->px;
    for (size_t i = 0; i < n; i++, s += ch) {
        unsigned alpha = s[a];
        for (int c = 0; c < a; c++) {
            unsigned t = s[c] * alpha + 128;
            p[i * ch + c] = (unsigned char)(((t >> 8) + t) >> 8);
        }
        p[i * ch + a] = (unsigned char)alpha;
    }
    return p;
}

/* Pillow's RGBa -> RGBA: 255 * c / a (integer division), clipped; alpha 0
 * and 255 leave the colour as it is. */
static void unpremultiply(unsigned char *px, size_t n, int ch) {
    int a = ch - 1;
    for (size_t i = 0; i < n; i++, px += ch) {
        unsigned alpha = px[a];
        if (alpha == 0 || alpha == 255) continue;
        for (int c = 0; c < a; c++) {
            unsigned v = 255u * px[c] / alpha;
            px[c] = (unsigned char)(v > 255 ? 255 : v);
        }
    }
}

/* The window of a resize of img to out_w x out_h, as the reference computes
 * it: a same-size "resize" is a plain copy; 2 and 4 channels go through
 * premultiplied alpha; palette images use nearest neighbour when asked. */
static int resize_window(const cs_image *img, int out_w, int out_h, int x0, int y0, int cw, int chh,
                         int nearest, unsigned char *dst, cs_error *e);

static int nearest_window(const cs_image *img, int out_w, int out_h, int x0, int y0, int cw,
                          int chh, unsigned char *dst, cs_error *e) {
    int ch = img->channels;
    int *xin = cs_malloc((size_t)cw, sizeof *xin, e);
    if (!xin) return CLIPSCORE_ENOMEM;
    /* Pillow's ImagingScaleAffine: positions advance by repeated addition
     * from the first pixel centre, so they are accumulated here the same way
     * rather than multiplied. */
    double ax = (double)img->w / out_w, ay = (double)img->h / out_h;
    double xo = ax * 0.5;
    for (int x = 0; x < x0 + cw; x++) {
        if (x >= x0) {
            int v = xo < 0.0 ? 0 : (int)xo;
            xin[x - x0] = v < img->w ? v : img->w - 1;
        }
        xo += ax;
    }
    double yo = ay * 0.5;
    for (int y = 0; y < y0 + chh; y++) {
        if (y >= y0) {
            int v = yo < 0.0 ? 0 : (int)yo;
            if (v >= img->h) v = img->h - 1;
            const unsigned char *in = img->px + (size_t)v * img->w * ch;
            unsigned char *out = dst + (size_t)(y - y0) * cw * ch;
            for (int x = 0; x < cw; x++) memcpy(out + (size_t)x * ch, in + (size_t)xin[x] * ch, ch);
        }
        yo += ay;
    }
    free(xin);
    return 0;
}

static int resize_window(const cs_image *img, int out_w, int out_h, int x0, int y0, int cw, int chh,
                         int nearest, unsigned char *dst, cs_error *e) {
    int ch = img->channels;
    if (out_w == img->w && out_h == img->h) {
        size_t row = (size_t)cw * ch;
        for (int y = 0; y < chh; y++)
            memcpy(dst + (size_t)y * row, img->px + ((size_t)(y0 + y) * img->w + x0) * ch, row);
        return 0;
    }
    if (nearest) return nearest_window(img, out_w, out_h, x0, y0, cw, chh, dst, e);
    /* CMYK has no alpha to premultiply by; Pillow resamples "PA" as two
     * plain numbers (it premultiplies "LA" and "RGBA" only). */
    if (ch == 1 || ch == 3 || img->cmyk || img->pal)
        return resample_window(img->px, img->w, img->h, ch, out_w, out_h, x0, y0, cw, chh, dst, e);
    unsigned char *pm = premultiply(img, e);
    if (!pm) return CLIPSCORE_ENOMEM;
    int rc = resample_window(pm, img->w, img->h, ch, out_w, out_h, x0, y0, cw, chh, dst, e);
    free(pm);
    if (!rc) unpremultiply(dst, (size_t)cw * chh, ch);
    return rc;
}

static int check_resize_args(const cs_image *src, int w, int h, cs_error *e) {
    if (!valid_image(src)) return cs_fail(e, CLIPSCORE_EARG, "resize: invalid source image");
    if (w < 1 || h < 1 || w > (1 << 20) || h > (1 << 20))
        return cs_fail(e, CLIPSCORE_EARG, "resize: invalid target size %dx%d", w, h);
    return 0;
}

int cs_image_resize(const cs_image *src, int w, int h, cs_image *dst, cs_error *e) {
    int rc = check_resize_args(src, w, h, e);
    if (rc) {
        memset(dst, 0, sizeof *dst);
        return rc;
    }
    if ((rc = cs_image_alloc(dst, w, h, src->channels, e))) return rc;
    dst->cmyk = src->cmyk;
    if (src->pal && !(dst->pal = cs_malloc(256, 3, e))) rc = CLIPSCORE_ENOMEM;
    if (dst->pal && w == src->w && h == src->h) /* Pillow copies the image */
        memcpy(dst->pal, src->pal, 256 * 3);
    else if (dst->pal) /* Pillow's resampled "PA" has the default palette */
        for (int i = 0; i < 256 * 3; i++) dst->pal[i] = (unsigned char)(i / 3);
    if (!rc) rc = resize_window(src, w, h, 0, 0, w, h, 0, dst->px, e);
    if (rc) cs_image_free(dst);
    return rc;
}

int cs_image_resize_nearest(const cs_image *src, int w, int h, cs_image *dst, cs_error *e) {
    int rc = check_resize_args(src, w, h, e);
    if (rc) {
        memset(dst, 0, sizeof *dst);
        return rc;
    }
    if ((rc = cs_image_alloc(dst, w, h, src->channels, e))) return rc;
    dst->cmyk = src->cmyk;
    if (src->pal && !(dst->pal = cs_malloc(256, 3, e))) rc = CLIPSCORE_ENOMEM;
    if (dst->pal) memcpy(dst->pal, src->pal, 256 * 3);
    if (!rc) rc = resize_window(src, w, h, 0, 0, w, h, 1, dst->px, e);
    if (rc)
        cs_image_free(dst);
    else
        dst->palette = src->palette;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* CLIP preprocessing                                                        */

cs_preprocess_cfg cs_preprocess_default(void) {
    /* Written as doubles narrowed to float, the path Python lists take into
     * float32 tensors in the reference. */
    cs_preprocess_cfg c = {224,
                           {(float)0.48145466, (float)0.4578275, (float)0.40821073},
                           {(float)0.26862954, (float)0.26130258, (float)0.27577711}};
    return c;
}

void cs_image_resized_size(int w, int h, int size, int *rw, int *rh) {
    int shorter = w <= h ? w : h, longer = w <= h ? h : w;
    /* torchvision: int(size * long / short), a float64 division truncated. */
    double o = (double)((int64_t)size * longer) / shorter;
    int other = o < (double)INT_MAX ? (int)o : INT_MAX; /* absurd ratios: caller refuses */
    if (w <= h) {
        *rw = size;
        *rh = other;
    } else {
        *rw = other;
        *rh = size;
    }
}

int cs_image_crop_offset(int total, int crop) {
    /* Python's round() on an exact half goes to the even neighbour; so does
     * nearbyint() in the default rounding mode. */
    return (int)nearbyint((total - crop) / 2.0);
}

int cs_image_preprocess(const cs_image *img, const cs_preprocess_cfg *cfg, float *out,
                        cs_error *e) {
    if (!valid_image(img)) return cs_fail(e, CLIPSCORE_EARG, "preprocess: invalid image");
    if (!cfg || cfg->size < 1 || cfg->size > 8192 || !out)
        return cs_fail(e, CLIPSCORE_EARG, "preprocess: invalid size %d", cfg ? cfg->size : 0);
    for (int c = 0; c < 3; c++)
        if (!(cfg->std[c] != 0.0f))
            return cs_fail(e, CLIPSCORE_EARG, "preprocess: std[%d] is zero", c);
    int r = cfg->size, rw, rh;
    /* The size the reference sizes its resize from: the image's own, or
     * the one Pillow reported before load() turned it (cs_image.ref_w). */
    int sw = img->ref_w > 0 ? img->ref_w : img->w, sh = img->ref_h > 0 ? img->ref_h : img->h;
    cs_image_resized_size(sw, sh, r, &rw, &rh);
    if (rw > (1 << 24) || rh > (1 << 24))
        return cs_fail(e, CLIPSCORE_ELIMIT, "preprocess: %dx%d is too elongated to resize to %d",
                       img->w, img->h, r);
    int left = cs_image_crop_offset(rw, r), top = cs_image_crop_offset(rh, r);
    int ch = img->channels;
    /* torchvision 0.14 asks Pillow to resize even to the same size (its
     * check compares a tuple with a list), and Pillow then copies. */
    int resized = rw != img->w || rh != img->h;
    unsigned char *win = cs_malloc((size_t)r * r, (size_t)ch, e);
    if (!win) return CLIPSCORE_ENOMEM;
    int rc = resize_window(img, rw, rh, left, top, r, r, img->palette, win, e);
    if (rc) {
        free(win);
        return rc;
    }
    /* ToTensor then Normalize, in float32 as torch does: (v / 255 - mean) /
     * std. A table per channel gives the same floats for less work. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) lut[c][v] = ((float)v / 255.0f - cfg->mean[c]) / cfg->std[c];
    size_t plane = (size_t)r * r;
    /* convert("RGB"): CMYK converted (in place: 3 of every 4 bytes), gray
     * replicated, alpha dropped. "PA" looks its index up in its palette
     * only when the resize was a copy: Pillow 9.4's resampled image gets
     * the default palette, a gray ramp, so the resampled index is a gray
     * level. */
    if (img->cmyk)
        for (size_t i = 0; i < plane; i++) cs_cmyk_to_rgb(win + 4 * i, win + 4 * i);
    const unsigned char *pal = resized ? NULL : img->pal;
    for (int c = 0; c < 3; c++) {
        int src_c = ch >= 3 ? c : 0;
        const unsigned char *p = win + src_c;
        float *o = out + (size_t)c * plane;
        if (pal)
            for (size_t i = 0; i < plane; i++, p += ch) o[i] = lut[c][pal[3 * *p + c]];
        else
            for (size_t i = 0; i < plane; i++, p += ch) o[i] = lut[c][*p];
    }
    free(win);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Thumbnails                                                                */

int cs_image_thumbnail(const cs_image *img, int max_side, cs_image *thumb, cs_error *e) {
    memset(thumb, 0, sizeof *thumb);
    if (!valid_image(img)) return cs_fail(e, CLIPSCORE_EARG, "thumbnail: invalid image");
    if (max_side < 1 || max_side > (1 << 16))
        return cs_fail(e, CLIPSCORE_EARG, "thumbnail: invalid size %d", max_side);
    /* The longer side becomes max_side (small images are enlarged too, so
     * that a figure's tiles look alike); the other keeps the aspect ratio. */
    int tw, th;
    if (img->w >= img->h) {
        tw = max_side;
        th = (int)((double)img->h * max_side / img->w + 0.5);
    } else {
        th = max_side;
        tw = (int)((double)img->w * max_side / img->h + 0.5);
    }
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    /* "PA" is resized nearest, so that every index stays one of the
     * palette's (the figure shows its colours, not the reference's gray). */
    cs_image sized;
    int rc = img->pal ? cs_image_resize_nearest(img, tw, th, &sized, e)
                      : cs_image_resize(img, tw, th, &sized, e);
    if (rc) return rc;
    if ((rc = cs_image_alloc(thumb, tw, th, 3, e))) {
        cs_image_free(&sized);
        return rc;
    }
    int ch = sized.channels;
    size_t n = (size_t)tw * th;
    const unsigned char *s = sized.px;
    unsigned char *o = thumb->px;
    if (img->cmyk) {
        for (size_t i = 0; i < n; i++) cs_cmyk_to_rgb(s + 4 * i, o + 3 * i);
        cs_image_free(&sized);
        return 0;
    }
    for (size_t i = 0; i < n; i++, s += ch, o += 3) {
        int gray = ch < 3;
        unsigned a = ch == 2 || ch == 4 ? s[ch - 1] : 255;
        for (int c = 0; c < 3; c++) {
            unsigned v = img->pal ? img->pal[3 * s[0] + c] : s[gray ? 0 : c];
            /* Transparent parts are shown over white. */
            o[c] = (unsigned char)((v * a + 255u * (255u - a) + 127u) / 255u);
        }
    }
    cs_image_free(&sized);
    return 0;
}
