/* test_figures.c - the two JPEG figures: rendered for 0, 1, 4, 10 and 64
 * synthetic pairs (gradient/shape thumbnails of several aspect ratios, short,
 * long, accented, CJK, emoji, markup-like, empty and invalid UTF-8 captions,
 * failed rows), then decoded with stb_image and checked for size, content
 * and colour; also argument and write errors.
 * Leaves out: judging legibility (done by eye: CLIPSCORE_KEEP_FIGURES=1
 * keeps the files and prints their folder). */
#include <dirent.h>
#include <stdint.h>

#include "figures.h"
#include "test.h"

/* stb_image 2.27 declares stbi_set_unpremultiply_on_load_thread but defines
 * it under another name, which STB_IMAGE_STATIC turns into a warning. GCC
 * reports it at the end of the file, so the pragma cannot be popped. */
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>

static const char *k_captions[] = {
    "a photo of a cat",
    "A very long caption that keeps going and going, describing every single detail of the "
    "scene: the red bicycle leaning against the old brick wall, the dog asleep in the sun, "
    "three pigeons on the roof, a woman in a yellow raincoat crossing the street, and clouds "
    "gathering over the hills in the far distance while a bus pulls away from the stop.",
    "Crème brûlée à la française, déjà vu in Zürich — naïve façade",
    "一只猫坐在窗台上看着外面的雨",
    "🐱🐶 emoji party 🎉🎂",
    "<b>&amp; markup & <i>not</i> parsed</b>",
    "",
    "bad \xff\xfe bytes \xc3 and a\nnewline\tand tab",
    "Supercalifragilisticexpialidociousandevenlongerwordwithoutanyspacesatallwhatsoever",
    "two dogs playing in the snow",
};
#define N_CAPTIONS ((int)(sizeof k_captions / sizeof k_captions[0]))

/* A synthetic RGB thumbnail: a gradient with a shape, its size varying with i. */
static cs_image make_thumb(int i) {
    static const int sizes[][2] = {{224, 224}, {300, 120}, {90, 260}, {32, 32},
                                   {224, 168}, {1, 1},     {500, 40}, {150, 200}};
    cs_image t = {0};
    t.w = sizes[i % 8][0], t.h = sizes[i % 8][1], t.channels = 3;
    t.px = malloc((size_t)t.w * (size_t)t.h * 3);
    if (!t.px) exit(2);
    for (int y = 0; y < t.h; y++) {
        for (int x = 0; x < t.w; x++) {
            unsigned char *p = t.px + ((size_t)y * (size_t)t.w + (size_t)x) * 3;
            double dx = x - t.w / 2.0, dy = y - t.h / 2.0;
            int inside =
                dx * dx + dy * dy < (t.w < t.h ? t.w : t.h) * (t.w < t.h ? t.w : t.h) / 9.0;
            p[0] = (unsigned char)(255 * x / (t.w > 1 ? t.w - 1 : 1));
            p[1] = (unsigned char)(255 * y / (t.h > 1 ? t.h - 1 : 1));
            p[2] = (unsigned char)((i * 53) % 256);
            if (inside) p[0] = p[1] = p[2] = (unsigned char)(i % 2 ? 250 : 20);
        }
    }
    return t;
}

typedef struct pairs {
    int n;
    cs_image *thumbs;
    const char **captions;
    float *scores;
    const char **errors;
    float *sim; /* n x n */
} pairs;

/* n pairs: scores spread over -0.05..0.35, every 7th row failed (its image
 * missing on odd rows, its caption on even ones); sim has failed rows NaN. */
