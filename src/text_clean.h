/* text_clean.h - caption cleanup done before CLIP tokenisation, matching the
 * reference: ftfy.fix_text's default fixes that matter for captions
 * (mojibake, curly quotes, ligatures, fullwidth forms, control characters,
 * NFC, ...), HTML unescaping twice, whitespace collapse and strip,
 * lowercase. */
#ifndef CLIPSCORE_TEXT_CLEAN_H
#define CLIPSCORE_TEXT_CLEAN_H

#include "util.h"

/* Returns a newly allocated cleaned, lowercased UTF-8 string in *out (caller
 * frees). Invalid UTF-8 input bytes become U+FFFD and set
 * CLIPSCORE_TOKEN_INVALID_UTF8 in *flags (flags may be NULL). */
int cs_text_clean(const char *text, char **out, unsigned *flags, cs_error *e);

/* The steps of cs_text_clean on their own (same ownership and flags rules),
 * for tests and tools:
 * cs_text_fix - ftfy.fix_text with its defaults;
 * cs_text_fix_encoding - ftfy.fix_encoding (mojibake repair) alone;
 * cs_text_html_unescape - Python's html.unescape;
 * cs_text_lower - Python's str.lower. */
int cs_text_fix(const char *text, char **out, unsigned *flags, cs_error *e);
int cs_text_fix_encoding(const char *text, char **out, cs_error *e);
int cs_text_html_unescape(const char *text, char **out, cs_error *e);
int cs_text_lower(const char *text, char **out, cs_error *e);

/* Whether a code point is whitespace for CLIP's patterns (the regex
 * module's \s: Unicode White_Space). */
int cs_text_is_regex_space(uint32_t c);

#endif
