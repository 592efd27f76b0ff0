/* html_entities.h - lookup in the HTML5 table of named character references.
 *
 * Covers: the name -> code points table only. Leaves out: scanning text for
 * references and the unescaping rules (Python's html.unescape, ftfy's
 * variant), which are in text_clean.c. */
#ifndef CLIPSCORE_HTML_ENTITIES_H
#define CLIPSCORE_HTML_ENTITIES_H

#include <stddef.h>
#include <stdint.h>

/* Looks up a reference name given without its '&' (len bytes, not
 * NUL-terminated), e.g. "amp;" or the legacy "amp". The match is exact and
 * case-sensitive, and the ';' is part of the name. Returns the number of code
 * points written to value (1 or 2), or 0 when the name is not in the table. */
int cs_html_entity_lookup(const char *name, size_t len, uint32_t value[2]);

#endif
