/* commit.c - renaming a run's finished temporaries into place together
 * (see commit.h). Leaves out: durability of the folder entry itself (no
 * fsync of the directory; the files' data are synced when finished). */
#define _GNU_SOURCE
#include "commit.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void cs_commit_init(cs_commit *c) {
    memset(c, 0, sizeof *c);
}

int cs_commit_add(cs_commit *c, cs_atomic_file *f, cs_error *e) {
    assert(f->tmp_path && !f->fp); /* finished, not renamed */
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 8;
        cs_atomic_file *nf = realloc(c->files, (size_t)cap * sizeof *nf);
        if (!nf) {
            cs_atomic_abort(f);
            return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        }
        c->files = nf;
        c->cap = cap;
    }
    c->files[c->n++] = *f;
    memset(f, 0, sizeof *f);
    return 0;
}

int cs_commit_has(const cs_commit *c, const char *path) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->files[i].path, path) == 0) return 1;
    return 0;
}

const char *cs_commit_tmp_path(const cs_commit *c, const char *path) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->files[i].path, path) == 0) return c->files[i].tmp_path;
    return NULL;
}

/* Appends ", name" to a growing list (best effort: a message, not data). */
static void list_add(char *buf, size_t n, const char *name) {
    size_t l = strlen(buf);
    if (l + 3 < n) snprintf(buf + l, n - l, "%s%s", l ? ", " : "", name);
}

int cs_commit_apply(cs_commit *c, cs_error *e) {
    /* Check every destination first so the usual failures (a folder where a
     * file goes, a temporary removed by someone else) replace nothing. */
    for (int i = 0; i < c->n; i++) {
        struct stat st;
        const cs_atomic_file *f = &c->files[i];
        if (lstat(f->path, &st) == 0 && S_ISDIR(st.st_mode)) {
            int rc = cs_fail(e, CLIPSCORE_EIO, "%s is a folder; no output was replaced", f->path);
            cs_commit_abort(c);
            return rc;
        }
        if (lstat(f->tmp_path, &st) != 0) {
            int rc = cs_fail(e, CLIPSCORE_EIO, "%s disappeared before it was moved into place: %s",
                             f->tmp_path, strerror(errno));
            cs_commit_abort(c);
            return rc;
        }
    }
    char done[1024] = "", left[1024] = "";
    int rc = 0;
    for (int i = 0; i < c->n; i++) {
        cs_atomic_file *f = &c->files[i];
        if (rc) {
            list_add(left, sizeof left, f->path);
            cs_atomic_abort(f);
            continue;
        }
        char *name = strdup(f->path);
        cs_error re;
        cs_error_clear(&re);
        if (cs_atomic_rename(f, &re) != 0) { /* removes the temporary */
            rc = re.code;
            list_add(left, sizeof left, name ? name : "?");
            if (i == 0) {
                rc = cs_fail(e, rc, "%s; no output was replaced", re.msg);
            } else {
                cs_fail(e, rc, "%s", re.msg); /* completed below */
            }
        } else {
            list_add(done, sizeof done, name ? name : "?");
        }
        free(name);
    }
    if (rc && done[0]) cs_fail_prefix(e, "replaced: %s; not replaced: %s", done, left);
    free(c->files);
    cs_commit_init(c);
    return rc;
}

void cs_commit_abort(cs_commit *c) {
    for (int i = 0; i < c->n; i++) cs_atomic_abort(&c->files[i]);
    free(c->files);
    cs_commit_init(c);
}
