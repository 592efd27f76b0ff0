"""bpe.py - CLIP's byte-level BPE, in plain Python, for the benchmark.

Used by the PyTorch baseline (ids padded to the 77-token context, as
clip.tokenize gives them) and by modelgen.py to build a synthetic vocabulary
when the real one is not at hand. ftfy is not in Debian's python3 packages;
the benchmark's captions are plain ASCII, where ftfy changes nothing.
"""
import html
import json

try:  # python3-regex knows \p{L} / \p{N}; the re fallback is exact for ASCII text
    import regex as _re
    _PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
                r"|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+")
except ImportError:
    import re as _re
    _PATTERN = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d"
                r"|[^\W\d_]+|\d|[^\s\w]+|_+")

SOT, EOT = "<|startoftext|>", "<|endoftext|>"


def byte_symbols():
    """Byte -> printable character, as CLIP maps them: printable Latin-1
    bytes stand for themselves, the rest take code points from 256 up in
    byte order. Returned as a list in CLIP's vocabulary order."""
    keep = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    moved = [b for b in range(256) if b not in keep]
    order = keep + moved
    sym = {b: chr(b) for b in keep}
    sym.update({b: chr(256 + i) for i, b in enumerate(moved)})
    return order, sym


def word_pieces(word_syms, ranks):
    """Greedy BPE of one word (a list of symbols, the last marked with
    </w>): merge the best-ranked adjacent pair everywhere, until none is known."""
    parts = list(word_syms)
    while len(parts) > 1:
        best, best_rank = None, None
        for pair in zip(parts, parts[1:]):
            r = ranks.get(pair)
            if r is not None and (best_rank is None or r < best_rank):
                best, best_rank = pair, r
        if best is None:
            break
        merged, i = [], 0
        while i < len(parts):
            if i + 1 < len(parts) and (parts[i], parts[i + 1]) == best:
                merged.append(parts[i] + parts[i + 1])
                i += 2
            else:
                merged.append(parts[i])
                i += 1
        parts = merged
    return parts


def clean(text):
    # What CLIP does after ftfy: unescape HTML twice, collapse whitespace, lowercase.
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class Tokenizer:
    def __init__(self, vocab_json, merges_txt):
        with open(vocab_json, encoding="utf-8") as f:
            self.vocab = json.load(f)
        self.ranks = {}
        with open(merges_txt, encoding="utf-8") as f:
            for line in f:
                if line.startswith("#version"):
                    continue
                pair = line.split()
                if len(pair) == 2:
                    self.ranks.setdefault(tuple(pair), len(self.ranks))
        _, self.sym = byte_symbols()
        self.split = _re.compile(_PATTERN, _re.IGNORECASE)
        self.sot, self.eot = self.vocab[SOT], self.vocab[EOT]
        self.cache = {}

    def encode(self, text):
        """BPE ids of text, without start/end tokens."""
        ids = []
        for tok in self.split.findall(clean(text)):
            pieces = self.cache.get(tok)
            if pieces is None:
                syms = [self.sym[b] for b in tok.encode("utf-8")]
                syms[-1] += "</w>"
                pieces = [self.vocab[p] for p in word_pieces(syms, self.ranks)]
                self.cache[tok] = pieces
            ids.extend(pieces)
        return ids

    def tokenize(self, text, context=77, pad=True):
        """Like clip.tokenize(truncate=True): start, ids, end; cut to the
        context with the end token kept last; zero-padded when pad."""
        ids = [self.sot] + self.encode(text) + [self.eot]
        if len(ids) > context:
            ids = ids[:context]
            ids[-1] = self.eot
        if pad:
            ids += [0] * (context - len(ids))
        return ids
