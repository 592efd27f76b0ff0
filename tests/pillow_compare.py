#!/usr/bin/python3
"""pillow_compare.py - clipscore's decoders against the reference on a folder
of images (made for Pillow's own Tests/images, which is not in this
repository: fetch python-pillow/Pillow and point --images at Tests/images).

Each file goes, on its own, through
  * the reference: OpenAI clip's transform Resize(R, bicubic) /
    CenterCrop(R) / convert("RGB") / ToTensor / Normalize with torchvision,
    as clip.load() builds it, on Image.open(path) as the original script
    passes it: not loaded first, so Resize reads the size Pillow reports
    before load() (a TIFF turned by its Orientation is resized to its
    unturned size);
  * `clipscore preprocess --model M -o OUT.npy FILE...`, whose runs stop at
    the first image that fails: that image gets the run's message and the
    others are run again without it, so each image's verdict and pixels are
    those of a run of its own (batches only save start-up time).
and lands in one row of a table: both read it and agree (within the
conformance check's tolerances: mean |d| <= 0.003, max |d| <= 0.05), both
read it and differ, one reads it and the other refuses it (with the
other's reason), both refuse it. Pillow's "cannot identify" files in formats
clipscore does not read either are counted apart.

  /usr/bin/python3 tests/pillow_compare.py --bin build/clipscore \
      --images /work/pillow-images/Tests/images [--model DIR] [--jobs 2] [--markdown]

Needs Debian's python3-pil, python3-torchvision and python3-numpy (the
reference); exits 1 when an image both read differs (16-bit gray excepted,
see KNOWN) or a file Pillow refuses as truncated/corrupt is scored.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN_TOL, MAX_TOL = 0.003, 0.05
# Read by both, different on purpose: 16-bit gray, which Pillow keeps as
# mode "I" and saturates to white in convert("RGB"); clipscore scales it.
KNOWN = {"16_bit_binary.pgm", "hopper_16bit.pgm", "hopper_16bit_plain.pgm", "i_trns.png", "16bit.cropped.tif",
         "16bit.MM.cropped.tif", "16bit.MM.deflate.tif", "16bit.deflate.tif",
         "16bit.r.tif", "16bit.s.tif", "16_bit_binary_pgm.tiff", "16_bit_noise.tif",
         "12in16bit.tif", "uint16_1_4660.tif", "hopper_gray_16bit.png", "16bit.cropped.j2k",
         "16bit.cropped.jp2", "hopper_16bit_qtables.tif", "12bit.cropped.tif"}


def model_geometry(model):
    cfg = os.path.join(model, "preprocessor_config.json")
    size, mean, std = 224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    if os.path.exists(cfg):
        with open(cfg) as f:
            c = json.load(f)
        cs = c.get("crop_size", size)
        size = cs["height"] if isinstance(cs, dict) else cs
        mean, std = tuple(c.get("image_mean", mean)), tuple(c.get("image_std", std))
    return size, mean, std


def reference(path, size, mean, std):
    """(tensor [3,R,R] or None, reason)."""
    tf = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size),
                    lambda im: im.convert("RGB"), T.ToTensor(), T.Normalize(mean, std)])
    try:
        with Image.open(path) as im:
            return tf(im).numpy(), im.format
    except Exception as e:  # noqa: BLE001 - every refusal is a verdict here
        return None, f"{type(e).__name__}: {e}"[:160]


def load_npy(path):
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
        major = f.read(2)[0]
        hl = int.from_bytes(f.read(2 if major == 1 else 4), "little")
        f.read(hl)
        return np.frombuffer(f.read(), dtype="<f4")


def clipscore_batch(binary, model, paths, tmp):
    """{path: (tensor or None, reason)} for paths, through as few runs of
    `clipscore preprocess` as give each image its own verdict: a run decodes
    its images in order and stops at the first that fails (whose message it
    prints), so the failing image gets that message, the ones before it are
    run again without it, and the ones after it go on in a new run. The
    result is what one run per image gives."""
    out = os.path.join(tmp, "px.npy")
    res, todo = {}, list(paths)
    while todo:
        if os.path.exists(out):
            os.unlink(out)
        try:
            r = subprocess.run([binary, "preprocess", "--model", model, "-o", out] + todo,
                               capture_output=True, text=True, errors="replace",
                               timeout=60 + 30 * len(todo))
        except subprocess.TimeoutExpired:
            if len(todo) == 1:
                res[todo[0]] = (None, "timeout")
                return res
            half = len(todo) // 2  # find the slow one by halves
            res.update(clipscore_batch(binary, model, todo[:half], tmp))
            todo = todo[half:]
            continue
        if r.returncode == 0 and os.path.exists(out):
            px = load_npy(out).reshape(len(todo), -1)
            for i, p in enumerate(todo):
                res[p] = (px[i], "ok")
            return res
        msg = r.stderr.strip().splitlines()
        last = msg[-1] if msg else f"exit {r.returncode}"
        bad = next((i for i, p in enumerate(todo) if p + ":" in last), None)
        if bad is None:  # not an image's message: give each its own run
            if len(todo) == 1:
                res[todo[0]] = (None, last[:200])
                return res
            for p in todo:
                res.update(clipscore_batch(binary, model, [p], tmp))
            return res
        res[todo[bad]] = (None, last.replace("clipscore: ", "").replace(todo[bad], "FILE")[:200])
        if bad:
            res.update(clipscore_batch(binary, model, todo[:bad], tmp))
        todo = todo[bad + 1:]
    return res


def pillow_says_broken(path, why):
    """Whether Pillow's refusal says the file is truncated or corrupt, rather
    than of a mode its RGB conversion lacks ("image has wrong mode": 16-bit
    gray, which clipscore scales) or a format Pillow 9.4 does not read
    (AVIF/HEIF, which clipscore reads with libheif)."""
    if "wrong mode" in why or "Decompressed Data Too Large" in why:
        return False  # the latter: a text chunk over Pillow's limit, pixels fine
    if why.startswith("UnidentifiedImageError") and path.lower().endswith(
            (".avif", ".avifs", ".heif", ".heic")):
        return False
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "clipscore"))
    ap.add_argument("--images", required=True)
    ap.add_argument("--model", default=os.path.join(HERE, "..", "..", "shared", "conformance",
                                                   "model-hf"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=24,
                    help="images a clipscore run starts with (verdicts are per image anyway)")
    ap.add_argument("--markdown", action="store_true", help="print the summary as a table")
    a = ap.parse_args()
    size, mean, std = model_geometry(a.model)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(a.images) for f in fs)
    torch.set_num_threads(1)

    def chunk(i_paths):
        i, paths = i_paths
        tmp = tempfile.mkdtemp(prefix="pillow-compare-")  # its own: chunks run at once
        got = clipscore_batch(a.bin, a.model, paths, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        rows = []
        for path in paths:
            ref, ref_why = reference(path, size, mean, std)
            g, got_why = got[path]
            rel = os.path.relpath(path, a.images)
            if ref is not None and g is not None:
                d = np.abs(ref.reshape(-1) - g)
                rows.append((rel, "both", (float(d.mean()), float(d.max())), ref_why, got_why))
            elif ref is not None:
                rows.append((rel, "pillow only", None, ref_why, got_why))
            elif g is not None:
                rows.append((rel, "clipscore only", None, ref_why, got_why))
            else:
                rows.append((rel, "neither", None, ref_why, got_why))
        return rows

    chunks = [files[k:k + a.batch] for k in range(0, len(files), a.batch)]
    with ThreadPoolExecutor(a.jobs) as ex:
        results = [r for rows in ex.map(chunk, enumerate(chunks)) for r in rows]

    agree, differ, known, ponly, conly, neither = [], [], [], [], [], []
    for rel, kind, d, ref_why, got_why in results:
        if kind == "both":
            ok = d[0] <= MEAN_TOL and d[1] <= MAX_TOL
            (agree if ok else known if os.path.basename(rel) in KNOWN else differ).append(
                (rel, d, ref_why))
        elif kind == "pillow only":
            ponly.append((rel, ref_why, got_why))
        elif kind == "clipscore only":
            conly.append((rel, ref_why))
        else:
            neither.append((rel, ref_why, got_why))
    # Files Pillow refuses as broken but clipscore scores: the findings.
    scored_broken = [(r, w) for r, w in conly if pillow_says_broken(r, w)]

    print("# files not read by clipscore but read by Pillow:")
    for rel, ref_why, got_why in ponly:
        print(f"  {rel} [{ref_why}]: {got_why}")
    print("# files read by clipscore but refused by Pillow (* = as truncated or corrupt):")
    for rel, ref_why in conly:
        print(f"  {'*' if pillow_says_broken(rel, ref_why) else ' '} {rel}: {ref_why}")
    print("# read by both, different (mean |d|, max |d|):")
    for rel, d, fmt in differ:
        print(f"  {rel} [{fmt}]: {d[0]:.4f} {d[1]:.4f}")
    print("# read by both, different on purpose (16-bit gray):")
    for rel, d, fmt in known:
        print(f"  {rel} [{fmt}]: {d[0]:.4f} {d[1]:.4f}")
    unsupported = sum(1 for _, _, g in ponly if "not supported" in g or "unknown image" in g)
    rows = [("files", len(files)),
            ("read by both, same pixels (mean abs diff <= 0.003, max <= 0.05)", len(agree)),
            ("read by both, different (not 16-bit gray)", len(differ)),
            ("read by both, 16-bit gray (scaled here, saturated by Pillow)", len(known)),
            ("read by Pillow only, in a format clipscore does not read", unsupported),
            ("read by Pillow only, other", len(ponly) - unsupported),
            ("read by clipscore only (Pillow 9.4: 16-bit mode, AVIF/HEIF, text chunk limit)",
             len(conly) - len(scored_broken)),
            ("read by clipscore only, Pillow refuses as truncated/corrupt", len(scored_broken)),
            ("refused by both", len(neither))]
    if a.markdown:
        print("\n| result | files |\n|---|---|")
        for k, v in rows:
            print(f"| {k} | {v} |")
    else:
        for k, v in rows:
            print(f"{v:6d}  {k}")
    return 1 if differ or scored_broken else 0


if __name__ == "__main__":
    sys.exit(main())
