/* merge.c - clipscore_merge(): the parts of a sharded run (each written by
 * clipscore_score_csv with shard_index/shard_count into its own folder)
 * joined into the outputs one process would have written.
 *
 * Covers: checking the parts (every share 0..N-1 exactly once, finished,
 * from the same inputs, weights and scoring options, naming the part that
 * is not), output.csv in shard order (which is input order, inputs.h),
 * run.json with summed counts and each part's host and timings, the
 * embeddings concatenated when every part saved them, kept.csv over all
 * rows, the figures (the first part's when they show all the figure rows,
 * else drawn again: merge_figures.c), report.html of the merged rows, and
 * committing everything together
 * under the output folder's lock. */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clipscore.h"
#include "commit.h"
#include "csv_io.h"
#include "journal.h"
#include "keep.h"
#include "merge_figures.h"
#include "npy.h"
#include "output_dir.h"
#include "util.h"
#include "webdataset.h"
#include "writer.h"

clipscore_merge_params clipscore_default_merge_params(void) {
    clipscore_merge_params p;
    memset(&p, 0, sizeof p);
    p.keep_threshold = NAN;
    p.keep_fraction = NAN;
    p.progress = 1;
    p.report = 1;
    p.report_pairs = 50;
    return p;
}

typedef struct part {
    const char *dir;
    cJSON *run; /* its run.json */
    int k, n;
    double rows, scored, failed, truncated, invalid_utf8, mean;
} part;

typedef struct merge {
    const clipscore_merge_params *p;
    cs_error *e;
    part *parts; /* [n_parts], then ordered by shard */
    int n;
    cs_commit commit;
    cs_output_lock lock;
    char *sim_column;
    int64_t rows;
} merge;

/* What must agree between parts: everything that decides which rows a part
 * scored and what it wrote for them. */
static const char *const same_keys[] = {
    "inputs_digest",  "columns",   "template",     "metric",     "image_column",
    "caption_column", "image_key", "caption_key",  "image_root", "precision",
    "max_pixels",     "decode",    "figure_limit", "version"};

static double num(const cJSON *j, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const cJSON *item(const cJSON *j, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(j, key);
}

static int read_part(part *pt, cs_error *e) {
    if (!cs_is_dir(pt->dir)) return cs_fail(e, CLIPSCORE_EIO, "part %s: no such folder", pt->dir);
    if (cs_journal_exists(pt->dir))
        return cs_fail(e, CLIPSCORE_EARG,
                       "part %s is unfinished: it holds the journal of a stopped run (%s); run "
                       "its command again to finish it",
                       pt->dir, CS_JOURNAL_NAME);
    char *path = cs_path_join(pt->dir, "run.json", e);
    if (!path) return CLIPSCORE_ENOMEM;
    char *text = NULL;
    size_t len = 0;
    int rc = cs_file_exists(path) ? cs_read_file(path, 16 << 20, &text, &len, e)
                                  : cs_fail(e, CLIPSCORE_EARG,
                                            "part %s is unfinished or not a clipscore part: it "
                                            "has no run.json",
                                            pt->dir);
    if (!rc && !(pt->run = cJSON_ParseWithLength(text, len)))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "part %s: run.json is not valid JSON", pt->dir);
    free(text);
    free(path);
    if (rc) return rc;
    const cJSON *tool = item(pt->run, "tool"), *shard = item(pt->run, "shard");
    if (!cJSON_IsString(tool) || strcmp(tool->valuestring, "clipscore") != 0)
        return cs_fail(e, CLIPSCORE_EARG, "part %s: run.json is not clipscore's", pt->dir);
    if (!cJSON_IsArray(shard) || cJSON_GetArraySize(shard) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(shard, 0)) ||
        !cJSON_IsNumber(cJSON_GetArrayItem(shard, 1)))
        return cs_fail(e, CLIPSCORE_EARG,
                       "part %s was not scored as a shard (no \"shard\" in its run.json; score "
                       "with --shard K/N)",
                       pt->dir);
    pt->k = cJSON_GetArrayItem(shard, 0)->valueint;
    pt->n = cJSON_GetArrayItem(shard, 1)->valueint;
    pt->rows = num(pt->run, "rows");
    pt->scored = num(pt->run, "scored");
    pt->failed = num(pt->run, "failed");
    pt->truncated = num(pt->run, "truncated_captions");
    pt->invalid_utf8 = num(pt->run, "invalid_utf8_captions");
    pt->mean = num(pt->run, "mean_similarity");
    if (isnan(pt->rows) || isnan(pt->scored) || isnan(pt->failed) || pt->n < 1 || pt->k < 0 ||
        pt->k >= pt->n)
        return cs_fail(e, CLIPSCORE_EFORMAT, "part %s: run.json lacks its counts or shard",
                       pt->dir);
    return 0;
}

