/* tokenizer.c - CLIP's byte-level BPE tokenizer (OpenAI's SimpleTokenizer).
 *
 * Covers: loading vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz
 * into integer tables (token strings are only needed while loading), the
 * pre-tokenisation pattern
 *     <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * (case-insensitive, as the regex module runs it), BPE by merge rank with
 * "</w>" on the last symbol, and [sot, ids..., eot] with truncation.
 * Leaves out: text cleanup (text_clean.c), detokenisation, and the
 * reference's per-word cache (encoding keeps no state, so it is
 * thread-safe). */
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

#include "text_clean.h"

/* OpenAI's slice of the merges list: lines [1, 49152 - 256 - 2 + 1). */
#define CS_OPENAI_MERGES (49152 - 256 - 2)
/* Pieces up to this many bytes use the direct algorithm; longer ones the
 * heap, which gives the same result in O(n log n) when merges are ordered. */
#define CS_BPE_SHORT 64
/* Token ids must be below this: tables are indexed by id, so one huge id in
 * a small vocab.json would cost gigabytes (CLIP's largest id is 49407). */
#define CS_MAX_TOKEN_ID (1 << 24)

struct cs_tokenizer {
    int32_t byte_id[256];     /* token of each byte inside a word */
    int32_t byte_end_id[256]; /* the same with "</w>": the last byte of a word */
    int32_t sot, eot;
    int vocab_size; /* largest id + 1 */
    /* Merges: open addressing keyed by (left id << 32 | right id). */
    uint64_t *mkey;
    int32_t *mrank, *mresult;
    size_t mmask;
    /* 1 when every merge uses only byte tokens or tokens made by earlier
     * merges, and every merged token is made by one merge only: then a
     * merge never enables one of lower rank, and the heap order equals the
     * reference's. */
    int ordered;
};

#define EMPTY_KEY UINT64_MAX

/* ---- string -> id map used while loading ---------------------------------- */

typedef struct strmap {
    const char **key;
    uint32_t *klen;
    int32_t *val;
    size_t mask;
} strmap;

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static int strmap_init(strmap *m, size_t n, cs_error *e) {
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    m->key = cs_calloc(cap, sizeof *m->key, e);
    m->klen = cs_calloc(cap, sizeof *m->klen, e);
    m->val = cs_calloc(cap, sizeof *m->val, e);
    m->mask = cap - 1;
    return (m->key && m->klen && m->val) ? 0 : CLIPSCORE_ENOMEM;
}

static void strmap_free(strmap *m) {
    free(m->key);
    free(m->klen);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* Inserts or overwrites: a later duplicate wins, as in a Python dict. */
static void strmap_put(strmap *m, const char *s, size_t n, int32_t v) {
    size_t i = hash_bytes(s, n) & m->mask;
    while (m->key[i] && !(m->klen[i] == n && memcmp(m->key[i], s, n) == 0)) i = (i + 1) & m->mask;
    m->key[i] = s;
    m->klen[i] = (uint32_t)n;
    m->val[i] = v;
}

static int32_t strmap_get(const strmap *m, const char *s, size_t n) {
    size_t i = hash_bytes(s, n) & m->mask;
    while (m->key[i]) {
        if (m->klen[i] == n && memcmp(m->key[i], s, n) == 0) return m->val[i];
        i = (i + 1) & m->mask;
    }
    return -1;
}

/* ---- merge table ----------------------------------------------------------- */

static inline uint64_t pair_key(int32_t a, int32_t b) {
    return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
}

static inline size_t pair_slot(uint64_t k, size_t mask) {
    return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 20) & mask;
}

/* Rank of merging a then b (INT32_MAX when they do not merge). */
static inline int32_t merge_rank(const cs_tokenizer *t, int32_t a, int32_t b, int32_t *result) {
    uint64_t k = pair_key(a, b);
    size_t i = pair_slot(k, t->mmask);
    for (;;) {
        uint64_t s = t->mkey[i];
        if (s == k) {
            *result = t->mresult[i];
            return t->mrank[i];
        }
        if (s == EMPTY_KEY) {
            *result = -1;
            return INT32_MAX;
        }
        i = (i + 1) & t->mmask;
    }
}

