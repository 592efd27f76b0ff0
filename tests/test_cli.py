#!/usr/bin/env python3
"""End-to-end tests of the clipscore command line on messy inputs.

Runs build/clipscore on a tiny random model (written by make_tiny_model) and
on CSVs and images made here, and checks outputs, exit codes and messages.
Standard library only. Usage: test_cli.py CLIPSCORE MAKE_TINY_MODEL
Prints 'N passed, N failed' and exits 1 when a check failed.
"""
import csv, io, json, math, os, shutil, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import BIN, HAVE_FIGURES, M, check, finish, img, load_npy, png, read_csv, run, sha, tmp, write

# 1. A clean run: every row scored, outputs beside the input, input untouched.
d1 = os.path.join(tmp, "clean")
os.makedirs(d1)
rows = [["id", "image", "caption", "notes"]] + [[str(i), f"../img/a{i}.png", c, f"n{i}"] for i, c in
                                                 enumerate(["a photo of a cat", "the dog", "a red photo",
                                                            "cat and dog", "the photo", "a dog"])]
buf = io.StringIO()
csv.writer(buf, lineterminator="\n").writerows(rows)
inp = os.path.join(d1, "pairs.csv")
write(inp, buf.getvalue())
before = sha(inp)
rc, out, err = run(["score", inp] + M)
check(rc == 0, "clean run exits 0", err[-500:])
got = read_csv(os.path.join(d1, "output.csv"))
check(got[0] == rows[0] + ["similarity", "error"], "output header", got[0])
check(len(got) == len(rows), "one output row per input row", len(got))
check(all(g[:4] == r for g, r in zip(got[1:], rows[1:])), "input fields unchanged")
sims = [float(g[4]) for g in got[1:]]
check(all(-1 <= s <= 1 for s in sims) and all(len(g[4].split(".")[1]) == 6 for g in got[1:]),
      "similarities are cosines with 6 decimals", sims)
check(all(g[5] == "" for g in got[1:]), "error column empty when scored")
check(sha(inp) == before, "input not modified")
rj = json.load(open(os.path.join(d1, "run.json")))
for k in ("version", "model", "device", "precision", "template", "metric", "rows", "scored", "failed",
          "mean_similarity", "seconds"):
    check(k in rj, f"run.json has {k}")
check(rj["rows"] == 6 and rj["scored"] == 6 and rj["failed"] == 0, "run.json counts", rj.get("rows"))
check(len(rj["model"].get("weights_sha256") or "") == 64, "run.json records the weight file's SHA-256")
check(abs(rj["mean_similarity"] - sum(sims) / 6) < 1e-5, "run.json mean similarity")
check(rj["device"] == "cpu" and rj["precision"] == "fp32", "run.json device and precision")
check(rj.get("decode") == "exact", "run.json records the default decode mode", rj.get("decode"))
if HAVE_FIGURES:
    for fig in ("image_captions.jpg", "similarity_matrix.jpg"):
        p = os.path.join(d1, fig)
        check(os.path.exists(p) and open(p, "rb").read(3) == b"\xff\xd8\xff", f"{fig} written as JPEG")
check(not [f for f in os.listdir(d1) if ".tmp" in f], "no temporary files left", os.listdir(d1))
check("6 scored" in err and "mean similarity" in err, "summary on stderr", err[-300:])

# 2. Scores do not depend on batch size or neighbours.
outs = {}
for bs in ("1", "64"):
    od = os.path.join(tmp, f"bs{bs}")
    rc, _, err = run(["score", inp, "-o", od, "--batch-size", bs, "--no-figures", "-q"] + M)
    check(rc == 0, f"--batch-size {bs} runs", err[-300:])
    outs[bs] = [float(r[4]) for r in read_csv(os.path.join(od, "output.csv"))[1:]]
check(max(abs(a - b) for a, b in zip(outs["1"], outs["64"])) <= 1e-5, "batch 1 vs 64 agree within 1e-5",
      (outs["1"], outs["64"]))
