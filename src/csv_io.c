/* csv_io.c - streaming CSV reader on libcsv, column detection, CSV writer.
 *
 * Covers: RFC 4180 records read one at a time from 64 KiB chunks (memory is
 * bounded by the largest record, never by the file), a UTF-8 BOM at the very
 * start of the file, CRLF / LF / CR line ends, 1-based line numbers that
 * count line breaks inside quoted fields too, blank lines skipped, an
 * unterminated quote at end of file reported as a malformed last record;
 * finding the image and caption columns; writing records with minimal quoting.
 * Leaves out: other delimiters, encodings other than UTF-8 (bytes are passed
 * through untouched), type conversion.
 *
 * Leniency (libcsv non-strict mode): a field is quoted only when a quote is
 * its very first byte. Quotes inside an unquoted field are kept as literal
 * characters (`5" screen` reads as is). Inside a quoted field, a quote that is
 * neither doubled nor followed by a comma or line end is kept literally and
 * the field stays quoted (`"say "hi" now",x` gives `say "hi" now` and `x`);
 * so a space after a closing quote (`"a" ,b`) keeps the field open and
 * the row usually comes out with too few fields, which the caller reports.
 * Spaces are never trimmed from values. A line holding only spaces or tabs
 * counts as blank.
 *
 * libcsv does not report byte positions, so the reader feeds it one line at
 * a time (each call ends just after a CR or LF) and keeps a small shadow of
 * its quote state to know on which line each record and field starts; after
 * every call the two are cross-checked so a disagreement is reported as a
 * bug instead of producing wrong line numbers. */
#define _GNU_SOURCE
#include "csv_io.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK_SIZE (64 * 1024)
/* A record this large is almost certainly an unclosed quote swallowing the
 * file; stop before it exhausts memory. */
#define MAX_RECORD_BYTES ((size_t)64 << 20)

const char *const cs_csv_image_columns[] = {
    "image",     "image_path", "imagepath", "image_file", "image_filename", "img",  "img_path",
    "filepath",  "file_path",  "file",      "filename",   "file_name",      "path", "url",
    "image_url", "img_url",    NULL};

const char *const cs_csv_caption_columns[] = {"caption", "captions", "text",        "caption_text",
                                              "title",   "prompt",   "description", "sentence",
                                              "alt",     "alt_text", "alttext",     NULL};

/* Fields of one record: bytes packed in `data` (each followed by a NUL),
 * located by offsets while growing, by pointers once the record is done. */
typedef struct row_buf {
    char *data;
    size_t len, cap;
    size_t *offs;
    size_t *lens;
    char **fields;
    int n, cap_fields;
} row_buf;

static void row_free(row_buf *b) {
    free(b->data);
    free(b->offs);
    free(b->lens);
    free(b->fields);
    memset(b, 0, sizeof *b);
}

static int row_add(row_buf *b, const void *bytes, size_t n) {
    if (b->n == b->cap_fields) {
        int nc = b->cap_fields ? b->cap_fields * 2 : 16;
        size_t *no = realloc(b->offs, (size_t)nc * sizeof *no);
        if (!no) return -1;
        b->offs = no;
        size_t *nl = realloc(b->lens, (size_t)nc * sizeof *nl);
        if (!nl) return -1;
        b->lens = nl;
        char **nf = realloc(b->fields, (size_t)nc * sizeof *nf);
        if (!nf) return -1;
        b->fields = nf;
        b->cap_fields = nc;
    }
    if (b->cap - b->len < n + 1) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc - b->len < n + 1) nc *= 2;
        char *nd = realloc(b->data, nc);
        if (!nd) return -1;
        b->data = nd;
        b->cap = nc;
    }
    if (n) memcpy(b->data + b->len, bytes, n);
    b->data[b->len + n] = '\0';
    b->offs[b->n] = b->len;
    b->lens[b->n] = n;
    b->n++;
    b->len += n + 1;
    return 0;
}

/* Points fields[] into data once no more reallocation can happen. */
static void row_finish(row_buf *b) {
    for (int i = 0; i < b->n; i++) b->fields[i] = b->data + b->offs[i];
}

/* Shadow of libcsv's state, enough to know where records and fields begin. */
enum { ST_ROW, ST_FIELD, ST_UNQUOTED, ST_QUOTED, ST_QUOTE_SEEN };

struct cs_csv_reader {
    char *path;
    int fd;
    struct csv_parser parser;
    int parser_ready;

    unsigned char *chunk;
    size_t chunk_len, chunk_pos;
    int started; /* first bytes read (BOM checked) */
    int eof;     /* read() returned 0 */
    int done;    /* csv_fini called */

