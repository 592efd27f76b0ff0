/* writer_report.c - report.html: one self-contained page about a run (see
 * writer.h): its summary (input, model and weights' SHA-256, device,
 * precision, template, row counts, timings, the similarity's mean, median
 * and percentiles), a histogram of the similarities as inline SVG (the
 * keep threshold drawn on it when one is given), the N lowest-scoring
 * pairs and the N highest (or, when at most N rows were scored, every pair
 * in input order), and the first N failed rows with their errors.
 *
 * Bounded: the statistics are a fixed histogram (score_stats.h), the pairs
 * two heaps of N, the failed rows the first N.
 *
 * Thumbnails show what the encoder saw: the row's preprocessed pixels (the
 * centre crop, R x R) with the normalisation undone, resized to
 * CS_REPORT_THUMB_SIDE and kept as a small JPEG (REPORT_JPEG_QUALITY, about
 * 5 KB) made when the row enters a heap, so only rows that may be shown
 * cost anything (a thumbnail made for every row by the decode workers cost
 * 50-75% of their decode and preprocess time, measured on the example
 * images). A row whose embedding came from the cache has no pixels at hand:
 * its image path is kept and the image decoded and preprocessed once more
 * at the end, for the at most 2N rows shown.
 *
 * Self-contained: styles inline, pictures as data: URIs, charts as SVG, no
 * script, font or link outside the file, so it opens offline and with
 * JavaScript off. Text is escaped for HTML, invalid UTF-8 and control
 * characters replaced. Leaves out: the figures' pictures (writer_figures.c)
 * and anything interactive. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "context.h"
#include "score_colors.h"
#include "score_stats.h"
#include "stb_image_write_impl.h"
#include "webdataset.h"
#include "writer.h"

#define REPORT_JPEG_QUALITY 75
#define REPORT_CAPTION_BYTES 400 /* of a caption shown; the rest is cut with "…" */
#define REPORT_ERROR_BYTES 400
#define REPORT_HIST_BINS 50

typedef struct entry { /* a row shown in the report */
    long index, line;
    double score;
    char *caption; /* cut to REPORT_CAPTION_BYTES */
    char *image;   /* the image field as given */
    char *uri;     /* data:image/jpeg;base64,... or NULL */
    char *path;    /* image file to thumbnail at the end when uri is NULL */
    char *tar;     /* or the tar whose member `image` (a key) it is */
    char *tar_key; /* that tar's --image-key, or NULL */
    char *error;   /* failed rows */
} entry;

typedef struct report_writer {
    cs_writer base;
    char *path;
    int pairs;
    cs_preprocess_cfg pp;
    int64_t max_pixels;
    double threshold; /* NaN: none */
    cs_atomic_file file;
    cs_score_stats stats;
    cs_top low, high;
    entry *low_e, *high_e; /* [pairs], by heap slot */
    entry *failed;         /* [pairs], the first failed rows */
    int n_failed_kept;
    int64_t n_failed;
    double ref_sum; /* RefCLIPScore over rows that have one */
    int64_t ref_n;
} report_writer;

static void entry_clear(entry *x) {
    free(x->caption);
    free(x->image);
    free(x->uri);
    free(x->path);
    free(x->tar);
    free(x->tar_key);
    free(x->error);
    memset(x, 0, sizeof *x);
}

/* ---- text ---------------------------------------------------------------- */

/* A copy of s cut to at most max bytes on a character boundary, "…" added
 * when cut. */
static char *cut_copy(const char *s, size_t max, cs_error *e) {
    size_t n = strlen(s);
    if (n <= max) return cs_strdup(s, e);
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80) max--;
    return cs_asprintf(e, "%.*s\u2026", (int)max, s);
}

