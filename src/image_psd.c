/* image_psd.c - Photoshop (PSD) files as Pillow 9.4 reads them.
 *
 * Covers: the header, the colour-mode, resource and layer sections walked
 * the way Pillow's PsdImagePlugin walks them (so a file whose layer records
 * Pillow cannot parse is refused here too, as corrupt), and the composite
 * image, raw or PackBits, 8 bits a channel, in Pillow's modes: gray
 * (bitmap-free gray, multichannel and duotone: the first channel), indexed
 * (the 768-byte palette), RGB, and RGBA when the file has exactly four
 * channels (Pillow takes a fifth or later channel as extra, not alpha).
 * The colour values are kept as stored: no "white matte" is removed (stb_image
 * does that, with float casts that overflow on some inputs).
 * Leaves out: layers (the composite is the image), 1- and 16-bit files
 * except 16-bit three-channel RGB (cs_psd_decode returns 1: stb_image reads
 * those; Pillow reads no 16-bit PSD), CMYK and Lab (refused as unsupported). */
#include "image_formats.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t rd32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static unsigned rd16(const unsigned char *p) {
    return (unsigned)p[0] << 8 | p[1];
}

/* A bounded reader: a read past the end fails, as Pillow's _safe_read and
 * struct.unpack do on a short read. */
typedef struct psd_rd {
    const unsigned char *d;
    uint64_t n, pos;
} psd_rd;

static int rd_take(psd_rd *r, uint64_t k, const unsigned char **p) {
    if (r->pos > r->n || r->n - r->pos < k) return -1;
    if (p) *p = r->d + r->pos;
    r->pos += k;
    return 0;
}
static int rd_u32(psd_rd *r, uint32_t *v) {
    const unsigned char *p;
    if (rd_take(r, 4, &p)) return -1;
    *v = rd32(p);
    return 0;
}
static int rd_u16(psd_rd *r, unsigned *v) {
    const unsigned char *p;
    if (rd_take(r, 2, &p)) return -1;
    *v = rd16(p);
    return 0;
}

/* Reads up to k bytes, as a file's read() does: fewer at the end. */
static uint64_t rd_plain(psd_rd *r, uint64_t k) {
    uint64_t left = r->pos < r->n ? r->n - r->pos : 0, got = k < left ? k : left;
    r->pos += got;
    return got;
}

/* The resource blocks up to end, as PsdImagePlugin._open reads them. */
static int walk_resources(psd_rd *r, uint64_t end) {
    while (r->pos < end) {
        unsigned id;
        uint32_t size;
        const unsigned char *p;
        rd_plain(r, 4); /* signature */
        if (rd_u16(r, &id) || rd_take(r, 1, &p)) return -1;
        uint64_t name = rd_plain(r, *p);
        if (!(name & 1)) rd_plain(r, 1);
        if (rd_u32(r, &size)) return -1;
        if (rd_plain(r, size) & 1) rd_plain(r, 1);
    }
    return 0;
}

/* Moves to an absolute position; past the end, every later read fails
 * (the exact position no longer matters then). */
static void rd_seek(psd_rd *r, __int128 pos) {
    r->pos = pos > (__int128)r->n ? r->n + 1 : (uint64_t)pos;
}

/* The layer info block, as Pillow's _layerinfo and _maketile read it (its
 * bytes only: Pillow reads them into a buffer first). 0: parsed; -1: a
 * record Pillow fails on (a short read, a channel id it cannot name, a
 * channel set it has no mode for, a seek to a negative or huge offset). */
