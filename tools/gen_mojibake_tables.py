#!/usr/bin/env python3
"""Writes src/mojibake_tables.c: the tables of the mojibake repair in
src/mojibake.c (ftfy 6.3's fix_encoding, which OpenAI's clip tokenizer runs
on every caption).

Covers: the single-byte codecs ftfy tries (from Python's own codecs, with
ftfy's "sloppy" rule for bytes a codec leaves undefined), the character
classes of ftfy's mojibake heuristic (badness.py) and of its UTF-8 detector
(chardata.py), and the heuristic's patterns as sequences of those classes.
Leaves out: all logic; the class memberships that are not a matter of a
codec (which characters are "bad", "currency", ...) are ftfy's choices,
written out below as code points.

Python standard library only. Usage: tools/gen_mojibake_tables.py > src/mojibake_tables.c
"""
import sys

# ---- codecs -----------------------------------------------------------------

# ftfy's CHARMAP_ENCODINGS in its order: (name, Python codec, sloppy).
CODECS = [
    ("latin-1", "latin-1", False),
    ("sloppy-windows-1252", "cp1252", True),
    ("sloppy-windows-1251", "cp1251", True),
    ("sloppy-windows-1250", "cp1250", True),
    ("sloppy-windows-1253", "cp1253", True),
    ("sloppy-windows-1254", "cp1254", True),
    ("sloppy-windows-1257", "cp1257", True),
    ("iso-8859-2", "iso8859_2", False),
    ("macroman", "mac_roman", False),
    ("cp437", "cp437", False),
]


def decode_table(codec, sloppy):
    table = []
    for b in range(256):
        try:
            table.append(ord(bytes([b]).decode(codec)))
        except UnicodeDecodeError:
            if not sloppy:
                raise
            table.append(b)  # an undefined byte reads as its Latin-1 character
    if sloppy:
        table[0x1A] = 0xFFFD  # ftfy's sloppy codecs carry U+FFFD as byte 1A
    assert len(set(table)) == 256, codec
    return table


# ---- character classes --------------------------------------------------------


def cps(*items):
    """A set of code points from ints, (first, last) ranges and strings."""
    out = set()
    for it in items:
        if isinstance(it, tuple):
            out.update(range(it[0], it[1] + 1))
        elif isinstance(it, str):
            out.update(ord(c) for c in it)
        else:
            out.add(it)
    return frozenset(out)


# The heuristic's categories of characters that show up in UTF-8 mojibake.
CAT = {
    "common": cps(0xA0, 0xAD, 0xB4, 0xB7, (0x2013, 0x2015), 0x2019, 0x2026),
    "c1": cps((0x80, 0x9F)),
    "bad": cps(0xA4, 0xA6, 0xA8, 0xAA, 0xAC, 0xAF, 0xB8, 0xBA, 0x192, (0x2C6, 0x2C7), 0x2D8,
               (0x2DB, 0x2DC), (0x2020, 0x2021), 0x2030, 0x2310, 0x25CA, 0xFFFD),
    "law": cps(0xA7, 0xB6),
    "currency": cps((0xA2, 0xA3), 0xA5, 0x20A7, 0x20AC),
    "start": cps(0xA1, 0xA9, 0xAB, 0xBF, (0x384, 0x385), 0x2018, 0x201A, 0x201C, 0x201E, 0x2022,
                 0x2039, 0xF8FF),
    "end": cps(0xAE, 0xBB, 0x2DD, 0x201D, 0x203A, 0x2122),
    "numeric": cps((0xB1, 0xB3), 0xB5, 0xB9, (0xBC, 0xBE), 0xD7, 0xF7, 0x2044, 0x2116, 0x2202,
                   0x2206, 0x220F, 0x2211, 0x221A, 0x221E, 0x2229, 0x222B, 0x2248,
                   (0x2260, 0x2261), (0x2264, 0x2265)),
    "kaomoji": cps(0xB0, (0xD2, 0xD6), (0xD9, 0xDC), (0xF2, 0xF6), (0xF8, 0xFC), 0x14C, 0x150,
                   0x16A, 0x172),
    "upper_accented": cps((0xC0, 0xD1), 0xD8, (0xDC, 0xDD), 0x100, 0x102, 0x104, 0x106, 0x10C,
                          0x10E, 0x110, 0x112, 0x116, 0x118, 0x11A, 0x11E, 0x122, 0x12A, 0x130,
                          0x136, 0x139, 0x13B, 0x13D, 0x141, 0x143, 0x145, 0x147, 0x152, 0x158,
                          0x15A, 0x15E, 0x160, 0x162, 0x164, 0x16E, 0x170, (0x178, 0x179), 0x17B,
                          0x17D, 0x490),
    "lower_accented": cps((0xDF, 0xF1), 0xFC, 0x101, 0x103, 0x105, 0x107, 0x10D, 0x10F, 0x111,
                          0x113, 0x117, 0x119, 0x11B, 0x11F, 0x123, 0x12B, 0x12F, 0x137, 0x13A,
                          0x13C, 0x13E, 0x142, 0x153, 0x155, 0x15B, 0x15F, 0x161, 0x165, 0x17A,
                          0x17C, 0x17E, 0x491, (0xFB01, 0xFB02)),
    "upper_common": cps(0xDE, 0x386, (0x388, 0x38A), 0x38C, (0x38E, 0x38F), (0x391, 0x3AB),
                        (0x401, 0x42F)),
    "lower_common": cps((0x3AC, 0x3C9), (0x430, 0x45F)),
    "box": cps(0x2502, 0x250C, 0x2510, 0x2518, 0x251C, 0x2524, 0x252C, 0x253C, (0x2550, 0x256C),
               0x2580, 0x2584, 0x2588, 0x258C, (0x2590, 0x2593)),
}


