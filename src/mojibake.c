/* mojibake.c - ftfy 6.3's fix_encoding: finds UTF-8 that was decoded with a
 * single-byte codec and decodes it again, leaving text that only looks odd
 * alone.
 *
 * One step, repeated until the text stops changing:
 *   1. ASCII, or text the heuristic does not find bad: left as it is.
 *   2. Each codec in ftfy's order that can encode the whole text: encode it;
 *      put back bytes A0 turned into spaces (not for MacRoman); for the
 *      sloppy codecs, turn UTF-8 sequences with lost bytes into U+FFFD;
 *      decode as UTF-8 (with CESU-8 pairs and C0 80). The first that decodes
 *      wins.
 *   3. Otherwise each run that looks like UTF-8 mojibake and is bad on its
 *      own is fixed by itself (decode_inconsistent_utf8).
 *   4. Otherwise C1 controls are read as Windows-1252.
 *
 * Covers: all of that, with the tables made by tools/gen_mojibake_tables.py.
 * Leaves out: the other fixes of fix_text (text_clean.c). Character
 * properties for \s and \w come from utf8proc, whose Unicode version may
 * differ from the reference's Python. */
#include "mojibake.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "mojibake_tables.h"

/* ---- growable buffers ----------------------------------------------------- */

typedef struct u32buf {
    uint32_t *v;
    size_t n, cap;
} u32buf;

typedef struct u8buf {
    uint8_t *v;
    size_t n, cap;
} u8buf;

static int grow(void **v, size_t *cap, size_t need, size_t elem, cs_error *e) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return cs_fail(e, CLIPSCORE_ENOMEM, "text too long (%zu characters)", need);
        c *= 2;
    }
    void *p = realloc(*v, c * elem);
    if (!p) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory for %zu characters", c);
    *v = p;
    *cap = c;
    return 0;
}

static int u32_append(u32buf *b, const uint32_t *v, size_t n, cs_error *e) {
    int rc = grow((void **)&b->v, &b->cap, b->n + n, sizeof *b->v, e);
    if (rc) return rc;
    if (n) memcpy(b->v + b->n, v, n * sizeof *v);
    b->n += n;
    return 0;
}

static int u32_push(u32buf *b, uint32_t c, cs_error *e) {
    return u32_append(b, &c, 1, e);
}

static int u8_push(u8buf *b, uint8_t c, cs_error *e) {
    int rc = grow((void **)&b->v, &b->cap, b->n + 1, 1, e);
    if (rc) return rc;
    b->v[b->n++] = c;
    return 0;
}

static void u32_free(u32buf *b) {
    free(b->v);
    *b = (u32buf){0};
}

static void u8_free(u8buf *b) {
    free(b->v);
    *b = (u8buf){0};
}

static int u32_equal(const uint32_t *a, size_t na, const uint32_t *b, size_t nb) {
    return na == nb && (na == 0 || memcmp(a, b, na * sizeof *a) == 0);
}

/* ---- character classes ----------------------------------------------------- */

/* The set masks of c (all zero when c is in no set). */
static void class_of(uint32_t c, uint64_t mask[CS_MJ_MAX_SETS / 64]) {
    size_t lo = 0, hi = cs_mj_n_classes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cs_mj_classes[mid].cp < c) {
            lo = mid + 1;
        } else if (cs_mj_classes[mid].cp > c) {
            hi = mid;
        } else {
            memcpy(mask, cs_mj_classes[mid].mask, sizeof cs_mj_classes[mid].mask);
            return;
        }
    }
    memset(mask, 0, sizeof(uint64_t) * (CS_MJ_MAX_SETS / 64));
}

static int mask_has(const uint64_t *mask, int set) {
    return (int)((mask[set / 64] >> (set % 64)) & 1);
}

static int in_set(uint32_t c, int set) {
    uint64_t mask[CS_MJ_MAX_SETS / 64];
    class_of(c, mask);
    return mask_has(mask, set);
}

