/* test_tokenizer.c - tests of the caption cleanup and CLIP's BPE tokenizer.
 *
 * Covers: cleanup steps checked as strings (ftfy fixes, html.unescape,
 * whitespace, lowercase, invalid UTF-8); a tiny synthetic vocabulary written
 * in both layouts (vocab.json + merges.txt and a gzip'd merges list) with
 * hand-derived ids; bad model files; and, when the shared conformance
 * fixtures are present, all reference captions with both layouts of the
 * real CLIP vocabulary, with timings. Leaves out: the model itself. */
#define _GNU_SOURCE
#include "test.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <zlib.h>

#include "text_clean.h"
#include "tokenizer.h"
#include "util.h"

/* ---- helpers ------------------------------------------------------------ */

static void check_clean(const char *in, const char *want, int line) {
    char *out = NULL;
    cs_error e = {0};
    unsigned flags = 0;
    int rc = cs_text_clean(in, &out, &flags, &e);
    test_checks++;
    if (rc != 0 || !out || strcmp(out, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: clean(\"%s\") = \"%s\" (rc %d %s), want \"%s\"\n", __FILE__, line,
                in, out ? out : "(null)", rc, e.msg, want);
    }
    free(out);
}
#define CHECK_CLEAN(in, want) check_clean(in, want, __LINE__)

typedef int (*str_fn)(const char *, char **, cs_error *);
static void check_fn(str_fn f, const char *name, const char *in, const char *want, int line) {
    char *out = NULL;
    cs_error e = {0};
    int rc = f(in, &out, &e);
    test_checks++;
    if (rc != 0 || !out || strcmp(out, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: %s(\"%s\") = \"%s\" (rc %d), want \"%s\"\n", __FILE__, line, name,
                in, out ? out : "(null)", rc, want);
    }
    free(out);
}
#define CHECK_UNESCAPE(in, want) check_fn(cs_text_html_unescape, "unescape", in, want, __LINE__)
#define CHECK_LOWER(in, want) check_fn(cs_text_lower, "lower", in, want, __LINE__)

static void check_fix(const char *in, const char *want, int line) {
    char *out = NULL;
    cs_error e = {0};
    int rc = cs_text_fix(in, &out, NULL, &e);
    test_checks++;
    if (rc != 0 || !out || strcmp(out, want) != 0) {
        test_failures++;
        fprintf(stderr, "%s:%d: fix(\"%s\") = \"%s\" (rc %d), want \"%s\"\n", __FILE__, line, in,
                out ? out : "(null)", rc, want);
    }
    free(out);
}
#define CHECK_FIX(in, want) check_fix(in, want, __LINE__)

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* The id that OpenAI's vocabulary order gives the token of byte b: the
 * printable bytes first (! to ~, 0xA1 to 0xAC, 0xAE to 0xFF), then the rest
 * in byte order. */
static int byte_rank(int b) {
    if (b >= '!' && b <= '~') return b - '!';
    if (b >= 0xA1 && b <= 0xAC) return 94 + b - 0xA1;
    if (b >= 0xAE) return 106 + b - 0xAE;
    int n = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || x >= 0xAE)) n++;
    return 188 + n;
}
#define ID(c) byte_rank((unsigned char)(c))
#define END(c) (256 + byte_rank((unsigned char)(c)))

/* The byte's stand-in character (bytes_to_unicode) as a JSON string body. */
static void byte_json(int b, char *out) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = printable ? b : 256 + (byte_rank(b) - 188);
    if (cp == '"' || cp == '\\')
        sprintf(out, "\\%c", cp);
    else if (cp < 0x80)
        sprintf(out, "%c", cp);
    else
        sprintf(out, "\\u%04x", cp);
}

/* The synthetic model: merges in rank order (token strings in the
 * byte-character alphabet; here all ASCII). */