check(max(abs(a - b) for a, b in zip(outs["1"], sims)) <= 1e-5, "batch 1 vs default agree")
od = os.path.join(tmp, "again")
run(["score", inp, "-o", od, "--no-figures", "-q"] + M)
check(open(os.path.join(od, "output.csv"), "rb").read() == open(os.path.join(d1, "output.csv"), "rb").read(),
      "a second run writes the same output.csv")

# 3. Messy but valid CSV: BOM, CRLF, quotes, commas and newlines in fields.
d3 = os.path.join(tmp, "messy")
os.makedirs(d3)
messy = [["Caption", "extra, with comma", "Image"],
         ['a "quoted" photo, with comma', 'multi\nline\r\nfield', "../img/a0.png"],
         ["  spaces kept  ", "", "../img/a1.png"],
         ["ünïcödé café 猫", '""', os.path.join(img, "a2.png")]]
buf = io.StringIO()
csv.writer(buf, lineterminator="\r\n").writerows(messy)
m_in = os.path.join(d3, "in.csv")
write(m_in, "\ufeff" + buf.getvalue())
rc, out, err = run(["score", m_in, "--no-figures"] + M)
check(rc == 0, "messy CSV scores", err[-500:])
got = read_csv(os.path.join(d3, "output.csv"))
check([g[:3] for g in got[1:]] == messy[1:], "messy fields round-trip byte for byte", got)
check(got[0][:3] == ["Caption", "extra, with comma", "Image"], "BOM stripped, header kept", got[0])

