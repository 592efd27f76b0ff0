/* figures.h - the two JPEG figures of a scoring run, drawn with cairo and
 * pango (wrapped Unicode captions) and encoded with stb_image_write.
 *
 * Both functions draw the first n pairs they are given (the caller keeps at
 * most --figure-limit of them, so memory never grows with the row count) and
 * say in the title when total_rows is larger than n. Files are written
 * atomically: with staged NULL the file is renamed into place at once;
 * otherwise it is left as a finished temporary in *staged for the caller to
 * commit together with other outputs (cs_atomic_rename / commit.h). n may be 0: the figures then
 * only say there is nothing to show. */
#ifndef CLIPSCORE_FIGURES_H
#define CLIPSCORE_FIGURES_H

#include <stdint.h>

#include "image.h"
#include "util.h"

/* image_captions.jpg: a grid of thumbnails, each with its wrapped caption
 * and its score, colour-coded. thumbs[i].px may be NULL for a row whose
 * image failed (drawn as a placeholder); scores[i] is NaN for failed rows;
 * errors[i] (may be NULL or "") says why. */
int cs_figure_image_captions(const char *path, cs_atomic_file *staged, int n,
                             const cs_image *thumbs, const char *const *captions,
                             const float *scores, const char *const *errors, int64_t total_rows,
                             cs_error *e);

/* similarity_matrix.jpg: sim[i*n + j] is the cosine similarity of image i
 * with caption j (NaN where either failed); images are rows, captions
 * columns; the diagonal (each image with its own caption) is marked. */
int cs_figure_similarity_matrix(const char *path, cs_atomic_file *staged, int n, const float *sim,
                                const char *const *captions, int64_t total_rows, cs_error *e);

/* Releases the font caches pango, cairo and fontconfig keep for the whole
 * process (LeakSanitizer reports them otherwise). Call at exit, after the
 * last figure, while no other thread draws; figures drawn later still work. */
void cs_figures_shutdown(void);

#endif