/* ---- building from token strings ------------------------------------------ */

/* One merge line: the two token strings (pointing into the loaded file). */
typedef struct merge_src {
    const char *a, *b;
    uint32_t alen, blen;
    long line; /* for messages */
} merge_src;

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the others get U+0100 onwards in byte order. Writes the UTF-8 of the
 * stand-in character of each byte (2 bytes at most). */
static void byte_chars(char out[256][3], uint8_t len[256], int order[256]) {
    int n = 0, k = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        if (printable) order[k++] = b; /* the reference lists these first */
    }
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        unsigned cp = printable ? (unsigned)b : 256u + (unsigned)n++;
        if (!printable) order[k++] = b;
        if (cp < 0x80) {
            out[b][0] = (char)cp;
            len[b] = 1;
        } else {
            out[b][0] = (char)(0xC0 | (cp >> 6));
            out[b][1] = (char)(0x80 | (cp & 0x3F));
            len[b] = 2;
        }
        out[b][len[b]] = '\0';
    }
}

/* Fills the integer tables of t from a token -> id map and the merges in
 * rank order. `what_vocab` and `what_merges` name the files in messages. */
static int build_tables(cs_tokenizer *t, const strmap *vocab, int32_t max_id,
                        const merge_src *merges, size_t n_merges, const char *what_vocab,
                        const char *what_merges, cs_error *e) {
    char bc[256][3];
    uint8_t bl[256];
    int order[256];
    byte_chars(bc, bl, order);
    for (int b = 0; b < 256; b++) {
        char end[8];
        memcpy(end, bc[b], bl[b]);
        memcpy(end + bl[b], "</w>", 4);
        t->byte_id[b] = strmap_get(vocab, bc[b], bl[b]);
        t->byte_end_id[b] = strmap_get(vocab, end, (size_t)bl[b] + 4);
        if (t->byte_id[b] < 0 || t->byte_end_id[b] < 0)
            return cs_fail(e, CLIPSCORE_EMODEL, "%s: no token for byte 0x%02X (\"%s%s\")",
                           what_vocab, b, bc[b], t->byte_id[b] < 0 ? "" : "</w>");
    }
    t->sot = strmap_get(vocab, "<|startoftext|>", 15);
    t->eot = strmap_get(vocab, "<|endoftext|>", 13);
    if (t->sot < 0 || t->eot < 0)
        return cs_fail(e, CLIPSCORE_EMODEL, "%s: no %s token", what_vocab,
                       t->sot < 0 ? "<|startoftext|>" : "<|endoftext|>");
    /* Without merges every word falls apart into byte tokens: a tokenizer
     * that loads but encodes nothing as its model expects. */
    if (n_merges == 0)
        return cs_fail(e, CLIPSCORE_EMODEL,
                       "%s: no merges (empty, or only its version header); every caption would "
                       "become byte tokens",
                       what_merges);
    t->vocab_size = max_id + 1;

    size_t cap = 16;
    while (cap < n_merges * 2 + 2) cap *= 2;
    t->mkey = cs_malloc(cap, sizeof *t->mkey, e);
    t->mrank = cs_malloc(cap, sizeof *t->mrank, e);
    t->mresult = cs_malloc(cap, sizeof *t->mresult, e);
    /* made_by[id]: rank of the merge that makes the token, -1 for bytes,
     * INT32_MAX for tokens no merge makes. */
    int32_t *made_by = cs_malloc((size_t)max_id + 1, sizeof *made_by, e);
    if (!t->mkey || !t->mrank || !t->mresult || !made_by) {
        free(made_by);
        return CLIPSCORE_ENOMEM;
    }
    memset(t->mkey, 0xFF, cap * sizeof *t->mkey);
    t->mmask = cap - 1;
    for (int32_t i = 0; i <= max_id; i++) made_by[i] = INT32_MAX;
    for (int b = 0; b < 256; b++) made_by[t->byte_id[b]] = made_by[t->byte_end_id[b]] = -1;
    t->ordered = 1;

    char *joined = NULL;
    size_t joined_cap = 0;
    int rc = 0;
    for (size_t r = 0; r < n_merges && !rc; r++) {
        const merge_src *m = &merges[r];
        int32_t a = strmap_get(vocab, m->a, m->alen), b = strmap_get(vocab, m->b, m->blen);
        if (a < 0 || b < 0) {
            const char *s = a < 0 ? m->a : m->b;
            int sl = (int)(a < 0 ? m->alen : m->blen);
            rc = cs_fail(e, CLIPSCORE_EMODEL, "%s:%ld: token \"%.*s\" is not in %s", what_merges,
                         m->line, sl > 200 ? 200 : sl, s, what_vocab);
            break;
        }
        size_t jl = (size_t)m->alen + m->blen;
        if (jl > joined_cap) {
            char *p = realloc(joined, jl * 2);
            if (!p) {
                rc = cs_fail(e, CLIPSCORE_ENOMEM, "out of memory loading merges");
                break;
            }
            joined = p;
            joined_cap = jl * 2;
        }
        memcpy(joined, m->a, m->alen);
        memcpy(joined + m->alen, m->b, m->blen);
        int32_t res = strmap_get(vocab, joined, jl);
        if (res < 0) {
            rc = cs_fail(e, CLIPSCORE_EMODEL, "%s:%ld: merged token \"%.*s\" is not in %s",
                         what_merges, m->line, (int)(jl > 200 ? 200 : jl), joined, what_vocab);
            break;
        }
        if (made_by[a] >= (int32_t)r || made_by[b] >= (int32_t)r) t->ordered = 0;
        if (made_by[res] != INT32_MAX) t->ordered = 0;
        made_by[res] = (int32_t)r;

        uint64_t k = pair_key(a, b);
        size_t i = pair_slot(k, t->mmask);
        while (t->mkey[i] != EMPTY_KEY && t->mkey[i] != k) i = (i + 1) & t->mmask;
        if (t->mkey[i] == k) t->ordered = 0; /* a repeated pair: the later rank wins */
        t->mkey[i] = k;
        t->mrank[i] = (int32_t)r;
        t->mresult[i] = res;
    }
    free(joined);
    free(made_by);
    return rc;
}

