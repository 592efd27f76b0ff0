/* fuzz_tokenizer.c - fuzzes caption cleanup (text_clean.h) and tokenisation
 * (tokenizer.h): the input is a caption. A synthetic vocabulary is written
 * at start-up in both layouts and loaded twice.
 *
 * Invariants: each cleanup step's output is valid UTF-8 when its input is
 * (cs_text_clean and cs_text_fix always); ids start with <|startoftext|>,
 * end with <|endoftext|>, fit the context and the vocabulary; both layouts
 * give the same ids; a shorter context gives a prefix of the longer one's
 * ids, with the truncation flag set exactly when ids were dropped. */
#include <string.h>

#include "fuzz_common.h"
#include "synth_vocab.h"
#include "text_clean.h"
#include "tokenizer.h"

static cs_tokenizer *tok_hf, *tok_gz;

static void free_tokenizers(void) {
    cs_tokenizer_free(tok_hf);
    cs_tokenizer_free(tok_gz);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *vocab = fuzz_path(0, "vocab.json"), *merges = fuzz_path(1, "merges.txt"),
               *gz = fuzz_path(2, "bpe.txt.gz");
    FUZZ_CHECK(synth_vocab_write(vocab, merges, gz) == 0, "cannot write the vocabulary");
    cs_error e = {0};
    FUZZ_CHECK(cs_tokenizer_load_hf(vocab, merges, &tok_hf, &e) == 0, "%s", e.msg);
    FUZZ_CHECK(cs_tokenizer_load_bpe_gz(gz, &tok_gz, &e) == 0, "%s", e.msg);
    FUZZ_CHECK(cs_tokenizer_vocab_size(tok_hf) == cs_tokenizer_vocab_size(tok_gz),
               "vocab sizes %d and %d", cs_tokenizer_vocab_size(tok_hf),
               cs_tokenizer_vocab_size(tok_gz));
    atexit(free_tokenizers);
    return 0;
}

typedef int (*step3)(const char *, char **, unsigned *, cs_error *);
typedef int (*step2)(const char *, char **, cs_error *);

static void check_step(const char *name, int rc, char *out, cs_error *e, int must_be_utf8) {
    if (rc) {
        FUZZ_CHECK_ERROR(rc, *e);
        FUZZ_CHECK(rc == CLIPSCORE_ENOMEM, "%s failed: %s", name, e->msg);
        return;
    }
    FUZZ_CHECK(out != NULL, "%s returned no string", name);
    if (must_be_utf8)
        FUZZ_CHECK(fuzz_valid_utf8(out, strlen(out)), "%s produced invalid UTF-8", name);
    free(out);
}

#define MAX_CTX 77

/* Encodes with ctx ids; checks the shape of the result. */
static int encode(const cs_tokenizer *t, const char *text, int ctx, int32_t *ids, unsigned *flags) {
    int n = -1;
    cs_error e = {0};
    int rc = cs_tokenizer_encode(t, text, ctx, ids, &n, flags, &e);
    if (rc) {
        FUZZ_CHECK_ERROR(rc, e);
        FUZZ_CHECK(rc == CLIPSCORE_ENOMEM, "encode failed: %s", e.msg);
        return -1;
    }
    FUZZ_CHECK(n >= 2 && n <= ctx, "%d ids for context %d", n, ctx);
    FUZZ_CHECK(ids[0] == cs_tokenizer_sot(t) && ids[n - 1] == cs_tokenizer_eot(t),
               "ids do not start with sot and end with eot");
    for (int i = 0; i < n; i++)
        FUZZ_CHECK(ids[i] >= 0 && ids[i] < cs_tokenizer_vocab_size(t), "id %d out of range",
                   ids[i]);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Captions come from CSV fields, which are C strings by then. */
    char *text = fuzz_strndup(data, size);
    int valid = fuzz_valid_utf8(text, strlen(text));

    char *out = NULL;
    unsigned flags = 0;
    cs_error e = {0};
    int rc = cs_text_clean(text, &out, &flags, &e);
    check_step("clean", rc, out, &e, 1);
    out = NULL;
    rc = cs_text_fix(text, &out, &flags, &e);
    check_step("fix", rc, out, &e, 1);
    out = NULL;
    rc = cs_text_html_unescape(text, &out, &e);
    check_step("html_unescape", rc, out, &e, valid);
    out = NULL;
    rc = cs_text_lower(text, &out, &e);
    check_step("lower", rc, out, &e, valid);

    int32_t a[MAX_CTX], b[MAX_CTX], s[MAX_CTX];
    unsigned fa = 0, fb = 0, fs = 0;
    int na = encode(tok_hf, text, MAX_CTX, a, &fa);
    int nb = encode(tok_gz, text, MAX_CTX, b, &fb);
    if (na > 0 && nb > 0) {
        FUZZ_CHECK(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0 && fa == fb,
                   "the two vocabulary layouts disagree (%d and %d ids)", na, nb);
        /* A short context from the first byte: 2 (sot, eot) to 17. */
        int ctx = 2 + (size ? data[0] % 16 : 0);
        int ns = encode(tok_hf, text, ctx, s, &fs);
        if (ns > 0) {
            int dropped = na > ctx || (fa & CLIPSCORE_TOKEN_TRUNCATED);
            FUZZ_CHECK(!!(fs & CLIPSCORE_TOKEN_TRUNCATED) == dropped,
                       "truncation flag %u with %d ids in context %d (%d in %d)", fs, ns, ctx, na,
                       MAX_CTX);
            FUZZ_CHECK(memcmp(s, a, (size_t)(ns - 1) * sizeof *s) == 0,
                       "a shorter context is not a prefix");
            if (!dropped) FUZZ_CHECK(ns == na, "untruncated lengths %d and %d", ns, na);
        }
    }
    free(text);
    return 0;
}
