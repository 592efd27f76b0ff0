/* image_tiff.c - TIFF through libtiff, into the modes Pillow 9.4 gives.
 * Covers: the header probe (the first IFD's size, wherever it lies in the
 * buffer), strips and tiles, contiguous and planar samples, 1/2/4/8/16-bit
 * unsigned samples: bilevel (mode "1", resized nearest as Pillow does),
 * gray, gray+alpha, RGB, RGBA (associated alpha unpremultiplied as Pillow's
 * "RGBa" unpacker does; ExtraSamples 0 is padding, "RGBX"), palette ("P",
 * colour map >> 8), CMYK (kept as CMYK, img->cmyk: the reference resizes
 * it before converting to RGB), YCbCr
 * (JPEG-compressed ones read as RGB as Pillow asks libtiff; others through
 * libtiff's RGBA interface); 16-bit gray scaled to 8 bits (see
 * cs_gray16_to_8), other 16-bit samples take their high byte as Pillow's
 * ";16" unpackers do.
 * Leaves out: pages after the first, float and signed samples, CIELab and
 * other photometrics (EUNSUPPORTED), and Orientation (Pillow ignores it
 * too). */
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

/* Decodes through libtiff's RGBA interface (YCbCr not JPEG-compressed). */
static int decode_rgba(TIFF *tif, const tiff_layout *L, mem_file *m, const char *label,
                       cs_image *img, cs_error *e) {
    char emsg[1024] = "";
    if (!TIFFRGBAImageOK(tif, emsg))
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: TIFF variant not supported (%s)", label,
                       emsg);
    uint32_t *raster = cs_malloc((size_t)L->w * L->h, sizeof *raster, e);
    if (!raster) return CLIPSCORE_ENOMEM;
    int rc = 0;
    if (!TIFFReadRGBAImageOriented(tif, L->w, L->h, raster, ORIENTATION_TOPLEFT, 1)) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt TIFF (%s)", label,
                     m->msg[0] ? m->msg : "RGBA decode failed");
    } else if (!(rc = cs_image_alloc(img, (int)L->w, (int)L->h, 3, e))) {
        size_t px = (size_t)L->w * L->h;
        for (size_t i = 0; i < px; i++) {
            img->px[3 * i] = (unsigned char)TIFFGetR(raster[i]);
            img->px[3 * i + 1] = (unsigned char)TIFFGetG(raster[i]);
            img->px[3 * i + 2] = (unsigned char)TIFFGetB(raster[i]);
        }
    }
    free(raster);
    return rc;
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
    int ch = (ph == PHOTOMETRIC_MINISBLACK || ph == PHOTOMETRIC_MINISWHITE) ? 1
             : ph == PHOTOMETRIC_SEPARATED                                  ? 4
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
        img->palette = 1;
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

static int decode_open(TIFF *tif, mem_file *m, const char *label, int64_t max_pixels, cs_image *img,
                       cs_error *e) {
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