/* Length of the valid UTF-8 sequence at p, 0 when invalid. */
static size_t utf8_len(const unsigned char *p) {
    unsigned c = p[0];
    size_t n;
    unsigned v, min;
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0)
        n = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0)
        n = 4, v = c & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t k = 1; k < n; k++) { /* the NUL terminator fails this test */
        if ((p[k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (p[k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    return n;
}

/* s as HTML text (also safe inside a quoted attribute). */
static void put_text(FILE *f, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 0) { /* invalid byte */
            fputs("\xEF\xBF\xBD", f);
            p++;
            continue;
        }
        if (n == 1) {
            switch (*p) {
            case '&':
                fputs("&amp;", f);
                break;
            case '<':
                fputs("&lt;", f);
                break;
            case '>':
                fputs("&gt;", f);
                break;
            case '"':
                fputs("&quot;", f);
                break;
            case '\'':
                fputs("&#39;", f);
                break;
            default:
                fputc(*p < 0x20 || *p == 0x7F ? ' ' : *p, f);
            }
        } else {
            fwrite(p, 1, n, f);
        }
        p += n;
    }
}

/* ---- thumbnails ---------------------------------------------------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
    int failed;
} buf;

static void buf_put(void *ctx, void *data, int size) {
    buf *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->n + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8192;
        while (cap < b->n + (size_t)size) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, (size_t)size);
    b->n += (size_t)size;
}

/* The thumbnail as a data: URI of a JPEG; NULL when it cannot be made. */
static char *thumb_uri(const cs_image *t) {
    if (!t || !t->px || t->channels != 3) return NULL;
    buf b = {0};
    int ok = stbi_write_jpg_to_func(buf_put, &b, t->w, t->h, 3, t->px, REPORT_JPEG_QUALITY);
    if (!ok || b.failed) {
        free(b.p);
        return NULL;
    }
    static const char head[] = "data:image/jpeg;base64,";
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t hl = sizeof head - 1;
    char *out = malloc(hl + (b.n + 2) / 3 * 4 + 1);
    if (out) {
        memcpy(out, head, hl);
        char *o = out + hl;
        const unsigned char *s = (const unsigned char *)b.p;
        for (size_t i = 0; i < b.n; i += 3) {
            unsigned v = (unsigned)s[i] << 16;
            if (i + 1 < b.n) v |= (unsigned)s[i + 1] << 8;
            if (i + 2 < b.n) v |= s[i + 2];
            *o++ = b64[v >> 18 & 63];
            *o++ = b64[v >> 12 & 63];
            *o++ = i + 1 < b.n ? b64[v >> 6 & 63] : '=';
            *o++ = i + 2 < b.n ? b64[v & 63] : '=';
        }
        *o = '\0';
    }
    free(b.p);
    return out;
}

/* The thumbnail of preprocessed pixels [3][R][R] as a data: URI, NULL when
 * it cannot be made (the row is then shown without a picture). */
static char *pixels_uri(const report_writer *rw, const float *px) {
    const int R = rw->pp.size;
    cs_image rgb, t;
    if (!px || cs_image_alloc(&rgb, R, R, 3, NULL)) return NULL;
    const size_t plane = (size_t)R * R;
    for (int c = 0; c < 3; c++) {
        double m = rw->pp.mean[c], sd = rw->pp.std[c];
        for (size_t i = 0; i < plane; i++) {
            double v = ((double)px[c * plane + i] * sd + m) * 255.0;
            rgb.px[i * 3 + c] = (unsigned char)(v <= 0 ? 0 : v >= 255 ? 255 : lround(v));
        }
    }
    char *uri = NULL;
    /* Never enlarged: the browser scales a small model's input up as well. */
    int side = R < CS_REPORT_THUMB_SIDE ? R : CS_REPORT_THUMB_SIDE;
    if (cs_image_thumbnail(&rgb, side, &t, NULL) == 0) {
        uri = thumb_uri(&t);
        cs_image_free(&t);
    }
    cs_image_free(&rgb);
    return uri;
}

/* ---- rows ---------------------------------------------------------------- */

/* Fills x with row r; uri is the row's thumbnail (copied), or NULL. */
static int entry_fill(entry *x, const cs_scored_row *r, const char *uri, cs_error *e) {
    entry_clear(x);
    x->index = r->index;
    x->line = r->line;
    x->score = r->similarity;
    if (!(x->caption = cut_copy(r->caption, REPORT_CAPTION_BYTES, e))) return CLIPSCORE_ENOMEM;
    if (!(x->image = cut_copy(r->image ? r->image : "", REPORT_CAPTION_BYTES, e)))
        return CLIPSCORE_ENOMEM;
    if (uri && !(x->uri = cs_strdup(uri, e))) return CLIPSCORE_ENOMEM;
    if (!uri && r->image_path && !(x->path = cs_strdup(r->image_path, e))) return CLIPSCORE_ENOMEM;
    if (!uri && r->image_tar &&
        (!(x->tar = cs_strdup(r->image_tar, e)) ||
         (r->image_key && !(x->tar_key = cs_strdup(r->image_key, e)))))
        return CLIPSCORE_ENOMEM;
    if (r->error && !(x->error = cut_copy(r->error, REPORT_ERROR_BYTES, e)))
        return CLIPSCORE_ENOMEM;
    return 0;
}

static int report_row(cs_writer *w, const cs_scored_row *r, cs_error *e) {
    report_writer *rw = (report_writer *)w;
    if (r->error) {
        rw->n_failed++;
        if (rw->n_failed_kept >= rw->pairs) return 0;
        return entry_fill(&rw->failed[rw->n_failed_kept++], r, NULL, e);
    }
    cs_score_stats_add(&rw->stats, r->similarity);
    if (!isnan(r->refclipscore)) {
        rw->ref_sum += r->refclipscore;
        rw->ref_n++;
    }
    int sl = cs_top_offer(&rw->low, r->similarity, r->index);
    int sh = cs_top_offer(&rw->high, r->similarity, r->index);
    if (sl < 0 && sh < 0) return 0;
    /* Encoded once for both heaps; on failure the row is shown without it. */
    char *uri = pixels_uri(rw, r->pixels);
    int rc = 0;
    if (sl >= 0) rc = entry_fill(&rw->low_e[sl], r, uri, e);
    if (!rc && sh >= 0) rc = entry_fill(&rw->high_e[sh], r, uri, e);
    free(uri);
    return rc;
}

/* A row shown whose embedding came from the cache: its image decoded and
 * preprocessed once more, as the scorer did. */
static void thumbnail_late(report_writer *rw, entry *x) {
    if (x->uri || (!x->path && !x->tar)) return;
    cs_image img;
    float *px = malloc(3 * (size_t)rw->pp.size * (size_t)rw->pp.size * sizeof *px);
    int loaded = 0;
    if (px && x->path) {
        loaded = cs_image_load(x->path, rw->max_pixels, &img, NULL) == 0;
    } else if (px) { /* a tar member: found again by its key */
        cs_wds_options o;
        memset(&o, 0, sizeof o);
        o.image_key = x->tar_key;
        cs_wds_reader *holder = NULL;
        cs_wds_sample s;
        if (cs_wds_find(x->tar, &o, x->image, &holder, &s, NULL) == 0 && s.image)
            loaded = cs_image_load_memory(s.image, s.image_len, x->image, rw->max_pixels, &img,
                                          NULL) == 0;
        else if (holder && s.image_path)
            loaded = cs_image_load(s.image_path, rw->max_pixels, &img, NULL) == 0;
        cs_wds_close(holder);
    }
    if (loaded) {
        if (cs_image_preprocess(&img, &rw->pp, px, NULL) == 0) x->uri = pixels_uri(rw, px);
        cs_image_free(&img);
    }
    free(px);
}

/* ---- the page ------------------------------------------------------------ */

typedef struct view { /* how scores are shown: the colour scale and decimals */
    double lo, hi;
    int decimals;
} view;

static view view_of(const cs_score_stats *s) {
    view v = {0, 1, 3};
    if (!s->n) return v;
    v.lo = s->min;
    v.hi = s->max;
    if (v.hi - v.lo < 1e-6) v.lo -= 0.05, v.hi += 0.05; /* one value: as the figures */
    v.decimals = cs_score_decimals(v.hi - v.lo);
    return v;
}

static void put_score(FILE *f, const view *v, double s) {
    fprintf(f, "%.*f", v->decimals, cs_score_rounded(s, v->decimals));
}

static void put_colour(FILE *f, const view *v, double s) {
    double c[3];
    cs_score_cmap((s - v->lo) / (v->hi - v->lo), c);
    fprintf(f, "background:#%02x%02x%02x;color:%s", (int)lround(c[0] * 255),
            (int)lround(c[1] * 255), (int)lround(c[2] * 255),
            cs_score_dark_text(c) ? "#000" : "#fff");
}

static const char k_style[] =
    "*{box-sizing:border-box}"
    "body{margin:0;font:15px/1.45 'DejaVu Sans',system-ui,sans-serif;color:#1a1a1a;"
    "background:#fafafa}"
    "main{max-width:1240px;margin:0 auto;padding:20px}"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:28px 0 10px}"
    ".sub{color:#595959;margin:0 0 16px;overflow-wrap:anywhere}"
    ".cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px}"
    "table{border-collapse:collapse;width:100%;background:#fff}"
    "th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e3e3;vertical-align:top;"
    "overflow-wrap:anywhere}"
    "th{font-weight:600;color:#404040}#run th,#numbers th{width:40%}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".box{background:#fff;border:1px solid #d9d9d9;border-radius:8px;padding:12px}"
    "svg{width:100%;height:auto;display:block}.hist{overflow-x:auto}"
    ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;"
    "list-style:none;margin:0;padding:0}"
    ".pair{background:#f3f3f3;border:1px solid #d9d9d9;border-radius:8px;padding:8px;"
    "margin:0;min-width:0}"
    ".pair img,.pair .ph{width:100%;aspect-ratio:1/1;object-fit:contain;background:#fff;"
    "display:block;border-radius:4px}"
    ".pair .ph{background:#bdbdbd;display:flex;align-items:center;justify-content:center;"
    "color:#333;font-weight:600}"
    ".meta{display:flex;justify-content:space-between;align-items:center;margin:6px 0 4px;"
    "gap:6px}"
    ".badge{border-radius:999px;padding:1px 10px;font-weight:700;"
    "font-variant-numeric:tabular-nums}"
    ".row{font-weight:700}.cap{margin:0;overflow-wrap:anywhere}"
    ".key{color:#595959;font-size:12px;overflow-wrap:anywhere;margin:2px 0 0}"
    ".err{color:#a61414}.note{color:#595959}"
    "@media (max-width:600px){main{padding:10px}.grid{grid-template-columns:repeat(2,1fr);"
    "gap:8px}h1{font-size:21px}.hist svg{min-width:640px}}";

static void put_row_kv(FILE *f, const char *k, const char *v) {
    fprintf(f, "<tr><th>%s</th><td>", k);
    put_text(f, v);
    fputs("</td></tr>\n", f);
}

static void put_row_num(FILE *f, const char *k, const view *v, double x) {
    fprintf(f, "<tr><th>%s</th><td class=\"n\">", k);
    if (isnan(x))
        fputs("&ndash;", f);
    else
        put_score(f, v, x);
    fputs("</td></tr>\n", f);
}

/* The histogram as inline SVG: bars coloured by the score scale, the mean
 * and the threshold (when given) drawn on it. */
static void put_histogram(FILE *f, const report_writer *rw, const view *v) {
    int64_t counts[REPORT_HIST_BINS];
    int nb;
    double lo, w;
    cs_score_stats_histogram(&rw->stats, REPORT_HIST_BINS, counts, &nb, &lo, &w);
    if (!nb) {
        fputs("<p class=\"note\">No row was scored.</p>\n", f);
        return;
    }
    int64_t top = 1;
    for (int i = 0; i < nb; i++)
        if (counts[i] > top) top = counts[i];
    const double W = 1000, H = 300, L = 60, R = 20, T = 16, B = 44;
    double x0 = lo, x1 = lo + nb * w;
    double th = rw->threshold;
    if (!isnan(th)) { /* keep the threshold on the chart */
        if (th < x0) x0 = th;
        if (th > x1) x1 = th;
    }
    double sx = (W - L - R) / (x1 - x0), sy = (H - T - B) / (double)top;
    fprintf(f,
            "<svg viewBox=\"0 0 %.0f %.0f\" role=\"img\" aria-label=\"histogram of similarities\" "
            "font-family=\"DejaVu Sans,sans-serif\" font-size=\"13\">\n",
            W, H);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>\n", L,
            H - B, W - R, H - B);
    for (int i = 0; i < nb; i++) {
        double c[3];
        cs_score_cmap((lo + (i + 0.5) * w - v->lo) / (v->hi - v->lo), c);
        double bh = (double)counts[i] * sy, bx = L + (lo + i * w - x0) * sx;
        fprintf(f,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                "fill=\"#%02x%02x%02x\"><title>",
                bx, H - B - bh, w * sx > 1.5 ? w * sx - 1 : w * sx, bh, (int)lround(c[0] * 255),
                (int)lround(c[1] * 255), (int)lround(c[2] * 255));
        put_score(f, v, lo + i * w);
        fputs(" to ", f);
        put_score(f, v, lo + (i + 1) * w);
        fprintf(f, ": %lld</title></rect>\n", (long long)counts[i]);
    }
    /* Axes: the count at the top, about five score ticks. */
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%lld</text>\n", L - 6, T + 10,
            (long long)top);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">0</text>\n", L - 6, H - B);
    double span = x1 - x0, step = pow(10, floor(log10(span / 5)));
    if (span / step > 10) step *= 2;
    if (span / step > 10) step *= 2.5;
    int tick_dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    for (double t = ceil(x0 / step) * step; t <= x1 + 1e-12; t += step) {
        double x = L + (t - x0) * sx;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.*f</text>\n",
                x, H - B, x, H - B + 5, x, H - B + 20, tick_dec, fabs(t) < step / 2 ? 0.0 : t);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">cosine similarity</text>\n",
            L + (W - L - R) / 2, H - 6);
    double mx = L + (cs_score_stats_mean(&rw->stats) - x0) * sx;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1a1a1a\" "
            "stroke-dasharray=\"2 3\"/><text x=\"%.1f\" y=\"%.1f\">mean</text>\n",
            mx, T, mx, H - B, mx + 4, T + 10);
    if (!isnan(th)) {
        double tx = L + (th - x0) * sx;
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#a61414\" "
                "stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"%.1f\" y=\"%.1f\" "
                "fill=\"#a61414\" text-anchor=\"end\">keep &#8805; ",
                tx, T, tx, H - B, tx - 4, T + 26);
        put_score(f, v, th);
        fputs("</text>\n", f);
    }
    fputs("</svg>\n", f);
}

