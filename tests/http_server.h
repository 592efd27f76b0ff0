/* http_server.h - a small HTTP/1.1 file server for the download tests: it
 * listens on 127.0.0.1 only (an ephemeral port), runs on its own thread,
 * serves a folder with GET and HEAD, byte ranges (206/416) and 404, and can
 * misbehave on request (cut the connection, ignore ranges, delay). In hub
 * mode it also answers like the Hugging Face hub: /api/models/ORG/NAME
 * [/revision/REV] lists ROOT/ORG/NAME with the SHA-256 of large ("LFS")
 * files, and /ORG/NAME/resolve/REV/FILE serves ROOT/ORG/NAME/FILE with
 * X-Linked-Etag headers.
 *
 * Leaves out: keep-alive (every response closes the connection, requests are
 * served one at a time), chunked encoding, TLS, request bodies.
 * The server stops by itself after opts.max_seconds. */
#ifndef CLIPSCORE_TEST_HTTP_SERVER_H
#define CLIPSCORE_TEST_HTTP_SERVER_H

/* The commit id the emulated hub reports for every repository. */
#define HTTP_HUB_COMMIT "0123456789abcdef0123456789abcdef01234567"

typedef struct http_server_opts {
    const char *root;        /* folder served (required) */
    long long cut_after;     /* > 0: send only this many body bytes, then close ... */
    int cut_times;           /* ... on this many responses (then serve normally) */
    int ignore_range;        /* answer Range requests with the whole file (200) */
    int delay_ms;            /* wait before each response */
    int hub;                 /* emulate the Hugging Face hub */
    const char *hub_bad_sha; /* a file name whose SHA-256 the hub misreports */
    int hub_no_lfs;          /* listing without "lfs" objects (clients must HEAD) */
    long long hub_lfs_min;   /* files this large are LFS files (0: 100000) */
    const char *fail_name;   /* requests for a file of this name get ... */
    int fail_status;         /* ... this status (e.g. 403, 500) */
    int max_seconds;         /* stop by itself after this long (0: 60) */
} http_server_opts;

typedef struct http_request {
    char method[8];
    char path[512];        /* percent-decoded, without the query */
    char query[128];       /* after '?', "" when none */
    long long range_start; /* first byte of a "Range: bytes=N-" header, -1: none */
    char auth[160];        /* Authorization header, "" when none */
} http_request;

typedef struct http_server http_server;

/* NULL on failure (the reason on stderr). */
http_server *http_server_start(const http_server_opts *o);
int http_server_port(const http_server *s);
/* Stops accepting, joins the thread; the request log stays readable. */
void http_server_stop(http_server *s);
/* Stops (if needed) and frees. */
void http_server_free(http_server *s);

/* The request log (the first 1024 requests). */
int http_server_nrequests(http_server *s);
int http_server_request(http_server *s, int i, http_request *out); /* 0 or -1 */
/* Requests with this method (NULL: any) and path (NULL: any). */
int http_server_count(http_server *s, const char *method, const char *path);

#endif