void cs_tokenizer_free(cs_tokenizer *tok) {
    if (!tok) return;
    free(tok->mkey);
    free(tok->mrank);
    free(tok->mresult);
    free(tok);
}

/* Splits a merges line at runs of ASCII whitespace (Python's str.split()
 * for the characters these files hold). Returns the number of fields, and
 * the first two. */
static int split_fields(const char *s, size_t n, const char **f, uint32_t *fl) {
    int nf = 0;
    size_t i = 0;
    while (i < n) {
        while (i < n &&
               (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f'))
            i++;
        if (i >= n) break;
        size_t st = i;
        while (i < n &&
               !(s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\v' || s[i] == '\f'))
            i++;
        if (nf < 2) {
            f[nf] = s + st;
            fl[nf] = (uint32_t)(i - st);
        }
        nf++;
    }
    return nf;
}

/* ---- Hugging Face layout ---------------------------------------------------- */

int cs_tokenizer_load_hf(const char *vocab_json, const char *merges_txt, cs_tokenizer **out,
                         cs_error *e) {
    if (!vocab_json || !merges_txt || !out)
        return cs_fail(e, CLIPSCORE_EARG, "cs_tokenizer_load_hf: NULL argument");
    *out = NULL;
    char *vtext = NULL, *mtext = NULL;
    size_t vlen = 0, mlen = 0;
    cJSON *root = NULL;
    strmap vocab = {0};
    merge_src *merges = NULL;
    cs_tokenizer *t = NULL;
    int rc = cs_read_file(vocab_json, 256u << 20, &vtext, &vlen, e);
    if (!rc) rc = cs_read_file(merges_txt, 256u << 20, &mtext, &mlen, e);
    if (rc) goto done;

    root = cJSON_ParseWithLength(vtext, vlen);
    if (!root || !cJSON_IsObject(root)) {
        const char *at = root ? NULL : cJSON_GetErrorPtr();
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: not a JSON object of token -> id%s%.20s%s",
                     vocab_json, at ? " (error near \"" : "", at ? at : "", at ? "\")" : "");
        goto done;
    }
    size_t n_tokens = (size_t)cJSON_GetArraySize(root);
    if ((rc = strmap_init(&vocab, n_tokens + 1, e))) goto done;
    int32_t max_id = -1;
    for (const cJSON *it = root->child; it; it = it->next) {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || !(d >= 0 && d < CS_MAX_TOKEN_ID) || d != (double)(int32_t)d) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT,
                         "%s: token \"%.200s\": id is not an integer in [0, %d)", vocab_json,
                         it->string ? it->string : "", CS_MAX_TOKEN_ID);
            goto done;
        }
        int32_t id = (int32_t)d;
        strmap_put(&vocab, it->string, strlen(it->string), id);
        if (id > max_id) max_id = id;
    }

    /* Merges: skip a "#version" header; take as many as the vocabulary has
     * merged tokens (all but 256 bytes, their "</w>" forms and 2 specials),
     * as the reference's slice does for CLIP's files. */
    size_t want = n_tokens > 514 ? n_tokens - 514 : 0;
    merges = cs_malloc(want + 1, sizeof *merges, e);
    if (!merges) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    size_t n_merges = 0, pos = 0;
    long line = 0;
    while (pos < mlen && n_merges < want) {
        size_t end = pos;
        while (end < mlen && mtext[end] != '\n') end++;
        line++;
        const char *s = mtext + pos;
        size_t n = end - pos;
        pos = end + 1;
        if (line == 1 && n >= 8 && memcmp(s, "#version", 8) == 0) continue;
        const char *f[2];
        uint32_t fl[2];
        int nf = split_fields(s, n, f, fl);
        if (nf == 0) continue; /* blank lines change no relative rank */
        if (nf != 2) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s:%ld: expected two tokens separated by a space",
                         merges_txt, line);
            goto done;
        }
        merges[n_merges++] = (merge_src){f[0], f[1], fl[0], fl[1], line};
    }
    if (!(t = cs_calloc(1, sizeof *t, e))) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    rc = build_tables(t, &vocab, max_id, merges, n_merges, vocab_json, merges_txt, e);

