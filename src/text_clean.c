/* text_clean.c - caption cleanup before CLIP tokenisation, as the reference
 * (OpenAI's clip.simple_tokenizer) does it:
 *     lower(whitespace_clean(strip(html.unescape(html.unescape(ftfy.fix_text(s))))))
 *
 * Covers, of ftfy 6.x fix_text with its default settings: the text is fixed
 * line by line; each line repeats, until nothing changes, ftfy's own HTML
 * entity decoding (only complete "&name;" / "&#N;" references, plus
 * all-caps names such as "&EACUTE;"; switched off for this and later lines
 * once a line holds '<'), mojibake repair (fix_encoding, in mojibake.c),
 * C1 controls read as Windows-1252, Latin ligatures
 * split, halfwidth/fullwidth forms folded, curly quotes straightened, line
 * breaks unified, terminal escapes and control characters removed, NFC.
 * Then Python's html.unescape (all HTML5 names, also the legacy ones without
 * ';', numeric references with their replacement rules) twice, str.strip,
 * runs of Unicode White_Space (the regex module's \s) collapsed to one space,
 * str.strip, and str.lower (full lowercase: U+0130, final sigma).
 *
 * Leaves out, of ftfy: fix_surrogates (decoded UTF-8 holds no surrogates,
 * and fix_encoding's CESU-8 decoding makes none). Unicode data comes from
 * utf8proc, whose Unicode version may differ from the reference's Python. */
#include "text_clean.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "html_entities.h"
#include "mojibake.h"

/* ---- growable code point buffer ---------------------------------------- */

typedef struct cpbuf {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

static void cp_free(cpbuf *b) {
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

static int cp_reserve(cpbuf *b, size_t extra, cs_error *e) {
    if (b->n + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) {
        if (cap > SIZE_MAX / 2 / sizeof(uint32_t))
            return cs_fail(e, CLIPSCORE_ENOMEM, "text too long (%zu characters)", b->n + extra);
        cap *= 2;
    }
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v) return cs_fail(e, CLIPSCORE_ENOMEM, "out of memory for %zu characters", cap);
    b->v = v;
    b->cap = cap;
    return 0;
}

static inline int cp_push(cpbuf *b, uint32_t c, cs_error *e) {
    if (b->n == b->cap) {
        int rc = cp_reserve(b, 1, e);
        if (rc) return rc;
    }
    b->v[b->n++] = c;
    return 0;
}

static int cp_append(cpbuf *b, const uint32_t *v, size_t n, cs_error *e) {
    int rc = cp_reserve(b, n, e);
    if (rc) return rc;
    if (n) memcpy(b->v + b->n, v, n * sizeof *v);
    b->n += n;
    return 0;
}

static void cp_swap(cpbuf *a, cpbuf *b) {
    cpbuf t = *a;
    *a = *b;
    *b = t;
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* Decodes like Python's bytes.decode("utf-8", "replace"): each maximal
 * prefix of a valid sequence that is cut short, and each byte that cannot
 * start one, becomes one U+FFFD. */
static int utf8_decode(const char *s, size_t len, cpbuf *out, int *invalid, cs_error *e) {
    const unsigned char *p = (const unsigned char *)s;
    int rc = cp_reserve(out, len, e);
    if (rc) return rc;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            out->v[out->n++] = c;
            i++;
            continue;
        }
        int need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2, cp = c & 0x0F;
            if (c == 0xE0) lo = 0xA0; /* no overlongs */
            if (c == 0xED) hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3, cp = c & 0x07;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
        } else {
            out->v[out->n++] = 0xFFFD;
            *invalid = 1;
            i++;
            continue;
        }
        size_t j = i + 1;
        int k;
        for (k = 0; k < need && j < len; k++, j++) {
            unsigned b = p[j];
            unsigned l = k == 0 ? lo : 0x80, h = k == 0 ? hi : 0xBF;
            if (b < l || b > h) break;
            cp = (cp << 6) | (b & 0x3F);
        }
        if (k == need) {
            out->v[out->n++] = cp;
        } else {
            out->v[out->n++] = 0xFFFD;
            *invalid = 1;
        }
        i = j;
    }
    return 0;
}

