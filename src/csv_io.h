/* csv_io.h - CSV input (libcsv, RFC 4180) and output.
 *
 * Covers: streaming records one at a time with quoting (commas, quotes and
 * newlines inside fields), a UTF-8 byte-order mark, CRLF or LF, a header row;
 * the line number where each record starts; finding the image and caption
 * columns by name; writing records back with the quoting they need.
 * Field values are passed through byte for byte. */
#ifndef CLIPSCORE_CSV_IO_H
#define CLIPSCORE_CSV_IO_H

#include <stdio.h>

#include "util.h"

typedef struct cs_csv_reader cs_csv_reader;

typedef struct cs_csv_record {
    int n;         /* number of fields */
    char **fields; /* NUL-terminated copies, owned by the reader until the next call */
    size_t *lens;  /* byte length of each field (a field may contain NUL bytes) */
    long line;     /* 1-based line in the file where the record starts */
    long index;    /* 0-based data row index (header excluded) */
} cs_csv_record;

/* Opens the file ("-": standard input) and reads the header row. An empty file or a file whose
 * first record is empty is an error (EFORMAT) naming the file. */
int cs_csv_open(const char *path, cs_csv_reader **out, cs_error *e);
/* The header (owned by the reader, valid until cs_csv_close). */
const cs_csv_record *cs_csv_header(const cs_csv_reader *r);
/* Reads the next data record into *rec (valid until the next call).
 * Returns 1 when a record was read, 0 at end of file, negative on error.
 * An unterminated quoted field at the end of the file is returned as a last
 * record with *malformed set and a message in e (the run goes on); other
 * errors (I/O) are fatal. Blank lines are skipped. */
int cs_csv_next(cs_csv_reader *r, cs_csv_record *rec, int *malformed, cs_error *e);
void cs_csv_close(cs_csv_reader *r);
/* Bytes the reader currently holds in buffers (for tests: it stays bounded by
 * the largest record, not the file size). */
size_t cs_csv_memory_bytes(const cs_csv_reader *r);

/* Finds a column: `want` (exact name, case-sensitive, or a 1-based number
 * like "#2") when not NULL, else the first header matching one of the
 * candidates case-insensitively (after trimming spaces). Returns the 0-based
 * index, or a negative status with a message naming the file, the columns
 * present and the option to use. A name found twice is an error. */
int cs_csv_find_column(const cs_csv_record *header, const char *path, const char *want,
                       const char *const *candidates, const char *what, cs_error *e);

/* The first column named exactly `name` (prefix 1: whose name starts with
 * it), or -1; NULL name: -1. No message: for files clipscore wrote itself. */
int cs_csv_column_named(const cs_csv_record *header, const char *name, int prefix);

/* Default candidate names, NULL-terminated. */
extern const char *const cs_csv_image_columns[];
extern const char *const cs_csv_caption_columns[];

/* Writes one record: fields quoted only when they contain a comma, quote,
 * CR or LF (quotes doubled); LF line end. */
int cs_csv_write_record(FILE *fp, const char *const *fields, const size_t *lens, int n,
                        cs_error *e);

#endif
