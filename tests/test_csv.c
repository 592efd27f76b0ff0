/* test_csv.c - the CSV reader and writer: quoting round trips, BOM, line
 * ends, line numbers across multi-line fields and chunk boundaries, blank
 * lines, header-only and empty files, unterminated quotes, ragged rows,
 * lenient stray quotes, column detection and its messages, and a 200,000-row
 * stream read through a named pipe with bounded memory. */
#define _GNU_SOURCE
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csv_io.h"
#include "test.h"

#define MAX_ROWS 64

static char tmp[512];

typedef struct row {
    int n;
    char **fields;
    size_t *lens;
    long line, index;
    int malformed;
    char msg[1024];
} row;

typedef struct table {
    int open_rc; /* cs_csv_open's status */
    char open_msg[1024];
    row header;
    int n_rows;
    row rows[MAX_ROWS];
    int end_rc; /* what ended the reading: 0 at end of file */
} table;

static void copy_row(row *dst, const cs_csv_record *src) {
    dst->n = src->n;
    dst->fields = calloc((size_t)src->n + 1, sizeof *dst->fields);
    dst->lens = calloc((size_t)src->n + 1, sizeof *dst->lens);
    for (int i = 0; i < src->n; i++) {
        dst->fields[i] = malloc(src->lens[i] + 1);
        memcpy(dst->fields[i], src->fields[i], src->lens[i] + 1);
        dst->lens[i] = src->lens[i];
    }
    dst->line = src->line;
    dst->index = src->index;
}

static void free_row(row *r) {
    for (int i = 0; i < r->n; i++) free(r->fields[i]);
    free(r->fields);
    free(r->lens);
}

static void free_table(table *t) {
    if (t->open_rc == 0) free_row(&t->header);
    for (int i = 0; i < t->n_rows; i++) free_row(&t->rows[i]);
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp || (len && fwrite(data, 1, len, fp) != len) || fclose(fp) != 0) {
        perror(path);
        exit(2);
    }
}

static const char *tmp_path(const char *name) {
    static char buf[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmp, name);
    return buf[k];
}

static void read_table(const char *path, table *t) {
    memset(t, 0, sizeof *t);
    cs_error e = {0};
    cs_csv_reader *r = NULL;
    t->open_rc = cs_csv_open(path, &r, &e);
    if (t->open_rc) {
        snprintf(t->open_msg, sizeof t->open_msg, "%s", e.msg);
        CHECK(r == NULL);
        return;
    }
    copy_row(&t->header, cs_csv_header(r));
    for (;;) {
        cs_csv_record rec;
        int malformed = -1;
        cs_error_clear(&e);
        int rc = cs_csv_next(r, &rec, &malformed, &e);
        if (rc <= 0) {
            t->end_rc = rc;
            break;
        }
        if (t->n_rows == MAX_ROWS) break;
        row *w = &t->rows[t->n_rows++];
        copy_row(w, &rec);
        w->malformed = malformed;
        snprintf(w->msg, sizeof w->msg, "%s", e.msg);
    }
    cs_csv_close(r);
}

static void read_text(const char *name, const char *text, table *t) {
    const char *path = tmp_path(name);
    write_file(path, text, strlen(text));
    read_table(path, t);
}

static int field_is(const row *r, int i, const char *want) {
    return i < r->n && r->lens[i] == strlen(want) && memcmp(r->fields[i], want, r->lens[i]) == 0;
}

#define CHECK_FIELD(r, i, want)                                                                    \
    CHECK_MSG(field_is((r), (i), (want)), "field %d is \"%s\", want \"%s\"", (i),                  \
              (i) < (r)->n ? (r)->fields[(i)] : "(missing)", (want))

/* Line breaks in data[0..len): CRLF, CR and LF each count once. */
static long count_breaks(const char *data, size_t len) {
    long n = 0;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\r') n++;
        if (data[i] == '\n' && !(i && data[i - 1] == '\r')) n++;
    }
    return n;
}