/* Python's str.isspace(), which is what re's \s matches in str patterns. */
static int py_isspace(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* re's \w in str patterns: str.isalnum() (letters and anything with a
 * numeric value) or '_'. */
static int py_isword(uint32_t c) {
    if (c < 0x80)
        return c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return 1;
    default:
        return 0;
    }
}

static int atom_matches(unsigned atom, uint32_t c, const uint64_t *mask) {
    switch (atom) {
    case CS_MJ_ATOM_SPACE:
        return py_isspace(c);
    case CS_MJ_ATOM_WORD:
        return py_isword(c);
    case CS_MJ_ATOM_ANY:
        return c != '\n';
    case CS_MJ_ATOM_NOT_AZ:
        return !(c < 0x80 && (c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    default:
        return mask_has(mask, (int)atom);
    }
}

/* Whether atoms k.. of p match v from i on. An optional atom is tried
 * present first, then absent, as re's greedy '?' does. */
static int pattern_from(const cs_mj_pattern *p, size_t k, const uint32_t *v, size_t n, size_t i) {
    for (; k < p->n; k++) {
        unsigned atom = p->atom[k] & ~(unsigned)CS_MJ_ATOM_OPTIONAL;
        uint64_t mask[CS_MJ_MAX_SETS / 64];
        int ok = 0;
        if (i < n) {
            class_of(v[i], mask);
            ok = atom_matches(atom, v[i], mask);
        }
        if (p->atom[k] & CS_MJ_ATOM_OPTIONAL) {
            if (ok && pattern_from(p, k + 1, v, n, i + 1)) return 1;
            continue;
        }
        if (!ok) return 0;
        i++;
    }
    return 1;
}

int cs_mojibake_is_bad(const uint32_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        /* Every pattern starts with an atom that is a set, so the first
         * character's mask rules most of them out at once. */
        uint64_t mask[CS_MJ_MAX_SETS / 64];
        class_of(v[i], mask);
        for (size_t p = 0; p < cs_mj_n_patterns; p++) {
            const cs_mj_pattern *pat = &cs_mj_patterns[p];
            if (pat->at_start && i > 0) continue;
            if (!atom_matches(pat->atom[0] & ~(unsigned)CS_MJ_ATOM_OPTIONAL, v[i], mask) &&
                !(pat->atom[0] & CS_MJ_ATOM_OPTIONAL))
                continue;
            if (pattern_from(pat, 0, v, n, i)) return 1;
        }
    }
    return 0;
}

/* ---- single-byte codecs ------------------------------------------------------ */

/* The byte c encodes to in codec k, or -1 when it has none. */
static int encode_char(const cs_mj_codec *k, uint32_t c) {
    if (c < 0x100 && k->dec[c] == c) return (int)c; /* the table lists the others */
    size_t lo = 0, hi = k->n_enc;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (k->enc[mid] < c)
            lo = mid + 1;
        else if (k->enc[mid] > c)
            hi = mid;
        else
            return k->enc_byte[mid];
    }
    return -1;
}

/* Encodes v with codec k into out; 1 when every character could be (ftfy's
 * possible_encoding), 0 when not (out is then incomplete). */
static int encode_text(const cs_mj_codec *k, const uint32_t *v, size_t n, u8buf *out, int *ok,
                       cs_error *e) {
    *ok = 0;
    out->n = 0;
    for (size_t i = 0; i < n; i++) {
        int b = encode_char(k, v[i]);
        if (b < 0) return 0;
        int rc = u8_push(out, (uint8_t)b, e);
        if (rc) return rc;
    }
    *ok = 1;
    return 0;
}

/* ---- byte patterns ------------------------------------------------------------- */

/* A byte class as up to six ranges, and a fixed sequence of such classes:
 * enough for ftfy's small byte regexes below. */
typedef struct byte_class {
    uint8_t n;
    uint8_t r[6][2];
} byte_class;

typedef struct byte_pattern {
    uint8_t n;
    byte_class c[6];
} byte_pattern;

