"""modelgen.py - the benchmark's inputs: a randomly initialised CLIP folder
(open_clip layout, OpenAI tensor names, F32 safetensors), its tokenizer
files, JPEG images and caption CSVs. Deterministic: the same seed gives the
same files, so they are cached under bench/work/ and reused.

numpy + Pillow only (no torch), so the driver stays light.
"""
import collections
import json
import os
import shutil

import numpy as np

import bpe

GEN_VERSION = 1  # bump when the generated files change, to invalidate caches

# ViT-B/32 exactly (OpenAI's shapes; heads = width / 64 as OpenAI derives them).
VIT_B32 = dict(embed_dim=512, image_size=224, patch_size=32, vision_width=768, vision_layers=12,
               context_length=77, vocab_size=49408, text_width=512, text_heads=8, text_layers=12)
# RN50 exactly (OpenAI's ModifiedResNet: stages [3, 4, 6, 3], width 64, attention
# pool 2048 wide with 32 heads; its text tower is ViT-B/32's, its embedding 1024).
RN50 = dict(embed_dim=1024, image_size=224, resnet_layers=[3, 4, 6, 3], vision_width=64,
            context_length=77, vocab_size=49408, text_width=512, text_heads=8, text_layers=12)
# The streaming test's fixture: real tokenizer and input size, toy widths.
TINY = dict(embed_dim=64, image_size=224, patch_size=32, vision_width=64, vision_layers=2,
            context_length=77, vocab_size=49408, text_width=64, text_heads=1, text_layers=2)

REAL_VOCAB_DIR = "/work/shared/conformance/model-hf"


# ------------------------------------------------------------------ weights

def resnet_specs(s):
    """The ResNet image tower's tensors, OpenAI naming (clip/model.py's
    ModifiedResNet): stem, bottleneck stages, attention pool. Convolutions
    get kind ("conv", fan_in), batch norms running statistics."""
    out = []

    def conv_bn(conv, bn, o, i, k):
        out.append((conv + ".weight", [o, i, k, k], ("conv", i * k * k)))
        out.extend([(bn + ".weight", [o], "one"), (bn + ".bias", [o], "zero"),
                    (bn + ".running_mean", [o], "zero"), (bn + ".running_var", [o], "one")])

    w = s["vision_width"]
    conv_bn("visual.conv1", "visual.bn1", w // 2, 3, 3)
    conv_bn("visual.conv2", "visual.bn2", w // 2, w // 2, 3)
    conv_bn("visual.conv3", "visual.bn3", w, w // 2, 3)
    inp = w
    for st, blocks in enumerate(s["resnet_layers"]):
        planes = w << st
        for b in range(blocks):
            p = f"visual.layer{st + 1}.{b}."
            bin_ = inp if b == 0 else planes * 4
            conv_bn(p + "conv1", p + "bn1", planes, bin_, 1)
            conv_bn(p + "conv2", p + "bn2", planes, planes, 3)
            conv_bn(p + "conv3", p + "bn3", planes * 4, planes, 1)
            if b == 0:
                conv_bn(p + "downsample.0", p + "downsample.1", planes * 4, bin_, 1)
        inp = planes * 4
    pool, g = 32 * w, s["image_size"] // 32
    out.append(("visual.attnpool.positional_embedding", [g * g + 1, pool], "pos"))
    for n in ("q_proj", "k_proj", "v_proj"):
        out.extend([(f"visual.attnpool.{n}.weight", [pool, pool], "w"),
                    (f"visual.attnpool.{n}.bias", [pool], "zero")])
    out.extend([("visual.attnpool.c_proj.weight", [s["embed_dim"], pool], "w"),
                ("visual.attnpool.c_proj.bias", [s["embed_dim"]], "zero")])
    return out


def tensor_specs(s):
    """(name, shape, kind) of every tensor, OpenAI naming. kind picks the init."""
    if "resnet_layers" in s:
        return resnet_specs(s) + text_specs(s)
    out = []
    vw, pt, g = s["vision_width"], s["patch_size"], s["image_size"] // s["patch_size"]
    out.extend([
        ("visual.conv1.weight", [vw, 3, pt, pt], "w"),
        ("visual.class_embedding", [vw], "w"),
        ("visual.positional_embedding", [g * g + 1, vw], "pos"),
        ("visual.ln_pre.weight", [vw], "one"), ("visual.ln_pre.bias", [vw], "zero"),
    ])
    out.extend(transformer_blocks("visual.", vw, s["vision_layers"]))
    out.extend([
        ("visual.ln_post.weight", [vw], "one"), ("visual.ln_post.bias", [vw], "zero"),
        ("visual.proj", [vw, s["embed_dim"]], "w"),
    ])
    return out + text_specs(s)


def transformer_blocks(prefix, w, layers):
    out = []
    for i in range(layers):
        p = f"{prefix}transformer.resblocks.{i}."
        out.extend([
            (p + "ln_1.weight", [w], "one"), (p + "ln_1.bias", [w], "zero"),
            (p + "attn.in_proj_weight", [3 * w, w], "w"), (p + "attn.in_proj_bias", [3 * w], "zero"),
            (p + "attn.out_proj.weight", [w, w], "w"), (p + "attn.out_proj.bias", [w], "zero"),
            (p + "ln_2.weight", [w], "one"), (p + "ln_2.bias", [w], "zero"),
            (p + "mlp.c_fc.weight", [4 * w, w], "w"), (p + "mlp.c_fc.bias", [4 * w], "zero"),
            (p + "mlp.c_proj.weight", [w, 4 * w], "w"), (p + "mlp.c_proj.bias", [w], "zero"),
        ])
    return out


def text_specs(s):
    """The text tower's tensors (the same for every CLIP here)."""
    tw = s["text_width"]
    return ([("token_embedding.weight", [s["vocab_size"], tw], "w"),
             ("positional_embedding", [s["context_length"], tw], "pos")]
            + transformer_blocks("", tw, s["text_layers"])
            + [("ln_final.weight", [tw], "one"), ("ln_final.bias", [tw], "zero"),
               ("text_projection", [tw, s["embed_dim"]], "w"), ("logit_scale", [], "logit")])


def init_tensor(rng, shape, kind):
    # Small random weights (std 0.02), unit layer norms: activations stay
    # finite through 12 layers, like a trained model's scale.
    if kind == "one":
        return np.ones(shape, np.float32)
    if kind == "zero":
        # Biases not exactly zero, so the bias paths are exercised too.
        return (rng.standard_normal(shape, dtype=np.float32) * 0.002).astype(np.float32)
    if kind == "pos":
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.01)
    if kind == "logit":
        return np.array(np.log(1 / 0.07), np.float32)
    if isinstance(kind, tuple):  # ("conv", fan_in): He init, so activations keep their scale
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / kind[1]))
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)