static const cJSON *weights(const part *pt) {
    return item(item(pt->run, "model"), "weights_sha256");
}

/* Every share once, all alike; orders m->parts by shard. */
static int check_parts(merge *m) {
    cs_error *e = m->e;
    const part *a = &m->parts[0];
    for (int i = 0; i < m->n; i++) {
        const part *b = &m->parts[i];
        if (b->n != a->n)
            return cs_fail(e, CLIPSCORE_EARG, "part %s is shard %d/%d but part %s is of %d shards",
                           b->dir, b->k, b->n, a->dir, a->n);
        if (!cJSON_Compare(weights(a), weights(b), 1) || !cJSON_IsString(weights(b)))
            return cs_fail(e, CLIPSCORE_EARG,
                           "part %s was scored with other model weights (SHA-256 %s) than part "
                           "%s (%s)",
                           b->dir, cJSON_GetStringValue(weights(b)), a->dir,
                           cJSON_GetStringValue(weights(a)));
        for (size_t k = 0; k < sizeof same_keys / sizeof *same_keys; k++) {
            const cJSON *x = item(a->run, same_keys[k]), *y = item(b->run, same_keys[k]);
            if ((x || y) && !cJSON_Compare(x, y, 1)) {
                char *xs = x ? cJSON_PrintUnformatted(x) : NULL;
                char *ys = y ? cJSON_PrintUnformatted(y) : NULL;
                int rc =
                    cs_fail(e, CLIPSCORE_EARG, "part %s differs from part %s in %s (%s, not %s)%s",
                            b->dir, a->dir, same_keys[k], ys ? ys : "absent", xs ? xs : "absent",
                            strcmp(same_keys[k], "inputs_digest") == 0
                                ? ": it was scored from another input list"
                                : "");
                free(xs);
                free(ys);
                return rc;
            }
        }
    }
    int N = a->n;
    part *byk = cs_calloc((size_t)N, sizeof *byk, e);
    if (!byk) return CLIPSCORE_ENOMEM;
    for (int i = 0; i < m->n; i++) {
        part *b = &m->parts[i];
        if (byk[b->k].dir) {
            int rc = cs_fail(e, CLIPSCORE_EARG, "parts %s and %s are both shard %d/%d",
                             byk[b->k].dir, b->dir, b->k, N);
            free(byk);
            return rc;
        }
        byk[b->k] = *b;
    }
    for (int k = 0; k < N; k++)
        if (!byk[k].dir) {
            int rc = cs_fail(e, CLIPSCORE_EARG,
                             "shard %d/%d is missing: give the folders of all %d parts", k, N, N);
            free(byk);
            return rc;
        }
    /* Ownership of the parsed run.json moves with the entries. */
    free(m->parts);
    m->parts = byk;
    m->n = N;
    return 0;
}

/* ------------------------------------------------------------ output.csv */

