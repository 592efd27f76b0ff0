/* webdataset.c - webdataset tar shards and img2dataset folders as samples
 * (webdataset.h).
 *
 * Covers: the input kind; the tar reader (libarchive, one pass, a member
 * header read ahead to see where a sample ends); the folder walker (sorted
 * listings on a stack, one per folder on the current path); the members'
 * roles (image, caption, json) and the per-sample errors; find by key.
 * Leaves out: image decoding and anything about the pipeline's rows. */
#include "webdataset.h"

#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* webdataset's image extensions, in the ';' list form options use. */
static const char DEFAULT_IMAGE_KEYS[] =
    "jpg;jpeg;png;webp;gif;bmp;tif;tiff;jp2;j2k;jpx;avif;heic;heif;ico;ppm;pgm;pnm;tga;psd;hdr";
static const char DEFAULT_CAPTION_KEYS[] = "txt";
/* Folders nested deeper than this are not walked (a sample error says so). */
#define MAX_DEPTH 256

/* ---- small growable buffers ---- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
} wbuf;

/* Makes room for n bytes (capacity doubles, so a reused buffer stays within
 * twice the largest content it held). */
static int wbuf_reserve(wbuf *b, size_t n, cs_error *e) {
    if (n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n) cap = cap > SIZE_MAX / 2 ? n : cap * 2;
    char *p = realloc(b->p, cap);
    if (!p) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory (%zu bytes)", n);
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Sets the content to n bytes of s, NUL-terminated. */
static int wbuf_set(wbuf *b, const char *s, size_t n, cs_error *e) {
    if (n == SIZE_MAX || wbuf_reserve(b, n + 1, e)) return CLIPSCORE_ENOMEM;
    if (n) memcpy(b->p, s, n);
    b->p[n] = '\0';
    b->len = n;
    return 0;
}

static int wbuf_add(wbuf *b, const char *s, size_t n, cs_error *e) {
    if (n >= SIZE_MAX - b->len || wbuf_reserve(b, b->len + n + 1, e)) return CLIPSCORE_ENOMEM;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void wbuf_free(wbuf *b) {
    free(b->p);
    *b = (wbuf){0};
}

/* ---- the reader ---- */

typedef struct wds_entry {
    const char *name;
    int is_dir;
} wds_entry;

/* One folder of the walk: its sorted listing and where the walk is in it. */
typedef struct wds_level {
    char *rel;          /* path relative to the root ("" for the root) */
    char *names;        /* the names, NUL-separated (owned) */
    wds_entry *ent;     /* sorted by name (strcmp); names point into `names` */
    size_t n, pos;      /* entries, next to visit */
    size_t group_end;   /* files before this index belong to a group already given */
    size_t names_bytes; /* for the memory count */
    dev_t dev;
    ino_t ino;
} wds_level;

struct cs_wds_reader {
    char *path;         /* as given */
    char *image_keys;   /* ';' list, lower-case */
    char *caption_keys; /* ';' list, lower-case */
    int skip_data;
    size_t max_member;
    char *want_key; /* cs_wds_find: only this sample's data is read */

    /* the sample being built */
    wbuf key, image, caption, json, url, ext, err, image_path;
    int has_image, has_caption, has_json, has_url, reading;
    int got_image, got_caption; /* their data read (not over the limit, not unreadable) */

    /* tar */
    struct archive *ar;
    int done;    /* end reached, or the tar broke */
    int pending; /* a member header read ahead, its data unread */
    wbuf pend_name, pend_ext;
    size_t pend_key_len;
    int64_t pend_size; /* -1: unknown */
    char *open_error;  /* libarchive could not start reading (not a tar): the first sample's */

    /* folder */
    wds_level *levels;
    int depth, cap_levels;
};

static int ascii_lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* A lower-case copy of a ';' list (NULL or "" gives the default). */
static char *key_list(const char *given, const char *dflt, cs_error *e) {
    char *s = cs_strdup(given && given[0] ? given : dflt, e);
    if (s)
        for (char *p = s; *p; p++) *p = (char)ascii_lower((unsigned char)*p);
    return s;
}

/* Whether the (lower-case) extension is one of the ';' list's. */
static int ext_in(const char *ext, const char *list) {
    size_t n = strlen(ext);
    for (const char *p = list;;) {
        const char *end = strchr(p, ';');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k == n && memcmp(p, ext, n) == 0) return 1;
        if (!end) return 0;
        p = end + 1;
    }
}

/* Whether a name's last path component is one webdataset ignores: hidden
 * (".x") or metadata ("__key__"). */
static int ignored_component(const char *comp) {
    return comp[0] == '.' || (comp[0] == '_' && comp[1] == '_');
}

/* Sets the sample's error (the first one stays unless `force`). */
static void CS_PRINTF(3, 4) sample_error(cs_wds_reader *r, int force, const char *fmt, ...) {
    if (r->err.len && !force) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cs_error ignore = {0};
    if (wbuf_set(&r->err, msg, strlen(msg), &ignore)) r->err.len = 0;
}

static void sample_reset(cs_wds_reader *r) {
    r->has_image = r->has_caption = r->has_json = r->has_url = 0;
    r->got_image = r->got_caption = 0;
    r->image.len = r->caption.len = r->json.len = r->url.len = r->err.len = 0;
    r->image_path.len = r->ext.len = 0;
}

/* Whether the data of the sample with this key is read. */
static int wants_data(const cs_wds_reader *r, const char *key) {
    return !r->skip_data && (!r->want_key || strcmp(r->want_key, key) == 0);
}

/* Member roles. */
enum { ROLE_OTHER, ROLE_IMAGE, ROLE_CAPTION, ROLE_JSON, ROLE_DUPLICATE };

/* The role of a member with this (lower-case) extension in the sample so
 * far: the first image-key member is the image, later ones with another
 * extension are other members; a second caption or json member, or a second
 * member with the image's extension, is a duplicate (webdataset refuses
 * those too). */
static int member_role(const cs_wds_reader *r, const char *ext) {
    if (r->has_image && strcmp(ext, r->ext.p) == 0) return ROLE_DUPLICATE;
    if (!r->has_image && ext_in(ext, r->image_keys)) return ROLE_IMAGE;
    if (ext_in(ext, r->caption_keys)) return r->has_caption ? ROLE_DUPLICATE : ROLE_CAPTION;
    if (strcmp(ext, "json") == 0) return r->has_json ? ROLE_DUPLICATE : ROLE_JSON;
    return ROLE_OTHER;
}

/* After a caption's bytes are in r->caption: one trailing "\n" or "\r\n" off. */
static void trim_caption(cs_wds_reader *r) {
    wbuf *c = &r->caption;
    r->got_caption = 1;
    if (c->len && c->p[c->len - 1] == '\n') {
        c->len--;
        if (c->len && c->p[c->len - 1] == '\r') c->len--;
    }
    c->p[c->len] = '\0';
}

/* After a json member's bytes are in r->json: its top-level "url", if any
 * (a member that does not parse only means no url). */
static int take_url(cs_wds_reader *r, cs_error *e) {
    cJSON *j = cJSON_ParseWithLength(r->json.p, r->json.len);
    const cJSON *u = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "url") : NULL;
    int rc = 0;
    if (cJSON_IsString(u) && u->valuestring) {
        rc = wbuf_set(&r->url, u->valuestring, strlen(u->valuestring), e);
        r->has_url = rc == 0;
    }
    cJSON_Delete(j);
    return rc;
}

