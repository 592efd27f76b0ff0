/* output_dir.h - the folders a run writes into: one run at a time, and no
 * temporaries left from runs that died.
 *
 * A run takes a lock on each folder it writes to (a `.clipscore.lock` file
 * holding its PID, locked with fcntl so the lock ends with the process
 * however it ends); a second run into the same folder is refused with the
 * first one's PID. Holding the lock, the run removes temporaries that
 * earlier runs left behind when they were killed: files named
 * OUTPUT.tmp.PID, for clipscore's own output names, whose PID is no longer
 * running. */
#ifndef CLIPSCORE_OUTPUT_DIR_H
#define CLIPSCORE_OUTPUT_DIR_H

#include "util.h"

typedef struct cs_output_lock {
    int fd;     /* -1 when not held */
    char *path; /* the lock file (owned) */
} cs_output_lock;

#define CS_OUTPUT_LOCK_NAME ".clipscore.lock"

/* Takes the folder's lock without waiting. Refused (CLIPSCORE_EIO) with a
 * message naming the other run's PID when another process holds it. */
int cs_output_lock_take(const char *dir, cs_output_lock *l, cs_error *e);
/* Removes the lock file and releases the lock. Safe on a lock never taken
 * (fd -1 after cs_output_lock_init) and called twice. */
void cs_output_lock_release(cs_output_lock *l);
void cs_output_lock_init(cs_output_lock *l);

/* Removes DIR/NAME.tmp.PID for each of names[0..n) whose PID is not a
 * running process. Returns how many were removed. Call holding the lock. */
int cs_output_remove_stale(const char *dir, const char *const *names, int n);

#endif