static int merge_csv(merge *m, const char *dest) {
    cs_error *e = m->e;
    cs_atomic_file out;
    memset(&out, 0, sizeof out);
    int rc = cs_atomic_open(&out, dest, e);
    char **hdr = NULL;
    int n_hdr = 0;
    for (int i = 0; !rc && i < m->n; i++) {
        char *path = cs_path_join(m->parts[i].dir, "output.csv", e);
        cs_csv_reader *r = NULL;
        if (!path) rc = CLIPSCORE_ENOMEM;
        if (!rc) rc = cs_csv_open(path, &r, e);
        if (!rc) {
            const cs_csv_record *h = cs_csv_header(r);
            if (i == 0) {
                n_hdr = h->n;
                hdr = cs_calloc((size_t)(h->n ? h->n : 1), sizeof *hdr, e);
                for (int k = 0; hdr && k < h->n; k++) hdr[k] = strdup(h->fields[k]);
                if (!hdr) rc = CLIPSCORE_ENOMEM;
                if (!rc)
                    rc = cs_csv_write_record(out.fp, (const char *const *)h->fields, h->lens, h->n,
                                             e);
                /* The similarity column: named after the header row's
                 * "similarity" (it may be similarity_2 when the input had one). */
                for (int k = h->n - 1; !rc && k >= 0 && !m->sim_column; k--)
                    if (strncmp(h->fields[k], "similarity", 10) == 0)
                        m->sim_column = cs_strdup(h->fields[k], e);
            } else {
                int same = h->n == n_hdr;
                for (int k = 0; same && k < n_hdr; k++)
                    same = hdr[k] && strcmp(hdr[k], h->fields[k]) == 0;
                if (!same)
                    rc = cs_fail(e, CLIPSCORE_EFORMAT,
                                 "part %s: output.csv has other columns than part %s's",
                                 m->parts[i].dir, m->parts[0].dir);
            }
        }
        int64_t rows = 0;
        cs_csv_record rec;
        int malformed;
        while (!rc && (rc = cs_csv_next(r, &rec, &malformed, e)) == 1) {
            rows++;
            rc = cs_csv_write_record(out.fp, (const char *const *)rec.fields, rec.lens, rec.n, e);
        }
        if (!rc && (double)rows != m->parts[i].rows)
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "part %s: output.csv has %lld rows, its run.json says %.0f: was it "
                         "changed after the run?",
                         m->parts[i].dir, (long long)rows, m->parts[i].rows);
        m->rows += rows;
        cs_csv_close(r);
        free(path);
    }
    for (int k = 0; hdr && k < n_hdr; k++) free(hdr[k]);
    free(hdr);
    if (!rc && !m->sim_column)
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "part %s: output.csv has no similarity column",
                     m->parts[0].dir);
    if (!rc) rc = cs_atomic_finish(&out, e);
    if (!rc) rc = cs_commit_add(&m->commit, &out, e);
    if (rc && out.tmp_path) cs_atomic_abort(&out);
    return rc;
}

/* ------------------------------------------------------------ embeddings */

/* Where a part's run.json says it wrote `name` (NULL: it did not). */
static char *part_output(const part *pt, const char *name, cs_error *e) {
    const cJSON *o;
    cJSON_ArrayForEach(o, item(pt->run, "outputs")) {
        const char *s = cJSON_GetStringValue(o);
        if (!s) continue;
        const char *base = strrchr(s, '/');
        base = base ? base + 1 : s;
        if (strcmp(base, name) == 0)
            return s[0] == '/' ? cs_strdup(s, e) : cs_path_join(pt->dir, s, e);
    }
    return NULL;
}

/* Reads the header of one of our own float32 .npy files: rows and width. */
static int npy_rows(FILE *fp, const char *path, int64_t *rows, int64_t *dim, cs_error *e) {
    unsigned char pre[10];
    if (fread(pre, 1, 10, fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0 || pre[6] != 1)
        return cs_fail(e, CLIPSCORE_EFORMAT, "%s: not a NumPy 1.0 file", path);
    size_t hl = (size_t)pre[8] | (size_t)pre[9] << 8;
    char *h = cs_malloc(hl + 1, 1, e);
    if (!h) return CLIPSCORE_ENOMEM;
    int rc = fread(h, 1, hl, fp) == hl ? 0 : cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated", path);
    h[rc ? 0 : hl] = '\0';
    long long a, b;
    const char *sh = strstr(h, "'shape': (");
    if (!rc && (!strstr(h, "'descr': '<f4'") || !strstr(h, "'fortran_order': False") || !sh ||
                sscanf(sh, "'shape': (%lld, %lld)", &a, &b) != 2 || a < 0 || b <= 0))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: not a [rows, dim] float32 array", path);
    free(h);
    if (!rc) {
        *rows = a;
        *dim = b;
    }
    return rc;
}

static int merge_npy(merge *m, const char *name, const char *dest) {
    cs_error *e = m->e;
    cs_npy_stream s;
    memset(&s, 0, sizeof s);
    int opened = 0, rc = 0;
    float *buf = NULL;
    for (int i = 0; !rc && i < m->n; i++) {
        char *path = part_output(&m->parts[i], name, e);
        FILE *fp = path ? fopen(path, "rb") : NULL;
        int64_t rows = 0, dim = 0;
        if (!path)
            rc = cs_fail(e, CLIPSCORE_EIO, "part %s: %s is missing", m->parts[i].dir, name);
        else if (!fp)
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
        if (!rc) rc = npy_rows(fp, path, &rows, &dim, e);
        if (!rc && !opened) {
            rc = cs_npy_stream_open(&s, dest, 1, &dim, e);
            opened = !rc;
            if (!rc && !(buf = cs_malloc(1024 * (size_t)dim, sizeof *buf, e)))
                rc = CLIPSCORE_ENOMEM;
        }
        if (!rc && dim != s.row_floats)
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: width %lld, other parts %lld", path,
                         (long long)dim, (long long)s.row_floats);
        for (int64_t done = 0; !rc && done < rows;) {
            int64_t k = rows - done < 1024 ? rows - done : 1024;
            if (fread(buf, sizeof *buf * (size_t)dim, (size_t)k, fp) != (size_t)k)
                rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: truncated", path);
            if (!rc) rc = cs_npy_stream_append(&s, buf, k, e);
            done += k;
        }
        if (fp) fclose(fp);
        free(path);
    }
    free(buf);
    cs_atomic_file staged;
    memset(&staged, 0, sizeof staged);
    if (!rc && opened)
        rc = cs_npy_stream_finish(&s, &staged, e);
    else if (opened)
        cs_npy_stream_abort(&s);
    if (!rc && opened) rc = cs_commit_add(&m->commit, &staged, e);
    return rc;
}

