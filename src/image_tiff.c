/* image_tiff.c - TIFF through libtiff, into the modes Pillow 9.4 gives.
 * Covers: the header probe (the first IFD's size, wherever it lies in the
 * buffer), strips and tiles, contiguous and planar samples, 1/2/4/8/16-bit
 * unsigned samples: bilevel (mode "1", resized nearest as Pillow does),
 * gray, gray+alpha, RGB, RGBA (associated alpha unpremultiplied as Pillow's
 * "RGBa" unpacker does; ExtraSamples 0 is padding, "RGBX"), palette ("P",
 * colour map >> 8), palette with alpha ("PA": index and alpha kept beside
 * the palette, img->pal, as the reference resizes them), CMYK (kept as
 * CMYK, img->cmyk: the reference resizes it before converting to RGB),
 * YCbCr (JPEG-compressed ones read as RGB as Pillow asks libtiff; others
 * through libtiff's RGBA interface, a strip or tile row a call as Pillow
 * calls it); 16-bit gray scaled to 8 bits (see cs_gray16_to_8), other
 * 16-bit samples take their high byte as Pillow's ";16" unpackers do; the
 * Orientation tag, applied after decoding as Pillow's load_end does; and
 * refusing what Pillow refuses of what libtiff reads: a layout tag given
 * twice with different values (libtiff reads the first, Pillow the last),
 * uncompressed separate planes with more strips than the planes hold, a
 * RowsPerStrip its libtiff decoder cannot hold (ifd_scan, pillow_refuses).
 * Leaves out: pages after the first, float and signed samples, CIELab and
 * other photometrics (EUNSUPPORTED), and other layouts where Pillow's own
 * reader of uncompressed files and libtiff disagree (uncompressed YCbCr,
 * which Pillow reads as RGBX; extra strips of contiguous files). */
#include "image_formats.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tiffio.h>

/* ------------------------------------------------------------------------ */
/* Header probe                                                              */