    int state;
    long line;        /* line of the next byte */
    int after_cr;     /* last byte fed was CR (a following LF ends no line) */
    long row_line;    /* where the record being read starts */
    long field_line;  /* where its current field starts */
    int first_quoted; /* its first field is quoted */
    int row_ended;    /* libcsv reported the end of a record */
    int cb_failed;    /* out of memory inside a callback */

    row_buf cur;
    row_buf head;
    cs_csv_record header;
    long next_index;
};

static void on_field(void *s, size_t n, void *data) {
    cs_csv_reader *r = data;
    if (r->cb_failed) return;
    if (row_add(&r->cur, s, n) != 0) r->cb_failed = 1;
}

static void on_row(int c, void *data) {
    (void)c;
    cs_csv_reader *r = data;
    r->row_ended = 1;
}

static int never_space(unsigned char c) {
    (void)c;
    return 0; /* keep every byte of a value: libcsv would trim spaces and tabs */
}

static int is_term(unsigned char c) {
    return c == '\r' || c == '\n';
}

/* Runs the shadow state over s[0..len) up to and including the first line
 * break; returns the bytes consumed and sets *row_end when a record ends. */
static size_t shadow_scan(cs_csv_reader *r, const unsigned char *s, size_t len, int *row_end) {
    *row_end = 0;
    int st = r->state;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i++];
        switch (st) {
        case ST_ROW:
            if (is_term(c)) break; /* blank line */
            r->row_line = r->field_line = r->line;
            r->first_quoted = c == '"';
            st = c == ',' ? ST_FIELD : c == '"' ? ST_QUOTED : ST_UNQUOTED;
            break;
        case ST_FIELD:
            r->field_line = r->line;
            if (is_term(c)) {
                st = ST_ROW;
                *row_end = 1;
            } else {
                st = c == ',' ? ST_FIELD : c == '"' ? ST_QUOTED : ST_UNQUOTED;
            }
            break;
        case ST_UNQUOTED:
            if (c == ',') {
                st = ST_FIELD;
            } else if (is_term(c)) {
                st = ST_ROW;
                *row_end = 1;
            }
            break;
        case ST_QUOTED:
            if (c == '"') st = ST_QUOTE_SEEN;
            break;
        case ST_QUOTE_SEEN:
            if (c == ',') {
                st = ST_FIELD;
            } else if (is_term(c)) {
                st = ST_ROW;
                *row_end = 1;
            } else {
                st = ST_QUOTED; /* doubled quote, or a stray one kept literally */
            }
            break;
        }
        if (is_term(c)) {
            if (!(c == '\n' && r->after_cr)) r->line++;
            r->after_cr = c == '\r';
            break;
        }
        r->after_cr = 0;
    }
    r->state = st;
    return i;
}

/* Reads the next chunk; strips a BOM from the start of the file. */
static int fill_chunk(cs_csv_reader *r, cs_error *e) {
    size_t have = 0;
    for (;;) {
        ssize_t got = read(r->fd, r->chunk + have, CHUNK_SIZE - have);
        if (got < 0) {
            if (errno == EINTR) continue;
            return cs_fail(e, CLIPSCORE_EIO, "%s: read error: %s", r->path, strerror(errno));
        }
        if (got == 0) {
            if (have == 0) r->eof = 1;
            break;
        }
        have += (size_t)got;
        /* A pipe may deliver fewer than the 3 bytes needed to spot a BOM. */
        if (r->started || have >= 3) break;
    }
    r->chunk_len = have;
    r->chunk_pos = 0;
    if (!r->started) {
        r->started = 1;
        if (have >= 3 && memcmp(r->chunk, "\xEF\xBB\xBF", 3) == 0) r->chunk_pos = 3;
    }
    return 0;
}

static int is_blank(const row_buf *b, int first_quoted) {
    if (b->n != 1 || first_quoted) return 0;
    for (size_t i = 0; i < b->lens[0]; i++) {
        char c = b->data[b->offs[0] + i];
        if (c != ' ' && c != '\t') return 0;
    }
    return 1;
}

static int lost_track(cs_csv_reader *r, cs_error *e) {
    return cs_fail(e, CLIPSCORE_EINTERNAL,
                   "%s: line %ld: CSV reader lost track of record boundaries (a bug)", r->path,
                   r->line);
}

/* Parses until one non-blank record is complete in r->cur. Returns 1 with a
 * record, 0 at end of file, negative on error. *malformed is set for an
 * unterminated quote at end of file (message in e). */
