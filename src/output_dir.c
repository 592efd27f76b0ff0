/* output_dir.c - one run per output folder (a lock file) and the clean-up
 * of temporaries left by runs that were killed. See output_dir.h.
 * Leaves out: locking across machines on network file systems whose fcntl
 * locks do not work (NFS without lockd); there two runs are not detected. */
#define _GNU_SOURCE
#include "output_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef F_OFD_SETLK
#define LOCK_CMD F_OFD_SETLK
#else
#define LOCK_CMD F_SETLK
#endif

void cs_output_lock_init(cs_output_lock *l) {
    l->fd = -1;
    l->path = NULL;
}

int cs_output_lock_take(const char *dir, cs_output_lock *l, cs_error *e) {
    cs_output_lock_init(l);
    char *path = cs_path_join(dir, CS_OUTPUT_LOCK_NAME, e);
    if (!path) return CLIPSCORE_ENOMEM;
    /* The holder may remove the file as it finishes, after we opened it:
     * then our lock is on a file nobody else sees, so check the name still
     * leads to the inode we locked, and retry when it does not. */
    for (int attempt = 0; attempt < 16; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            int rc = cs_fail(e, CLIPSCORE_EIO, "output folder %s is not writable: %s", dir,
                             strerror(errno));
            free(path);
            return rc;
        }
        /* Open-file-description locks conflict between two runs in one
         * process too (a library user with two contexts); classic POSIX
         * locks would not. Both end with the process however it ends. */
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(fd, LOCK_CMD, &fl) != 0) {
            int err = errno;
            char buf[32] = "";
            ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
            long pid = got > 0 ? strtol(buf, NULL, 10) : 0;
            close(fd);
            if (err != EAGAIN && err != EACCES) {
                int rc = cs_fail(e, CLIPSCORE_EIO, "cannot lock %s: %s", path, strerror(err));
                free(path);
                return rc;
            }
            int rc = pid > 0 ? cs_fail(e, CLIPSCORE_EIO,
                                       "another clipscore (PID %ld) is writing to %s; wait for "
                                       "it or choose another folder with -o",
                                       pid, dir)
                             : cs_fail(e, CLIPSCORE_EIO,
                                       "another clipscore is writing to %s; wait for it or "
                                       "choose another folder with -o",
                                       dir);
            free(path);
            return rc;
        }
        struct stat a, b;
        if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd); /* releases the lock on the orphaned file */
            continue;
        }
        char pid[32];
        int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
            /* The PID is only for messages; the lock itself holds. */
        }
        l->fd = fd;
        l->path = path;
        return 0;
    }
    free(path);
    return cs_fail(e, CLIPSCORE_EIO, "cannot lock output folder %s: it keeps changing", dir);
}

void cs_output_lock_release(cs_output_lock *l) {
    if (l->fd >= 0) {
        /* Unlink before closing: while we hold the lock nobody else can be
         * past the inode check in cs_output_lock_take with this file. */
        unlink(l->path);
        close(l->fd);
    }
    free(l->path);
    cs_output_lock_init(l);
}

/* PID of NAME.tmp.PID when entry has that shape for one of names, else 0. */
static long stale_pid(const char *entry, const char *const *names, int n) {
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(names[i]);
        if (strncmp(entry, names[i], nl) != 0 || strncmp(entry + nl, ".tmp.", 5) != 0) continue;
        const char *d = entry + nl + 5;
        if (!*d) return 0;
        long pid = 0;
        for (; *d; d++) {
            if (*d < '0' || *d > '9' || pid > 100000000) return 0;
            pid = pid * 10 + (*d - '0');
        }
        return pid;
    }
    return 0;
}

int cs_output_remove_stale(const char *dir, const char *const *names, int n) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        long pid = stale_pid(de->d_name, names, n);
        if (pid <= 0 || pid == (long)getpid()) continue;
        /* ESRCH: no such process. EPERM means it runs under another user:
         * not ours to remove. */
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char *p = cs_path_join(dir, de->d_name, NULL);
        struct stat st;
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) && unlink(p) == 0) removed++;
        free(p);
    }
    closedir(d);
    return removed;
}
