/* image_gif.c - the first frame of a GIF as Pillow 9.4 opens it: clipscore's
 * own reader (giflib, used before, refuses LZW minimum code sizes over 8;
 * Pillow reads up to 12), its LZW decoder behaving as Pillow's GifDecode.c.
 *
 * Covers: the header and logical screen; the global and local colour
 * tables; the extension blocks before the first image (the graphic
 * control's transparent index; the empty or short graphic control and
 * application blocks that Pillow's parser refuses); bytes that start no
 * block are skipped, as Pillow does; the first image descriptor, its LZW
 * data and interlace. The output is Pillow's: the canvas (the logical
 * screen, grown to hold the frame) filled with the frame's transparent
 * index when it has one, else index 0, the frame's indices written over it
 * (all of them: Pillow decodes the first frame without transparency);
 * mode "P" with the frame's palette (local, else global; entries past its
 * end are Pillow's default gray ramp), or "L" (the indices as gray levels)
 * when there is no palette or it is the gray ramp itself. The transparent
 * index keeps its palette colour: the reference resizes mode "P" with
 * nearest neighbour and its convert("RGB") ignores transparency. "P" comes
 * out as RGB with img->palette set (nearest on the colours is nearest on
 * the indices).
 *
 * LZW as Pillow decodes it: minimum code sizes 0 to 12 (over 12 is
 * refused); an index past 255 (code sizes over 8) keeps its low byte; a
 * full code table stops growing and decoding goes on without a clear code
 * (iss634.gif's "too many codes"); a first code after a clear that is no
 * pixel, a code past the next free one, or a string longer than the table
 * is corrupt. Sub-block terminators are no boundary: like Pillow, the
 * decoder reads size bytes and data until the frame's last pixel is
 * written, then stops (what follows is never looked at). Data, or an end
 * code, before that is a truncated file (Pillow's "image file is
 * truncated"), except that Pillow reads the data in 64 KiB pieces and
 * only stops at an end code when the file has no more: with more it
 * decodes on, and so does this reader.
 * Leaves out: later frames, disposal, comments and loops. */
#include "image_formats.h"

#include <stdlib.h>
#include <string.h>

/* Pillow's Gif.h: codes of at most 12 bits, a table and a string buffer of
 * 4096 entries. ImageFile.load feeds the decoder 64 KiB at a time. */
#define LZW_TABLE 4096
#define LZW_MAX_BITS 12
#define PIECE ((size_t)65536)

static unsigned le16(const unsigned char *p) {
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* Pillow's _is_palette_needed: any entry not (i, i, i). */
static int palette_needed(const unsigned char *p, int entries) {
    for (int i = 0; i < entries; i++)
        if (p[3 * i] != i || p[3 * i + 1] != i || p[3 * i + 2] != i) return 1;
    return 0;
}

/* What comes before the first frame's data. */
typedef struct gif_head {
    int cw, ch;               /* the canvas */
    int x0, y0, fw, fh;       /* the region decoded (Pillow's tile) */
    int interlace, bits;      /* LZW minimum code size, as stored */
    int transparent;          /* index, or -1 */
    const unsigned char *pal; /* the frame's palette, NULL: mode "L" */
    int pal_n;                /* its entries */
    size_t data;              /* the first sub-block's size byte */
} gif_head;

/* Pillow's GifImageFile.data(): a sub-block's bytes (*len of them, fewer at
 * the end of the file); NULL at a terminator or at the end of the file. */
static const unsigned char *sub_block(const unsigned char *d, size_t n, size_t *pos, size_t *len) {
    if (*pos >= n || d[*pos] == 0) {
        if (*pos < n) (*pos)++;
        *len = 0;
        return NULL;
    }
    size_t k = d[(*pos)++];
    if (k > n - *pos) k = n - *pos;
    const unsigned char *b = d + *pos;
    *pos += k;
    *len = k;
    return b;
}

/* Walks a GIF to its first frame's data, as Pillow's _open and _seek(0)
 * do. 0, or EFORMAT with a message (e may be NULL). */
static int gif_parse(const unsigned char *d, size_t n, const char *label, gif_head *g,
                     cs_error *e) {
    memset(g, 0, sizeof *g);
    g->transparent = -1;
    if (n < 13) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (header)", label);
    const unsigned char *global = NULL;
    int global_n = 0;
    size_t pos = 13;
    if (d[10] & 0x80) {
        global_n = 2 << (d[10] & 7);
        if ((size_t)3 * global_n > n - pos)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (palette)", label);
        if (palette_needed(d + pos, global_n)) global = d + pos;
        pos += (size_t)3 * global_n;
    }
    for (;;) {
        if (pos >= n)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (no image before the end)",
                           label);
        int b = d[pos++];
        if (b == ';') return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (no image)", label);
        if (b == '!') {
            if (pos >= n)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (extension)", label);
            int kind = d[pos++];
            size_t len, more;
            const unsigned char *blk = sub_block(d, n, &pos, &len);
            if (kind == 0xf9) { /* graphic control: flags, delay (2), index */
                if (!blk || len < 3 || (blk[0] & 1 && len < 4))
                    return cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: corrupt GIF (graphic control block of %zu bytes)", label,
                                   len);
                /* A later block without the flag keeps an earlier index. */
                if (blk[0] & 1) g->transparent = blk[3];
            } else if (kind == 0xff) { /* application: Pillow reads the loop count */
                if (!blk)
                    return cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: corrupt GIF (empty application block)", label);
                if (len >= 11 && !memcmp(blk, "NETSCAPE2.0", 11) && !sub_block(d, n, &pos, &more))
                    return cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: corrupt GIF (NETSCAPE2.0 block without its data)", label);
            }
            /* The rest of the sub-blocks; Pillow looks for them even after
             * an empty first one (the next bytes are read as sub-blocks),
             * but for a comment. */
            if (blk || kind != 0xfe)
                while (sub_block(d, n, &pos, &more)) {
                }
            continue;
        }
        if (b != ',') continue; /* no block starts here: Pillow skips the byte */
        if (n - pos < 9)
            return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (image descriptor)", label);
        g->x0 = (int)le16(d + pos);
        g->y0 = (int)le16(d + pos + 2);
        g->fw = (int)le16(d + pos + 4);
        g->fh = (int)le16(d + pos + 6);
        int flags = d[pos + 8];
        pos += 9;
        g->interlace = (flags & 0x40) != 0;
        g->pal = global;
        g->pal_n = global_n;
        if (flags & 0x80) { /* a local palette; the gray ramp is mode "L" */
            int local_n = 2 << (flags & 7);
            if ((size_t)3 * local_n > n - pos)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (local palette)", label);
            g->pal = palette_needed(d + pos, local_n) ? d + pos : NULL;
            g->pal_n = local_n;
            pos += (size_t)3 * local_n;
        }
        if (pos >= n) return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (image data)", label);
        g->bits = d[pos++];
        g->data = pos;
        break;
    }
    /* The canvas: the screen, grown to hold the frame. */
    int sw = (int)le16(d + 6), sh = (int)le16(d + 8);
    g->cw = g->x0 + g->fw > sw ? g->x0 + g->fw : sw;
    g->ch = g->y0 + g->fh > sh ? g->y0 + g->fh : sh;
    return 0;
}