/* ------------------------------------------------------------ figures */

static int copy_file(const char *from, const char *dest, cs_commit *c, cs_error *e) {
    char *data = NULL;
    size_t len = 0;
    int rc = cs_read_file(from, (size_t)1 << 30, &data, &len, e);
    cs_atomic_file f;
    memset(&f, 0, sizeof f);
    if (!rc) rc = cs_atomic_open(&f, dest, e);
    if (!rc && fwrite(data, 1, len, f.fp) != len)
        rc = cs_fail(e, CLIPSCORE_EIO, "writing %s: %s", dest, strerror(errno));
    if (!rc) rc = cs_atomic_finish(&f, e);
    if (!rc) rc = cs_commit_add(c, &f, e);
    if (rc && f.tmp_path) cs_atomic_abort(&f);
    free(data);
    return rc;
}

/* The first part's figures show its first rows, which are the merged run's
 * first rows: they are the merged figures when that part holds all the rows
 * they show. Otherwise they are drawn again from the merged rows. Returns 1
 * when the figures are in the commit, 0 when none were asked for, -1 when
 * they could not be made (a warning). */
static int merge_figures(merge *m, const char *merged_csv, cs_error *e) {
    const part *p0 = &m->parts[0];
    double limit = num(p0->run, "figure_limit");
    if (isnan(limit)) limit = 64;
    if (limit < 1) return 0;
    if (p0->rows >= limit || (double)m->rows <= p0->rows) {
        if (!cJSON_IsTrue(item(p0->run, "figures"))) return 0;
        static const char *const names[] = {"image_captions.jpg", "similarity_matrix.jpg"};
        for (int i = 0; i < 2; i++) {
            char *from = part_output(p0, names[i], e);
            char *to = cs_path_join(m->p->output_dir, names[i], e);
            int rc = from && to
                         ? copy_file(from, to, &m->commit, e)
                         : cs_fail(e, CLIPSCORE_EIO, "part %s: %s is missing", p0->dir, names[i]);
            free(from);
            free(to);
            if (rc) return -1;
        }
        return 1;
    }
    return cs_merge_redraw_figures(p0->run, merged_csv, m->p->output_dir, (int)limit, m->rows,
                                   &m->commit, e)
               ? -1
               : 1;
}

/* ------------------------------------------------------------ report.html */

static double cell_num(const cs_csv_record *r, int k) {
    if (k < 0 || k >= r->n || !r->lens[k]) return NAN;
    char *end;
    double v = strtod(r->fields[k], &end);
    return *end ? NAN : v;
}

/* report.html of the merged rows, read back from the merged output.csv: the
 * parts' model and options from the first part's run.json; thumbnails of
 * the rows shown decoded again from the images (report.html's late path). */
