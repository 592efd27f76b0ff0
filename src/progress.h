/* progress.h - what a run shows on stderr while it works: a bar on a
 * terminal (redrawn at most 5 times a second), a line every 10 seconds
 * otherwise, with rows/s and, when the total is known, an ETA; and notes
 * (row errors, warnings) printed so that they do not tangle with the bar. */
#ifndef CLIPSCORE_PROGRESS_H
#define CLIPSCORE_PROGRESS_H

#include <stdatomic.h>

#include "util.h"

typedef struct cs_progress {
    int enabled;
    int tty;
    long total; /* data rows, -1 when unknown */
    double t_start, t_last;
} cs_progress;

/* enabled 0: everything below prints nothing. */
void cs_progress_init(cs_progress *p, int enabled);
/* Counts the data rows of a CSV for the ETA (a first pass with the CSV
 * reader). Only for regular files (a pipe can be read once); -1 otherwise,
 * on error, or when *cancel becomes set while counting. */
long cs_progress_count_rows(const char *path, const atomic_int *cancel);
void cs_progress_update(cs_progress *p, long rows, int final);
/* printf to stderr, first clearing the bar's line on a terminal. */
void cs_progress_note(cs_progress *p, const char *fmt, ...) CS_PRINTF(2, 3);

#endif
