/* synth_vocab.h - writes a small synthetic CLIP vocabulary for the fuzz
 * harnesses, in both layouts the tokenizer reads: vocab.json + merges.txt
 * (Hugging Face) and a gzip'd merges list (OpenAI). Both number the tokens
 * as OpenAI's SimpleTokenizer does (byte characters, the same with "</w>",
 * one token per merge, then the two specials), so the two loaded tokenizers
 * must give identical ids for any text. */
#ifndef CLIPSCORE_FUZZ_SYNTH_VOCAB_H
#define CLIPSCORE_FUZZ_SYNTH_VOCAB_H

#include <stddef.h>

/* Writes the three files; returns 0, or -1 on an I/O failure. */
int synth_vocab_write(const char *vocab_json, const char *merges_txt, const char *bpe_gz);
/* The merges list as text (one "a b" per line, "#version: 0.2" first), for
 * seeds and for the loaders harness. */
const char *synth_vocab_merges_text(void);

#endif
