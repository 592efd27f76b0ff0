/* fetch.c - resolving model names to local folders and downloading what is
 * missing: built-in OpenAI names, registry files, hf: hub repositories,
 * local paths; HTTP(S) with libcurl (redirects, resume, retries, progress),
 * SHA-256 verification, an flock'ed cache with atomic renames, mirrors and
 * offline mode.
 *
 * Leaves out: what the files contain (the loader decides the layout from the
 * files), the command line, and pruning old cache entries.
 *
 * Cache layout: <cache>/<Name>/ for built-in and registry names ("ViT-B/32"
 * -> "ViT-B-32"), <cache>/hf/<ORG>--<NAME>/<REVISION>/ for hub repositories.
 * Each folder holds the model files, a .lock file for flock, partial
 * downloads as <file>.part, and .clipscore-manifest.json recording what was
 * verified (and, for hf:, which files make up the model). */
#define _GNU_SOURCE
#include "fetch.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include "sha256.h"

#define MANIFEST_NAME ".clipscore-manifest.json"
#define LOCK_NAME ".lock"
#define HF_DEFAULT_ENDPOINT "https://huggingface.co"
#define MAX_JSON_BYTES (32u << 20)

#define OPENAI_URL "https://openaipublic.azureedge.net/clip/models/"
#define BPE_URL                                                                                    \
    "https://raw.githubusercontent.com/openai/CLIP/d05afc436d78f1c48dc0dbf8e5980a9d471f35f6/"      \
    "clip/bpe_simple_vocab_16e6.txt.gz"
#define BPE_FILE "bpe_simple_vocab_16e6.txt.gz"
#define BPE_SHA "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"

/* OpenAI's releases; the SHA-256 is the path component before the file name.
 * Sizes are approximate, for `clipscore models` before a download. */
static const struct builtin {
    const char *name, *file, *sha;
    double approx_mib;
} builtins[] = {
    {"ViT-B/32", "ViT-B-32.pt", "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af",
     338},
    {"ViT-B/16", "ViT-B-16.pt", "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f",
     335},
    {"ViT-L/14", "ViT-L-14.pt", "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836",
     890},
    {"ViT-L/14@336px", "ViT-L-14-336px.pt",
     "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02", 891},
    /* the ResNets (input 224, 224, 288, 384 and 448 px) */
    {"RN50", "RN50.pt", "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", 244},
    {"RN101", "RN101.pt", "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", 278},
    {"RN50x4", "RN50x4.pt", "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd",
     402},
    {"RN50x16", "RN50x16.pt", "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa",
     630},
    {"RN50x64", "RN50x64.pt", "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c",
     1260},
};
#define N_BUILTINS (sizeof builtins / sizeof builtins[0])

const char *cs_default_model_name(void) {
    return "ViT-B/32";
}

static int env_true(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

cs_fetch_opts cs_fetch_default_opts(void) {
    cs_fetch_opts o;
    o.offline = env_true("CLIPSCORE_OFFLINE");
    o.progress = 1;
    o.cache_dir = NULL;
    return o;
}

int cs_fetch_cache_dir(const cs_fetch_opts *o, char **dir, cs_error *e) {
    *dir = NULL;
    const char *v;
    if (o && o->cache_dir && *o->cache_dir)
        *dir = cs_strdup(o->cache_dir, e);
    else if ((v = env_nonempty("CLIPSCORE_CACHE")))
        *dir = cs_strdup(v, e);
    else if ((v = env_nonempty("XDG_CACHE_HOME")))
        *dir = cs_asprintf(e, "%s/clipscore", v);
    else if ((v = env_nonempty("HOME")))
        *dir = cs_asprintf(e, "%s/.cache/clipscore", v);
    else
        return cs_fail(e, CLIPSCORE_EARG,
                       "no cache folder: set CLIPSCORE_CACHE (HOME and XDG_CACHE_HOME are unset)");
    return *dir ? 0 : CLIPSCORE_ENOMEM;
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

static void lower(char *s) {
    for (; *s; s++) *s = (char)tolower((unsigned char)*s);
}

/* A name usable as one path component: [A-Za-z0-9._-], not hidden. */
static int safe_component(const char *s) {
    if (!*s || s[0] == '.') return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) return 0;
    return 1;
}

/* Folder name for a model name: "ViT-L/14@336px" -> "ViT-L-14-336px". */
static char *folder_name(const char *name, cs_error *e) {
    char *s = cs_asprintf(e, "%s%s", name[0] == '.' ? "_" : "", name);
    if (!s) return NULL;
    for (char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p)) *p = '-';
    /* "hf" is where hub repositories live. */
    if (strcmp(s, "hf") == 0) {
        free(s);
        s = cs_strdup("hf_", e);
    }
    return s;
}

static char *url_escape(const char *s, cs_error *e) {
    char *out = cs_malloc(strlen(s) * 3 + 1, 1, e);
    if (!out) return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || strchr("-._~", *p))
            *o++ = (char)*p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return out;
}

char *cs_fetch_mirror_url(const char *url, const char *mirror, cs_error *e) {
    if (strncmp(mirror, "http://", 7) != 0 && strncmp(mirror, "https://", 8) != 0) {
        cs_fail(e, CLIPSCORE_EARG, "mirror %s: must start with http:// or https://", mirror);
        return NULL;
    }
    const char *sep = strstr(url, "://");
    if (!sep) {
        cs_fail(e, CLIPSCORE_EARG, "not an absolute URL: %s", url);
        return NULL;
    }
    const char *path = sep + 3 + strcspn(sep + 3, "/?#");
    size_t ml = strlen(mirror);
    while (ml > 0 && mirror[ml - 1] == '/') ml--;
    return cs_asprintf(e, "%.*s%s%s", (int)ml, mirror, *path == '/' ? "" : "/", path);
}

/* The URL actually requested: CLIPSCORE_MIRROR applied. Caller frees. */
static char *effective_url(const char *url, cs_error *e) {
    const char *m = env_nonempty("CLIPSCORE_MIRROR");
    return m ? cs_fetch_mirror_url(url, m, e) : cs_strdup(url, e);
}

static void human_size(double bytes, char *buf, size_t n) {
    if (bytes < 1024.0 * 1024.0)
        snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
    else if (bytes < 1024.0 * 1024.0 * 1024.0)
        snprintf(buf, n, "%.1f MiB", bytes / 1048576.0);
    else
        snprintf(buf, n, "%.2f GiB", bytes / 1073741824.0);
}

/* ------------------------------------------------------------------ HTTP */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* The SHA-256 of a .part as it is written, so a download is verified
 * without being read back (605 MB: 0.5 s even through libcrypto). Only a
 * prefix this process did not write (a .part left by an earlier run) is
 * read, once. */
typedef struct part_hash {
    cs_sha256 sha;
    long long bytes; /* file bytes [0, bytes) are in sha */
} part_hash;

/* Bytes of .part files read back to hash them (tests check that only the
 * prefix of a resumed file ever is). */
static _Atomic long long bytes_read_back;

long long cs_fetch_bytes_read_back(void) {
    return atomic_load(&bytes_read_back);
}

