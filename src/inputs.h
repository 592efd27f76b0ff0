/* inputs.h - the rows of a run's inputs, in order: CSVs (csv_io.h),
 * webdataset tars and img2dataset "files" folders (webdataset.h), and the
 * share of them a shard of a job array scores.
 *
 * Covers: opening every input up front (so a bad one fails before any
 * work), the output schema, per-row checks that need no image (field
 * counts, empty paths, URLs), which rows a shard takes, and a digest of the
 * input list that shards and resumed runs compare.
 *
 * Output schema: when every input is a CSV and all share one header, rows
 * keep their fields (output.csv is the input plus the run's columns);
 * otherwise every row is key, source, url, caption, where for a CSV row the
 * key is its image path as written, the source the CSV, the url its `url`
 * column when it has one besides the image column.
 *
 * Shards (K of N): with at least N inputs, shard K takes the whole inputs
 * [K*M/N, (K+1)*M/N) of the M given; with fewer, the rows of all inputs are
 * counted (a pass that reads no image data) and shard K takes the rows
 * [K*T/N, (K+1)*T/N) of the T in input order. Either way merging the parts
 * in K order gives the rows in input order. Row indices are this process's
 * own (0 for the first row it scores).
 * Leaves out: decoding images, encoding (pipeline.c). */
#ifndef CLIPSCORE_INPUTS_H
#define CLIPSCORE_INPUTS_H

#include <stdint.h>

#include "util.h"

typedef struct cs_inputs_params {
    const char *const *paths; /* as given; "-": standard input (CSV) */
    int n_paths;
    const char *image_column, *caption_column; /* CSVs; NULL: detect */
    const char *image_root;                    /* NULL: each CSV's folder */
    const char *image_key, *caption_key;       /* tars and folders; NULL: defaults */
    int shard_index, shard_count;              /* 0, 0: everything */
} cs_inputs_params;

typedef struct cs_input_row {
    long index;          /* 0-based, counting this process's rows */
    long line;           /* CSV line where the record starts; 0 for samples */
    const char *source;  /* the input as given */
    int n_fields;        /* output fields (may differ from the header's count) */
    char *const *fields; /* NUL-terminated */
    const size_t *lens;
    const char *caption;             /* NULL when error is set */
    const char *image_path;          /* a file to decode, or NULL */
    const unsigned char *image_data; /* an image in memory (a tar member), or NULL */
    size_t image_len;
    const char *image_id; /* names the image uniquely within the run (cache key) */
    const char *error;    /* a row error found while reading, or NULL */
} cs_input_row;           /* valid until the next cs_inputs_next */

typedef struct cs_inputs cs_inputs;

/* Opens (and checks) every input; for a shard of fewer inputs than shards,
 * counts rows. Errors name the input. */
int cs_inputs_open(const cs_inputs_params *p, cs_inputs **out, cs_error *e);
/* The output header (owned by in). */
int cs_inputs_n_header(const cs_inputs *in);
const char *const *cs_inputs_header(const cs_inputs *in);
/* 1: the key,source,url,caption schema; 0: the CSVs' own columns. */
int cs_inputs_sample_schema(const cs_inputs *in);
/* The image and caption column names of the first CSV ("" when none). */
const char *cs_inputs_image_column(const cs_inputs *in);
const char *cs_inputs_caption_column(const cs_inputs *in);
/* Index of the caption, and of the image (a CSV's image column, a
 * sample's key), among the output fields. */
int cs_inputs_caption_field(const cs_inputs *in);
int cs_inputs_image_field(const cs_inputs *in);
/* 1: a row in *row; 0: this shard's rows are done; negative: fatal. */
int cs_inputs_next(cs_inputs *in, cs_input_row *row, cs_error *e);
/* This shard's inputs [first, last) and, in row mode, rows [lo, hi) of
 * the total (lo = hi = -1 in input mode). */
void cs_inputs_share(const cs_inputs *in, int *first, int *last, int64_t *lo, int64_t *hi);
/* Rows this shard will read, when known without reading (-1: unknown). */
int64_t cs_inputs_rows_hint(const cs_inputs *in);
void cs_inputs_close(cs_inputs *in);

/* SHA-256 (hex) of the input list: each path as given with its size, so
 * every part of a job array can check it scores the same list. */
int cs_inputs_digest(const char *const *paths, int n, char out[65], cs_error *e);

#endif