static int byte_in(const byte_class *c, uint8_t b) {
    for (int i = 0; i < c->n; i++)
        if (b >= c->r[i][0] && b <= c->r[i][1]) return 1;
    return 0;
}

/* Length of the first pattern (in order) that matches at i, 0 for none. */
static size_t byte_match(const byte_pattern *pats, size_t npats, const uint8_t *b, size_t n,
                         size_t i) {
    for (size_t p = 0; p < npats; p++) {
        size_t k = 0;
        while (k < pats[p].n && i + k < n && byte_in(&pats[p].c[k], b[i + k])) k++;
        if (k == pats[p].n) return k;
    }
    return 0;
}

#define R1(x)                                                                                      \
    { (x), (x) }
#define RR(x, y)                                                                                   \
    { (x), (y) }
#define CLS(...)                                                                                   \
    {                                                                                              \
        sizeof((uint8_t[][2]){__VA_ARGS__}) / 2, {                                                 \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    }

/* A UTF-8 continuation byte other than 85 (which is "..." in Windows-1252,
 * too common to trust) and A0 (the byte being restored). */
#define CONT_NOT_85_A0 CLS(RR(0x80, 0x84), RR(0x86, 0x9F), RR(0xA1, 0xBF))
#define SPACE_B CLS(R1(0x20))
#define CONT_B CLS(RR(0x80, 0xBF))

/* ftfy's ALTERED_UTF8_RE: UTF-8 sequences whose byte A0 became a space,
 * limited to lead bytes whose characters are likely there. */
static const byte_pattern kAlteredUtf8[] = {
    {2, {CLS(RR(0xC2, 0xC3), R1(0xC5), R1(0xCE), R1(0xD0), R1(0xD9)), SPACE_B}},
    {3, {CLS(RR(0xE2, 0xE3)), SPACE_B, CONT_NOT_85_A0}},
    {3, {CLS(RR(0xE0, 0xE3)), CONT_NOT_85_A0, SPACE_B}},
    {4, {CLS(R1(0xF0)), SPACE_B, CONT_B, CONT_B}},
    {4, {CLS(R1(0xF0)), CONT_B, SPACE_B, CONT_B}},
    {4, {CLS(R1(0xF0)), CONT_B, CONT_B, SPACE_B}},
};

#define SUB_B CLS(R1(0x1A))
#define SUB_Q CLS(R1(0x1A), R1('?'))
#define SUB_CONT CLS(R1(0x1A), RR(0x80, 0xBF))
#define SUB_Q_CONT CLS(R1(0x1A), R1('?'), RR(0x80, 0xBF))

/* ftfy's LOSSY_UTF8_RE: UTF-8 (or CESU-8) sequences some of whose bytes
 * were lost, marked by byte 1A (the sloppy codecs' U+FFFD) or at most one
 * '?'. */
static const byte_pattern kLossyUtf8[] = {
    {2, {CLS(RR(0xC2, 0xDF)), SUB_B}},
    {2, {CLS(RR(0xC2, 0xC3)), CLS(R1('?'))}},
    {6,
     {CLS(R1(0xED)), CLS(RR(0xA0, 0xAF)), SUB_Q, CLS(R1(0xED)), CLS(RR(0xB0, 0xBF)), SUB_Q_CONT}},
    {6,
     {CLS(R1(0xED)), CLS(RR(0xA0, 0xAF)), SUB_Q_CONT, CLS(R1(0xED)), CLS(RR(0xB0, 0xBF)), SUB_Q}},
    {3, {CLS(RR(0xE0, 0xEF)), SUB_Q, SUB_CONT}},
    {3, {CLS(RR(0xE0, 0xEF)), SUB_CONT, SUB_Q}},
    {4, {CLS(RR(0xF0, 0xF4)), SUB_Q, SUB_CONT, SUB_CONT}},
    {4, {CLS(RR(0xF0, 0xF4)), SUB_CONT, SUB_Q, SUB_CONT}},
    {4, {CLS(RR(0xF0, 0xF4)), SUB_CONT, SUB_CONT, SUB_Q}},
    {1, {SUB_B}},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int has_altered_utf8(const u8buf *b) {
    for (size_t i = 0; i < b->n; i++)
        if (byte_match(kAlteredUtf8, COUNT(kAlteredUtf8), b->v, b->n, i)) return 1;
    return 0;
}

/* Whether "\xc3 " at i stands for the French or Portuguese word "à" (its
 * A0 and a space merged into one space), i.e. is not followed by a space,
 * "quele", "quela", "quilo" or "s " (Portuguese words that start with "à"). */
static int a_grave_word(const uint8_t *b, size_t n, size_t i) {
    if (i + 1 >= n || b[i] != 0xC3 || b[i + 1] != ' ') return 0;
    static const char *const follow[] = {" ", "quele", "quela", "quilo", "s "};
    for (size_t k = 0; k < COUNT(follow); k++) {
        size_t len = strlen(follow[k]);
        if (i + 2 + len <= n && memcmp(b + i + 2, follow[k], len) == 0) return 0;
    }
    return 1;
}

/* ftfy's restore_byte_a0: "\xc3 " words become "\xc3\xa0 ", then every
 * altered UTF-8 sequence gets its spaces back as A0. */
static int restore_byte_a0(u8buf *b, cs_error *e) {
    u8buf t = {0};
    int rc = 0;
    for (size_t i = 0; i < b->n && !rc; i++) {
        if (a_grave_word(b->v, b->n, i)) {
            rc = u8_push(&t, 0xC3, e);
            if (!rc) rc = u8_push(&t, 0xA0, e);
            if (!rc) rc = u8_push(&t, ' ', e);
            i++;
        } else {
            rc = u8_push(&t, b->v[i], e);
        }
    }
    for (size_t i = 0; i < t.n && !rc;) {
        size_t len = byte_match(kAlteredUtf8, COUNT(kAlteredUtf8), t.v, t.n, i);
        if (!len) {
            i++;
            continue;
        }
        for (size_t k = i; k < i + len; k++)
            if (t.v[k] == ' ') t.v[k] = 0xA0;
        i += len;
    }
    if (!rc) {
        u8_free(b);
        *b = t;
    } else {
        u8_free(&t);
    }
    return rc;
}

/* ftfy's replace_lossy_sequences: each lossy sequence becomes U+FFFD. */
static int replace_lossy(u8buf *b, cs_error *e) {
    u8buf t = {0};
    int rc = 0;
    for (size_t i = 0; i < b->n && !rc;) {
        size_t len = byte_match(kLossyUtf8, COUNT(kLossyUtf8), b->v, b->n, i);
        if (len) {
            rc = u8_push(&t, 0xEF, e);
            if (!rc) rc = u8_push(&t, 0xBF, e);
            if (!rc) rc = u8_push(&t, 0xBD, e);
            i += len;
        } else {
            rc = u8_push(&t, b->v[i++], e);
        }
    }
    if (!rc) {
        u8_free(b);
        *b = t;
    } else {
        u8_free(&t);
    }
    return rc;
}

/* Strict UTF-8 decoding as Python's codec does it, plus ftfy's
 * utf-8-variants: C0 80 is U+0000 (Java) and a surrogate pair written as two
 * three-byte sequences is its supplementary character (CESU-8). ftfy uses
 * the variants only when the bytes hold ED or C0, but without those bytes
 * the two decoders agree. *ok is 0 when the bytes do not decode. */
static int utf8_decode_strict(const uint8_t *b, size_t n, u32buf *out, int *ok, cs_error *e) {
    *ok = 0;
    out->n = 0;
    size_t i = 0;
    while (i < n) {
        unsigned c = b[i];
        uint32_t cp;
        size_t len;
        if (c < 0x80) {
            cp = c, len = 1;
        } else if (c == 0xC0 && i + 1 < n && b[i + 1] == 0x80) {
            cp = 0, len = 2;
        } else if (c == 0xED && i + 5 < n && b[i + 1] >= 0xA0 && b[i + 1] <= 0xAF &&
                   (b[i + 2] & 0xC0) == 0x80 && b[i + 3] == 0xED && b[i + 4] >= 0xB0 &&
                   b[i + 4] <= 0xBF && (b[i + 5] & 0xC0) == 0x80) {
            cp = 0x10000 + ((uint32_t)(b[i + 1] & 0x0F) << 16) +
                 ((uint32_t)(b[i + 2] & 0x3F) << 10) + ((uint32_t)(b[i + 4] & 0x0F) << 6) +
                 (b[i + 5] & 0x3F);
            len = 6;
        } else {
            unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
            if (c >= 0xC2 && c <= 0xDF) {
                len = 2, cp = c & 0x1F;
            } else if (c >= 0xE0 && c <= 0xEF) {
                len = 3, cp = c & 0x0F;
                if (c == 0xE0) lo = 0xA0;
                if (c == 0xED) hi = 0x9F;
            } else if (c >= 0xF0 && c <= 0xF4) {
                len = 4, cp = c & 0x07;
                if (c == 0xF0) lo = 0x90;
                if (c == 0xF4) hi = 0x8F;
            } else {
                return 0;
            }
            if (i + len > n) return 0;
            for (size_t k = 1; k < len; k++) {
                unsigned x = b[i + k];
                if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF)) return 0;
                cp = (cp << 6) | (x & 0x3F);
            }
        }
        int rc = u32_push(out, cp, e);
        if (rc) return rc;
        i += len;
    }
    *ok = 1;
    return 0;
}