static int read_record(cs_csv_reader *r, int *malformed, cs_error *e) {
    *malformed = 0;
    r->cur.n = 0;
    r->cur.len = 0;
    for (;;) {
        if (r->chunk_pos == r->chunk_len) {
            if (r->done) return 0;
            if (!r->eof) {
                int rc = fill_chunk(r, e);
                if (rc) return rc;
                if (!r->eof) continue;
            }
            int open_quote = r->state == ST_QUOTED;
            int in_row = r->state != ST_ROW;
            r->row_ended = 0;
            csv_fini(&r->parser, on_field, on_row, r);
            r->done = 1;
            r->state = ST_ROW;
            if (r->cb_failed) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", r->path);
            if (r->row_ended != in_row) return lost_track(r, e);
            if (!r->row_ended || is_blank(&r->cur, r->first_quoted)) return 0;
            row_finish(&r->cur);
            if (open_quote) {
                *malformed = 1;
                if (r->field_line == r->row_line)
                    cs_fail(e, CLIPSCORE_EFORMAT,
                            "%s: line %ld: unterminated quote: the quoted field opened on this "
                            "line is never closed, so the row runs to the end of the file",
                            r->path, r->field_line);
                else
                    cs_fail(e, CLIPSCORE_EFORMAT,
                            "%s: line %ld: unterminated quote: the quoted field opened on this "
                            "line (in the row starting on line %ld) is never closed, so the row "
                            "runs to the end of the file",
                            r->path, r->field_line, r->row_line);
            }
            return 1;
        }

        const unsigned char *seg = r->chunk + r->chunk_pos;
        int row_end;
        size_t n = shadow_scan(r, seg, r->chunk_len - r->chunk_pos, &row_end);
        r->chunk_pos += n;

        /* libcsv grows its field buffer by blk_size steps: make growth geometric. */
        size_t bufsize = csv_get_buffer_size(&r->parser);
        csv_set_blk_size(&r->parser, bufsize > 128 ? bufsize : 128);
        r->row_ended = 0;
        if (csv_parse(&r->parser, seg, n, on_field, on_row, r) != n) {
            int err = csv_error(&r->parser);
            return cs_fail(e, err == CSV_ENOMEM ? CLIPSCORE_ENOMEM : CLIPSCORE_EFORMAT,
                           "%s: line %ld: %s", r->path, r->line, csv_strerror(err));
        }
        if (r->cb_failed) return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", r->path);
        if (r->row_ended != row_end) return lost_track(r, e);
        if (r->cur.len + r->parser.entry_pos > MAX_RECORD_BYTES) {
            if (r->state == ST_QUOTED)
                return cs_fail(e, CLIPSCORE_ELIMIT,
                               "%s: line %ld: record starting here is longer than %zu MiB; is "
                               "the quote opened on line %ld never closed?",
                               r->path, r->row_line, MAX_RECORD_BYTES >> 20, r->field_line);
            return cs_fail(e, CLIPSCORE_ELIMIT,
                           "%s: line %ld: record starting here is longer than %zu MiB", r->path,
                           r->row_line, MAX_RECORD_BYTES >> 20);
        }
        if (!row_end) continue;
        if (is_blank(&r->cur, r->first_quoted)) {
            r->cur.n = 0;
            r->cur.len = 0;
            continue;
        }
        row_finish(&r->cur);
        return 1;
    }
}

void cs_csv_close(cs_csv_reader *r) {
    if (!r) return;
    if (r->fd >= 0) close(r->fd);
    if (r->parser_ready) csv_free(&r->parser);
    row_free(&r->cur);
    row_free(&r->head);
    free(r->chunk);
    free(r->path);
    free(r);
}