done:
    if (rc) {
        cs_tokenizer_free(t);
        t = NULL;
    }
    *out = t;
    free(merges);
    strmap_free(&vocab);
    cJSON_Delete(root);
    free(vtext);
    free(mtext);
    return rc;
}

/* ---- OpenAI layout ------------------------------------------------------------- */

/* Inflates a gzip file until `lines` newlines have been seen (or the end). */
static int gunzip_lines(const char *path, long lines, char **out, size_t *out_len, cs_error *e) {
    char *gz = NULL;
    size_t gzlen = 0;
    int rc = cs_read_file(path, 256u << 20, &gz, &gzlen, e);
    if (rc) return rc;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        free(gz);
        return cs_fail(e, CLIPSCORE_ENOMEM, "%s: cannot start gzip decoding", path);
    }
    size_t cap = 4u << 20, len = 0;
    char *buf = malloc(cap + 1);
    long seen = 0;
    int zrc = Z_OK, bad = 0;
    zs.next_in = (Bytef *)gz;
    zs.avail_in = (uInt)gzlen;
    while (buf && seen < lines) {
        if (len == cap) {
            char *p = cap < (SIZE_MAX - 1) / 2 ? realloc(buf, cap * 2 + 1) : NULL;
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        zs.next_out = (Bytef *)(buf + len);
        zs.avail_out = (uInt)(cap - len < (1u << 30) ? cap - len : (1u << 30));
        zrc = inflate(&zs, Z_NO_FLUSH);
        size_t now = (size_t)((char *)zs.next_out - buf);
        for (size_t i = len; i < now; i++) seen += buf[i] == '\n';
        len = now;
        if (zrc == Z_STREAM_END) break;
        /* An error, or input used up with room left: corrupt or cut short. */
        if (zrc != Z_OK || (zs.avail_in == 0 && zs.avail_out != 0)) {
            bad = 1;
            break;
        }
    }
    if (bad)
        rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: not a valid gzip file (%s)", path,
                     zs.msg ? zs.msg : "truncated or corrupt");
    else if (!buf)
        rc = cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory decompressing", path);
    inflateEnd(&zs);
    free(gz);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