static const char *const kMerges[][2] = {
    {"h", "e"},        /* 0: he */
    {"l", "l"},        /* 1: ll */
    {"he", "ll"},      /* 2: hell */
    {"l", "o</w>"},    /* 3: lo</w> (loses to l l in "hello") */
    {"hell", "o</w>"}, /* 4: hello</w> */
    {"a", "b"},        /* 5: ab */
    {"ab", "ab"},      /* 6: abab */
    {"a", "b</w>"},    /* 7: ab</w> */
    {"!", "!"},        /* 8: !! */
    {"'", "s</w>"},    /* 9: 's</w> */
};
#define N_MERGES ((int)(sizeof kMerges / sizeof kMerges[0]))
#define MERGE_ID(r) (512 + (r))
#define SOT (512 + N_MERGES)
#define EOT (513 + N_MERGES)

static void write_synthetic(const char *dir, char *vocab_path, char *merges_path, char *gz_path) {
    sprintf(vocab_path, "%s/vocab.json", dir);
    sprintf(merges_path, "%s/merges.txt", dir);
    sprintf(gz_path, "%s/bpe_simple_vocab_16e6.txt.gz", dir);
    FILE *f = fopen(vocab_path, "wb");
    if (!f) {
        perror(vocab_path);
        exit(2);
    }
    fputc('{', f);
    for (int b = 0; b < 256; b++) {
        char s[16];
        byte_json(b, s);
        fprintf(f, "\"%s\": %d, \"%s</w>\": %d, ", s, ID(b), s, END(b));
    }
    for (int r = 0; r < N_MERGES; r++)
        fprintf(f, "\"%s%s\": %d, ", kMerges[r][0], kMerges[r][1], MERGE_ID(r));
    fprintf(f, "\"<|startoftext|>\": %d, \"<|endoftext|>\": %d}\n", SOT, EOT);
    fclose(f);

    f = fopen(merges_path, "wb");
    gzFile gz = gzopen(gz_path, "wb");
    if (!f || !gz) {
        perror(merges_path);
        exit(2);
    }
    fputs("#version: 0.2\n", f);
    gzputs(gz, "\"bpe_simple_vocab_16e6.txt#version: 0.2\n");
    for (int r = 0; r < N_MERGES; r++) {
        fprintf(f, "%s %s\n", kMerges[r][0], kMerges[r][1]);
        gzprintf(gz, "%s %s\n", kMerges[r][0], kMerges[r][1]);
    }
    fclose(f);
    gzclose(gz);
}