static int utf8_encode(const uint32_t *v, size_t n, char **out, size_t *out_len, cs_error *e) {
    if (n > (SIZE_MAX - 1) / 4)
        return cs_fail(e, CLIPSCORE_ENOMEM, "text too long (%zu characters)", n);
    char *s = cs_malloc(n * 4 + 1, 1, e);
    if (!s) return CLIPSCORE_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += cs_utf8_put(v[i], s + k);
    s[k] = '\0';
    *out = s;
    if (out_len) *out_len = k;
    return 0;
}

/* ---- character classes --------------------------------------------------- */

/* Windows-1252 for bytes 0x80-0x9F; its five unassigned bytes stay C1
 * controls, as in Python's html.unescape table and ftfy's sloppy codec. */
static const uint16_t kCp1252High[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

/* Python's str.isspace(), used by str.strip(). */
static int py_isspace(uint32_t c) {
    if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int cs_text_is_regex_space(uint32_t c) {
    /* The regex module's \s is White_Space: str.isspace() less U+001C-U+001F. */
    return py_isspace(c) && !(c >= 0x1C && c <= 0x1F);
}

static int is_ascii_alnum(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ascii_hex(uint32_t c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int hex_value(uint32_t c) {
    return c <= '9' ? (int)(c - '0') : (int)((c | 0x20) - 'a' + 10);
}

/* ---- HTML references ------------------------------------------------------ */

/* Looks a name given as code points up in the HTML5 table. */
static int entity_lookup(const uint32_t *name, size_t len, uint32_t value[2]) {
    char buf[40];
    if (len == 0 || len >= sizeof buf) return 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] >= 0x80) return 0; /* every name is ASCII */
        buf[i] = (char)name[i];
    }
    return cs_html_entity_lookup(buf, len, value);
}

/* What Python's html.unescape puts for a numeric reference; returns the
 * number of code points (0: the reference is dropped). */
static int numeric_ref_value(uint32_t num, uint32_t *out) {
    if (num == 0) {
        *out = 0xFFFD;
        return 1;
    }
    if (num == 0x0D) {
        *out = 0x0D;
        return 1;
    }
    if (num >= 0x80 && num <= 0x9F) {
        *out = kCp1252High[num - 0x80];
        return 1;
    }
    if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) {
        *out = 0xFFFD;
        return 1;
    }
    /* Python's _invalid_codepoints: C0/C1 controls, noncharacters. */
    if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) ||
        (num >= 0x7F && num <= 0x9F) || (num >= 0xFDD0 && num <= 0xFDEF) ||
        (num & 0xFFFE) == 0xFFFE)
        return 0;
    *out = num;
    return 1;
}

/* Python's html.unescape: every match of
 *     &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
 * is replaced; a name not in the table is tried by its longest prefix (at
 * least two characters) that is, and otherwise left as it is. */
static int py_html_unescape(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc;
    size_t i = 0;
    while (i < n) {
        if (v[i] != '&') {
            if ((rc = cp_push(out, v[i], e))) return rc;
            i++;
            continue;
        }
        size_t j = i + 1;
        if (j < n && v[j] == '#') {
            int hex = 0;
            size_t k = j + 1;
            if (k < n && v[k] >= '0' && v[k] <= '9') {
                hex = 0;
            } else if (k + 1 < n && (v[k] == 'x' || v[k] == 'X') && is_ascii_hex(v[k + 1])) {
                hex = 1;
                k++;
            } else {
                /* "&#" not followed by digits matches nothing. */
                if ((rc = cp_push(out, '&', e))) return rc;
                i++;
                continue;
            }
            uint32_t num = 0; /* saturates above U+10FFFF */
            while (k < n && (hex ? is_ascii_hex(v[k]) : (v[k] >= '0' && v[k] <= '9'))) {
                uint32_t d = hex ? (uint32_t)hex_value(v[k]) : v[k] - '0';
                num = num > 0x10FFFF ? num : num * (hex ? 16 : 10) + d;
                k++;
            }
            if (k < n && v[k] == ';') k++;
            uint32_t c;
            if (numeric_ref_value(num, &c) && (rc = cp_push(out, c, e))) return rc;
            i = k;
            continue;
        }
        size_t k = j;
        while (k < n && k - j < 32 && v[k] != '\t' && v[k] != '\n' && v[k] != '\f' && v[k] != ' ' &&
               v[k] != '<' && v[k] != '&' && v[k] != '#' && v[k] != ';')
            k++;
        if (k == j) { /* nothing after '&' can form a name */
            if ((rc = cp_push(out, '&', e))) return rc;
            i++;
            continue;
        }
        if (k < n && v[k] == ';') k++;
        size_t len = k - j;
        uint32_t val[2];
        int nv = entity_lookup(v + j, len, val);
        size_t used = len;
        for (size_t x = len - 1; !nv && x >= 2; x--) {
            nv = entity_lookup(v + j, x, val);
            if (nv) used = x;
        }
        if (nv) {
            if ((rc = cp_append(out, val, (size_t)nv, e))) return rc;
            if ((rc = cp_append(out, v + j + used, len - used, e))) return rc;
        } else {
            if ((rc = cp_append(out, v + i, k - i, e))) return rc;
        }
        i = k;
    }
    return 0;
}