/* Starts h over with the file's first `size` bytes (0: empty). */
static int part_hash_reset(part_hash *h, int fd, long long size, const char *part, cs_error *e) {
    cs_sha256_free(&h->sha);
    h->bytes = 0;
    int rc = cs_sha256_init(&h->sha, e);
    unsigned char *buf = size > 0 && !rc ? cs_malloc((size_t)1 << 20, 1, e) : NULL;
    if (size > 0 && !rc && !buf) rc = CLIPSCORE_ENOMEM;
    while (!rc && h->bytes < size) {
        long long want = size - h->bytes < (1 << 20) ? size - h->bytes : (1 << 20);
        ssize_t got = pread(fd, buf, (size_t)want, (off_t)h->bytes);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", part, got < 0 ? strerror(errno) : "shrank");
            break;
        }
        cs_sha256_update(&h->sha, buf, (size_t)got);
        h->bytes += got;
        atomic_fetch_add(&bytes_read_back, (long long)got);
    }
    free(buf);
    return rc;
}

/* One request's state, shared with the libcurl callbacks. */
typedef struct xfer {
    CURL *curl;
    int fd;                 /* body goes to this file (at `offset`); -1: into buf */
    long long offset;       /* bytes already in the file when the request was sent */
    long long got;          /* body bytes received by this request */
    int decided;            /* the first body byte chose append or restart */
    int restarted;          /* the server ignored the range: the file was truncated */
    int bad_range;          /* a 206 that starts elsewhere than asked */
    int io_errno;           /* a failed write to fd */
    struct part_hash *hash; /* NULL, or the running SHA-256 of the file at fd */
    char *buf;              /* memory body, NUL-terminated */
    size_t len, cap, max;
    long long cr_start; /* Content-Range start of the current response, -1: none */
    char etag[128];     /* X-Linked-Etag (preferred) or ETag, unquoted */
    int linked_etag;
    /* progress */
    const char *label;
    int progress, tty;
    double t0, last;
    int shown;
} xfer;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = sz * n;
    if (x->fd < 0) {
        if (x->len + len + 1 > x->max) return 0;
        if (x->len + len + 1 > x->cap) {
            size_t cap = x->cap ? x->cap : 65536;
            while (cap < x->len + len + 1) cap *= 2;
            char *nb = realloc(x->buf, cap);
            if (!nb) return 0;
            x->buf = nb;
            x->cap = cap;
        }
        memcpy(x->buf + x->len, p, len);
        x->len += len;
        x->buf[x->len] = '\0';
        x->got += (long long)len;
        return len;
    }
    if (!x->decided) {
        long code = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
        if (x->offset > 0 && code == 206 && x->cr_start != x->offset) {
            x->bad_range = 1;
            return 0;
        }
        if (x->offset > 0 && code != 206) {
            /* The server ignored the Range header: start the file over. */
            if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0) {
                x->io_errno = errno;
                return 0;
            }
            x->offset = 0;
            x->restarted = 1;
            if (x->hash && part_hash_reset(x->hash, x->fd, 0, "", NULL) != 0) {
                x->io_errno = ENOMEM;
                return 0;
            }
        }
        x->decided = 1;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(x->fd, p + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            x->io_errno = errno;
            return 0;
        }
        done += (size_t)w;
    }
    if (x->hash) {
        cs_sha256_update(&x->hash->sha, p, len);
        x->hash->bytes += (long long)len;
    }
    x->got += (long long)len;
    return len;
}

/* Copies the value of header `name` (case-insensitive) into val. */
static int header_value(const char *p, size_t len, const char *name, char *val, size_t cap) {
    size_t nl = strlen(name);
    if (len <= nl || p[nl] != ':' || strncasecmp(p, name, nl) != 0) return 0;
    const char *v = p + nl + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(val, v, n);
    val[n] = '\0';
    return 1;
}

static void unquote_etag(char *s) {
    char *p = s;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    if (*p == '"') p++;
    size_t n = strlen(p);
    if (n && p[n - 1] == '"') n--;
    memmove(s, p, n);
    s[n] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = sz * n;
    char val[128];
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a redirect): forget the previous headers. */
        x->cr_start = -1;
        x->etag[0] = '\0';
        x->linked_etag = 0;
    } else if (header_value(p, len, "Content-Range", val, sizeof val)) {
        long long a;
        if (sscanf(val, "bytes %lld-", &a) == 1) x->cr_start = a;
    } else if (header_value(p, len, "X-Linked-Etag", val, sizeof val)) {
        snprintf(x->etag, sizeof x->etag, "%s", val);
        unquote_etag(x->etag);
        x->linked_etag = 1;
    } else if (!x->linked_etag && header_value(p, len, "ETag", val, sizeof val)) {
        snprintf(x->etag, sizeof x->etag, "%s", val);
        unquote_etag(x->etag);
    }
    return len;
}

static void progress_draw(xfer *x, long long total, long long done, int final) {
    double now = cs_now(), dt = now - x->t0;
    double rate = dt > (final ? 0.001 : 0.05) ? (double)(done - x->offset) / dt : 0;
    char sdone[32], stotal[32], srate[32], eta[32] = "";
    human_size((double)done, sdone, sizeof sdone);
    human_size(total > 0 ? (double)total : 0, stotal, sizeof stotal);
    human_size(rate, srate, sizeof srate);
    if (total > 0 && rate > 0 && !final) {
        long s = (long)((double)(total - done) / rate);
        snprintf(eta, sizeof eta, "ETA %ld:%02ld", s / 60, s % 60);
    } else if (final) {
        snprintf(eta, sizeof eta, "%.1f s", dt);
    }
    int pct = total > 0 ? (int)(100.0 * (double)done / (double)total) : -1;
    if (x->tty) {
        char bar[31];
        int fill = pct >= 0 ? pct * 30 / 100 : 0;
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
        bar[30] = '\0';
        fprintf(stderr, "\r%-28.28s [%s] %3d%% %s / %s  %s/s  %-10s%s", x->label, bar,
                pct >= 0 ? pct : 0, sdone, total > 0 ? stotal : "?", srate, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "%s: %s of %s (%d%%), %s/s, %s\n", x->label, sdone,
                total > 0 ? stotal : "?", pct >= 0 ? pct : 0, srate, eta);
    }
    fflush(stderr);
    x->shown = 1;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ut,
                       curl_off_t un) {
    (void)ut;
    (void)un;
    xfer *x = ud;
    double now = cs_now();
    /* A bar redraws often; plain lines (logs, pipes) only every 10 s. */
    if (now - x->last < (x->tty ? 0.2 : 10.0)) return 0;
    x->last = now;
    long long base = x->offset;
    progress_draw(x, dltotal > 0 ? base + (long long)dltotal : -1, base + (long long)dlnow, 0);
    return 0;
}

static void progress_end(xfer *x, CURLcode cc) {
    if (!x->progress || x->fd < 0) return;
    if (cc == CURLE_OK) {
        curl_off_t total = 0;
        curl_easy_getinfo(x->curl, CURLINFO_SIZE_DOWNLOAD_T, &total);
        long long done = x->offset + (long long)total;
        progress_draw(x, done, done, 1);
    } else if (x->shown && x->tty) {
        fputc('\n', stderr);
    }
}