/* Encodes and compares with the expected ids (terminated by -1). */
static void check_ids(const cs_tokenizer *tok, const char *text, int ctx, const int *want,
                      unsigned want_flags, int line) {
    int32_t ids[512];
    int n = -1;
    unsigned flags = 99;
    cs_error e = {0};
    int rc = cs_tokenizer_encode(tok, text, ctx, ids, &n, &flags, &e);
    int nw = 0;
    while (want[nw] >= 0) nw++;
    int ok = rc == 0 && n == nw && flags == want_flags;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    test_checks++;
    if (!ok) {
        test_failures++;
        fprintf(stderr, "%s:%d: encode(\"%s\") rc %d (%s) flags %u (want %u):", __FILE__, line,
                text, rc, e.msg, flags, want_flags);
        for (int i = 0; rc == 0 && i < n; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  want:");
        for (int i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
        fputc('\n', stderr);
    }
}
#define CHECK_IDS(tok, text, ctx, flags, ...)                                                      \
    do {                                                                                           \
        const int want_[] = {__VA_ARGS__, -1};                                                     \
        check_ids(tok, text, ctx, want_, flags, __LINE__);                                         \
    } while (0)

/* ---- cleanup --------------------------------------------------------------- */

static void test_cleanup(void) {
    /* ftfy: quotes, ligatures, width forms, controls, escapes, line breaks */
    CHECK_CLEAN("It\xe2\x80\x99s the dog\xe2\x80\x99s \xe2\x80\x9c"
                "favourite\xe2\x80\x9d toy",
                "it's the dog's \"favourite\" toy");
    CHECK_CLEAN("\xe2\x80\x98single\xe2\x80\x99 \xe2\x80\x9elow\xe2\x80\x9f \xca\xbc",
                "'single' \"low\" '");
    CHECK_CLEAN("\xef\xac\x81sh and \xef\xac\x82owers", "fish and flowers");
    CHECK_CLEAN(
        "\xef\xbc\xa6\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c\xe3\x80\x80\xef\xbc\x91\xef\xbc\x92",
        "full 12");
    CHECK_CLEAN("control\x07"
                "char",
                "controlchar");
    CHECK_CLEAN("\x1b[31;1mred\x1b[0m text", "red text");
    CHECK_CLEAN("x\xc2\x85y", "x\xe2\x80\xa6y");             /* C1 NEL read as cp1252: ellipsis */
    CHECK_CLEAN("\xef\xbd\xb6\xef\xbe\x9e", "\xe3\x82\xac"); /* halfwidth ka + voiced mark -> ga */
    CHECK_CLEAN("e\xcc\x81t\xc3\xa9", "\xc3\xa9t\xc3\xa9");  /* NFC */
    CHECK_CLEAN("\xef\xbb\xbfzero\xe2\x80\x8bwidth", "zero\xe2\x80\x8bwidth"); /* BOM removed */
    /* HTML: ftfy's pass, then html.unescape twice */
    CHECK_CLEAN("Tom &amp; Jerry &lt;3", "tom & jerry <3");
    CHECK_CLEAN("&amp;amp;amp;amp; deep", "& deep");
    CHECK_CLEAN("it&#x27;s", "it's");
    CHECK_CLEAN("&#8220;quoted&#8221;", "\"quoted\""); /* decoded by ftfy, so uncurled */
    CHECK_CLEAN("<i>&#8220;q&#8221;</i>",              /* a '<': ftfy leaves entities */
                "<i>\xe2\x80\x9cq\xe2\x80\x9d</i>");
    CHECK_CLEAN("P&EACUTE;REZ &NTILDE;", "p\xc3\xa9rez \xc3\xb1"); /* ftfy's all-caps names */
    CHECK_CLEAN("&notit; &ntilde &amp", "\xc2\xacit; \xc3\xb1 &"); /* legacy names, no ';' */
    CHECK_CLEAN("&#0;|&#128;|&#x110000;|&#1;|&#59;|&#xD800;",
                "\xef\xbf\xbd|\xe2\x82\xac|\xef\xbf\xbd||;|\xef\xbf\xbd");
    CHECK_CLEAN("&bogus; & &#; &#x;", "&bogus; & &#; &#x;");
    /* whitespace */
    CHECK_CLEAN("  leading and \t\n  trailing \r\n ", "leading and trailing");
    CHECK_CLEAN("a\xc2\xa0"
                "b\xe3\x80\x80"
                "c&nbsp;d",
                "a b c d");
    CHECK_CLEAN("", "");
    CHECK_CLEAN(" \t ", "");
    /* lowercase */
    CHECK_CLEAN("A photo of a DOG", "a photo of a dog");
    CHECK_CLEAN("\xc4\xb0stanbul", "i\xcc\x87stanbul"); /* U+0130 */
    CHECK_CLEAN(
        "\xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\xa5\xce\xa3",
        "\xce\xbf\xce\xb4\xcf\x85\xcf\x83\xcf\x83\xce\xb5\xcf\x85\xcf\x82"); /* final sigma */
    CHECK_CLEAN("\xce\xa3\xce\x91\xce\xa3. \xce\xa3",
                "\xcf\x83\xce\xb1\xcf\x82. \xcf\x83"); /* lone sigma is not final */

    /* the steps on their own */
    CHECK_UNESCAPE("&amp;amp; &lt &gt; &#65;&#x42;&#X43 &#0065a", "&amp; < > ABC Aa");
    CHECK_UNESCAPE("&#150; &#x80; &#129; &#x0d; &#11; &#xFFFE;",
                   "\xe2\x80\x93 \xe2\x82\xac \xc2\x81 \r  ");
    CHECK_UNESCAPE("&amp;&;&#;&#x;&", "&&;&#;&#x;&");
    CHECK_UNESCAPE("&nvlt; &ThickSpace; &NotEqualTilde;",
                   "<\xe2\x83\x92 \xe2\x81\x9f\xe2\x80\x8a \xe2\x89\x82\xcc\xb8");
    CHECK_UNESCAPE("&#99999999999999999999;", "\xef\xbf\xbd");
    CHECK_LOWER("\xe2\x84\xaa\xe2\x85\xa0\xc3\x80\xce\xa3\xcc\x88",
                "k\xe2\x85\xb0\xc3\xa0\xcf\x82\xcc\x88");
    CHECK_FIX("line\r\nbreak\rx\xe2\x80\xa8y", "line\nbreak\nx\ny");
    CHECK_FIX("a<b &amp; c\n&amp;", "a<b &amp; c\n&amp;"); /* '<' stops ftfy's entities for good */
    CHECK_FIX("&amp;\na<b &amp;", "&\na<b &amp;");
    CHECK_FIX("\xc5\x89 \xc7\x86 \xef\xac\x85", "'n d\xc5\xbe \xc5\xbft");

    /* invalid UTF-8: one U+FFFD per maximal bad subsequence, and flagged */
    struct {
        const char *in, *want;
    } bad[] = {
        {"a\xff"
         "b",
         "a\xef\xbf\xbd"
         "b"},
        {"\xe2\x82", "\xef\xbf\xbd"},
        {"\xe2\x82x", "\xef\xbf\xbdx"},
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xf0\x9f\x90", "\xef\xbf\xbd"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *out = NULL;
        unsigned flags = 0;
        cs_error e = {0};
        CHECK_EQ_INT(cs_text_clean(bad[i].in, &out, &flags, &e), 0);
        CHECK_EQ_STR(out, bad[i].want);
        CHECK_EQ_INT(flags, CLIPSCORE_TOKEN_INVALID_UTF8);
        free(out);
    }
    char *out = NULL;
    unsigned flags = 0;
    CHECK_EQ_INT(cs_text_clean("caf\xc3\xa9 \xf0\x9f\x90\xb6", &out, &flags, NULL), 0);
    CHECK_EQ_STR(out, "caf\xc3\xa9 \xf0\x9f\x90\xb6");
    CHECK_EQ_INT(flags, 0);
    free(out);
    cs_error e = {0};
    CHECK(cs_text_clean(NULL, &out, NULL, &e) == CLIPSCORE_EARG && e.msg[0]);
}

/* ---- synthetic vocabulary ------------------------------------------------------ */

static void test_synthetic_one(const cs_tokenizer *tok) {
    CHECK_EQ_INT(cs_tokenizer_sot(tok), SOT);
    CHECK_EQ_INT(cs_tokenizer_eot(tok), EOT);
    CHECK_EQ_INT(cs_tokenizer_vocab_size(tok), EOT + 1);
    /* rank order: l+l (1) before l+o</w> (3); then he+ll, hell+o</w> */
    CHECK_IDS(tok, "hello", 77, 0, SOT, MERGE_ID(4), EOT);
    CHECK_IDS(tok, "HELLO!", 77, 0, SOT, MERGE_ID(4), END('!'), EOT);
    CHECK_IDS(tok, "lo", 77, 0, SOT, MERGE_ID(3), EOT);
    /* "</w>" only on the last symbol: o inside a word does not merge */
    CHECK_IDS(tok, "hellos", 77, 0, SOT, MERGE_ID(2), ID('o'), END('s'), EOT);
    /* digits one by one, punctuation runs, contractions */
    CHECK_IDS(tok, "2024", 77, 0, SOT, END('2'), END('0'), END('2'), END('4'), EOT);
    CHECK_IDS(tok, "x!!!", 77, 0, SOT, END('x'), MERGE_ID(8), END('!'), EOT);
    CHECK_IDS(tok, "he's", 77, 0, SOT, ID('h'), END('e'), MERGE_ID(9), EOT);
    CHECK_IDS(tok, "it'll 'x", 77, 0, SOT, ID('i'), END('t'), ID('\''), ID('l'), END('l'),
              END('\''), END('x'), EOT);
    CHECK_IDS(tok, "a,b", 77, 0, SOT, END('a'), END(','), END('b'), EOT);
    /* the pattern is case-insensitive: 's also matches 'ſ (U+017F) */
    CHECK_IDS(tok, "x'\xc5\xbf", 77, 0, SOT, END('x'), ID('\''), ID(0xC5), END(0xBF), EOT);
    CHECK_IDS(tok, "ab ab", 77, 0, SOT, MERGE_ID(7), MERGE_ID(7), EOT);
    /* (a b) everywhere first, then (ab ab) left to right, then (a b</w>) */
    CHECK_IDS(tok, "abababababababababab", 77, 0, SOT, MERGE_ID(6), MERGE_ID(6), MERGE_ID(6),
              MERGE_ID(6), MERGE_ID(5), MERGE_ID(7), EOT);
    {
        /* a long word (80 bytes) takes the heap path: same rule */
        char word[81];
        for (int i = 0; i < 40; i++) memcpy(word + 2 * i, "ab", 2);
        word[80] = '\0';
        int want[24], k = 0;
        want[k++] = SOT;
        for (int i = 0; i < 19; i++) want[k++] = MERGE_ID(6);
        want[k++] = MERGE_ID(5);
        want[k++] = MERGE_ID(7);
        want[k++] = EOT;
        want[k] = -1;
        check_ids(tok, word, 77, want, 0, __LINE__);
    }
    /* multi-byte characters: their UTF-8 bytes; "</w>" on the last byte */
    CHECK_IDS(tok, "\xc3\xa9", 77, 0, SOT, ID(0xC3), END(0xA9), EOT);
    CHECK_IDS(tok, "a\xe2\x80\x8b", 77, 0, SOT, END('a'), ID(0xE2), ID(0x80), END(0x8B), EOT);
    /* specials written in the text */
    CHECK_IDS(tok, "<|endoftext|>x<|startoftext|>", 77, 0, SOT, EOT, END('x'), SOT, EOT);
    /* empty text, truncation with eot last */
    CHECK_IDS(tok, "", 77, 0, SOT, EOT);
    CHECK_IDS(tok, "   ", 77, 0, SOT, EOT);
    CHECK_IDS(tok, "a b c", 5, 0, SOT, END('a'), END('b'), END('c'), EOT);
    CHECK_IDS(tok, "a b c d e", 5, CLIPSCORE_TOKEN_TRUNCATED, SOT, END('a'), END('b'), END('c'),
              EOT);
    CHECK_IDS(tok, "hellos", 4, CLIPSCORE_TOKEN_TRUNCATED, SOT, MERGE_ID(2), ID('o'), EOT);
    CHECK_IDS(tok, "a", 2, CLIPSCORE_TOKEN_TRUNCATED, SOT, EOT);
    /* invalid UTF-8: U+FFFD's bytes, flagged */
    CHECK_IDS(tok, "\xff", 77, CLIPSCORE_TOKEN_INVALID_UTF8, SOT, ID(0xEF), ID(0xBF), END(0xBD),
              EOT);

    int32_t ids[4];
    int n = 0;
    cs_error e = {0};
    CHECK_EQ_INT(cs_tokenizer_encode(tok, "a", 1, ids, &n, NULL, &e), CLIPSCORE_EARG);
    CHECK_EQ_INT(cs_tokenizer_encode(tok, NULL, 4, ids, &n, NULL, &e), CLIPSCORE_EARG);
}

/* ---- several threads on one tokenizer ----------------------------------------------- */

static const char *const kThreadTexts[] = {
    "hello world",
    "It\xe2\x80\x99s a \xef\xac\x81ne &amp;amp; day",
    "ΣΑΣ 2024!!!",
    "ababababababababababababababababababababababababababababababababababababababab",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    "bad \xff utf8",
    "<|endoftext|>",
    "",
};
#define N_THREAD_TEXTS ((int)(sizeof kThreadTexts / sizeof kThreadTexts[0]))

typedef struct thread_job {
    const cs_tokenizer *tok;
    int32_t want[N_THREAD_TEXTS][77];
    int want_n[N_THREAD_TEXTS];
    int mismatches;
} thread_job;

static void *encode_worker(void *arg) {
    thread_job *job = arg;
    int bad = 0;
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < N_THREAD_TEXTS; i++) {
            int32_t ids[77];
            int n = 0;
            if (cs_tokenizer_encode(job->tok, kThreadTexts[i], 77, ids, &n, NULL, NULL) != 0 ||
                n != job->want_n[i] || memcmp(ids, job->want[i], (size_t)n * sizeof *ids) != 0)
                bad++;
        }
    }
    return (void *)(intptr_t)bad;
}

