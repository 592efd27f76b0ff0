#!/usr/bin/env python3
"""make_corpus.py - builds each fuzz harness's seed corpus (standard library only).

Covers: for every harness a folder OUT/<harness>/ of small valid and
near-valid inputs, taken from what the project ships or its tests make
(assets/example CSV and JPEGs, captions, the tiny test model's files written
by make_tiny_model) plus inputs generated here (PNG/BMP/GIF/TGA/PNM/PSD/HDR
and a DC-only baseline JPEG encoder, safetensors files, CSV edge cases,
.npy writer programs); and, when the shared conformance fixtures exist, their
images and captions. Large files are left out (--max-bytes): fuzzing wants
small seeds. The corpora are generated, never committed: they go under the
build folder.

usage: make_corpus.py --out DIR [--tiny-model PROGRAM] [--conformance DIR] [--max-bytes N]
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
import gzip
import io
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HARNESSES = ["csv", "tokenizer", "vocab", "safetensors", "image", "npy", "model_config", "tar"]


class Corpus:
    def __init__(self, out):
        self.out = out
        self.count = {h: 0 for h in HARNESSES}

    def add(self, harness, name, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        d = os.path.join(self.out, harness)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        self.count[harness] += 1


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ---- CSV ------------------------------------------------------------------

CSV_CASES = {
    "basic.csv": "image,caption\na.jpg,a dog\nb.png,a cat\n",
    "crlf_bom.csv": "\ufeffImage , Caption\r\nx.jpg,\"quoted, with comma\"\r\n",
    "quotes.csv": 'image,caption\n"a ""b"".jpg","line1\nline2"\n"say "hi" now",x\n5" screen,y\n',
    "unterminated.csv": 'image,caption\na.jpg,"never closed\nmore\n',
    "blank_lines.csv": "file,text\n\n   \n\t\nz.gif,words\n\n",
    "duplicate.csv": "image,IMAGE,caption\n1,2,3\n",
    "numbered.csv": "#2,path,prompt\n1,2,3\n",
    "cr_only.csv": "url,title\rhttp://x/y.png,t\r",
    "ragged.csv": "img,alt\n1\n1,2,3,4\n,\n",
    "empty_header.csv": ",,\n1,2\n",
    "nul.csv": "image,caption\na\x00b,c\x00\n",
    "header_only_quoted.csv": '"image"\n',
}


def csv_seeds(c, conformance):
    for name, text in CSV_CASES.items():
        c.add("csv", name, text)
    c.add("csv", "pairs.csv", read(os.path.join(ROOT, "assets", "example", "pairs.csv")))
    if conformance:
        inputs = os.path.join(conformance, "inputs")
        for dirpath, _, files in os.walk(inputs):
            for fn in sorted(files):
                if fn.endswith(".csv"):
                    p = os.path.join(dirpath, fn)
                    if os.path.getsize(p) <= 65536:
                        c.add("csv", "conf_" + os.path.relpath(p, inputs).replace("/", "_"), read(p))


# ---- captions -------------------------------------------------------------

CAPTIONS = [
    "a photo of a dog", "the cat's café!!", "It’s the dog’s “favourite” toy",
    "ﬁsh and ﬂowers", "Ｆｕｌｌｗｉｄｔｈ １２３", "Tom &amp; Jerry &lt;3 &amp;amp;",
    "&#x41;&#65;&eacute;&notanentity;&amp", "  leading\tand \u3000 trailing  ",
    "<|startoftext|>x<|endoftext|> <|ENDOFTEXT|>", "I'm sure they'll say you've done it",
    "emoji 🐶🐱🚀 party", "日本語のキャプション", "Привет, мир", "مرحبا", "e\u0301\u0345",
    "a" * 100, "aaaaaaaa " * 20, "bad utf8 \xff\xfe",  # replaced below
    "ſ's LONG S 'S", "1234567890", "\x01\x02control\x7f\u200b", "x" * 300,
]


def caption_seeds(c, conformance):
    for i, cap in enumerate(CAPTIONS):
        data = cap.encode("utf-8")
        if "bad utf8" in cap:
            data = b"bad utf8 \xff\xfe \xc3( \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80"
        c.add("tokenizer", "cap%02d.txt" % i, data)
    with open(os.path.join(ROOT, "assets", "example", "pairs.csv"), encoding="utf-8") as f:
        for i, line in enumerate(f.read().splitlines()[1:]):
            parts = line.split(",")
            if len(parts) >= 3:
                c.add("tokenizer", "example%02d.txt" % i, parts[2])
    if conformance:
        p = os.path.join(conformance, "captions.jsonl")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                for i, line in enumerate(f):
                    line = line.strip()
                    if line:
                        try:
                            c.add("tokenizer", "conf%03d.txt" % i, json.loads(line))
                        except (ValueError, UnicodeEncodeError):
                            pass


# ---- vocabularies ---------------------------------------------------------

def byte_alphabet():
    """GPT-2's bytes_to_unicode, and the reference's vocabulary order."""
    printable = [b for b in range(256) if 33 <= b <= 126 or 0xA1 <= b <= 0xAC or b >= 0xAE]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    order = printable + [b for b in range(256) if b not in printable]
    return chars, order


SYNTH_MERGES = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("an", "d</w>"), ("d", "o"),
                ("do", "g</w>"), ("a", "a"), ("aa", "aa"), ("aaaa", "aaaa"), ("Ã", "©")]


def synth_vocab(merges=SYNTH_MERGES):
    chars, order = byte_alphabet()
    vocab = {}
    for b in order:
        vocab[chars[b]] = len(vocab)
    for b in order:
        vocab[chars[b] + "</w>"] = len(vocab)
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    text = "#version: 0.2\n" + "".join("%s %s\n" % m for m in merges)
    return json.dumps(vocab, ensure_ascii=False).encode("utf-8"), text.encode("utf-8")


def vocab_input_hf(vocab, merges):
    vocab = vocab[:65535]
    return b"\x00" + struct.pack("<H", len(vocab)) + vocab + merges


def vocab_seeds(c, tiny_dir):
    v, m = synth_vocab()
    c.add("vocab", "hf_synth", vocab_input_hf(v, m))
    c.add("vocab", "hf_unordered", vocab_input_hf(*synth_vocab(SYNTH_MERGES[::-1])))
    c.add("vocab", "hf_unknown_token", vocab_input_hf(v, m + b"zz qq\n"))
    c.add("vocab", "hf_bad_id", vocab_input_hf(v.replace(b'"a": ', b'"a": -'), m))
    c.add("vocab", "hf_not_object", vocab_input_hf(b"[1, 2]", m))
    openai = b'"bpe_simple_vocab_16e6.txt#version: 0.2\n' + m.split(b"\n", 1)[1]
    c.add("vocab", "gz_text", b"\x01" + openai)
    c.add("vocab", "gz_text_no_final_newline", b"\x01" + openai.rstrip(b"\n"))
    c.add("vocab", "gz_text_bad_line", b"\x01" + openai + b"one two three\n")
    c.add("vocab", "gz_raw", b"\x02" + gzip.compress(openai))
    c.add("vocab", "gz_raw_truncated", b"\x02" + gzip.compress(openai)[:-9])
    if tiny_dir:
        vp, mp = os.path.join(tiny_dir, "vocab.json"), os.path.join(tiny_dir, "merges.txt")
        if os.path.exists(vp) and os.path.exists(mp) and os.path.getsize(vp) < 65536:
            c.add("vocab", "hf_tiny_model", vocab_input_hf(read(vp), read(mp)))


# ---- safetensors ----------------------------------------------------------

def safetensors(tensors, metadata=None, pad_to=8, raw_header=None):
    """tensors: [(name, dtype, shape, bytes)]; data packed in order."""
    header, off, data = {}, 0, b""
    for name, dtype, shape, blob in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        data += blob
    if metadata is not None:
        header["__metadata__"] = metadata
    h = raw_header if raw_header is not None else json.dumps(header).encode("utf-8")
    if pad_to:
        h += b" " * (-(8 + len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds(c, tiny_dir):
    f32 = struct.pack("<6f", 0, 1, -1, 0.5, 1e30, float("nan"))
    c.add("safetensors", "f32.safetensors", safetensors([("w", "F32", [2, 3], f32)]))
    c.add("safetensors", "all_dtypes.safetensors", safetensors([
        ("a.f16", "F16", [2], b"\x00\x3c\x00\xbc"), ("b.bf16", "BF16", [1], b"\x80\x3f"),
        ("c.f64", "F64", [1], struct.pack("<d", 2.5)), ("d.i64", "I64", [1], struct.pack("<q", -7)),
        ("e.i32", "I32", [1], struct.pack("<i", 9)), ("f.i16", "I16", [1], b"\x01\x00"),
        ("g.i8", "I8", [2], b"\x7f\x80"), ("h.u8", "U8", [1], b"\xff"), ("i.bool", "BOOL", [1], b"\x01"),
    ], metadata={"format": "pt"}))
    c.add("safetensors", "scalar_empty.safetensors", safetensors([
        ("s", "F32", [], struct.pack("<f", 3)), ("z", "F32", [0, 4], b"")]))
    c.add("safetensors", "unaligned.safetensors", safetensors(
        [("x", "U8", [3], b"abc"), ("y", "F32", [1], struct.pack("<f", 1))], pad_to=0))
    c.add("safetensors", "unsupported.safetensors", safetensors([("u", "U16", [1], b"\x01\x00")]))
    c.add("safetensors", "overlap.safetensors", struct.pack("<Q", 80) + (
        b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
        b'"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}').ljust(80) + b"xyz")
    c.add("safetensors", "empty_header.safetensors", safetensors([]))
    c.add("safetensors", "bad_len.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    c.add("safetensors", "metadata_nonstring.safetensors",
          safetensors([("w", "U8", [1], b"x")], metadata={"k": 1}))
    if tiny_dir:
        for fn in ("model.safetensors", "open_clip_model.safetensors"):
            p = os.path.join(tiny_dir, fn)
            if os.path.exists(p) and os.path.getsize(p) <= 4 << 20:
                c.add("safetensors", "tiny_" + fn, read(p))


# ---- images ---------------------------------------------------------------

def png(w, h, color_type, rows, depth=8, palette=None, trns=None):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + r for r in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    if trns:
        out += chunk(b"tRNS", trns)
    return out + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bmp(w, h, bpp, pixels_rows, palette=b""):
    rowlen = (w * bpp + 31) // 32 * 4
    data = b"".join(r.ljust(rowlen, b"\x00") for r in reversed(pixels_rows))
    off = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, bpp, 0, len(data), 2835, 2835,
                       len(palette) // 4, 0)
    return b"BM" + struct.pack("<IHHI", off + len(data), 0, 0, off) + info + palette + data


def gif(w, h, indices, palette, bits_per=2, interlace=False):
    """Uncompressed-style LZW: a clear code every two pixels keeps the code width
    (bits_per + 1, the LZW minimum code size plus one) fixed."""
    clear, end = 1 << bits_per, (1 << bits_per) + 1
    codes = []
    for i in range(0, len(indices), 2):
        codes.append(clear)
        codes.extend(indices[i:i + 2])
    codes.append(end)
    acc, nbits, out = 0, 0, bytearray()
    for code in codes:
        acc |= code << nbits
        nbits += bits_per + 1
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = b"".join(bytes([len(out[i:i + 255])]) + bytes(out[i:i + 255]) for i in range(0, len(out), 255))
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80 | 0x01, 0, 0) + palette.ljust(12, b"\x00")
            + b"!\xf9\x04\x01\x00\x00\x02\x00"  # graphic control: transparent index 2
            + b"," + struct.pack("<HHHHB", 0, 0, w, h, 0x40 if interlace else 0) + bytes([bits_per])
            + blocks + b"\x00;")


def tga(w, h, image_type, bpp, data):
    return struct.pack("<BBBHHBHHHHBB", 0, 0, image_type, 0, 0, 0, 0, 0, w, h, bpp, 0x20) + data


def psd(w, h, planes):
    return (b"8BPS" + struct.pack(">H6xHIIHH", 1, len(planes), h, w, 8, 3)
            + struct.pack(">III", 0, 0, 0) + struct.pack(">H", 0) + b"".join(planes))


def jpeg(w, h, comps):
    """Baseline JPEG with only DC coefficients (each 8x8 block flat).
    comps: one list of per-block gray levels per component (blocks row-major);
    w and h multiples of 8, no subsampling, quantisation all ones."""
    def seg(marker, body):
        return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body
    nc = len(comps)
    out = b"\xff\xd8" + seg(0xDB, b"\x00" + b"\x01" * 64)
    out += seg(0xC0, struct.pack(">BHHB", 8, h, w, nc) + b"".join(bytes([i + 1, 0x11, 0]) for i in range(nc)))
    dc_bits = [0, 0, 0, 12] + [0] * 12  # twelve 4-bit codes: category k is code k
    out += seg(0xC4, b"\x00" + bytes(dc_bits) + bytes(range(12)))
    out += seg(0xC4, b"\x10" + bytes([0, 1] + [0] * 14) + b"\x00")  # EOB is code 00
    out += seg(0xDA, bytes([nc]) + b"".join(bytes([i + 1, 0x00]) for i in range(nc)) + b"\x00\x3f\x00")
    bits = []

    def put(value, n):
        bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))
    pred = [0] * nc
    for blk in range(len(comps[0])):
        for ci in range(nc):
            dc = 8 * (comps[ci][blk] - 128)
            diff, pred[ci] = dc - pred[ci], dc
            cat = abs(diff).bit_length()
            put(cat, 4)
            if cat:
                put(diff if diff >= 0 else (diff - 1) & ((1 << cat) - 1), cat)
            put(0, 2)
    bits.extend([1] * (-len(bits) % 8))
    data = bytearray()
    for i in range(0, len(bits), 8):
        byte = int("".join(map(str, bits[i:i + 8])), 2)
        data.append(byte)
        if byte == 0xFF:
            data.append(0)
    return out + bytes(data) + b"\xff\xd9"


def bgr(row):
    return b"".join(bytes(reversed(row[i:i + 3])) for i in range(0, len(row), 3))


def image_seeds(c, conformance, max_bytes):
    w, h = 5, 3
    gray = [bytes((x * 40 + y * 20) % 256 for x in range(w)) for y in range(h)]
    rgb = [bytes(v for x in range(w) for v in (x * 50, y * 80, 200)) for y in range(h)]
    rgba = [bytes(v for x in range(w) for v in (x * 50, y * 80, 9, x * 60)) for y in range(h)]
    ga = [bytes(v for x in range(w) for v in (x * 50, 255 - y * 80)) for y in range(h)]
    c.add("image", "gray.png", png(w, h, 0, gray))
    c.add("image", "rgb.png", png(w, h, 2, rgb))
    c.add("image", "rgba.png", png(w, h, 6, rgba))
    c.add("image", "gray_alpha.png", png(w, h, 4, ga))
    c.add("image", "rgb16.png", png(2, 2, 2, [b"\x01\x02" * 6] * 2, depth=16))
    c.add("image", "bits1.png", png(9, 2, 0, [b"\xaa\x80", b"\x55\x00"], depth=1))
    c.add("image", "palette.png", png(4, 2, 3, [b"\x00\x01\x02\x01", b"\x02\x02\x00\x00"],
                                      palette=b"\xff\x00\x00\x00\xff\x00\x00\x00\xff", trns=b"\x80"))
    c.add("image", "tall.png", png(1, 40, 0, [b"\x10"] * 40))
    c.add("image", "rgb24.bmp", bmp(w, h, 24, [bgr(r) for r in rgb]))
    c.add("image", "pal8.bmp", bmp(3, 2, 8, [b"\x00\x01\x02", b"\x02\x01\x00"],
                                   palette=b"\x00\x00\xff\x00\x00\xff\x00\x00\xff\x00\x00\x00"))
    c.add("image", "rgb32.bmp", bmp(2, 2, 32, [b"\x01\x02\x03\x04" * 2] * 2))
    c.add("image", "four.gif", gif(2, 2, [0, 1, 2, 3], b"\x00\x00\x00\xff\xff\xff\xff\x00\x00\x00\xff\x00"))
    # LZW minimum code size 11 (indices past 255, as issue_2811.gif) and interlace.
    c.add("image", "wide-codes.gif", gif(2, 2, [0x101, 0x7FE, 3, 2], b"\x00\x00\x00\xff\xff\xff", 11))
    c.add("image", "interlaced.gif", gif(2, 5, list(range(10)), b"\x10\x20\x30", 4, True))
    c.add("image", "rgb.tga", tga(2, 2, 2, 24, b"\x01\x02\x03" * 4))
    c.add("image", "rle.tga", tga(4, 1, 10, 24, b"\x83\x10\x20\x30"))
    c.add("image", "gray.tga", tga(2, 2, 3, 8, b"\x00\x40\x80\xff"))
    c.add("image", "rgb.ppm", b"P6\n# comment\n3 2\n255\n" + bytes(range(18)))
    c.add("image", "gray.pgm", b"P5 2 2 255\n\x00\x40\x80\xff")
    c.add("image", "gray16.pgm", b"P5\n2 1\n65535\n\x12\x34\xff\xff")
    c.add("image", "rgb.psd", psd(2, 2, [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", b"\x09\x0a\x0b\x0c"]))
    c.add("image", "flat.hdr", b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n" + b"\x80\x40\x20\x81" * 4)
    c.add("image", "gray.jpg", jpeg(16, 16, [[0, 64, 200, 255]]))
    c.add("image", "color.jpg", jpeg(16, 8, [[30, 220], [128, 10], [250, 128]]))
    # Formats that are sniffed and refused, and things that are not images.
    c.add("image", "tiff.tif", b"II*\x00\x08\x00\x00\x00" + b"\x00" * 16)
    c.add("image", "webp.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8 " + b"\x00" * 14)
    c.add("image", "avif.avif", b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf")
    c.add("image", "html.txt", b"<!DOCTYPE html><html><body>404</body></html>")
    examples = os.path.join(ROOT, "assets", "example", "images")
    dirs = [examples] + ([os.path.join(conformance, "images"), os.path.join(conformance, "inputs", "images")]
                         if conformance else [])
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for fn in sorted(os.listdir(d)):
            p = os.path.join(d, fn)
            if os.path.isfile(p) and os.path.getsize(p) <= max_bytes:
                c.add("image", ("conf_" if d != examples else "example_") + fn, read(p))


# ---- model configuration files ---------------------------------------------

def config_input(first_kind, first, second_kind=None, second=None, big=False):
    """The harness's input: a selector byte, then one or two files split by NUL."""
    kinds = first_kind + 3 * (second_kind if second_kind is not None else 0)
    sel = bytes([kinds | (0x80 if big else 0)])
    body = first if isinstance(first, bytes) else first.encode()
    if second is not None:
        body += b"\0" + (second if isinstance(second, bytes) else second.encode())
    return sel + body