/* One HTTP request. range_from > 0 sends "Range: bytes=N-". head: a HEAD
 * request whose own headers are wanted, so redirects are not followed. */
static CURLcode perform(xfer *x, const char *url, int head, int hub_auth, long *code,
                        char errbuf[CURL_ERROR_SIZE]) {
    *code = 0;
    errbuf[0] = '\0';
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) return curl_init_rc;
    CURL *c = curl_easy_init();
    if (!c) return CURLE_OUT_OF_MEMORY;
    x->curl = c;
    x->cr_start = -1;
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    const char *token = env_nonempty("HF_TOKEN");
    if (hub_auth && token) {
        /* libcurl does not pass this header on to other hosts on redirects. */
        auth = cs_asprintf(NULL, "Authorization: Bearer %s", token);
        if (auth) hdrs = curl_slist_append(hdrs, auth);
    }
    char range[48];
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "clipscore/" CLIPSCORE_VERSION);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, head ? 0L : 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A stalled transfer (under 1 kB/s for a minute) is aborted and retried. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    if (x->fd < 0) curl_easy_setopt(c, CURLOPT_TIMEOUT, 300L);
    if (head) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (x->fd >= 0 && x->offset > 0) {
        snprintf(range, sizeof range, "%lld-", x->offset);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    if (hdrs) curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    if (x->progress && x->fd >= 0) {
        x->t0 = x->last = cs_now();
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    }
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, code);
    progress_end(x, cc);
    curl_easy_cleanup(c);
    x->curl = NULL;
    curl_slist_free_all(hdrs);
    free(auth);
    return cc;
}

static int transient_http(long code) {
    return code == 408 || code == 429 || code >= 500;
}