static unsigned rd16(const unsigned char *p, int le) {
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | p[1];
}
static uint32_t rd32(const unsigned char *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int cs_tiff_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp) {
    if (n < 8) return 0;
    int le = d[0] == 'I';
    if (rd16(d + 2, le) != 42) return -1; /* BigTIFF: sniffed apart */
    uint32_t ifd = rd32(d + 4, le);
    if (ifd < 8) return -1;
    if ((uint64_t)ifd + 2 > n) return 0; /* the IFD may lie at the end */
    unsigned count = rd16(d + ifd, le);
    if (count == 0) return -1;
    /* The entries and the next directory's offset. */
    if ((uint64_t)ifd + 2 + 12u * count + 4 > n) return 0;
    uint32_t tw = 0, th = 0, spp = 1;
    for (unsigned i = 0; i < count; i++) {
        const unsigned char *t = d + ifd + 2 + 12u * i;
        unsigned tag = rd16(t, le), type = rd16(t + 2, le);
        uint32_t v = type == 3 ? rd16(t + 8, le) : type == 4 ? rd32(t + 8, le) : 0;
        if (tag == 256) tw = v;
        if (tag == 257) th = v;
        if (tag == 277) spp = v;
    }
    if (tw == 0 || th == 0 || tw > INT_MAX || th > INT_MAX) return -1;
    *w = (int)tw;
    *h = (int)th;
    if (ncomp) *ncomp = spp >= 1 && spp <= 16 ? (int)spp : 4;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The first directory as Pillow reads it                                    */

/* libtiff keeps the first of two entries with the same tag; Pillow keeps
 * the last one whose data it can read. What Pillow makes of a file beyond
 * libtiff's view, from the raw entries. */
typedef struct ifd_view {
    unsigned orientation;                 /* the Orientation Pillow applies (0: none) */
    uint32_t strip_offsets, tile_offsets; /* values in those entries (Pillow's) */
    int has_strips;                       /* a StripOffsets entry (Pillow prefers it) */
    int has_rps;                          /* a RowsPerStrip entry: rps */
    uint32_t rps, tile_w, tile_h;         /* first values of those (0: no entry) */
    unsigned conflict;                    /* a layout tag the two read differently */
} ifd_view;

/* Bytes of one value of a classic TIFF type (0: a type Pillow skips). */
static unsigned type_size(unsigned type) {
    switch (type) {
    case 1:
    case 2:
    case 6:
    case 7: /* BYTE, ASCII, SBYTE, UNDEFINED */
        return 1;
    case 3:
    case 8: /* SHORT, SSHORT */
        return 2;
    case 4:
    case 9:
    case 11:
    case 13: /* LONG, SLONG, FLOAT, IFD */
        return 4;
    case 5:
    case 10:
    case 12: /* RATIONAL, SRATIONAL, DOUBLE */
        return 8;
    default:
        return 0;
    }
}

static int is_integer_type(unsigned type) {
    return type == 1 || type == 3 || type == 4 || type == 6 || type == 8 || type == 9;
}

/* One entry's data, where it lies in the file (NULL when past the end). */
typedef struct ifd_entry {
    unsigned tag, type;
    uint32_t count;
    const unsigned char *data;
} ifd_entry;

static ifd_entry read_entry(const unsigned char *d, size_t n, const unsigned char *t, int le) {
    ifd_entry x = {rd16(t, le), rd16(t + 2, le), rd32(t + 4, le), NULL};
    uint64_t size = (uint64_t)x.count * type_size(x.type);
    if (size <= 4)
        x.data = t + 8;
    else if (rd32(t + 8, le) + size <= n)
        x.data = d + rd32(t + 8, le);
    return x;
}

/* Value i of an integer entry. */
static uint32_t entry_value(const ifd_entry *x, uint32_t i, int le) {
    switch (type_size(x->type)) {
    case 1:
        return x->data[i];
    case 2:
        return rd16(x->data + 2 * i, le);
    default:
        return rd32(x->data + 4 * i, le);
    }
}

static int same_value(const ifd_entry *a, const ifd_entry *b, int le) {
    if (a->count != b->count) return 0;
    if (is_integer_type(a->type) && is_integer_type(b->type)) {
        for (uint32_t i = 0; i < a->count; i++)
            if (entry_value(a, i, le) != entry_value(b, i, le)) return 0;
        return 1;
    }
    return a->type == b->type && !memcmp(a->data, b->data, (size_t)a->count * type_size(a->type));
}

/* The tags both readers build the pixel layout from. */
static const char *layout_tag(unsigned tag) {
    switch (tag) {
    case 256:
        return "ImageWidth";
    case 257:
        return "ImageLength";
    case 258:
        return "BitsPerSample";
    case 259:
        return "Compression";
    case 262:
        return "PhotometricInterpretation";
    case 266:
        return "FillOrder";
    case 273:
        return "StripOffsets";
    case 277:
        return "SamplesPerPixel";
    case 278:
        return "RowsPerStrip";
    case 279:
        return "StripByteCounts";
    case 284:
        return "PlanarConfiguration";
    case 320:
        return "ColorMap";
    case 322:
        return "TileWidth";
    case 323:
        return "TileLength";
    case 324:
        return "TileOffsets";
    case 325:
        return "TileByteCounts";
    case 338:
        return "ExtraSamples";
    case 339:
        return "SampleFormat";
    default:
        return NULL;
    }
}

/* Reads the first directory's entries (libtiff has opened it already, so
 * its header and entries lie within the buffer). */
static void ifd_scan(const unsigned char *d, size_t n, ifd_view *v) {
    memset(v, 0, sizeof *v);
    if (n < 8) return;
    int le = d[0] == 'I';
    uint32_t ifd = rd32(d + 4, le);
    if ((uint64_t)ifd + 2 > n) return;
    unsigned count = rd16(d + ifd, le);
    if ((uint64_t)ifd + 2 + 12u * count > n) count = (unsigned)((n - ifd - 2) / 12);
    const unsigned char *ents = d + ifd + 2;
    for (unsigned i = 0; i < count; i++) {
        ifd_entry x = read_entry(d, n, ents + 12u * i, le);
        /* Pillow skips an entry of an unknown type, empty, or past the end. */
        if (!type_size(x.type) || x.count == 0 || !x.data) continue;
        if (x.tag == 274) /* a list keeps its first value; other types: none */
            v->orientation = is_integer_type(x.type) ? entry_value(&x, 0, le) : 0;
        if (x.tag == 273) {
            v->strip_offsets = x.count;
            v->has_strips = 1;
        }
        if (x.tag == 324) v->tile_offsets = x.count;
        if (is_integer_type(x.type)) {
            if (x.tag == 278) {
                v->rps = entry_value(&x, 0, le);
                v->has_rps = 1;
            }
            if (x.tag == 322) v->tile_w = entry_value(&x, 0, le);
            if (x.tag == 323) v->tile_h = entry_value(&x, 0, le);
        }
        if (v->conflict || !layout_tag(x.tag)) continue;
        for (unsigned j = 0; j < i; j++) /* libtiff's: the first with this tag */
            if (rd16(ents + 12u * j, le) == x.tag) {
                ifd_entry first = read_entry(d, n, ents + 12u * j, le);
                if (!first.data || !type_size(first.type) || !same_value(&first, &x, le))
                    v->conflict = x.tag;
                break;
            }
    }
}

/* ------------------------------------------------------------------------ */
/* libtiff on a memory buffer, errors kept per handle                        */

typedef struct mem_file {
    const unsigned char *d;
    size_t n, pos;
    char msg[256]; /* libtiff's first error */
    int short_tag; /* a tag's data ran past the end (libtiff only warns) */
} mem_file;

static tmsize_t mem_read(thandle_t h, void *buf, tmsize_t size) {
    mem_file *m = h;
    if (size <= 0 || m->pos >= m->n) return 0;
    size_t k = (size_t)size < m->n - m->pos ? (size_t)size : m->n - m->pos;
    memcpy(buf, m->d + m->pos, k);
    m->pos += k;
    return (tmsize_t)k;
}
static tmsize_t mem_write(thandle_t h, void *buf, tmsize_t size) {
    (void)h;
    (void)buf;
    (void)size;
    return -1;
}
static toff_t mem_seek(thandle_t h, toff_t off, int whence) {
    mem_file *m = h;
    uint64_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->n : 0;
    uint64_t to = base + off;
    if (to > ((uint64_t)1 << 62)) return (toff_t)-1;
    m->pos = to > m->n ? m->n : (size_t)to; /* reads past the end get nothing */
    return to;
}
static int mem_close(thandle_t h) {
    (void)h;
    return 0;
}
static toff_t mem_size(thandle_t h) {
    return ((mem_file *)h)->n;
}
static int mem_map(thandle_t h, void **base, toff_t *size) {
    (void)h;
    (void)base;
    (void)size;
    return 0;
}
static void mem_unmap(thandle_t h, void *base, toff_t size) {
    (void)h;
    (void)base;
    (void)size;
}

static int on_error(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)module;
    mem_file *m = user;
    if (!m->msg[0]) vsnprintf(m->msg, sizeof m->msg, fmt, ap);
    return 1; /* handled: nothing on stderr */
}
static int on_warning(TIFF *tif, void *user, const char *module, const char *fmt, va_list ap) {
    (void)tif;
    (void)module;
    /* Warnings are ignored, as Pillow does, but for one: libtiff drops a
     * tag whose data lies past the end of the file (a colour map too, and
     * then reads a palette image as gray), which means a truncated file. */
    mem_file *m = user;
    char text[256];
    vsnprintf(text, sizeof text, fmt, ap);
    if (strstr(text, "IO error during reading of")) m->short_tag = 1;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* Reading samples                                                           */

typedef struct tiff_layout {
    uint32_t w, h;
    uint16_t spp, bps, photometric, planar, compression;
    int separate;
    size_t plane_row; /* bytes of one row of one plane (all samples when contiguous) */
} tiff_layout;

/* Reads every plane into planes (nplanes * h * plane_row bytes). */
static int read_planes(TIFF *tif, const tiff_layout *L, unsigned char *planes, mem_file *m,
                       const char *label, cs_error *e) {
    int nplanes = L->separate ? L->spp : 1;
    size_t plane_bytes = (size_t)L->h * L->plane_row;
    if (!TIFFIsTiled(tif)) {
        uint32_t rps = 0;
        TIFFGetFieldDefaulted(tif, TIFFTAG_ROWSPERSTRIP, &rps);
        if (rps == 0 || rps > L->h) rps = L->h;
        uint32_t per = (L->h + rps - 1) / rps;
        if ((uint64_t)per * nplanes > TIFFNumberOfStrips(tif))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (missing strips)", label);
        for (int p = 0; p < nplanes; p++)
            for (uint32_t s = 0; s < per; s++) {
                uint32_t rows = L->h - s * rps < rps ? L->h - s * rps : rps;
                tmsize_t want = (tmsize_t)(rows * L->plane_row);
                unsigned char *dst = planes + p * plane_bytes + (size_t)s * rps * L->plane_row;
                if (TIFFReadEncodedStrip(tif, (uint32_t)p * per + s, dst, want) != want)
                    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt TIFF (%s)",
                                   label, m->msg[0] ? m->msg : "strip incomplete");
            }
        return 0;
    }
    uint32_t tw = 0, th = 0;
    TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
    TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
    tmsize_t tsize = TIFFTileSize(tif), trow = TIFFTileRowSize(tif);
    if (tw == 0 || th == 0 || tsize <= 0 || trow <= 0 || (uint64_t)trow * th > (uint64_t)tsize)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (tile size)", label);
    unsigned char *tile = cs_malloc((size_t)tsize, 1, e);
    if (!tile) return CLIPSCORE_ENOMEM;
    int rc = 0;
    size_t bits_per_col = (size_t)L->bps * (L->separate ? 1 : L->spp);
    for (int p = 0; p < nplanes && !rc; p++)
        for (uint32_t y = 0; y < L->h && !rc; y += th)
            for (uint32_t x = 0; x < L->w && !rc; x += tw) {
                if (TIFFReadEncodedTile(tif, TIFFComputeTile(tif, x, y, 0, (uint16_t)p), tile,
                                        tsize) != tsize) {
                    rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt TIFF (%s)", label,
                                 m->msg[0] ? m->msg : "tile incomplete");
                    break;
                }
                /* Tile widths are multiples of 16, so tiles start on bytes. */
                size_t off = (size_t)x * bits_per_col / 8;
                size_t len = L->plane_row - off < (size_t)trow ? L->plane_row - off : (size_t)trow;
                for (uint32_t r = 0; r < th && y + r < L->h; r++)
                    memcpy(planes + p * plane_bytes + (size_t)(y + r) * L->plane_row + off,
                           tile + (size_t)r * trow, len);
            }
    free(tile);
    return rc;
}

