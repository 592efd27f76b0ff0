/* image_jp2.c - JPEG 2000 (JP2 files and raw J2K codestreams) through
 * libopenjp2, as Pillow 9.4 reads them (Jpeg2KImagePlugin.py, then
 * Jpeg2KDecode.c on the same library).
 * Covers: Pillow's header parse, which fixes the mode and size (the JP2
 * boxes up to jp2h, checked as strictly as its box reader checks them; the
 * codestream's SIZ marker; 1 component of more than 9 bits is "I;16", else
 * 1..4 components are L, LA, RGB, RGBA); its choice of unpacker from the
 * mode, the component count, the subsampling and the colour space (a gray
 * image with a subsampled component, or a mode the codestream's components
 * do not fit, is refused as Pillow refuses it: "broken data stream"); a
 * tile-by-tile decode through openjp2's tile interface, as Pillow decodes,
 * and Pillow's unpacking of each tile buffer: the sample widths (1, 2 or 4
 * bytes), the signed offset, the shift to 8 bits (16 for I;16) rounded and
 * then truncated to the pixel's width (so 9-bit white wraps to 0 as it does
 * in Pillow), subsampled components repeated with Pillow's own indexing;
 * I;16 scaled to 8 bits (cs_gray16_to_8, documented); Pillow's refusal of
 * tiles whose running total of sample bytes passes 4 GiB. YCbCr (3 or 4
 * components whose second or third is subsampled, as Pillow guesses) is
 * converted to RGB as Pillow converts it, to within one level. A truncated
 * codestream is an error (openjp2's strict mode), not a partial image.
 * Leaves out: the JP2 palette, channel definitions and colour boxes
 * (Pillow applies none of them), reduced resolutions and quality layers
 * (all are decoded), colour profiles. */
#include "image_formats.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openjpeg.h>