/* A code point that expands to up to three others (0-terminated). */
typedef struct cp_expansion {
    uint16_t from;
    uint16_t to[3];
} cp_expansion;

/* Writes c's expansion from table t into out; 0 when c is not in t. */
static size_t expand(const cp_expansion *t, size_t n, uint32_t c, uint32_t out[3]) {
    for (size_t i = 0; i < n; i++) {
        if (t[i].from != c) continue;
        size_t k = 0;
        for (; k < 3 && t[i].to[k]; k++) out[k] = t[i].to[k];
        return k;
    }
    return 0;
}

/* Python's str.upper() for the characters of HTML entity values: simple
 * uppercase, plus the SpecialCasing expansions that occur among them. */
static size_t entity_upper(uint32_t c, uint32_t out[3]) {
    static const cp_expansion special[] = {
        {0x00DF, {'S', 'S', 0}},    /* sharp s */
        {0x0149, {0x02BC, 'N', 0}}, /* n preceded by apostrophe */
        {0xFB00, {'F', 'F', 0}},    {0xFB01, {'F', 'I', 0}},   {0xFB02, {'F', 'L', 0}},
        {0xFB03, {'F', 'F', 'I'}},  {0xFB04, {'F', 'F', 'L'}},
    };
    size_t k = expand(special, sizeof special / sizeof special[0], c, out);
    if (k) return k;
    out[0] = (uint32_t)utf8proc_toupper((utf8proc_int32_t)c);
    return 1;
}

/* ftfy's reading of "&NAME;" when NAME is not itself an HTML5 name: an
 * all-caps spelling of a lowercase name, as long as Python's html.unescape
 * would leave "&NAME;" alone (no prefix of NAME is a legacy name). Writes
 * the uppercased value; returns its length, 0 when there is none. */
static size_t ftfy_upper_entity(const uint32_t *name, size_t len, uint32_t out[6]) {
    uint32_t lower[26], val[2];
    if (len + 1 > sizeof lower / sizeof lower[0]) return 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] >= 'a' && name[i] <= 'z') return 0;
        lower[i] = (name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i];
    }
    lower[len] = ';';
    int nv = entity_lookup(lower, len + 1, val);
    if (!nv) return 0;
    for (size_t x = len; x >= 2; x--) {
        uint32_t tmp[2];
        if (entity_lookup(name, x, tmp)) return 0;
    }
    size_t k = 0;
    for (int i = 0; i < nv; i++) k += entity_upper(val[i], out + k);
    return k;
}

/* ftfy's unescape_html: replaces matches of &#?[0-9A-Za-z]{1,24}; that name
 * an HTML5 reference (with ';'), an all-caps variant of one, or a numeric
 * reference that html.unescape consumes whole. */
static int ftfy_unescape(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc;
    size_t i = 0;
    while (i < n) {
        if (v[i] != '&') {
            if ((rc = cp_push(out, v[i], e))) return rc;
            i++;
            continue;
        }
        size_t j = i + 1;
        int numeric = j < n && v[j] == '#';
        size_t k = j + (size_t)numeric, start = k;
        while (k < n && is_ascii_alnum(v[k]) && k - start < 25) k++;
        size_t len = k - start;
        if (len < 1 || len > 24 || k >= n || v[k] != ';') {
            if ((rc = cp_push(out, '&', e))) return rc;
            i++;
            continue;
        }
        size_t end = k + 1; /* one past ';' */
        if (numeric) {
            cpbuf tmp = {0};
            rc = py_html_unescape(v + i, end - i, &tmp, e);
            int has_semicolon = 0;
            for (size_t t = 0; !rc && t < tmp.n; t++) has_semicolon |= tmp.v[t] == ';';
            if (!rc)
                rc = has_semicolon ? cp_append(out, v + i, end - i, e)
                                   : cp_append(out, tmp.v, tmp.n, e);
            cp_free(&tmp);
            if (rc) return rc;
        } else {
            uint32_t val[6];
            size_t nv = (size_t)entity_lookup(v + start, len + 1, val);
            if (!nv) nv = ftfy_upper_entity(v + start, len, val);
            rc = nv ? cp_append(out, val, nv, e) : cp_append(out, v + i, end - i, e);
            if (rc) return rc;
        }
        i = end;
    }
    return 0;
}