static pairs make_pairs(int n) {
    pairs p = {n,
               calloc((size_t)n + 1, sizeof(cs_image)),
               calloc((size_t)n + 1, sizeof(char *)),
               calloc((size_t)n + 1, sizeof(float)),
               calloc((size_t)n + 1, sizeof(char *)),
               calloc((size_t)n * (size_t)n + 1, sizeof(float))};
    if (!p.thumbs || !p.captions || !p.scores || !p.errors || !p.sim) exit(2);
    for (int i = 0; i < n; i++) {
        int failed = i % 7 == 3;
        p.captions[i] = k_captions[i % N_CAPTIONS];
        p.scores[i] = failed ? NAN : (float)(-0.05 + 0.4 * ((i * 37) % 64) / 63.0);
        if (failed && i % 2) {
            p.errors[i] = "cannot read image /data/photos/2024/holiday/very/long/path/"
                          "IMG_000123.JPG: No such file or directory";
        } else {
            p.thumbs[i] = make_thumb(i);
            if (failed) p.errors[i] = "caption: invalid UTF-8 \xff"; /* checked by clean_text */
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            p.sim[(size_t)i * (size_t)n + (size_t)j] =
                !isfinite(p.scores[i]) || !isfinite(p.scores[j]) ? NAN
                : i == j                                         ? p.scores[i]
                         : (float)(-0.05 + 0.25 * ((i * 13 + j * 29) % 50) / 49.0);
    return p;
}

static void free_pairs(pairs *p) {
    for (int i = 0; i < p->n; i++) free(p->thumbs[i].px);
    free(p->thumbs);
    free(p->captions);
    free(p->scores);
    free(p->errors);
    free(p->sim);
}

typedef struct decoded {
    int ok, w, h;
    double variance; /* of the grey level */
    int corner_white;
    long yellow, purple; /* pixels near the two ends of the colour map */
} decoded;

/* Checks the file is a JPEG, decodes it and summarises its pixels. */
static decoded inspect(const char *path) {
    decoded d = {0};
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "%s missing", path);
    if (!f) return d;
    unsigned char magic[3] = {0};
    size_t got = fread(magic, 1, 3, f);
    fclose(f);
    CHECK_MSG(got == 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF,
              "%s is not a JPEG", path);
    int comp = 0;
    unsigned char *px = stbi_load(path, &d.w, &d.h, &comp, 3);
    CHECK_MSG(px != NULL, "%s does not decode: %s", path, stbi_failure_reason());
    if (!px) return d;
    d.ok = 1;
    double sum = 0, sum2 = 0;
    size_t count = (size_t)d.w * (size_t)d.h;
    for (size_t k = 0; k < count; k++) {
        const unsigned char *q = px + 3 * k;
        double g = (q[0] + q[1] + q[2]) / 3.0;
        sum += g, sum2 += g * g;
        if (q[0] > 225 && q[1] > 200 && q[2] < 80) d.yellow++;
        if (q[0] > 50 && q[0] < 90 && q[1] < 25 && q[2] > 65 && q[2] < 105) d.purple++;
    }
    d.variance = sum2 / count - (sum / count) * (sum / count);
    d.corner_white = px[0] > 240 && px[1] > 240 && px[2] > 240;
    stbi_image_free(px);
    return d;
}

static void check_sane(const char *path, decoded d, int min_h) {
    CHECK_MSG(d.ok, "%s", path);
    CHECK_MSG(d.w >= 300 && d.w <= 6000 && d.h >= min_h && d.h <= 6000, "%s is %dx%d", path, d.w,
              d.h);
    CHECK_MSG(d.variance > 100, "%s looks uniform (variance %g)", path, d.variance);
    CHECK_MSG(d.corner_white, "%s: background is not white", path);
}

static int no_temp_files(const char *dir) {
    DIR *dp = opendir(dir);
    if (!dp) return 0;
    int clean = 1;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (strstr(de->d_name, ".tmp")) clean = 0;
    closedir(dp);
    return clean;
}

static char g_dir[512];

static const char *out_path(char *buf, size_t cap, const char *name, int n, const char *tag) {
    snprintf(buf, cap, "%s/%s_%d%s.jpg", g_dir, name, n, tag);
    return buf;
}

/* Renders both figures for n pairs; returns their decoded summaries. */
static void render(int n, int64_t total, const char *tag, decoded *grid, decoded *matrix) {
    pairs p = make_pairs(n);
    char path[640];
    cs_error e = {0};
    out_path(path, sizeof path, "image_captions", n, tag);
    int rc = cs_figure_image_captions(path, NULL, n, p.thumbs, p.captions, p.scores, p.errors,
                                      total, &e);
    CHECK_MSG(rc == 0, "captions n=%d: %d %s", n, rc, e.msg);
    *grid = inspect(path);
    check_sane(path, *grid, n ? 300 : 60);
    out_path(path, sizeof path, "similarity_matrix", n, tag);
    rc = cs_figure_similarity_matrix(path, NULL, n, p.sim, p.captions, total, &e);
    CHECK_MSG(rc == 0, "matrix n=%d: %d %s", n, rc, e.msg);
    *matrix = inspect(path);
    check_sane(path, *matrix, n ? 300 : 60);
    free_pairs(&p);
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "%s", test_tmpdir("figures"));
    decoded g[3], m[3];
    const int ns[3] = {4, 10, 64};
    for (int k = 0; k < 3; k++) render(ns[k], ns[k], "", &g[k], &m[k]);
    for (int k = 1; k < 3; k++) {
        /* The canvas grows with n (both sides never shrink, the area grows). */
        CHECK_MSG(g[k].w >= g[k - 1].w && g[k].h > g[k - 1].h, "grid %dx%d after %dx%d", g[k].w,
                  g[k].h, g[k - 1].w, g[k - 1].h);
        CHECK_MSG(m[k].w >= m[k - 1].w && m[k].h > m[k - 1].h, "matrix %dx%d after %dx%d", m[k].w,
                  m[k].h, m[k - 1].w, m[k - 1].h);
    }
    /* At 64 pairs the figures stay screen-sized. */
    CHECK_MSG(g[2].w <= 4000 && g[2].h <= 4000, "grid 64: %dx%d", g[2].w, g[2].h);
    CHECK_MSG(m[2].w <= 4000 && m[2].h <= 4000, "matrix 64: %dx%d", m[2].w, m[2].h);

    /* More rows than shown: same size, a different title. */
    decoded gt, mt;
    render(10, 1000, "_of_1000", &gt, &mt);
    CHECK_EQ_INT(gt.w, g[1].w);
    CHECK_EQ_INT(mt.w, m[1].w);
    {
        char a[640], b[640];
        char *da = NULL, *db = NULL;
        size_t la = 0, lb = 0;
        cs_error e = {0};
        out_path(a, sizeof a, "similarity_matrix", 10, "");
        out_path(b, sizeof b, "similarity_matrix", 10, "_of_1000");
        CHECK(cs_read_file(a, 0, &da, &la, &e) == 0 && cs_read_file(b, 0, &db, &lb, &e) == 0);
        CHECK(da && db && (la != lb || memcmp(da, db, la) != 0));
        free(da);
        free(db);
    }

    /* n = 0 draws a figure that says so; n = 1 works, also after the font
     * caches were released. */
    decoded d0g, d0m, d1g, d1m;
    render(0, 0, "", &d0g, &d0m);
    cs_figures_shutdown();
    render(1, 1, "", &d1g, &d1m);
    CHECK(d1g.h > d0g.h && d1m.h > d0m.h);

    /* Colours span the data range: tiny values (as from a random model)
     * still reach both ends of the map in the cells, not just in the bar. */
    {
        const char *caps[4] = {"a", "b", "c", "d"};
        float sim[16];
        for (int k = 0; k < 16; k++) sim[k] = k % 2 ? 0.0021f : -0.0013f;
        char path[640];
        cs_error e = {0};
        out_path(path, sizeof path, "similarity_matrix", 4, "_tiny");
        CHECK_EQ_INT(cs_figure_similarity_matrix(path, NULL, 4, sim, caps, 4, &e), 0);
        decoded d = inspect(path);
        check_sane(path, d, 300);
        /* 8 cells of 80x80 at each end: far more than the colour bar's ends. */
        CHECK_MSG(d.yellow > 20000, "yellow pixels %ld", d.yellow);
        CHECK_MSG(d.purple > 20000, "purple pixels %ld", d.purple);
    }

    /* Errors: a missing folder (EIO naming the path), bad arguments. */
    {
        pairs p = make_pairs(4);
        cs_error e = {0};
        char path[640];
        snprintf(path, sizeof path, "%s/missing/image_captions.jpg", g_dir);
        int rc = cs_figure_image_captions(path, NULL, 4, p.thumbs, p.captions, p.scores, p.errors,
                                          4, &e);
        CHECK_EQ_INT(rc, CLIPSCORE_EIO);
        CHECK_MSG(strstr(e.msg, path) != NULL, "message: %s", e.msg);
        cs_error_clear(&e);
        snprintf(path, sizeof path, "%s/missing/similarity_matrix.jpg", g_dir);
        rc = cs_figure_similarity_matrix(path, NULL, 4, p.sim, p.captions, 4, &e);
        CHECK_EQ_INT(rc, CLIPSCORE_EIO);
        CHECK_MSG(strstr(e.msg, path) != NULL, "message: %s", e.msg);

        out_path(path, sizeof path, "bad", 0, "");
        CHECK_EQ_INT(
            cs_figure_image_captions(NULL, NULL, 4, p.thumbs, p.captions, p.scores, NULL, 4, &e),
            CLIPSCORE_EARG);
        CHECK_EQ_INT(
            cs_figure_image_captions(path, NULL, -1, p.thumbs, p.captions, p.scores, NULL, 4, &e),
            CLIPSCORE_EARG);
        CHECK_EQ_INT(
            cs_figure_image_captions(path, NULL, 4, p.thumbs, p.captions, NULL, NULL, 4, &e),
            CLIPSCORE_EARG);
        CHECK_EQ_INT(cs_figure_similarity_matrix(path, NULL, 4, NULL, p.captions, 4, &e),
                     CLIPSCORE_EARG);
        CHECK_EQ_INT(cs_figure_similarity_matrix(path, NULL, 100000, p.sim, p.captions, 4, &e),
                     CLIPSCORE_ELIMIT);
        p.thumbs[0].channels = 5;
        CHECK_EQ_INT(
            cs_figure_image_captions(path, NULL, 4, p.thumbs, p.captions, p.scores, NULL, 4, &e),
            CLIPSCORE_EARG);
        CHECK(strstr(e.msg, "thumbnail 0") != NULL);
        p.thumbs[0].channels = 3;
        CHECK(!cs_file_exists(path));
        free_pairs(&p);
    }
    CHECK_MSG(no_temp_files(g_dir), "temporary files left in %s", g_dir);

    const char *keep = getenv("CLIPSCORE_KEEP_FIGURES");
    if (keep && *keep && strcmp(keep, "0") != 0)
        fprintf(stderr, "figures kept in %s\n", g_dir);
    else {
        DIR *dp = opendir(g_dir);
        struct dirent *de;
        char path[1024];
        while (dp && (de = readdir(dp))) {
            if (de->d_name[0] == '.') continue;
            snprintf(path, sizeof path, "%s/%s", g_dir, de->d_name);
            remove(path);
        }
        if (dp) closedir(dp);
        remove(g_dir);
    }
    /* Leaves no font caches for LeakSanitizer to report. */
    cs_figures_shutdown();
    return test_finish("test_figures");
}
