/* image_gif.c - the first frame of a GIF as Pillow 9.4 opens it, through
 * giflib (which gives the palette indices, where stb_image gives composited
 * RGBA).
 *
 * Covers: the canvas (the logical screen, grown to hold the first frame
 * when that reaches past it), filled with the frame's transparent index
 * when it has one, else index 0; the frame's indices pasted in (interlaced
 * rows put in place); Pillow's mode: "P" with the frame's palette (local,
 * else global; entries past its end are Pillow's default gray ramp), or
 * "L" (the indices as gray levels) when there is no palette or it is the
 * gray ramp itself. The transparent index keeps its palette colour: the
 * reference resizes mode "P" with nearest neighbour and its convert("RGB")
 * ignores transparency. "P" comes out as RGB with img->palette set (nearest
 * on the colours is nearest on the indices).
 * Leaves out: later frames, disposal, comments and loops. */
#include "image_formats.h"

#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>

typedef struct gif_src {
    const unsigned char *d;
    size_t n, pos;
} gif_src;

static int gif_read(GifFileType *g, GifByteType *out, int len) {
    gif_src *s = g->UserData;
    size_t k = len < 0 ? 0 : (size_t)len;
    if (k > s->n - s->pos) k = s->n - s->pos;
    memcpy(out, s->d + s->pos, k);
    s->pos += k;
    return (int)k;
}

/* Pillow's _is_palette_needed: any entry not (i, i, i). */
static int palette_needed(const ColorMapObject *m) {
    for (int i = 0; i < m->ColorCount; i++)
        if (m->Colors[i].Red != i || m->Colors[i].Green != i || m->Colors[i].Blue != i) return 1;
    return 0;
}

static int gif_error(const char *label, int code, cs_error *e) {
    const char *why = GifErrorString(code);
    int truncated = code == D_GIF_ERR_READ_FAILED || code == D_GIF_ERR_EOF_TOO_SOON;
    return cs_fail(e, CLIPSCORE_EFORMAT, "%s: %s GIF (%s)", label,
                   truncated ? "truncated" : "corrupt", why ? why : "giflib error");
}

int cs_gif_decode(const unsigned char *d, size_t n, const char *label, int64_t max_pixels,
                  cs_image *img, cs_error *e) {
    memset(img, 0, sizeof *img);
    gif_src src = {d, n, 0};
    int err = 0, rc = 0;
    GifFileType *g = DGifOpen(&src, gif_read, &err);
    if (!g) return gif_error(label, err, e);
    int transparent = -1;
    unsigned char *frame = NULL;
    GifRecordType type;
    for (;;) {
        if (DGifGetRecordType(g, &type) == GIF_ERROR) {
            rc = gif_error(label, g->Error, e);
            goto done;
        }
        if (type == TERMINATE_RECORD_TYPE) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (no image)", label);
            goto done;
        }
        if (type == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                rc = gif_error(label, g->Error, e);
                goto done;
            }
            /* Graphic control: ext[0] is the block length, then flags,
             * delay (2 bytes) and the transparent index. */
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                transparent = ext[1] & 1 ? ext[4] : -1;
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    rc = gif_error(label, g->Error, e);
                    goto done;
                }
            }
            continue;
        }
        if (type == IMAGE_DESC_RECORD_TYPE) break;
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) {
        rc = gif_error(label, g->Error, e);
        goto done;
    }
    const GifImageDesc *fd = &g->Image;
    int64_t x1 = (int64_t)fd->Left + fd->Width, y1 = (int64_t)fd->Top + fd->Height;
    int64_t cw = g->SWidth > x1 ? g->SWidth : x1, ch = g->SHeight > y1 ? g->SHeight : y1;
    if (cw < 1 || ch < 1 || fd->Width < 1 || fd->Height < 1) {
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: corrupt GIF (frame %dx%d)", label, fd->Width,
                     fd->Height);
        goto done;
    }
    if ((rc = cs_image_check_limit(label, (int)cw, (int)ch, max_pixels, e))) goto done;
    const ColorMapObject *map = fd->ColorMap ? fd->ColorMap : g->SColorMap;
    int mode_p = map && palette_needed(map);
    size_t fw = (size_t)fd->Width, fh = (size_t)fd->Height;
    if (!(frame = cs_malloc(fw, fh, e))) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    /* Interlaced rows come in four passes. */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    for (int pass = 0; pass < (fd->Interlace ? 4 : 1); pass++) {
        size_t r0 = fd->Interlace ? (size_t)start[pass] : 0, dr = fd->Interlace ? step[pass] : 1;
        for (size_t r = r0; r < fh; r += dr) {
            if (DGifGetLine(g, frame + r * fw, (int)fw) == GIF_ERROR) {
                rc = gif_error(label, g->Error, e);
                goto done;
            }
        }
    }
    if ((rc = cs_image_alloc(img, (int)cw, (int)ch, mode_p ? 3 : 1, e))) goto done;
    img->palette = mode_p;
    /* Pillow's palette: the file's entries, then its default, the gray ramp. */
    unsigned char pal[256][3];
    for (int i = 0; i < 256; i++) {
        if (map && i < map->ColorCount) {
            pal[i][0] = map->Colors[i].Red;
            pal[i][1] = map->Colors[i].Green;
            pal[i][2] = map->Colors[i].Blue;
        } else {
            pal[i][0] = pal[i][1] = pal[i][2] = (unsigned char)i;
        }
    }
    unsigned char fill = transparent >= 0 ? (unsigned char)transparent : 0;
    int nc = img->channels;
    for (int64_t y = 0; y < ch; y++) {
        for (int64_t x = 0; x < cw; x++) {
            unsigned char v = fill;
            if (x >= fd->Left && x < x1 && y >= fd->Top && y < y1)
                v = frame[(size_t)(y - fd->Top) * fw + (size_t)(x - fd->Left)];
            unsigned char *o = img->px + ((size_t)y * (size_t)cw + (size_t)x) * (size_t)nc;
            if (nc == 1) {
                o[0] = v;
            } else {
                o[0] = pal[v][0];
                o[1] = pal[v][1];
                o[2] = pal[v][2];
            }
        }
    }
done:
    if (rc) cs_image_free(img);
    free(frame);
    DGifCloseFile(g, &err);
    return rc;
}
