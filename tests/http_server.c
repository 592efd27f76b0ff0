/* http_server.c - the test HTTP/1.1 server of http_server.h: one thread,
 * one connection at a time, loopback only, stops on request or after its
 * time limit. Leaves out everything a test does not need (keep-alive,
 * chunked bodies, TLS, methods other than GET and HEAD). */
#define _GNU_SOURCE
#include "http_server.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sha256.h"
#include "util.h"

#define MAX_LOG 1024

struct http_server {
    http_server_opts o;
    char root[1024];
    char bad_sha[256];
    char fail_name[256];
    int fd;
    int port;
    pthread_t thread;
    int started, joined;
    pthread_mutex_t mu; /* guards stop, cuts_left and the log */
    int stop;
    int cuts_left;
    http_request log[MAX_LOG];
    int nlog;
    double deadline;
};

static int stopping(http_server *s) {
    pthread_mutex_lock(&s->mu);
    int st = s->stop;
    pthread_mutex_unlock(&s->mu);
    return st || cs_now() > s->deadline;
}

static int send_all(int c, const void *p, size_t n) {
    const char *b = p;
    while (n > 0) {
        ssize_t w = send(c, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_simple(int c, int code, const char *reason, const char *type, const char *body,
                        const char *extra, int head) {
    char h[1024];
    size_t bl = strlen(body);
    int n = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason, type, bl, extra ? extra : "");
    if (send_all(c, h, (size_t)n) == 0 && !head) send_all(c, body, bl);
}

static void url_decode(const char *in, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < n && isxdigit((unsigned char)in[i + 1]) &&
            isxdigit((unsigned char)in[i + 2])) {
            char hex[3] = {in[i + 1], in[i + 2], 0};
            out[o++] = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
}

/* The hub's view of one file: LFS (with SHA-256) when large enough. */
typedef struct hub_file {
    long long size;
    int lfs;
    char sha[65];  /* as the hub reports it (wrong for hub_bad_sha) */
    char blob[41]; /* a stand-in for the git blob id */
} hub_file;

static int hub_describe(http_server *s, const char *path, const char *name, hub_file *h) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return -1;
    h->size = (long long)st.st_size;
    h->lfs = h->size >= (s->o.hub_lfs_min > 0 ? s->o.hub_lfs_min : 100000);
    if (cs_sha256_file(path, h->sha, NULL) != 0) return -1;
    /* Content-derived, so a changed file gets a new id as in git. */
    memcpy(h->blob, h->sha + 24, 40);
    h->blob[40] = '\0';
    if (s->bad_sha[0] && strcmp(name, s->bad_sha) == 0) h->sha[0] = h->sha[0] == '0' ? '1' : '0';
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* GET /api/models/ORG/NAME[/revision/REV]: the repository's file list. */
static void hub_listing(http_server *s, int c, const char *rest, int head) {
    char org[128], name[128];
    if (sscanf(rest, "%127[^/]/%127[^/]", org, name) != 2 || strstr(rest, "..")) {
        send_simple(c, 400, "Bad Request", "application/json", "{\"error\":\"bad repo\"}", NULL,
                    head);
        return;
    }
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s/%s", s->root, org, name);
    DIR *d = opendir(dir);
    if (!d) {
        send_simple(c, 404, "Not Found", "application/json", "{\"error\":\"Repository not found\"}",
                    NULL, head);
        return;
    }
    char *names[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256)
        if (de->d_name[0] != '.') names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    size_t cap = 1024 + (size_t)n * 512, len = 0;
    char *body = malloc(cap);
    if (!body) {
        for (int i = 0; i < n; i++) free(names[i]);
        return;
    }
    len += (size_t)snprintf(body + len, cap - len,
                            "{\"id\":\"%s/%s\",\"modelId\":\"%s/%s\",\"sha\":\"%s\",\"siblings\":[",
                            org, name, org, name, HTTP_HUB_COMMIT);
    int first = 1;
    for (int i = 0; i < n; i++) {
        char path[2560];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        hub_file h;
        if (names[i] && hub_describe(s, path, names[i], &h) == 0) {
            len += (size_t)snprintf(body + len, cap - len, "%s{\"rfilename\":\"%s\",\"size\":%lld",
                                    first ? "" : ",", names[i], h.size);
            len += (size_t)snprintf(body + len, cap - len, ",\"blobId\":\"%s\"", h.blob);
            if (h.lfs && !s->o.hub_no_lfs)
                len += (size_t)snprintf(body + len, cap - len,
                                        ",\"lfs\":{\"sha256\":\"%s\",\"size\":%lld,"
                                        "\"pointerSize\":134}",
                                        h.sha, h.size);
            len += (size_t)snprintf(body + len, cap - len, "}");
            first = 0;
        }
        free(names[i]);
    }
    snprintf(body + len, cap - len, "]}");
    send_simple(c, 200, "OK", "application/json", body, NULL, head);
    free(body);
}

static void serve_file(http_server *s, int c, const char *path, const char *extra, int head,
                       long long range_start, long long range_end) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        send_simple(c, 404, "Not Found", "text/plain", "not found\n", NULL, head);
        return;
    }
    long long size = (long long)st.st_size, from = 0, to = size - 1;
    int partial = range_start >= 0 && !s->o.ignore_range;
    char h[2048];
    int hl;
    if (partial && range_start >= size) {
        char cr[64];
        snprintf(cr, sizeof cr, "Content-Range: bytes */%lld\r\n", size);
        send_simple(c, 416, "Range Not Satisfiable", "text/plain", "", cr, head);
        close(fd);
        return;
    }
    if (partial) {
        from = range_start;
        if (range_end >= from && range_end < size) to = range_end;
        hl = snprintf(h, sizeof h,
                      "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n"
                      "Content-Length: %lld\r\nContent-Range: bytes %lld-%lld/%lld\r\n"
                      "Accept-Ranges: bytes\r\n%sConnection: close\r\n\r\n",
                      to - from + 1, from, to, size, extra ? extra : "");
    } else {
        hl =
            snprintf(h, sizeof h,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %lld\r\n%s%sConnection: close\r\n\r\n",
                     size, s->o.ignore_range ? "" : "Accept-Ranges: bytes\r\n", extra ? extra : "");
    }
    long long body = to - from + 1, limit = body;
    if (!head && s->o.cut_after > 0 && body > s->o.cut_after) {
        pthread_mutex_lock(&s->mu);
        if (s->cuts_left > 0) {
            s->cuts_left--;
            limit = s->o.cut_after;
        }
        pthread_mutex_unlock(&s->mu);
    }
    if (send_all(c, h, (size_t)hl) != 0 || head) {
        close(fd);
        return;
    }
    char buf[16384];
    long long sent = 0;
    while (sent < limit) {
        size_t want =
            (size_t)(limit - sent < (long long)sizeof buf ? limit - sent : (long long)sizeof buf);
        ssize_t r = pread(fd, buf, want, (off_t)(from + sent));
        if (r <= 0 || send_all(c, buf, (size_t)r) != 0) break;
        sent += r;
    }
    close(fd);
}