static void put_pairs(FILE *f, const char *id, const cs_top_item *items, int n, const entry *ents,
                      const view *v) {
    fprintf(f, "<ol class=\"grid\" id=\"%s\">\n", id);
    for (int i = 0; i < n; i++) {
        const entry *x = &ents[items[i].slot];
        fprintf(f, "<li class=\"pair\" data-row=\"%ld\" data-score=\"%.6f\">", x->index + 1,
                x->score);
        if (x->uri)
            fprintf(f, "<img alt=\"row %ld\" src=\"%s\">", x->index + 1, x->uri);
        else
            fputs("<div class=\"ph\">no picture</div>", f);
        fprintf(f,
                "<div class=\"meta\"><span class=\"row\">row %ld</span><span class=\"badge\" "
                "style=\"",
                x->index + 1);
        put_colour(f, v, x->score);
        fputs("\">", f);
        put_score(f, v, x->score);
        fputs("</span></div><p class=\"cap\">", f);
        put_text(f, x->caption);
        fprintf(f, "</p><p class=\"key\">line %ld &middot; ", x->line);
        put_text(f, x->image);
        fputs("</p></li>\n", f);
    }
    fputs("</ol>\n", f);
}

static int cmp_index(const void *a, const void *b) {
    long x = ((const cs_top_item *)a)->index, y = ((const cs_top_item *)b)->index;
    return (x > y) - (x < y);
}