static int merge_report(merge *m, const char *merged_csv, const clipscore_score_summary *s,
                        double seconds) {
    cs_error *e = m->e;
    const cJSON *run = m->parts[0].run, *model = item(run, "model");
    const char *columns = cJSON_GetStringValue(item(run, "columns"));
    int sample = !columns || strcmp(columns, "input") != 0;
    const char *image_key = cJSON_GetStringValue(item(run, "image_key"));
    const char *root = cJSON_GetStringValue(item(run, "image_root"));
    const char *first = cJSON_GetStringValue(cJSON_GetArrayItem(item(run, "inputs"), 0));
    cs_preprocess_cfg pp = cs_preprocess_default();
    double size = num(model, "image_size");
    if (size >= 1) pp.size = (int)size;
    double mp = num(run, "max_pixels");
    char *path = cs_path_join(m->p->output_dir, "report.html", e);
    char *base = root ? cs_strdup(root, e) : first ? cs_path_dirname(first, e) : cs_strdup(".", e);
    cs_writer *w = NULL;
    int rc = path && base ? 0 : CLIPSCORE_ENOMEM;
    if (!rc)
        rc = cs_report_writer_new(path, m->p->report_pairs > 0 ? m->p->report_pairs : 50, &pp,
                                  isnan(mp) ? 0 : (int64_t)mp, m->p->keep_threshold, &w, e);
    cs_csv_reader *r = NULL;
    if (!rc) rc = cs_csv_open(merged_csv, &r, e);
    const cs_csv_record *h = r ? cs_csv_header(r) : NULL;
    int c_img = h ? cs_csv_column_named(
                        h, sample ? "key" : cJSON_GetStringValue(item(run, "image_column")), 0)
                  : -1;
    int c_cap =
        h ? cs_csv_column_named(
                h, sample ? "caption" : cJSON_GetStringValue(item(run, "caption_column")), 0)
          : -1;
    int c_src = h && sample ? cs_csv_column_named(h, "source", 0) : -1;
    int c_sim = h ? cs_csv_column_named(h, "similarity", 1) : -1;
    int c_ref = h ? cs_csv_column_named(h, "refclipscore", 1) : -1;
    int c_err = -1;
    for (int k = 0; h && k < h->n; k++)
        if (strncmp(h->fields[k], "error", 5) == 0) c_err = k;
    cs_csv_record rec;
    int malformed;
    long index = 0;
    while (!rc && (rc = cs_csv_next(r, &rec, &malformed, e)) == 1) {
        const char *image = c_img >= 0 && c_img < rec.n ? rec.fields[c_img] : "";
        const char *src = c_src >= 0 && c_src < rec.n ? rec.fields[c_src] : NULL;
        char *img_path = NULL;
        if (!sample && *image) img_path = cs_path_join(base, image, NULL);
        cs_scored_row sr = {
            .index = index++,
            .n_fields = rec.n,
            .fields = rec.fields,
            .lens = rec.lens,
            .caption = c_cap >= 0 && c_cap < rec.n ? rec.fields[c_cap] : "",
            .error = c_err >= 0 && c_err < rec.n && rec.lens[c_err] ? rec.fields[c_err] : NULL,
            .similarity = cell_num(&rec, c_sim),
            .image = image,
            .image_path = img_path,
            .image_tar = src && cs_wds_kind(src) ? src : NULL,
            .image_key = image_key,
            .refclipscore = cell_num(&rec, c_ref),
        };
        /* A CSV row of a mixed run: its path against its own CSV's folder. */
        if (sample && src && !sr.image_tar && *image) {
            char *dir = root ? cs_strdup(root, NULL) : cs_path_dirname(src, NULL);
            sr.image_path = img_path = dir ? cs_path_join(dir, image, NULL) : NULL;
            free(dir);
        }
        if (!sr.error && isnan(sr.similarity)) sr.error = "no similarity";
        rc = w->ops->row(w, &sr, e);
        free(img_path);
    }
    cs_csv_close(r);
    if (!rc) {
        clipscore_score_params sp = clipscore_default_score_params();
        const char *tpl = cJSON_GetStringValue(item(run, "template"));
        if (tpl) sp.caption_template = tpl;
        cs_run_record rr;
        memset(&rr, 0, sizeof rr);
        rr.sp = &sp;
        rr.input = first ? first : "";
        rr.image_column = cJSON_GetStringValue(item(run, "image_column"));
        rr.caption_column = cJSON_GetStringValue(item(run, "caption_column"));
        if (!rr.image_column) rr.image_column = "";
        if (!rr.caption_column) rr.caption_column = "";
        rr.model_name = cJSON_GetStringValue(item(model, "name"));
        rr.model_sha256 = cJSON_GetStringValue(item(model, "weights_sha256"));
        rr.model_device = cJSON_GetStringValue(item(run, "device"));
        rr.model_precision = cJSON_GetStringValue(item(run, "precision"));
        rr.sum = *s;
        rr.t.total = seconds;
        rc = w->ops->finish(w, &rr, &m->commit, e);
    }
    cs_writer_destroy(w);
    free(path);
    free(base);
    return rc;
}