int cs_gif_probe(const unsigned char *d, size_t n, int *w, int *h) {
    gif_head g;
    if (gif_parse(d, n, "", &g, NULL)) return 0;
    *w = g.cw;
    *h = g.ch;
    return 1;
}

/* Where the decoded indices go: Pillow's NEWLINE, interlace passes
 * included. */
typedef struct gif_out {
    unsigned char *px; /* the canvas's indices */
    size_t stride;
    int x0, y0, w, h; /* the region */
    int x, y, step, pass;
} gif_out;

/* Writes one index; 1 when it was the frame's last. */
static int put_index(gif_out *o, unsigned char v) {
    o->px[(size_t)(o->y0 + o->y) * o->stride + (size_t)(o->x0 + o->x)] = v;
    if (++o->x < o->w) return 0;
    o->x = 0;
    o->y += o->step;
    while (o->y >= o->h) {
        switch (o->pass) {
        case 1:
            o->y = 4;
            o->pass = 2;
            break;
        case 2:
            o->step = 4;
            o->y = 2;
            o->pass = 3;
            break;
        case 3:
            o->step = 2;
            o->y = 1;
            o->pass = 0;
            break;
        default:
            return 1;
        }
    }
    return 0;
}

/* The code stream: sub-blocks from the first size byte to the end of the
 * file, of which Pillow has read the first `avail` bytes. */
typedef struct lzw_in {
    const unsigned char *d;
    size_t pos, avail, end; /* offsets in d */
    size_t left;            /* bytes left in the current sub-block */
    uint32_t bits;
    int nbits;
} lzw_in;

/* Pillow's next read of 64 KiB; 0 at the end of the file. */
static int read_more(lzw_in *in) {
    if (in->avail >= in->end) return 0;
    in->avail = in->end - in->avail > PIECE ? in->avail + PIECE : in->end;
    return 1;
}

/* The next code of `size` bits; 0 when the file ends first. A sub-block is
 * decoded only once all of it has been read, as Pillow does. */
static int read_code(lzw_in *in, int size, int *code) {
    while (in->nbits < size) {
        if (in->left > 0) {
            in->bits |= (uint32_t)in->d[in->pos++] << in->nbits;
            in->nbits += 8;
            in->left--;
            continue;
        }
        while (in->pos >= in->avail || (size_t)in->d[in->pos] >= in->avail - in->pos)
            if (!read_more(in)) return 0;
        in->left = in->d[in->pos++];
    }
    *code = (int)(in->bits & ((1u << size) - 1));
    in->bits >>= size;
    in->nbits -= size;
    return 1;
}