def U(*names):
    """Union of categories."""
    out = frozenset()
    for n in names:
        out |= CAT[n]
    return out


LOWER_AZ = cps((ord("a"), ord("z")))
AZ = LOWER_AZ | cps((ord("A"), ord("Z")))
SPACE, WORD, ANY, NOT_AZ = "SPACE", "WORD", "ANY", "NOT_AZ"


class Opt:
    def __init__(self, atom):
        self.atom = atom


ACCENTED = ("lower_accented", "upper_accented")
# ftfy's BADNESS_RE, one alternative a line: a text is "bad" (looks like it
# holds mojibake) when any of these sequences occurs in it. ("^", ...) is
# anchored at the start.
PATTERNS = [
    [U("c1")],
    [U("bad", *ACCENTED, "box", "start", "end", "currency", "numeric", "law"), U("bad")],
    [AZ, U("lower_common", "upper_common"), U("bad")],
    [U("bad"), U(*ACCENTED, "box", "start", "end", "currency", "numeric", "law")],
    [U("lower_accented", "lower_common", "box", "end", "currency", "numeric"),
     U("upper_accented")],
    [U("box", "end", "currency", "numeric"), U("lower_accented")],
    [U("lower_accented", "box", "end"), U("currency")],
    [SPACE, U("upper_accented"), U("currency")],
    [U("upper_accented", "box"), U("numeric", "law")],
    [U(*ACCENTED, "box", "currency", "end"), U("start"), U("numeric")],
    [U(*ACCENTED, "currency", "numeric", "box", "law"), U("end"), U("start")],
    [U("currency", "numeric", "box"), U("start")],
    [LOWER_AZ, U("upper_accented"), U("start", "currency")],
    [U("box"), U("kaomoji")],
    [U(*ACCENTED, "currency", "numeric", "start", "end", "law"), U("box")],
    [U("box"), U("end")],
    [U(*ACCENTED), U("start", "end"), WORD],
    # the ligature oe not followed by a Latin letter
    [cps(0x152, 0x153), NOT_AZ],
    # a degree sign after an accented capital
    [U("upper_accented"), cps(0xB0)],
    # two-character Windows-1252 mojibake the others miss
    [cps(0xC2, 0xC3, 0xCE, 0xD0),
     cps(0x20AC, 0x153, 0x160, 0x161, 0xA2, 0xA3, 0x178, 0x17E, 0xA0, 0xAD, 0xAE, 0xA9, 0xB0,
         0xB7, 0xBB, 0x2013, 0x2014, 0xB4) | U("start", "end")],
    [cps(0xD7), cps(0xB2, 0xB3)],
    # Windows-1252 mojibake of Arabic: four characters
    [cps(0xD8, 0xD9), U("common", "currency", "bad", "numeric", "start") |
     cps(0x178, 0x160, 0xAE, 0xB0, 0xB5, 0xBB), cps(0xD8, 0xD9),
     U("common", "currency", "bad", "numeric", "start") | cps(0x178, 0x160, 0xAE, 0xB0, 0xB5,
                                                               0xBB)],
    # Windows-1252 mojibake of some South Asian scripts
    [cps(0xE0), cps(0xB2, 0xB5, 0xB9, 0xBC, 0xBD, 0xBE)],
    # MacRoman mojibake
    [cps(0x221A), cps(0xB1, 0x2202, 0x2020, 0x2260, 0xAE, 0x2122, 0xB4, 0x2264, 0x2265, 0xA5,
                      0xB5, 0xF8)],
    [cps(0x2248), cps(0xB0, 0xA2)],
    [cps(0x201A), cps(0xC4), cps(0xEC, 0xEE, 0xEF, 0xF2, 0xF4, 0xFA, 0xF9, 0xFB, 0x2020, 0xB0,
                                 0xA2, 0x3C0)],
    [cps(0x201A), cps(0xE2, 0xF3), cps(0xE0, 0xE4, 0xB0, 0xEA)],
    # Windows-1251 mojibake of U+2000-U+206F
    [cps(0x432), cps(0x402)],
    # Windows-1251 mojibake of Latin-1 or Cyrillic: three characters
    [cps(0x412, 0x413, 0x420, 0x421), U("c1", "bad", "start", "end", "currency") |
     cps(0xB0, 0xB5), cps(0x412, 0x413, 0x420, 0x421)],
    # Windows-1251 over Latin-1 over Windows-1252, near a Latin letter
    [cps(0x413), cps(0x45E), cps(0x412), cps(0x402), cps(0x412), ANY, AZ | cps(0x20)],
    # Windows-1252 encodings of a-grave, a-acute and A0 itself
    [cps(0xC3), cps(0xA0, 0xA1)],
    [LOWER_AZ, Opt(SPACE), cps(0xC3, 0xC2), cps(0x20)],
    ["^", cps(0xC3, 0xC2), cps(0x20)],
    # A-circumflex standing before the very character it encodes
    [LOWER_AZ | cps(".,?!") | U("end"), cps(0xC2), cps(0x20) | U("start", "end")],
    # Windows-1253 mojibake of U+2000-U+206F
    [cps(0x3B2), cps(0x20AC), cps(0x2122, 0xA0, 0x386, 0xAD, 0xAE, 0xB0)],
    # Windows-1253 mojibake of Latin-1 or Greek: three characters
    [cps(0x392, 0x393, 0x39E, 0x39F), U("c1", "bad", "start", "end", "currency") | cps(0xB0),
     cps(0x392, 0x393, 0x39E, 0x39F)],
    # Windows-1257 mojibake of U+2000-U+206F
    [cps(0x101), cps(0x20AC)],
]

