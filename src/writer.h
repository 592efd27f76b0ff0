/* writer.h - the outputs of a scoring run, one writer per output, behind
 * one small interface.
 *
 * The scorer hands every row, in input order, to each writer (row), and at
 * the end asks each to finish: complete its file(s) as finished temporaries
 * and add them to the run's commit (commit.h), which renames them all
 * together. destroy frees the writer and removes anything it has not handed
 * to the commit, so a failed or cancelled run leaves nothing behind.
 *
 * The writers: output.csv (writer_csv.c), the embeddings (writer_npy.c),
 * the figures (writer_figures.c), report.html (writer_report.c) and
 * run.json (run_json.c), which is finished last and lists the files the
 * others committed. */
#ifndef CLIPSCORE_WRITER_H
#define CLIPSCORE_WRITER_H

#include <stdint.h>

#include "clipscore.h"
#include "commit.h"
#include "csv_io.h"
#include "image.h"
#include "util.h"

/* One row as the writers see it; valid during the row call only. */
typedef struct cs_scored_row {
    long index;            /* 0-based data row */
    long line;             /* 1-based line where its record starts */
    int n_fields;          /* as read (may differ from the header's count) */
    char *const *fields;   /* NUL-terminated */
    const size_t *lens;    /* byte lengths (a field may hold NUL bytes) */
    const char *caption;   /* the caption field as read, "" when missing */
    const char *error;     /* NULL when scored */
    double similarity;     /* cosine; NaN when not scored */
    const float *img_emb;  /* [D] L2-normalised, all NaN when not scored */
    const float *txt_emb;  /* [D] likewise */
    const cs_image *thumb; /* RGB thumbnail when one was made, else NULL */

    /* For report.html and RefCLIPScore: */
    const float *pixels;    /* [3][R][R] the image as the encoder saw it (normalised),
                               NULL when it came from the embedding cache */
    const char *image;      /* the image field as given, "" when missing */
    const char *image_path; /* the file it resolved to, NULL when none */
    const char *image_tar;  /* a tar member's tar (the image field is then its key), or NULL */
    const char *image_key;  /* that tar's image member extension (--image-key), or NULL */
    double refclipscore;    /* NaN when none (no reference, or not asked for) */
} cs_scored_row;

/* The long side of report.html's thumbnails, in pixels. */
#define CS_REPORT_THUMB_SIDE 160

/* Per-stage wall times of a run, in seconds. */
typedef struct cs_stage_times {
    double read, wait, decode_cpu, text, image, write, figures, report, total;
    double journal; /* of write: appending to the resume journal, syncs included */
} cs_stage_times;

/* What run.json records; filled in by the scorer before the finish calls. */
typedef struct cs_run_record {
    clipscore_context *ctx; /* NULL for a merge: then the model_* fields say it */
    const char *model_name, *model_sha256, *model_device, *model_precision;
    const clipscore_score_params *sp;
    const char *input;        /* as given ("-" for standard input) */
    const char *image_column; /* header names */
    const char *caption_column;
    int batch_size;
    clipscore_score_summary sum;
    long images_encoded, texts_encoded;
    long references_encoded;         /* of texts_encoded, those some row uses as a reference */
    long refclipscore_rows;          /* rows given a RefCLIPScore */
    const int *reference_columns;    /* [sp->n_reference_columns] indices into header, or NULL */
    const char *const *header_names; /* the output header, when reference columns are used */
    int figures_written, report_written;
    int64_t decode_budget, decode_peak, decode_waits; /* decode memory: bytes, bytes, count */
    cs_stage_times t;
    const char *const *inputs; /* every input, as given */
    int n_inputs;
    int sample_schema;            /* output columns key, source, url, caption */
    int shard_index, shard_count; /* 0, 0: not a shard */
    int first_input, last_input;  /* a shard's inputs [first, last) */
    int64_t row_lo, row_hi;       /* a shard's rows of the total, -1 when it takes inputs */
    char inputs_digest[65];
    int journal; /* a resume journal was kept */
    int keep;    /* kept.csv was asked for */
} cs_run_record;

typedef struct cs_writer cs_writer;

typedef struct cs_writer_ops {
    const char *name;                                              /* for messages */
    int (*row)(cs_writer *w, const cs_scored_row *r, cs_error *e); /* may be NULL */
    int (*finish)(cs_writer *w, const cs_run_record *run, cs_commit *c, cs_error *e);
    void (*destroy)(cs_writer *w);
} cs_writer_ops;

struct cs_writer {
    const cs_writer_ops *ops;
};

/* output.csv: the header's fields, then similarity[, clipscore][,
 * refclipscore], error (names chosen so as not to clash with the input's),
 * then any surplus fields of ragged rows. */
int cs_csv_writer_new(const char *path, int n_header, const char *const *header,
                      const char *sim_name, const char *clipscore_name /* NULL: no column */,
                      const char *refclip_name /* NULL: no column */, const char *err_name,
                      cs_writer **out, cs_error *e);
/* image_embeddings.npy and text_embeddings.npy in dir: [rows][dim] float32. */
int cs_npy_writer_new(const char *dir, int dim, cs_writer **out, cs_error *e);
/* image_captions.jpg and similarity_matrix.jpg in dir: the first `limit`
 * rows. A figure that cannot be drawn is reported by finish; the scorer
 * treats that as a warning. */
int cs_figures_writer_new(const char *dir, int limit, int dim, cs_writer **out, cs_error *e);
/* report.html at path: the `pairs` lowest and highest pairs, the first
 * `pairs` failed rows, the statistics. Thumbnails are drawn from the rows'
 * pixels (pp: their size and normalisation); rows shown whose pixels were
 * not at hand are decoded again at the end with max_pixels. threshold
 * (NaN: none) is drawn on the histogram. */
int cs_report_writer_new(const char *path, int pairs, const cs_preprocess_cfg *pp,
                         int64_t max_pixels, double threshold, cs_writer **out, cs_error *e);
/* run.json at path; finish it after the others: it lists their files. */
int cs_run_json_writer_new(const char *path, cs_writer **out, cs_error *e);

static inline void cs_writer_destroy(cs_writer *w) {
    if (w) w->ops->destroy(w);
}

#endif