/* Sample s (0-based, of spp) of pixel x in row y, at the file's depth. */
static unsigned sample(const tiff_layout *L, const unsigned char *planes, uint32_t x, uint32_t y,
                       int s) {
    const unsigned char *row;
    size_t i;
    if (L->separate) {
        row = planes + (size_t)s * L->h * L->plane_row + (size_t)y * L->plane_row;
        i = x;
    } else {
        row = planes + (size_t)y * L->plane_row;
        i = (size_t)x * L->spp + (size_t)s;
    }
    switch (L->bps) {
    case 8:
        return row[i];
    case 16: {
        uint16_t v; /* libtiff hands 16-bit samples over in native order */
        memcpy(&v, row + 2 * i, 2);
        return v;
    }
    default: { /* 1, 2, 4: most significant bits first */
        size_t bit = i * L->bps;
        return (row[bit / 8] >> (8 - L->bps - bit % 8)) & ((1u << L->bps) - 1);
    }
    }
}

/* A sample scaled to 8 bits as Pillow's unpackers do ("L;2" x85, "L;4" x17,
 * ";16" high byte). */
static unsigned to8(unsigned v, int bps) {
    switch (bps) {
    case 1:
        return v ? 255 : 0;
    case 2:
        return v * 85;
    case 4:
        return v * 17;
    case 16:
        return v >> 8;
    default:
        return v;
    }
}

