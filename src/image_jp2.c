/* image_jp2.c - JPEG 2000 (JP2 files and raw J2K codestreams) through
 * libopenjp2, into the modes Pillow 9.4 gives.
 * Covers: the header probe (the JP2 ihdr box, or the codestream's SIZ
 * marker), a strict decode (a truncated codestream is an error, not a
 * partial image), 1 to 4 components as L, LA, RGB, RGBA with Pillow's
 * precision shift to 8 bits (signed samples offset to unsigned) and
 * subsampled components upsampled by repetition; gray deeper than 8 bits
 * (Pillow's "I;16") scaled to 8 bits (cs_gray16_to_8).
 * Leaves out: YCC and CMYK colour spaces (EUNSUPPORTED), more than four
 * components, reduced resolutions and quality layers (all are decoded),
 * colour profiles. */
#include "image_formats.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openjpeg.h>

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int is_codestream(const unsigned char *d, size_t n) {
    return n >= 4 && d[0] == 0xff && d[1] == 0x4f && d[2] == 0xff && d[3] == 0x51;
}

int cs_jp2_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp) {
    uint32_t pw, ph;
    unsigned nc;
    if (is_codestream(d, n)) {
        /* SOC, SIZ: Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz */
        if (n < 42) return 0;
        uint32_t xs = be32(d + 8), ys = be32(d + 12), xo = be32(d + 16), yo = be32(d + 20);
        if (xo >= xs || yo >= ys) return -1;
        pw = xs - xo;
        ph = ys - yo;
        nc = (unsigned)d[40] << 8 | d[41];
    } else {
        /* Top-level boxes up to jp2h, whose first child is ihdr. */
        size_t pos = 0;
        for (;;) {
            if (pos + 8 > n) return 0;
            uint64_t len = be32(d + pos), hdr = 8;
            if (len == 1) {
                if (pos + 16 > n) return 0;
                len = (uint64_t)be32(d + pos + 8) << 32 | be32(d + pos + 12);
                hdr = 16;
            }
            if (!memcmp(d + pos + 4, "jp2c", 4)) return -1; /* codestream before header */
            if (!memcmp(d + pos + 4, "jp2h", 4)) {
                size_t b = pos + (size_t)hdr;
                if (b + 8 + 14 > n) return 0;
                if (memcmp(d + b + 4, "ihdr", 4) != 0) return -1;
                ph = be32(d + b + 8);
                pw = be32(d + b + 12);
                nc = (unsigned)d[b + 16] << 8 | d[b + 17];
                break;
            }
            if (len == 0 || len < hdr || len > n - pos) return len > n - pos ? 0 : -1;
            pos += (size_t)len;
        }
    }
    if (pw == 0 || ph == 0 || pw > INT_MAX || ph > INT_MAX || nc == 0) return -1;
    *w = (int)pw;
    *h = (int)ph;
    if (ncomp) *ncomp = nc <= 16 ? (int)nc : 16;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* The codec on a memory buffer                                              */

typedef struct mem_stream {
    const unsigned char *d;
    size_t n, pos;
    char msg[256]; /* the library's first error */
} mem_stream;

static OPJ_SIZE_T s_read(void *buf, OPJ_SIZE_T size, void *user) {
    mem_stream *m = user;
    if (m->pos >= m->n) return (OPJ_SIZE_T)-1;
    size_t k = size < m->n - m->pos ? size : m->n - m->pos;
    memcpy(buf, m->d + m->pos, k);
    m->pos += k;
    return k;
}
static OPJ_OFF_T s_skip(OPJ_OFF_T off, void *user) {
    mem_stream *m = user;
    if (off < 0 ? (size_t)-off > m->pos : (size_t)off > m->n - m->pos) return -1;
    m->pos = (size_t)((OPJ_OFF_T)m->pos + off);
    return off;
}
static OPJ_BOOL s_seek(OPJ_OFF_T off, void *user) {
    mem_stream *m = user;
    if (off < 0 || (uint64_t)off > m->n) return OPJ_FALSE;
    m->pos = (size_t)off;
    return OPJ_TRUE;
}
static void on_error(const char *msg, void *user) {
    mem_stream *m = user;
    if (m->msg[0]) return;
    snprintf(m->msg, sizeof m->msg, "%s", msg);
    size_t k = strlen(m->msg);
    while (k && (m->msg[k - 1] == '\n' || m->msg[k - 1] == ' ')) m->msg[--k] = '\0';
}
static void on_quiet(const char *msg, void *user) {
    (void)msg;
    (void)user;
}

/* Component c's sample under image pixel (x, y), shifted to `bits` bits as
 * Pillow's j2ku unpackers do, clipped. */
static unsigned comp_value(const opj_image_t *im, int c, uint32_t x, uint32_t y, int bits) {
    const opj_image_comp_t *cp = &im->comps[c];
    uint32_t dx = cp->dx ? cp->dx : 1, dy = cp->dy ? cp->dy : 1;
    int64_t cx = (int64_t)((im->x0 + x) / dx) - cp->x0, cy = (int64_t)((im->y0 + y) / dy) - cp->y0;
    if (cx < 0) cx = 0;
    if (cy < 0) cy = 0;
    if (cx >= cp->w) cx = cp->w - 1;
    if (cy >= cp->h) cy = cp->h - 1;
    int64_t v = cp->data[(size_t)cy * cp->w + (size_t)cx];
    int prec = (int)cp->prec;
    if (cp->sgnd) v += (int64_t)1 << (prec - 1);
    int shift = bits - prec;
    v = shift < 0 ? v >> -shift : v << shift;
    int64_t max = ((int64_t)1 << bits) - 1;
    return (unsigned)(v < 0 ? 0 : v > max ? max : v);
}

static int to_image(const opj_image_t *im, const char *label, int64_t max_pixels, cs_image *img,
                    cs_error *e) {
    if (im->x1 <= im->x0 || im->y1 <= im->y0 || im->x1 - im->x0 > INT_MAX ||
        im->y1 - im->y0 > INT_MAX)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG 2000 (image size)", label);
    int w = (int)(im->x1 - im->x0), h = (int)(im->y1 - im->y0);
    int rc = cs_image_check_limit(label, w, h, max_pixels, e);
    if (rc) return rc;
    int nc = (int)im->numcomps;
    if (nc < 1 || nc > 4)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: JPEG 2000 with %d components is not supported", label, nc);
    if (im->color_space == OPJ_CLRSPC_SYCC || im->color_space == OPJ_CLRSPC_EYCC ||
        im->color_space == OPJ_CLRSPC_CMYK)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED,
                       "%s: JPEG 2000 in a YCC or CMYK colour space is not supported", label);
    for (int c = 0; c < nc; c++) {
        const opj_image_comp_t *cp = &im->comps[c];
        if (!cp->data || cp->w == 0 || cp->h == 0 || cp->prec < 1 || cp->prec > 31)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG 2000 (component %d)", label, c);
    }
    if ((rc = cs_image_alloc(img, w, h, nc, e))) return rc;
    int gray16 = nc == 1 && im->comps[0].prec > 8;
    unsigned char *o = img->px;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < nc; c++)
                *o++ = gray16 ? cs_gray16_to_8(comp_value(im, c, (uint32_t)x, (uint32_t)y, 16))
                              : (unsigned char)comp_value(im, c, (uint32_t)x, (uint32_t)y, 8);
    return 0;
}