static uint32_t be16(const unsigned char *p) {
    return (uint32_t)p[0] << 8 | p[1];
}
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const unsigned char *p) {
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static int is_codestream(const unsigned char *d, size_t n) {
    return n >= 4 && d[0] == 0xff && d[1] == 0x4f && d[2] == 0xff && d[3] == 0x51;
}

/* ------------------------------------------------------------------------ */
/* Pillow's header parse                                                     */

/* Pillow's modes for JPEG 2000. */
typedef enum { MODE_NONE, MODE_L, MODE_I16, MODE_LA, MODE_RGB, MODE_RGBA } pil_mode;

static const char *mode_name(pil_mode m) {
    static const char *names[] = {"none", "L", "I;16", "LA", "RGB", "RGBA"};
    return names[m];
}

/* Mode from a component count and the first component's Ssiz (or the ihdr
 * BPC): both hold precision - 1 in the low 7 bits, so "I;16" starts at 10 bits. */
static pil_mode mode_of(uint32_t nc, unsigned depth_byte) {
    if (nc == 1) return (depth_byte & 0x7f) > 8 ? MODE_I16 : MODE_L;
    return nc == 2 ? MODE_LA : nc == 3 ? MODE_RGB : nc == 4 ? MODE_RGBA : MODE_NONE;
}

typedef struct jp2_header {
    int have_size;   /* w, h known (a refusal may come after them) */
    uint32_t w, h;   /* Pillow's image size */
    uint32_t nc;     /* components the header declares */
    pil_mode mode;   /* MODE_NONE: refused */
    const char *why; /* the refusal's reason (static text) */
    char box[5];     /* the box the reason is about, printable */
} jp2_header;

static void note_box(jp2_header *hd, const unsigned char *t) {
    for (int i = 0; i < 4; i++) hd->box[i] = t[i] >= 0x20 && t[i] < 0x7f ? (char)t[i] : '?';
    hd->box[4] = '\0';
}

/* The raw codestream: Pillow reads Lsiz, then the SIZ segment, unpacks the
 * fixed part (38 bytes) and 3 bytes for each of Csiz components from offset
 * 36 (two bytes early: the first "YRsiz" it reads is the first Ssiz). */
static int parse_codestream(const unsigned char *d, size_t n, jp2_header *hd) {
    if (n < 6) return 0;
    uint32_t lsiz = be16(d + 4);
    /* A length under 2 makes its read of lsiz - 2 bytes read to the end;
     * it reads what is there of the rest. Whole: the segment is in d. */
    size_t have = n - 4, len = lsiz < 2 || lsiz > have ? have : lsiz;
    int whole = lsiz >= 2 && lsiz <= have;
    const unsigned char *siz = d + 4;
    if (len < 38) return whole ? (hd->why = "SIZ marker too short", -1) : 0;
    uint32_t xs = be32(siz + 4), ys = be32(siz + 8), xo = be32(siz + 12), yo = be32(siz + 16);
    uint32_t csiz = be16(siz + 36);
    if (xo >= xs || yo >= ys) return hd->why = "image size not positive (SIZ marker)", -1;
    hd->have_size = 1;
    hd->w = xs - xo;
    hd->h = ys - yo;
    hd->nc = csiz;
    if (36 + 3 * (size_t)csiz > len)
        return whole ? (hd->why = "SIZ marker shorter than its components", -1) : 0;
    hd->mode = csiz ? mode_of(csiz, siz[38]) : MODE_NONE;
    if (hd->mode == MODE_NONE) return hd->why = "component count not 1 to 4", -1;
    return 1;
}

/* One box header inside a box of `end` bytes at offset *t (Pillow's
 * BoxReader.next_box_type with a known length): the payload's length, or
 * -1 when the header or the payload does not fit. */
static int64_t sub_box(const unsigned char *p, uint64_t end, uint64_t *t, jp2_header *hd) {
    if (*t + 8 > end) return hd->why = "not enough data in header", -1;
    uint64_t lbox = be32(p + *t), hlen = 8;
    note_box(hd, p + *t + 4);
    *t += 8;
    if (lbox == 1) {
        if (*t + 8 > end) return hd->why = "not enough data in header", -1;
        lbox = be64(p + *t);
        *t += 8;
        hlen = 16;
    }
    if (lbox < hlen || lbox - hlen > end - *t) return hd->why = "invalid header length", -1;
    return (int64_t)(lbox - hlen);
}

/* The jp2h box's payload (p, N bytes): its boxes must each fit in it;
 * ihdr gives size and mode (the last one wins); the boxes of "res " are
 * read up to resc, and must fit in it. */
static int parse_jp2h(const unsigned char *p, uint64_t N, jp2_header *hd) {
    uint64_t t = 0;
    int64_t rem = -1;
    while ((int64_t)t + rem < (int64_t)N) {
        if (rem > 0) t += (uint64_t)rem;
        int64_t len = sub_box(p, N, &t, hd);
        if (len < 0) return -1;
        rem = len;
        if (!memcmp(hd->box, "ihdr", 4)) {
            if (rem < 11) return hd->why = "not enough data in header", -1;
            hd->h = be32(p + t);
            hd->w = be32(p + t + 4);
            hd->nc = be16(p + t + 8);
            hd->have_size = 1;
            pil_mode m = mode_of(hd->nc, p[t + 10]);
            if (m != MODE_NONE) hd->mode = m; /* else the previous one stays */
            t += 11;
            rem -= 11;
        } else if (!memcmp(hd->box, "res ", 4)) {
            const unsigned char *r = p + t;
            uint64_t R = (uint64_t)rem, st = 0;
            int64_t srem = -1;
            t += R;
            rem = 0;
            while ((int64_t)st + srem < (int64_t)R) {
                if (srem > 0) st += (uint64_t)srem;
                if ((srem = sub_box(r, R, &st, hd)) < 0) return -1;
                if (!memcmp(hd->box, "resc", 4)) {
                    if (srem < 10) return hd->why = "not enough data in header", -1;
                    break;
                }
            }
        }
    }
    if (!hd->have_size || hd->mode == MODE_NONE)
        return hd->why = "malformed JP2 header (no ihdr box with 1 to 4 components)", -1;
    if (hd->w == 0 || hd->h == 0) return hd->why = "image size not positive (ihdr box)", -1;
    return 1;
}

/* Pillow's Jpeg2KImagePlugin _open on the first n bytes: 1 with mode and
 * size, 0 when more bytes are needed, -1 when Pillow cannot identify the
 * file (hd->why says why); after 0 or -1, hd->have_size may be set all the
 * same, with the size. */
static int parse_header(const unsigned char *d, size_t n, jp2_header *hd) {
    memset(hd, 0, sizeof *hd);
    if (is_codestream(d, n)) return parse_codestream(d, n, hd);
    if (n < 12) return 0;
    if (memcmp(d, "\0\0\0\x0cjP  \r\n\x87\n", 12) != 0) return hd->why = "not a JPEG 2000 file", -1;
    /* Top-level boxes up to jp2h, with no length to check against but the
     * file's: the header must be there, and jp2h and ftyp's brand whole. */
    uint64_t pos = 12;
    for (;;) {
        if (pos + 8 > n) return 0;
        uint64_t lbox = be32(d + pos), hlen = 8;
        note_box(hd, d + pos + 4);
        if (lbox == 1) {
            if (pos + 16 > n) return 0;
            lbox = be64(d + pos + 8);
            hlen = 16;
        }
        if (lbox < hlen) return hd->why = "invalid header length", -1;
        if (!memcmp(d + pos + 4, "jp2h", 4)) {
            if (lbox <= n - pos) return parse_jp2h(d + pos + hlen, lbox - hlen, hd);
            /* Cut off: what is there may give the size all the same. */
            if (pos + hlen < n) {
                jp2_header part = *hd;
                parse_jp2h(d + pos + hlen, n - pos - hlen, &part);
                hd->have_size = part.have_size && part.w && part.h;
                hd->w = part.w;
                hd->h = part.h;
                hd->nc = part.nc;
            }
            return 0;
        }
        if (!memcmp(d + pos + 4, "ftyp", 4)) {
            if (lbox - hlen < 4) return hd->why = "not enough data in header", -1;
            if (pos + hlen + 4 > n) return 0;
        }
        if (lbox > UINT64_MAX - pos) return hd->why = "invalid header length", -1;
        pos += lbox;
    }
}

int cs_jp2_probe(const unsigned char *d, size_t n, int *w, int *h, int *ncomp) {
    jp2_header hd;
    int r = parse_header(d, n, &hd);
    if (r == 0 && !hd.have_size) return 0;
    /* A header refused (or cut off) after its size: the limit is checked
     * first, and the decoder names the reason. */
    if (!hd.have_size || hd.w == 0 || hd.h == 0 || hd.w > INT_MAX || hd.h > INT_MAX) return -1;
    *w = (int)hd.w;
    *h = (int)hd.h;
    if (ncomp) *ncomp = hd.nc == 0 ? 4 : hd.nc <= 16 ? (int)hd.nc : 16;
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

/* ------------------------------------------------------------------------ */
/* Pillow's unpackers                                                        */

typedef enum {
    UNPACK_NONE,
    UNPACK_GRAY,  /* component 0 (L, I;16; RGB and RGBA as gray, opaque) */
    UNPACK_GRAYA, /* components 0 and 1 (LA; RGBA as gray and alpha) */
    UNPACK_RGB,   /* components 0-2, subsampling allowed, opaque */
    UNPACK_RGBA   /* components 0-3, subsampling allowed */
} unpacker;

/* Pillow's table of unpackers, by mode, colour space and component count;
 * only RGB(A) and YCbCr ones take subsampled components. The colour space
 * is the one the reference's openjp2 (2.5.0, Debian 12) gives after the
 * header: unspecified for both JP2 and J2K, whatever the colr box says.
 * Later openjp2 versions (2.5.3 in Debian 13) set it from the colr box
 * there, which would make Pillow's choice depend on the library, so it is
 * not read: unspecified, guessed as Pillow guesses: 1-2 components gray;
 * 3-4 sRGB unless the first subsampled component is the second or third
 * (YCbCr, converted to RGB after the shift to 8 bits). */
static unpacker pick_unpacker(pil_mode mode, const opj_image_t *im, int *ycc, const char **why) {
    int sub = -1;
    for (uint32_t c = 0; c < im->numcomps && sub < 0; c++)
        if (im->comps[c].dx != 1 || im->comps[c].dy != 1) sub = (int)c;
    uint32_t nc = im->numcomps;
    if (nc <= 2) { /* gray */
        *why = "gray with a subsampled component";
        if (sub >= 0) return UNPACK_NONE;
        *why = "components that do not fit that mode";
        if (mode == MODE_L || mode == MODE_I16) return nc == 1 ? UNPACK_GRAY : UNPACK_NONE;
        if (mode == MODE_LA) return nc == 2 ? UNPACK_GRAYA : UNPACK_NONE;
        if (mode == MODE_RGB) return UNPACK_GRAY;
        if (mode == MODE_RGBA) return nc == 1 ? UNPACK_GRAY : UNPACK_GRAYA;
        return UNPACK_NONE;
    }
    /* sRGB, or YCbCr when the second or third component is subsampled */
    *why = "components that do not fit that mode";
    if ((mode != MODE_RGB && mode != MODE_RGBA) || nc > 4) return UNPACK_NONE;
    *ycc = sub == 1 || sub == 2;
    return mode == MODE_RGBA && nc == 4 ? UNPACK_RGBA : UNPACK_RGB;
}

/* Bytes a sample of prec bits takes in openjp2's tile buffer. */
static unsigned sample_bytes(uint32_t prec) {
    unsigned b = (prec + 7) >> 3;
    return b == 3 ? 4 : b;
}

/* The sample at byte offset off of the tile buffer, as Pillow reads it
 * (unsigned, native byte order); 0 past the buffer. */
static uint32_t word_at(const unsigned char *buf, size_t cap, size_t off, unsigned bytes) {
    if (off > cap || bytes > cap - off) return 0;
    if (bytes == 1) return buf[off];
    if (bytes == 2) {
        uint16_t v;
        memcpy(&v, buf + off, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, buf + off, 4);
    return v;
}

/* Pillow's shift of a sample to `bits` bits: signed samples offset by half
 * their range, a right shift rounded (half added), then the pixel's width
 * keeps the low bits (a white 9-bit sample, 511, becomes 256, stored as 0). */
static uint32_t shift_to(uint32_t word, const opj_image_comp_t *cp, int bits) {
    int shift = bits - (int)cp->prec;
    uint32_t off = cp->sgnd ? 1u << (cp->prec - 1) : 0;
    if (shift < 0) off += 1u << (-shift - 1);
    uint32_t x = off + word;
    x = shift < 0 ? x >> -shift : x << shift;
    return x & ((1u << bits) - 1);
}

/* Rounds down v / 64 (v may be negative). */
static int floor64(int v) {
    return v >= 0 ? v / 64 : -((-v + 63) / 64);
}
static unsigned char clamp255(int v) {
    return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* YCbCr to RGB in place (8 bits), the JFIF equations in Pillow's form: each
 * chroma term rounded to 1/64 (6 fraction bits), the sum rounded down,
 * clipped. Pillow's precomputed tables differ from these terms by one unit
 * in 1/64 here and there (they are not a formula), so about 3% of colours
 * come out one level apart; the rest are Pillow's. */
static void ycc_to_rgb(unsigned char *o) {
    int y = o[0], cb = o[1] - 128, cr = o[2] - 128;
    int r_cr = (int)floor(cr * 1.402 * 64 + 0.5), b_cb = (int)floor(cb * 1.772 * 64 + 0.5);
    int g_cb = (int)floor(cb * -0.34414 * 64 + 0.5), g_cr = (int)floor(cr * -0.71414 * 64 + 0.5);
    o[0] = clamp255(y + floor64(r_cr));
    o[1] = clamp255(y + floor64(g_cb + g_cr));
    o[2] = clamp255(y + floor64(b_cb));
}

/* One tile's buffer, unpacked into img as Pillow's unpacker `u` does.
 * (tx, ty): the tile's origin in the image; tw x th its size. */
static void unpack_tile(unpacker u, int ycc, pil_mode mode, const opj_image_t *im,
                        const unsigned char *buf, size_t cap, uint32_t tx, uint32_t ty, uint32_t tw,
                        uint32_t th, cs_image *img) {
    const opj_image_comp_t *cp = im->comps;
    int ch = img->channels;
    unsigned b0 = sample_bytes(cp[0].prec);
    for (uint32_t y = 0; y < th; y++) {
        unsigned char *o = img->px + ((size_t)(ty + y) * img->w + tx) * ch;
        for (uint32_t x = 0; x < tw; x++, o += ch) {
            size_t i = (size_t)y * tw + x;
            if (u == UNPACK_GRAY || u == UNPACK_GRAYA) {
                uint32_t g = word_at(buf, cap, i * b0, b0);
                unsigned char v = mode == MODE_I16 ? cs_gray16_to_8(shift_to(g, &cp[0], 16))
                                                   : (unsigned char)shift_to(g, &cp[0], 8);
                unsigned char a = 255;
                if (u == UNPACK_GRAYA) {
                    unsigned b1 = sample_bytes(cp[1].prec);
                    size_t base = (size_t)b0 * tw * th;
                    a = (unsigned char)shift_to(word_at(buf, cap, base + i * b1, b1), &cp[1], 8);
                }
                o[0] = v;
                if (ch == 2) o[1] = a;
                if (ch >= 3) o[1] = o[2] = v;
                if (ch == 4) o[3] = a;
                continue;
            }
            /* RGB(A): component n's plane starts after the previous planes,
             * each (tw / dx) x (th / dy) samples (Pillow rounds down). */
            unsigned n_read = u == UNPACK_RGBA ? 4 : 3;
            size_t plane = 0;
            for (unsigned n = 0; n < n_read; n++) {
                uint32_t dx = cp[n].dx, dy = cp[n].dy;
                unsigned bn = sample_bytes(cp[n].prec);
                size_t pw = tw / dx, at = plane + bn * ((size_t)(y / dy) * pw + x / dx);
                o[n] = (unsigned char)shift_to(word_at(buf, cap, at, bn), &cp[n], 8);
                plane += (size_t)bn * pw * (th / dy);
            }
            if (ycc) ycc_to_rgb(o);
            if (ch == 4 && n_read == 3) o[3] = 255;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The decode                                                                */

/* Pillow's tile buffer: it keeps a running total of the components' sample
 * bytes over the tiles (never reset), refuses a tile whose size times that
 * total passes 4 GiB, and zeroes its buffer only when it grows. Here the
 * buffer holds what openjp2 writes and what Pillow's indexing reads; what
 * Pillow would hold zeroed or stale is zeroed or stale here too. */
typedef struct tile_buffer {
    unsigned char *d;
    size_t cap;
    uint64_t pil_size;  /* Pillow's buffer size */
    uint64_t pil_width; /* Pillow's running total of sample bytes */
} tile_buffer;

static int tile_buffer_fit(tile_buffer *tb, uint32_t data_size, uint32_t tw, uint32_t th,
                           unsigned width, const char *label, cs_error *e) {
    tb->pil_width += width;
    uint64_t tw_ = tw, th_ = th, W = tb->pil_width;
    if (W > UINT_MAX || tw_ > UINT_MAX / W || th_ > UINT_MAX / W || tw_ > UINT_MAX / (th_ * W) ||
        th_ > UINT_MAX / (tw_ * W))
        return cs_fail(e, CLIPSCORE_EFORMAT,
                       "%s: JPEG 2000 tile %ux%u with its tiles' sample bytes over 4 GiB, which "
                       "Pillow refuses (broken data stream)",
                       label, tw, th);
    uint64_t pil = tw_ * th_ * W > data_size ? tw_ * th_ * W : data_size;
    int zero = tb->pil_size < pil;
    if (zero) tb->pil_size = pil;
    /* What Pillow's indexing can reach: a row past the planes. */
    uint64_t need = (uint64_t)width * tw_ * (th_ + 1);
    if (need < data_size) need = data_size;
    if (need > tb->cap) {
        unsigned char *p = realloc(tb->d, (size_t)need);
        if (!p)
            return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory for a JPEG 2000 tile", label);
        memset(p + tb->cap, 0, (size_t)need - tb->cap);
        tb->d = p;
        tb->cap = (size_t)need;
    }
    if (zero) memset(tb->d, 0, tb->cap);
    return 0;
}

static int decode_tiles(opj_codec_t *codec, opj_stream_t *s, const opj_image_t *im, unpacker u,
                        int ycc, pil_mode mode, mem_stream *m, const char *label, cs_image *img,
                        cs_error *e) {
    tile_buffer tb = {0};
    unsigned width = 0;
    for (uint32_t c = 0; c < im->numcomps; c++) width += sample_bytes(im->comps[c].prec);
    int rc = 0;
    for (;;) {
        OPJ_UINT32 idx, size, ncomp;
        OPJ_INT32 x0, y0, x1, y1;
        OPJ_BOOL more;
        if (!opj_read_tile_header(codec, s, &idx, &size, &x0, &y0, &x1, &y1, &ncomp, &more)) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt JPEG 2000 data (%s)",
                         label, m->msg[0] ? m->msg : "tile header");
            break;
        }
        if (!more) break;
        /* Pillow's bounds: inside its image (the header's size). */
        if (x0 >= x1 || y0 >= y1 || x0 < 0 || y0 < 0 || (uint32_t)x0 < im->x0 ||
            (uint32_t)y0 < im->y0 || (int64_t)x1 - im->x0 > img->w ||
            (int64_t)y1 - im->y0 > img->h) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: JPEG 2000 tile %u outside the %dx%d image the header gives (Pillow: "
                         "broken data stream)",
                         label, idx, img->w, img->h);
            break;
        }
        if (ncomp != im->numcomps) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: JPEG 2000 tile %u with %u components, not %u",
                         label, idx, ncomp, im->numcomps);
            break;
        }
        uint32_t tw = (uint32_t)(x1 - x0), th = (uint32_t)(y1 - y0);
        if ((rc = tile_buffer_fit(&tb, size, tw, th, width, label, e))) break;
        if (!opj_decode_tile_data(codec, idx, tb.d, size, s)) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt JPEG 2000 data (%s)",
                         label, m->msg[0] ? m->msg : "tile data");
            break;
        }
        unpack_tile(u, ycc, mode, im, tb.d, tb.cap, (uint32_t)x0 - im->x0, (uint32_t)y0 - im->y0,
                    tw, th, img);
    }
    free(tb.d);
    return rc;
}

