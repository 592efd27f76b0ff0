/* run_json.c - run.json: what was run (tool, libtorch, model and its
 * weights' SHA-256, device, options), what came of it (row counts, mean
 * similarity, encoder work, timings) and which files belong to it. Finished
 * after the other writers so that it can list their files (see writer.h). */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "writer.h"

typedef struct json_writer {
    cs_writer base;
    char *path;
    cs_atomic_file file;
} json_writer;

/* The name of path relative to dir when it lies inside it, else path. */
static const char *relative_to(const char *path, const char *dir) {
    size_t n = strlen(dir);
    if (strncmp(path, dir, n) == 0 && path[n] == '/') return path + n + 1;
    return path;
}

static int json_finish(cs_writer *w, const cs_run_record *r, cs_commit *c, cs_error *e) {
    json_writer *jw = (json_writer *)w;
    clipscore_context *ctx = r->ctx;
    const clipscore_score_params *sp = r->sp;
    clipscore_model_info mi;
    clipscore_get_model_info(ctx, &mi);
    char sha[65] = "";
    cs_error he;
    cs_error_clear(&he);
    if (cs_ctx_weights_sha256(ctx, sha, &he)) sha[0] = '\0'; /* recorded as null */
    cJSON *j = cJSON_CreateObject();
    if (!j) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    char when[32];
    cs_utc_timestamp(when);
    cJSON_AddStringToObject(j, "tool", "clipscore");
    cJSON_AddStringToObject(j, "version", CLIPSCORE_VERSION);
    cJSON_AddStringToObject(j, "libtorch", cs_ctx_torch_version());
    cJSON_AddStringToObject(j, "finished_at", when);
    cJSON *m = cJSON_AddObjectToObject(j, "model");
    cJSON_AddStringToObject(m, "name", mi.name);
    cJSON_AddStringToObject(m, "path", mi.path);
    cJSON_AddStringToObject(m, "layout", mi.layout);
    cJSON_AddStringToObject(m, "weights_file", mi.weights_file);
    if (sha[0])
        cJSON_AddStringToObject(m, "weights_sha256", sha);
    else
        cJSON_AddNullToObject(m, "weights_sha256");
    cJSON_AddNumberToObject(m, "image_size", mi.image_size);
    cJSON_AddNumberToObject(m, "patch_size", mi.patch_size);
    cJSON_AddNumberToObject(m, "vision_width", mi.vision_width);
    cJSON_AddNumberToObject(m, "vision_layers", mi.vision_layers);
    int stages[4];
    if (clipscore_get_vision_stages(ctx, stages) > 0) /* a ResNet */
        cJSON_AddItemToObject(m, "vision_stages", cJSON_CreateIntArray(stages, 4));
    cJSON_AddNumberToObject(m, "text_width", mi.text_width);
    cJSON_AddNumberToObject(m, "text_layers", mi.text_layers);
    cJSON_AddNumberToObject(m, "context_length", mi.context_length);
    cJSON_AddNumberToObject(m, "embed_dim", mi.embed_dim);
    cJSON_AddStringToObject(m, "activation", mi.quick_gelu ? "quick_gelu" : "gelu");
    cJSON_AddStringToObject(j, "device", mi.device);
    cJSON_AddStringToObject(j, "precision", mi.precision);
    cJSON_AddStringToObject(j, "decode", cs_ctx_decode_min_side(ctx) ? "fast" : "exact");
    cJSON_AddNumberToObject(j, "threads", cs_ctx_threads(ctx));
    cJSON_AddNumberToObject(j, "torch_intra_op_threads", cs_ctx_torch_threads(ctx));
    cJSON_AddNumberToObject(j, "batch_size", r->batch_size);
    cJSON_AddStringToObject(j, "input", r->input);
    cJSON *ins = cJSON_AddArrayToObject(j, "inputs");
    for (int i = 0; i < r->n_inputs; i++)
        cJSON_AddItemToArray(ins, cJSON_CreateString(r->inputs[i]));
    cJSON_AddStringToObject(j, "inputs_digest", r->inputs_digest);
    cJSON_AddStringToObject(j, "columns", r->sample_schema ? "key,source,url,caption" : "input");
    if (sp->image_root) cJSON_AddStringToObject(j, "image_root", sp->image_root);
    if (sp->image_key) cJSON_AddStringToObject(j, "image_key", sp->image_key);
    if (sp->caption_key) cJSON_AddStringToObject(j, "caption_key", sp->caption_key);
    if (r->shard_count > 0) {
        cJSON *sh = cJSON_AddArrayToObject(j, "shard");
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(r->shard_index));
        cJSON_AddItemToArray(sh, cJSON_CreateNumber(r->shard_count));
        cJSON *share = cJSON_AddObjectToObject(j, "share");
        if (r->row_lo >= 0) {
            cJSON_AddNumberToObject(share, "first_row", (double)r->row_lo);
            cJSON_AddNumberToObject(share, "end_row", (double)r->row_hi);
        } else {
            cJSON_AddNumberToObject(share, "first_input", r->first_input);
            cJSON_AddNumberToObject(share, "end_input", r->last_input);
        }
    }
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
    cJSON_AddStringToObject(j, "host", host);
    cJSON_AddNumberToObject(j, "max_pixels", (double)cs_ctx_max_pixels(ctx));
    cJSON_AddNumberToObject(j, "resumed_rows", (double)r->sum.resumed_rows);
    if (r->keep) {
        cJSON *k = cJSON_AddObjectToObject(j, "keep");
        if (sp->keep_threshold == sp->keep_threshold)
            cJSON_AddNumberToObject(k, "threshold_option", sp->keep_threshold);
        if (sp->keep_fraction == sp->keep_fraction)
            cJSON_AddNumberToObject(k, "fraction_option", sp->keep_fraction);
        if (r->sum.keep_threshold == r->sum.keep_threshold)
            cJSON_AddNumberToObject(k, "threshold", r->sum.keep_threshold);
        else
            cJSON_AddNullToObject(k, "threshold");
        cJSON_AddNumberToObject(k, "kept", (double)r->sum.kept);
    }
    cJSON_AddStringToObject(j, "image_column", r->image_column);
    cJSON_AddStringToObject(j, "caption_column", r->caption_column);
    cJSON_AddStringToObject(j, "template", sp->caption_template ? sp->caption_template : "{}");
    cJSON_AddStringToObject(j, "metric",
                            sp->metric == CLIPSCORE_METRIC_CLIPSCORE ? "clipscore" : "cosine");
    cJSON_AddNumberToObject(j, "rows", (double)r->sum.rows);
    cJSON_AddNumberToObject(j, "scored", (double)r->sum.scored);
    cJSON_AddNumberToObject(j, "failed", (double)r->sum.failed);
    cJSON_AddNumberToObject(j, "truncated_captions", (double)r->sum.truncated);
    cJSON_AddNumberToObject(j, "invalid_utf8_captions", (double)r->sum.invalid_utf8);
    if (r->sum.scored)
        cJSON_AddNumberToObject(j, "mean_similarity", r->sum.mean_similarity);
    else
        cJSON_AddNullToObject(j, "mean_similarity");
    cJSON_AddNumberToObject(j, "images_encoded", (double)r->images_encoded);
    cJSON_AddNumberToObject(j, "texts_encoded", (double)r->texts_encoded);
    if (sp->n_reference_columns > 0 && r->reference_columns) {
        /* RefCLIPScore: the columns, how many distinct references were
         * encoded (a reference repeated across rows is encoded once) and
         * how many rows got a score. */
        cJSON *refs = cJSON_AddObjectToObject(j, "references");
        cJSON *cols = cJSON_AddArrayToObject(refs, "columns");
        for (int k = 0; k < sp->n_reference_columns; k++)
            cJSON_AddItemToArray(cols,
                                 cJSON_CreateString(r->header_names[r->reference_columns[k]]));
        cJSON_AddNumberToObject(refs, "encoded", (double)r->references_encoded);
        cJSON_AddNumberToObject(refs, "refclipscore_rows", (double)r->refclipscore_rows);
    }
    cJSON_AddBoolToObject(j, "figures", r->figures_written);
    cJSON_AddNumberToObject(j, "figure_limit", sp->figures ? sp->figure_limit : 0);
    cJSON_AddBoolToObject(j, "report", r->report_written);
    cJSON *dm = cJSON_AddObjectToObject(j, "decode_memory");
    cJSON_AddNumberToObject(dm, "budget_bytes", (double)r->decode_budget);
    cJSON_AddNumberToObject(dm, "peak_reserved_bytes", (double)r->decode_peak);
    cJSON_AddNumberToObject(dm, "waits", (double)r->decode_waits);
    /* The files of this run, relative to run.json's folder where they lie in
     * it: anything else beside it is not from this run. */
    char *dir = cs_path_dirname(jw->path, e);
    if (!dir) {
        cJSON_Delete(j);
        return CLIPSCORE_ENOMEM;
    }
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (int i = 0; i < c->n; i++)
        cJSON_AddItemToArray(outs, cJSON_CreateString(relative_to(c->files[i].path, dir)));
    cJSON_AddItemToArray(outs, cJSON_CreateString(relative_to(jw->path, dir)));
    free(dir);
    cJSON *t = cJSON_AddObjectToObject(j, "seconds");
    cJSON_AddNumberToObject(t, "load_model", cs_ctx_load_seconds(ctx));
    cJSON_AddNumberToObject(t, "read", r->t.read);
    cJSON_AddNumberToObject(t, "decode_preprocess_cpu", r->t.decode_cpu);
    cJSON_AddNumberToObject(t, "wait_for_decode", r->t.wait);
    cJSON_AddNumberToObject(t, "text_encoder", r->t.text);
    cJSON_AddNumberToObject(t, "image_encoder", r->t.image);
    cJSON_AddNumberToObject(t, "write", r->t.write);
    cJSON_AddNumberToObject(t, "journal", r->t.journal);
    cJSON_AddNumberToObject(t, "figures", r->t.figures);
    cJSON_AddNumberToObject(t, "report", r->t.report);
    cJSON_AddNumberToObject(t, "total", r->t.total);
    char *body = cJSON_Print(j);
    cJSON_Delete(j);
    if (!body) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
    int rc = cs_atomic_open(&jw->file, jw->path, e);
    if (!rc && (fputs(body, jw->file.fp) < 0 || fputc('\n', jw->file.fp) < 0))
        rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed", jw->path);
    free(body);
    if (!rc) rc = cs_atomic_finish(&jw->file, e);
    if (!rc) rc = cs_commit_add(c, &jw->file, e);
    return rc;
}

static void json_destroy(cs_writer *w) {
    json_writer *jw = (json_writer *)w;
    if (jw->file.tmp_path) cs_atomic_abort(&jw->file);
    free(jw->path);
    free(jw);
}

static const cs_writer_ops json_ops = {"run.json", NULL, json_finish, json_destroy};

int cs_run_json_writer_new(const char *path, cs_writer **out, cs_error *e) {
    *out = NULL;
    json_writer *jw = cs_calloc(1, sizeof *jw, e);
    if (!jw) return CLIPSCORE_ENOMEM;
    jw->base.ops = &json_ops;
    if (!(jw->path = cs_strdup(path, e))) {
        free(jw);
        return CLIPSCORE_ENOMEM;
    }
    *out = &jw->base;
    return 0;
}