/* The LZW table and string buffer. */
typedef struct lzw_table {
    uint16_t link[LZW_TABLE];
    unsigned char data[LZW_TABLE];
    unsigned char stack[LZW_TABLE];
} lzw_table;

/* Decodes the frame into o, as Pillow's ImagingGifDecode; 0 once its last
 * pixel is written. */
static int lzw_decode(const unsigned char *d, size_t n, const gif_head *g, gif_out *o, lzw_table *t,
                      const char *label, cs_error *e) {
    if (g->bits > LZW_MAX_BITS)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (LZW minimum code size %d)", label,
                       g->bits);
    lzw_in in = {d, g->data, g->data, n, 0, 0, 0};
    if (!read_more(&in))
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated GIF (no image data)", label);
    const int clear = 1 << g->bits, end = clear + 1;
    int next = 0, size = 0, first = 1, lastcode = 0;
    unsigned char lastdata = 0;
    for (int reset = 1;;) {
        if (reset) { /* the start, and after a clear code */
            next = clear + 2;
            size = g->bits + 1;
            first = 1;
            reset = 0;
        }
        int c;
        if (!read_code(&in, size, &c))
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: truncated GIF (image data ends before the frame is full)", label);
        if (c == clear) {
            reset = 1;
            continue;
        }
        if (c == end) {
            if (!read_more(&in))
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: truncated GIF (end code before the frame is full)", label);
            continue;
        }
        if (first) {
            if (c > clear)
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: corrupt GIF (LZW code %d where a pixel must come)", label, c);
            lastdata = (unsigned char)c; /* Pillow keeps the low byte */
            lastcode = c;
            first = 0;
            if (put_index(o, lastdata)) return 0;
            continue;
        }
        int code = c, sp = LZW_TABLE;
        if (c > next)
            return cs_fail(e, CLIPSCORE_EFORMAT,
                           "%s: corrupt GIF (LZW code %d past the next free code %d)", label, c,
                           next);
        if (c == next) { /* the previous string and its own first byte */
            t->stack[--sp] = lastdata;
            c = lastcode;
        }
        while (c >= clear) {
            if (sp <= 0 || c >= LZW_TABLE)
                return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (LZW string too long)",
                               label);
            t->stack[--sp] = t->data[c];
            c = t->link[c];
        }
        lastdata = (unsigned char)c;
        if (next < LZW_TABLE) { /* a full table stays as it is */
            t->data[next] = lastdata;
            t->link[next] = (uint16_t)lastcode;
            if (next == (1 << size) - 1 && size < LZW_MAX_BITS) size++;
            next++;
        }
        lastcode = code;
        if (put_index(o, lastdata)) return 0;
        for (; sp < LZW_TABLE; sp++)
            if (put_index(o, t->stack[sp])) return 0;
    }
}

int cs_gif_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    gif_head g;
    int rc = gif_parse(d, n, label, &g, e);
    if (rc) return rc;
    /* Pillow's _open refuses an empty canvas; its decoder takes a frame at
     * x 0 with width 0 for the whole canvas ("no extent"), and refuses any
     * other empty frame. */
    if (g.cw < 1 || g.ch < 1)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (canvas %dx%d)", label, g.cw, g.ch);
    if (g.x0 == 0 && g.fw == 0) {
        g.y0 = 0;
        g.fw = g.cw;
        g.fh = g.ch;
    }
    if (g.fw < 1 || g.fh < 1)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (frame %dx%d)", label, g.fw, g.fh);
    if ((rc = cs_image_check_limit(label, g.cw, g.ch, max_pixels, e))) return rc;

    int mode_p = g.pal != NULL;
    if ((rc = cs_image_alloc(img, g.cw, g.ch, mode_p ? 3 : 1, e))) return rc;
    img->palette = mode_p;
    size_t px = (size_t)g.cw * (size_t)g.ch;
    /* Mode "L" decodes into the image itself, "P" into indices first. */
    unsigned char *idx = mode_p ? cs_malloc(px, 1, e) : img->px;
    lzw_table *t = cs_calloc(1, sizeof *t, e);
    if (!idx || !t) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    memset(idx, g.transparent >= 0 ? g.transparent : 0, px);
    gif_out o = {idx, (size_t)g.cw, g.x0, g.y0, g.fw, g.fh, 0, 0, 1, 0};
    if (g.interlace) o.step = 8, o.pass = 1;
    if ((rc = lzw_decode(d, n, &g, &o, t, label, e))) goto done;
    if (mode_p) {
        /* Pillow's palette: the file's entries, then its default, the gray
         * ramp. */
        unsigned char pal[256][3];
        for (int i = 0; i < 256; i++)
            for (int k = 0; k < 3; k++)
                pal[i][k] = i < g.pal_n ? g.pal[3 * i + k] : (unsigned char)i;
        for (size_t i = 0; i < px; i++) memcpy(img->px + 3 * i, pal[idx[i]], 3);
    }
done:
    if (mode_p) free(idx);
    free(t);
    if (rc) cs_image_free(img);
    return rc;
}
