/* image.c - image decoding and the reference (OpenAI CLIP) preprocessing.
 *
 * Covers: reading a file into memory, telling its format from the magic
 * bytes (and naming formats stb_image cannot read), structural checks that
 * stb_image does not make (a truncated JPEG/PNG/GIF/BMP/PNM/TGA is an error,
 * not an image padded with grey), the pixel limit checked from the header,
 * decoding with stb_image, and a resampler that reproduces Pillow 9.4's
 * ImagingResample (antialiased bicubic, 8-bit fixed point, premultiplied
 * alpha) and its nearest-neighbour scaling for palette images, so that the
 * preprocessed tensor matches torchvision's Resize/CenterCrop/ToTensor/
 * Normalize byte for byte on PNGs.
 * JPEGs go through libjpeg instead when the build provides it (see below).
 * Leaves out: EXIF orientation and colour profiles (the reference ignores
 * both), animation (first frame only), truncation checks for PSD/HDR and
 * RLE TGA files, Pillow's handling of 16-bit gray PNGs (mode "I", which it
 * saturates to white; here they are scaled to 8 bits) and of CMYK JPEGs
 * (resized before conversion to RGB there, converted first here). */
#include "image.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

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
static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
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
    FMT_TGA
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

/* Recognises the formats stb_image reads (returned) and a list of common
 * ones it does not (FMT_UNKNOWN with *unsupported naming it). Text files get
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
    if (n >= 3 && d[0] == 'P' && (d[1] == '5' || d[1] == '6') &&
        (d[2] == ' ' || d[2] == '\t' || d[2] == '\n' || d[2] == '\r' || d[2] == '#'))
        return FMT_PNM;

    const char *u = NULL;
    if (starts(d, n, "II*\0", 4) || starts(d, n, "MM\0*", 4))
        u = "TIFF";
    else if (starts(d, n, "II+\0", 4) || starts(d, n, "MM\0+", 4))
        u = "BigTIFF";
    else if (starts(d, n, "RIFF", 4) && n >= 12 && !memcmp(d + 8, "WEBP", 4))
        u = "WebP";
    else if (n >= 12 && !memcmp(d + 4, "ftyp", 4))
        u = isobmff_name(d, n);
    else if (starts(d, n, "\xff\x0a", 2) || starts(d, n, "\0\0\0\x0cJXL \r\n\x87\n", 12))
        u = "JPEG XL";
    else if (starts(d, n, "\0\0\0\x0cjP  \r\n\x87\n", 12) || starts(d, n, "\xff\x4f\xff\x51", 4))
        u = "JPEG 2000";
    else if (starts(d, n, "\0\0\1\0", 4) && n >= 22 && le16(d + 4) > 0)
        u = "ICO";
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
    else if (n >= 2 && d[0] == 'P' && d[1] >= '1' && d[1] <= '4')
        u = "ASCII or 1-bit PNM";
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
} file_facts;

/* Walks the PNG chunks up to IEND; notes the IHDR facts. */
static int check_png(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    size_t pos = 8;
    int seen_ihdr = 0, trns = 0, color = 0, depth = 0;
    for (;;) {
        if (pos + 8 > n) {
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNG (no IEND chunk at the end)",
                           label);
        }
        uint32_t len = be32(d + pos);
        const unsigned char *type = d + pos + 4;
        if (len > 0x7fffffffu)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (bad chunk length)", label);
        if ((uint64_t)pos + 12 + len > n)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNG (ends inside a %.4s chunk)",
                           label, (const char *)type);
        const unsigned char *body = d + pos + 8;
        if (!seen_ihdr) {
            if (memcmp(type, "IHDR", 4) != 0 || len != 13)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (first chunk is not IHDR)",
                               label);
            uint32_t w = be32(body), h = be32(body + 4);
            if (w == 0 || h == 0 || w > INT_MAX || h > INT_MAX)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNG (size %ux%u)", label,
                               (unsigned)w, (unsigned)h);
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
    return 0;
}

/* Walks the JPEG markers through every scan up to EOI. Also names the
 * JPEG variants stb_image does not decode. */