/* ------------------------------------------------------------ run.json */

static int write_run_json(merge *m, const clipscore_score_summary *s, int figures,
                          const char *dest) {
    const part *p0 = &m->parts[0];
    cJSON *j = cJSON_CreateObject();
    if (!j) return cs_fail(m->e, CLIPSCORE_ENOMEM, "out of memory");
    char when[32];
    cs_utc_timestamp(when);
    cJSON_AddStringToObject(j, "tool", "clipscore");
    cJSON_AddStringToObject(j, "version", CLIPSCORE_VERSION);
    cJSON_AddStringToObject(j, "merged_at", when);
    /* What the parts agree on is copied from the first. */
    static const char *const copied[] = {
        "libtorch",     "model",          "device",       "precision",   "input",
        "inputs",       "inputs_digest",  "columns",      "template",    "metric",
        "image_column", "caption_column", "image_key",    "caption_key", "image_root",
        "max_pixels",   "decode",         "figure_limit", "batch_size"};
    for (size_t k = 0; k < sizeof copied / sizeof *copied; k++) {
        const cJSON *v = item(p0->run, copied[k]);
        if (v) cJSON_AddItemToObject(j, copied[k], cJSON_Duplicate(v, 1));
    }
    cJSON_AddNumberToObject(j, "shards", m->n);
    cJSON_AddNumberToObject(j, "rows", (double)s->rows);
    cJSON_AddNumberToObject(j, "scored", (double)s->scored);
    cJSON_AddNumberToObject(j, "failed", (double)s->failed);
    cJSON_AddNumberToObject(j, "truncated_captions", (double)s->truncated);
    cJSON_AddNumberToObject(j, "invalid_utf8_captions", (double)s->invalid_utf8);
    if (s->scored)
        cJSON_AddNumberToObject(j, "mean_similarity", s->mean_similarity);
    else
        cJSON_AddNullToObject(j, "mean_similarity");
    cJSON_AddNumberToObject(j, "resumed_rows", (double)s->resumed_rows);
    cJSON_AddBoolToObject(j, "figures", figures);
    cJSON_AddBoolToObject(j, "report", m->p->report != 0);
    if (cs_keep_wanted(m->p->keep_threshold, m->p->keep_fraction)) {
        cJSON *k = cJSON_AddObjectToObject(j, "keep");
        if (!isnan(m->p->keep_threshold))
            cJSON_AddNumberToObject(k, "threshold_option", m->p->keep_threshold);
        if (!isnan(m->p->keep_fraction))
            cJSON_AddNumberToObject(k, "fraction_option", m->p->keep_fraction);
        if (!isnan(s->keep_threshold))
            cJSON_AddNumberToObject(k, "threshold", s->keep_threshold);
        else
            cJSON_AddNullToObject(k, "threshold");
        cJSON_AddNumberToObject(k, "kept", (double)s->kept);
    }
    cJSON *parts = cJSON_AddArrayToObject(j, "parts");
    for (int i = 0; i < m->n; i++) {
        const part *pt = &m->parts[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(parts, o);
        cJSON_AddStringToObject(o, "folder", pt->dir);
        cJSON_AddItemToObject(o, "shard", cJSON_Duplicate(item(pt->run, "shard"), 1));
        static const char *const per[] = {"host",   "finished_at",  "rows",  "scored",
                                          "failed", "resumed_rows", "share", "seconds"};
        for (size_t k = 0; k < sizeof per / sizeof *per; k++) {
            const cJSON *v = item(pt->run, per[k]);
            if (v) cJSON_AddItemToObject(o, per[k], cJSON_Duplicate(v, 1));
        }
    }
    char *dir = cs_strdup(m->p->output_dir, m->e);
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; dir && i < m->commit.n; i++) {
        const char *path = m->commit.files[i].path;
        size_t n = strlen(dir);
        cJSON_AddItemToArray(
            outs,
            cJSON_CreateString(strncmp(path, dir, n) == 0 && path[n] == '/' ? path + n + 1 : path));
    }
    cJSON_AddItemToArray(outs, cJSON_CreateString("run.json"));
    free(dir);
    char *body = cJSON_Print(j);
    cJSON_Delete(j);
    if (!body) return cs_fail(m->e, CLIPSCORE_ENOMEM, "out of memory");
    cs_atomic_file f;
    memset(&f, 0, sizeof f);
    int rc = cs_atomic_open(&f, dest, m->e);
    if (!rc && (fputs(body, f.fp) < 0 || fputc('\n', f.fp) < 0))
        rc = cs_fail(m->e, CLIPSCORE_EIO, "writing %s failed", dest);
    free(body);
    if (!rc) rc = cs_atomic_finish(&f, m->e);
    if (!rc) rc = cs_commit_add(&m->commit, &f, m->e);
    if (rc && f.tmp_path) cs_atomic_abort(&f);
    return rc;
}