/* ---- ftfy's character fixes ---------------------------------------------- */

/* fix_latin_ligatures: ftfy's table of Latin ligatures and digraphs. */
static size_t ligature(uint32_t c, uint32_t out[3]) {
    static const cp_expansion tab[] = {
        {0x0132, {'I', 'J', 0}},    {0x0133, {'i', 'j', 0}},    {0x0149, {0x02BC, 'n', 0}},
        {0x01C4, {'D', 0x017D, 0}}, {0x01C5, {'D', 0x017E, 0}}, {0x01C6, {'d', 0x017E, 0}},
        {0x01C7, {'L', 'J', 0}},    {0x01C8, {'L', 'j', 0}},    {0x01C9, {'l', 'j', 0}},
        {0x01CA, {'N', 'J', 0}},    {0x01CB, {'N', 'j', 0}},    {0x01CC, {'n', 'j', 0}},
        {0x01F1, {'D', 'Z', 0}},    {0x01F2, {'D', 'z', 0}},    {0x01F3, {'d', 'z', 0}},
        {0xFB00, {'f', 'f', 0}},    {0xFB01, {'f', 'i', 0}},    {0xFB02, {'f', 'l', 0}},
        {0xFB03, {'f', 'f', 'i'}},  {0xFB04, {'f', 'f', 'l'}},  {0xFB05, {0x017F, 't', 0}},
        {0xFB06, {'s', 't', 0}},
    };
    if ((c >= 0x0132 && c <= 0x01F3) || (c >= 0xFB00 && c <= 0xFB06)) {
        size_t k = expand(tab, sizeof tab / sizeof tab[0], c, out);
        if (k) return k;
    }
    out[0] = c;
    return 1;
}

/* fix_character_width: U+3000 becomes a space; U+FF01-U+FFEF become their
 * NFKC form. Returns the number of code points (at most 4 here). */
static size_t width_fold(uint32_t c, uint32_t out[4]) {
    if (c == 0x3000) {
        out[0] = ' ';
        return 1;
    }
    if (c < 0xFF01 || c > 0xFFEF) {
        out[0] = c;
        return 1;
    }
    char in[5];
    size_t len = cs_utf8_put(c, in);
    utf8proc_uint8_t *nf = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)len, &nf,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    size_t k = 0;
    if (m > 0) {
        utf8proc_ssize_t p = 0;
        while (p < m && k < 4) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t adv = utf8proc_iterate(nf + p, m - p, &cp);
            if (adv <= 0) break;
            out[k++] = (uint32_t)cp;
            p += adv;
        }
    }
    free(nf);
    if (k == 0) { /* unassigned or failed: left as it is */
        out[0] = c;
        k = 1;
    }
    return k;
}

static uint32_t uncurl(uint32_t c) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) return '\'';
    if (c >= 0x201C && c <= 0x201F) return '"';
    return c;
}

/* ftfy's remove_control_chars set. */
static int is_removed_control(uint32_t c) {
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static int is_decimal_digit(uint32_t c) {
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* fix_c1_controls, fix_latin_ligatures, fix_character_width and
 * uncurl_quotes: each maps single characters, so applying them in turn to
 * each character equals running them one after another. */
static int fix_chars(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc = cp_reserve(out, n, e);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c >= 0x80 && c <= 0x9F) c = kCp1252High[c - 0x80];
        uint32_t lig[3];
        size_t nl = ligature(c, lig);
        for (size_t a = 0; a < nl; a++) {
            uint32_t w[4];
            size_t nw = width_fold(lig[a], w);
            for (size_t b = 0; b < nw; b++)
                if ((rc = cp_push(out, uncurl(w[b]), e))) return rc;
        }
    }
    return 0;
}

