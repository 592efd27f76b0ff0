/* figures.c - the two JPEG figures of a run (image_captions.jpg and
 * similarity_matrix.jpg), drawn with cairo, captions laid out by pango and
 * encoded by stb_image_write.
 *
 * Covers: a thumbnail grid with wrapped, ellipsized captions and colour-coded
 * scores; an n x n heat map with a viridis-like colour map scaled to the data
 * range shown, cell values where cells are large enough to read, a colour
 * bar, axis titles, labels and the diagonal outlined; failed rows (NaN) drawn
 * grey with "error"; invalid UTF-8 and control characters replaced before
 * pango sees a caption (plain text, never markup); canvases scaled down to at
 * most FIG_MAX_SIDE pixels a side. n = 0 is valid: the figures then say that
 * there is nothing to show. Memory: one canvas plus one thumbnail surface at
 * a time; nothing grows with n^2 beyond the caller's matrix.
 * Leaves out: choosing the pairs (the caller passes the first --figure-limit
 * ones), decoding and thumbnailing images (image.c), fonts beyond what
 * fontconfig finds (CJK shows as boxes when no CJK font is installed). */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include "figures.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <pango/pangocairo.h>

#include "score_colors.h"
#include "stb_image_write_impl.h"

#define FIG_MAX_SIDE 6000.0 /* pixels a side; larger canvases are drawn scaled down */
#define FIG_MAX_PAIRS 2048  /* beyond this the cells would be under a pixel */
#define FIG_JPEG_QUALITY 90
#define FIG_FONT "DejaVu Sans, Sans"
#define FIG_TEXT_BYTES 1024 /* of a caption kept for drawing; pango ellipsizes the rest */
#define FIG_MARGIN 28.0
#define FIG_PI 3.14159265358979323846

