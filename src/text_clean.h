/* text_clean.h - caption cleanup done before CLIP tokenisation, matching the
 * reference: ftfy.fix_text's default fixes that matter for captions
 * (curly quotes, ligatures, fullwidth forms, control characters, NFC, ...),
 * HTML unescaping twice, whitespace collapse and strip, lowercase. */
#ifndef CLIPSCORE_TEXT_CLEAN_H
#define CLIPSCORE_TEXT_CLEAN_H

#include "util.h"

/* Returns a newly allocated cleaned, lowercased UTF-8 string in *out (caller
 * frees). Invalid UTF-8 input bytes become U+FFFD and set
 * CLIPSCORE_TOKEN_INVALID_UTF8 in *flags (flags may be NULL). */
int cs_text_clean(const char *text, char **out, unsigned *flags, cs_error *e);

#endif