static void test_round_trip(void) {
    size_t big_len = 100 * 1000;
    char *big = malloc(big_len + 1);
    for (size_t i = 0; i < big_len; i++) {
        static const char mix[] = "abc, \"def\"\r\nghi\rjkl\n\xc3\xa9 ";
        big[i] = mix[i % (sizeof mix - 1)];
    }
    big[big_len] = '\0';

    const char *rows[][4] = {
        {"plain", "with,comma", "say \"hi\"", ""},
        {"cr\rinside", "lf\ninside", "crlf\r\ninside", "\""},
        {"", "", "", ""},
        {"\xc3\xa9t\xc3\xa9 \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac", "  leading and trailing  ",
         "\ttab\t", "\"\""},
        {",", "\"quoted\"", "\n", "end"},
        {big, "after big", "x", "y"},
    };
    int n_rows = (int)(sizeof rows / sizeof rows[0]);
    const char *path = tmp_path("roundtrip.csv");
    FILE *fp = fopen(path, "wb");
    cs_error e = {0};
    long offsets[16];
    const char *head[4] = {"image", "caption", "notes", "extra"};
    CHECK_EQ_INT(cs_csv_write_record(fp, head, NULL, 4, &e), 0);
    for (int i = 0; i < n_rows; i++) {
        offsets[i] = ftell(fp);
        CHECK_EQ_INT(cs_csv_write_record(fp, rows[i], NULL, 4, &e), 0);
    }
    /* Explicit lengths: a NUL byte inside a field survives. */
    offsets[n_rows] = ftell(fp);
    const char *nul_row[2] = {"a\0b", "c"};
    size_t nul_lens[2] = {3, 1};
    CHECK_EQ_INT(cs_csv_write_record(fp, nul_row, nul_lens, 2, &e), 0);
    /* A lone empty or blank field must not turn into a skipped blank line. */
    offsets[n_rows + 1] = ftell(fp);
    const char *lone_empty[1] = {""};
    CHECK_EQ_INT(cs_csv_write_record(fp, lone_empty, NULL, 1, &e), 0);
    offsets[n_rows + 2] = ftell(fp);
    const char *lone_blank[1] = {"  "};
    CHECK_EQ_INT(cs_csv_write_record(fp, lone_blank, NULL, 1, &e), 0);
    fclose(fp);

    char *text = NULL;
    size_t text_len = 0;
    CHECK_EQ_INT(cs_read_file(path, 0, &text, &text_len, &e), 0);

    table t;
    read_table(path, &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.end_rc, 0);
    CHECK_EQ_INT(t.n_rows, n_rows + 3);
    CHECK_EQ_INT(t.header.n, 4);
    CHECK_FIELD(&t.header, 1, "caption");
    for (int i = 0; i < n_rows && i < t.n_rows; i++) {
        CHECK_EQ_INT(t.rows[i].n, 4);
        for (int j = 0; j < 4; j++) CHECK_FIELD(&t.rows[i], j, rows[i][j]);
        CHECK_EQ_INT(t.rows[i].index, i);
        CHECK_EQ_INT(t.rows[i].line, 1 + count_breaks(text, (size_t)offsets[i]));
        CHECK_EQ_INT(t.rows[i].malformed, 0);
    }
    if (t.n_rows == n_rows + 3) {
        row *r = &t.rows[n_rows];
        CHECK(r->n == 2 && r->lens[0] == 3 && memcmp(r->fields[0], "a\0b", 3) == 0);
        CHECK_EQ_INT(r->line, 1 + count_breaks(text, (size_t)offsets[n_rows]));
        CHECK(t.rows[n_rows + 1].n == 1 && field_is(&t.rows[n_rows + 1], 0, ""));
        CHECK(t.rows[n_rows + 2].n == 1 && field_is(&t.rows[n_rows + 2], 0, "  "));
        CHECK_EQ_INT(t.rows[n_rows + 2].line, 1 + count_breaks(text, (size_t)offsets[n_rows + 2]));
    }
    free_table(&t);
    free(text);
    free(big);
}