/* Pillow's "RGBa"/"La" unpacking: 255 * c / a, clipped; alpha 0 is black. */
static unsigned unpremul(unsigned c, unsigned a) {
    if (a == 0) return 0;
    if (a == 255) return c;
    unsigned v = c * 255u / a;
    return v > 255 ? 255 : v;
}

/* Decodes through libtiff's RGBA interface (YCbCr not JPEG-compressed), a
 * block of rows (a strip's or a tile row's) a call, as Pillow does: with an
 * Orientation that flips, libtiff flips each block on its own (Pillow then
 * transposes the whole image as well, see orient()). */
static int decode_rgba(TIFF *tif, const tiff_layout *L, mem_file *m, const char *label,
                       cs_image *img, cs_error *e) {
    char emsg[1024] = "";
    uint32_t block = 0;
    if (!TIFFGetFieldDefaulted(tif, TIFFIsTiled(tif) ? TIFFTAG_TILELENGTH : TIFFTAG_ROWSPERSTRIP,
                               &block) ||
        block == UINT32_MAX || block == 0)
        block = L->h;
    /* Pillow's buffer of a block, 4 bytes a pixel, stays under 2^31 (when
     * it asks libtiff: uncompressed files it reads itself). */
    if (L->compression != COMPRESSION_NONE &&
        (L->w > INT_MAX / 4 || (uint32_t)(INT_MAX / (4 * L->w)) < block))
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: unreadable TIFF (%u rows a %s, too many for a %u-pixel row)", label,
                       block, TIFFIsTiled(tif) ? "tile" : "strip", L->w);
    TIFFRGBAImage ri;
    if (!TIFFRGBAImageOK(tif, emsg) || !TIFFRGBAImageBegin(&ri, tif, 0, emsg))
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: TIFF variant not supported (%s)", label,
                       emsg);
    ri.req_orientation = ORIENTATION_TOPLEFT;
    ri.col_offset = 0;
    uint32_t rows = block < L->h ? block : L->h;
    uint32_t *raster = cs_malloc((size_t)L->w * rows, sizeof *raster, e);
    int rc = raster ? cs_image_alloc(img, (int)L->w, (int)L->h, 3, e) : CLIPSCORE_ENOMEM;
    for (uint32_t y = 0; !rc && y < L->h; y += rows) {
        uint32_t k = L->h - y < rows ? L->h - y : rows;
        ri.row_offset = (int)y;
        if (!TIFFRGBAImageGet(&ri, raster, L->w, k)) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt TIFF (%s)", label,
                         m->msg[0] ? m->msg : "RGBA decode failed");
            break;
        }
        unsigned char *o = img->px + (size_t)y * L->w * 3;
        for (size_t i = 0; i < (size_t)L->w * k; i++, o += 3) {
            o[0] = (unsigned char)TIFFGetR(raster[i]);
            o[1] = (unsigned char)TIFFGetG(raster[i]);
            o[2] = (unsigned char)TIFFGetB(raster[i]);
        }
    }
    TIFFRGBAImageEnd(&ri);
    free(raster);
    return rc;
}

