/* embed_cache.c - bounded FIFO cache of embeddings by string key: a ring of
 * slots (the eviction order) indexed by an open-addressing hash table with
 * linear probing. Evicting a slot removes its key with backward-shift
 * deletion, so the table never fills with tombstones. */
#include "embed_cache.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cs_embed_cache {
    int cap, dim;
    int next; /* ring slot replaced next */
    long hits;
    char **keys;  /* [cap] key of each ring slot, NULL when empty */
    float *emb;   /* [cap][dim] */
    int *table;   /* [tsize] ring slot, or -1 */
    size_t tsize; /* power of two, at least twice cap */
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int cs_embed_cache_new(int capacity, int dim, cs_embed_cache **out, cs_error *e) {
    *out = NULL;
    if (capacity < 1 || dim < 1) return cs_fail(e, CLIPSCORE_EARG, "embedding cache: bad size");
    cs_embed_cache *c = cs_calloc(1, sizeof *c, e);
    if (!c) return CLIPSCORE_ENOMEM;
    c->cap = capacity;
    c->dim = dim;
    c->tsize = 16;
    while (c->tsize < (size_t)capacity * 2) c->tsize *= 2;
    c->keys = cs_calloc((size_t)capacity, sizeof *c->keys, e);
    c->emb = cs_malloc((size_t)capacity * (size_t)dim, sizeof *c->emb, e);
    c->table = cs_malloc(c->tsize, sizeof *c->table, e);
    if (!c->keys || !c->emb || !c->table) {
        cs_embed_cache_free(c);
        return CLIPSCORE_ENOMEM;
    }
    for (size_t i = 0; i < c->tsize; i++) c->table[i] = -1;
    *out = c;
    return 0;
}

void cs_embed_cache_free(cs_embed_cache *c) {
    if (!c) return;
    if (c->keys)
        for (int i = 0; i < c->cap; i++) free(c->keys[i]);
    free(c->keys);
    free(c->emb);
    free(c->table);
    free(c);
}

/* Table position holding key, or the empty position where it would go. */
static size_t probe(const cs_embed_cache *c, const char *key) {
    size_t mask = c->tsize - 1, i = (size_t)hash_str(key) & mask;
    while (c->table[i] >= 0 && strcmp(c->keys[c->table[i]], key) != 0) i = (i + 1) & mask;
    return i;
}

const float *cs_embed_cache_get(const cs_embed_cache *c, const char *key) {
    size_t i = probe(c, key);
    if (c->table[i] < 0) return NULL;
    ((cs_embed_cache *)c)->hits++;
    return c->emb + (size_t)c->table[i] * (size_t)c->dim;
}

static void table_remove(cs_embed_cache *c, size_t i) {
    size_t mask = c->tsize - 1;
    c->table[i] = -1;
    /* Backward-shift: move later entries of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; c->table[j] >= 0; j = (j + 1) & mask) {
        size_t home = (size_t)hash_str(c->keys[c->table[j]]) & mask;
        /* Entry j may fill hole i when its home is not in (i, j]. */
        int between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            c->table[i] = c->table[j];
            c->table[j] = -1;
            i = j;
        }
    }
}

int cs_embed_cache_put(cs_embed_cache *c, const char *key, const float *emb, cs_error *e) {
    size_t pos = probe(c, key);
    if (c->table[pos] >= 0) { /* already there: refresh the value */
        memcpy(c->emb + (size_t)c->table[pos] * (size_t)c->dim, emb, (size_t)c->dim * sizeof *emb);
        return 0;
    }
    char *k = cs_strdup(key, e);
    if (!k) return CLIPSCORE_ENOMEM;
    int slot = c->next;
    c->next = (c->next + 1) % c->cap;
    if (c->keys[slot]) { /* evict the oldest */
        table_remove(c, probe(c, c->keys[slot]));
        free(c->keys[slot]);
    }
    c->keys[slot] = k;
    memcpy(c->emb + (size_t)slot * (size_t)c->dim, emb, (size_t)c->dim * sizeof *emb);
    c->table[probe(c, k)] = slot;
    return 0;
}

void cs_embed_cache_clear(cs_embed_cache *c) {
    for (int i = 0; i < c->cap; i++) {
        free(c->keys[i]);
        c->keys[i] = NULL;
    }
    for (size_t i = 0; i < c->tsize; i++) c->table[i] = -1;
    c->next = 0;
}

long cs_embed_cache_hits(const cs_embed_cache *c) {
    return c->hits;
}
