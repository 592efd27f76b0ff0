/* progress.c - progress and notes on stderr (see progress.h). */
#define _GNU_SOURCE
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csv_io.h"

void cs_progress_init(cs_progress *p, int enabled) {
    p->enabled = enabled;
    p->tty = enabled && isatty(2);
    p->total = -1;
    p->t_start = p->t_last = cs_now();
}

long cs_progress_count_rows(const char *path, const atomic_int *cancel) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    cs_csv_reader *c;
    cs_error e;
    if (cs_csv_open(path, &c, &e)) return -1;
    long n = 0;
    cs_csv_record rec;
    int bad;
    /* A large file takes seconds: Ctrl-C must not wait for the count. */
    while (cs_csv_next(c, &rec, &bad, &e) > 0) {
        if ((++n & 1023) == 0 && atomic_load(cancel)) {
            n = -1;
            break;
        }
    }
    cs_csv_close(c);
    return n;
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (!(s >= 0) || s > 1e7)
        snprintf(buf, n, "?");
    else if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void cs_progress_update(cs_progress *p, long rows, int final) {
    if (!p->enabled) return;
    double now = cs_now(), el = now - p->t_start;
    if (!final && now - p->t_last < (p->tty ? 0.2 : 10.0)) return;
    p->t_last = now;
    double rate = el > 0 ? (double)rows / el : 0;
    int known = p->total > 0;
    char count[64], eta[48] = "";
    if (known)
        snprintf(count, sizeof count, "%ld/%ld rows", rows, p->total);
    else
        snprintf(count, sizeof count, "%ld rows", rows);
    if (known && rate > 0) {
        char d[32];
        fmt_duration((double)(p->total - rows) / rate, d, sizeof d);
        snprintf(eta, sizeof eta, ", ETA %s", d);
    }
    if (p->tty) {
        char bar[31];
        int fill = known ? (int)(30.0 * (double)rows / (double)p->total) : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r\033[K[%s] %s, %.1f rows/s%s", known ? bar : "streaming", count, rate,
                eta);
        if (final) fputc('\n', stderr);
    } else {
        fprintf(stderr, "clipscore: %s, %.1f rows/s%s\n", count, rate, eta);
    }
}

void cs_progress_note(cs_progress *p, const char *fmt, ...) {
    if (!p->enabled) return;
    if (p->tty) fputs("\r\033[K", stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