/* Pillow's load_end: the Orientation tag applied as a transpose of the
 * decoded image, in every mode (2 mirrors, 3 turns 180 degrees, 4 flips,
 * 5 transposes, 6 turns clockwise, 7 transverses, 8 turns anticlockwise). */
static int orient(cs_image *img, unsigned orientation, cs_error *e) {
    if (orientation < 2 || orientation > 8) return 0;
    int w = img->w, h = img->h, ch = img->channels, swap = orientation >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    unsigned char *out = cs_malloc((size_t)w * h, (size_t)ch, e);
    if (!out) return CLIPSCORE_ENOMEM;
    unsigned char *o = out;
    for (int r = 0; r < oh; r++)
        for (int c = 0; c < ow; c++, o += ch) {
            int sr, sc; /* the source pixel of output (r, c) */
            switch (orientation) {
            case 2:
                sr = r;
                sc = w - 1 - c;
                break;
            case 3:
                sr = h - 1 - r;
                sc = w - 1 - c;
                break;
            case 4:
                sr = h - 1 - r;
                sc = c;
                break;
            case 5:
                sr = c;
                sc = r;
                break;
            case 6:
                sr = h - 1 - c;
                sc = r;
                break;
            case 7:
                sr = h - 1 - c;
                sc = w - 1 - r;
                break;
            default:
                sr = c;
                sc = w - 1 - r;
                break;
            }
            memcpy(o, img->px + ((size_t)sr * w + sc) * ch, (size_t)ch);
        }
    free(img->px);
    img->px = out;
    if (swap) {
        /* The reference's Resize reads the size Pillow reported before
         * load() turned the image (see cs_image.ref_w). */
        img->ref_w = w;
        img->ref_h = h;
    }
    img->w = ow;
    img->h = oh;
    return 0;
}