int cs_tokenizer_load_bpe_gz(const char *bpe_gz, cs_tokenizer **out, cs_error *e) {
    if (!bpe_gz || !out)
        return cs_fail(e, CLIPSCORE_EARG, "cs_tokenizer_load_bpe_gz: NULL argument");
    *out = NULL;
    char *text = NULL, *arena = NULL;
    size_t len = 0;
    strmap vocab = {0};
    merge_src *merges = NULL;
    cs_tokenizer *t = NULL;
    int rc = gunzip_lines(bpe_gz, CS_OPENAI_MERGES + 1, &text, &len, e);
    if (rc) return rc;

    /* The reference: lines = text.split('\n')[1 : 48895], each a merge;
     * vocab = 256 byte characters, the same with "</w>", each merge joined,
     * then the two special tokens, numbered in that order. */
    merges = cs_malloc(CS_OPENAI_MERGES, sizeof *merges, e);
    size_t arena_cap = 256 * 3 + 256 * 7 + 32, arena_len = 0;
    arena = cs_malloc(arena_cap + len, 1, e); /* joined merges take at most the file's size */
    if (!merges || !arena || (rc = strmap_init(&vocab, 512 + CS_OPENAI_MERGES + 2, e))) {
        rc = rc ? rc : CLIPSCORE_ENOMEM;
        goto done;
    }
    char bc[256][3];
    uint8_t bl[256];
    int order[256];
    byte_chars(bc, bl, order);
    int32_t id = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < 256; k++) {
            int b = order[k];
            char *s = arena + arena_len;
            memcpy(s, bc[b], bl[b]);
            size_t n = bl[b];
            if (pass) memcpy(s + n, "</w>", 4), n += 4;
            arena_len += n;
            strmap_put(&vocab, s, n, id++);
        }
    }
    size_t n_merges = 0, pos = 0;
    long line = 0;
    while (pos <= len && line < CS_OPENAI_MERGES + 1) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        line++;
        const char *s = text + pos;
        size_t n = end - pos;
        int last = end >= len;
        pos = end + 1;
        if (line == 1) continue;
        if (last && n == 0) break; /* the split's empty tail after a final '\n' */
        const char *f[2];
        uint32_t fl[2];
        int nf = split_fields(s, n, f, fl);
        if (nf != 2) {
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s:%ld: expected two tokens separated by a space",
                         bpe_gz, line);
            goto done;
        }
        merges[n_merges] = (merge_src){f[0], f[1], fl[0], fl[1], line};
        char *j = arena + arena_len;
        memcpy(j, f[0], fl[0]);
        memcpy(j + fl[0], f[1], fl[1]);
        arena_len += (size_t)fl[0] + fl[1];
        strmap_put(&vocab, j, (size_t)fl[0] + fl[1], id++);
        n_merges++;
        if (last) break;
    }
    strmap_put(&vocab, "<|startoftext|>", 15, id++);
    strmap_put(&vocab, "<|endoftext|>", 13, id++);
    if (!(t = cs_calloc(1, sizeof *t, e))) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    rc = build_tables(t, &vocab, id - 1, merges, n_merges, bpe_gz, bpe_gz, e);

done:
    if (rc) {
        cs_tokenizer_free(t);
        t = NULL;
    }
    *out = t;
    strmap_free(&vocab);
    free(merges);
    free(arena);
    free(text);
    return rc;
}

int32_t cs_tokenizer_sot(const cs_tokenizer *tok) {
    return tok->sot;
}

int32_t cs_tokenizer_eot(const cs_tokenizer *tok) {
    return tok->eot;
}

int cs_tokenizer_vocab_size(const cs_tokenizer *tok) {
    return tok->vocab_size;
}

/* ---- BPE ------------------------------------------------------------------------ */

/* The reference's loop: merge every occurrence (left to right) of the pair
 * with the lowest rank until no pair merges. Works in place; returns the
 * new length. */
static size_t bpe_direct(const cs_tokenizer *t, int32_t *w, size_t n) {
    while (n > 1) {
        int32_t best = INT32_MAX, a = 0, b = 0, m = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            int32_t res, r = merge_rank(t, w[i], w[i + 1], &res);
            if (r < best) best = r, a = w[i], b = w[i + 1], m = res;
        }
        if (best == INT32_MAX) break;
        size_t j = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == a && w[i + 1] == b) {
                w[j++] = m;
                i += 2;
            } else {
                w[j++] = w[i++];
            }
        }
        n = j;
    }
    return n;
}