static int check_jpeg(const unsigned char *d, size_t n, const char *label, cs_error *e) {
    size_t pos = 2;
    int seen_sof = 0;
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
        pos += len;
        if (m == 0xda) {
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

/* Pillow drops a GIF palette that is the identity gray ramp (mode "L"). */
static int gif_palette_is_gray_ramp(const unsigned char *p, size_t entries) {
    for (size_t i = 0; i < entries; i++)
        if (p[3 * i] != i || p[3 * i + 1] != i || p[3 * i + 2] != i) return 0;
    return 1;
}

/* Skips GIF data sub-blocks; returns the position after the terminator or 0. */
static size_t gif_skip_blocks(const unsigned char *d, size_t n, size_t pos) {
    for (;;) {
        if (pos >= n) return 0;
        size_t len = d[pos++];
        if (len == 0) return pos;
        pos += len;
    }
}

/* Walks a GIF up to the end of its first image (the one decoded). */
static int check_gif(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    if (n < 13) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (header)", label);
    size_t pos = 13;
    int flags = d[10];
    const unsigned char *global = NULL;
    size_t global_n = 0;
    if (flags & 0x80) {
        global_n = (size_t)2 << (flags & 7);
        global = d + pos;
        pos += 3 * global_n;
        if (pos > n) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (palette)", label);
    }
    for (;;) {
        if (pos >= n) break;
        int b = d[pos++];
        if (b == 0x21) { /* extension: label, then sub-blocks */
            if (pos >= n || !(pos = gif_skip_blocks(d, n, pos + 1))) break;
        } else if (b == 0x2c) { /* image descriptor */
            if (pos + 9 > n) break;
            int lflags = d[pos + 8];
            pos += 9;
            const unsigned char *pal = global;
            size_t pal_n = global_n;
            if (lflags & 0x80) {
                pal_n = (size_t)2 << (lflags & 7);
                pal = d + pos;
                pos += 3 * pal_n;
                if (pos > n) break;
            }
            f->palette = pal && !gif_palette_is_gray_ramp(pal, pal_n);
            /* A gray-ramp GIF is mode "L" in Pillow: one channel, bicubic. */
            f->req_comp = f->palette ? 4 : 1;
            if (pos >= n || !gif_skip_blocks(d, n, pos + 1)) break; /* LZW size, data */
            return 0;
        } else if (b == 0x3b) {
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (no image)", label);
        } else {
            return 0; /* unknown block: stb_image reports it */
        }
    }
    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (first image incomplete)", label);
}

/* BMP: RLE/embedded variants, truncated pixel arrays, Pillow's palette modes. */
static int check_bmp(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    uint32_t offset = le32(d + 10), hsize = le32(d + 14);
    int64_t w, h;
    unsigned bpp, compression = 0, colors = 0, entry = 4;
    if (hsize == 12 && n >= 26) {
        w = le16(d + 18);
        h = le16(d + 20);
        bpp = le16(d + 24);
        entry = 3;
    } else if (hsize >= 40 && n >= 54) {
        w = (int32_t)le32(d + 18);
        h = (int32_t)le32(d + 22);
        bpp = le16(d + 28);
        compression = le32(d + 30);
        colors = le32(d + 46);
    } else {
        return 0; /* let stb_image judge odd headers */
    }
    if (compression == 1 || compression == 2)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: RLE-compressed BMP is not supported", label);
    if (compression == 4 || compression == 5)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: BMP with embedded %s is not supported",
                       label, compression == 4 ? "JPEG" : "PNG");
    if (w < 0) w = -w;
    if (h < 0) h = -h;
    if (compression == 0 || compression == 3 || compression == 6) {
        uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4;
        if ((uint64_t)offset + stride * (uint64_t)h > n)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated BMP (pixel data incomplete)",
                           label);
    }
    /* Pillow reads 32-bit BI_RGB as RGB (the fourth byte is padding). */
    if (bpp == 32 && compression == 0) f->req_comp = 3;
    if (bpp <= 8) {
        /* Pillow: a palette that is the gray ramp (0..colors-1, or black and
         * white for two colours) gives mode "L" (or "1"); otherwise "P". */
        if (colors == 0 || colors > 256) colors = 1u << bpp;
        size_t pal = 14 + (size_t)hsize;
        int gray = 1;
        for (unsigned i = 0; i < colors && gray; i++) {
            unsigned v = colors == 2 ? (i ? 255 : 0) : i;
            size_t p = pal + (size_t)i * entry;
            if (p + 3 > n || d[p] != v || d[p + 1] != v || d[p + 2] != v) gray = 0;
        }
        f->palette = !gray || colors == 2;
    }
    return 0;
}