/* The same texts from four threads at once give the sequential results. */
static void test_threads(const cs_tokenizer *tok) {
    static thread_job job;
    job.tok = tok;
    for (int i = 0; i < N_THREAD_TEXTS; i++)
        CHECK_EQ_INT(
            cs_tokenizer_encode(tok, kThreadTexts[i], 77, job.want[i], &job.want_n[i], NULL, NULL),
            0);
    pthread_t th[4];
    int started = 0, bad = 0;
    for (int i = 0; i < 4; i++) started += pthread_create(&th[i], NULL, encode_worker, &job) == 0;
    for (int i = 0; i < started; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        bad += (int)(intptr_t)r;
    }
    CHECK_EQ_INT(started, 4);
    CHECK_EQ_INT(bad, 0);
}

static void test_synthetic(void) {
    const char *dir = test_tmpdir("tok");
    char vocab[600], merges[600], gz[600];
    write_synthetic(dir, vocab, merges, gz);
    cs_error e = {0};
    cs_tokenizer *hf = NULL, *oa = NULL;
    int rc = cs_tokenizer_load_hf(vocab, merges, &hf, &e);
    CHECK_MSG(rc == 0 && hf, "load_hf: %s", e.msg);
    if (hf) test_synthetic_one(hf);
    if (hf) test_threads(hf);
    rc = cs_tokenizer_load_bpe_gz(gz, &oa, &e);
    CHECK_MSG(rc == 0 && oa, "load_bpe_gz: %s", e.msg);
    if (oa) test_synthetic_one(oa);
    cs_tokenizer_free(hf);
    cs_tokenizer_free(oa);
    cs_tokenizer_free(NULL);
}