/* ---- the UTF-8 detector ------------------------------------------------------- */

/* Length of ftfy's UTF8_DETECTOR_RE match at i (0 for none): one or more
 * runs of a lead character and the continuation characters it needs, not
 * right after a strict continuation character. */
static size_t detector_match(const uint32_t *v, size_t n, size_t i) {
    if (i > 0 && in_set(v[i - 1], cs_mj_set_continuation_strict)) return 0;
    const int lead[3] = {cs_mj_set_first_of_2, cs_mj_set_first_of_3, cs_mj_set_first_of_4};
    size_t j = i;
    for (;;) {
        /* re tries the alternatives in order: a lead of two, three, four. */
        size_t step = 0;
        for (size_t a = 0; a < 3 && !step; a++) {
            size_t need = a + 1; /* continuation characters after the lead */
            if (j + need >= n || !in_set(v[j], lead[a])) continue;
            size_t k = 1;
            while (k <= need && in_set(v[j + k], cs_mj_set_continuation)) k++;
            if (k > need) step = need + 1;
        }
        if (!step) break;
        j += step;
    }
    return j - i;
}

static int fix_encoding(const uint32_t *v, size_t n, u32buf *out, int depth, cs_error *e);

/* ftfy's decode_inconsistent_utf8: each detector match that is shorter than
 * the text and bad on its own is replaced by its fix_encoding. */