static int transient_curl(CURLcode cc) {
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* The one-line message for a failed request. */
static int request_error(cs_error *e, CURLcode cc, long code, const char *url, const char *errbuf,
                         int hub) {
    if (cc == CURLE_HTTP_RETURNED_ERROR) {
        if (code == 404) return cs_fail(e, CLIPSCORE_ENETWORK, "not found (HTTP 404): %s", url);
        if (code == 401 || code == 403)
            return cs_fail(e, CLIPSCORE_ENETWORK, "access denied (HTTP %ld): %s%s", code, url,
                           !hub                 ? ""
                           : getenv("HF_TOKEN") ? " (is HF_TOKEN allowed to read it?)"
                                                : " (gated or private? set HF_TOKEN)");
        return cs_fail(e, CLIPSCORE_ENETWORK, "download failed (HTTP %ld): %s", code, url);
    }
    return cs_fail(e, CLIPSCORE_ENETWORK, "download failed: %s: %s", url,
                   errbuf && errbuf[0] ? errbuf : curl_easy_strerror(cc));
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Retry policy: up to 3 attempts in a row that get no data (1 s, then 3 s
 * apart); an attempt that got data resets the count (a resumed download
 * keeps progressing), bounded by 20 attempts in all. */
#define MAX_BARREN 3
#define MAX_ATTEMPTS 20
static double retry_delay(int barren) {
    return barren == 0 ? 0.2 : barren == 1 ? 1.0 : 3.0;
}

/* GET url into a malloc'd NUL-terminated buffer (caller frees). */
static int http_get_mem(const char *url, int hub, char **out, cs_error *e) {
    *out = NULL;
    int barren = 0;
    for (int attempt = 1;; attempt++) {
        xfer x = {0};
        x.fd = -1;
        x.max = MAX_JSON_BYTES;
        long code;
        char errbuf[CURL_ERROR_SIZE];
        CURLcode cc = perform(&x, url, 0, hub, &code, errbuf);
        if (cc == CURLE_OK) {
            if (!x.buf) x.buf = cs_strdup("", e);
            *out = x.buf;
            return x.buf ? 0 : CLIPSCORE_ENOMEM;
        }
        free(x.buf);
        if (cc == CURLE_WRITE_ERROR)
            return cs_fail(e, CLIPSCORE_ENETWORK, "answer too large (over %u bytes): %s",
                           MAX_JSON_BYTES, url);
        int again = cc == CURLE_HTTP_RETURNED_ERROR ? transient_http(code) : transient_curl(cc);
        barren = x.got > 0 ? 0 : barren + 1;
        if (!again || barren >= MAX_BARREN || attempt >= MAX_ATTEMPTS)
            return request_error(e, cc, code, url, errbuf, hub);
        sleep_s(retry_delay(barren));
    }
}

/* HEAD url: the hub's X-Linked-Etag (or ETag) of the resolve URL. */
static int http_head_etag(const char *url, int hub, char *etag, size_t cap, cs_error *e) {
    int barren = 0;
    for (int attempt = 1;; attempt++) {
        xfer x = {0};
        x.fd = -1;
        x.max = 1;
        long code;
        char errbuf[CURL_ERROR_SIZE];
        CURLcode cc = perform(&x, url, 1, hub, &code, errbuf);
        free(x.buf);
        if (cc == CURLE_OK) {
            snprintf(etag, cap, "%s", x.etag);
            return 0;
        }
        int again = cc == CURLE_HTTP_RETURNED_ERROR ? transient_http(code) : transient_curl(cc);
        barren++;
        if (!again || barren >= MAX_BARREN || attempt >= MAX_ATTEMPTS)
            return request_error(e, cc, code, url, errbuf, hub);
        sleep_s(retry_delay(barren));
    }
}

/* Downloads url into `part`, resuming from what it already holds; retries
 * transient failures. On failure the .part stays for a later resume. When
 * hex is not NULL it receives the SHA-256 of the whole .part, hashed as it
 * was written. */
static int transfer_to_part(const char *url, const char *part, const char *label, int progress,
                            int hub, char hex[65], cs_error *e) {
    int fd = open(part, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return cs_fail(e, CLIPSCORE_EIO, "cannot write %s: %s", part, strerror(errno));
    int barren = 0, rc = 0;
    part_hash hash = {{0}, -1};
    for (int attempt = 1;; attempt++) {
        struct stat st;
        if (fstat(fd, &st) != 0 || lseek(fd, st.st_size, SEEK_SET) < 0) {
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", part, strerror(errno));
            break;
        }
        /* What this process wrote is hashed already; a prefix from an
         * earlier run, or a file truncated to start over, is not. */
        if (hex && hash.bytes != (long long)st.st_size &&
            (rc = part_hash_reset(&hash, fd, (long long)st.st_size, part, e)))
            break;
        xfer x = {0};
        x.fd = fd;
        x.hash = hex ? &hash : NULL;
        x.offset = (long long)st.st_size;
        x.label = label;
        x.progress = progress;
        x.tty = progress && isatty(STDERR_FILENO);
        long code;
        char errbuf[CURL_ERROR_SIZE];
        if (progress && x.offset > 0) {
            char s[32];
            human_size((double)x.offset, s, sizeof s);
            fprintf(stderr, "%s: resuming after %s\n", label, s);
        }
        CURLcode cc = perform(&x, url, 0, hub, &code, errbuf);
        if (progress && x.restarted)
            fprintf(stderr, "%s: the server ignored the range; downloaded from the start\n", label);
        if (cc == CURLE_OK) {
            if (fsync(fd) != 0 && errno != EINVAL)
                rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", part, strerror(errno));
            break;
        }
        if (x.io_errno) {
            rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", part, strerror(x.io_errno));
            break;
        }
        int again;
        if (x.bad_range || (cc == CURLE_HTTP_RETURNED_ERROR && code == 416 && x.offset > 0)) {
            /* The partial file does not fit what the server has: start over. */
            if (ftruncate(fd, 0) != 0) {
                rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", part, strerror(errno));
                break;
            }
            again = 1;
            x.got = 1; /* not a barren attempt: retry at once */
        } else if (cc == CURLE_HTTP_RETURNED_ERROR) {
            again = transient_http(code);
        } else {
            again = transient_curl(cc);
        }
        barren = x.got > 0 ? 0 : barren + 1;
        if (!again || barren >= MAX_BARREN || attempt >= MAX_ATTEMPTS) {
            rc = request_error(e, cc, code, url, errbuf, hub);
            break;
        }
        if (progress) {
            char why[64];
            snprintf(why, sizeof why, "HTTP %ld", code);
            fprintf(stderr, "%s: %s; retrying\n", label,
                    cc == CURLE_HTTP_RETURNED_ERROR ? why
                    : errbuf[0]                     ? errbuf
                                                    : curl_easy_strerror(cc));
        }
        sleep_s(retry_delay(barren));
    }
    if (close(fd) != 0 && rc == 0)
        rc = cs_fail(e, CLIPSCORE_EIO, "writing %s failed: %s", part, strerror(errno));
    unsigned char digest[32];
    if (hex && !rc && !(rc = cs_sha256_final(&hash.sha, digest, e))) cs_sha256_hex(digest, hex);
    cs_sha256_free(&hash.sha);
    return rc;
}

/* Fetches url to dest through dest.part: verified (SHA-256 when sha is not
 * empty, size when size >= 0) before the atomic rename into place; a bad
 * download is deleted, never cached. *drop (when set) is unlinked just
 * before the rename and cleared. */
static int download(const char *raw_url, const char *dest, const char *sha, long long size,
                    int progress, int hub, const char **drop, cs_error *e) {
    char *url = effective_url(raw_url, e);
    char *part = url ? cs_asprintf(e, "%s.part", dest) : NULL;
    if (!part) {
        free(url);
        return e ? e->code : CLIPSCORE_ENOMEM;
    }
    const char *label = strrchr(dest, '/') ? strrchr(dest, '/') + 1 : dest;
    struct stat st;
    /* A .part left by an earlier run may belong to an older file version:
     * if the result does not verify, it gets one clean retry. */
    int clean_tries = stat(part, &st) == 0 && st.st_size > 0 ? 2 : 1;
    int rc;
    for (;;) {
        char hex[65] = "";
        rc = transfer_to_part(url, part, label, progress, hub, sha && sha[0] ? hex : NULL, e);
        if (rc) {
            /* Keep what arrived for a resume, but not an empty file. */
            if (stat(part, &st) == 0 && st.st_size == 0) unlink(part);
            break;
        }
        long long have = stat(part, &st) == 0 ? (long long)st.st_size : -1;
        int bad_size = size >= 0 && have != size;
        if (bad_size || (hex[0] && strcmp(hex, sha) != 0)) {
            unlink(part);
            if (--clean_tries > 0) {
                if (progress) fprintf(stderr, "%s: did not verify; downloading again\n", label);
                continue;
            }
            if (bad_size)
                rc = cs_fail(e, CLIPSCORE_ECHECKSUM,
                             "size mismatch for %s: got %lld bytes, expected %lld (nothing cached)",
                             url, have, size);
            else
                rc =
                    cs_fail(e, CLIPSCORE_ECHECKSUM,
                            "checksum mismatch for %s: expected sha256 %s, got %s (nothing cached)",
                            url, sha, hex);
            break;
        }
        if (*drop) {
            unlink(*drop);
            *drop = NULL;
        }
        if (rename(part, dest) != 0) {
            rc = cs_fail(e, CLIPSCORE_EIO, "cannot move %s into place: %s", dest, strerror(errno));
            unlink(part);
        }
        break;
    }
    free(url);
    free(part);
    return rc;
}

/* ---------------------------------------------------------------- models */

typedef struct mfile {
    char *name;     /* file name inside the model folder */
    char *url;      /* before CLIPSCORE_MIRROR */
    char sha[65];   /* expected SHA-256, "" when the source publishes none */
    char blob[48];  /* hub git blob id of small files, "" otherwise */
    long long size; /* expected size, -1 unknown */
} mfile;

typedef struct model {
    char *spec;   /* the name as given */
    char *folder; /* cache folder */
    mfile *files;
    int n, cap;
    int hf;
    char *commit;      /* hub commit the files come from (hf only) */
    double approx_mib; /* expected download of built-ins, 0: unknown */
    int registry;      /* defined by the registry file */
} model;

static void model_clear_files(model *m);
static void model_free(model *m) {
    model_clear_files(m);
    free(m->files);
    free(m->spec);
    free(m->folder);
    memset(m, 0, sizeof *m);
}

static void model_clear_files(model *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->files[i].name);
        free(m->files[i].url);
    }
    m->n = 0;
    free(m->commit);
    m->commit = NULL;
}

static int model_add(model *m, const char *name, const char *url, const char *sha, const char *blob,
                     long long size, cs_error *e) {
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        mfile *nf = realloc(m->files, (size_t)cap * sizeof *nf);
        if (!nf) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory");
        m->files = nf;
        m->cap = cap;
    }
    mfile *f = &m->files[m->n];
    memset(f, 0, sizeof *f);
    f->name = cs_strdup(name, e);
    f->url = url ? cs_strdup(url, e) : NULL;
    if (!f->name || (url && !f->url)) {
        free(f->name);
        free(f->url);
        return CLIPSCORE_ENOMEM;
    }
    snprintf(f->sha, sizeof f->sha, "%s", sha ? sha : "");
    lower(f->sha);
    snprintf(f->blob, sizeof f->blob, "%s", blob ? blob : "");
    f->size = size;
    m->n++;
    return 0;
}

static int model_init(model *m, const char *spec, const char *cache, const char *rel, cs_error *e) {
    memset(m, 0, sizeof *m);
    m->spec = cs_strdup(spec, e);
    m->folder = m->spec ? cs_path_join(cache, rel, e) : NULL;
    return m->folder ? 0 : CLIPSCORE_ENOMEM;
}

/* Loads CLIPSCORE_REGISTRY; *reg stays NULL when it is unset. */
static int registry_load(cJSON **reg, const char **path, cs_error *e) {
    *reg = NULL;
    *path = env_nonempty("CLIPSCORE_REGISTRY");
    if (!*path) return 0;
    char *text;
    int rc = cs_read_file(*path, MAX_JSON_BYTES, &text, NULL, e);
    if (rc) return cs_fail_prefix(e, "model registry (CLIPSCORE_REGISTRY)");
    *reg = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(*reg)) {
        cJSON_Delete(*reg);
        *reg = NULL;
        return cs_fail(e, CLIPSCORE_EFORMAT, "model registry %s: not a JSON object", *path);
    }
    return 0;
}