int cs_csv_open(const char *path, cs_csv_reader **out, cs_error *e) {
    *out = NULL;
    cs_csv_reader *r = cs_calloc(1, sizeof *r, e);
    if (!r) return CLIPSCORE_ENOMEM;
    r->fd = -1;
    r->line = 1;
    r->state = ST_ROW;
    r->path = cs_strdup(path, e);
    r->chunk = cs_malloc(CHUNK_SIZE, 1, e);
    if (!r->path || !r->chunk) {
        cs_csv_close(r);
        return CLIPSCORE_ENOMEM;
    }
    if (csv_init(&r->parser, 0) != 0) {
        cs_csv_close(r);
        return cs_fail(e, CLIPSCORE_ENOMEM, "%s: out of memory", path);
    }
    r->parser_ready = 1;
    csv_set_space_func(&r->parser, never_space);
    /* "-" is standard input (duplicated, so closing the reader leaves fd 0). */
    r->fd = strcmp(path, "-") == 0 ? fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0)
                                   : open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int rc = cs_fail(e, CLIPSCORE_EIO, "%s: %s", path, strerror(errno));
        cs_csv_close(r);
        return rc;
    }

    int malformed;
    int rc = read_record(r, &malformed, e);
    if (rc == 0) rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: empty file, expected a header row", path);
    if (rc > 0 && malformed)
        rc = cs_fail(e, CLIPSCORE_EFORMAT,
                     "%s: line %ld: unterminated quote in the header row: the quoted field "
                     "opened on this line is never closed",
                     path, r->field_line);
    if (rc > 0) {
        int named = 0;
        for (int i = 0; i < r->cur.n; i++) named |= r->cur.lens[i] != 0;
        if (!named)
            rc = cs_fail(e, CLIPSCORE_EFORMAT, "%s: line %ld: the header row has no column names",
                         path, r->row_line);
    }
    if (rc < 0) {
        cs_csv_close(r);
        return rc;
    }
    /* The header keeps its own buffer; data records reuse r->cur. */
    r->head = r->cur;
    memset(&r->cur, 0, sizeof r->cur);
    r->header.n = r->head.n;
    r->header.fields = r->head.fields;
    r->header.lens = r->head.lens;
    r->header.line = r->row_line;
    r->header.index = -1;
    *out = r;
    return 0;
}

const cs_csv_record *cs_csv_header(const cs_csv_reader *r) {
    return &r->header;
}

int cs_csv_next(cs_csv_reader *r, cs_csv_record *rec, int *malformed, cs_error *e) {
    int bad = 0;
    if (malformed) *malformed = 0;
    int rc = read_record(r, &bad, e);
    if (rc <= 0) {
        memset(rec, 0, sizeof *rec);
        return rc;
    }
    if (malformed) *malformed = bad;
    rec->n = r->cur.n;
    rec->fields = r->cur.fields;
    rec->lens = r->cur.lens;
    rec->line = r->row_line;
    rec->index = r->next_index++;
    return 1;
}

size_t cs_csv_memory_bytes(const cs_csv_reader *r) {
    size_t per_field = sizeof(size_t) * 2 + sizeof(char *);
    return CHUNK_SIZE + r->cur.cap + r->head.cap +
           (size_t)(r->cur.cap_fields + r->head.cap_fields) * per_field +
           csv_get_buffer_size((struct csv_parser *)&r->parser);
}

/* ---- column detection ---- */

static int ascii_lower(int c) {
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Header name `s` (n bytes), trimmed of spaces and tabs, equals `name`
 * ignoring ASCII case. */
static int name_matches(const char *s, size_t n, const char *name) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    size_t k = strlen(name);
    if (k != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)name[i])) return 0;
    return 1;
}