static void test_writer_quoting(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    cs_error e = {0};
    const char *f1[6] = {"a", "b c", "", "x,y", "q\"q", " s "};
    CHECK_EQ_INT(cs_csv_write_record(fp, f1, NULL, 6, &e), 0);
    const char *f2[3] = {"line\nbreak", "cr\r", NULL};
    CHECK_EQ_INT(cs_csv_write_record(fp, f2, NULL, 3, &e), 0);
    const char *f3[2] = {"abcdef", "xyz"};
    size_t l3[2] = {3, 2}; /* lengths win over NUL termination */
    CHECK_EQ_INT(cs_csv_write_record(fp, f3, l3, 2, &e), 0);
    const char *f4[1] = {""};
    CHECK_EQ_INT(cs_csv_write_record(fp, f4, NULL, 1, &e), 0);
    CHECK_EQ_INT(cs_csv_write_record(fp, f4, NULL, 0, &e), CLIPSCORE_EARG);
    fclose(fp);
    CHECK_EQ_STR(buf, "a,b c,,\"x,y\",\"q\"\"q\", s \n\"line\nbreak\",\"cr\r\",\nabc,xy\n\"\"\n");
    free(buf);

    /* Write errors surface as EIO. */
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        setvbuf(full, NULL, _IONBF, 0);
        cs_error_clear(&e);
        CHECK_EQ_INT(cs_csv_write_record(full, f1, NULL, 6, &e), CLIPSCORE_EIO);
        CHECK(e.msg[0] != '\0');
        fclose(full);
    }
}