/* fix_line_breaks, remove_terminal_escapes (\x1b\[(\d|;)*[a-zA-Z]) and
 * remove_control_chars in one scan: none of them touches what the others
 * look at, so the order is kept. */
static int fix_breaks_controls(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc = cp_reserve(out, n, e);
    if (rc) return rc;
    size_t i = 0;
    while (i < n) {
        uint32_t c = v[i];
        if (c == '\r') {
            out->v[out->n++] = '\n';
            i += (i + 1 < n && v[i + 1] == '\n') ? 2 : 1;
            continue;
        }
        if (c == 0x2028 || c == 0x2029 || c == 0x85) {
            out->v[out->n++] = '\n';
            i++;
            continue;
        }
        if (c == 0x1B && i + 1 < n && v[i + 1] == '[') {
            size_t k = i + 2;
            while (k < n && (v[k] == ';' || is_decimal_digit(v[k]))) k++;
            if (k < n && v[k] < 0x80 && ((v[k] | 0x20) >= 'a' && (v[k] | 0x20) <= 'z')) {
                i = k + 1;
                continue;
            }
        }
        if (!is_removed_control(c)) out->v[out->n++] = c;
        i++;
    }
    return 0;
}

/* Unicode NFC through utf8proc. */
static int nfc(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int need = 0;
    for (size_t i = 0; i < n && !need; i++) need = v[i] >= 0x300; /* below: already NFC */
    if (!need) return cp_append(out, v, n, e);
    char *s = NULL;
    size_t len = 0;
    int rc = utf8_encode(v, n, &s, &len, e);
    if (rc) return rc;
    utf8proc_uint8_t *nf = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &nf,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    free(s);
    if (m < 0) {
        free(nf);
        return cs_fail(e, m == UTF8PROC_ERROR_NOMEM ? CLIPSCORE_ENOMEM : CLIPSCORE_EINTERNAL,
                       "NFC normalisation failed: %s", utf8proc_errmsg(m));
    }
    int dummy = 0;
    rc = utf8_decode((const char *)nf, (size_t)m, out, &dummy, e);
    free(nf);
    return rc;
}

static int cp_equal(const cpbuf *a, const cpbuf *b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof *a->v) == 0);
}

/* Plain printable ASCII (plus tab, LF, FF) is left alone by every fix. */
static int needs_fixing(const uint32_t *v, size_t n, int unescape) {
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c >= 0x7F || (c < 0x20 && c != '\t' && c != '\n' && c != '\f') ||
            (unescape && c == '&'))
            return 1;
    }
    return 0;
}

/* ftfy's fix_encoding on cur (nxt is scratch). Lines without a character
 * above U+007F hold no mojibake and skip it. */
static int fix_encoding(cpbuf *cur, cpbuf *nxt, cs_error *e) {
    int ascii = 1;
    for (size_t i = 0; i < cur->n && ascii; i++) ascii = cur->v[i] < 0x80;
    if (ascii) return 0;
    uint32_t *fixed = NULL;
    size_t n = 0;
    int rc = cs_mojibake_fix_encoding(cur->v, cur->n, &fixed, &n, e);
    nxt->n = 0;
    if (!rc) rc = cp_append(nxt, fixed, n, e);
    if (!rc) cp_swap(cur, nxt);
    free(fixed);
    return rc;
}

/* ftfy's fix_and_explain on one line: all fixes, repeated until the text no
 * longer changes. */