/* The mode Pillow opens the file in, as channels and what alpha means. */
static int convert(TIFF *tif, const tiff_layout *L, const unsigned char *planes, const char *label,
                   cs_image *img, cs_error *e) {
    uint16_t nextra = 0, *extra = NULL;
    TIFFGetField(tif, TIFFTAG_EXTRASAMPLES, &nextra, &extra);
    int ph = L->photometric, bps = L->bps;
    int color = ph == PHOTOMETRIC_RGB || ph == PHOTOMETRIC_YCBCR;
    int base = color ? 3 : ph == PHOTOMETRIC_SEPARATED ? 4 : 1;
    if (L->spp < base)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (%u samples for photometric %d)",
                       label, L->spp, ph);
    /* Alpha: the first extra sample when it says so (1 associated, 2
     * unassociated), or an RGBA file that omits ExtraSamples (Pillow's
     * table reads it as RGBA). 0 is padding ("RGBX"). */
    int alpha = 0, assoc = 0;
    if (L->spp > base && ph != PHOTOMETRIC_SEPARATED && ph != PHOTOMETRIC_PALETTE && bps >= 8) {
        if (nextra > 0 && extra)
            alpha = extra[0] == EXTRASAMPLE_ASSOCALPHA || extra[0] == EXTRASAMPLE_UNASSALPHA;
        else
            alpha = color && L->spp == 4;
        assoc = alpha && nextra > 0 && extra && extra[0] == EXTRASAMPLE_ASSOCALPHA;
    }
    /* Pillow's "PA": 8-bit index and one unassociated alpha, kept as they
     * are with the colour map beside them (see cs_image.pal). */
    int pa = ph == PHOTOMETRIC_PALETTE && L->spp == 2 && bps == 8 && nextra == 1 && extra &&
             extra[0] == EXTRASAMPLE_UNASSALPHA;
    int ch = (ph == PHOTOMETRIC_MINISBLACK || ph == PHOTOMETRIC_MINISWHITE) ? 1
             : ph == PHOTOMETRIC_SEPARATED                                  ? 4
             : pa                                                           ? 2
                                                                            : 3;
    ch += alpha;
    int rc = cs_image_alloc(img, (int)L->w, (int)L->h, ch, e);
    if (rc) return rc;
    img->cmyk = ph == PHOTOMETRIC_SEPARATED; /* converted after the resize */
    uint16_t *cr = NULL, *cg = NULL, *cb = NULL;
    if (ph == PHOTOMETRIC_PALETTE) {
        if (!TIFFGetField(tif, TIFFTAG_COLORMAP, &cr, &cg, &cb) || !cr || !cg || !cb) {
            cs_image_free(img);
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (palette without colour map)",
                           label);
        }
        img->palette = !pa; /* "P": resized nearest; "PA" bicubic */
    }
    if (pa) {
        if (!(img->pal = cs_malloc(256, 3, e))) {
            cs_image_free(img);
            return CLIPSCORE_ENOMEM;
        }
        for (int i = 0; i < 256; i++) { /* Pillow's palette: the map's entries >> 8 */
            img->pal[3 * i] = (unsigned char)(cr[i] >> 8);
            img->pal[3 * i + 1] = (unsigned char)(cg[i] >> 8);
            img->pal[3 * i + 2] = (unsigned char)(cb[i] >> 8);
        }
        for (uint32_t y = 0; y < L->h; y++)
            for (uint32_t x = 0; x < L->w; x++) {
                unsigned char *o = img->px + 2 * ((size_t)y * L->w + x);
                o[0] = (unsigned char)sample(L, planes, x, y, 0);
                o[1] = (unsigned char)sample(L, planes, x, y, 1);
            }
        return 0;
    }
    if ((ph == PHOTOMETRIC_MINISBLACK || ph == PHOTOMETRIC_MINISWHITE) && bps == 1)
        img->palette = 1; /* mode "1": Pillow resizes it with nearest neighbour */
    unsigned char *o = img->px;
    for (uint32_t y = 0; y < L->h; y++)
        for (uint32_t x = 0; x < L->w; x++, o += ch) {
            unsigned a = alpha ? to8(sample(L, planes, x, y, base), bps) : 255;
            switch (ph) {
            case PHOTOMETRIC_MINISBLACK:
            case PHOTOMETRIC_MINISWHITE: {
                unsigned v = sample(L, planes, x, y, 0);
                if (ph == PHOTOMETRIC_MINISWHITE) v = ((1u << bps) - 1) - v;
                o[0] = (unsigned char)(bps == 16 && !alpha ? cs_gray16_to_8(v) : to8(v, bps));
                break;
            }
            case PHOTOMETRIC_PALETTE: {
                unsigned v = sample(L, planes, x, y, 0);
                /* The map has 1 << bps entries (libtiff checks its length). */
                o[0] = (unsigned char)(cr[v] >> 8);
                o[1] = (unsigned char)(cg[v] >> 8);
                o[2] = (unsigned char)(cb[v] >> 8);
                break;
            }
            case PHOTOMETRIC_SEPARATED: /* Pillow's mode "CMYK" */
                for (int c = 0; c < 4; c++)
                    o[c] = (unsigned char)to8(sample(L, planes, x, y, c), bps);
                break;
            default:
                for (int c = 0; c < 3; c++)
                    o[c] = (unsigned char)to8(sample(L, planes, x, y, c), bps);
                break;
            }
            if (alpha) {
                if (assoc)
                    for (int c = 0; c < ch - 1; c++) o[c] = (unsigned char)unpremul(o[c], a);
                o[ch - 1] = (unsigned char)a;
            }
        }
    return 0;
}

