/* embed_cache.h - a bounded map from a string key (image path, caption) to
 * its embedding, so repeated images and captions are encoded once. When
 * full, the oldest entry is replaced (FIFO): memory stays at
 * capacity * (dim floats + key), whatever the number of rows. */
#ifndef CLIPSCORE_EMBED_CACHE_H
#define CLIPSCORE_EMBED_CACHE_H

#include <stddef.h>

#include "util.h"

typedef struct cs_embed_cache cs_embed_cache;

int cs_embed_cache_new(int capacity, int dim, cs_embed_cache **out, cs_error *e);
void cs_embed_cache_free(cs_embed_cache *c);
/* The cached embedding of key (dim floats, valid until the next put), or NULL. */
const float *cs_embed_cache_get(const cs_embed_cache *c, const char *key);
/* Stores a copy of emb under key (replacing the oldest entry when full). */
int cs_embed_cache_put(cs_embed_cache *c, const char *key, const float *emb, cs_error *e);
/* Forgets every entry (the hit count stays). */
void cs_embed_cache_clear(cs_embed_cache *c);
long cs_embed_cache_hits(const cs_embed_cache *c);

#endif