static void test_bom_and_line_ends(void) {
    table t;
    read_text("bom.csv", "\xEF\xBB\xBFimage,caption\na.jpg,\xEF\xBB\xBFkept\n", &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_FIELD(&t.header, 0, "image");
    CHECK_EQ_INT(t.header.line, 1);
    CHECK_EQ_INT(t.n_rows, 1);
    if (t.n_rows == 1) CHECK_FIELD(&t.rows[0], 1, "\xEF\xBB\xBFkept"); /* only at file start */
    free_table(&t);

    read_text("bom_quoted.csv", "\xEF\xBB\xBF\"image\",\"caption\"\r\n", &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_FIELD(&t.header, 0, "image");
    CHECK_EQ_INT(t.n_rows, 0);
    free_table(&t);

    read_text("bom_only.csv", "\xEF\xBB\xBF", &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EFORMAT);
    free_table(&t);

    const char *variants[] = {"a,b\r\n1,2\r\n3,4\r\n", "a,b\n1,2\n3,4", "a,b\r1,2\r3,4\r",
                              "a,b\r\n1,2\n3,4\r"};
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        read_text("ends.csv", variants[v], &t);
        CHECK_EQ_INT(t.open_rc, 0);
        CHECK_FIELD(&t.header, 1, "b");
        CHECK_EQ_INT(t.n_rows, 2);
        if (t.n_rows == 2) {
            CHECK_FIELD(&t.rows[0], 1, "2");
            CHECK_FIELD(&t.rows[1], 1, "4");
            CHECK_EQ_INT(t.rows[0].line, 2);
            CHECK_EQ_INT(t.rows[1].line, 3);
        }
        free_table(&t);
    }
}

static void test_line_numbers(void) {
    table t;
    read_text("lines.csv",
              "image,caption\n"                /* 1 */
              "a.jpg,\"two\nlines\"\n"         /* 2-3 */
              "b.jpg,\"three\r\nline\rs\"\r\n" /* 4-6 */
              "\n"                             /* 7 */
              "c.jpg,plain\n"                  /* 8 */
              "\"d\n.jpg\",x\n"                /* 9-10 */
              "e.jpg,last",                    /* 11 */
              &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.n_rows, 5);
    long lines[] = {2, 4, 8, 9, 11};
    for (int i = 0; i < 5 && i < t.n_rows; i++) {
        CHECK_EQ_INT(t.rows[i].line, lines[i]);
        CHECK_EQ_INT(t.rows[i].index, i);
    }
    if (t.n_rows == 5) {
        CHECK_FIELD(&t.rows[1], 1, "three\r\nline\rs");
        CHECK_FIELD(&t.rows[3], 0, "d\n.jpg");
        CHECK_FIELD(&t.rows[4], 1, "last");
    }
    free_table(&t);

    /* A CRLF split across the 64 KiB read boundary counts once, and a quoted
     * field spanning the boundary stays whole. */
    size_t pad = 65536 - 4 - 2 - 1; /* puts the CR at offset 65535 */
    size_t len = 4 + 2 + pad + 2 + 40;
    char *text = malloc(len + 1);
    size_t at = 0;
    memcpy(text, "a,b\nx,", 6);
    at = 6;
    memset(text + at, 'y', pad);
    at += pad;
    CHECK_EQ_INT(at, 65535);
    at += (size_t)sprintf(text + at, "\r\nnext,\"spans\nlines\"\nlast,row\n");
    write_file(tmp_path("boundary.csv"), text, at);
    read_table(tmp_path("boundary.csv"), &t);
    CHECK_EQ_INT(t.n_rows, 3);
    if (t.n_rows == 3) {
        CHECK_EQ_INT(t.rows[0].lens[1], pad);
        CHECK_EQ_INT(t.rows[1].line, 3);
        CHECK_FIELD(&t.rows[1], 1, "spans\nlines");
        CHECK_EQ_INT(t.rows[2].line, 5);
    }
    free_table(&t);

    /* The same with a quoted field whose content crosses the boundary. */
    at = (size_t)sprintf(text, "a,b\nx,\"");
    memset(text + at, 'q', 65535 - at);
    at = 65535;
    at += (size_t)sprintf(text + at, "\r\n\r\ntail\",z\nw,v\n");
    write_file(tmp_path("boundary2.csv"), text, at);
    read_table(tmp_path("boundary2.csv"), &t);
    CHECK_EQ_INT(t.n_rows, 2);
    if (t.n_rows == 2) {
        CHECK_EQ_INT(t.rows[0].line, 2);
        CHECK(t.rows[0].lens[1] > 8 &&
              memcmp(t.rows[0].fields[1] + t.rows[0].lens[1] - 8, "\r\n\r\ntail", 8) == 0);
        CHECK_EQ_INT(t.rows[1].line, 5);
        CHECK_FIELD(&t.rows[1], 0, "w");
    }
    free_table(&t);
    free(text);
}

static void test_blank_lines_and_sizes(void) {
    table t;
    read_text("blank.csv", "\n\r\n  \nimage,caption\n\n\t \na,b\r\n\r\n\"\"\n,\nc,d\n\n\n", &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.header.line, 4);
    CHECK_FIELD(&t.header, 0, "image");
    CHECK_EQ_INT(t.n_rows, 4);
    if (t.n_rows == 4) {
        CHECK_EQ_INT(t.rows[0].line, 7);
        CHECK(t.rows[1].n == 1 && field_is(&t.rows[1], 0, "")); /* quoted: a real record */
        CHECK_EQ_INT(t.rows[1].line, 9);
        CHECK(t.rows[2].n == 2 && field_is(&t.rows[2], 0, "") && field_is(&t.rows[2], 1, ""));
        CHECK_EQ_INT(t.rows[3].line, 11);
        CHECK_EQ_INT(t.rows[3].index, 3);
    }
    free_table(&t);

    read_text("header_only.csv", "image,caption\n", &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.n_rows, 0);
    CHECK_EQ_INT(t.end_rc, 0);
    free_table(&t);
    read_text("header_only2.csv", "image,caption", &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.header.n, 2);
    CHECK_EQ_INT(t.n_rows, 0);
    free_table(&t);

    const char *path = tmp_path("empty.csv");
    read_text("empty.csv", "", &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EFORMAT);
    char want[800];
    snprintf(want, sizeof want, "%s: empty file, expected a header row", path);
    CHECK_EQ_STR(t.open_msg, want);
    free_table(&t);
    read_text("blanks_only.csv", "\n\r\n \n", &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EFORMAT);
    CHECK(strstr(t.open_msg, "empty file") != NULL);
    free_table(&t);
    read_text("no_names.csv", "\n,\na,b\n", &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EFORMAT);
    CHECK(strstr(t.open_msg, "no_names.csv: line 2") != NULL);
    free_table(&t);

    read_table(tmp_path("does_not_exist.csv"), &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EIO);
    CHECK(strstr(t.open_msg, "does_not_exist.csv") != NULL);
    free_table(&t);
    read_table(tmp, &t); /* a folder */
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EIO);
    CHECK(strstr(t.open_msg, tmp) != NULL);
    free_table(&t);
}

