/* synth_vocab.c - the synthetic vocabulary of synth_vocab.h. The merges are
 * few but cover what BPE does: chains (a a -> aa -> aaaa -> aaaaaaaa, long
 * enough to reach the heap path on long pieces), word-end tokens, multi-byte
 * characters (é is "Ã©" in the byte alphabet), a contraction and punctuation. */
#include "synth_vocab.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

/* Merges in rank order, in the byte-character alphabet. */
static const char *const kMerges[][2] = {
    {"t", "h"},       {"th", "e</w>"}, {"a", "n"}, {"an", "d</w>"}, {"i", "n"},     {"in", "g</w>"},
    {"e", "r"},       {"o", "n</w>"},  {"r", "e"}, {"e", "s</w>"},  {"a", "a"},     {"aa", "aa"},
    {"aaaa", "aaaa"}, {"a", "a</w>"},  {"d", "o"}, {"do", "g</w>"}, {"c", "a"},     {"ca", "t</w>"},
    {"'", "s</w>"},   {"!", "!"},      {"Ã", "©"}, {"a", "f"},      {"Ã", "©</w>"},
};
#define N_MERGES (sizeof kMerges / sizeof kMerges[0])

/* GPT-2's byte alphabet: printable Latin-1 bytes are themselves, the rest
 * U+0100 onwards; `order` lists bytes in the reference's vocabulary order. */
static void byte_alphabet(unsigned cp[256], int order[256]) {
    int k = 0, extra = 0;
    for (int b = 0; b < 256; b++)
        if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) order[k++] = b;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        cp[b] = printable ? (unsigned)b : 256u + (unsigned)extra++;
        if (!printable) order[k++] = b;
    }
}

/* A code point as the body of a JSON string. */
static void put_json_char(FILE *f, unsigned c) {
    if (c == '"' || c == '\\')
        fprintf(f, "\\%c", (char)c);
    else if (c < 0x80)
        fputc((int)c, f);
    else
        fprintf(f, "\\u%04x", c);
}

/* A token of the ASCII/Latin-1 merges table as a JSON string body: the
 * UTF-8 in kMerges is copied as is, quotes and backslashes escaped. */
static void put_json_str(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

const char *synth_vocab_merges_text(void) {
    static char text[2048];
    if (!text[0]) {
        size_t at = (size_t)snprintf(text, sizeof text, "#version: 0.2\n");
        for (size_t r = 0; r < N_MERGES; r++)
            at += (size_t)snprintf(text + at, sizeof text - at, "%s %s\n", kMerges[r][0],
                                   kMerges[r][1]);
    }
    return text;
}

int synth_vocab_write(const char *vocab_json, const char *merges_txt, const char *bpe_gz) {
    unsigned cp[256];
    int order[256];
    byte_alphabet(cp, order);
    FILE *f = fopen(vocab_json, "wb");
    if (!f) return -1;
    int id = 0;
    fputc('{', f);
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < 256; k++) {
            fputc('"', f);
            put_json_char(f, cp[order[k]]);
            fprintf(f, "%s\": %d, ", pass ? "</w>" : "", id++);
        }
    }
    for (size_t r = 0; r < N_MERGES; r++) {
        fputc('"', f);
        put_json_str(f, kMerges[r][0]);
        put_json_str(f, kMerges[r][1]);
        fprintf(f, "\": %d, ", id++);
    }
    fprintf(f, "\"<|startoftext|>\": %d, \"<|endoftext|>\": %d}\n", id, id + 1);
    if (fclose(f) != 0) return -1;

    const char *text = synth_vocab_merges_text();
    f = fopen(merges_txt, "wb");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) return -1;
    gzFile gz = gzopen(bpe_gz, "wb");
    if (!gz) return -1;
    /* The OpenAI file's first line is a header the loader skips. */
    int ok = gzputs(gz, "\"bpe_simple_vocab_16e6.txt#version: 0.2\n") > 0 &&
             gzputs(gz, strchr(text, '\n') + 1) > 0;
    return gzclose(gz) == Z_OK && ok ? 0 : -1;
}
