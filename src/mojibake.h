/* mojibake.h - ftfy's fix_encoding: detects text that is UTF-8 read through
 * the wrong single-byte codec ("donâ€™t", "cafÃ©") and decodes it again,
 * as ftfy 6.3 does inside fix_text, which the reference tokenizer runs on
 * every caption.
 *
 * Covers: the whole of fix_encoding with ftfy's default settings - its
 * mojibake heuristic (is_bad), re-encoding through latin-1,
 * sloppy-windows-1252/1251/1250/1253/1254/1257, iso-8859-2, macroman and
 * cp437, restore_byte_a0, replace_lossy_sequences, UTF-8 and its CESU-8 /
 * Java variants, decode_inconsistent_utf8 and fix_c1_controls, repeated
 * until the text stops changing. Leaves out: the other fixes of fix_text
 * (text_clean.c) and guess_bytes (captions are already text). */
#ifndef CLIPSCORE_MOJIBAKE_H
#define CLIPSCORE_MOJIBAKE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* ftfy.fix_encoding on n code points. Writes a newly allocated array to
 * *out (caller frees; never NULL on success, even for n == 0) and its length
 * to *out_n. Text without a code point above U+007F comes back unchanged. */
int cs_mojibake_fix_encoding(const uint32_t *v, size_t n, uint32_t **out, size_t *out_n,
                             cs_error *e);

/* ftfy.badness.is_bad: whether the text holds a character sequence that is
 * far likelier to be mojibake than meant. */
int cs_mojibake_is_bad(const uint32_t *v, size_t n);

#endif