/* PNM (binary P5/P6): stb_image does not notice a short pixel array. */
static int check_pnm(const unsigned char *d, size_t n, const char *label, cs_error *e) {
    size_t pos = 2;
    uint64_t v[3];
    for (int i = 0; i < 3; i++) {
        for (;;) { /* whitespace and comments */
            while (pos < n && (d[pos] == ' ' || d[pos] == '\t' || d[pos] == '\n' ||
                               d[pos] == '\r' || d[pos] == '\f' || d[pos] == '\v'))
                pos++;
            if (pos < n && d[pos] == '#') {
                while (pos < n && d[pos] != '\n' && d[pos] != '\r') pos++;
                continue;
            }
            break;
        }
        if (pos >= n || d[pos] < '0' || d[pos] > '9')
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNM header", label);
        v[i] = 0;
        while (pos < n && d[pos] >= '0' && d[pos] <= '9' && v[i] < (1u << 30))
            v[i] = v[i] * 10 + (uint64_t)(d[pos++] - '0');
        if (pos < n && d[pos] >= '0' && d[pos] <= '9')
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNM header (number too large)",
                           label);
    }
    pos++; /* the single whitespace byte before the pixels */
    uint64_t need = v[0] * v[1] * (d[1] == '6' ? 3u : 1u) * (v[2] > 255 ? 2u : 1u);
    if (v[0] == 0 || v[1] == 0 || v[2] == 0 || v[2] > 65535)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PNM header (size or maxval)", label);
    if (pos > n || n - pos < need)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PNM (pixel data incomplete)", label);
    return 0;
}

/* TGA: colour-mapped files are mode "P" in Pillow; uncompressed ones must
 * hold all their pixels. */