static int ftfy_segment(const uint32_t *v, size_t n, int unescape, cpbuf *out, cs_error *e) {
    if (!needs_fixing(v, n, unescape)) return cp_append(out, v, n, e);
    cpbuf cur = {0}, nxt = {0};
    int rc = cp_append(&cur, v, n, e);
    /* Each round that changes something shortens an entity chain or fixes
     * characters for good; the bound only guards against a bug looping. */
    for (size_t round = 0; !rc; round++) {
        if (round > n + 16) {
            rc = cs_fail(e, CLIPSCORE_EINTERNAL, "text cleanup did not settle");
            break;
        }
        cpbuf orig = {0};
        if ((rc = cp_append(&orig, cur.v, cur.n, e))) break;
        if (unescape) {
            nxt.n = 0;
            if (!(rc = ftfy_unescape(cur.v, cur.n, &nxt, e))) cp_swap(&cur, &nxt);
        }
        if (!rc) rc = fix_encoding(&cur, &nxt, e);
        if (!rc) {
            nxt.n = 0;
            if (!(rc = fix_chars(cur.v, cur.n, &nxt, e))) cp_swap(&cur, &nxt);
        }
        if (!rc) {
            nxt.n = 0;
            if (!(rc = fix_breaks_controls(cur.v, cur.n, &nxt, e))) cp_swap(&cur, &nxt);
        }
        if (!rc) {
            nxt.n = 0;
            if (!(rc = nfc(cur.v, cur.n, &nxt, e))) cp_swap(&cur, &nxt);
        }
        int same = !rc && cp_equal(&orig, &cur);
        cp_free(&orig);
        if (rc || same) break;
    }
    if (!rc) rc = cp_append(out, cur.v, cur.n, e);
    cp_free(&cur);
    cp_free(&nxt);
    return rc;
}

/* ftfy.fix_text: line by line (each line keeps its '\n'; lines over a
 * million characters are cut there); entity decoding stops for good at the
 * first line that contains '<'. */
static int ftfy_fix_text(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    const size_t max_len = 1000000;
    int unescape = 1;
    size_t pos = 0;
    while (pos < n) {
        size_t end = pos;
        while (end < n && v[end] != '\n') end++;
        end = end < n ? end + 1 : n;
        if (end - pos > max_len) end = pos + max_len;
        for (size_t i = pos; i < end && unescape; i++)
            if (v[i] == '<') unescape = 0;
        int rc = ftfy_segment(v + pos, end - pos, unescape, out, e);
        if (rc) return rc;
        pos = end;
    }
    return 0;
}

/* ---- lowercase -------------------------------------------------------------- */

/* Unicode's Cased property (Lowercase, Uppercase, Lt), from the category,
 * case mappings, and the Other_Lowercase letters that have no mapping. */
static int is_cased(uint32_t c) {
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT)
        return 1;
    if ((uint32_t)utf8proc_tolower((utf8proc_int32_t)c) != c ||
        (uint32_t)utf8proc_toupper((utf8proc_int32_t)c) != c)
        return 1;
    static const uint32_t other[][2] = {
        {0x00AA, 0x00AA},   {0x00BA, 0x00BA},   {0x02B0, 0x02B8},   {0x02C0, 0x02C1},
        {0x02E0, 0x02E4},   {0x0345, 0x0345},   {0x037A, 0x037A},   {0x10FC, 0x10FC},
        {0x1D2C, 0x1D6A},   {0x1D78, 0x1D78},   {0x1D9B, 0x1DBF},   {0x2071, 0x2071},
        {0x207F, 0x207F},   {0x2090, 0x209C},   {0x2160, 0x217F},   {0x24B6, 0x24E9},
        {0x2C7C, 0x2C7D},   {0xA69C, 0xA69D},   {0xA770, 0xA770},   {0xA7F2, 0xA7F4},
        {0xA7F8, 0xA7F9},   {0xAB5C, 0xAB5F},   {0xAB69, 0xAB69},   {0x10780, 0x10780},
        {0x10783, 0x10785}, {0x10787, 0x107B0}, {0x107B2, 0x107BA}, {0x1E030, 0x1E06D},
        {0x1F130, 0x1F149}, {0x1F150, 0x1F169}, {0x1F170, 0x1F189},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (c >= other[i][0] && c <= other[i][1]) return 1;
    return 0;
}

/* Unicode's Case_Ignorable property: Mn, Me, Cf, Lm, Sk, and the
 * Word_Break MidLetter, MidNumLet and Single_Quote characters. */
static int is_case_ignorable(uint32_t c) {
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK:
        return 1;
    default:
        break;
    }
    static const uint16_t word_mid[] = {0x0027, 0x002E, 0x003A, 0x00B7, 0x0387, 0x055F,
                                        0x05F4, 0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                        0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof word_mid / sizeof word_mid[0]; i++)
        if (word_mid[i] == c) return 1;
    return 0;
}

/* Python's str.lower(): simple lowercase, U+0130 -> "i\u0307", and capital
 * sigma -> final sigma after a cased letter when no cased letter follows
 * (case-ignorable characters skipped both ways). */