/* The sample's own errors once all its members are seen, then *s. */
static void sample_finish(cs_wds_reader *r, cs_wds_sample *s) {
    if (!r->has_image) {
        if (r->image_keys == NULL || strcmp(r->image_keys, DEFAULT_IMAGE_KEYS) == 0)
            sample_error(r, 0, "%s: sample \"%s\" has no image member (.jpg, .png, .webp, ...)",
                         r->path, r->key.p);
        else
            sample_error(r, 0, "%s: sample \"%s\" has no image member (.%s)", r->path, r->key.p,
                         r->image_keys);
    } else if (!r->has_caption) {
        sample_error(r, 0, "%s: sample \"%s\" has no caption member (.%s)", r->path, r->key.p,
                     r->caption_keys);
    }
    *s = (cs_wds_sample){0};
    s->key = r->key.p;
    if (r->got_caption) {
        s->caption = r->caption.p;
        s->caption_len = r->caption.len;
    }
    s->url = r->has_url ? r->url.p : NULL;
    if (r->has_image) {
        s->image_ext = r->ext.p;
        if (r->got_image) {
            s->image = (const unsigned char *)r->image.p;
            s->image_len = r->image.len;
        }
        if (!r->ar) s->image_path = r->image_path.p;
    }
    s->error = r->err.len ? r->err.p : NULL;
}

