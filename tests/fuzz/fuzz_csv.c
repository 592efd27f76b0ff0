/* fuzz_csv.c - fuzzes the CSV reader (csv_io.h): the input is a CSV file,
 * read record by record, the image and caption columns looked for (by the
 * default candidates and by a name taken from the input), and every record
 * written back with cs_csv_write_record and read again to check the writer's
 * quoting round-trips through the reader.
 *
 * Invariants: records have at least one field, lens match the bytes, line
 * numbers never go back, indexes count up from 0; a found column is inside
 * the header; failures carry a message; what is written reads back equal. */
#include <string.h>

#include "csv_io.h"
#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_tmpdir();
    return 0;
}

static void check_record(const cs_csv_record *r) {
    FUZZ_CHECK(r->n >= 1 && r->fields && r->lens, "record with %d fields", r->n);
    for (int i = 0; i < r->n; i++) {
        FUZZ_CHECK(r->fields[i][r->lens[i]] == '\0', "field %d not NUL-terminated at its length",
                   i);
        FUZZ_CHECK(strlen(r->fields[i]) <= r->lens[i], "field %d longer than its length", i);
    }
}

/* Column lookups: default candidates, then `want` chosen from the input. */
static void check_columns(const cs_csv_record *h, const char *want) {
    const char *const *lists[2] = {cs_csv_image_columns, cs_csv_caption_columns};
    for (int k = 0; k < 2; k++) {
        cs_error e = {0};
        int c = cs_csv_find_column(h, "fuzz.csv", NULL, lists[k], k ? "caption" : "image", &e);
        if (c < 0)
            FUZZ_CHECK_ERROR(c, e);
        else
            FUZZ_CHECK(c < h->n, "column %d of %d", c, h->n);
    }
    cs_error e = {0};
    int c = cs_csv_find_column(h, "fuzz.csv", want, NULL, NULL, &e);
    if (c < 0) {
        FUZZ_CHECK_ERROR(c, e);
    } else {
        FUZZ_CHECK(c < h->n, "column %d of %d", c, h->n);
    }
}

/* Copies a record's fields (the reader reuses its buffers). */
typedef struct saved {
    int n;
    char **f;
    size_t *l;
} saved;

static void save(saved *s, const cs_csv_record *r) {
    s->n = r->n;
    s->f = malloc((size_t)r->n * sizeof *s->f);
    s->l = malloc((size_t)r->n * sizeof *s->l);
    for (int i = 0; i < r->n; i++) {
        s->l[i] = r->lens[i];
        s->f[i] = fuzz_strndup((const uint8_t *)r->fields[i], r->lens[i]);
    }
}

static void unsave(saved *s) {
    for (int i = 0; i < s->n; i++) free(s->f[i]);
    free(s->f);
    free(s->l);
}

/* Writes `recs` with the CSV writer, under a plain first line (so a field
 * starting with a byte-order mark is not taken for the file's own), reads the
 * file back and compares. */
static void round_trip(const saved *recs, int n) {
    const char *path = fuzz_path(1, "roundtrip.csv");
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot write %s", path);
    fputs("h\n", f);
    for (int i = 0; i < n; i++) {
        cs_error e = {0};
        int rc = cs_csv_write_record(f, (const char *const *)recs[i].f, recs[i].l, recs[i].n, &e);
        FUZZ_CHECK(rc == 0, "write failed: %s", e.msg);
    }
    FUZZ_CHECK(fclose(f) == 0, "closing %s", path);

    cs_csv_reader *r = NULL;
    cs_error e = {0};
    int rc = cs_csv_open(path, &r, &e);
    FUZZ_CHECK(rc == 0, "reopening written CSV: %s", e.msg);
    for (int i = 0; i < n; i++) {
        cs_csv_record rec;
        int bad = 0;
        rc = cs_csv_next(r, &rec, &bad, &e);
        FUZZ_CHECK(rc == 1 && !bad, "record %d of %d did not read back (rc %d: %s)", i, n, rc,
                   e.msg);
        FUZZ_CHECK(rec.n == recs[i].n, "record %d: %d fields written, %d read", i, recs[i].n,
                   rec.n);
        for (int k = 0; k < rec.n; k++)
            FUZZ_CHECK(rec.lens[k] == recs[i].l[k] &&
                           memcmp(rec.fields[k], recs[i].f[k], rec.lens[k]) == 0,
                       "record %d field %d differs after writing", i, k);
    }
    cs_csv_record rec;
    rc = cs_csv_next(r, &rec, NULL, &e);
    FUZZ_CHECK(rc == 0, "extra record after the written ones (rc %d)", rc);
    cs_csv_close(r);
}

#define MAX_SAVED 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_path(0, "input.csv");
    fuzz_write_file(path, data, size);

    cs_csv_reader *r = NULL;
    cs_error e = {0};
    int rc = cs_csv_open(path, &r, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(r == NULL, "reader returned on failure");
        return 0;
    }
    const cs_csv_record *h = cs_csv_header(r);
    check_record(h);
    long last_line = h->line, index = 0;
    saved recs[MAX_SAVED];
    int n_saved = 0;
    save(&recs[n_saved++], h);
    char *want = NULL;
    for (;;) {
        cs_csv_record rec;
        int malformed = 0;
        cs_error re = {0};
        rc = cs_csv_next(r, &rec, &malformed, &re);
        if (rc < 0) {
            FUZZ_CHECK_ERROR(rc, re);
            break;
        }
        if (rc == 0) break;
        check_record(&rec);
        FUZZ_CHECK(rec.line > last_line, "record at line %ld after line %ld", rec.line, last_line);
        FUZZ_CHECK(rec.index == index, "index %ld, expected %ld", rec.index, index);
        if (malformed) FUZZ_CHECK(re.msg[0] != '\0', "malformed record without a message");
        last_line = rec.line;
        index++;
        if (!want) want = fuzz_strndup((const uint8_t *)rec.fields[0], rec.lens[0]);
        if (n_saved < MAX_SAVED) save(&recs[n_saved++], &rec);
        FUZZ_CHECK(cs_csv_memory_bytes(r) > 0, "no memory accounted");
    }
    check_columns(h, want ? want : "#2");
    free(want);
    cs_csv_close(r);

    round_trip(recs, n_saved);
    for (int i = 0; i < n_saved; i++) unsave(&recs[i]);
    return 0;
}
