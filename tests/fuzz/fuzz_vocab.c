/* fuzz_vocab.c - fuzzes the tokenizer's loaders (tokenizer.h) with fuzzed
 * model files. Input layout: byte 0 picks the loader, then
 *   0: vocab.json + merges.txt: bytes 1-2 (little-endian) give the length of
 *      vocab.json (cut to what is there), the rest is merges.txt;
 *   1: OpenAI's merges list as plain text, gzip'd by the harness (so the
 *      fuzzer explores the text, not deflate);
 *   2: the bytes themselves as the .gz file (corrupt and truncated gzip).
 * A tokenizer that loads then encodes a few fixed captions.
 *
 * Invariants: a failed load says why and returns no tokenizer; a loaded one
 * has distinct special tokens inside its vocabulary and encodes to ids in
 * range, framed by them. */
#include <string.h>
#include <zlib.h>

#include "fuzz_common.h"
#include "tokenizer.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    fuzz_tmpdir();
    return 0;
}

static void check_loaded(int rc, cs_tokenizer *t, cs_error *e) {
    if (rc) {
        FUZZ_CHECK_ERROR(rc, *e);
        FUZZ_CHECK(t == NULL, "tokenizer returned on failure");
        return;
    }
    FUZZ_CHECK(t != NULL, "no tokenizer on success");
    int vs = cs_tokenizer_vocab_size(t);
    int32_t sot = cs_tokenizer_sot(t), eot = cs_tokenizer_eot(t);
    FUZZ_CHECK(sot >= 0 && sot < vs && eot >= 0 && eot < vs, "specials %d %d, vocab %d", sot, eot,
               vs);
    /* Short captions only: a fuzzed merge table can make BPE quadratic in
     * the piece length, which is the price of the reference's algorithm. */
    static const char *const captions[] = {"a photo of a dog", "the cat's café!!", "",
                                           "aaaaaaaa aaaaaaaaaaaaaaaaaaaaaaaaa 123",
                                           "<|startoftext|> \xff\xfe x"};
    for (size_t i = 0; i < sizeof captions / sizeof captions[0]; i++) {
        int32_t ids[32];
        int n = 0;
        cs_error ee = {0};
        int erc = cs_tokenizer_encode(t, captions[i], 32, ids, &n, NULL, &ee);
        FUZZ_CHECK(erc == 0, "encode failed: %s", ee.msg);
        FUZZ_CHECK(n >= 2 && n <= 32 && ids[0] == sot && ids[n - 1] == eot, "bad framing");
        for (int k = 0; k < n; k++)
            FUZZ_CHECK(ids[k] >= 0 && ids[k] < vs, "id %d outside vocab of %d", ids[k], vs);
    }
    cs_tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int mode = data[0] % 3;
    data++, size--;
    cs_tokenizer *t = NULL;
    cs_error e = {0};
    int rc;
    if (mode == 0) {
        if (size < 2) return 0;
        size_t vl = (size_t)data[0] | (size_t)data[1] << 8;
        data += 2, size -= 2;
        if (vl > size) vl = size;
        const char *vp = fuzz_path(0, "vocab.json"), *mp = fuzz_path(1, "merges.txt");
        fuzz_write_file(vp, data, vl);
        fuzz_write_file(mp, data + vl, size - vl);
        rc = cs_tokenizer_load_hf(vp, mp, &t, &e);
    } else {
        const char *gp = fuzz_path(2, "bpe.txt.gz");
        if (mode == 1) {
            gzFile gz = gzopen(gp, "wb1");
            FUZZ_CHECK(gz != NULL, "cannot write %s", gp);
            FUZZ_CHECK(size == 0 || gzwrite(gz, data, (unsigned)size) == (int)size, "gzwrite");
            FUZZ_CHECK(gzclose(gz) == Z_OK, "gzclose");
        } else {
            fuzz_write_file(gp, data, size);
        }
        rc = cs_tokenizer_load_bpe_gz(gp, &t, &e);
    }
    check_loaded(rc, t, &e);
    return 0;
}