static int model_from_registry(const cJSON *entry, const char *name, const char *regpath,
                               const char *cache, model *m, cs_error *e) {
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(entry, "files");
    if (!cJSON_IsObject(files) || !files->child)
        return cs_fail(e, CLIPSCORE_EFORMAT, "model registry %s: \"%s\" needs a \"files\" object",
                       regpath, name);
    char *rel = folder_name(name, e);
    if (!rel) return CLIPSCORE_ENOMEM;
    int rc = model_init(m, name, cache, rel, e);
    free(rel);
    m->registry = 1;
    for (const cJSON *f = files->child; f && rc == 0; f = f->next) {
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(f, "url");
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(f, "sha256");
        if (!f->string || !safe_component(f->string))
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "model registry %s: \"%s\": file name \"%s\" must be a plain name",
                         regpath, name, f->string ? f->string : "");
        else if (!cJSON_IsString(url) || (strncmp(url->valuestring, "http://", 7) != 0 &&
                                          strncmp(url->valuestring, "https://", 8) != 0))
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "model registry %s: \"%s\": file %s needs an http(s) \"url\"", regpath,
                         name, f->string);
        else if (!cJSON_IsString(sha) || !is_hex(sha->valuestring, 64))
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "model registry %s: \"%s\": file %s needs a \"sha256\" of 64 hex digits",
                         regpath, name, f->string);
        else
            rc = model_add(m, f->string, url->valuestring, sha->valuestring, NULL, -1, e);
    }
    if (rc) model_free(m);
    return rc;
}

static int model_from_builtin(const struct builtin *b, const char *cache, model *m, cs_error *e) {
    char *rel = folder_name(b->name, e);
    if (!rel) return CLIPSCORE_ENOMEM;
    int rc = model_init(m, b->name, cache, rel, e);
    free(rel);
    char *url = rc ? NULL : cs_asprintf(e, OPENAI_URL "%s/%s", b->sha, b->file);
    if (!rc && !url) rc = CLIPSCORE_ENOMEM;
    if (!rc) rc = model_add(m, b->file, url, b->sha, NULL, -1, e);
    if (!rc) rc = model_add(m, BPE_FILE, BPE_URL, BPE_SHA, NULL, -1, e);
    free(url);
    m->approx_mib = b->approx_mib;
    if (rc) model_free(m);
    return rc;
}

/* A registry name, else a built-in one: 1 found (m filled), 0 unknown, <0 error. */
static int lookup_name(const char *name, const char *cache, model *m, cs_error *e) {
    cJSON *reg;
    const char *regpath;
    int rc = registry_load(&reg, &regpath, e);
    if (rc) return rc;
    const cJSON *entry = reg ? cJSON_GetObjectItemCaseSensitive(reg, name) : NULL;
    if (entry) rc = model_from_registry(entry, name, regpath, cache, m, e);
    cJSON_Delete(reg);
    if (entry) return rc ? rc : 1;
    for (size_t i = 0; i < N_BUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0) {
            rc = model_from_builtin(&builtins[i], cache, m, e);
            return rc ? rc : 1;
        }
    return 0;
}

/* ------------------------------------------------------------- manifest */

static cJSON *manifest_read(const char *folder) {
    char *path = cs_path_join(folder, MANIFEST_NAME, NULL), *text = NULL;
    cJSON *j = NULL;
    if (path && cs_read_file(path, MAX_JSON_BYTES, &text, NULL, NULL) == 0) j = cJSON_Parse(text);
    free(text);
    free(path);
    if (j && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "files"))) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

static int manifest_write(const model *m, cs_error *e) {
    cJSON *j = cJSON_CreateObject(), *files = cJSON_CreateObject();
    int ok = j && files;
    if (ok)
        cJSON_AddItemToObject(j, "files", files);
    else
        cJSON_Delete(files);
    ok = ok && cJSON_AddStringToObject(j, "spec", m->spec);
    if (ok && m->commit) ok = cJSON_AddStringToObject(j, "commit", m->commit) != NULL;
    for (int i = 0; ok && i < m->n; i++) {
        const mfile *f = &m->files[i];
        cJSON *r = cJSON_AddObjectToObject(files, f->name);
        ok = r && (f->sha[0] ? cJSON_AddStringToObject(r, "sha256", f->sha)
                             : cJSON_AddNullToObject(r, "sha256"));
        if (ok && f->blob[0]) ok = cJSON_AddStringToObject(r, "blob", f->blob) != NULL;
        ok = ok && cJSON_AddNumberToObject(r, "size", (double)f->size);
        if (ok && f->url) ok = cJSON_AddStringToObject(r, "url", f->url) != NULL;
    }
    char *text = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    if (!text) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory writing the cache manifest");
    char *path = cs_path_join(m->folder, MANIFEST_NAME, e);
    int rc = path ? cs_write_file_atomic(path, text, strlen(text), e) : CLIPSCORE_ENOMEM;
    free(path);
    free(text);
    return rc;
}

/* Whether the manifest vouches for this file as it is on disk. */
static int record_matches(const cJSON *man, const mfile *f, long long disk_size) {
    const cJSON *r = man ? cJSON_GetObjectItemCaseSensitive(
                               cJSON_GetObjectItemCaseSensitive(man, "files"), f->name)
                         : NULL;
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(r, "size");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(r, "sha256");
    const cJSON *blob = cJSON_GetObjectItemCaseSensitive(r, "blob");
    if (!cJSON_IsNumber(size) || (long long)size->valuedouble != disk_size) return 0;
    if (f->sha[0]) return cJSON_IsString(sha) && strcmp(sha->valuestring, f->sha) == 0;
    if (f->blob[0]) return cJSON_IsString(blob) && strcmp(blob->valuestring, f->blob) == 0;
    return 1;
}

/* The files of a cached hf: model, from its manifest. 1: complete. */
static int model_from_manifest(model *m, cs_error *e) {
    cJSON *man = manifest_read(m->folder);
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(man, "files");
    const cJSON *commit = cJSON_GetObjectItemCaseSensitive(man, "commit");
    int ok = files && files->child;
    if (ok && cJSON_IsString(commit)) m->commit = cs_strdup(commit->valuestring, e);
    for (const cJSON *f = ok ? files->child : NULL; f && ok; f = f->next) {
        const cJSON *sha = cJSON_GetObjectItemCaseSensitive(f, "sha256");
        const cJSON *blob = cJSON_GetObjectItemCaseSensitive(f, "blob");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
        const cJSON *url = cJSON_GetObjectItemCaseSensitive(f, "url");
        ok = f->string && safe_component(f->string) && cJSON_IsNumber(size) &&
             model_add(m, f->string, cJSON_IsString(url) ? url->valuestring : NULL,
                       cJSON_IsString(sha) ? sha->valuestring : NULL,
                       cJSON_IsString(blob) ? blob->valuestring : NULL,
                       (long long)size->valuedouble, e) == 0;
    }
    cJSON_Delete(man);
    return ok;
}

/* 1 when every file is in place. Files the manifest does not vouch for are
 * hashed when `hash` is set (offline use of a hand-filled folder). */