/* ---- tar ---- */

enum { HDR_EOF = 0, HDR_MEMBER = 1, HDR_BROKEN = 2 };

/* The tar broke (truncated, corrupt, unreadable): the sample being built
 * carries libarchive's message, and the tar ends. */
static void tar_broken(cs_wds_reader *r) {
    const char *why = r->open_error ? r->open_error : archive_error_string(r->ar);
    if (!why) why = "unreadable";
    if (r->key.len)
        sample_error(r, 1, "%s: truncated or corrupt tar at sample \"%s\" (the last key read): %s",
                     r->path, r->key.p, why);
    else
        sample_error(r, 1, "%s: truncated or corrupt tar before its first sample: %s", r->path,
                     why);
    r->done = 1;
}

/* Reads member headers up to the next one that belongs to a sample (a
 * regular file with a key and an extension) into r->pend_*. */
static int tar_read_header(cs_wds_reader *r, cs_error *e) {
    for (;;) {
        struct archive_entry *ent;
        int rc = archive_read_next_header(r->ar, &ent);
        if (rc == ARCHIVE_EOF) return HDR_EOF;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) return HDR_BROKEN;
        if (archive_entry_filetype(ent) != AE_IFREG) continue;
        const char *name = archive_entry_pathname(ent);
        if (!name) name = archive_entry_pathname_utf8(ent);
        if (!name) continue;
        const char *slash = strrchr(name, '/');
        const char *comp = slash ? slash + 1 : name;
        const char *dot = strchr(comp, '.');
        if (ignored_component(comp) || !dot) continue;
        size_t n = strlen(name);
        if (wbuf_set(&r->pend_name, name, n, e)) return CLIPSCORE_ENOMEM;
        r->pend_key_len = (size_t)(dot - name);
        const char *ext = r->pend_name.p + r->pend_key_len + 1;
        if (wbuf_set(&r->pend_ext, ext, strlen(ext), e)) return CLIPSCORE_ENOMEM;
        for (char *p = r->pend_ext.p; *p; p++) *p = (char)ascii_lower((unsigned char)*p);
        r->pend_size = archive_entry_size_is_set(ent) ? archive_entry_size(ent) : -1;
        return HDR_MEMBER;
    }
}

/* What reading one member's data gives, besides negative statuses. */
enum { DATA_READ = 0, DATA_BROKEN = 1, DATA_REFUSED = 2 /* a sample error says why */ };

/* Reads the pending member's data into b (NUL-terminated), up to max_member
 * bytes. */
static int tar_read_data(cs_wds_reader *r, wbuf *b, cs_error *e) {
    const char *name = r->pend_name.p;
    if (r->pend_size >= 0 && (uint64_t)r->pend_size > r->max_member) {
        sample_error(r, 0, "%s: member %s is %lld bytes, over the limit of %zu", r->path, name,
                     (long long)r->pend_size, r->max_member);
        return DATA_REFUSED;
    }
    size_t want = r->pend_size >= 0 ? (size_t)r->pend_size + 1 : 65536;
    b->len = 0;
    if (wbuf_reserve(b, want, e)) return CLIPSCORE_ENOMEM;
    for (;;) {
        if (b->cap - b->len < 2) {
            if (b->len > r->max_member) break;
            if (wbuf_reserve(b, b->cap + 1, e)) return CLIPSCORE_ENOMEM;
        }
        la_ssize_t got = archive_read_data(r->ar, b->p + b->len, b->cap - 1 - b->len);
        if (got < 0) return DATA_BROKEN;
        if (got == 0) break;
        b->len += (size_t)got;
        if (b->len > r->max_member) break;
    }
    if (b->len > r->max_member) {
        sample_error(r, 0, "%s: member %s is over the limit of %zu bytes", r->path, name,
                     r->max_member);
        return DATA_REFUSED;
    }
    b->p[b->len] = '\0';
    return DATA_READ;
}

