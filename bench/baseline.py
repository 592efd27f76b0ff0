"""baseline.py - the PyTorch-eager baseline: what the original script does.

A plain nn.Module CLIP in OpenAI's structure (pre-norm residual blocks with
nn.MultiheadAttention, quick_gelu, causal text mask, features at the argmax
of the ids, projections; for a ResNet CLIP the modified ResNet: three-conv
stem, bottlenecks with average-pool strides, batch norms as modules in eval
mode, attention pooling) on the same safetensors weights; torchvision
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


class Bottleneck(nn.Module):
    """1x1, 3x3, (average pool when strided), 1x1 to 4x planes, each with a
    batch norm; a downsample branch (pool, 1x1, norm) when the shape changes."""

    def __init__(self, inp, planes, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inp, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)
        self.downsample = None
        if stride > 1 or inp != 4 * planes:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inp, 4 * planes, 1, bias=False)),
                ("1", nn.BatchNorm2d(4 * planes))]))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.pool(torch.relu(self.bn2(self.conv2(h))))
        h = self.bn3(self.conv3(h))
        return torch.relu(h + (x if self.downsample is None else self.downsample(x)))


class AttentionPool(nn.Module):
    """Flattened grid with its mean prepended, positions added; the mean
    token queries the grid through one multi-head attention."""

    def __init__(self, grid, width, heads, out_dim):
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.q_proj, self.k_proj = nn.Linear(width, width), nn.Linear(width, width)
        self.v_proj, self.c_proj = nn.Linear(width, width), nn.Linear(width, out_dim)
        self.heads = heads

    def forward(self, x):
        x = x.flatten(2).permute(2, 0, 1)  # [HW, N, C], sequence first
        x = torch.cat([x.mean(0, keepdim=True), x]) + self.positional_embedding[:, None, :].to(x.dtype)
        out, _ = nn.functional.multi_head_attention_forward(
            x[:1], x, x, x.shape[-1], self.heads, None,
            torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]), None, None, False, 0.0,
            self.c_proj.weight, self.c_proj.bias, training=False, need_weights=False,
            use_separate_proj_weight=True, q_proj_weight=self.q_proj.weight,
            k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight)
        return out[0]


class ResNetVision(nn.Module):
    def __init__(self, size, layers, width, out_dim):
        super().__init__()
        half = width // 2
        self.conv1, self.bn1 = nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half)
        self.conv2, self.bn2 = nn.Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half)
        self.conv3, self.bn3 = nn.Conv2d(half, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        inp = width
        for i, n in enumerate(layers):
            planes = width << i
            blocks = [Bottleneck(inp, planes, 2 if i else 1)]
            blocks += [Bottleneck(4 * planes, planes, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inp = 4 * planes
        self.attnpool = AttentionPool(size // 32, 32 * width, 32 * width // 64, out_dim)

    def forward(self, x):
        x = x.type(self.conv1.weight.dtype)
        for c, b in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = torch.relu(b(c(x)))
        x = nn.functional.avg_pool2d(x, 2)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.attnpool(x)


class CLIP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        v, t = cfg["vision_cfg"], cfg["text_cfg"]
        d = cfg["embed_dim"]
        if isinstance(v["layers"], list):  # a ResNet CLIP
            self.visual = ResNetVision(v["image_size"], v["layers"], v["width"], d)
        else:
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
        missing = {k for k in set(state) - set(header) - {"attn_mask"}
                   if not k.endswith("num_batches_tracked")}  # a counter, not a weight
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