static int decode_inconsistent(const uint32_t *v, size_t n, u32buf *out, int depth, cs_error *e) {
    int rc = 0;
    out->n = 0;
    for (size_t i = 0; i < n && !rc;) {
        size_t len = detector_match(v, n, i);
        if (len && len < n && cs_mojibake_is_bad(v + i, len)) {
            rc = fix_encoding(v + i, len, out, depth + 1, e);
            i += len;
        } else if (len) {
            rc = u32_append(out, v + i, len, e);
            i += len;
        } else {
            rc = u32_push(out, v[i++], e);
        }
    }
    return rc;
}

/* ---- fix_encoding --------------------------------------------------------------- */

/* Windows-1252 for C1 controls, from the sloppy codec (its undefined bytes
 * stay themselves), as fix_c1_controls does. */
static uint32_t c1_as_cp1252(uint32_t c) {
    return cs_mj_codecs[1].dec[c];
}

/* One step of ftfy's fix_encoding_and_explain; writes the new text to out. */
static int fix_encoding_step(const uint32_t *v, size_t n, u32buf *out, int depth, cs_error *e) {
    int ascii = 1;
    for (size_t i = 0; i < n && ascii; i++) ascii = v[i] < 0x80;
    if (ascii || !cs_mojibake_is_bad(v, n)) return u32_append(out, v, n, e);

    int rc = 0, done = 0;
    u8buf bytes = {0};
    u32buf dec = {0};
    for (size_t k = 0; k < cs_mj_n_codecs && !rc && !done; k++) {
        const cs_mj_codec *codec = &cs_mj_codecs[k];
        int ok;
        rc = encode_text(codec, v, n, &bytes, &ok, e);
        if (rc || !ok) continue;
        if (!codec->keep_spaces && has_altered_utf8(&bytes)) rc = restore_byte_a0(&bytes, e);
        if (!rc && codec->sloppy) rc = replace_lossy(&bytes, e);
        if (!rc) rc = utf8_decode_strict(bytes.v, bytes.n, &dec, &ok, e);
        if (!rc && ok) {
            rc = u32_append(out, dec.v, dec.n, e);
            done = 1;
        }
    }
    u8_free(&bytes);

    int detected = 0;
    for (size_t i = 0; i < n && !detected && !rc && !done; i++)
        detected = detector_match(v, n, i) > 0;
    if (detected) {
        rc = decode_inconsistent(v, n, &dec, depth, e);
        if (!rc && !u32_equal(dec.v, dec.n, v, n)) {
            rc = u32_append(out, dec.v, dec.n, e);
            done = 1;
        }
    }
    u32_free(&dec);
    if (rc || done) return rc;

    /* ftfy next reads Latin-1 text as Windows-1252 when that decodes
     * strictly, then fixes C1 controls one by one; both map each C1 control
     * through Windows-1252 and leave the rest, so one pass does for both. */
    rc = grow((void **)&out->v, &out->cap, out->n + n, sizeof *out->v, e);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
        out->v[out->n++] = (v[i] >= 0x80 && v[i] <= 0x9F) ? c1_as_cp1252(v[i]) : v[i];
    return 0;
}