/* Adds the pending member to the sample. Returns 0, or a negative status;
 * a broken tar sets r->done. */
static int tar_take_member(cs_wds_reader *r, cs_error *e) {
    const char *ext = r->pend_ext.p;
    int role = member_role(r, ext);
    if (role == ROLE_OTHER) return 0;
    if (role == ROLE_DUPLICATE) {
        sample_error(r, 0, "%s: sample \"%s\" has two .%s members", r->path, r->key.p, ext);
        return 0;
    }
    wbuf *dst = role == ROLE_IMAGE ? &r->image : role == ROLE_CAPTION ? &r->caption : &r->json;
    if (role == ROLE_IMAGE) {
        r->has_image = 1;
        if (wbuf_set(&r->ext, ext, strlen(ext), e)) return CLIPSCORE_ENOMEM;
    }
    r->has_caption |= role == ROLE_CAPTION;
    r->has_json |= role == ROLE_JSON;
    if (!r->reading) { /* the header's size is enough to report an oversized member */
        if (r->pend_size >= 0 && (uint64_t)r->pend_size > r->max_member)
            sample_error(r, 0, "%s: member %s is %lld bytes, over the limit of %zu", r->path,
                         r->pend_name.p, (long long)r->pend_size, r->max_member);
        return 0;
    }
    int rc = tar_read_data(r, dst, e);
    if (rc < 0) return rc;
    if (rc == DATA_BROKEN) tar_broken(r);
    if (rc != DATA_READ) return 0;
    if (role == ROLE_IMAGE) r->got_image = 1;
    if (role == ROLE_CAPTION) trim_caption(r);
    if (role == ROLE_JSON && r->json.len) return take_url(r, e);
    return 0;
}

static int tar_next(cs_wds_reader *r, cs_wds_sample *s, cs_error *e) {
    if (r->done) return 0;
    sample_reset(r);
    r->key.len = 0;
    if (wbuf_set(&r->key, "", 0, e)) return CLIPSCORE_ENOMEM;
    if (!r->pending) {
        int h = r->open_error ? HDR_BROKEN : tar_read_header(r, e);
        if (h < 0) return h;
        if (h == HDR_EOF) {
            r->done = 1;
            return 0;
        }
        if (h == HDR_BROKEN) {
            r->reading = 0;
            tar_broken(r);
            sample_finish(r, s);
            return 1;
        }
    }
    if (wbuf_set(&r->key, r->pend_name.p, r->pend_key_len, e)) return CLIPSCORE_ENOMEM;
    r->reading = wants_data(r, r->key.p);
    for (;;) {
        r->pending = 0;
        int rc = tar_take_member(r, e);
        if (rc < 0) return rc;
        if (r->done) break;
        int h = tar_read_header(r, e);
        if (h < 0) return h;
        if (h == HDR_EOF) {
            r->done = 1;
            break;
        }
        if (h == HDR_BROKEN) {
            tar_broken(r);
            break;
        }
        r->pending = 1;
        if (r->pend_key_len != r->key.len || memcmp(r->pend_name.p, r->key.p, r->key.len) != 0)
            break;
    }
    sample_finish(r, s);
    return 1;
}

static int tar_open(cs_wds_reader *r, cs_error *e) {
    /* A file that cannot be read is fatal; one libarchive cannot read as a
     * tar is a corrupt tar, reported by the first sample. */
    FILE *f = fopen(r->path, "rb");
    if (!f) return cs_fail(e, CLIPSCORE_EIO, "%s: %s", r->path, strerror(errno));
    fclose(f);
    r->ar = archive_read_new();
    if (!r->ar) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", r->path);
    archive_read_support_filter_all(r->ar);
    archive_read_support_format_tar(r->ar);
    archive_read_support_format_empty(r->ar); /* an empty file: no samples */
    if (archive_read_open_filename(r->ar, r->path, 1 << 16) != ARCHIVE_OK) {
        const char *why = archive_error_string(r->ar);
        r->open_error = cs_strdup(why ? why : "unreadable", e);
        if (!r->open_error) return CLIPSCORE_ENOMEM;
    }
    return 0;
}