static int model_complete(const model *m, int hash) {
    cJSON *man = manifest_read(m->folder);
    int ok = m->n > 0;
    for (int i = 0; ok && i < m->n; i++) {
        const mfile *f = &m->files[i];
        char *path = cs_path_join(m->folder, f->name, NULL);
        struct stat st;
        ok = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
        if (ok && !record_matches(man, f, (long long)st.st_size)) {
            char hex[65];
            ok = hash && f->sha[0] && cs_sha256_file(path, hex, NULL) == 0 &&
                 strcmp(hex, f->sha) == 0;
        }
        free(path);
    }
    cJSON_Delete(man);
    return ok;
}

/* flock on <folder>/.lock: one fetcher per model folder at a time. */
static int lock_folder(const model *m, int progress, int *fd_out, cs_error *e) {
    *fd_out = -1;
    char *path = cs_path_join(m->folder, LOCK_NAME, e);
    if (!path) return CLIPSCORE_ENOMEM;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        int rc = cs_fail(e, CLIPSCORE_EIO, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (progress)
            fprintf(stderr, "waiting for another clipscore that is fetching %s...\n", m->spec);
        while (flock(fd, LOCK_EX) != 0) {
            if (errno == EINTR) continue;
            int rc = cs_fail(e, CLIPSCORE_EIO, "cannot lock %s: %s", path, strerror(errno));
            close(fd);
            free(path);
            return rc;
        }
    }
    free(path);
    *fd_out = fd;
    return 0;
}

/* Brings the cache folder up to date with m->files, under the folder lock. */
static int ensure_files(model *m, const cs_fetch_opts *o, cs_error *e) {
    int rc = cs_mkdir_p(m->folder, e);
    if (rc) return rc;
    int lock;
    if ((rc = lock_folder(m, o->progress, &lock, e))) return rc;
    /* Another process may have finished while this one waited. */
    cJSON *man = manifest_read(m->folder);
    char *need = cs_calloc((size_t)m->n, 1, e);
    int n_need = 0;
    for (int i = 0; need && i < m->n; i++) {
        mfile *f = &m->files[i];
        char *path = cs_path_join(m->folder, f->name, e);
        struct stat st;
        int ok = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
        if (ok && !record_matches(man, f, (long long)st.st_size)) {
            /* Present but not vouched for (copied in by hand, or a refresh):
             * keep it if it verifies. Small hub files have no SHA-256. */
            char hex[65];
            ok = f->sha[0] && (f->size < 0 || f->size == (long long)st.st_size) &&
                 cs_sha256_file(path, hex, NULL) == 0 && strcmp(hex, f->sha) == 0;
        }
        if (ok && f->size < 0) f->size = (long long)st.st_size;
        if (!ok) {
            need[i] = 1;
            n_need++;
        }
        free(path);
    }
    cJSON_Delete(man);
    if (!need) rc = CLIPSCORE_ENOMEM;
    if (!rc && n_need && o->progress) fprintf(stderr, "fetching %s into %s\n", m->spec, m->folder);
    /* Once a file changes, the old manifest no longer describes the folder:
     * it goes just before the first rename, so an interrupted update is
     * not taken for a complete model (and a failed one before any rename
     * leaves the old copy usable). */
    char *mp = rc ? NULL : cs_path_join(m->folder, MANIFEST_NAME, e);
    const char *drop = mp;
    if (!rc && !mp) rc = CLIPSCORE_ENOMEM;
    for (int i = 0; !rc && i < m->n; i++) {
        if (!need[i]) continue;
        mfile *f = &m->files[i];
        char *dest = cs_path_join(m->folder, f->name, e);
        if (!dest) rc = CLIPSCORE_ENOMEM;
        if (!rc && !f->url)
            rc = cs_fail(e, CLIPSCORE_EINTERNAL, "%s: no URL for %s", m->spec, f->name);
        if (!rc) rc = download(f->url, dest, f->sha, f->size, o->progress, m->hf, &drop, e);
        struct stat st;
        if (!rc && stat(dest, &st) == 0) f->size = (long long)st.st_size;
        free(dest);
    }
    if (!rc) rc = manifest_write(m, e);
    free(mp);
    free(need);
    close(lock); /* releases the flock */
    return rc;
}

/* ------------------------------------------------------------------ hub */

/* "hf:ORG/NAME[@REV]" -> repo "ORG/NAME", rev ("main" by default). */
static int hf_parse(const char *spec, char **repo, char **rev, cs_error *e) {
    *repo = *rev = NULL;
    const char *s = spec + 3, *at = strchr(s, '@'), *slash = strchr(s, '/');
    size_t rl = at ? (size_t)(at - s) : strlen(s);
    char org[128], name[128];
    int ok = slash && slash < s + rl && (size_t)(slash - s) < sizeof org &&
             rl - (size_t)(slash - s) - 1 < sizeof name;
    if (ok) {
        snprintf(org, sizeof org, "%.*s", (int)(slash - s), s);
        snprintf(name, sizeof name, "%.*s", (int)(rl - (size_t)(slash - s) - 1), slash + 1);
        ok = safe_component(org) && safe_component(name);
    }
    const char *r = at ? at + 1 : "main";
    for (const char *p = r; ok && *p; p++) ok = (unsigned char)*p > ' ' && *p != 0x7f;
    ok = ok && *r && strlen(r) < 200 && !strstr(r, "..");
    if (!ok)
        return cs_fail(e, CLIPSCORE_EARG,
                       "bad model name %s: expected hf:ORG/NAME or hf:ORG/NAME@REVISION", spec);
    *repo = cs_asprintf(e, "%s/%s", org, name);
    *rev = *repo ? cs_strdup(r, e) : NULL;
    if (!*rev) {
        free(*repo);
        *repo = NULL;
        return CLIPSCORE_ENOMEM;
    }
    return 0;
}

static int hf_model_init(const char *spec, const char *cache, model *m, char **repo, char **rev,
                         cs_error *e) {
    int rc = hf_parse(spec, repo, rev, e);
    if (rc) return rc;
    /* <cache>/hf/ORG--NAME/REV; "refs/pr/1" -> "refs--pr--1". */
    char *rel = cs_malloc(strlen(*repo) + 3 * strlen(*rev) + 8, 1, e);
    if (rel) {
        char *o = rel + sprintf(rel, "hf/");
        for (const char *p = *repo; *p; p++)
            o += *p == '/' ? sprintf(o, "--") : sprintf(o, "%c", *p);
        *o++ = '/';
        char *revdir = o;
        for (const char *p = *rev; *p; p++) {
            if (*p == '/')
                o += sprintf(o, "--");
            else
                *o++ = isalnum((unsigned char)*p) || strchr("._-", *p) ? *p : '_';
        }
        *o = '\0';
        if (*revdir == '.') *revdir = '_'; /* not a hidden folder */
    }
    rc = rel ? model_init(m, spec, cache, rel, e) : CLIPSCORE_ENOMEM;
    free(rel);
    m->hf = 1;
    if (rc) {
        free(*repo);
        free(*rev);
        *repo = *rev = NULL;
        model_free(m);
    }
    return rc;
}

static char *hf_endpoint(cs_error *e) {
    const char *v = env_nonempty("HF_ENDPOINT");
    char *s = cs_strdup(v ? v : HF_DEFAULT_ENDPOINT, e);
    if (s)
        for (size_t n = strlen(s); n > 0 && s[n - 1] == '/'; n--) s[n - 1] = '\0';
    return s;
}