static int py_lower(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc = cp_reserve(out, n + 8, e);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = v[i];
        if (c < 0x80) {
            if ((rc = cp_push(out, (c >= 'A' && c <= 'Z') ? c + 32 : c, e))) return rc;
        } else if (c == 0x0130) {
            if ((rc = cp_push(out, 'i', e)) || (rc = cp_push(out, 0x0307, e))) return rc;
        } else if (c == 0x03A3) {
            size_t j = i;
            while (j > 0 && is_case_ignorable(v[j - 1])) j--;
            int final = j > 0 && is_cased(v[j - 1]);
            if (final) {
                size_t k = i + 1;
                while (k < n && is_case_ignorable(v[k])) k++;
                final = k == n || !is_cased(v[k]);
            }
            if ((rc = cp_push(out, final ? 0x03C2 : 0x03C3, e))) return rc;
        } else {
            if ((rc = cp_push(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c), e))) return rc;
        }
    }
    return 0;
}

/* ---- public ------------------------------------------------------------------- */

/* Runs one code point transform on UTF-8 in, UTF-8 out. */
typedef int (*cp_transform)(const uint32_t *v, size_t n, cpbuf *out, cs_error *e);

static int run_transform(const char *text, cp_transform f, char **out, unsigned *flags,
                         cs_error *e) {
    if (!text || !out) return cs_fail(e, CLIPSCORE_EARG, "text cleanup: NULL argument");
    *out = NULL;
    cpbuf in = {0}, res = {0};
    int invalid = 0;
    int rc = utf8_decode(text, strlen(text), &in, &invalid, e);
    if (!rc) rc = f(in.v, in.n, &res, e);
    if (!rc) rc = utf8_encode(res.v, res.n, out, NULL, e);
    if (!rc && invalid && flags) *flags |= CLIPSCORE_TOKEN_INVALID_UTF8;
    cp_free(&in);
    cp_free(&res);
    return rc;
}

static int full_clean(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    cpbuf a = {0}, b = {0};
    int rc = ftfy_fix_text(v, n, &a, e);
    if (!rc) rc = py_html_unescape(a.v, a.n, &b, e);
    if (!rc) {
        a.n = 0;
        rc = py_html_unescape(b.v, b.n, &a, e);
    }
    if (!rc) {
        /* strip, collapse \s runs to one space, strip again */
        size_t s = 0, t = a.n;
        while (s < t && py_isspace(a.v[s])) s++;
        while (t > s && py_isspace(a.v[t - 1])) t--;
        b.n = 0;
        for (size_t i = s; i < t && !rc; i++) {
            if (cs_text_is_regex_space(a.v[i])) {
                while (i + 1 < t && cs_text_is_regex_space(a.v[i + 1])) i++;
                rc = cp_push(&b, ' ', e);
            } else {
                rc = cp_push(&b, a.v[i], e);
            }
        }
        s = 0, t = b.n;
        while (s < t && py_isspace(b.v[s])) s++;
        while (t > s && py_isspace(b.v[t - 1])) t--;
        /* b.v is NULL when the text cleaned to nothing: NULL + 0 is undefined. */
        if (!rc) rc = py_lower(t > s ? b.v + s : NULL, t - s, out, e);
    }
    cp_free(&a);
    cp_free(&b);
    return rc;
}

int cs_text_clean(const char *text, char **out, unsigned *flags, cs_error *e) {
    return run_transform(text, full_clean, out, flags, e);
}

int cs_text_fix(const char *text, char **out, unsigned *flags, cs_error *e) {
    return run_transform(text, ftfy_fix_text, out, flags, e);
}

static int fix_encoding_transform(const uint32_t *v, size_t n, cpbuf *out, cs_error *e) {
    int rc = cp_append(out, v, n, e);
    cpbuf scratch = {0};
    if (!rc) rc = fix_encoding(out, &scratch, e);
    cp_free(&scratch);
    return rc;
}

int cs_text_fix_encoding(const char *text, char **out, cs_error *e) {
    return run_transform(text, fix_encoding_transform, out, NULL, e);
}

int cs_text_html_unescape(const char *text, char **out, cs_error *e) {
    return run_transform(text, py_html_unescape, out, NULL, e);
}

int cs_text_lower(const char *text, char **out, cs_error *e) {
    return run_transform(text, py_lower, out, NULL, e);
}