def write_safetensors(path, specs, seed):
    """safetensors: u64 LE header length, JSON header, raw little-endian data.
    Tensors are generated and written one at a time (150M floats for ViT-B/32)."""
    header, off = {}, 0
    for name, shape, _ in specs:
        n = 4 * int(np.prod(shape, dtype=np.int64))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {"format": "pt", "generator": "clipscore bench/modelgen.py"}
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * (-len(hj) % 8)  # data starts 8-byte aligned
    rng = np.random.default_rng(seed)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(hj).to_bytes(8, "little"))
        f.write(hj)
        for _, shape, kind in specs:
            f.write(np.ascontiguousarray(init_tensor(rng, shape, kind), "<f4").tobytes())
    os.replace(tmp, path)


def read_safetensors_header(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header, 8 + n


# ---------------------------------------------------------------- tokenizer

def synthetic_vocab(out_dir, words, size=49408):
    """A byte-level BPE vocabulary in CLIP's layout: 256 byte symbols, the same
    with </w>, learned merges for the given words, filler tokens up to the
    size, then <|startoftext|> and <|endoftext|> as the last two ids."""
    order, sym = bpe.byte_symbols()
    vocab = [sym[b] for b in order] + [sym[b] + "</w>" for b in order]
    freq = collections.Counter()
    for w in words:
        s = [sym[b] for b in w.encode()]
        s[-1] += "</w>"
        freq[tuple(s)] += 1
    merges, seen = [], set(vocab)
    while len(merges) < 4000:  # enough to cover the caption words
        pairs = collections.Counter()
        for w, c in freq.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))[0]
        merges.append(best)
        tok = best[0] + best[1]
        if tok not in seen:
            vocab.append(tok)
            seen.add(tok)
        new = collections.Counter()
        for w, c in freq.items():
            new[tuple(bpe.word_pieces(list(w), {best: 0}))] += c
        freq = new
    i = 0
    while len(vocab) < size - 2:
        vocab.append(f"<filler_{i:05d}>")
        i += 1
    vocab += [bpe.SOT, bpe.EOT]
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: k for k, t in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")