/* ---- bad files ------------------------------------------------------------------- */

static void expect_load_error(const char *vocab, const char *merges, int want, const char *needle,
                              int line) {
    cs_tokenizer *t = (cs_tokenizer *)&t; /* must be reset to NULL */
    cs_error e = {0};
    int rc = merges ? cs_tokenizer_load_hf(vocab, merges, &t, &e)
                    : cs_tokenizer_load_bpe_gz(vocab, &t, &e);
    test_checks++;
    if (rc != want || t != NULL || !strstr(e.msg, needle)) {
        test_failures++;
        fprintf(stderr, "%s:%d: load gave rc %d (want %d), message \"%s\" (want \"%s\")\n",
                __FILE__, line, rc, want, e.msg, needle);
    }
    if (rc == 0) cs_tokenizer_free(t);
}
#define EXPECT_LOAD_ERROR(v, m, want, needle) expect_load_error(v, m, want, needle, __LINE__)

static void test_bad_files(void) {
    const char *dir = test_tmpdir("tokbad");
    char vocab[600], merges[600], gz[600], p[700], q[700];
    write_synthetic(dir, vocab, merges, gz);

    sprintf(p, "%s/missing.json", dir);
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EIO, "missing.json");
    sprintf(p, "%s/missing.txt", dir);
    EXPECT_LOAD_ERROR(vocab, p, CLIPSCORE_EIO, "missing.txt");
    EXPECT_LOAD_ERROR(p, NULL, CLIPSCORE_EIO, "missing.txt");

    sprintf(p, "%s/broken.json", dir);
    write_text(p, "{\"a\": 1, \"b\": ");
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EFORMAT, "broken.json");
    write_text(p, "[1, 2]");
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EFORMAT, "broken.json");
    write_text(p, "{\"a\": \"x\"}");
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EFORMAT, "\"a\"");
    write_text(p, "{\"a\": 1.5}");
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EFORMAT, "\"a\"");
    write_text(p, "{\"a\": 0, \"<|startoftext|>\": 1, \"<|endoftext|>\": 2}");
    EXPECT_LOAD_ERROR(p, merges, CLIPSCORE_EMODEL, "no token for byte");

    /* a merge naming a token the vocabulary lacks; a malformed line */
    sprintf(q, "%s/merges_unknown.txt", dir);
    write_text(q, "#version: 0.2\nh e\nzz y\n");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EMODEL, "merges_unknown.txt:3: token \"zz\"");
    write_text(q, "#version: 0.2\nh e\nl l x\n");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EFORMAT, "merges_unknown.txt:3");
    write_text(q, "#version: 0.2\nh e\nx y\n");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EMODEL, "merged token \"xy\"");
    /* no merges at all: every caption would be byte tokens */
    sprintf(q, "%s/merges_empty.txt", dir);
    write_text(q, "");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EMODEL, "merges_empty.txt: no merges");
    write_text(q, "#version: 0.2\n");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EMODEL, "merges_empty.txt: no merges");
    write_text(q, "#version: 0.2\n\n  \n");
    EXPECT_LOAD_ERROR(vocab, q, CLIPSCORE_EMODEL, "merges_empty.txt: no merges");
    sprintf(p, "%s/empty.txt.gz", dir);
    {
        gzFile g = gzopen(p, "wb");
        if (g) {
            gzputs(g, "\"bpe_simple_vocab_16e6.txt#version: 0.2\n");
            gzclose(g);
        }
    }
    EXPECT_LOAD_ERROR(p, NULL, CLIPSCORE_EMODEL, "empty.txt.gz: no merges");

    /* not gzip, a cut-short gzip, a merge of unknown tokens */
    sprintf(p, "%s/plain.txt.gz", dir);
    write_text(p, "#version: 0.2\nh e\n");
    EXPECT_LOAD_ERROR(p, NULL, CLIPSCORE_EFORMAT, "plain.txt.gz");
    {
        char *data = NULL;
        size_t len = 0;
        CHECK_EQ_INT(cs_read_file(gz, 0, &data, &len, NULL), 0);
        sprintf(p, "%s/cut.gz", dir);
        FILE *f = fopen(p, "wb");
        if (f && data) {
            fwrite(data, 1, len / 2, f);
            fclose(f);
        }
        free(data);
        EXPECT_LOAD_ERROR(p, NULL, CLIPSCORE_EFORMAT, "cut.gz");
        sprintf(p, "%s/unknown.gz", dir);
        gzFile g = gzopen(p, "wb");
        gzputs(g, "#version: 0.2\nh e\nqq r\n");
        gzclose(g);
        EXPECT_LOAD_ERROR(p, NULL, CLIPSCORE_EMODEL, "unknown.gz:3: token \"qq\"");
    }
}

