/* commit.h - committing a run's outputs together.
 *
 * Each writer leaves its output as a finished temporary file beside the
 * destination (cs_atomic_finish: flushed, synced, closed). The commit takes
 * them over and, only when every writer has finished, renames them all:
 * first it checks every destination (no folder in the way, every temporary
 * still there), then renames in the order they were added. A failure before
 * the first rename changes nothing; the temporaries are removed. */
#ifndef CLIPSCORE_COMMIT_H
#define CLIPSCORE_COMMIT_H

#include "util.h"

typedef struct cs_commit {
    int n, cap;
    cs_atomic_file *files; /* finished temporaries, renamed in this order (owned) */
} cs_commit;

void cs_commit_init(cs_commit *c);
/* Takes over a finished temporary (*f is zeroed). On failure the temporary
 * is removed. */
int cs_commit_add(cs_commit *c, cs_atomic_file *f, cs_error *e);
/* 1 when a file for this destination has been added. */
int cs_commit_has(const cs_commit *c, const char *path);
/* The finished temporary that will become path (NULL: none), to be read
 * back before the commit (kept.csv is made from output.csv's). */
const char *cs_commit_tmp_path(const cs_commit *c, const char *path);
/* Checks, then renames every file into place. On a failure before the first
 * rename nothing is replaced; on one after it (a failing disk, another
 * process removing files), the message names what was and was not replaced.
 * Either way no temporary is left and the commit is empty afterwards. */
int cs_commit_apply(cs_commit *c, cs_error *e);
/* Removes every temporary; nothing is replaced. Safe on an empty commit. */
void cs_commit_abort(cs_commit *c);

#endif