int cs_jp2_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    mem_stream m = {d, n, 0, ""};
    opj_codec_t *codec = opj_create_decompress(is_codestream(d, n) ? OPJ_CODEC_J2K : OPJ_CODEC_JP2);
    opj_stream_t *s = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
    opj_image_t *im = NULL;
    int rc = 0;
    if (!codec || !s) {
        rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory opening JPEG 2000", label);
        goto done;
    }
    opj_set_error_handler(codec, on_error, &m);
    opj_set_warning_handler(codec, on_quiet, &m);
    opj_set_info_handler(codec, on_quiet, &m);
    opj_dparameters_t p;
    opj_set_default_decoder_parameters(&p);
    opj_stream_set_user_data(s, &m, NULL);
    opj_stream_set_user_data_length(s, n);
    opj_stream_set_read_function(s, s_read);
    opj_stream_set_skip_function(s, s_skip);
    opj_stream_set_seek_function(s, s_seek);
    /* Strict: a codestream that ends early is an error (openjp2 would
     * otherwise decode what is there and leave the rest grey). */
    if (!opj_setup_decoder(codec, &p) || !opj_decoder_set_strict_mode(codec, OPJ_TRUE) ||
        !opj_read_header(s, codec, &im) || !im) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt JPEG 2000 header (%s)", label,
                     m.msg[0] ? m.msg : "unreadable");
        goto done;
    }
    /* The size the header gives, against the limit, before decoding. */
    if (im->x1 > im->x0 && im->y1 > im->y0 &&
        (rc = cs_image_check_limit(
             label, (int)((im->x1 - im->x0) > INT_MAX ? INT_MAX : im->x1 - im->x0),
             (int)((im->y1 - im->y0) > INT_MAX ? INT_MAX : im->y1 - im->y0), max_pixels, e)))
        goto done;
    if (!opj_decode(codec, s, im) || !opj_end_decompress(codec, s)) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt JPEG 2000 data (%s)", label,
                     m.msg[0] ? m.msg : "decode failed");
        goto done;
    }
    rc = to_image(im, label, max_pixels, img, e);
done:
    if (im) opj_image_destroy(im);
    if (s) opj_stream_destroy(s);
    if (codec) opj_destroy_codec(codec);
    if (rc) cs_image_free(img);
    return rc;
}