/* Min-heap of (rank << 32 | position). */
static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h[p] <= v) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

/* Same result as bpe_direct when the merges are ordered (see struct): pairs
 * are merged by (rank, position), over a linked list. */
static int bpe_heap(const cs_tokenizer *t, int32_t *w, size_t n, size_t *out_n, cs_error *e) {
    int32_t *next = cs_malloc(n, sizeof *next, e), *prev = cs_malloc(n, sizeof *prev, e);
    uint64_t *heap = cs_malloc(3 * n, sizeof *heap, e);
    if (!next || !prev || !heap) {
        free(next), free(prev), free(heap);
        return CLIPSCORE_ENOMEM;
    }
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        next[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
        prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        int32_t res, r = merge_rank(t, w[i], w[i + 1], &res);
        if (r != INT32_MAX) heap_push(heap, &hn, ((uint64_t)r << 32) | i);
    }
    while (hn > 0) {
        uint64_t top = heap_pop(heap, &hn);
        int32_t r = (int32_t)(top >> 32), p = (int32_t)(top & 0xFFFFFFFFu);
        int32_t q = next[p];
        if (w[p] < 0 || q < 0) continue; /* merged away, or now last */
        int32_t res, cur = merge_rank(t, w[p], w[q], &res);
        if (cur != r) continue; /* stale: a neighbour changed */
        w[p] = res;
        w[q] = -1;
        next[p] = next[q];
        if (next[q] >= 0) prev[next[q]] = p;
        if (prev[p] >= 0) {
            int32_t r2 = merge_rank(t, w[prev[p]], w[p], &res);
            if (r2 != INT32_MAX) heap_push(heap, &hn, ((uint64_t)r2 << 32) | (uint32_t)prev[p]);
        }
        if (next[p] >= 0) {
            int32_t r2 = merge_rank(t, w[p], w[next[p]], &res);
            if (r2 != INT32_MAX) heap_push(heap, &hn, ((uint64_t)r2 << 32) | (uint32_t)p);
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) w[k++] = w[i];
    *out_n = k;
    free(next);
    free(prev);
    free(heap);
    return 0;
}

/* ---- pre-tokenisation ------------------------------------------------------------ */

enum { CH_SPACE, CH_LETTER, CH_NUMBER, CH_OTHER, CH_NONE };

static int char_class(uint32_t c) {
    if (c < 0x80) {
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return CH_LETTER;
        if (c >= '0' && c <= '9') return CH_NUMBER;
        return cs_text_is_regex_space(c) ? CH_SPACE : CH_OTHER;
    }
    if (cs_text_is_regex_space(c)) return CH_SPACE;
    /* Under IGNORECASE the regex module puts U+0345 (which case-folds to a
     * letter) in no class of the pattern, so it starts no piece. */
    if (c == 0x0345) return CH_NONE;
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return CH_LETTER;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return CH_NUMBER;
    default:
        return CH_OTHER;
    }
}

/* Case-insensitive match of a lowercase ASCII literal, as the regex module
 * does it (simple case folding: 's' also matches U+017F LONG S). Sets
 * *exact when every character matched literally. */
static int match_ci(const uint32_t *v, size_t n, const char *lit, int *exact) {
    size_t i = 0;
    *exact = 1;
    for (; lit[i]; i++) {
        if (i >= n) return 0;
        uint32_t c = v[i], l = (uint32_t)(unsigned char)lit[i];
        if (c == l) continue;
        *exact = 0;
        if (l >= 'a' && l <= 'z' && c == l - 32) continue;
        if (l == 's' && c == 0x017F) continue;
        return 0;
    }
    return (int)i;
}

/* Length of the piece that starts at v[0] (0 when v[0] starts none);
 * *special gets the special token id for an exact "<|...|>" piece. */