static void test_unterminated(void) {
    table t;
    const char *path = tmp_path("open_quote.csv");
    read_text("open_quote.csv",
              "image,caption\n"
              "a.jpg,ok\n"
              "b.jpg,\"fine\nmulti\"\n"
              "c.jpg,\"never closed\n"
              "d.jpg,more\n",
              &t);
    CHECK_EQ_INT(t.open_rc, 0);
    CHECK_EQ_INT(t.end_rc, 0);
    CHECK_EQ_INT(t.n_rows, 3);
    if (t.n_rows == 3) {
        CHECK(!t.rows[0].malformed && !t.rows[1].malformed);
        CHECK_FIELD(&t.rows[0], 1, "ok");
        CHECK_FIELD(&t.rows[1], 1, "fine\nmulti");
        CHECK_EQ_INT(t.rows[1].line, 3);
        row *r = &t.rows[2];
        CHECK_EQ_INT(r->malformed, 1);
        CHECK_EQ_INT(r->line, 5);
        CHECK_EQ_INT(r->n, 2);
        CHECK_FIELD(r, 0, "c.jpg");
        CHECK_FIELD(r, 1, "never closed\nd.jpg,more\n");
        CHECK_MSG(strstr(r->msg, path) && strstr(r->msg, "line 5"), "message: %s", r->msg);
        CHECK(strstr(r->msg, "quote") != NULL);
    }
    free_table(&t);

    /* The quote opens on a later line than the row starts. */
    read_text("open_quote2.csv", "a,b,c\nx.jpg,\"multi\nline\",\"open\nrest", &t);
    CHECK_EQ_INT(t.n_rows, 1);
    if (t.n_rows == 1) {
        CHECK_EQ_INT(t.rows[0].malformed, 1);
        CHECK_EQ_INT(t.rows[0].line, 2);
        CHECK_FIELD(&t.rows[0], 2, "open\nrest");
        CHECK_MSG(strstr(t.rows[0].msg, "line 3") && strstr(t.rows[0].msg, "line 2"), "message: %s",
                  t.rows[0].msg);
    }
    free_table(&t);

    /* A doubled quote at the very end is still inside the field. */
    read_text("open_quote3.csv", "a,b\nx,\"ends with \"\"", &t);
    CHECK(t.n_rows == 1 && t.rows[0].malformed == 1);
    if (t.n_rows == 1) CHECK_FIELD(&t.rows[0], 1, "ends with \"");
    free_table(&t);
    /* ... while a closed one at the very end is fine. */
    read_text("closed_quote.csv", "a,b\nx,\"ends \"\"q\"\"\"", &t);
    CHECK(t.n_rows == 1 && t.rows[0].malformed == 0);
    if (t.n_rows == 1) CHECK_FIELD(&t.rows[0], 1, "ends \"q\"");
    free_table(&t);

    /* An unclosed quote swallowing a huge file stops at the record limit
     * (64 MiB) instead of taking all memory; the rows before it are intact. */
    const char *path_big = tmp_path("runaway.csv");
    FILE *fp = fopen(path_big, "wb");
    fputs("image,caption\na.jpg,fine\nb.jpg,\"runaway\n", fp);
    static char line[1024];
    memset(line, 'r', sizeof line - 1);
    line[sizeof line - 2] = '\n';
    for (int i = 0; i < 66 * 1024; i++) fputs(line, fp);
    fclose(fp);
    cs_csv_reader *r = NULL;
    cs_error e = {0};
    CHECK_EQ_INT(cs_csv_open(path_big, &r, &e), 0);
    if (r) {
        cs_csv_record rec;
        int malformed = 0;
        CHECK_EQ_INT(cs_csv_next(r, &rec, &malformed, &e), 1);
        CHECK_EQ_INT(rec.line, 2);
        CHECK_EQ_INT(cs_csv_next(r, &rec, &malformed, &e), CLIPSCORE_ELIMIT);
        CHECK_MSG(strstr(e.msg, "runaway.csv: line 3") && strstr(e.msg, "quote opened on line 3"),
                  "message: %s", e.msg);
        CHECK_MSG(cs_csv_memory_bytes(r) < (size_t)80 << 20, "held %zu bytes",
                  cs_csv_memory_bytes(r));
        cs_csv_close(r);
    }
    remove(path_big);

    read_text("open_header.csv", "image,\"caption\na,b\n", &t);
    CHECK_EQ_INT(t.open_rc, CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(t.open_msg, "open_header.csv: line 1") && strstr(t.open_msg, "header"),
              "message: %s", t.open_msg);
    free_table(&t);
}

