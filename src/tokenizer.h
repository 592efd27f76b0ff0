/* tokenizer.h - CLIP's byte-level BPE tokenizer, in C.
 *
 * Covers: loading the vocabulary (vocab.json + merges.txt, or OpenAI's
 * bpe_simple_vocab_16e6.txt.gz), text cleanup as the reference does (see
 * text_clean.h), CLIP's pre-tokenisation split, BPE with the "</w>" word end,
 * start/end tokens and truncation. Leaves out: detokenisation.
 *
 * A loaded tokenizer is immutable: cs_tokenizer_encode may be called from
 * several threads at once. */
#ifndef CLIPSCORE_TOKENIZER_H
#define CLIPSCORE_TOKENIZER_H

#include <stdint.h>

#include "util.h"

typedef struct cs_tokenizer cs_tokenizer;

/* Hugging Face / open_clip layout: vocab.json (token -> id) and merges.txt.
 * Both loaders refuse (CLIPSCORE_EMODEL, naming the file and line) a
 * merges list with no merges at all (empty, or only the "#version"
 * header) and any merge whose two tokens or whose result the vocabulary
 * lacks: such files would tokenize differently from the model's training,
 * silently, so they are not loaded rather than counted. */
int cs_tokenizer_load_hf(const char *vocab_json, const char *merges_txt, cs_tokenizer **out,
                         cs_error *e);
/* OpenAI layout: the gzip'd merges list; the vocabulary is derived from it as
 * the reference SimpleTokenizer does. */
int cs_tokenizer_load_bpe_gz(const char *bpe_gz, cs_tokenizer **out, cs_error *e);
void cs_tokenizer_free(cs_tokenizer *tok);

int32_t cs_tokenizer_sot(const cs_tokenizer *tok); /* <|startoftext|> */
int32_t cs_tokenizer_eot(const cs_tokenizer *tok); /* <|endoftext|> */
int cs_tokenizer_vocab_size(const cs_tokenizer *tok);

/* Encodes UTF-8 text: [sot, bpe ids..., eot], at most context_length ids
 * (when longer, cut so that eot is the last id). ids must hold
 * context_length entries. *flags gets CLIPSCORE_TOKEN_* bits (may be NULL).
 * Invalid UTF-8 is replaced by U+FFFD, not an error. */
int cs_tokenizer_encode(const cs_tokenizer *tok, const char *text, int context_length, int32_t *ids,
                        int *n_ids, unsigned *flags, cs_error *e);

#endif