HF, PRE, OC = 0, 1, 2


def config_seeds(c, tiny_dir, conformance):
    tiny_hf = read(os.path.join(tiny_dir, "config.json")) if tiny_dir else None
    pre = json.dumps({"crop_size": 32, "image_mean": [0.48, 0.45, 0.40],
                      "image_std": [0.26, 0.26, 0.27], "size": {"shortest_edge": 32}})
    if tiny_hf:
        c.add("model_config", "tiny-hf", config_input(HF, tiny_hf))
        c.add("model_config", "tiny-hf+pre", config_input(HF, tiny_hf, PRE, pre))
    c.add("model_config", "pre", config_input(PRE, pre))
    oc = {"embed_dim": 32, "quick_gelu": True,
          "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                         "head_width": 32, "mlp_ratio": 4.0},
          "text_cfg": {"context_length": 16, "vocab_size": 537, "width": 64, "heads": 2,
                       "layers": 2}}
    c.add("model_config", "tiny-openclip",
          config_input(OC, json.dumps({"model_cfg": oc, "preprocess_cfg": {"mean": [0.5] * 3,
                                                                           "std": [0.25] * 3}})))
    b32 = {"projection_dim": 512,
           "vision_config": {"hidden_size": 768, "num_hidden_layers": 12, "patch_size": 32,
                             "image_size": 224, "num_attention_heads": 12,
                             "intermediate_size": 3072, "hidden_act": "quick_gelu"},
           "text_config": {"hidden_size": 512, "num_hidden_layers": 12, "vocab_size": 49408,
                           "max_position_embeddings": 77, "num_attention_heads": 8,
                           "intermediate_size": 2048, "layer_norm_eps": 1e-5}}
    c.add("model_config", "b32-hf", config_input(HF, json.dumps(b32), big=True))
    c.add("model_config", "broken-std", config_input(PRE, '{"image_std": [0, 0, 0]}'))
    c.add("model_config", "heads-1e30", config_input(HF, '{"vision_config": {"num_attention_heads": 1e30}}'))
    if conformance:
        for layout in sorted(os.listdir(conformance)):
            for name, kind in (("config.json", HF), ("preprocessor_config.json", PRE),
                               ("open_clip_config.json", OC)):
                p = os.path.join(conformance, layout, name)
                if os.path.isfile(p):
                    c.add("model_config", "conf-%s-%s" % (layout, name), config_input(kind, read(p)))