static int decode_pixels(TIFF *tif, mem_file *m, const char *label, int64_t max_pixels,
                         cs_image *img, cs_error *e) {
    tiff_layout L = {0};
    uint16_t fmt = SAMPLEFORMAT_UINT;
    if (!TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &L.w) ||
        !TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &L.h) || L.w == 0 || L.h == 0 || L.w > INT_MAX ||
        L.h > INT_MAX)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (no image size)", label);
    int rc = cs_image_check_limit(label, (int)L.w, (int)L.h, max_pixels, e);
    if (rc) return rc;
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &L.spp);
    TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &L.bps);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &L.planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &fmt);
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &L.compression);
    if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &L.photometric))
        L.photometric = L.spp >= 3 ? PHOTOMETRIC_RGB : PHOTOMETRIC_MINISBLACK;
    if (fmt != SAMPLEFORMAT_UINT && fmt != SAMPLEFORMAT_VOID)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: TIFF with %s samples is not supported",
                       label, fmt == SAMPLEFORMAT_IEEEFP ? "floating-point" : "signed or complex");
    if (L.photometric == PHOTOMETRIC_YCBCR) {
        if (L.compression == COMPRESSION_JPEG) /* As Pillow: libjpeg converts to RGB. */
            TIFFSetField(tif, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
        else
            return decode_rgba(tif, &L, m, label, img, e);
    }
    int ph = L.photometric;
    if (ph != PHOTOMETRIC_MINISBLACK && ph != PHOTOMETRIC_MINISWHITE && ph != PHOTOMETRIC_RGB &&
        ph != PHOTOMETRIC_PALETTE && ph != PHOTOMETRIC_SEPARATED && ph != PHOTOMETRIC_YCBCR)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: TIFF with photometric interpretation %d is not supported", label, ph);
    if (ph == PHOTOMETRIC_SEPARATED) {
        uint16_t inkset = INKSET_CMYK;
        TIFFGetFieldDefaulted(tif, TIFFTAG_INKSET, &inkset);
        if (inkset != INKSET_CMYK)
            return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                           "%s: TIFF with non-CMYK inks is not supported", label);
    }
    int bps_ok = L.bps == 8 || L.bps == 16 ||
                 ((L.bps == 1 || L.bps == 2 || L.bps == 4) &&
                  (ph == PHOTOMETRIC_MINISBLACK || ph == PHOTOMETRIC_MINISWHITE ||
                   ph == PHOTOMETRIC_PALETTE));
    if (ph == PHOTOMETRIC_PALETTE && L.bps == 16) bps_ok = 0;
    if (!bps_ok || L.spp < 1 || L.spp > 16)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: TIFF with %u-bit samples (%u a pixel) is not supported", label, L.bps,
                       L.spp);
    L.separate = L.planar == PLANARCONFIG_SEPARATE && L.spp > 1;
    uint64_t bits = (uint64_t)L.w * L.bps * (L.separate ? 1 : L.spp);
    L.plane_row = (size_t)((bits + 7) / 8);
    /* libtiff's own idea of a row must agree (JPEG colour mode included). */
    if (!TIFFIsTiled(tif) && (tmsize_t)L.plane_row != TIFFScanlineSize(tif))
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: TIFF layout not supported (subsampling)",
                       label);
    size_t nplanes = L.separate ? L.spp : 1;
    unsigned char *planes = cs_malloc(nplanes * L.h, L.plane_row, e);
    if (!planes) return CLIPSCORE_ENOMEM;
    rc = read_planes(tif, &L, planes, m, label, e);
    if (!rc) rc = convert(tif, &L, planes, label, img, e);
    free(planes);
    return rc;
}

