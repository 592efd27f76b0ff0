/* merge_figures.h - the figures of a merged run, drawn again from its first
 * rows (see merge_figures.c). */
#ifndef CLIPSCORE_MERGE_FIGURES_H
#define CLIPSCORE_MERGE_FIGURES_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "commit.h"
#include "util.h"

/* Draws image_captions.jpg and similarity_matrix.jpg in out_dir from the
 * first `limit` rows of merged_csv, with the model and options of run (a
 * part's run.json), and adds them to c. total_rows: the merged run's. */
int cs_merge_redraw_figures(const cJSON *run, const char *merged_csv, const char *out_dir,
                            int limit, int64_t total_rows, cs_commit *c, cs_error *e);

#endif