/* ---- text ---------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (0 when invalid), code point in cp. */
static size_t utf8_decode(const unsigned char *p, uint32_t *cp) {
    unsigned c = p[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    /* The NUL terminator fails the continuation test, so no over-read. */
    for (size_t k = 1; k < n; k++) {
        if ((p[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (p[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return n;
}

/* Copies s (NULL: "") into out as valid UTF-8 that pango accepts: invalid
 * bytes become U+FFFD, control characters spaces (one paragraph), and text
 * past the buffer is cut at a character boundary with an ellipsis. */
static void clean_text(const char *s, char *out, size_t cap) {
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    size_t o = 0;
    while (*p) {
        uint32_t cp;
        size_t len = utf8_decode(p, &cp);
        if (len == 0) cp = 0xFFFD, len = 1;
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0)) cp = ' ';
        char enc[4];
        size_t el = cs_utf8_put(cp, enc);
        if (o + el + 4 > cap) { /* keep room for "…" and the NUL */
            memcpy(out + o, "\xE2\x80\xA6", 3);
            o += 3;
            break;
        }
        memcpy(out + o, enc, el);
        o += el;
        p += len;
    }
    out[o] = '\0';
}

/* ---- colours ------------------------------------------------------------- */

typedef struct rgb {
    double r, g, b;
} rgb;

static rgb cmap(double t) {
    double v[3];
    cs_score_cmap(t, v);
    rgb c = {v[0], v[1], v[2]};
    return c;
}

static rgb text_on(rgb bg) {
    double v[3] = {bg.r, bg.g, bg.b};
    rgb black = {0, 0, 0}, white = {1, 1, 1};
    return cs_score_dark_text(v) ? black : white;
}

static const rgb k_ink = {0.10, 0.10, 0.10};
static const rgb k_muted = {0.35, 0.35, 0.35};
static const rgb k_error_ink = {0.65, 0.08, 0.08};
static const rgb k_error_fill = {0.74, 0.74, 0.74};

/* The colour scale: the finite data range, widened when degenerate. */
typedef struct scale {
    double lo, hi;
    int decimals; /* enough to tell the values in the range apart */
    int any;      /* at least one finite value */
    int failed;   /* at least one NaN / infinite value */
    int flat;     /* every finite value is the same */
} scale;

static scale scale_of(const float *v, size_t count) {
    scale s = {0, 1, 3, 0, 0, 0};
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(v[i])) {
            s.failed = 1;
            continue;
        }
        if (v[i] < lo) lo = v[i];
        if (v[i] > hi) hi = v[i];
    }
    if (lo > hi) return s;
    s.any = 1;
    if (hi - lo < 1e-6) { /* one value: centre it on a scale of 0.1 */
        s.flat = 1;
        lo -= 0.05, hi += 0.05;
    }
    s.lo = lo, s.hi = hi;
    double range = hi - lo;
    s.decimals = cs_score_decimals(range);
    return s;
}

static double scale_t(const scale *s, double v) {
    return (v - s->lo) / (s->hi - s->lo);
}

static void fmt_value(const scale *s, double v, char *buf, size_t cap) {
    snprintf(buf, cap, "%.*f", s->decimals, cs_score_rounded(v, s->decimals));
}

/* ---- canvas -------------------------------------------------------------- */

typedef struct canvas {
    cairo_surface_t *surf;
    cairo_t *cr;
    cairo_font_options_t *fo;
    double w, h; /* drawing units; the surface is (w, h) * scale pixels */
    int pw, ph;
} canvas;

static int cairo_error(cs_error *e, cairo_status_t st, const char *what) {
    return cs_fail(e, st == CAIRO_STATUS_NO_MEMORY ? CLIPSCORE_ENOMEM : CLIPSCORE_EINTERNAL,
                   "%s: cairo: %s", what, cairo_status_to_string(st));
}

static void canvas_close(canvas *c) {
    if (c->cr) cairo_destroy(c->cr);
    if (c->surf) cairo_surface_destroy(c->surf);
    if (c->fo) cairo_font_options_destroy(c->fo);
    memset(c, 0, sizeof *c);
}

/* A white canvas of w x h drawing units, scaled down to FIG_MAX_SIDE. */
static int canvas_open(canvas *c, double w, double h, cs_error *e) {
    memset(c, 0, sizeof *c);
    double s = 1.0;
    if (w * s > FIG_MAX_SIDE) s = FIG_MAX_SIDE / w;
    if (h * s > FIG_MAX_SIDE) s = FIG_MAX_SIDE / h;
    c->w = w, c->h = h;
    c->pw = (int)ceil(w * s), c->ph = (int)ceil(h * s);
    if (c->pw < 1) c->pw = 1;
    if (c->ph < 1) c->ph = 1;
    /* RGB24: JPEG has no alpha, and opaque pixels need no unpremultiplying. */
    c->surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, c->pw, c->ph);
    cairo_status_t st = cairo_surface_status(c->surf);
    if (st == CAIRO_STATUS_SUCCESS) {
        c->cr = cairo_create(c->surf);
        st = cairo_status(c->cr);
    }
    if (st != CAIRO_STATUS_SUCCESS) {
        int rc = cairo_error(e, st, "creating the canvas");
        canvas_close(c);
        return rc;
    }
    cairo_scale(c->cr, s, s);
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    /* Unhinted metrics: text measured before the canvas exists keeps its size
     * at any scale. */
    c->fo = cairo_font_options_create();
    cairo_font_options_set_antialias(c->fo, CAIRO_ANTIALIAS_GRAY);
    cairo_font_options_set_hint_style(c->fo, CAIRO_HINT_STYLE_SLIGHT);
    cairo_font_options_set_hint_metrics(c->fo, CAIRO_HINT_METRICS_OFF);
    st = cairo_font_options_status(c->fo);
    if (st != CAIRO_STATUS_SUCCESS) {
        int rc = cairo_error(e, st, "font options");
        canvas_close(c);
        return rc;
    }
    return 0;
}

typedef struct jpeg_sink {
    FILE *fp;
    int failed;
} jpeg_sink;

static void jpeg_write(void *ctx, void *data, int size) {
    jpeg_sink *s = ctx;
    if (!s->failed && size > 0 && fwrite(data, 1, (size_t)size, s->fp) != (size_t)size)
        s->failed = 1;
}

/* Encodes the canvas as JPEG at path (atomically). Consumes the pixels: they
 * are packed to RGB in place, so the canvas can only be closed afterwards. */
static int canvas_write_jpeg(canvas *c, const char *path, cs_atomic_file *staged, cs_error *e) {
    cairo_status_t st = cairo_status(c->cr);
    if (st != CAIRO_STATUS_SUCCESS) return cairo_error(e, st, path);
    cairo_surface_flush(c->surf);
    unsigned char *d = cairo_image_surface_get_data(c->surf);
    int stride = cairo_image_surface_get_stride(c->surf);
    if (!d) return cs_fail(e, CLIPSCORE_EINTERNAL, "%s: canvas has no pixels", path);
    /* Pixel k (row-major) moves from byte y*stride + 4x >= 4k to bytes
     * 3k..3k+2, so packing forward never overwrites a pixel not yet read:
     * no second full-size buffer. */
    for (int y = 0; y < c->ph; y++) {
        for (int x = 0; x < c->pw; x++) {
            uint32_t px;
            memcpy(&px, d + (size_t)y * (size_t)stride + 4 * (size_t)x, 4);
            unsigned char *o = d + ((size_t)y * (size_t)c->pw + (size_t)x) * 3;
            o[0] = (unsigned char)(px >> 16);
            o[1] = (unsigned char)(px >> 8);
            o[2] = (unsigned char)px;
        }
    }
    cs_atomic_file f;
    int rc = cs_atomic_open(&f, path, e);
    if (rc) return rc;
    jpeg_sink sink = {f.fp, 0};
    int ok = stbi_write_jpg_to_func(jpeg_write, &sink, c->pw, c->ph, 3, d, FIG_JPEG_QUALITY);
    if (!ok || sink.failed) {
        cs_atomic_abort(&f);
        return cs_fail(e, CLIPSCORE_EIO, "writing %s failed%s", path,
                       ok ? "" : ": JPEG encoder refused the image");
    }
    if (!staged) return cs_atomic_commit(&f, e);
    /* Finished but not renamed: the caller commits it with the run's other
     * outputs (commit.h). */
    if ((rc = cs_atomic_finish(&f, e))) return rc;
    *staged = f;
    return 0;
}

/* ---- drawing helpers ----------------------------------------------------- */

static void set_font(PangoLayout *l, double px, int bold, int italic) {
    PangoFontDescription *d = pango_font_description_from_string(FIG_FONT);
    pango_font_description_set_absolute_size(d, px * PANGO_SCALE);
    pango_font_description_set_weight(d, bold ? PANGO_WEIGHT_BOLD : PANGO_WEIGHT_NORMAL);
    pango_font_description_set_style(d, italic ? PANGO_STYLE_ITALIC : PANGO_STYLE_NORMAL);
    pango_layout_set_font_description(l, d);
    pango_font_description_free(d);
}

/* A layout on c (owned by the caller: g_object_unref). */
static PangoLayout *new_layout(canvas *c, double px, int bold) {
    PangoLayout *l = pango_cairo_create_layout(c->cr);
    pango_cairo_context_set_font_options(pango_layout_get_context(l), c->fo);
    pango_layout_context_changed(l);
    pango_layout_set_wrap(l, PANGO_WRAP_WORD_CHAR);
    pango_layout_set_ellipsize(l, PANGO_ELLIPSIZE_END);
    set_font(l, px, bold, 0);
    return l;
}

/* Plain text (never markup: '<' and '&' stay literal), wrapped to width and
 * ellipsized after max_lines (width <= 0: one unbounded line). */
static void set_text(PangoLayout *l, const char *text, double width, int max_lines,
                     PangoAlignment align) {
    pango_layout_set_text(l, text, -1);
    pango_layout_set_width(l, width > 0 ? (int)(width * PANGO_SCALE) : -1);
    pango_layout_set_height(l, -(max_lines > 0 ? max_lines : 1));
    pango_layout_set_alignment(l, align);
}

static double text_w(PangoLayout *l) {
    int w, h;
    pango_layout_get_size(l, &w, &h);
    return (double)w / PANGO_SCALE;
}

static double text_h(PangoLayout *l) {
    int w, h;
    pango_layout_get_size(l, &w, &h);
    return (double)h / PANGO_SCALE;
}

static void set_rgb(cairo_t *cr, rgb c) {
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
}

static void show_at(canvas *c, PangoLayout *l, double x, double y, rgb col) {
    set_rgb(c->cr, col);
    cairo_move_to(c->cr, x, y);
    pango_cairo_show_layout(c->cr, l);
}

/* Shows l rotated a quarter turn anticlockwise (reading upwards) with the
 * layout's top-left corner at (x, y): the text runs up from y and its lines
 * stack to the right of x. */
static void show_up(canvas *c, PangoLayout *l, double x, double y, rgb col) {
    cairo_save(c->cr);
    cairo_translate(c->cr, x, y);
    cairo_rotate(c->cr, -FIG_PI / 2);
    pango_cairo_update_layout(c->cr, l);
    set_rgb(c->cr, col);
    cairo_move_to(c->cr, 0, 0);
    pango_cairo_show_layout(c->cr, l);
    cairo_restore(c->cr);
    pango_cairo_update_layout(c->cr, l);
}

static void rounded_rect(cairo_t *cr, double x, double y, double w, double h, double r) {
    if (r > w / 2) r = w / 2;
    if (r > h / 2) r = h / 2;
    cairo_new_sub_path(cr);
    cairo_arc(cr, x + w - r, y + r, r, -FIG_PI / 2, 0);
    cairo_arc(cr, x + w - r, y + h - r, r, 0, FIG_PI / 2);
    cairo_arc(cr, x + r, y + h - r, r, FIG_PI / 2, FIG_PI);
    cairo_arc(cr, x + r, y + r, r, FIG_PI, 3 * FIG_PI / 2);
    cairo_close_path(cr);
}

/* A colour-map gradient over (x, y, w, h): lo at the left (horizontal) or at
 * the bottom (vertical). */
static void draw_gradient(canvas *c, double x, double y, double w, double h, int vertical) {
    cairo_pattern_t *p = vertical ? cairo_pattern_create_linear(0, y + h, 0, y)
                                  : cairo_pattern_create_linear(x, 0, x + w, 0);
    for (int i = 0; i < CS_SCORE_CMAP_N; i++)
        cairo_pattern_add_color_stop_rgb(
            p, (double)i / (CS_SCORE_CMAP_N - 1), cs_score_cmap_stops[i][0] / 255.0,
            cs_score_cmap_stops[i][1] / 255.0, cs_score_cmap_stops[i][2] / 255.0);
    cairo_rectangle(c->cr, x, y, w, h);
    cairo_set_source(c->cr, p);
    cairo_fill_preserve(c->cr);
    cairo_pattern_destroy(p);
    cairo_set_source_rgb(c->cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(c->cr, 1);
    cairo_stroke(c->cr);
}

static void make_title(char *buf, size_t cap, int n, int64_t total_rows) {
    if (total_rows > n)
        snprintf(buf, cap, "clipscore: image-caption similarity (first %d of %lld pairs)", n,
                 (long long)total_rows);
    else
        snprintf(buf, cap, "clipscore: image-caption similarity (%d pair%s)", n, n == 1 ? "" : "s");
}

/* The title block: its height for width w, drawn when draw is set. */
static double header(canvas *c, int draw, double w, const char *title, const char *subtitle) {
    PangoLayout *l = new_layout(c, 26, 1);
    set_text(l, title, w, 3, PANGO_ALIGN_LEFT);
    double h = text_h(l);
    if (draw) show_at(c, l, FIG_MARGIN, FIG_MARGIN, k_ink);
    set_font(l, 14, 0, 0);
    set_text(l, subtitle, w, 6, PANGO_ALIGN_LEFT);
    if (draw) show_at(c, l, FIG_MARGIN, FIG_MARGIN + h + 8, k_muted);
    h += 8 + text_h(l);
    g_object_unref(l);
    return h;
}

/* Measures the header on a scratch canvas, before the real one is sized. */
static int measure_header(double w, const char *title, const char *subtitle, double *h,
                          cs_error *e) {
    canvas m;
    int rc = canvas_open(&m, 1, 1, e);
    if (rc) return rc;
    *h = header(&m, 0, w, title, subtitle);
    canvas_close(&m);
    return 0;
}

static int check_path(const char *path, cs_error *e) {
    if (!path || !*path) return cs_fail(e, CLIPSCORE_EARG, "figure: no output path");
    return 0;
}

static int check_n(const char *path, int n, cs_error *e) {
    if (n < 0) return cs_fail(e, CLIPSCORE_EARG, "%s: negative pair count %d", path, n);
    if (n > FIG_MAX_PAIRS)
        return cs_fail(e, CLIPSCORE_ELIMIT, "%s: figures show at most %d pairs, asked for %d", path,
                       FIG_MAX_PAIRS, n);
    return 0;
}

/* ---- image_captions.jpg -------------------------------------------------- */

/* Grid cell geometry, in drawing units. */
#define CARD_PAD 12.0
#define THUMB_W 240.0
#define THUMB_H 200.0
#define BADGE_H 28.0
#define CAPTION_H 122.0
#define CARD_W (THUMB_W + 2 * CARD_PAD)
#define CARD_H (CARD_PAD + THUMB_H + 8 + BADGE_H + 8 + CAPTION_H + CARD_PAD)
#define CARD_GAP 14.0

static int check_thumb(const char *path, int i, const cs_image *t, cs_error *e) {
    if (!t->px) return 0;
    if (t->w < 1 || t->h < 1 || t->w > 32767 || t->h > 32767 || t->channels < 1 || t->channels > 4)
        return cs_fail(e, CLIPSCORE_EARG, "%s: thumbnail %d is %dx%d with %d channels", path, i,
                       t->w, t->h, t->channels);
    return 0;
}

/* Draws thumbnail t fitted and centred in the box (x, y, w, h). */
static int draw_thumb(canvas *c, const cs_image *t, double x, double y, double w, double h,
                      cs_error *e) {
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, t->w, t->h);
    cairo_status_t st = cairo_surface_status(s);
    if (st != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(s);
        return cairo_error(e, st, "thumbnail");
    }
    cairo_surface_flush(s);
    unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    int ch = t->channels;
    for (int yy = 0; yy < t->h; yy++) {
        const unsigned char *src = t->px + (size_t)yy * (size_t)t->w * (size_t)ch;
        uint32_t *dst = (uint32_t *)(void *)(d + (size_t)yy * (size_t)stride);
        for (int xx = 0; xx < t->w; xx++, src += ch) {
            unsigned r = src[0], g = ch >= 3 ? src[1] : src[0], b = ch >= 3 ? src[2] : src[0];
            if (ch == 2 || ch == 4) { /* composite over white: the page colour */
                unsigned a = src[ch - 1];
                r = (r * a + 255 * (255 - a) + 127) / 255;
                g = (g * a + 255 * (255 - a) + 127) / 255;
                b = (b * a + 255 * (255 - a) + 127) / 255;
            }
            dst[xx] = (r << 16) | (g << 8) | b;
        }
    }
    cairo_surface_mark_dirty(s);
    double f = fmin(w / t->w, h / t->h);
    double dw = t->w * f, dh = t->h * f;
    double ox = x + (w - dw) / 2, oy = y + (h - dh) / 2;
    cairo_t *cr = c->cr;
    cairo_save(cr);
    cairo_translate(cr, ox, oy);
    cairo_scale(cr, f, f);
    cairo_set_source_surface(cr, s, 0, 0);
    /* PAD: edge pixels are not blended with transparency when filtering. */
    cairo_pattern_set_extend(cairo_get_source(cr), CAIRO_EXTEND_PAD);
    cairo_pattern_set_filter(cairo_get_source(cr),
                             f < 1 ? CAIRO_FILTER_GOOD : CAIRO_FILTER_BILINEAR);
    cairo_rectangle(cr, 0, 0, t->w, t->h);
    cairo_fill(cr);
    cairo_restore(cr);
    cairo_surface_destroy(s);
    cairo_rectangle(cr, ox - 0.5, oy - 0.5, dw + 1, dh + 1);
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    return 0;
}

int cs_figure_image_captions(const char *path, cs_atomic_file *staged, int n,
                             const cs_image *thumbs, const char *const *captions,
                             const float *scores, const char *const *errors, int64_t total_rows,
                             cs_error *e) {
    int rc = check_path(path, e);
    if (!rc) rc = check_n(path, n, e);
    if (rc) return rc;
    if (n > 0 && (!thumbs || !captions || !scores))
        return cs_fail(e, CLIPSCORE_EARG, "%s: missing thumbnails, captions or scores", path);
    for (int i = 0; i < n; i++)
        if ((rc = check_thumb(path, i, &thumbs[i], e))) return rc;

    scale sc = scale_of(scores, (size_t)n);
    int cols = n > 0 ? (int)ceil(sqrt((double)n)) : 1;
    int rows = n > 0 ? (n + cols - 1) / cols : 0;
    double grid_w = cols * CARD_W + (cols - 1) * CARD_GAP;
    double W = fmax(2 * FIG_MARGIN + grid_w, 760);
    double inner = W - 2 * FIG_MARGIN;

    char title[160], lo_s[32], hi_s[32], sub[640];
    make_title(title, sizeof title, n, total_rows);
    fmt_value(&sc, sc.lo, lo_s, sizeof lo_s);
    fmt_value(&sc, sc.hi, hi_s, sizeof hi_s);
    char flat_note[64] = "";
    if (sc.flat) {
        char v[32];
        fmt_value(&sc, (sc.lo + sc.hi) / 2, v, sizeof v);
        snprintf(flat_note, sizeof flat_note, " All scores shown are %s.", v);
    }
    if (n == 0)
        snprintf(sub, sizeof sub, "No pairs to show.");
    else
        snprintf(sub, sizeof sub,
                 "Each image with its own caption; the badge is their CLIP cosine similarity, "
                 "coloured over the range of the scores shown.%s%s%s",
                 flat_note, sc.failed ? " Grey badge: the row failed (reason below it)." : "",
                 total_rows > n ? " Only the first pairs are shown (--figure-limit)." : "");
    double head_h;
    if ((rc = measure_header(inner, title, sub, &head_h, e))) return rc;
    int legend = sc.any && !sc.flat;
    double legend_h = legend ? 30 : 0;
    double grid_y = FIG_MARGIN + head_h + 14 + legend_h;
    double H = grid_y + rows * CARD_H + (rows > 0 ? (rows - 1) * CARD_GAP : 0) + FIG_MARGIN;

    canvas c;
    if ((rc = canvas_open(&c, W, H, e))) return rc;
    cairo_t *cr = c.cr;
    header(&c, 1, inner, title, sub);
    PangoLayout *l = new_layout(&c, 13, 0);

    if (legend) { /* the score legend: min [gradient] max */
        double ly = FIG_MARGIN + head_h + 14;
        set_font(l, 13, 0, 0);
        char buf[96];
        snprintf(buf, sizeof buf, "score colour:  %s", lo_s);
        set_text(l, buf, 0, 1, PANGO_ALIGN_LEFT);
        show_at(&c, l, FIG_MARGIN, ly, k_ink);
        double gx = FIG_MARGIN + text_w(l) + 8;
        draw_gradient(&c, gx, ly + 2, 240, 14, 0);
        set_text(l, hi_s, 0, 1, PANGO_ALIGN_LEFT);
        show_at(&c, l, gx + 248, ly, k_ink);
    }

    for (int i = 0; i < n; i++) {
        double x = FIG_MARGIN + (i % cols) * (CARD_W + CARD_GAP);
        double y = grid_y + (i / cols) * (CARD_H + CARD_GAP);
        int failed = !isfinite(scores[i]);
        char reason[FIG_TEXT_BYTES], text[FIG_TEXT_BYTES + 32];
        clean_text(errors ? errors[i] : NULL, reason, sizeof reason);

        rounded_rect(cr, x, y, CARD_W, CARD_H, 8);
        cairo_set_source_rgb(cr, 0.955, 0.955, 0.955);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
        cairo_set_line_width(cr, 1);
        cairo_stroke(cr);

        double tx = x + CARD_PAD, ty = y + CARD_PAD;
        int reason_shown = 0;
        if (thumbs[i].px) {
            if ((rc = draw_thumb(&c, &thumbs[i], tx, ty, THUMB_W, THUMB_H, e))) goto done;
        } else { /* grey placeholder saying why there is no picture */
            cairo_rectangle(cr, tx, ty, THUMB_W, THUMB_H);
            set_rgb(cr, k_error_fill);
            cairo_fill(cr);
            /* "error" over the reason, the pair centred in the box. */
            set_font(l, 12, 0, 0);
            set_text(l, reason, THUMB_W - 20, 5, PANGO_ALIGN_CENTER);
            double reason_h = reason[0] ? text_h(l) + 6 : 0;
            double head_y = ty + (THUMB_H - 24 - reason_h) / 2;
            if (reason[0]) show_at(&c, l, tx + 10, head_y + 24 + 6, k_error_ink);
            set_font(l, 20, 1, 0);
            set_text(l, failed ? "error" : "no image", THUMB_W - 20, 1, PANGO_ALIGN_CENTER);
            show_at(&c, l, tx + 10, head_y, k_ink);
            reason_shown = 1;
        }

        /* "#i" and the score badge, coloured by the shared scale. */
        double by = ty + THUMB_H + 8;
        set_font(l, 15, 1, 0);
        snprintf(text, sizeof text, "#%d", i + 1);
        set_text(l, text, 0, 1, PANGO_ALIGN_LEFT);
        show_at(&c, l, tx, by + (BADGE_H - text_h(l)) / 2, k_ink);
        rgb fill = failed ? k_error_fill : cmap(scale_t(&sc, scores[i]));
        double bw = 120, bx = tx + THUMB_W - bw;
        rounded_rect(cr, bx, by, bw, BADGE_H, BADGE_H / 2);
        set_rgb(cr, fill);
        cairo_fill(cr);
        if (failed)
            snprintf(text, sizeof text, "error");
        else
            fmt_value(&sc, scores[i], text, sizeof text);
        set_font(l, 15, 1, 0);
        set_text(l, text, bw, 1, PANGO_ALIGN_CENTER);
        show_at(&c, l, bx, by + (BADGE_H - text_h(l)) / 2, failed ? k_ink : text_on(fill));

        /* The caption, then (for a failed row with a picture) the reason. */
        double cy = by + BADGE_H + 8;
        int show_reason = failed && reason[0] && !reason_shown;
        clean_text(captions[i], text, sizeof text);
        set_font(l, 13, 0, text[0] == '\0');
        set_text(l, text[0] ? text : "(empty caption)", THUMB_W, show_reason ? 4 : 7,
                 PANGO_ALIGN_LEFT);
        show_at(&c, l, tx, cy, text[0] ? k_ink : k_muted);
        if (show_reason) {
            double ch = text_h(l);
            snprintf(text, sizeof text, "error: %s", reason);
            set_font(l, 12, 0, 0);
            set_text(l, text, THUMB_W, 3, PANGO_ALIGN_LEFT);
            show_at(&c, l, tx, cy + ch + 4, k_error_ink);
        }
    }
    rc = canvas_write_jpeg(&c, path, staged, e);
done:
    g_object_unref(l);
    canvas_close(&c);
    return rc;
}

/* ---- similarity_matrix.jpg ----------------------------------------------- */

/* "#i  caption" (or "#i" alone) as valid single-paragraph UTF-8. */
static void label_text(char *buf, size_t cap, int i, const char *caption, int with_caption) {
    char clean[FIG_TEXT_BYTES];
    clean_text(caption, clean, sizeof clean);
    if (with_caption)
        snprintf(buf, cap, "#%d  %s", i + 1, clean[0] ? clean : "(empty)");
    else
        snprintf(buf, cap, "#%d", i + 1);
}

/* A round tick step for range: 1, 2 or 5 times a power of ten, 3 to 7 ticks. */
static double nice_step(double range) {
    double raw = range / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

/* A colour bar tick at (x, y) with its label to the right; returns the
 * label's width. */
static double bar_tick(canvas *c, PangoLayout *l, double x, double y, const char *label, int bold) {
    cairo_move_to(c->cr, x, y);
    cairo_line_to(c->cr, x + (bold ? 7 : 5), y);
    cairo_set_source_rgb(c->cr, 0.2, 0.2, 0.2);
    cairo_set_line_width(c->cr, 1);
    cairo_stroke(c->cr);
    set_font(l, 13, bold, 0);
    set_text(l, label, 0, 1, PANGO_ALIGN_LEFT);
    show_at(c, l, x + 10, y - text_h(l) / 2, k_ink);
    return text_w(l);
}

#define LABEL_MAX 250.0 /* row label width, column label height */
#define AXIS_TITLE 26.0
#define BAR_W 24.0
#define BAR_MIN_H 260.0

int cs_figure_similarity_matrix(const char *path, cs_atomic_file *staged, int n, const float *sim,
                                const char *const *captions, int64_t total_rows, cs_error *e) {
    int rc = check_path(path, e);
    if (!rc) rc = check_n(path, n, e);
    if (rc) return rc;
    if (n > 0 && (!sim || !captions))
        return cs_fail(e, CLIPSCORE_EARG, "%s: missing similarities or captions", path);

    scale sc = scale_of(sim, (size_t)n * (size_t)n);
    /* Cells shrink with n so 64 pairs still fit a screen-sized figure. */
    double cell = n > 0 ? floor(2560.0 / n) : 0;
    if (cell > 80) cell = 80;
    if (cell < 3) cell = 3;
    double side = n * cell;
    /* Rows too small for a label each are labelled every label_step-th. */
    int label_step = cell >= 8 ? 1 : (int)ceil(10.0 / cell);
    double label_px = cell >= 8 ? fmin(13, cell * 0.8) : 9;

    /* The diagonal's outline: a dark stroke of lw with a light core inside. */
    double lw = fmax(1.5, fmin(4, cell * 0.06));

    char title[160], lo_s[32], hi_s[32], sub[900], text[FIG_TEXT_BYTES + 32];
    make_title(title, sizeof title, n, total_rows);
    fmt_value(&sc, sc.lo, lo_s, sizeof lo_s);
    fmt_value(&sc, sc.hi, hi_s, sizeof hi_s);

    /* On a scratch canvas: the value font that fits a cell inside the
     * diagonal's outline, and the room the labels need (at most
     * LABEL_MAX, beyond which they are ellipsized). */
    canvas m;
    if ((rc = canvas_open(&m, 1, 1, e))) return rc;
    double value_px = fmin(15, cell * 0.3), room = cell - 3 * lw - 4, label_w = 0;
    PangoLayout *ml = new_layout(&m, value_px, 0);
    const char *samples[] = {lo_s, hi_s, "error"};
    double widest = 0;
    for (int k = 0; k < 3; k++) {
        set_text(ml, samples[k], 0, 1, PANGO_ALIGN_LEFT);
        widest = fmax(widest, text_w(ml));
    }
    if (widest > room) value_px *= room / widest;
    set_font(ml, label_px, 0, 0);
    for (int i = 0; i < n && label_w < LABEL_MAX; i += label_step) {
        label_text(text, sizeof text, i, captions[i], label_step == 1);
        set_text(ml, text, 0, 1, PANGO_ALIGN_LEFT);
        label_w = fmin(LABEL_MAX, fmax(label_w, text_w(ml) + 2));
    }
    g_object_unref(ml);
    canvas_close(&m);
    int show_values = n > 0 && value_px >= 7.5;

    double mx = FIG_MARGIN + AXIS_TITLE + label_w + 8;
    double bar_x = mx + side + 36;
    double tick_w = 90; /* room for the tick labels */
    double W = fmax(bar_x + BAR_W + 10 + tick_w + AXIS_TITLE + FIG_MARGIN, 760);
    double inner = W - 2 * FIG_MARGIN;

    char range_note[200], mid_s[32];
    fmt_value(&sc, (sc.lo + sc.hi) / 2, mid_s, sizeof mid_s);
    if (!sc.any)
        snprintf(range_note, sizeof range_note, "No values to colour.");
    else if (sc.flat)
        snprintf(range_note, sizeof range_note, "All values shown are %s.", mid_s);
    else
        snprintf(range_note, sizeof range_note,
                 "Colours span the range of the values shown, %s to %s (not the full -1 to 1).",
                 lo_s, hi_s);
    if (n == 0)
        snprintf(sub, sizeof sub, "No pairs to show.");
    else
        snprintf(sub, sizeof sub,
                 "CLIP cosine similarity of image i (rows, labelled with its own caption) with "
                 "caption j (columns). Outlined: the diagonal, each image with its own caption. "
                 "%s%s%s%s",
                 range_note, sc.failed ? " Grey: error." : "",
                 show_values ? "" : " Cell values omitted at this size (see output.csv).",
                 total_rows > n ? " Only the first pairs are shown (--figure-limit)." : "");
    double head_h;
    if ((rc = measure_header(inner, title, sub, &head_h, e))) return rc;
    double my = FIG_MARGIN + head_h + 16 + (n > 0 ? AXIS_TITLE + label_w + 8 : 0);
    double bar_h = fmax(side, BAR_MIN_H);
    double H = my + (n > 0 ? bar_h : 0) + FIG_MARGIN;

    canvas c;
    if ((rc = canvas_open(&c, W, H, e))) return rc;
    cairo_t *cr = c.cr;
    header(&c, 1, inner, title, sub);
    PangoLayout *l = new_layout(&c, 13, 0);
    if (n == 0) goto write;

    /* Cells, with a hairline gap when they are large enough to show it. */
    double gap = cell >= 16 ? 1 : 0;
    if (show_values) set_font(l, value_px, 0, 0);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            float v = sim[(size_t)i * (size_t)n + (size_t)j];
            int bad = !isfinite(v);
            rgb fill = bad ? k_error_fill : cmap(scale_t(&sc, v));
            double x = mx + j * cell, y = my + i * cell;
            cairo_rectangle(cr, x + gap / 2, y + gap / 2, cell - gap, cell - gap);
            set_rgb(cr, fill);
            cairo_fill(cr);
            if (show_values) {
                char buf[32];
                if (bad)
                    snprintf(buf, sizeof buf, "error");
                else
                    fmt_value(&sc, v, buf, sizeof buf);
                set_text(l, buf, cell, 1, PANGO_ALIGN_CENTER);
                show_at(&c, l, x, y + (cell - text_h(l)) / 2, bad ? k_ink : text_on(fill));
            }
        }
    }
    /* The diagonal: a dark outline with a light core shows on any colour. */
    for (int i = 0; i < n; i++) {
        double x = mx + i * cell, y = my + i * cell;
        cairo_set_line_width(cr, lw);
        cairo_rectangle(cr, x + lw / 2, y + lw / 2, cell - lw, cell - lw);
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_stroke(cr);
        if (cell >= 12) {
            cairo_set_line_width(cr, lw / 2);
            cairo_rectangle(cr, x + lw * 1.25, y + lw * 1.25, cell - 2.5 * lw, cell - 2.5 * lw);
            cairo_set_source_rgb(cr, 1, 1, 1);
            cairo_stroke(cr);
        }
    }

    /* Row labels (right-aligned against the matrix) and column labels
     * (reading upwards from its top edge): index and shortened caption. */
    set_font(l, label_px, 0, 0);
    for (int i = 0; i < n; i += label_step) {
        label_text(text, sizeof text, i, captions[i], label_step == 1);
        set_text(l, text, label_w, 1, PANGO_ALIGN_RIGHT);
        double lh = text_h(l);
        show_at(&c, l, mx - 8 - label_w, my + i * cell + (cell - lh) / 2, k_ink);
        set_text(l, text, label_w, 1, PANGO_ALIGN_LEFT);
        show_up(&c, l, mx + i * cell + (cell - lh) / 2, my - 8, k_ink);
    }

    /* Axis titles. */
    set_font(l, 15, 1, 0);
    set_text(l, "caption j (columns)", side > 200 ? side : 200, 1, PANGO_ALIGN_CENTER);
    show_at(&c, l, mx + side / 2 - (side > 200 ? side : 200) / 2, my - 8 - label_w - AXIS_TITLE + 2,
            k_ink);
    set_text(l, "image i (rows)", bar_h, 1, PANGO_ALIGN_CENTER);
    show_up(&c, l, FIG_MARGIN, my + side / 2 + bar_h / 2, k_ink);

    /* Colour bar: the data range shown, lo at the bottom; its ends carry the
     * exact minimum and maximum (bold), round ticks fill in between. */
    draw_gradient(&c, bar_x, my, BAR_W, bar_h, 1);
    double step = nice_step(sc.hi - sc.lo);
    int tick_dec = (int)fmax(0, -floor(log10(step) + 1e-9));
    double tick_label_w = 0;
    for (long k = (long)ceil(sc.lo / step - 1e-9); k * step <= sc.hi + 1e-9 * step; k++) {
        double v = k * step, y = my + bar_h * (1 - scale_t(&sc, v));
        if (y < my + 18 || y > my + bar_h - 18) continue; /* the end labels sit there */
        char buf[32];
        snprintf(buf, sizeof buf, "%.*f", tick_dec, fabs(v) < step / 2 ? 0.0 : v);
        tick_label_w = fmax(tick_label_w, bar_tick(&c, l, bar_x + BAR_W, y, buf, 0));
    }
    tick_label_w = fmax(tick_label_w, bar_tick(&c, l, bar_x + BAR_W, my + bar_h, lo_s, 1));
    tick_label_w = fmax(tick_label_w, bar_tick(&c, l, bar_x + BAR_W, my, hi_s, 1));
    set_font(l, 13, 1, 0);
    set_text(l, "cosine similarity (range shown)", bar_h, 1, PANGO_ALIGN_CENTER);
    show_up(&c, l, bar_x + BAR_W + 10 + fmin(tick_label_w, tick_w) + 6, my + bar_h, k_ink);

write:
    rc = canvas_write_jpeg(&c, path, staged, e);
    g_object_unref(l);
    canvas_close(&c);
    return rc;
}

void cs_figures_shutdown(void) {
    pango_cairo_font_map_set_default(NULL);
    cairo_debug_reset_static_data();
    /* fontconfig comes in through pango rather than as a direct dependency,
     * so its finaliser is looked up instead of linked. */
    void *sym = dlsym(RTLD_DEFAULT, "FcFini");
    void (*fc_fini)(void) = NULL;
    if (sym) memcpy(&fc_fini, &sym, sizeof fc_fini);
    if (fc_fini) fc_fini();
}