/* ---- folders ---- */

static int by_name(const void *a, const void *b) {
    return strcmp(((const wds_entry *)a)->name, ((const wds_entry *)b)->name);
}

static void level_free(wds_level *l) {
    free(l->rel);
    free(l->names);
    free(l->ent);
    *l = (wds_level){0};
}

/* Joins root, rel and name into b ("root/rel/name", parts left out when
 * empty). */
static int folder_path(const cs_wds_reader *r, const char *rel, const char *name, wbuf *b,
                       cs_error *e) {
    b->len = 0;
    if (wbuf_set(b, r->path, strlen(r->path), e)) return CLIPSCORE_ENOMEM;
    const char *parts[2] = {rel, name};
    for (int i = 0; i < 2; i++) {
        if (!parts[i] || !parts[i][0]) continue;
        if (b->len && b->p[b->len - 1] != '/' && wbuf_add(b, "/", 1, e)) return CLIPSCORE_ENOMEM;
        if (wbuf_add(b, parts[i], strlen(parts[i]), e)) return CLIPSCORE_ENOMEM;
    }
    return 0;
}

/* Lists folder `rel` onto the stack. Returns 0, 1 when it cannot be walked
 * (the message is the sample error, its key rel), or a negative status. */
static int folder_push(cs_wds_reader *r, const char *rel, cs_error *e) {
    wbuf dir = {0};
    if (folder_path(r, rel, NULL, &dir, e)) return CLIPSCORE_ENOMEM;
    int rc = 0;
    DIR *d = NULL;
    wds_level l = {0};
    wbuf names = {0};
    size_t n = 0, cap = 0;
    size_t *offs = NULL;
    int *dirs = NULL;
    if (r->depth >= MAX_DEPTH) {
        sample_error(r, 1, "%s: nested deeper than %d folders: not walked", dir.p, MAX_DEPTH);
        rc = 1;
        goto done;
    }
    d = opendir(dir.p);
    struct stat st;
    if (!d || fstat(dirfd(d), &st) != 0) {
        if (r->depth == 0) {
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", dir.p, strerror(errno));
            goto done;
        }
        sample_error(r, 1, "%s: cannot list folder: %s", dir.p, strerror(errno));
        rc = 1;
        goto done;
    }
    for (int i = 0; i < r->depth; i++)
        if (r->levels[i].dev == st.st_dev && r->levels[i].ino == st.st_ino) {
            sample_error(r, 1, "%s: a link back to a folder above it: not walked", dir.p);
            rc = 1;
            goto done;
        }
    struct dirent *de;
    wbuf child = {0};
    /* errno tells readdir's end from its failure: cleared before each call
     * (the stat of a dangling link sets it). */
    while ((errno = 0, de = readdir(d))) {
        const char *nm = de->d_name;
        if (ignored_component(nm)) continue; /* also "." and ".." */
        int is_dir;
        if (de->d_type == DT_DIR) {
            is_dir = 1;
        } else if (de->d_type == DT_REG) {
            is_dir = 0;
        } else if (de->d_type == DT_LNK || de->d_type == DT_UNKNOWN) {
            struct stat cs;
            if (folder_path(r, rel, nm, &child, e)) {
                rc = CLIPSCORE_ENOMEM;
                break;
            }
            if (stat(child.p, &cs) != 0) continue; /* a dangling link */
            if (S_ISDIR(cs.st_mode))
                is_dir = 1;
            else if (S_ISREG(cs.st_mode))
                is_dir = 0;
            else
                continue;
        } else {
            continue;
        }
        if (!is_dir && !strchr(nm, '.')) continue; /* no extension: no member */
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            size_t *no = realloc(offs, nc * sizeof *no);
            if (no) offs = no;
            int *nd = realloc(dirs, nc * sizeof *nd);
            if (nd) dirs = nd;
            if (!no || !nd) {
                rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory listing the folder", dir.p);
                break;
            }
            cap = nc;
        }
        offs[n] = names.len;
        dirs[n] = is_dir;
        if (wbuf_add(&names, nm, strlen(nm) + 1, e)) {
            rc = CLIPSCORE_ENOMEM;
            break;
        }
        n++;
    }
    wbuf_free(&child);
    if (!rc && errno) {
        if (r->depth == 0) {
            rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", dir.p, strerror(errno));
            goto done;
        }
        sample_error(r, 1, "%s: cannot list folder: %s", dir.p, strerror(errno));
        rc = 1;
    }
    if (rc) goto done;
    l.ent = n ? malloc(n * sizeof *l.ent) : NULL;
    l.rel = cs_strdup(rel, e);
    if ((n && !l.ent) || !l.rel) {
        rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory listing the folder", dir.p);
        goto done;
    }
    l.names = names.p;
    l.names_bytes = names.cap;
    names = (wbuf){0};
    for (size_t i = 0; i < n; i++) l.ent[i] = (wds_entry){l.names + offs[i], dirs[i]};
    if (n) qsort(l.ent, n, sizeof *l.ent, by_name);
    l.n = n;
    l.dev = st.st_dev;
    l.ino = st.st_ino;
    if (r->depth == r->cap_levels) {
        int nc = r->cap_levels ? r->cap_levels * 2 : 8;
        wds_level *nl = realloc(r->levels, (size_t)nc * sizeof *nl);
        if (!nl) {
            rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", dir.p);
            goto done;
        }
        r->levels = nl;
        r->cap_levels = nc;
    }
    r->levels[r->depth++] = l;
    l = (wds_level){0};