# ---- .npy writer programs -------------------------------------------------

def npy_seeds(c):
    floats = struct.pack("<8f", 0, 1, -2.5, float("inf"), float("nan"), 1e-40, 3, 4)
    c.add("npy", "whole_2x3", bytes([0, 2 + 2, 2, 3]) + floats)
    c.add("npy", "whole_1d", bytes([0, 1 + 2, 5]) + floats)
    c.add("npy", "whole_scalar", bytes([0, 0 + 2]) + floats)
    c.add("npy", "whole_negative", bytes([0, 2 + 2, 0xF0, 2]) + floats)
    c.add("npy", "whole_overflow", bytes([0, 3 + 2, 0xF2, 0xF2, 0xF2]) + floats)
    c.add("npy", "whole_zero_huge", bytes([0, 2 + 2, 0, 0xF2]) + floats)
    c.add("npy", "whole_32dims", bytes([0, 32 + 2]) + b"\x01" * 32 + floats)
    c.add("npy", "whole_33dims", bytes([0, 33 + 2]) + b"\x01" * 33 + floats)
    c.add("npy", "stream_rows", bytes([1, 1 + 1, 2, 1 << 2, 2 << 2, 3 | 4]) + floats)
    c.add("npy", "stream_4d", bytes([1, 3 + 1, 1, 2, 1, 1 << 2, 1 << 2, 3 | 4]) + floats)
    c.add("npy", "stream_abort", bytes([1, 1 + 1, 2, 1 << 2, 3]) + floats)
    c.add("npy", "stream_bad_counts", bytes([1, 1 + 1, 2, 2, 2 | 4, 3 | 4]) + floats)
    c.add("npy", "stream_huge_row", bytes([1, 2 + 1, 0xF2, 0xF3, 0, 3 | 4]) + floats)