# The UTF-8 detector's classes: characters that the single-byte codecs ftfy
# thinks plausible turn UTF-8 lead and continuation bytes into.
CLUE_CODECS = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257"]


def decoded(byte_values):
    out = set()
    for codec in CLUE_CODECS:
        for b in byte_values:
            try:
                out.add(ord(bytes([b]).decode(codec)))
            except UnicodeDecodeError:
                pass
    return frozenset(out)


FIRST_OF_2 = decoded(range(0xC2, 0xE0))
FIRST_OF_3 = decoded(range(0xE0, 0xF0))
FIRST_OF_4 = decoded([0xF0, 0xF3])  # F1, F2, F4 lead to unassigned planes
# A space may stand for a lost A0.
CONTINUATION = decoded(range(0x80, 0xC0)) | cps((0x80, 0xBF), 0x20)
# Characters that look like punctuation on their own do not count when
# looking behind a match.
CONTINUATION_STRICT = CONTINUATION - cps(0x20, (0x2013, 0x2015), 0x2018, 0x2019, 0x201A,
                                         0x201C, 0x201D, 0x201E, 0x2022, 0x2026)


def wrap(items, per_line=10):
    lines = [", ".join(items[k:k + per_line]) for k in range(0, len(items), per_line)]
    return "\n    " + ",\n    ".join(lines) + ",\n"