done:
    if (d) closedir(d);
    level_free(&l);
    wbuf_free(&names);
    wbuf_free(&dir);
    free(offs);
    free(dirs);
    return rc;
}

/* Reads a caption or json file into b (NUL-terminated, up to max_member):
 * DATA_READ, DATA_REFUSED or a negative status. */
static int folder_read(cs_wds_reader *r, const char *rel, const char *name, wbuf *b, cs_error *e) {
    wbuf path = {0};
    if (folder_path(r, rel, name, &path, e)) return CLIPSCORE_ENOMEM;
    int rc = DATA_REFUSED;
    b->len = 0;
    FILE *f = fopen(path.p, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        sample_error(r, 0, "%s: %s", path.p, strerror(errno));
        goto done;
    }
    if (st.st_size >= 0 && (uint64_t)st.st_size > r->max_member) {
        sample_error(r, 0, "%s: %lld bytes, over the limit of %zu", path.p, (long long)st.st_size,
                     r->max_member);
        goto done;
    }
    if (wbuf_reserve(b, (size_t)st.st_size + 1, e)) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    for (;;) {
        if (b->cap - b->len < 2 && wbuf_reserve(b, b->cap + 1, e)) {
            rc = CLIPSCORE_ENOMEM;
            goto done;
        }
        size_t got = fread(b->p + b->len, 1, b->cap - 1 - b->len, f);
        b->len += got;
        if (b->len > r->max_member) {
            sample_error(r, 0, "%s: over the limit of %zu bytes", path.p, r->max_member);
            goto done;
        }
        if (got == 0) break;
    }
    if (ferror(f)) {
        sample_error(r, 0, "%s: read error", path.p);
        goto done;
    }
    b->p[b->len] = '\0';
    rc = DATA_READ;
done:
    if (f) fclose(f);
    wbuf_free(&path);
    return rc;
}

/* The group of files of level l from index i whose names start with the same
 * key and a dot; fills the sample. Returns 1 (a sample), 0 (not one: neither
 * image nor caption), or a negative status. */