# 4. Bad rows: each fails alone with a reason; the others are scored.
d4 = os.path.join(tmp, "bad")
os.makedirs(d4)
good = png(os.path.join(d4, "good.png"), 50, 40)
write(os.path.join(d4, "trunc.png"), good[: len(good) // 2], "wb")
write(os.path.join(d4, "corrupt.png"), b"\x89PNG\r\n\x1a\n" + os.urandom(200), "wb")
write(os.path.join(d4, "empty.jpg"), b"", "wb")
write(os.path.join(d4, "scan.tif"), b"II*\x00" + b"\x00" * 100, "wb")
write(os.path.join(d4, "pic.webp"), b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40, "wb")
png(os.path.join(d4, "big.png"), 300, 300)
long_caption = " ".join(["the photo of a cat and a dog"] * 30)
bad_lines = [
    "image,caption",
    "good.png,a photo of a cat",             # 1 ok
    "missing.png,a cat",                     # 2 missing file
    "trunc.png,a dog",                       # 3 truncated
    "corrupt.png,a dog",                     # 4 corrupt
    "empty.jpg,a dog",                       # 5 zero bytes
    "scan.tif,a dog",                        # 6 TIFF
    "pic.webp,a dog",                        # 7 WebP
    "big.png,a dog",                         # 8 over the pixel limit
    "good.png,",                             # 9 empty caption
    "good.png," + long_caption,              # 10 truncated caption: scored
    "good.png,only,too,many",                # 11 ragged (long)
    "good.png",                              # 12 ragged (short)
    ",a cat",                                # 13 empty image path
]
b_in = os.path.join(d4, "bad.csv")
raw = ("\n".join(bad_lines) + "\n").encode() + b"good.png,caf\xe9 bad utf8\n"   # 14 invalid UTF-8: scored
write(b_in, raw, "wb")
rc, out, err = run(["score", b_in, "--max-pixels", "50000", "--no-figures"] + M)
check(rc == 3, "some rows failed: exit status 3", f"rc={rc} {err[-300:]}")
with open(os.path.join(d4, "output.csv"), "rb") as f:
    got = list(csv.reader(io.StringIO(f.read().decode("utf-8", "surrogateescape"), newline="")))
check(len(got) == 15, "every row kept, bad ones too", len(got))
res = {i: (r[2] if len(r) > 2 else None, r[3] if len(r) > 3 else None) for i, r in enumerate(got[1:], 1)}
expect_fail = {2: "missing", 3: "truncat", 4: "corrupt", 5: "empty", 6: "TIFF", 7: "WebP", 8: "pixel",
               9: "empty caption", 11: "fields", 12: "fields", 13: "empty image"}
for i, word in expect_fail.items():
    sim, msg = res[i]
    check(sim == "" and msg and word.lower() in msg.lower(), f"row {i} fails with '{word}'", res[i])
for i in (1, 10, 14):
    check(res[i][0] not in ("", None) and res[i][1] == "", f"row {i} scored", res[i])
check(got[11] == ["good.png", "only", "", "row has 4 fields, the header has 2", "too", "many"],
      "ragged long row keeps its fields, surplus after ours", got[11])
check(got[12][0] == "good.png", "ragged short row kept", got[12])
check("line 3" in err and "missing.png" in err, "stderr names the row's line and path", err[:800])
check(err.count("truncated;") <= 1 and "truncated" in err, "truncation noted once", err)
check("UTF-8" in err, "invalid UTF-8 noted", err)
rj = json.load(open(os.path.join(d4, "run.json")))
check(rj["failed"] == 11 and rj["scored"] == 3 and rj["truncated_captions"] == 1 and rj["invalid_utf8_captions"] == 1,
      "run.json counts bad rows", {k: rj[k] for k in ("failed", "scored", "truncated_captions")})
check(open(b_in, "rb").read() == raw, "input not modified")

# 5. Files that cannot be scored at all: clear error, exit 1 or 2, nothing written.
d5 = os.path.join(tmp, "fatal")
os.makedirs(d5)
cases = {
    "empty.csv": ("", "empty"),
    "nocol.csv": ("picture,words\nx.png,a\n", "image"),
    "nocap.csv": ("image,words\nx.png,a\n", "caption"),
    "dup.csv": ("image,caption,image\nx.png,a,y.png\n", "twice"),
}
for name, (text, word) in cases.items():
    p = os.path.join(d5, name)
    write(p, text)
    od = os.path.join(d5, "out-" + name)
    rc, out, err = run(["score", p, "-o", od] + M)
    check(rc in (1, 2), f"{name}: fatal exit status", rc)
    check(word in err.lower() and name in err, f"{name}: message names the file and the problem", err[-300:])
    check(not os.path.exists(os.path.join(od, "output.csv")), f"{name}: no output.csv")
    check(not os.path.exists(od) or not [f for f in os.listdir(od) if ".tmp" in f], f"{name}: no temporary left")
p = os.path.join(d5, "dup.csv")
rc, _, err = run(["score", p, "--image-column", "#1", "-o", os.path.join(d5, "dupok"), "--no-figures"] + M)
got = read_csv(os.path.join(d5, "dupok", "output.csv")) if rc == 3 else []
check(rc == 3 and len(got) == 2 and "x.png" in got[1][-1] and "y.png" not in got[1][-1],
      "--image-column #1 resolves a duplicate name (the first column's x.png is read)", (rc, got, err[-300:]))
# header only: a valid run with zero rows
p = os.path.join(d5, "header.csv")
write(p, "image,caption\n")
rc, _, err = run(["score", p, "-o", os.path.join(d5, "h"), "--no-figures"] + M)
check(rc == 0 and read_csv(os.path.join(d5, "h", "output.csv")) == [["image", "caption", "similarity", "error"]],
      "header-only file gives a header-only output", err[-300:])
# unterminated quote at the end: earlier rows scored, the broken one reported
p = os.path.join(d5, "quote.csv")
png(os.path.join(d5, "q.png"), 30, 30)
write(p, 'image,caption\nq.png,fine\nq.png,"never closed\nq.png,more\n')
rc, _, err = run(["score", p, "-o", os.path.join(d5, "q"), "--no-figures"] + M)
got = read_csv(os.path.join(d5, "q", "output.csv")) if os.path.exists(os.path.join(d5, "q", "output.csv")) else []
check(rc == 3 and len(got) == 3 and got[1][2] != "" and "quote" in got[2][-1], "unterminated quote: one bad row",
      (rc, got, err[-300:]))
# output folder that cannot be created (a file is in the way; works as root too)
blocker = os.path.join(d5, "afile")
write(blocker, "x")
rc, _, err = run(["score", inp, "-o", os.path.join(blocker, "sub")] + M)
check(rc == 1 and "afile" in err, "unwritable output folder is a clear fatal error", err[-300:])
# the input would be overwritten
p = os.path.join(d5, "output.csv")
write(p, "image,caption\nq.png,x\n")
before = sha(p)
rc, _, err = run(["score", p] + M)
check(rc == 2 and "overwritten" in err and sha(p) == before, "output path that is the input is refused", err[-300:])

# 6. Options: template, metric, embeddings, image root, quiet, help, version.
od = os.path.join(tmp, "tpl")
rc, _, err = run(["score", inp, "-o", od, "--template", "This is {}", "--metric", "clipscore",
                  "--save-embeddings", os.path.join(od, "emb"), "--no-figures", "-q"] + M)
check(rc == 0 and err == "", "--quiet run is silent", err)
got = read_csv(os.path.join(od, "output.csv"))
check(got[0][-3:] == ["similarity", "clipscore", "error"], "--metric clipscore adds a column", got[0])
ts = [float(r[4]) for r in got[1:]]
check(any(abs(a - b) > 1e-6 for a, b in zip(ts, sims)), "--template changes the scores")
check(all(abs(float(r[5]) - 2.5 * max(float(r[4]), 0)) < 2e-6 for r in got[1:]), "clipscore = 2.5 max(cos, 0)")
check(json.load(open(os.path.join(od, "run.json")))["template"] == "This is {}", "run.json records the template")
hi, ie = load_npy(os.path.join(od, "emb", "image_embeddings.npy"))
ht, te = load_npy(os.path.join(od, "emb", "text_embeddings.npy"))
check(hi["shape"] == (6, 32) and ht["shape"] == (6, 32) and hi["descr"] == "<f4", "embedding files' shape", hi)
for k in range(6):
    n = math.sqrt(sum(x * x for x in ie[k]))
    c = sum(a * b for a, b in zip(ie[k], te[k]))
    check(abs(n - 1) < 1e-5 and abs(c - ts[k]) < 1e-5, f"embedding row {k} normalised, dot = similarity", (n, c, ts[k]))
od = os.path.join(d4, "emb")
run(["score", b_in, "-o", od, "--save-embeddings", od, "--no-figures", "-q", "--max-pixels", "50000"] + M)
_, ie = load_npy(os.path.join(od, "image_embeddings.npy"))
check(len(ie) == 14 and all(math.isnan(x) for x in ie[1]) and not math.isnan(ie[0][0]), "failed rows are NaN rows")
# image root
rel = os.path.join(tmp, "rel.csv")
write(rel, "image,caption\na0.png,a cat\n")
rc, _, err = run(["score", rel, "--image-root", img, "-o", os.path.join(tmp, "rel"), "--no-figures", "-q"] + M)
check(rc == 0, "--image-root resolves relative paths", err)
rc, out, _ = run(["--help"])
check(rc == 0 and "--batch-size" in out and "Exit status" in out, "--help lists options and exit codes")
rc, _, err = run(["score", inp, "--bogus"])
check(rc == 2 and "--bogus" in err, "unknown option: exit 2")
rc, _, err = run(["score", inp, "--decode", "draft"] + M)
check(rc == 2 and "--decode draft" in err, "--decode takes exact or fast", err[-300:])
rc, _, err = run(["score", inp, "-o", os.path.join(tmp, "fast"), "--decode", "fast", "--no-figures", "-q"] + M)
rj = json.load(open(os.path.join(tmp, "fast", "run.json")))
check(rc == 0 and rj.get("decode") == "fast", "--decode fast runs and run.json records it", (rc, err[-300:]))
rc, out, _ = run(["--version"])
check(rc == 0 and out.startswith("clipscore "), "--version", out)
rc, _, err = run(["score", inp, "--template", "no hole"] + M)
check(rc == 2, "template without {} is a usage error", err)
rc, _, err = run(["score", inp] + M + ["--device", "cuda"])
check(rc == 1 and "CUDA" in err, "--device cuda on a CPU build says so", err[-300:])
# repeated images and captions are encoded once
rep = os.path.join(tmp, "rep.csv")
write(rep, "image,caption\n" + "".join(f"img/a{i % 2}.png,cap {i % 3}\n" for i in range(12)))
rc, _, err = run(["score", rep, "-o", os.path.join(tmp, "rep"), "--no-figures", "-q"] + M)
rj = json.load(open(os.path.join(tmp, "rep", "run.json")))
check(rc == 0 and rj["images_encoded"] == 2 and rj["texts_encoded"] == 3, "duplicates encoded once",
      (rj.get("images_encoded"), rj.get("texts_encoded")))

# A figure that cannot be written does not cost the scores.
if HAVE_FIGURES:
    od = os.path.join(tmp, "figfail")
    os.makedirs(os.path.join(od, "image_captions.jpg"))  # a folder where the file should go
    rc, _, err = run(["score", inp, "-o", od] + M)
    check(rc == 0 and os.path.exists(os.path.join(od, "output.csv")) and "figures not written" in err,
          "a failed figure is a warning; output.csv is written", (rc, err[-300:]))
    check(json.load(open(os.path.join(od, "run.json")))["figures"] is False, "run.json says figures: false")

# 7. Ctrl-C during a run: exit 130, no output.csv, no temporary files left (the journal of
# the rows scored stays: the same command continues the run).
import signal, time
big = os.path.join(tmp, "big")
os.makedirs(big)
write(os.path.join(big, "in.csv"), "image,caption\n" + "".join(f"../img/a{i % 6}.png,caption number {i}\n"
                                                              for i in range(200000)))
e = dict(os.environ, CLIPSCORE_CACHE=os.path.join(tmp, "cache"))
p = subprocess.Popen([BIN, "score", os.path.join(big, "in.csv"), "-o", os.path.join(big, "out"), "-q",
                      "--no-figures"] + M, stderr=subprocess.PIPE, env=e)
deadline = time.time() + 120
while time.time() < deadline and p.poll() is None:
    if os.path.isdir(os.path.join(big, "out")) and any(".tmp." in f for f in os.listdir(os.path.join(big, "out"))):
        break  # the run is under way: its temporary output exists
    time.sleep(0.05)
time.sleep(0.3)
p.send_signal(signal.SIGINT)
try:
    err = p.communicate(timeout=120)[1].decode()
except subprocess.TimeoutExpired:
    p.kill()
    err = "did not stop"
left = os.listdir(os.path.join(big, "out")) if os.path.isdir(os.path.join(big, "out")) else []
check(p.returncode == 130 and "interrupted" in err, "SIGINT stops the run with exit 130", (p.returncode, err[-300:]))
check(left == [".clipscore.journal"] and "run the same command to continue" in err,
      "an interrupted run replaces nothing; only its journal is left, to continue from", (left, err[-300:]))

# 8. A ResNet CLIP (make_tiny_model's openclip-resnet): info shows its stages, a run scores every
#    row and run.json records them.
from clitest import MAKE_MODEL
rn = os.path.join(tmp, "rn-model")
subprocess.run([MAKE_MODEL, rn, "openclip-resnet", "5"], check=True)
RN = ["--model", rn, "--device", "cpu", "--precision", "fp32"]
rc, out, err = run(["info"] + RN)
check(rc == 0 and "64 px, ResNet, stages [1, 2, 1, 1], width 8, attention pool 256 wide, 4 heads" in out,
      "info describes a ResNet", out + err[-300:])
od = os.path.join(tmp, "rn-out")
rc, _, err = run(["score", inp, "-o", od, "--no-figures", "-q"] + RN)
got = read_csv(os.path.join(od, "output.csv")) if rc == 0 else []
check(rc == 0 and len(got) == len(rows) and all(g[4] and -1 <= float(g[4]) <= 1 for g in got[1:]),
      "a ResNet scores every row", err[-300:])
rj = json.load(open(os.path.join(od, "run.json"))) if rc == 0 else {"model": {}}
check(rj["model"].get("vision_stages") == [1, 2, 1, 1] and rj["model"].get("patch_size") == 0,
      "run.json records the ResNet's stages", rj["model"])
check("vision_stages" not in json.load(open(os.path.join(d1, "run.json")))["model"],
      "a ViT's run.json has no stages")

finish()