/* ---- conformance --------------------------------------------------------------------- */

typedef struct caption_set {
    char **text;
    int32_t (*ids)[80];
    int *n_ids;
    int n;
} caption_set;

static void captions_free(caption_set *c) {
    for (int i = 0; i < c->n; i++) free(c->text[i]);
    free(c->text);
    free(c->ids);
    free(c->n_ids);
}

static int load_captions(const char *dir, caption_set *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/expected/tokens.jsonl", dir);
    char *data = NULL;
    size_t len = 0;
    cs_error e = {0};
    if (cs_read_file(path, 0, &data, &len, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return -1;
    }
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += data[i] == '\n';
    c->text = calloc((size_t)lines + 1, sizeof *c->text);
    c->ids = calloc((size_t)lines + 1, sizeof *c->ids);
    c->n_ids = calloc((size_t)lines + 1, sizeof *c->n_ids);
    c->n = 0;
    int bad = !c->text || !c->ids || !c->n_ids;
    for (char *line = data; !bad && line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        cJSON *j = cJSON_Parse(line);
        cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
        if (!cJSON_IsString(t) || !cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > 80) {
            bad = 1;
        } else {
            c->text[c->n] = strdup(t->valuestring);
            int k = 0;
            for (cJSON *x = ids->child; x; x = x->next) c->ids[c->n][k++] = (int32_t)x->valuedouble;
            c->n_ids[c->n] = k;
            c->n++;
        }
        cJSON_Delete(j);
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    if (bad) fprintf(stderr, "%s: unexpected line %d\n", path, c->n + 1);
    return bad ? -1 : 0;
}

static void conformance_one(const char *what, const cs_tokenizer *tok, const caption_set *c,
                            double load_s) {
    int ok = 0, shown = 0;
    int32_t ids[77];
    double t0 = cs_now();
    for (int i = 0; i < c->n; i++) {
        int n = 0;
        cs_error e = {0};
        int rc = cs_tokenizer_encode(tok, c->text[i], 77, ids, &n, NULL, &e);
        int same = rc == 0 && n == c->n_ids[i];
        for (int k = 0; same && k < n; k++) same = ids[k] == c->ids[i][k];
        if (same) {
            ok++;
        } else if (shown++ < 5) {
            fprintf(stderr, "%s: caption %d \"%s\": rc %d %s\n  got: ", what, i + 1, c->text[i], rc,
                    e.msg);
            for (int k = 0; k < n; k++) fprintf(stderr, " %d", ids[k]);
            fprintf(stderr, "\n want: ");
            for (int k = 0; k < c->n_ids[i]; k++) fprintf(stderr, " %d", c->ids[i][k]);
            fputc('\n', stderr);
        }
    }
    double enc_s = cs_now() - t0;
    /* a second pass for a steadier rate */
    t0 = cs_now();
    for (int i = 0; i < c->n; i++) {
        int n = 0;
        cs_tokenizer_encode(tok, c->text[i], 77, ids, &n, NULL, NULL);
    }
    double enc2_s = cs_now() - t0;
    fprintf(stderr, "conformance %s: %d/%d exact; load %.1f ms; encode %.1f ms (%.0f captions/s)\n",
            what, ok, c->n, load_s * 1e3, enc_s * 1e3, c->n / (enc2_s > 0 ? enc2_s : 1e-9));
    CHECK_EQ_INT(ok, c->n);
}

static void test_conformance(void) {
    const char *dir = test_conformance_dir();
    if (!dir) {
        fprintf(stderr, "conformance fixtures absent: skipping the reference comparison\n");
        return;
    }
    caption_set c = {0};
    int rc = load_captions(dir, &c);
    CHECK(rc == 0 && c.n > 1000);
    if (rc) {
        captions_free(&c);
        return;
    }
    char vocab[1024], merges[1024], gz[1024];
    snprintf(vocab, sizeof vocab, "%s/model-hf/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/model-hf/merges.txt", dir);
    snprintf(gz, sizeof gz, "%s/model-openai-jit/bpe_simple_vocab_16e6.txt.gz", dir);
    cs_error e = {0};
    cs_tokenizer *hf = NULL, *oa = NULL;
    double t0 = cs_now();
    rc = cs_tokenizer_load_hf(vocab, merges, &hf, &e);
    double hf_s = cs_now() - t0;
    CHECK_MSG(rc == 0, "%s", e.msg);
    t0 = cs_now();
    rc = cs_tokenizer_load_bpe_gz(gz, &oa, &e);
    double oa_s = cs_now() - t0;
    CHECK_MSG(rc == 0, "%s", e.msg);
    if (hf) {
        CHECK_EQ_INT(cs_tokenizer_vocab_size(hf), 49408);
        CHECK_EQ_INT(cs_tokenizer_sot(hf), 49406);
        CHECK_EQ_INT(cs_tokenizer_eot(hf), 49407);
        conformance_one("vocab.json+merges.txt", hf, &c, hf_s);
    }
    if (oa) {
        CHECK_EQ_INT(cs_tokenizer_vocab_size(oa), 49408);
        conformance_one("bpe_simple_vocab_16e6.txt.gz", oa, &c, oa_s);
    }
    cs_tokenizer_free(hf);
    cs_tokenizer_free(oa);
    captions_free(&c);
}

int main(void) {
    test_cleanup();
    test_synthetic();
    test_bad_files();
    test_conformance();
    return test_finish("test_tokenizer");
}