/* Layouts libtiff reads and Pillow refuses (v: Pillow's view of the tags).
 * The RGBA path checks its own (decode_rgba). */
static int pillow_refuses(TIFF *tif, const ifd_view *v, const char *label, cs_error *e) {
    uint16_t compression = COMPRESSION_NONE, planar = PLANARCONFIG_CONTIG, spp = 1;
    uint32_t w = 0, h = 0;
    TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
    TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
    TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
    TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
    if (compression == COMPRESSION_NONE) {
        /* Pillow reads these itself, a tile per offset, a plane's strips
         * (tiles) after another's: with separate planes, an offset past
         * the last plane's has no band to go to. */
        if (planar != PLANARCONFIG_SEPARATE) return 0;
        uint64_t per, count;
        if (v->has_strips) {
            uint32_t rps = v->has_rps ? v->rps : h;
            if (rps == 0) return 0; /* every offset then lands on the first plane */
            per = (h + (uint64_t)rps - 1) / rps;
            count = v->strip_offsets;
        } else {
            if (v->tile_w == 0 || v->tile_h == 0) return 0;
            per = ((w + (uint64_t)v->tile_w - 1) / v->tile_w) *
                  ((h + (uint64_t)v->tile_h - 1) / v->tile_h);
            count = v->tile_offsets;
        }
        if (count > per * spp)
            return cs_fail(
                e, CLIPSCORE_EFORMAT,
                "%s: corrupt TIFF (%llu %s offsets, %llu expected for its separate planes)", label,
                (unsigned long long)count, v->has_strips ? "strip" : "tile",
                (unsigned long long)(per * spp));
        return 0;
    }
    /* libtiff decodes the rest for Pillow, which keeps a strip's rows in
     * an int. */
    uint32_t rps = 0;
    if (!TIFFIsTiled(tif) && TIFFGetField(tif, TIFFTAG_ROWSPERSTRIP, &rps) && rps != UINT32_MAX &&
        rps > INT_MAX)
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: unreadable TIFF (RowsPerStrip %u is over 2^31 - 1)", label, rps);
    return 0;
}

static int decode_open(TIFF *tif, mem_file *m, const char *label, int64_t max_pixels, cs_image *img,
                       cs_error *e) {
    ifd_view v;
    ifd_scan(m->d, m->n, &v);
    /* The two would read different images: Pillow refuses the ones seen
     * (its size or row length disagrees with libtiff's). */
    if (v.conflict)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt TIFF (two different %s entries)", label,
                       layout_tag(v.conflict));
    int rc = pillow_refuses(tif, &v, label, e);
    if (!rc) rc = decode_pixels(tif, m, label, max_pixels, img, e);
    if (!rc) rc = orient(img, v.orientation, e);
    return rc;
}

int cs_tiff_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                   cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    mem_file m = {d, n, 0, "", 0};
    TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
    if (!opts) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory opening TIFF", label);
    TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, &m);
    TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, &m);
    /* "m": no memory mapping (the buffer is ours). */
    TIFF *tif = TIFFClientOpenExt(label, "rm", &m, mem_read, mem_write, mem_seek, mem_close,
                                  mem_size, mem_map, mem_unmap, opts);
    TIFFOpenOptionsFree(opts);
    if (!tif)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt TIFF (%s)", label,
                       m.msg[0] ? m.msg : "unreadable header");
    int rc = m.short_tag ? cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: truncated TIFF (tag data past the end of the file)", label)
                         : decode_open(tif, &m, label, max_pixels, img, e);
    TIFFClose(tif);
    if (rc) cs_image_free(img);
    return rc;
}