static int folder_group(cs_wds_reader *r, wds_level *l, size_t i, cs_error *e) {
    const char *first = l->ent[i].name;
    size_t klen = (size_t)(strchr(first, '.') - first);
    size_t end = i;
    while (end < l->n && strncmp(l->ent[end].name, first, klen + 1) == 0) end++;
    l->group_end = end;

    sample_reset(r);
    r->key.len = 0;
    if (wbuf_set(&r->key, l->rel, strlen(l->rel), e) ||
        (l->rel[0] && wbuf_add(&r->key, "/", 1, e)) || wbuf_add(&r->key, first, klen, e))
        return CLIPSCORE_ENOMEM;
    if (r->want_key && strcmp(r->want_key, r->key.p) != 0) return 0;
    r->reading = wants_data(r, r->key.p);

    const char *caption = NULL, *json = NULL, *image = NULL;
    for (size_t k = i; k < end; k++) {
        if (l->ent[k].is_dir) continue;
        const char *name = l->ent[k].name;
        const char *ext = name + klen + 1;
        if (wbuf_set(&r->pend_ext, ext, strlen(ext), e)) return CLIPSCORE_ENOMEM;
        for (char *p = r->pend_ext.p; *p; p++) *p = (char)ascii_lower((unsigned char)*p);
        switch (member_role(r, r->pend_ext.p)) {
        case ROLE_DUPLICATE:
            /* Only case variants ("x.JPG", "x.jpg") can meet in one folder. */
            sample_error(r, 0, "%s: sample \"%s\" has two .%s files", r->path, r->key.p,
                         r->pend_ext.p);
            break;
        case ROLE_IMAGE:
            r->has_image = 1;
            image = name;
            if (wbuf_set(&r->ext, r->pend_ext.p, r->pend_ext.len, e)) return CLIPSCORE_ENOMEM;
            break;
        case ROLE_CAPTION:
            r->has_caption = 1;
            caption = name;
            break;
        case ROLE_JSON:
            r->has_json = 1;
            json = name;
            break;
        }
    }
    if (!image && !caption) return 0;
    if (image && folder_path(r, l->rel, image, &r->image_path, e)) return CLIPSCORE_ENOMEM;
    int rc = DATA_READ;
    if (caption && r->reading &&
        (rc = folder_read(r, l->rel, caption, &r->caption, e)) == DATA_READ)
        trim_caption(r);
    if (rc >= 0 && json && r->reading &&
        (rc = folder_read(r, l->rel, json, &r->json, e)) == DATA_READ && r->json.len)
        rc = take_url(r, e);
    return rc < 0 ? rc : 1;
}

static int folder_next(cs_wds_reader *r, cs_wds_sample *s, cs_error *e) {
    while (r->depth > 0) {
        wds_level *l = &r->levels[r->depth - 1];
        if (l->pos >= l->n) {
            level_free(l);
            r->depth--;
            continue;
        }
        size_t i = l->pos++;
        if (l->ent[i].is_dir) {
            wbuf rel = {0};
            if (wbuf_set(&rel, l->rel, strlen(l->rel), e) ||
                (l->rel[0] && wbuf_add(&rel, "/", 1, e)) ||
                wbuf_add(&rel, l->ent[i].name, strlen(l->ent[i].name), e)) {
                wbuf_free(&rel);
                return CLIPSCORE_ENOMEM;
            }
            /* cs_wds_find walks only the folders on its key's path. */
            if (r->want_key &&
                !(strncmp(r->want_key, rel.p, rel.len) == 0 && r->want_key[rel.len] == '/')) {
                wbuf_free(&rel);
                continue;
            }
            sample_reset(r);
            int rc = folder_push(r, rel.p, e);
            if (rc == 1) {
                rc = wbuf_set(&r->key, rel.p, rel.len, e);
                r->reading = 0;
                wbuf_free(&rel);
                if (rc) return rc;
                sample_finish(r, s);
                return 1;
            }
            wbuf_free(&rel);
            if (rc < 0) return rc;
            continue;
        }
        if (i < l->group_end) continue; /* part of a group already given */
        int rc = folder_group(r, l, i, e);
        if (rc < 0) return rc;
        if (rc == 1) {
            sample_finish(r, s);
            return 1;
        }
    }
    return 0;
}

/* ---- the interface ---- */

static int has_suffix_ci(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    if (n < k) return 0;
    for (size_t i = 0; i < k; i++)
        if (ascii_lower((unsigned char)s[n - k + i]) != suffix[i]) return 0;
    return 1;
}

/* Whether libarchive reads a tar header at the start of the file. */
static int sniff_tar(const char *path) {
    struct archive *a = archive_read_new();
    if (!a) return 0;
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    int is_tar = 0;
    struct archive_entry *ent;
    if (archive_read_open_filename(a, path, 1 << 14) == ARCHIVE_OK) {
        int rc = archive_read_next_header(a, &ent);
        is_tar = (rc == ARCHIVE_OK || rc == ARCHIVE_WARN) &&
                 (archive_format(a) & ARCHIVE_FORMAT_BASE_MASK) == ARCHIVE_FORMAT_TAR;
    }
    archive_read_free(a);
    return is_tar;
}

