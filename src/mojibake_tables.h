/* mojibake_tables.h - the data that mojibake.c works from: the single-byte
 * codecs ftfy tries, and the character classes of ftfy's mojibake heuristic
 * and of its UTF-8 detector.
 *
 * Covers: the types and the declarations of the tables, which
 * tools/gen_mojibake_tables.py writes into mojibake_tables.c. Leaves out:
 * any logic (mojibake.c). */
#ifndef CLIPSCORE_MOJIBAKE_TABLES_H
#define CLIPSCORE_MOJIBAKE_TABLES_H

#include <stddef.h>
#include <stdint.h>

/* One of ftfy's CHARMAP_ENCODINGS, in the order ftfy tries them. */
typedef struct cs_mj_codec {
    const char *name;
    int sloppy;              /* a "sloppy-" codec: lossy sequences are replaced */
    int keep_spaces;         /* MacRoman: byte A0 is never restored from a space */
    uint16_t dec[256];       /* byte -> code point (every value is in the BMP) */
    const uint16_t *enc;     /* code points of dec[] that are not their own byte, sorted */
    const uint8_t *enc_byte; /* ... and the byte each one encodes to */
    size_t n_enc;
} cs_mj_codec;

extern const cs_mj_codec cs_mj_codecs[];
extern const size_t cs_mj_n_codecs;

/* The character sets of the heuristic's patterns and of the UTF-8 detector:
 * a code point's mask has bit k % 64 of word k / 64 set when it belongs to
 * set k. Code points in no set are absent. Sorted by code point. */
#define CS_MJ_MAX_SETS 128
typedef struct cs_mj_class {
    uint32_t cp;
    uint64_t mask[CS_MJ_MAX_SETS / 64];
} cs_mj_class;

extern const cs_mj_class cs_mj_classes[];
extern const size_t cs_mj_n_classes;

/* Set numbers of the UTF-8 detector's classes. */
extern const int cs_mj_set_first_of_2, cs_mj_set_first_of_3, cs_mj_set_first_of_4,
    cs_mj_set_continuation, cs_mj_set_continuation_strict;

/* Atoms of a badness pattern besides the sets 0 to CS_MJ_MAX_SETS - 1. */
enum {
    CS_MJ_ATOM_SPACE = 0x100,     /* Python re's \s: str.isspace() */
    CS_MJ_ATOM_WORD = 0x101,      /* Python re's \w: str.isalnum() or '_' */
    CS_MJ_ATOM_ANY = 0x102,       /* '.': anything but '\n' */
    CS_MJ_ATOM_NOT_AZ = 0x103,    /* [^A-Za-z] */
    CS_MJ_ATOM_OPTIONAL = 0x8000, /* flag: the atom may be skipped */
};

/* One alternative of ftfy's BADNESS_RE: a fixed sequence of atoms. */
typedef struct cs_mj_pattern {
    uint8_t at_start; /* anchored at the start of the text ('^') */
    uint8_t n;
    uint16_t atom[8];
} cs_mj_pattern;

extern const cs_mj_pattern cs_mj_patterns[];
extern const size_t cs_mj_n_patterns;

#endif