static void test_ragged_and_lenient(void) {
    table t;
    read_text("ragged.csv", "a,b,c\n1,2\n1,2,3,4\n1\n1,2,3\n", &t);
    CHECK_EQ_INT(t.n_rows, 4);
    int want_n[] = {2, 4, 1, 3};
    for (int i = 0; i < 4 && i < t.n_rows; i++) {
        CHECK_EQ_INT(t.rows[i].n, want_n[i]);
        CHECK_EQ_INT(t.rows[i].malformed, 0);
    }
    if (t.n_rows == 4) CHECK_FIELD(&t.rows[1], 3, "4");
    free_table(&t);

    /* Stray quotes are kept literally; spaces are never trimmed; NUL bytes pass. */
    static const char stray[] = "a,b\n5\" screen, x \n\"He said \"hi\" now\",y\nab\"c\"d,\"x\"y\"\n"
                                "nul,a\0b\n";
    write_file(tmp_path("stray.csv"), stray, sizeof stray - 1);
    read_table(tmp_path("stray.csv"), &t);
    CHECK_EQ_INT(t.n_rows, 4);
    if (t.n_rows == 4) {
        CHECK_FIELD(&t.rows[0], 0, "5\" screen");
        CHECK_FIELD(&t.rows[0], 1, " x ");
        CHECK_FIELD(&t.rows[1], 0, "He said \"hi\" now");
        CHECK_FIELD(&t.rows[1], 1, "y");
        CHECK_FIELD(&t.rows[2], 0, "ab\"c\"d");
        CHECK_FIELD(&t.rows[2], 1, "x\"y");
        CHECK(t.rows[3].lens[1] == 3 && memcmp(t.rows[3].fields[1], "a\0b", 3) == 0);
        for (int i = 0; i < 4; i++) CHECK_EQ_INT(t.rows[i].malformed, 0);
    }
    free_table(&t);
}

/* Builds a header record from names (NUL-terminated strings). */
static cs_csv_record make_header(char **names, size_t *lens, int n) {
    for (int i = 0; i < n; i++) lens[i] = strlen(names[i]);
    cs_csv_record h = {n, names, lens, 1, -1};
    return h;
}

static int find(char **names, int n, const char *want, const char *const *cands, const char *what,
                cs_error *e) {
    size_t lens[16];
    cs_csv_record h = make_header(names, lens, n);
    cs_error_clear(e);
    return cs_csv_find_column(&h, "in.csv", want, cands, what, e);
}