def write_model(out_dir, spec, seed, vocab_words, use_real_vocab=True):
    """Writes (or reuses) a model folder; returns a note on the vocabulary used."""
    real = use_real_vocab and all(os.path.exists(os.path.join(REAL_VOCAB_DIR, n))
                                  for n in ("vocab.json", "merges.txt"))
    stamp = dict(spec=spec, seed=seed, gen=GEN_VERSION, vocab="real" if real else "synthetic")
    stamp_path = os.path.join(out_dir, "bench_stamp.json")
    vocab_note = (f"real CLIP vocabulary (from {REAL_VOCAB_DIR})" if real
                  else "synthetic byte-level vocabulary (real one not found)")
    try:
        with open(stamp_path) as f:
            if json.load(f) == stamp:
                return vocab_note
    except (OSError, ValueError):
        pass
    os.makedirs(out_dir, exist_ok=True)
    if "resnet_layers" in spec:  # as open_clip's RN50.json
        vision = {"image_size": spec["image_size"], "layers": spec["resnet_layers"],
                  "width": spec["vision_width"], "patch_size": None}
    else:
        vision = {"image_size": spec["image_size"], "layers": spec["vision_layers"],
                  "width": spec["vision_width"], "patch_size": spec["patch_size"]}
    cfg = {"model_cfg": {
        "embed_dim": spec["embed_dim"], "quick_gelu": True,
        "vision_cfg": vision,
        "text_cfg": {"context_length": spec["context_length"], "vocab_size": spec["vocab_size"],
                     "width": spec["text_width"], "heads": spec["text_heads"],
                     "layers": spec["text_layers"]}}}
    with open(os.path.join(out_dir, "open_clip_config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    if real:
        for n in ("vocab.json", "merges.txt"):
            shutil.copyfile(os.path.join(REAL_VOCAB_DIR, n), os.path.join(out_dir, n))
    else:
        synthetic_vocab(out_dir, vocab_words, spec["vocab_size"])
    write_safetensors(os.path.join(out_dir, "open_clip_model.safetensors"), tensor_specs(spec), seed)
    with open(stamp_path, "w") as f:
        json.dump(stamp, f)
    return vocab_note


# ------------------------------------------------------------------- images

def make_image(path, index, width=640, height=480, quality=90):
    """A distinct, photo-like JPEG: a smooth random colour field, a few
    shapes, mild noise (so JPEG sizes are realistic, ~50-100 KB)."""
    from PIL import Image, ImageDraw, ImageFilter
    rng = np.random.default_rng(1000 + index)
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(field, "RGB").resize((width, height), Image.BICUBIC)
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            d.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            d.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            d.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(2, 12)))
    img = img.filter(ImageFilter.GaussianBlur(1.5))
    px = np.asarray(img, np.int16) + rng.integers(-6, 7, (height, width, 3), dtype=np.int16)
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "RGB").save(path, "JPEG", quality=quality)


def ensure_images(folder, n, width=640, height=480, prefix="img"):
    os.makedirs(folder, exist_ok=True)
    names = []
    for i in range(n):
        name = f"{prefix}_{i:05d}.jpg"
        p = os.path.join(folder, name)
        if not os.path.exists(p):
            make_image(p + ".tmp.jpg", i, width, height)
            os.replace(p + ".tmp.jpg", p)
        names.append(name)
    return names


# ----------------------------------------------------------------- captions

_SUBJECTS = ["a young woman in a red coat", "an old man with a grey beard", "a small brown dog",
             "two children in yellow raincoats", "a black and white cat", "a cyclist in a blue jersey",
             "a group of tourists", "a tall giraffe", "a street musician with a guitar",
             "a chef in a white apron", "a herd of sheep", "a delivery truck",
             "a little girl holding a balloon", "a golden retriever puppy", "a fisherman in a small boat",
             "an elderly couple"]
_ACTIONS = ["walks along", "is resting near", "runs across", "waits beside", "is standing in",
            "plays in", "looks out over", "crosses", "sits quietly on", "is photographed in",
            "moves slowly through", "stops next to"]
_PLACES = ["a busy city street", "a grassy park by the river", "a snowy mountain trail",
           "an old stone bridge", "a crowded market square", "a quiet sandy beach",
           "a wooden pier", "the edge of a pine forest", "a narrow cobbled alley", "a sunny vineyard",
           "an empty train platform", "a field of sunflowers", "a harbour full of boats"]
_TIMES = ["at dusk", "on a rainy morning", "in the late afternoon", "under a cloudy sky",
          "during a summer festival", "in the early morning light", "on a cold winter day", "at noon"]


def captions(n, seed=7):
    """n distinct realistic captions (11-21 words) while the combinations
    last, so no caption is served from clipscore's embedding cache."""
    combos = [(a, b, c, d) for a in _SUBJECTS for b in _ACTIONS for c in _PLACES for d in _TIMES]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(combos))
    out = []
    for i in range(n):
        s, a, p, t = combos[order[i % len(combos)]]
        c = f"{s} {a} {p} {t}."
        out.append(c[0].upper() + c[1:])
    return out


def caption_words():
    words = []
    for part in _SUBJECTS + _ACTIONS + _PLACES + _TIMES:
        words.extend(part.lower().split())
    return words + [str(d) for d in range(10)] + ["."]


def write_csv(path, rows):
    import csv
    with open(path + ".tmp", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        w.writerows(rows)
    os.replace(path + ".tmp", path)