/* Deep enough for any real caption: each level works on a strictly shorter
 * run of mojibake, and a run of that depth would be over 60 characters of
 * nested garbage. Deeper runs are left as they are. */
enum { kMaxDepth = 64 };

/* ftfy's fix_encoding: steps until the text stops changing; appends the
 * result to out. */
static int fix_encoding(const uint32_t *v, size_t n, u32buf *out, int depth, cs_error *e) {
    if (depth > kMaxDepth) return u32_append(out, v, n, e);
    u32buf cur = {0}, nxt = {0};
    int rc = u32_append(&cur, v, n, e);
    /* Each step that changes the text shortens it (UTF-8 decoding) or
     * removes C1 controls, so this settles well within the bound. */
    for (size_t round = 0; !rc; round++) {
        if (round > n + 16) {
            rc = cs_fail(e, CLIPSCORE_EINTERNAL, "mojibake repair did not settle");
            break;
        }
        nxt.n = 0;
        rc = fix_encoding_step(cur.v, cur.n, &nxt, depth, e);
        if (rc || u32_equal(cur.v, cur.n, nxt.v, nxt.n)) break;
        u32buf t = cur;
        cur = nxt;
        nxt = t;
    }
    if (!rc) rc = u32_append(out, cur.v, cur.n, e);
    u32_free(&cur);
    u32_free(&nxt);
    return rc;
}

int cs_mojibake_fix_encoding(const uint32_t *v, size_t n, uint32_t **out, size_t *out_n,
                             cs_error *e) {
    if ((!v && n) || !out || !out_n) return cs_fail(e, CLIPSCORE_EARG, "mojibake: NULL argument");
    *out = NULL;
    *out_n = 0;
    u32buf res = {0};
    int rc = grow((void **)&res.v, &res.cap, n + 1, sizeof *res.v, e);
    if (!rc) rc = fix_encoding(v, n, &res, 0, e);
    if (rc) {
        u32_free(&res);
        return rc;
    }
    *out = res.v;
    *out_n = res.n;
    return 0;
}
