#!/usr/bin/env python3
"""RefCLIPScore (--reference-column) against a worked example computed here,
independently, from `clipscore embed` outputs: CLIP-S = 2.5 max(cos(image,
caption), 0), and the harmonic mean of CLIP-S and max(max over references
of cos(caption, reference), 0) (Hessel et al., 2021, section 3), within
1e-6. Also: references take the caption template, empty cells are ignored,
a row without references gets an empty refclipscore, a reference repeated
across rows and batches is encoded once (run.json), and bad column options
are usage errors. Standard library only.
Usage: test_refclipscore.py CLIPSCORE MAKE_TINY_MODEL
"""
import json, math, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import MAKE_MODEL, check, finish, img, load_npy, read_csv, run, tmp, write

d = os.path.join(tmp, "refclip")
os.makedirs(d)
# Seed 4's random model gives these images and captions positive cosines, so
# that CLIP-S is not 0 and the harmonic mean is exercised.
subprocess.run([MAKE_MODEL, os.path.join(d, "model"), "hf", "4"], check=True)
M = ["--model", os.path.join(d, "model"), "--device", "cpu", "--precision", "fp32"]
TEMPLATE = "a picture of {}"
rows = [  # image, caption, ref1, ref2
    ("a0.png", "a photo of a cat", "a cat on a mat", "a small cat"),
    ("a1.png", "the dog", "", "a dog running"),
    ("a2.png", "a red photo", "a cat on a mat", ""),   # a reference repeated from row 1
    ("a3.png", "cat and dog", "", ""),                 # no reference: empty refclipscore
    ("a4.png", "a dog", "a small cat", "a dog running"),
    ("a5.png", "two cats", "two cats", "a dog running"),  # a reference equal to the caption
    ("missing.png", "gone", "x", "y"),                 # fails: no score at all
]
lines = ["image,caption,ref1,ref2"] + [f"{os.path.join(img, a)},{b},{c},{e}" for a, b, c, e in rows]
inp = os.path.join(d, "pairs.csv")
write(inp, "\n".join(lines) + "\n")
rc, _, err = run(["score", inp, "--reference-column", "ref1", "--reference-column", "#4", "--template", TEMPLATE,
                  "-b", "2", "--no-figures", "-q"] + M)
check(rc == 3, "run exits 3 (one row fails)", err[-400:])
out = read_csv(os.path.join(d, "output.csv"))
check(out[0] == ["image", "caption", "ref1", "ref2", "similarity", "clipscore", "refclipscore", "error"],
      "columns similarity, clipscore, refclipscore, error", out[0])

# The independent computation: embeddings from `clipscore embed`, the
# formulas here.
ok = [r for r in rows if r[0] != "missing.png"]
rc, _, err = run(["embed"] + M + ["-o", os.path.join(d, "img.npy"), "--images"] +
                 [os.path.join(img, r[0]) for r in ok])
check(rc == 0, "embed images", err[-300:])
texts = sorted({t for r in ok for t in r[1:] if t})
write(os.path.join(d, "texts.txt"), "".join(TEMPLATE.replace("{}", t) + "\n" for t in texts))
rc, _, err = run(["embed"] + M + ["-o", os.path.join(d, "txt.npy"), "--texts", os.path.join(d, "texts.txt")])
check(rc == 0, "embed texts", err[-300:])
_, iv = load_npy(os.path.join(d, "img.npy"))
_, tv = load_npy(os.path.join(d, "txt.npy"))
temb = dict(zip(texts, tv))


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


worst, harmonic_rows = 0.0, 0
for k, (r, o) in enumerate(zip(ok, out[1:])):
    sim = cos(iv[k], temb[r[1]])
    clip_s = 2.5 * max(sim, 0.0)
    refs = [t for t in r[2:] if t]
    if refs:
        ref_s = max(max(cos(temb[r[1]], temb[t]) for t in refs), 0.0)
        want = 2 * clip_s * ref_s / (clip_s + ref_s) if clip_s + ref_s > 0 else 0.0
        harmonic_rows += clip_s > 0 and ref_s > 0
        check(o[6] != "", f"row {k + 1}: refclipscore written")
        if o[6]:
            worst = max(worst, abs(float(o[6]) - want))
    else:
        check(o[6] == "", f"row {k + 1}: no reference, empty refclipscore", o)
    worst = max(worst, abs(float(o[4]) - sim), abs(float(o[5]) - clip_s))
    print(f"row {k + 1}: cos {sim:.6f} clip-s {clip_s:.6f} refclipscore {o[6] or '-'}")
check(worst <= 1e-6, "similarity, clipscore and refclipscore match the worked example within 1e-6", worst)
print(f"largest difference from the worked example: {worst:.2e}")
check(harmonic_rows >= 1, "the example has a row where both terms are positive (a true harmonic mean)")
check(out[7][4:7] == ["", "", ""] and out[7][7], "a failed row has no scores, and its error", out[7])
# The reference equal to its own caption: cos 1, so RefCLIPScore = 2a/(a+1).
a = float(out[6][5])
check(abs(float(out[6][6]) - (2 * a / (a + 1) if a > 0 else 0.0)) <= 2e-6, "a reference equal to the caption")

rj = json.load(open(os.path.join(d, "run.json")))
refs = rj.get("references", {})
distinct = {t for r in ok for t in r[2:] if t} - {r[1] for r in ok}  # references that are not also captions
check(refs.get("columns") == ["ref1", "ref2"], "run.json names the reference columns", refs)
check(refs.get("encoded") == len(distinct) + 1, "each distinct reference encoded once (across batches)",
      (refs.get("encoded"), len(distinct) + 1))
check(refs.get("refclipscore_rows") == 5, "run.json counts the rows with a RefCLIPScore", refs)

# Usage errors.
rc, _, err = run(["score", inp, "--reference-column", "nope", "-o", os.path.join(d, "x"), "-q"] + M)
check(rc == 2 and "nope" in err and "--reference-column" in err, "an unknown reference column is a usage error",
      (rc, err[-300:]))
rc, _, err = run(["score", inp, "--reference-column", "caption", "-o", os.path.join(d, "x"), "-q"] + M)
check(rc == 2 and "caption column" in err, "the caption column as a reference is refused", (rc, err[-300:]))
finish()
