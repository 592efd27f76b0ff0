/* fetch.h - model names to local folders: the built-in OpenAI names, names
 * from a registry file, hf:ORG/NAME[@REV] hub repositories and plain local
 * paths; missing files are downloaded (libcurl) into a cache, verified
 * against their SHA-256 and moved into place atomically.
 *
 * Leaves out: reading the model files (the loader recognises a folder by its
 * files) and the command line (`clipscore models`, which calls these).
 *
 * Environment: CLIPSCORE_CACHE, XDG_CACHE_HOME, HOME (cache folder),
 * CLIPSCORE_OFFLINE=1, CLIPSCORE_REGISTRY=FILE, CLIPSCORE_MIRROR=URL,
 * HF_ENDPOINT, HF_TOKEN. */
#ifndef CLIPSCORE_FETCH_H
#define CLIPSCORE_FETCH_H

#include <stdio.h>

#include "util.h"

typedef struct cs_fetch_opts {
    int offline;           /* 1: never touch the network */
    int progress;          /* 1: progress on stderr (a bar on a terminal) */
    const char *cache_dir; /* NULL: $CLIPSCORE_CACHE, $XDG_CACHE_HOME/clipscore,
                              else ~/.cache/clipscore */
} cs_fetch_opts;

/* offline from CLIPSCORE_OFFLINE (set and not "0"), progress 1, cache_dir NULL. */
cs_fetch_opts cs_fetch_default_opts(void);

/* "ViT-B/32". */
const char *cs_default_model_name(void);

/* Turns a model spec (NULL or "": the default name) into a local path the
 * caller frees: a registry or built-in name, or hf:ORG/NAME[@REV], gives its
 * cache folder (fetched first when incomplete, unless offline: then
 * CLIPSCORE_EOFFLINE); any other existing file or folder is returned as is.
 * o may be NULL (cs_fetch_default_opts()). */
int cs_model_resolve(const char *spec, const cs_fetch_opts *o, char **local_path, cs_error *e);

/* Like cs_model_resolve for names only (a path is CLIPSCORE_EARG); for hf:
 * names it also asks the hub again and updates files that changed.
 * local_path may be NULL. */
int cs_models_fetch(const char *name, const cs_fetch_opts *o, char **local_path, cs_error *e);

/* Writes one line per known name (built-in and registry, cached or not) and
 * per cached hf: repository: status, size on disk and folder. */
int cs_models_list(FILE *out, const cs_fetch_opts *o, cs_error *e);

/* The cache folder these options use (caller frees); not created here. */
int cs_fetch_cache_dir(const cs_fetch_opts *o, char **dir, cs_error *e);

/* url with its scheme and host (and port) replaced by mirror (e.g.
 * "http://host:8080" or "http://host/prefix"), path and query kept. Caller
 * frees; NULL on error. Exposed for tests; downloads apply CLIPSCORE_MIRROR. */
char *cs_fetch_mirror_url(const char *url, const char *mirror, cs_error *e);

/* Downloads are hashed as they are written; only a .part an earlier run
 * left is read back (its prefix, once, to resume the hash). The bytes read
 * back so far in this process, for tests. */
long long cs_fetch_bytes_read_back(void);

#endif