def main():
    out = sys.stdout
    w = out.write
    w("/* mojibake_tables.c - generated by tools/gen_mojibake_tables.py (codecs of\n"
      " * Python %s); do not edit.\n *\n"
      " * Covers: the single-byte codecs of ftfy's fix_encoding, and the character\n"
      " * classes and patterns of its mojibake heuristic and UTF-8 detector. Leaves\n"
      " * out: the logic, which is in mojibake.c. */\n" %
      sys.version.split()[0])
    w('#include "mojibake_tables.h"\n\n/* clang-format off */\n')

    for i, (name, codec, sloppy) in enumerate(CODECS):
        dec = decode_table(codec, sloppy)
        pairs = sorted((cp, b) for b, cp in enumerate(dec) if cp != b)
        if not pairs:
            continue
        w("static const uint16_t kEnc%d[] = {%s};\n" % (i, wrap(["0x%04X" % p[0] for p in pairs])))
        w("static const uint8_t kEncByte%d[] = {%s};\n" % (i, wrap(["0x%02X" % p[1] for p in pairs])))
    w("\nconst cs_mj_codec cs_mj_codecs[] = {\n")
    for i, (name, codec, sloppy) in enumerate(CODECS):
        dec = decode_table(codec, sloppy)
        n = sum(1 for b, cp in enumerate(dec) if cp != b)
        w('    {"%s", %d, %d,\n     {' % (name, int(sloppy), int(name == "macroman")))
        for k in range(0, 256, 8):
            if k:
                w("\n      ")
            w(", ".join("0x%04X" % c for c in dec[k:k + 8]) + ",")
        if n:
            w("},\n     kEnc%d, kEncByte%d, %d},\n" % (i, i, n))
        else:
            w("},\n     NULL, NULL, 0},\n")
    w("};\nconst size_t cs_mj_n_codecs = %d;\n\n" % len(CODECS))

    # Every distinct set gets a bit.
    sets = []

    def set_id(s):
        if s not in sets:
            sets.append(s)
        return sets.index(s)

    clue_ids = [set_id(s) for s in (FIRST_OF_2, FIRST_OF_3, FIRST_OF_4, CONTINUATION,
                                    CONTINUATION_STRICT)]
    specials = {SPACE: 0x100, WORD: 0x101, ANY: 0x102, NOT_AZ: 0x103}
    rows = []
    for p in PATTERNS:
        at_start = p[0] == "^"
        atoms = []
        for a in p[1:] if at_start else p:
            flag = 0
            if isinstance(a, Opt):
                flag, a = 0x8000, a.atom
            atoms.append((specials[a] if isinstance(a, str) else set_id(a)) | flag)
        assert len(atoms) <= 8
        rows.append((int(at_start), atoms))
    assert len(sets) <= 128, len(sets)

    masks = {}
    for k, s in enumerate(sets):
        for cp in s:
            masks[cp] = masks.get(cp, 0) | (1 << k)
    w("const cs_mj_class cs_mj_classes[] = {\n")
    for cp in sorted(masks):
        m = masks[cp]
        w("    {0x%04X, {0x%016XULL, 0x%016XULL}},\n" % (cp, m & (2**64 - 1), m >> 64))
    w("};\nconst size_t cs_mj_n_classes = %d;\n\n" % len(masks))
    w("const int cs_mj_set_first_of_2 = %d, cs_mj_set_first_of_3 = %d, cs_mj_set_first_of_4 = %d,\n"
      "          cs_mj_set_continuation = %d, cs_mj_set_continuation_strict = %d;\n\n" %
      tuple(clue_ids))
    w("const cs_mj_pattern cs_mj_patterns[] = {\n")
    for at_start, atoms in rows:
        w("    {%d, %d, {%s}},\n" % (at_start, len(atoms), ", ".join("0x%X" % a for a in atoms)))
    w("};\nconst size_t cs_mj_n_patterns = %d;\n" % len(rows))


if __name__ == "__main__":
    main()