# ---- webdataset tars -------------------------------------------------------

def tar_bytes(members, fmt=tarfile.PAX_FORMAT, mode="w"):
    """A tar of (name, data) members (data None: a folder; "->x": a symlink;
    "=>x": a hard link), its record padding cut to the two end blocks so that
    seeds stay under the fuzzer's max_len."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif isinstance(data, str) and data.startswith("->"):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[2:]
                tf.addfile(ti)
            elif isinstance(data, str) and data.startswith("=>"):
                ti.type, ti.linkname = tarfile.LNKTYPE, data[2:]
                tf.addfile(ti)
            else:
                if isinstance(data, str):
                    data = data.encode("utf-8")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    out = buf.getvalue()
    if mode == "w":
        core = len(out.rstrip(b"\0"))
        out = out[:(core + 511) // 512 * 512 + 1024]
    return out


def tar_seeds(c):
    jpeg_like = b"\xff\xd8\xff\xe0" + bytes(range(40)) + b"\xff\xd9"
    basic = [
        ("00000", None),
        ("00000/000000001.jpg", jpeg_like),
        ("00000/000000001.txt", "a dog catching a frisbee\n"),
        ("00000/000000001.json", '{"url": "http://example.com/1.jpg", "width": 64}'),
        ("00000/000000002.png", b"\x89PNG\r\n\x1a\n"),
        ("00000/000000002.txt", "two lines\r\n"),
    ]
    c.add("tar", "basic.tar", tar_bytes(basic))
    c.add("tar", "basic.tar.gz", tar_bytes(basic, mode="w:gz"))
    c.add("tar", "basic.tar.bz2", tar_bytes(basic, mode="w:bz2"))
    c.add("tar", "basic.tar.xz", tar_bytes(basic, mode="w:xz"))
    c.add("tar", "ustar.tar", tar_bytes(basic, fmt=tarfile.USTAR_FORMAT))
    long_dir = "shard-" + "d" * 120
    c.add("tar", "gnu_long_names.tar", tar_bytes([
        (long_dir + "/k.jpg", b"J"), (long_dir + "/k.txt", "long"),
        ("x" * 150 + ".jpg", b"J2"), ("x" * 150 + ".txt", "t2")], fmt=tarfile.GNU_FORMAT))
    c.add("tar", "pax_utf8.tar", tar_bytes([
        ("café/ünïcode.jpg", b"J"), ("café/ünïcode.TXT", "ça va"), ("café/ünïcode.json", '{"url": 5}')]))
    c.add("tar", "edge_members.tar", tar_bytes([
        ("__key__", "k"), (".hidden.jpg", b"H"), ("noext", "x"), ("a/b.c/x.y.jpg", b"D"),
        ("a/b.c/x.txt", "dotted"), ("dup.jpg", b"1"), ("dup.txt", "one"), ("dup.txt", "two"),
        ("l.jpg", "->dup.jpg"), ("h.jpg", "=>dup.jpg"), ("h.txt", "hard link"), ("e.", ""),
        ("only.json", "[1, 2]"), ("UP.JPEG", b"U"), ("UP.Txt", "upper\n\n")]))
    c.add("tar", "empty_members.tar", tar_bytes([("z.jpg", b""), ("z.txt", "")]))
    c.add("tar", "end_only.tar", b"\0" * 1024)
    whole = tar_bytes(basic)
    c.add("tar", "truncated_member.tar", whole[:512 * 3 + 20])
    c.add("tar", "truncated_header.tar", whole[:512 * 2 + 100])
    c.add("tar", "truncated.tar.gz", tar_bytes(basic, mode="w:gz")[:-30])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--tiny-model", help="make_tiny_model program (its files become seeds)")
    ap.add_argument("--conformance", help="shared conformance folder (used when it exists)")
    ap.add_argument("--max-bytes", type=int, default=1 << 20, help="largest image seed")
    a = ap.parse_args()
    conformance = a.conformance if a.conformance and os.path.isdir(a.conformance) else None
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    c = Corpus(a.out)
    with tempfile.TemporaryDirectory() as tmp:
        tiny_dir = None
        if a.tiny_model:
            tiny_dir = os.path.join(tmp, "tiny")
            r = subprocess.run([a.tiny_model, tiny_dir, "hf"], capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit("make_corpus: %s failed: %s" % (a.tiny_model, r.stderr.strip()))
        csv_seeds(c, conformance)
        caption_seeds(c, conformance)
        vocab_seeds(c, tiny_dir)
        safetensors_seeds(c, tiny_dir)
        image_seeds(c, conformance, a.max_bytes)
        npy_seeds(c)
        config_seeds(c, tiny_dir, conformance)
        tar_seeds(c)
    print("make_corpus: " + ", ".join("%s %d" % kv for kv in c.count.items())
          + (" (with conformance fixtures)" if conformance else ""))
    empty = [h for h, n in c.count.items() if n == 0]
    if empty:
        sys.exit("make_corpus: no seeds for " + ", ".join(empty))


if __name__ == "__main__":
    main()