static size_t next_piece(const cs_tokenizer *t, const uint32_t *v, size_t n, int32_t *special) {
    int exact, m;
    *special = -1;
    if (v[0] == '<') {
        if ((m = match_ci(v, n, "<|startoftext|>", &exact))) {
            if (exact) *special = t->sot;
            return (size_t)m;
        }
        if ((m = match_ci(v, n, "<|endoftext|>", &exact))) {
            if (exact) *special = t->eot;
            return (size_t)m;
        }
    }
    if (v[0] == '\'') {
        static const char *const contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
        for (size_t i = 0; i < sizeof contractions / sizeof contractions[0]; i++)
            if ((m = match_ci(v, n, contractions[i], &exact))) return (size_t)m;
    }
    int cls = char_class(v[0]);
    size_t k = 1;
    if (cls == CH_LETTER) {
        while (k < n && char_class(v[k]) == CH_LETTER) k++;
        return k;
    }
    if (cls == CH_NUMBER) return 1;
    if (cls == CH_OTHER) {
        while (k < n && char_class(v[k]) == CH_OTHER) k++;
        return k;
    }
    return 0;
}

/* ---- encode ----------------------------------------------------------------------- */

int cs_tokenizer_encode(const cs_tokenizer *tok, const char *text, int context_length, int32_t *ids,
                        int *n_ids, unsigned *flags, cs_error *e) {
    if (flags) *flags = 0;
    if (n_ids) *n_ids = 0;
    if (!tok || !text || !ids || !n_ids)
        return cs_fail(e, CLIPSCORE_EARG, "cs_tokenizer_encode: NULL argument");
    if (context_length < 2)
        return cs_fail(e, CLIPSCORE_EARG, "context length %d is too short (need at least 2)",
                       context_length);
    char *clean = NULL;
    unsigned fl = 0;
    int rc = cs_text_clean(text, &clean, &fl, e);
    if (rc) return rc;

    size_t len = strlen(clean);
    uint32_t *cps = cs_malloc(len + 1, sizeof *cps, e);
    int32_t *work = cs_malloc(len + 1, sizeof *work, e); /* symbols of one piece */
    if (!cps || !work) {
        rc = CLIPSCORE_ENOMEM;
        goto done;
    }
    size_t n = 0;
    for (size_t p = 0; p < len;) { /* cleaned text is valid UTF-8 */
        utf8proc_int32_t c;
        utf8proc_ssize_t adv =
            utf8proc_iterate((const utf8proc_uint8_t *)clean + p, (utf8proc_ssize_t)(len - p), &c);
        if (adv <= 0) {
            rc = cs_fail(e, CLIPSCORE_EINTERNAL, "cleaned text is not valid UTF-8");
            goto done;
        }
        cps[n++] = (uint32_t)c;
        p += (size_t)adv;
    }

    int count = 0, cap = context_length - 1; /* room for sot and the BPE ids */
    ids[count++] = tok->sot;
    int full = 0;
    for (size_t i = 0; i < n && !full;) {
        int32_t special;
        size_t m = next_piece(tok, cps + i, n - i, &special);
        if (m == 0) {
            i++;
            continue;
        }
        size_t nsym = 0;
        if (special >= 0) {
            work[nsym++] = special;
        } else {
            /* The piece's UTF-8 bytes, each as its byte token; "</w>" on the last. */
            for (size_t k = i; k < i + m; k++) {
                utf8proc_uint8_t u[4];
                utf8proc_ssize_t bl = utf8proc_encode_char((utf8proc_int32_t)cps[k], u);
                for (utf8proc_ssize_t b = 0; b < bl; b++) work[nsym++] = tok->byte_id[u[b]];
                if (k + 1 == i + m) work[nsym - 1] = tok->byte_end_id[u[bl - 1]];
            }
            if (nsym <= CS_BPE_SHORT || !tok->ordered) {
                nsym = bpe_direct(tok, work, nsym);
            } else if ((rc = bpe_heap(tok, work, nsym, &nsym, e))) {
                goto done;
            }
        }
        for (size_t k = 0; k < nsym; k++) {
            if (count == cap) {
                full = 1;
                break;
            }
            ids[count++] = work[k];
        }
        i += m;
    }
    if (full) fl |= CLIPSCORE_TOKEN_TRUNCATED;
    ids[count++] = tok->eot;
    *n_ids = count;
    if (flags) *flags = fl;
done:
    free(cps);
    free(work);
    free(clean);
    return rc;
}