static void test_columns(void) {
    cs_error e = {0};
    const char *const *img = cs_csv_image_columns, *const *cap = cs_csv_caption_columns;

    /* Exact lookups of columns clipscore wrote itself (the merge). */
    {
        char *hw[] = {"key", "similarity_2", "similarity", "caption"};
        size_t lw[4];
        cs_csv_record h = make_header(hw, lw, 4);
        CHECK_EQ_INT(cs_csv_column_named(&h, "similarity", 0), 2);
        CHECK_EQ_INT(cs_csv_column_named(&h, "similarity", 1), 1); /* the first with the prefix */
        CHECK_EQ_INT(cs_csv_column_named(&h, "Key", 0), -1);       /* case matters */
        CHECK_EQ_INT(cs_csv_column_named(&h, NULL, 0), -1);
        CHECK_EQ_INT(cs_csv_column_named(&h, "source", 1), -1);
    }

    char *h1[] = {" Image ", "CAPTION", "other", "#2"};
    CHECK_EQ_INT(find(h1, 4, NULL, img, "image", &e), 0);
    CHECK_EQ_INT(find(h1, 4, NULL, cap, "caption", &e), 1);
    CHECK_EQ_INT(find(h1, 4, "other", NULL, "image", &e), 2);
    CHECK_EQ_INT(find(h1, 4, "#1", NULL, "image", &e), 0);
    CHECK_EQ_INT(find(h1, 4, "#3", NULL, "image", &e), 2);
    CHECK_EQ_INT(find(h1, 4, "#2", NULL, "image", &e), 3); /* the literal name wins */

    /* Explicit names are exact; a near miss is suggested. */
    CHECK(find(h1, 4, "image", NULL, "image", &e) < 0);
    CHECK_MSG(strstr(e.msg, "in.csv") && strstr(e.msg, "\"image\"") &&
                  strstr(e.msg, "--image-column") && strstr(e.msg, "did you mean \" Image \""),
              "message: %s", e.msg);
    CHECK(find(h1, 4, "#5", NULL, "caption", &e) < 0);
    CHECK_MSG(strstr(e.msg, "#5") && strstr(e.msg, "4 columns") &&
                  strstr(e.msg, "--caption-column"),
              "message: %s", e.msg);
    CHECK(find(h1, 4, "#0", NULL, "caption", &e) < 0);
    CHECK_EQ_INT(e.code, CLIPSCORE_EARG);
    CHECK(find(h1, 4, "#x", NULL, "caption", &e) < 0);
    CHECK(find(h1, 4, "", NULL, "caption", &e) < 0);

    /* Preference order: image_path before path, text before title. */
    char *h2[] = {"path", "title", "image_path", "text"};
    CHECK_EQ_INT(find(h2, 4, NULL, img, "image", &e), 2);
    CHECK_EQ_INT(find(h2, 4, NULL, cap, "caption", &e), 3);
    char *h3[] = {"url", "alt_text"};
    CHECK_EQ_INT(find(h3, 2, NULL, img, "image", &e), 0);
    CHECK_EQ_INT(find(h3, 2, NULL, cap, "caption", &e), 1);
    char *h4[] = {"FilePath", "Sentence"};
    CHECK_EQ_INT(find(h4, 2, NULL, img, "image", &e), 0);
    CHECK_EQ_INT(find(h4, 2, NULL, cap, "caption", &e), 1);

    /* Duplicates name both column numbers. */
    char *h5[] = {"image", "caption", "Image "};
    CHECK(find(h5, 3, NULL, img, "image", &e) < 0);
    CHECK_MSG(strstr(e.msg, "#1") && strstr(e.msg, "#3") && strstr(e.msg, "in.csv"), "message: %s",
              e.msg);
    char *h6[] = {"a", "caption", "caption"};
    CHECK(find(h6, 3, "caption", NULL, "caption", &e) < 0);
    CHECK_MSG(strstr(e.msg, "#2") && strstr(e.msg, "#3"), "message: %s", e.msg);
    CHECK_EQ_INT(find(h6, 3, "#3", NULL, "caption", &e), 2); /* the way out */

    /* Not found: file, what was looked for, the option and the columns. */
    char *h7[] = {"foo", "bar\nbaz"};
    CHECK(find(h7, 2, NULL, img, "image", &e) < 0);
    CHECK_EQ_INT(e.code, CLIPSCORE_EFORMAT);
    CHECK_MSG(strstr(e.msg, "in.csv") && strstr(e.msg, "image_path") &&
                  strstr(e.msg, "--image-column") && strstr(e.msg, "\"foo\"") &&
                  strstr(e.msg, "\"bar?baz\""),
              "message: %s", e.msg);
    CHECK(strchr(e.msg, '\n') == NULL);
    CHECK(find(h7, 2, NULL, cap, "caption", &e) < 0);
    CHECK_MSG(strstr(e.msg, "caption") && strstr(e.msg, "--caption-column"), "message: %s", e.msg);

    /* The default lists hold the documented names. */
    const char *want_img[] = {"image", "image_path", "filepath", "file", "path", "url"};
    const char *want_cap[] = {"caption", "text", "title", "prompt", "alt_text"};
    for (size_t i = 0; i < sizeof want_img / sizeof *want_img; i++) {
        char *h[] = {(char *)want_img[i]};
        CHECK_EQ_INT(find(h, 1, NULL, img, "image", &e), 0);
    }
    for (size_t i = 0; i < sizeof want_cap / sizeof *want_cap; i++) {
        char *h[] = {(char *)want_cap[i]};
        CHECK_EQ_INT(find(h, 1, NULL, cap, "caption", &e), 0);
    }
}

#define STREAM_ROWS 200000

static int expect_row(const cs_csv_record *rec, long i, int *mismatch) {
    char a[32], b[64];
    snprintf(a, sizeof a, "img%06ld.jpg", i);
    snprintf(b, sizeof b, "caption %ld, with comma", i);
    int ok = rec->n == 2 && rec->index == i && rec->line == i + 2 &&
             strcmp(rec->fields[0], a) == 0 && strcmp(rec->fields[1], b) == 0;
    if (!ok) (*mismatch)++;
    return ok;
}

