"""baseline.py - the PyTorch-eager baseline: what the original script does.

A plain nn.Module CLIP in OpenAI's structure (pre-norm residual blocks with
nn.MultiheadAttention, quick_gelu, causal text mask, features at the argmax
of the ids, projections) on the same safetensors weights; torchvision
preprocessing on PIL images; ids padded to the full 77-token context; every
image loaded and preprocessed into memory first, then both encoders in
batches of 64 under torch.no_grad; cosine similarity per pair.

  baseline.py --model DIR --csv PAIRS.csv --out RESULT.json [--batch 64]
              [--threads N] [--device cpu|cuda] [--half]

Writes {"similarity": [...], "seconds": {...}, ...} to RESULT.json.
"""
import argparse
import csv
import json
import os
import sys
import time
from collections import OrderedDict

T0 = time.perf_counter()  # before importing torch: its import is part of the cost

import torch
from torch import nn
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpe  # noqa: E402

try:
    from torchvision import transforms as T
    HAVE_TV = True
except ImportError:  # only where torchvision is missing (e.g. a bare GPU box)
    HAVE_TV = False

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class LayerNorm(nn.LayerNorm):
    # As OpenAI's: computed in fp32 also when the model is fp16 (here the
    # norm's own weights are halved too, so they are widened with the input).
    def forward(self, x):
        return nn.functional.layer_norm(x.float(), self.normalized_shape, self.weight.float(),
                                        self.bias.float(), self.eps).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(4 * width, width))]))
        self.ln_2 = LayerNorm(width)

    def forward(self, x, mask):  # x: [L, N, W], sequence first as OpenAI's
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])

    def forward(self, x, mask=None):
        for b in self.resblocks:
            x = b(x, mask)
        return x


class Vision(nn.Module):
    def __init__(self, size, patch, width, layers, out_dim):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty((size // patch) ** 2 + 1, width))
        self.ln_pre = LayerNorm(width)
        self.transformer = Transformer(width, layers, width // 64)
        self.ln_post = LayerNorm(width)
        self.proj = nn.Parameter(torch.empty(width, out_dim))

    def forward(self, x):
        x = self.conv1(x.type(self.conv1.weight.dtype)).flatten(2).permute(0, 2, 1)  # [N, P, W]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], 1) + self.positional_embedding.to(x.dtype)
        x = self.ln_pre(x).permute(1, 0, 2)
        x = self.transformer(x).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        d = cfg["embed_dim"]
        self.visual = Vision(v["image_size"], v["patch_size"], v["width"], v["layers"], d)
        self.context = t["context_length"]
        self.transformer = Transformer(t["width"], t["layers"], t["heads"])
        self.token_embedding = nn.Embedding(t["vocab_size"], t["width"])
        self.positional_embedding = nn.Parameter(torch.empty(self.context, t["width"]))
        self.ln_final = LayerNorm(t["width"])
        self.text_projection = nn.Parameter(torch.empty(t["width"], d))
        self.logit_scale = nn.Parameter(torch.empty([]))
        mask = torch.full((self.context, self.context), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def encode_image(self, pixels):
        return self.visual(pixels)

    def encode_text(self, ids):
        x = self.token_embedding(ids).type(self.positional_embedding.dtype) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2), self.attn_mask.to(x.dtype)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ self.text_projection


def load_weights(model, path):
    """Reads each safetensors tensor straight into its parameter, so the
    baseline holds one copy of the weights (the fairest reading of its RSS)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        state = model.state_dict(keep_vars=True)
        missing = set(state) - set(header) - {"attn_mask"}
        if missing:
            raise SystemExit(f"baseline: weights lack {sorted(missing)[:3]}")
        for name, info in header.items():
            if info["dtype"] != "F32":
                raise SystemExit(f"baseline: {name} is {info['dtype']}; F32 expected")
            p = state[name].data
            if list(p.shape) != info["shape"]:
                raise SystemExit(f"baseline: {name} has shape {info['shape']}, model {list(p.shape)}")
            a, b = info["data_offsets"]
            f.seek(8 + n + a)
            buf = p.numpy().reshape(-1).view("uint8")
            if f.readinto(buf) != b - a:
                raise SystemExit(f"baseline: {path} is truncated")


def preprocess_fn(size):
    if HAVE_TV:
        return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                          T.CenterCrop(size), lambda im: im.convert("RGB"), T.ToTensor(),
                          T.Normalize(MEAN, STD)])
    import numpy as np

    def pp(im):  # torchvision's PIL path, spelt out
        w, h = im.size
        nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
        im = im.resize((nw, nh), Image.BICUBIC)
        l, t = int(round((nw - size) / 2)), int(round((nh - size) / 2))
        a = np.asarray(im.crop((l, t, l + size, t + size)).convert("RGB"), np.float32) / 255
        return (torch.from_numpy(a).permute(2, 0, 1) - torch.tensor(MEAN).view(3, 1, 1)) / \
            torch.tensor(STD).view(3, 1, 1)
    return pp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--half", action="store_true")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    sec = {}

    t = time.perf_counter()
    with open(os.path.join(a.model, "open_clip_config.json")) as f:
        cfg = json.load(f)["model_cfg"]
    model = CLIP(cfg)
    load_weights(model, os.path.join(a.model, "open_clip_model.safetensors"))
    model = model.eval().to(dev)
    if a.half:
        model = model.half()
    tok = bpe.Tokenizer(os.path.join(a.model, "vocab.json"), os.path.join(a.model, "merges.txt"))
    sec["load_model"] = time.perf_counter() - t

    t = time.perf_counter()
    with open(a.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    base = os.path.dirname(os.path.abspath(a.csv))
    pp = preprocess_fn(cfg["vision_cfg"]["image_size"])
    # As the original script: every image decoded and preprocessed up front.
    images = [pp(Image.open(os.path.join(base, r["image"]))) for r in rows]
    sec["decode_preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    ids = torch.tensor([tok.tokenize(r["caption"], model.context) for r in rows], dtype=torch.long)
    sec["tokenize"] = time.perf_counter() - t

    sims = []
    sec["image_encoder"] = sec["text_encoder"] = 0.0
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    dtype = torch.float16 if a.half else torch.float32
    with torch.no_grad():
        for s in range(0, len(rows), a.batch):
            t = time.perf_counter()
            im = model.encode_image(torch.stack(images[s:s + a.batch]).to(dev, dtype))
            sync()
            sec["image_encoder"] += time.perf_counter() - t
            t = time.perf_counter()
            tx = model.encode_text(ids[s:s + a.batch].to(dev))
            sync()
            sec["text_encoder"] += time.perf_counter() - t
            im, tx = im.float(), tx.float()
            sims += torch.nn.functional.cosine_similarity(im, tx, dim=-1).cpu().tolist()
    sec["total"] = time.perf_counter() - T0
    out = {"rows": len(rows), "similarity": sims, "seconds": sec, "torch": torch.__version__,
           "torchvision": HAVE_TV, "threads": torch.get_num_threads(), "batch": a.batch,
           "device": str(dev), "dtype": str(dtype)}
    if dev.type == "cuda":
        out["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