static void fmt_seconds(char *out, size_t cap, double s) {
    if (s < 60)
        snprintf(out, cap, "%.2f s", s);
    else if (s < 3600)
        snprintf(out, cap, "%d min %02d s", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, cap, "%d h %02d min", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static void put_page(FILE *f, report_writer *rw, const cs_run_record *run, cs_top_item *items) {
    clipscore_model_info mi;
    memset(&mi, 0, sizeof mi);
    char sha[65] = "";
    if (run->ctx) {
        clipscore_get_model_info(run->ctx, &mi);
        cs_error he;
        cs_error_clear(&he);
        if (cs_ctx_weights_sha256(run->ctx, sha, &he)) snprintf(sha, sizeof sha, "(unknown)");
    } else { /* a merge: the parts' model, from their run.json */
        mi.name = run->model_name ? run->model_name : "(unknown)";
        mi.device = run->model_device ? run->model_device : "(unknown)";
        mi.precision = run->model_precision ? run->model_precision : "(unknown)";
        snprintf(sha, sizeof sha, "%s", run->model_sha256 ? run->model_sha256 : "(unknown)");
    }
    const clipscore_score_params *sp = run->sp;
    const cs_score_stats *st = &rw->stats;
    view v = view_of(st);
    char tmp[256];

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "img-src data:; style-src 'unsafe-inline'\">\n<title>clipscore report: ",
          f);
    put_text(f, run->input);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body><main>\n<h1>clipscore report</h1>\n",
            k_style);
    fputs("<p class=\"sub\">", f);
    put_text(f, run->input);
    fprintf(f, " &middot; %lld rows &middot; clipscore %s</p>\n", (long long)run->sum.rows,
            CLIPSCORE_VERSION);

    /* Summary: the run, then the numbers. */
    fputs("<div class=\"cols\"><div class=\"box\"><table id=\"run\">\n", f);
    put_row_kv(f, "input", run->input);
    put_row_kv(f, "model", mi.name);
    put_row_kv(f, "weights SHA-256", sha);
    put_row_kv(f, "device", mi.device);
    put_row_kv(f, "precision", mi.precision);
    put_row_kv(f, "template", sp->caption_template ? sp->caption_template : "{}");
    snprintf(tmp, sizeof tmp, "%s, %s", run->image_column, run->caption_column);
    put_row_kv(f, "columns (image, caption)", tmp);
    fmt_seconds(tmp, sizeof tmp, run->t.total);
    put_row_kv(f, "wall time", tmp);
    snprintf(tmp, sizeof tmp,
             "load %.2f s, image encoder %.2f s, text encoder %.2f s, decode %.2f s (CPU)",
             run->ctx ? cs_ctx_load_seconds(run->ctx) : 0.0, run->t.image, run->t.text,
             run->t.decode_cpu);
    put_row_kv(f, "stages", tmp);
    fputs("</table></div>\n<div class=\"box\"><table id=\"numbers\">\n", f);
    fprintf(f,
            "<tr><th>rows</th><td class=\"n\">%lld</td></tr>\n"
            "<tr><th>scored</th><td class=\"n\">%lld</td></tr>\n"
            "<tr><th>failed</th><td class=\"n\">%lld</td></tr>\n"
            "<tr><th>captions truncated</th><td class=\"n\">%lld</td></tr>\n",
            (long long)run->sum.rows, (long long)run->sum.scored, (long long)run->sum.failed,
            (long long)run->sum.truncated);
    if (run->sum.invalid_utf8)
        fprintf(f, "<tr><th>captions with invalid UTF-8</th><td class=\"n\">%lld</td></tr>\n",
                (long long)run->sum.invalid_utf8);
    put_row_num(f, "mean similarity", &v, cs_score_stats_mean(st));
    static const struct {
        const char *name;
        double q;
    } qs[] = {{"minimum", 0},  {"5th percentile", 0.05},  {"25th percentile", 0.25},
              {"median", 0.5}, {"75th percentile", 0.75}, {"95th percentile", 0.95},
              {"maximum", 1}};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        put_row_num(f, qs[i].name, &v, cs_score_stats_quantile(st, qs[i].q));
    if (rw->ref_n) put_row_num(f, "mean RefCLIPScore", &v, rw->ref_sum / (double)rw->ref_n);
    fprintf(f,
            "</table><p class=\"note\">Percentiles to within %.0e (read from a histogram of "
            "fixed bins). Pictures show what the model saw: the centre crop, %d px.</p>"
            "</div></div>\n",
            CS_STATS_RESOLUTION, rw->pp.size);

    fputs("<h2>Similarities</h2>\n<div class=\"box hist\">\n", f);
    put_histogram(f, rw, &v);
    fputs("</div>\n", f);

    /* The pairs: all of them in input order for a small run, else the two
     * ends of the distribution. */
    if (st->n <= rw->pairs) {
        int n = cs_top_sorted(&rw->low, items);
        qsort(items, (size_t)n, sizeof *items, cmp_index);
        fprintf(f, "<h2>All %d scored pairs, in input order</h2>\n", n);
        put_pairs(f, "pairs", items, n, rw->low_e, &v);
    } else {
        int n = cs_top_sorted(&rw->low, items);
        fprintf(f,
                "<h2>The %d lowest-scoring pairs</h2>\n<p class=\"note\">Likely mismatches, "
                "lowest first.</p>\n",
                n);
        put_pairs(f, "lowest", items, n, rw->low_e, &v);
        n = cs_top_sorted(&rw->high, items);
        fprintf(f, "<h2>The %d highest-scoring pairs</h2>\n", n);
        put_pairs(f, "highest", items, n, rw->high_e, &v);
    }

    fprintf(f, "<h2>Failed rows</h2>\n");
    if (!rw->n_failed) {
        fputs("<p class=\"note\" id=\"failed\">None: every row was scored.</p>\n", f);
    } else {
        if (rw->n_failed > rw->n_failed_kept)
            fprintf(f, "<p class=\"note\">The first %d of %lld.</p>\n", rw->n_failed_kept,
                    (long long)rw->n_failed);
        fputs("<div class=\"box\"><table id=\"failed\"><tr><th>row</th><th>line</th>"
              "<th>image</th><th>error</th></tr>\n",
              f);
        for (int i = 0; i < rw->n_failed_kept; i++) {
            const entry *x = &rw->failed[i];
            fprintf(f, "<tr><td class=\"n\">%ld</td><td class=\"n\">%ld</td><td>", x->index + 1,
                    x->line);
            put_text(f, x->image);
            fputs("</td><td class=\"err\">", f);
            put_text(f, x->error ? x->error : "");
            fputs("</td></tr>\n", f);
        }
        fputs("</table></div>\n", f);
    }
    time_t now = time(NULL);
    struct tm tmv;
    strftime(tmp, sizeof tmp, "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&now, &tmv));
    fprintf(f,
            "<p class=\"note\">Written by clipscore %s at %s; the scores are in output.csv, "
            "the run's details in run.json.</p>\n</main></body></html>\n",
            CLIPSCORE_VERSION, tmp);
}

static int report_finish(cs_writer *w, const cs_run_record *run, cs_commit *c, cs_error *e) {
    report_writer *rw = (report_writer *)w;
    /* The threshold kept.csv used (a fraction's cut, too) is drawn. */
    if (!isnan(run->sum.keep_threshold)) rw->threshold = run->sum.keep_threshold;
    for (int i = 0; i < rw->low.n; i++) thumbnail_late(rw, &rw->low_e[rw->low.items[i].slot]);
    if (rw->stats.n > rw->pairs)
        for (int i = 0; i < rw->high.n; i++)
            thumbnail_late(rw, &rw->high_e[rw->high.items[i].slot]);
    cs_top_item *items = cs_calloc((size_t)rw->pairs, sizeof *items, e);
    if (!items) return CLIPSCORE_ENOMEM;
    int rc = cs_atomic_open(&rw->file, rw->path, e);
    if (!rc) put_page(rw->file.fp, rw, run, items);
    free(items);
    if (!rc) rc = cs_atomic_finish(&rw->file, e);
    if (!rc) rc = cs_commit_add(c, &rw->file, e);
    return rc;
}

static void report_destroy(cs_writer *w) {
    report_writer *rw = (report_writer *)w;
    if (rw->file.tmp_path) cs_atomic_abort(&rw->file);
    for (int i = 0; i < rw->pairs; i++) {
        if (rw->low_e) entry_clear(&rw->low_e[i]);
        if (rw->high_e) entry_clear(&rw->high_e[i]);
        if (rw->failed) entry_clear(&rw->failed[i]);
    }
    free(rw->low_e);
    free(rw->high_e);
    free(rw->failed);
    cs_top_free(&rw->low);
    cs_top_free(&rw->high);
    cs_score_stats_free(&rw->stats);
    free(rw->path);
    free(rw);
}

static const cs_writer_ops report_ops = {"report.html", report_row, report_finish, report_destroy};

int cs_report_writer_new(const char *path, int pairs, const cs_preprocess_cfg *pp,
                         int64_t max_pixels, double threshold, cs_writer **out, cs_error *e) {
    *out = NULL;
    if (pairs < 1) return cs_fail(e, CLIPSCORE_EARG, "report: pairs must be at least 1");
    report_writer *rw = cs_calloc(1, sizeof *rw, e);
    if (!rw) return CLIPSCORE_ENOMEM;
    rw->base.ops = &report_ops;
    rw->pairs = pairs;
    rw->pp = *pp;
    rw->max_pixels = max_pixels;
    rw->threshold = threshold;
    size_t n = (size_t)pairs;
    int rc = (rw->path = cs_strdup(path, e)) ? 0 : CLIPSCORE_ENOMEM;
    if (!rc) rc = cs_score_stats_init(&rw->stats, e);
    if (!rc) rc = cs_top_init(&rw->low, pairs, 0, e);
    if (!rc) rc = cs_top_init(&rw->high, pairs, 1, e);
    if (!rc && (!(rw->low_e = cs_calloc(n, sizeof *rw->low_e, e)) ||
                !(rw->high_e = cs_calloc(n, sizeof *rw->high_e, e)) ||
                !(rw->failed = cs_calloc(n, sizeof *rw->failed, e))))
        rc = CLIPSCORE_ENOMEM;
    if (rc) {
        report_destroy(&rw->base);
        return rc;
    }
    *out = &rw->base;
    return 0;
}
