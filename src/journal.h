/* journal.h - a run's scored rows, appended as it goes, so that a run
 * stopped any way (SIGKILL, out of memory, preemption, a time limit) can be
 * continued by the same command.
 *
 * The journal is `.clipscore.journal` in the output folder. It starts with
 * the run's identity (a JSON line: the inputs with size and mtime, the
 * weights' SHA-256, every option that changes what is written, the shard)
 * and holds one record a row, each with a CRC, and a mark where a cache
 * epoch ends (pipeline.c: the rows after a mark are scored the same
 * whether or not the run stopped there). A row's record is what the writers were given: its output
 * fields, error, similarity, and where writers need them its normalised embeddings and thumbnail.
 * Records are flushed after every batch and synced to disk at least every SYNC_SECONDS or
 * SYNC_BATCHES batches.
 *
 * On a restart the identity is compared (a difference is refused, naming
 * it), the records up to the last mark are replayed into the writers and
 * the file is cut there; the rows after it are scored again. The journal is removed once the
 * outputs are committed. Leaves out: the writers (writer.h), the lock on the folder (output_dir.h).
 */
#ifndef CLIPSCORE_JOURNAL_H
#define CLIPSCORE_JOURNAL_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "writer.h"

#define CS_JOURNAL_NAME ".clipscore.journal"

typedef struct cs_journal cs_journal;

/* One replayed row; pointers valid during the callback only. */
typedef struct cs_journal_row {
    cs_scored_row row;
    unsigned flags; /* CLIPSCORE_TOKEN_TRUNCATED, CLIPSCORE_TOKEN_INVALID_UTF8 */
} cs_journal_row;

typedef int (*cs_journal_replay_fn)(void *arg, const cs_journal_row *r, cs_error *e);

/* Opens the journal in dir for a run whose identity is `id` (taken over:
 * freed by the journal). When restart is 0 and a journal is there, its
 * identity must equal id (else CLIPSCORE_EARG naming what changed); its
 * whole batches are replayed through fn (rows in order) and *resumed gets
 * their count. Otherwise a new journal is started (*resumed = 0). dim: the
 * embedding width. */
int cs_journal_open(const char *dir, cJSON *id, int restart, int dim, cs_journal_replay_fn fn,
                    void *arg, cs_journal **out, int64_t *resumed, cs_error *e);
/* Appends a row. with_emb / thumb: store its embeddings / thumbnail. */
int cs_journal_add(cs_journal *j, const cs_scored_row *r, unsigned flags, int with_emb,
                   cs_error *e);
/* After each batch: flushes (and syncs when it is time); mark: the batch
 * ends a cache epoch, so a restart may continue after it. */
int cs_journal_batch_done(cs_journal *j, int mark, cs_error *e);
/* Closes; remove: delete the file (after a committed run). */
void cs_journal_close(cs_journal *j, int remove);
/* Whether dir holds a journal (an unfinished run). */
int cs_journal_exists(const char *dir);

#endif