static const cJSON *sibling(const cJSON *sibs, const char *name) {
    const cJSON *s;
    cJSON_ArrayForEach(s, sibs) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
        if (cJSON_IsString(f) && strcmp(f->valuestring, name) == 0) return s;
    }
    return NULL;
}

/* Asks the hub which files the repository has, picks the layout and fills
 * m->files with resolve URLs pinned to the listed commit. */
static int hf_listing(model *m, const char *repo, const char *rev, cs_error *e) {
    char *ep = hf_endpoint(e), *erev = ep ? url_escape(rev, e) : NULL;
    char *raw =
        erev ? cs_asprintf(e, "%s/api/models/%s/revision/%s?blobs=true", ep, repo, erev) : NULL;
    char *url = raw ? effective_url(raw, e) : NULL, *text = NULL;
    cJSON *j = NULL;
    int rc = url ? http_get_mem(url, 1, &text, e) : CLIPSCORE_ENOMEM;
    if (rc) cs_fail_prefix(e, "%s: listing the repository", m->spec);
    if (!rc && !cJSON_IsObject(j = cJSON_Parse(text)))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: the hub's answer is not a JSON object: %s", m->spec,
                     url);
    const cJSON *sibs = j ? cJSON_GetObjectItemCaseSensitive(j, "siblings") : NULL;
    if (!rc && !cJSON_IsArray(sibs))
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: the hub's answer lists no files: %s", m->spec, url);

    static const char *const layout_a[] = {
        "config.json", "model.safetensors|pytorch_model.bin", "vocab.json",
        "merges.txt",  "?preprocessor_config.json",           NULL};
    static const char *const layout_b[] = {"open_clip_config.json", "open_clip_model.safetensors",
                                           "vocab.json", "merges.txt", NULL};
    const char *const *layouts[] = {layout_a, layout_b};
    const char *chosen[8];
    int n_chosen = 0;
    for (int l = 0; !rc && l < 2 && !n_chosen; l++) {
        int ok = 1;
        for (const char *const *p = layouts[l]; ok && *p; p++) {
            char alts[64];
            snprintf(alts, sizeof alts, "%s", **p == '?' ? *p + 1 : *p);
            const char *pick = NULL;
            /* "a|b": the first that exists (safetensors over pickles). */
            for (char *save, *a = strtok_r(alts, "|", &save); a && !pick;
                 a = strtok_r(NULL, "|", &save)) {
                const cJSON *s = sibling(sibs, a);
                if (s) pick = cJSON_GetObjectItemCaseSensitive(s, "rfilename")->valuestring;
            }
            if (pick)
                chosen[n_chosen++] = pick;
            else if (**p != '?')
                ok = 0;
        }
        if (!ok) n_chosen = 0;
    }
    if (!rc && !n_chosen)
        rc = cs_fail(e, CLIPSCORE_EMODEL,
                     "%s: not a CLIP repository this tool can load: it needs config.json + "
                     "model.safetensors (or pytorch_model.bin) + vocab.json + merges.txt, or "
                     "open_clip_config.json + open_clip_model.safetensors + vocab.json + "
                     "merges.txt (%s)",
                     m->spec, url);

    /* Pin every file to the commit the listing describes. */
    const cJSON *commit = j ? cJSON_GetObjectItemCaseSensitive(j, "sha") : NULL;
    if (!rc && cJSON_IsString(commit) && is_hex(commit->valuestring, 40))
        rc = (m->commit = cs_strdup(commit->valuestring, e)) ? 0 : CLIPSCORE_ENOMEM;
    char *ecommit = NULL;
    if (!rc) rc = (ecommit = url_escape(m->commit ? m->commit : rev, e)) ? 0 : CLIPSCORE_ENOMEM;
    for (int i = 0; !rc && i < n_chosen; i++) {
        const cJSON *s = sibling(sibs, chosen[i]);
        const cJSON *lfs = cJSON_GetObjectItemCaseSensitive(s, "lfs");
        const cJSON *lsha = cJSON_GetObjectItemCaseSensitive(lfs, "sha256");
        const cJSON *lsize = cJSON_GetObjectItemCaseSensitive(lfs, "size");
        const cJSON *size = cJSON_GetObjectItemCaseSensitive(s, "size");
        const cJSON *blob = cJSON_GetObjectItemCaseSensitive(s, "blobId");
        char sha[128] = "";
        long long sz = cJSON_IsNumber(lsize)  ? (long long)lsize->valuedouble
                       : cJSON_IsNumber(size) ? (long long)size->valuedouble
                                              : -1;
        char *efile = url_escape(chosen[i], e);
        char *furl = efile ? cs_asprintf(e, "%s/%s/resolve/%s/%s", ep, repo, ecommit, efile) : NULL;
        if (!furl) rc = CLIPSCORE_ENOMEM;
        if (!rc && cJSON_IsString(lsha)) snprintf(sha, sizeof sha, "%s", lsha->valuestring);
        int weights = strstr(chosen[i], ".safetensors") || strstr(chosen[i], ".bin");
        if (!rc && !sha[0] && (weights || lfs)) {
            /* The listing left the LFS hash out: the resolve URL's
             * X-Linked-Etag carries it. */
            char *hurl = effective_url(furl, e);
            rc = hurl ? http_head_etag(hurl, 1, sha, sizeof sha, e) : CLIPSCORE_ENOMEM;
            if (!rc && !is_hex(sha, 64))
                rc = cs_fail(e, CLIPSCORE_ECHECKSUM,
                             "%s: the hub publishes no SHA-256 for %s; refusing unverified weights",
                             m->spec, hurl);
            free(hurl);
        }
        if (!rc && sha[0] && !is_hex(sha, 64))
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: bad sha256 \"%s\" listed for %s", m->spec, sha,
                         chosen[i]);
        /* Small (non-LFS) files have only a git blob id (SHA-1 of a git
         * object), no SHA-256: they are accepted unverified; the blob id only
         * tells a refresh whether they changed. */
        if (!rc)
            rc = model_add(m, chosen[i], furl, sha,
                           !sha[0] && cJSON_IsString(blob) ? blob->valuestring : NULL, sz, e);
        free(efile);
        free(furl);
    }
    free(ecommit);
    cJSON_Delete(j);
    free(text);
    free(url);
    free(raw);
    free(erev);
    free(ep);
    return rc;
}

/* ---------------------------------------------------------------- public */

static int offline_error(const char *spec, const char *folder, cs_error *e) {
    return cs_fail(e, CLIPSCORE_EOFFLINE,
                   "model %s is not in the cache (%s) and offline mode is on; fetch it first with: "
                   "clipscore models fetch %s",
                   spec, folder, spec);
}