static void write_stream_rows(FILE *fp, long from, long to) {
    for (long i = from; i < to; i++)
        fprintf(fp, "img%06ld.jpg,\"caption %ld, with comma\"\n", i, i);
}

/* 200,000 rows through a named pipe: the writer stops halfway until the
 * reader has returned row 50,000, so a reader that loads the whole file
 * first would wait forever (the alarm ends the test as a failure). */
static void test_streaming(void) {
    char fifo[700];
    snprintf(fifo, sizeof fifo, "%s", tmp_path("rows.fifo"));
    CHECK_EQ_INT(mkfifo(fifo, 0600), 0);
    int go[2];
    if (pipe(go) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        FILE *fp = fopen(fifo, "w");
        if (!fp) _exit(3);
        fprintf(fp, "image,caption\n");
        write_stream_rows(fp, 0, STREAM_ROWS / 2);
        fflush(fp);
        char c;
        if (read(go[0], &c, 1) != 1) _exit(4);
        write_stream_rows(fp, STREAM_ROWS / 2, STREAM_ROWS);
        _exit(fclose(fp) == 0 ? 0 : 5);
    }
    close(go[0]);
    alarm(60);
    cs_error e = {0};
    cs_csv_reader *r = NULL;
    double t0 = cs_now();
    CHECK_EQ_INT(cs_csv_open(fifo, &r, &e), 0);
    long n = 0;
    int mismatch = 0, signalled = 0;
    size_t max_mem = 0;
    if (r) {
        cs_csv_record rec;
        int malformed = 0, rc;
        while ((rc = cs_csv_next(r, &rec, &malformed, &e)) == 1) {
            expect_row(&rec, n, &mismatch);
            mismatch += malformed;
            n++;
            if (n == 50000) {
                signalled = write(go[1], "g", 1) == 1;
            }
            size_t m = cs_csv_memory_bytes(r);
            if (m > max_mem) max_mem = m;
        }
        CHECK_EQ_INT(rc, 0);
        cs_csv_close(r);
    }
    close(go[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    alarm(0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(signalled);
    CHECK_EQ_INT(n, STREAM_ROWS);
    CHECK_EQ_INT(mismatch, 0);
    /* ~7 MB went through; the reader holds one chunk and one small record. */
    CHECK_MSG(max_mem < 256 * 1024, "reader held %zu bytes", max_mem);
    fprintf(stderr, "streamed %ld rows through a pipe in %.2f s, reader memory %zu bytes\n", n,
            cs_now() - t0, max_mem);

    /* The same from a regular file, timed. */
    const char *path = tmp_path("rows.csv");
    FILE *fp = fopen(path, "w");
    fprintf(fp, "image,caption\n");
    write_stream_rows(fp, 0, STREAM_ROWS);
    fclose(fp);
    t0 = cs_now();
    CHECK_EQ_INT(cs_csv_open(path, &r, &e), 0);
    n = 0;
    mismatch = 0;
    max_mem = 0;
    if (r) {
        cs_csv_record rec;
        int malformed = 0;
        while (cs_csv_next(r, &rec, &malformed, &e) == 1) {
            expect_row(&rec, n++, &mismatch);
            size_t m = cs_csv_memory_bytes(r);
            if (m > max_mem) max_mem = m;
        }
        cs_csv_close(r);
    }
    double secs = cs_now() - t0;
    CHECK_EQ_INT(n, STREAM_ROWS);
    CHECK_EQ_INT(mismatch, 0);
    CHECK_MSG(max_mem < 256 * 1024, "reader held %zu bytes", max_mem);
    CHECK_MSG(secs < 30, "reading took %.1f s", secs);
    fprintf(stderr, "read %ld rows from a file in %.2f s\n", n, secs);
    remove(path);
    remove(fifo);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s", test_tmpdir("csv"));
    test_round_trip();
    test_writer_quoting();
    test_bom_and_line_ends();
    test_line_numbers();
    test_blank_lines_and_sizes();
    test_unterminated();
    test_ragged_and_lenient();
    test_columns();
    test_streaming();
    return test_finish("test_csv");
}