/* ------------------------------------------------------------ the merge */

static int out_path(merge *m, const char *name, char **p) {
    *p = cs_path_join(m->p->output_dir, name, m->e);
    return *p ? 0 : CLIPSCORE_ENOMEM;
}

static int run_merge(merge *m, clipscore_score_summary *s) {
    const clipscore_merge_params *p = m->p;
    cs_error *e = m->e;
    if (!p->output_dir || !*p->output_dir)
        return cs_fail(e, CLIPSCORE_EARG, "merge needs an output folder (-o)");
    if (p->n_parts < 1 || !p->parts)
        return cs_fail(e, CLIPSCORE_EARG, "merge needs the parts' folders");
    if (!isnan(p->keep_fraction) && !(p->keep_fraction > 0 && p->keep_fraction <= 1))
        return cs_fail(e, CLIPSCORE_EARG, "--keep-fraction %g: must be in (0, 1]",
                       p->keep_fraction);
    m->n = p->n_parts;
    if (!(m->parts = cs_calloc((size_t)m->n, sizeof *m->parts, e))) return CLIPSCORE_ENOMEM;
    int rc = 0;
    for (int i = 0; !rc && i < m->n; i++) {
        m->parts[i].dir = p->parts[i];
        rc = read_part(&m->parts[i], e);
    }
    if (!rc) rc = check_parts(m);
    for (int i = 0; !rc && i < m->n; i++) {
        struct stat a, b;
        if (stat(m->parts[i].dir, &a) == 0 && stat(p->output_dir, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino)
            rc = cs_fail(e, CLIPSCORE_EARG, "the output folder %s is part %s itself", p->output_dir,
                         m->parts[i].dir);
    }
    if (!rc) rc = cs_mkdir_p(p->output_dir, e);
    if (!rc) rc = cs_output_lock_take(p->output_dir, &m->lock, e);
    if (rc) return rc;

    char *csv = NULL;
    if ((rc = out_path(m, "output.csv", &csv))) return rc;
    rc = merge_csv(m, csv);
    for (int i = 0; !rc && i < m->n; i++) {
        const part *pt = &m->parts[i];
        s->rows += (int64_t)pt->rows;
        s->scored += (int64_t)pt->scored;
        s->failed += (int64_t)pt->failed;
        s->truncated += isnan(pt->truncated) ? 0 : (int64_t)pt->truncated;
        s->invalid_utf8 += isnan(pt->invalid_utf8) ? 0 : (int64_t)pt->invalid_utf8;
        double resumed = num(pt->run, "resumed_rows");
        s->resumed_rows += isnan(resumed) ? 0 : (int64_t)resumed;
        if (pt->scored > 0 && !isnan(pt->mean)) s->mean_similarity += pt->mean * pt->scored;
    }
    s->mean_similarity = s->scored ? s->mean_similarity / (double)s->scored : NAN;
    if (!rc && cs_keep_wanted(p->keep_threshold, p->keep_fraction)) {
        char *kept = NULL;
        cs_atomic_file af;
        memset(&af, 0, sizeof af);
        cs_keep_result kr;
        rc = out_path(m, "kept.csv", &kept);
        if (!rc)
            rc = cs_keep_write(cs_commit_tmp_path(&m->commit, csv), m->sim_column,
                               p->keep_threshold, p->keep_fraction, kept, &af, &kr, e);
        if (!rc) rc = cs_commit_add(&m->commit, &af, e);
        if (!rc) {
            s->kept = kr.kept;
            s->keep_threshold = kr.threshold;
        }
        free(kept);
    }
    /* Embeddings: merged when every part saved them. */
    int all_npy = 1;
    for (int i = 0; i < m->n; i++) {
        char *a = part_output(&m->parts[i], "image_embeddings.npy", NULL);
        all_npy &= a != NULL;
        free(a);
    }
    static const char *const npys[] = {"image_embeddings.npy", "text_embeddings.npy"};
    for (int i = 0; !rc && all_npy && i < 2; i++) {
        char *dest = NULL;
        rc = out_path(m, npys[i], &dest);
        if (!rc) rc = merge_npy(m, npys[i], dest);
        free(dest);
    }
    /* Figures are optional: a failure is a warning and drops both. */
    int figures = 0;
    if (!rc) {
        cs_commit saved = m->commit; /* merge_figures may abort only its own files */
        cs_commit figs;
        cs_commit_init(&figs);
        m->commit = figs;
        cs_error fe;
        cs_error_clear(&fe);
        int got = merge_figures(m, cs_commit_tmp_path(&saved, csv), &fe);
        figures = got == 1;
        if (got < 0) {
            fprintf(stderr, "clipscore: warning: figures not drawn: %s\n", fe.msg);
            cs_commit_abort(&m->commit);
        }
        figs = m->commit;
        m->commit = saved;
        for (int i = 0; !rc && figures && i < figs.n; i++)
            rc = cs_commit_add(&m->commit, &figs.files[i], e);
        free(figs.files);
    }
    /* The slowest part's wall time is the merged run's (they run side by side). */
    double slowest = 0;
    for (int i = 0; i < m->n; i++) {
        double t = num(item(m->parts[i].run, "seconds"), "total");
        if (t > slowest) slowest = t;
    }
    if (!rc && p->report) rc = merge_report(m, cs_commit_tmp_path(&m->commit, csv), s, slowest);
    char *json = NULL;
    if (!rc) rc = out_path(m, "run.json", &json);
    if (!rc) rc = write_run_json(m, s, figures, json);
    if (!rc) rc = cs_commit_apply(&m->commit, e);
    /* Figures of an earlier run in this folder would pass for these. */
    for (int i = 0; !rc && !figures && i < 2; i++) {
        static const char *const names[] = {"image_captions.jpg", "similarity_matrix.jpg"};
        char *f = cs_path_join(p->output_dir, names[i], NULL);
        if (f) unlink(f);
        free(f);
    }
    free(json);
    free(csv);
    return rc;
}

int clipscore_merge(const clipscore_merge_params *params, clipscore_score_summary *summary,
                    char *err, size_t err_len) {
    cs_error e;
    cs_error_clear(&e);
    merge m;
    memset(&m, 0, sizeof m);
    m.p = params;
    m.e = &e;
    cs_commit_init(&m.commit);
    cs_output_lock_init(&m.lock);
    clipscore_score_summary s;
    memset(&s, 0, sizeof s);
    s.keep_threshold = NAN;
    double t0 = cs_now();
    int rc = params ? run_merge(&m, &s) : cs_fail(&e, CLIPSCORE_EARG, "no merge parameters");
    s.seconds = cs_now() - t0;
    cs_commit_abort(&m.commit);
    cs_output_lock_release(&m.lock);
    for (int i = 0; m.parts && i < m.n; i++) cJSON_Delete(m.parts[i].run);
    free(m.parts);
    free(m.sim_column);
    if (!rc && params->progress) {
        fprintf(stderr, "clipscore: merged %d parts: %lld rows: %lld scored, %lld failed", m.n,
                (long long)s.rows, (long long)s.scored, (long long)s.failed);
        if (s.scored) fprintf(stderr, "; mean similarity %.4f", s.mean_similarity);
        if (cs_keep_wanted(params->keep_threshold, params->keep_fraction))
            fprintf(stderr, "; kept %lld", (long long)s.kept);
        fprintf(stderr, "\nclipscore: wrote %s/output.csv, run.json\n", params->output_dir);
    }
    if (summary) *summary = s;
    if (rc && err && err_len)
        cs_copy_elided(err, err_len, e.msg[0] ? e.msg : clipscore_status_name(rc));
    return rc;
}