static void handle(http_server *s, int c) {
    char req[16384];
    size_t n = 0;
    while (n + 1 < sizeof req) {
        ssize_t r = recv(c, req + n, sizeof req - 1 - n, 0);
        if (r <= 0) return;
        n += (size_t)r;
        req[n] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    req[n] = '\0';
    http_request rq;
    memset(&rq, 0, sizeof rq);
    rq.range_start = -1;
    long long range_end = -1;
    char target[2048];
    if (sscanf(req, "%7s %2047s", rq.method, target) != 2) return;
    size_t tl = strcspn(target, "?");
    if (target[tl] == '?') snprintf(rq.query, sizeof rq.query, "%s", target + tl + 1);
    url_decode(target, tl, rq.path, sizeof rq.path);
    for (char *line = strstr(req, "\r\n"); line && line[2] && line[2] != '\r';
         line = strstr(line + 2, "\r\n")) {
        char *h = line + 2;
        if (strncasecmp(h, "Range:", 6) == 0) {
            long long a, b;
            int k = sscanf(h + 6, " bytes=%lld-%lld", &a, &b);
            if (k >= 1) rq.range_start = a;
            if (k == 2) range_end = b;
        } else if (strncasecmp(h, "Authorization:", 14) == 0) {
            const char *v = h + 14;
            while (*v == ' ') v++;
            snprintf(rq.auth, sizeof rq.auth, "%.*s", (int)strcspn(v, "\r\n"), v);
        }
    }
    pthread_mutex_lock(&s->mu);
    if (s->nlog < MAX_LOG) s->log[s->nlog++] = rq;
    pthread_mutex_unlock(&s->mu);

    int head = strcmp(rq.method, "HEAD") == 0;
    if (!head && strcmp(rq.method, "GET") != 0) {
        send_simple(c, 405, "Method Not Allowed", "text/plain", "", NULL, 0);
        return;
    }
    if (s->o.delay_ms > 0) {
        struct timespec ts = {s->o.delay_ms / 1000, (long)(s->o.delay_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rq.path[0] != '/' || strstr(rq.path, "..")) {
        send_simple(c, 400, "Bad Request", "text/plain", "bad path\n", NULL, head);
        return;
    }
    const char *base = strrchr(rq.path, '/') + 1;
    if (s->fail_name[0] && strcmp(base, s->fail_name) == 0) {
        char st[64];
        snprintf(st, sizeof st, "status %d\n", s->o.fail_status);
        send_simple(c, s->o.fail_status, "Failure", "text/plain", st, NULL, head);
        return;
    }
    char path[2048], extra[512] = "";
    if (s->o.hub && strncmp(rq.path, "/api/models/", 12) == 0) {
        hub_listing(s, c, rq.path + 12, head);
        return;
    }
    char org[128], name[128], rev[128], file[256];
    if (s->o.hub &&
        sscanf(rq.path, "/%127[^/]/%127[^/]/resolve/%127[^/]/%255s", org, name, rev, file) == 4) {
        snprintf(path, sizeof path, "%s/%s/%s/%s", s->root, org, name, file);
        hub_file h;
        if (hub_describe(s, path, file, &h) == 0) {
            if (h.lfs)
                snprintf(extra, sizeof extra,
                         "X-Repo-Commit: %s\r\nETag: \"%s\"\r\nX-Linked-Etag: \"%s\"\r\n"
                         "X-Linked-Size: %lld\r\n",
                         HTTP_HUB_COMMIT, h.sha, h.sha, h.size);
            else
                snprintf(extra, sizeof extra, "X-Repo-Commit: %s\r\nETag: \"%s\"\r\n",
                         HTTP_HUB_COMMIT, h.blob);
        }
    } else {
        snprintf(path, sizeof path, "%s%s", s->root, rq.path);
    }
    serve_file(s, c, path, extra, head, rq.range_start, range_end);
}

static void *serve(void *arg) {
    http_server *s = arg;
    while (!stopping(s)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        /* A silent or stuck client cannot hold the server for long. */
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        handle(s, c);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

http_server *http_server_start(const http_server_opts *o) {
    if (!o || !o->root) {
        fprintf(stderr, "http_server_start: no root folder\n");
        return NULL;
    }
    http_server *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->o = *o;
    snprintf(s->root, sizeof s->root, "%s", o->root);
    if (o->hub_bad_sha) snprintf(s->bad_sha, sizeof s->bad_sha, "%s", o->hub_bad_sha);
    if (o->fail_name) snprintf(s->fail_name, sizeof s->fail_name, "%s", o->fail_name);
    s->cuts_left = o->cut_times;
    s->deadline = cs_now() + (o->max_seconds > 0 ? o->max_seconds : 60);
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* never any other address */
    a.sin_port = 0;
    socklen_t al = sizeof a;
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0) {
        fprintf(stderr, "http_server_start: %s\n", strerror(errno));
        if (s->fd >= 0) close(s->fd);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    s->port = ntohs(a.sin_port);
    if (pthread_create(&s->thread, NULL, serve, s) != 0) {
        fprintf(stderr, "http_server_start: cannot start the thread\n");
        close(s->fd);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return NULL;
    }
    s->started = 1;
    return s;
}

int http_server_port(const http_server *s) {
    return s->port;
}

void http_server_stop(http_server *s) {
    if (!s || s->joined) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    close(s->fd);
    s->fd = -1;
    s->joined = 1;
}

void http_server_free(http_server *s) {
    if (!s) return;
    http_server_stop(s);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

int http_server_nrequests(http_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->nlog;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int http_server_request(http_server *s, int i, http_request *out) {
    int rc = -1;
    pthread_mutex_lock(&s->mu);
    if (i >= 0 && i < s->nlog) {
        *out = s->log[i];
        rc = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int http_server_count(http_server *s, const char *method, const char *path) {
    int n = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nlog; i++)
        if ((!method || strcmp(s->log[i].method, method) == 0) &&
            (!path || strcmp(s->log[i].path, path) == 0))
            n++;
    pthread_mutex_unlock(&s->mu);
    return n;
}