int cs_wds_kind(const char *path) {
    static const char *const suffixes[] = {".tar",     ".tar.gz", ".tgz",
                                           ".tar.bz2", ".tar.xz", ".tar.zst"};
    if (!path || !path[0]) return 0;
    struct stat st;
    int exists = stat(path, &st) == 0;
    if (exists && S_ISDIR(st.st_mode)) return 2;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (has_suffix_ci(path, suffixes[i])) return 1;
    if (!exists || !S_ISREG(st.st_mode)) return 0;
    return sniff_tar(path);
}

int cs_wds_open(const char *path, const cs_wds_options *o, cs_wds_reader **out, cs_error *e) {
    *out = NULL;
    cs_wds_options def = {0};
    if (!o) o = &def;
    cs_wds_reader *r = cs_calloc(1, sizeof *r, e);
    if (!r) return CLIPSCORE_ENOMEM;
    r->skip_data = o->skip_data;
    r->max_member = o->max_member ? o->max_member : CS_WDS_MAX_MEMBER_DEFAULT;
    r->path = cs_strdup(path, e);
    r->image_keys = key_list(o->image_key, DEFAULT_IMAGE_KEYS, e);
    r->caption_keys = key_list(o->caption_key, DEFAULT_CAPTION_KEYS, e);
    if (!r->path || !r->image_keys || !r->caption_keys || wbuf_set(&r->key, "", 0, e)) {
        cs_wds_close(r);
        return CLIPSCORE_ENOMEM;
    }
    int rc = cs_is_dir(path) ? folder_push(r, "", e) : tar_open(r, e);
    if (rc == 1) rc = cs_fail(e, CLIPSCORE_EIO, "%s", r->err.p ? r->err.p : path);
    if (rc) {
        cs_wds_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

int cs_wds_next(cs_wds_reader *r, cs_wds_sample *s, cs_error *e) {
    return r->ar ? tar_next(r, s, e) : folder_next(r, s, e);
}

void cs_wds_close(cs_wds_reader *r) {
    if (!r) return;
    if (r->ar) archive_read_free(r->ar);
    for (int i = 0; i < r->depth; i++) level_free(&r->levels[i]);
    free(r->levels);
    wbuf *bufs[] = {&r->key, &r->image, &r->caption,    &r->json,      &r->url,
                    &r->ext, &r->err,   &r->image_path, &r->pend_name, &r->pend_ext};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) wbuf_free(bufs[i]);
    free(r->path);
    free(r->image_keys);
    free(r->caption_keys);
    free(r->want_key);
    free(r->open_error);
    free(r);
}

int cs_wds_find(const char *path, const cs_wds_options *o, const char *key, cs_wds_reader **holder,
                cs_wds_sample *s, cs_error *e) {
    *holder = NULL;
    cs_wds_reader *r;
    int rc = cs_wds_open(path, o, &r, e);
    if (rc) return rc;
    if (!(r->want_key = cs_strdup(key, e))) {
        cs_wds_close(r);
        return CLIPSCORE_ENOMEM;
    }
    while ((rc = cs_wds_next(r, s, e)) == 1)
        if (strcmp(s->key, key) == 0) {
            *holder = r;
            return 0;
        }
    cs_wds_close(r);
    return rc < 0 ? rc : 1;
}

size_t cs_wds_memory_bytes(const cs_wds_reader *r) {
    const wbuf *bufs[] = {&r->key, &r->image, &r->caption,    &r->json,      &r->url,
                          &r->ext, &r->err,   &r->image_path, &r->pend_name, &r->pend_ext};
    size_t n = sizeof *r;
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) n += bufs[i]->cap;
    n += (size_t)r->cap_levels * sizeof *r->levels;
    for (int i = 0; i < r->depth; i++)
        n += r->levels[i].names_bytes + r->levels[i].n * sizeof(wds_entry) +
             strlen(r->levels[i].rel) + 1;
    return n;
}