static int walk_layers(const unsigned char *d, uint64_t n) {
    psd_rd r = {d, n, 0};
    unsigned ct;
    if (rd_u16(&r, &ct)) return -1;
    int64_t count = (int16_t)ct;
    if (count < 0) count = -count;
    if (n < (uint64_t)count * 20) return -1;
    /* The kept layers' boxes and channel counts, for Pillow's second loop,
     * which reads each channel's tile header after all the records. */
    struct kept {
        int64_t x, y; /* size: x1 - x0, y1 - y0 (Pillow's i32 is unsigned) */
        int channels;
    } *kept = calloc((size_t)(count ? count : 1), sizeof *kept);
    if (!kept) return -1;
    int64_t nkept = 0;
    int rc = -1;
    for (int64_t l = 0; l < count; l++) {
        uint32_t box[4];
        for (int k = 0; k < 4; k++)
            if (rd_u32(&r, &box[k])) goto done;
        unsigned types;
        if (rd_u16(&r, &types)) goto done;
        if (types > 4) continue; /* Pillow skips the rest of such a record */
        int seen[4] = {0, 0, 0, 0};
        for (unsigned t = 0; t < types; t++) {
            unsigned type;
            if (rd_u16(&r, &type) || rd_take(&r, 4, NULL)) goto done;
            if (type == 65535)
                seen[3]++;
            else if (type <= 3)
                seen[type]++;
            else
                goto done; /* "RGBA"[type]: IndexError */
        }
        /* Pillow's mode: the sorted letters R; B G R; A B G R. Any other
         * set has no mode, and fails in the tile loop below. */
        int ok = (types == 1 && seen[0] == 1) ||
                 (types == 3 && seen[0] == 1 && seen[1] == 1 && seen[2] == 1) ||
                 (types == 4 && seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
        if (rd_take(&r, 12, NULL)) goto done;
        uint32_t size, len;
        if (rd_u32(&r, &size)) goto done;
        if (size) {
            __int128 data_end = (__int128)r.pos + size;
            if (rd_u32(&r, &len)) goto done;
            if (len) {
                __int128 to = (__int128)r.pos + len - 16;
                if (to < 0) goto done; /* negative seek */
                rd_seek(&r, to);
            }
            if (rd_u32(&r, &len)) goto done;
            if (len) rd_seek(&r, (__int128)r.pos + len);
            const unsigned char *p;
            if (rd_take(&r, 1, &p) || rd_take(&r, *p, NULL)) goto done;
            rd_seek(&r, data_end);
        }
        kept[nkept].x = (int64_t)box[3] - box[1];
        kept[nkept].y = (int64_t)box[2] - box[0];
        kept[nkept].channels = ok ? (int)types : -1;
        nkept++;
    }
    for (int64_t l = 0; l < nkept; l++) {
        if (kept[l].channels < 0) goto done; /* iterating a None mode */
        for (int c = 0; c < kept[l].channels; c++) {
            unsigned comp;
            if (rd_u16(&r, &comp)) goto done;
            __int128 offset = r.pos;
            if (comp == 0) {
                offset += (__int128)kept[l].x * kept[l].y;
            } else if (comp == 1) {
                int64_t ys = kept[l].y;
                if (ys <= 0) { /* read(negative) reads the rest; no rows */
                    r.pos = r.pos > n ? r.pos : n;
                    offset = r.pos;
                } else {
                    const unsigned char *bc;
                    if (rd_take(&r, (uint64_t)ys * 2, &bc)) goto done;
                    for (int64_t y = 0; y < ys; y++) offset += rd16(bc + 2 * y);
                    offset += (uint64_t)ys * 2;
                }
            }
            /* seek(offset): a negative one fails, one past 2^63 overflows */
            if (offset < 0 || offset > (__int128)INT64_MAX) goto done;
            rd_seek(&r, offset);
            if (offset & 1) r.pos += r.pos < n; /* read(1): short reads pass */
        }
    }
    rc = 0;
done:
    free(kept);
    return rc;
}

/* PackBits into out (count bytes); -1 on data that runs out or overflows. */
static int unpackbits(psd_rd *r, unsigned char *out, size_t stride, uint64_t count) {
    uint64_t got = 0;
    while (got < count) {
        const unsigned char *p;
        if (rd_take(r, 1, &p)) return -1;
        int hdr = (signed char)*p;
        if (hdr == -128) continue;
        if (hdr >= 0) {
            uint64_t k = (uint64_t)hdr + 1;
            if (k > count - got || rd_take(r, k, &p)) return -1;
            for (uint64_t i = 0; i < k; i++) out[(got + i) * stride] = p[i];
            got += k;
        } else {
            uint64_t k = (uint64_t)(1 - hdr);
            if (k > count - got || rd_take(r, 1, &p)) return -1;
            for (uint64_t i = 0; i < k; i++) out[(got + i) * stride] = *p;
            got += k;
        }
    }
    return 0;
}

int cs_psd_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    if (n < 26 || memcmp(d, "8BPS\0\1", 6))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (header)", label);
    unsigned channels = rd16(d + 12), depth = rd16(d + 22), mode = rd16(d + 24);
    uint32_t h = rd32(d + 14), w = rd32(d + 18);
    if (w == 0 || h == 0 || w > (1u << 24) || h > (1u << 24) || channels == 0)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PSD header (%ux%u, %u channels)", label,
                       (unsigned)w, (unsigned)h, channels);
    int rc = cs_image_check_limit(label, (int)w, (int)h, max_pixels, e);
    if (rc) return rc;
    /* Pillow's modes (PsdImagePlugin.MODES) and how many channels each uses. */
    int out_ch, palette = 0;
    switch (mode) {
    case 0: /* bitmap at 8 bits, gray, multichannel, duotone: "L" */
    case 1:
    case 7:
    case 8:
        out_ch = 1;
        break;
    case 2:
        out_ch = 3, palette = 1;
        break;
    case 3:
        out_ch = channels == 4 ? 4 : 3;
        break;
    default:
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: %s PSD is not supported", label,
                       mode == 4   ? "CMYK"
                       : mode == 9 ? "Lab"
                                   : "this colour mode of");
    }
    int used = palette ? 1 : out_ch;
    if ((unsigned)used > channels)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PSD (%u channels for its colour mode)",
                       label, channels);
    if (depth != 8 && !(depth == 16 && mode == 3 && channels == 3))
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: %u-bit PSD is not supported", label, depth);

    psd_rd r = {d, n, 26};
    const char *cut = "%s: truncated PSD (before the image data)";
    uint32_t len;
    const unsigned char *pal = NULL;
    /* colour mode data: a palette when indexed */
    if (rd_u32(&r, &len) || rd_take(&r, len, &pal))
        return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
    if (palette && len != 768)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PSD (indexed without a palette)", label);
    /* Image resources, block by block as Pillow reads them: it does not
     * seek to the section's end, so a last block running past it moves
     * where the layer section is read. */
    if (rd_u32(&r, &len)) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
    if (len && (rc = walk_resources(&r, (uint64_t)r.pos + len)))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PSD (image resources)", label);
    /* layer and mask information */
    if (rd_u32(&r, &len)) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
    uint64_t end = r.pos + len;
    if (len) {
        uint32_t li;
        const unsigned char *p;
        if (rd_u32(&r, &li) || rd_take(&r, li, &p))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (layer records)", label);
        if (li && walk_layers(p, li))
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt PSD (layer records)", label);
    }
    r.pos = end;
    if (depth == 16) return 1; /* stb_image: three 16-bit channels, no matte */

    unsigned comp;
    if (rd_u16(&r, &comp)) return cs_fail(e, CLIPSCORE_EFORMAT, cut, label);
    if (comp > 1)
        return cs_fail(e, CLIPSCORE_EUNSUPPORTED, "%s: PSD compression %u is not supported", label,
                       comp);
    if ((rc = cs_image_alloc(img, (int)w, (int)h, out_ch, e))) return rc;
    img->palette = palette;
    uint64_t npx = (uint64_t)w * h;
    unsigned char *plane = NULL;
    if (palette && !(plane = cs_malloc(npx, 1, e))) {
        cs_image_free(img);
        return CLIPSCORE_ENOMEM;
    }
    /* PackBits: Pillow reads the row byte counts of the channels it uses
     * only (not of all the file's channels) and takes the channel data to
     * start right after them; followed here, to read what it reads. */
    const unsigned char *counts = NULL;
    if (comp == 1 && rd_take(&r, (uint64_t)h * (unsigned)used * 2, &counts)) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (row table incomplete)", label);
        goto fail;
    }
    for (int c = 0; c < used; c++) {
        unsigned char *out = palette ? plane : img->px + c;
        size_t stride = palette ? 1 : (size_t)out_ch;
        if (comp == 0) {
            const unsigned char *p;
            if (rd_take(&r, npx, &p)) {
                rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated PSD (pixel data incomplete)",
                             label);
                goto fail;
            }
            for (uint64_t i = 0; i < npx; i++) out[i * stride] = p[i];
        } else {
            /* A channel starts where the byte counts of the ones before it
             * say; runs do not cross rows (Pillow's decoder fails on that). */
            uint64_t start = r.pos;
            for (uint64_t k = 0; k < (uint64_t)c * h; k++) start += rd16(counts + 2 * k);
            psd_rd cr = {d, n, start};
            for (uint32_t y = 0; y < h; y++)
                if (unpackbits(&cr, out + (size_t)y * w * stride, stride, w)) {
                    rc = cs_fail(
                        e, CLIPSCORE_EFORMAT,
                        "%s: truncated PSD (PackBits data of channel %d ends early or is corrupt)",
                        label, c + 1);
                    goto fail;
                }
        }
    }
    if (palette) {
        for (uint64_t i = 0; i < npx; i++) {
            /* Photoshop's palette is planar: 256 reds, greens, blues. */
            img->px[3 * i] = pal[plane[i]];
            img->px[3 * i + 1] = pal[256 + plane[i]];
            img->px[3 * i + 2] = pal[512 + plane[i]];
        }
        free(plane);
    }
    return 0;
fail:
    free(plane);
    cs_image_free(img);
    return rc;
}