/* Appends s (n bytes) to out, control bytes shown as '?', long names cut. */
static void put_name(char *out, size_t cap, const char *s, size_t n) {
    size_t at = strlen(out);
    if (at + 1 >= cap) return;
    out[at++] = '"';
    for (size_t i = 0; i < n && at + 5 < cap; i++) {
        if (i == 40) {
            memcpy(out + at, "...", 3);
            at += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        out[at++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (at + 1 < cap) out[at++] = '"';
    out[at] = '\0';
}

/* "a", "b", "c" (cut short with a count when long). */
static void describe_columns(const cs_csv_record *h, char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; i < h->n; i++) {
        size_t at = strlen(out);
        if (at > cap - 60) {
            snprintf(out + at, cap - at, ", ... (%d columns)", h->n);
            return;
        }
        if (i) strcat(out, ", ");
        put_name(out, cap, h->fields[i], h->lens[i]);
    }
}

static void describe_names(const char *const *names, char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; names[i]; i++) {
        size_t at = strlen(out);
        snprintf(out + at, cap - at, "%s%s", i ? ", " : "", names[i]);
    }
}

int cs_csv_find_column(const cs_csv_record *header, const char *path, const char *want,
                       const char *const *candidates, const char *what, cs_error *e) {
    char cols[400], opt[64];
    const char *w = what ? what : "the";
    if (what)
        snprintf(opt, sizeof opt, "--%s-column", what);
    else
        snprintf(opt, sizeof opt, "a column option");
    describe_columns(header, cols, sizeof cols);

    if (want) {
        if (!want[0]) return cs_fail(e, CLIPSCORE_EARG, "%s needs a column name or #N", opt);
        /* An exact name wins, so a column literally called "#2" stays reachable. */
        size_t wl = strlen(want);
        int found = -1, hint = -1;
        for (int i = 0; i < header->n; i++) {
            if (header->lens[i] == wl && memcmp(header->fields[i], want, wl) == 0) {
                if (found >= 0)
                    return cs_fail(e, CLIPSCORE_EFORMAT,
                                   "%s: column \"%s\" (%s) appears twice in the header, as "
                                   "columns #%d and #%d; choose one with %s #N",
                                   path, want, opt, found + 1, i + 1, opt);
                found = i;
            } else if (hint < 0 && name_matches(header->fields[i], header->lens[i], want)) {
                hint = i;
            }
        }
        if (found >= 0) return found;
        if (want[0] == '#') {
            const char *d = want + 1;
            long num = 0;
            int ok = *d != '\0';
            for (; *d && ok; d++) {
                if (*d < '0' || *d > '9' || num > 1000000000L)
                    ok = 0;
                else
                    num = num * 10 + (*d - '0');
            }
            if (!ok)
                return cs_fail(e, CLIPSCORE_EARG,
                               "%s %s: expected a column name or #N with N a column number", opt,
                               want);
            if (num < 1 || num > header->n)
                return cs_fail(e, CLIPSCORE_EARG,
                               "%s: %s %s is out of range: the header has %d column%s: %s", path,
                               opt, want, header->n, header->n == 1 ? "" : "s", cols);
            return (int)(num - 1);
        }
        char alt[96] = "";
        if (hint >= 0) {
            strcpy(alt, "; did you mean ");
            put_name(alt, sizeof alt, header->fields[hint], header->lens[hint]);
            strcat(alt, "?");
        }
        return cs_fail(e, CLIPSCORE_EARG,
                       "%s: no column named \"%s\" (from %s); the header has: %s%s", path, want,
                       opt, cols, alt);
    }

    for (int c = 0; candidates && candidates[c]; c++) {
        int found = -1;
        for (int i = 0; i < header->n; i++) {
            if (!name_matches(header->fields[i], header->lens[i], candidates[c])) continue;
            if (found >= 0)
                return cs_fail(e, CLIPSCORE_EFORMAT,
                               "%s: %s column \"%s\" appears twice in the header, as columns #%d "
                               "and #%d; choose one with %s #N",
                               path, w, candidates[c], found + 1, i + 1, opt);
            found = i;
        }
        if (found >= 0) return found;
    }
    char names[400];
    describe_names(candidates ? candidates : (const char *const[]){NULL}, names, sizeof names);
    return cs_fail(e, CLIPSCORE_EFORMAT,
                   "%s: no %s column found (looked for %s); the header has: %s; name it with "
                   "%s NAME or #N",
                   path, w, names[0] ? names : "nothing", cols, opt);
}

/* ---- writer ---- */

static int needs_quotes(const char *s, size_t n, int only_field) {
    if (only_field) {
        /* A lone empty or blank field would read back as a skipped blank line. */
        size_t i = 0;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        if (i == n) return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n') return 1;
    return 0;
}

int cs_csv_write_record(FILE *fp, const char *const *fields, const size_t *lens, int n,
                        cs_error *e) {
    if (n < 1) return cs_fail(e, CLIPSCORE_EARG, "CSV record with no fields");
    errno = 0;
    int bad = 0;
    for (int i = 0; i < n && !bad; i++) {
        const char *s = fields[i] ? fields[i] : "";
        size_t len = lens && fields[i] ? lens[i] : strlen(s);
        if (i) bad |= fputc(',', fp) == EOF;
        if (!needs_quotes(s, len, n == 1)) {
            bad |= len && fwrite(s, 1, len, fp) != len;
            continue;
        }
        bad |= fputc('"', fp) == EOF;
        while (len && !bad) {
            const char *q = memchr(s, '"', len);
            size_t k = q ? (size_t)(q - s) + 1 : len; /* up to and including a quote */
            bad |= fwrite(s, 1, k, fp) != k;
            if (q) bad |= fputc('"', fp) == EOF; /* doubled */
            s += k;
            len -= k;
        }
        bad |= fputc('"', fp) == EOF;
    }
    bad |= fputc('\n', fp) == EOF;
    if (bad || ferror(fp))
        return cs_fail(e, CLIPSCORE_EIO, "writing a CSV record failed: %s",
                       strerror(errno ? errno : EIO));
    return 0;
}

int cs_csv_column_named(const cs_csv_record *header, const char *name, int prefix) {
    for (int k = 0; name && k < header->n; k++)
        if (prefix ? strncmp(header->fields[k], name, strlen(name)) == 0
                   : strcmp(header->fields[k], name) == 0)
            return k;
    return -1;
}