static int check_tga(const unsigned char *d, size_t n, const char *label, file_facts *f,
                     cs_error *e) {
    if (n < 18) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated TGA (header)", label);
    int type = d[2];
    f->palette = type == 1 || type == 9;
    if (type == 1 || type == 2 || type == 3) {
        uint64_t need = 18 + (uint64_t)d[0];
        if (d[1]) need += (uint64_t)le16(d + 5) * ((d[7] + 7u) / 8u);
        need += (uint64_t)le16(d + 12) * le16(d + 14) * ((d[16] + 7u) / 8u);
        if (need > n)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated TGA (pixel data incomplete)",
                           label);
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
 * stb_image (CMYK/YCCK); 3: out of memory. */
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
    else
        return 2;
    job->cinfo.dct_method = JDCT_ISLOW;
    job->cinfo.do_fancy_upsampling = TRUE;
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
static int decode_libjpeg(const unsigned char *d, size_t n, const char *label, cs_image *img,
                          cs_error *e) {
    jpeg_job *job = cs_calloc(1, sizeof *job, e);
    if (!job) return CLIPSCORE_ENOMEM;
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
/* Loading                                                                   */

int cs_image_load_memory(const void *data, size_t len, const char *label, int64_t max_pixels,
                         cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    const unsigned char *d = data;
    if (!label) label = "(memory)";
    if (!d || len == 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: empty file", label);
    if (len > (size_t)INT_MAX)
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: file larger than %d bytes", label, INT_MAX);

    const char *unsupported, *text;
    img_format fmt = sniff(d, len, &unsupported, &text);
    if (unsupported)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: %s images are not supported (use PNG, JPEG, BMP, GIF, TGA, PSD, "
                       "PNM or HDR)",
                       label, unsupported);
    if (text) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s, not an image", label, text);

    int iw = 0, ih = 0, icomp = 0;
    if (fmt == FMT_UNKNOWN) {
        /* Without a magic number the only format left that stb_image reads
         * is TGA; the TGA header test is loose, so check_tga() below matters.
         * stbi_info tries every format, and some of its parsers go past a
         * magic the sniffer rejected (JPEG after 0xFF fill bytes, "P5" with
         * no space), into code that check_jpeg()/check_pnm() guard: so only
         * a TGA colour-map type (0 or 1, byte 1) gets that far; it rules out
         * every other format's magic. */
        if (len < 3 || d[1] > 1 || !stbi_info_from_memory(d, (int)len, &iw, &ih, &icomp))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: unknown image format (not PNG, JPEG, ...)",
                           label);
        fmt = FMT_TGA;
    }

    /* The structure is checked before stb_image parses anything of a known
     * format (its JPEG header parser already reads Huffman tables). */
    file_facts f = {0, 0, 0, 0};
    int rc = 0;
    switch (fmt) {
    case FMT_PNG:
        rc = check_png(d, len, label, &f, e);
        break;
    case FMT_JPEG:
        rc = check_jpeg(d, len, label, e);
        break;
    case FMT_GIF:
        rc = check_gif(d, len, label, &f, e);
        break;
    case FMT_BMP:
        rc = check_bmp(d, len, label, &f, e);
        break;
    case FMT_PNM:
        rc = check_pnm(d, len, label, e);
        break;
    case FMT_TGA:
        rc = check_tga(d, len, label, &f, e);
        break;
    default:
        break;
    }
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
    int64_t pixels = (int64_t)iw * ih;
    if (max_pixels > 0 && pixels > max_pixels)
        return cs_fail(e, CLIPSCORE_ELIMIT,
                       "%s: %dx%d is %lld pixels, over the limit of %lld (raise max_pixels to "
                       "allow it)",
                       label, iw, ih, (long long)pixels, (long long)max_pixels);

#if defined(CLIPSCORE_HAVE_LIBJPEG)
    if (fmt == FMT_JPEG) {
        rc = decode_libjpeg(d, len, label, img, e);
        if (rc <= 0) return rc;
    }
#endif
    int w = 0, h = 0, comp = 0;
    unsigned char *px = stbi_load_from_memory(d, (int)len, &w, &h, &comp, f.req_comp);
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
    img->w = w;
    img->h = h;
    img->channels = channels;
    img->px = px; /* stb_image allocates with malloc: cs_image_free's free() matches */
    img->palette = f.palette;
    return 0;
}

int cs_image_load(const char *path, int64_t max_pixels, cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    if (!path || !*path) return cs_fail(e, CLIPSCORE_EARG, "image path is empty");
    if (cs_is_dir(path)) return cs_fail(e, CLIPSCORE_EIO, "%s: is a folder, not a file", path);
    char *data = NULL;
    size_t len = 0;
    int rc = cs_read_file(path, (size_t)INT_MAX, &data, &len, e);
    if (rc) return rc;
    rc = cs_image_load_memory(data, len, path, max_pixels, img, e);
    free(data);
    return rc;
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
    if (ch == 1 || ch == 3)
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
    rc = resize_window(src, w, h, 0, 0, w, h, 0, dst->px, e);
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
    rc = resize_window(src, w, h, 0, 0, w, h, 1, dst->px, e);
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
    cs_image_resized_size(img->w, img->h, r, &rw, &rh);
    if (rw > (1 << 24) || rh > (1 << 24))
        return cs_fail(e, CLIPSCORE_ELIMIT, "preprocess: %dx%d is too elongated to resize to %d",
                       img->w, img->h, r);
    int left = cs_image_crop_offset(rw, r), top = cs_image_crop_offset(rh, r);
    int ch = img->channels;
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
    /* convert("RGB"): gray is replicated, alpha dropped. */
    for (int c = 0; c < 3; c++) {
        int src_c = ch >= 3 ? c : 0;
        const unsigned char *p = win + src_c;
        float *o = out + (size_t)c * plane;
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
    cs_image sized;
    int rc = cs_image_resize(img, tw, th, &sized, e);
    if (rc) return rc;
    if ((rc = cs_image_alloc(thumb, tw, th, 3, e))) {
        cs_image_free(&sized);
        return rc;
    }
    int ch = sized.channels;
    size_t n = (size_t)tw * th;
    const unsigned char *s = sized.px;
    unsigned char *o = thumb->px;
    for (size_t i = 0; i < n; i++, s += ch, o += 3) {
        int gray = ch < 3;
        unsigned a = ch == 2 || ch == 4 ? s[ch - 1] : 255;
        for (int c = 0; c < 3; c++) {
            unsigned v = s[gray ? 0 : c];
            /* Transparent parts are shown over white. */
            o[c] = (unsigned char)((v * a + 255u * (255u - a) + 127u) / 255u);
        }
    }
    cs_image_free(&sized);
    return 0;
}