int cs_jp2_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    jp2_header hd;
    int r = parse_header(d, n, &hd);
    if (r == 0) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated JPEG 2000 header", label);
    if (r < 0)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG 2000 header (%s%s%s%s)", label,
                       hd.why, hd.box[0] ? ", box '" : "", hd.box, hd.box[0] ? "'" : "");
    if (hd.w > INT_MAX || hd.h > INT_MAX)
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: JPEG 2000 of %ux%u pixels", label, hd.w, hd.h);
    int rc = cs_image_check_limit(label, (int)hd.w, (int)hd.h, max_pixels, e);
    if (rc) return rc;

    mem_stream m = {d, n, 0, ""};
    opj_codec_t *codec = opj_create_decompress(is_codestream(d, n) ? OPJ_CODEC_J2K : OPJ_CODEC_JP2);
    opj_stream_t *s = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
    opj_image_t *im = NULL;
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
    /* The codestream's own size, against the limit, before decoding (its
     * tiles must lie in the header's image, which has passed it). */
    if (im->x1 > im->x0 && im->y1 > im->y0 &&
        (rc = cs_image_check_limit(
             label, (int)((im->x1 - im->x0) > INT_MAX ? INT_MAX : im->x1 - im->x0),
             (int)((im->y1 - im->y0) > INT_MAX ? INT_MAX : im->y1 - im->y0), max_pixels, e)))
        goto done;
    if (im->numcomps < 1 || im->numcomps > 4) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT,
                     "%s: JPEG 2000 with %u components, which Pillow refuses (broken data stream)",
                     label, im->numcomps);
        goto done;
    }
    for (uint32_t c = 0; c < im->numcomps; c++) {
        const opj_image_comp_t *cp = &im->comps[c];
        if (cp->prec < 1 || cp->prec > 31 || cp->dx == 0 || cp->dy == 0) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt JPEG 2000 (component %u)", label, c);
            goto done;
        }
    }
    const char *why;
    int ycc = 0;
    unpacker u = pick_unpacker(hd.mode, im, &ycc, &why);
    if (u == UNPACK_NONE) {
        uint32_t c = 0;
        while (c < im->numcomps && im->comps[c].dx == 1 && im->comps[c].dy == 1) c++;
        char sub[64] = "";
        if (c < im->numcomps)
            snprintf(sub, sizeof sub, ", component %u subsampled %ux%u", c, im->comps[c].dx,
                     im->comps[c].dy);
        rc = cs_fail(e, CLIPSCORE_EFORMAT,
                     "%s: JPEG 2000 with %u component%s%s, mode %s by its header: %s, which "
                     "Pillow 9.4 refuses (broken data stream)",
                     label, im->numcomps, im->numcomps == 1 ? "" : "s", sub, mode_name(hd.mode),
                     why);
        goto done;
    }
    int ch = hd.mode == MODE_LA ? 2 : hd.mode == MODE_RGB ? 3 : hd.mode == MODE_RGBA ? 4 : 1;
    if ((rc = cs_image_alloc(img, (int)hd.w, (int)hd.h, ch, e))) goto done;
    /* Pixels no tile covers stay 0, as in Pillow's new image. */
    memset(img->px, 0, (size_t)img->w * img->h * ch);
    if ((rc = decode_tiles(codec, s, im, u, ycc, hd.mode, &m, label, img, e))) goto done;
    if (!opj_end_decompress(codec, s))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated or corrupt JPEG 2000 data (%s)", label,
                     m.msg[0] ? m.msg : "decode failed");
done:
    if (im) opj_image_destroy(im);
    if (s) opj_stream_destroy(s);
    if (codec) opj_destroy_codec(codec);
    if (rc) cs_image_free(img);
    return rc;
}