static int resolve(const char *spec, const cs_fetch_opts *o_in, int refresh, int allow_path,
                   char **out, cs_error *e) {
    if (out) *out = NULL;
    cs_fetch_opts o = o_in ? *o_in : cs_fetch_default_opts();
    if (!spec || !*spec) spec = cs_default_model_name();
    char *cache = NULL;
    model m;
    memset(&m, 0, sizeof m);
    int rc;
    if (strncmp(spec, "hf:", 3) == 0) {
        char *repo = NULL, *rev = NULL;
        rc = cs_fetch_cache_dir(&o, &cache, e);
        if (!rc) rc = hf_model_init(spec, cache, &m, &repo, &rev, e);
        int cached = !rc && model_from_manifest(&m, e) && model_complete(&m, 0);
        if (rc || (cached && (!refresh || o.offline))) {
            /* done: an error, or the cached copy serves */
        } else if (o.offline) {
            rc = offline_error(spec, m.folder, e);
        } else {
            /* Start from the hub's listing, not the old manifest. */
            model_clear_files(&m);
            rc = hf_listing(&m, repo, rev, e);
            if (!rc) rc = ensure_files(&m, &o, e);
        }
        free(repo);
        free(rev);
    } else {
        rc = cs_fetch_cache_dir(&o, &cache, e);
        if (rc && allow_path && (cs_is_dir(spec) || cs_file_exists(spec)))
            rc = 0;
        else if (!rc)
            rc = lookup_name(spec, cache, &m, e);
        else /* no cache folder, and not a file or folder either: say which model */
            cs_fail_prefix(e, "model %s is not a file or folder here, and to fetch it", spec);
        if (rc == 0) {
            free(cache);
            if (allow_path && (cs_is_dir(spec) || cs_file_exists(spec))) {
                if (out && !(*out = cs_strdup(spec, e))) return CLIPSCORE_ENOMEM;
                return 0;
            }
            char known[256] = "";
            for (size_t i = 0; i < N_BUILTINS; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         builtins[i].name);
            return cs_fail(e, CLIPSCORE_EARG,
                           "unknown model %s: not a known name (%s%s), hf:ORG/NAME[@REV]%s", spec,
                           known, getenv("CLIPSCORE_REGISTRY") ? " or the registry's" : "",
                           allow_path ? " or an existing file or folder" : "");
        }
        if (rc == 1) {
            rc = 0;
            if (!model_complete(&m, o.offline)) {
                if (o.offline)
                    rc = offline_error(spec, m.folder, e);
                else
                    rc = ensure_files(&m, &o, e);
            }
        }
    }
    if (!rc && out && !(*out = cs_strdup(m.folder, e))) rc = CLIPSCORE_ENOMEM;
    if (rc && e && e->code == 0) e->code = rc;
    model_free(&m);
    free(cache);
    return rc;
}

int cs_model_resolve(const char *spec, const cs_fetch_opts *o, char **local_path, cs_error *e) {
    return resolve(spec, o, 0, 1, local_path, e);
}

int cs_models_fetch(const char *name, const cs_fetch_opts *o, char **local_path, cs_error *e) {
    return resolve(name, o, 1, 0, local_path, e);
}

/* Bytes of the files in a folder (hidden bookkeeping files left out);
 * *partial set when a .part is among them. */
static double folder_bytes(const char *folder, int *partial) {
    double total = 0;
    *partial = 0;
    DIR *d = opendir(folder);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = cs_path_join(folder, de->d_name, NULL);
        struct stat st;
        if (p && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            total += (double)st.st_size;
            size_t n = strlen(de->d_name);
            if (n > 5 && strcmp(de->d_name + n - 5, ".part") == 0) *partial = 1;
        }
        free(p);
    }
    closedir(d);
    return total;
}

static void list_line(FILE *out, const model *m, int is_default) {
    int partial;
    double bytes = folder_bytes(m->folder, &partial);
    int complete = model_complete(m, 0);
    char size[32] = "-";
    if (bytes > 0)
        human_size(bytes, size, sizeof size);
    else if (m->approx_mib > 0)
        snprintf(size, sizeof size, "~%.0f MiB", m->approx_mib);
    const char *status = complete ? "cached" : bytes > 0 || partial ? "partial" : "-";
    fprintf(out, "%c %-34s %-8s %11s  %s%s\n", is_default ? '*' : ' ', m->spec, status, size,
            m->folder, m->registry ? " (registry)" : "");
}

int cs_models_list(FILE *out, const cs_fetch_opts *o_in, cs_error *e) {
    cs_fetch_opts o = o_in ? *o_in : cs_fetch_default_opts();
    char *cache;
    int rc = cs_fetch_cache_dir(&o, &cache, e);
    if (rc) return rc;
    cJSON *reg;
    const char *regpath;
    if ((rc = registry_load(&reg, &regpath, e))) {
        free(cache);
        return rc;
    }
    fprintf(out, "cache: %s\n", cache);
    if (regpath) fprintf(out, "registry: %s\n", regpath);
    fprintf(out, "  %-34s %-8s %11s  %s\n", "NAME", "STATUS", "SIZE", "FOLDER");
    model m;
    /* Built-in names first (a registry entry of the same name replaces one),
     * then names only the registry has. */
    for (size_t i = 0; !rc && i < N_BUILTINS; i++) {
        const cJSON *entry = reg ? cJSON_GetObjectItemCaseSensitive(reg, builtins[i].name) : NULL;
        rc = entry ? model_from_registry(entry, builtins[i].name, regpath, cache, &m, e)
                   : model_from_builtin(&builtins[i], cache, &m, e);
        if (rc) break;
        list_line(out, &m, strcmp(builtins[i].name, cs_default_model_name()) == 0);
        model_free(&m);
    }
    for (const cJSON *en = reg ? reg->child : NULL; !rc && en; en = en->next) {
        int builtin = 0;
        for (size_t i = 0; i < N_BUILTINS; i++)
            builtin |= strcmp(builtins[i].name, en->string) == 0;
        if (builtin) continue;
        if ((rc = model_from_registry(en, en->string, regpath, cache, &m, e))) break;
        list_line(out, &m, 0);
        model_free(&m);
    }
    cJSON_Delete(reg);
    /* Hub repositories: whatever hf/ORG--NAME/REV folders hold a manifest. */
    char *hfdir = rc ? NULL : cs_path_join(cache, "hf", e);
    DIR *d1 = hfdir ? opendir(hfdir) : NULL;
    struct dirent *a;
    while (d1 && !rc && (a = readdir(d1))) {
        if (a->d_name[0] == '.') continue;
        char *repodir = cs_path_join(hfdir, a->d_name, e);
        DIR *d2 = repodir ? opendir(repodir) : NULL;
        struct dirent *b;
        while (d2 && (b = readdir(d2))) {
            if (b->d_name[0] == '.') continue;
            char *folder = cs_path_join(repodir, b->d_name, e);
            cJSON *man = folder ? manifest_read(folder) : NULL;
            const cJSON *spec = cJSON_GetObjectItemCaseSensitive(man, "spec");
            if (cJSON_IsString(spec) && model_init(&m, spec->valuestring, "", folder, e) == 0) {
                m.hf = 1;
                if (model_from_manifest(&m, e)) list_line(out, &m, 0);
                model_free(&m);
            }
            cJSON_Delete(man);
            free(folder);
        }
        if (d2) closedir(d2);
        free(repodir);
    }
    if (d1) closedir(d1);
    free(hfdir);
    free(cache);
    if (!rc && fflush(out) != 0) rc = cs_fail(e, CLIPSCORE_EIO, "writing the model list failed");
    return rc;
}
