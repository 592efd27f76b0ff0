"""Curation at scale: webdataset tars and img2dataset folders as inputs, shards
(--shard K/N) and clipscore merge, resuming a killed run, kept.csv.

Usage: test_scale.py CLIPSCORE MAKE_TINY_MODEL (see clitest.py).
"""
import gzip, io, json, math, os, shutil, signal, subprocess, tarfile, time

from clitest import BIN, M, check, env, finish, model, png, read_csv, run, tmp, write

WORDS = "red green blue dog cat house tree car sky sea boat bird".split()
S = os.path.join(tmp, "scale")
os.makedirs(S)


def png_bytes(w, h, seed):
    p = os.path.join(tmp, "_png")
    return png(p, w, h, seed=seed)


def add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def make_tar(path, shard, n, skip_image=(), skip_caption=(), corrupt=(), mode="w"):
    """n samples KEY.png + KEY.txt + KEY.json (url); some left out or corrupt."""
    with tarfile.open(path, mode) as tf:
        for i in range(n):
            k = f"{shard:05d}{i:04d}"
            if i not in skip_image:
                add(tf, k + ".png", b"\x89PNG garbage" * 5 if i in corrupt else png_bytes(24 + i % 7, 20 + shard, 100 * shard + i))
            if i not in skip_caption:
                add(tf, k + ".txt", f"a {WORDS[i % 12]} near a {WORDS[(i * 5 + shard) % 12]}\n".encode())
            add(tf, k + ".json", json.dumps({"url": f"https://example.com/{k}.png", "key": k}).encode())


def sims(rows):
    h = rows[0]
    return [r[h.index("similarity")] for r in rows[1:]]


# ---------------------------------------------------------------- inputs
t0 = os.path.join(S, "s0.tar")
t1 = os.path.join(S, "s1.tar.gz")
t2 = os.path.join(S, "s2.tar")
make_tar(t0, 0, 12, skip_caption=(4,), corrupt=(7,))
make_tar(t1, 1, 10, skip_image=(2,), mode="w:gz")
make_tar(t2, 2, 14)
os.makedirs(os.path.join(S, "img"))
lines = ["image,caption"]
for i in range(9):
    png(os.path.join(S, "img", f"c{i}.png"), 22 + i, 26, seed=300 + i)
    lines.append(f"img/c{i}.png,a {WORDS[i]} thing")
csv_in = os.path.join(S, "in.csv")
write(csv_in, "\n".join(lines) + "\n")
inputs = [t0, t1, t2, csv_in]
total = 12 + 10 + 14 + 9

rc, _, err = run(["score"] + inputs + M + ["-o", os.path.join(S, "single"), "-q"])
out = read_csv(os.path.join(S, "single", "output.csv"))
check(rc == 3, "tars, a .tar.gz and a CSV in one run: some rows failed, exit 3", (rc, err[-400:]))
check(out[0] == ["key", "source", "url", "caption", "similarity", "error"], "sample columns", out[0])
check(len(out) - 1 == total, "every sample and row is a row, in order", len(out) - 1)
by_key = {r[0]: r for r in out[1:]}
r = by_key.get("000000004", [])
check(r and r[5] and "caption" in r[5] and "s0.tar" in r[5], "a sample without a caption is a row error naming the tar", r)
r = by_key.get("000000007", [])
check(r and r[5] and r[4] == "", "a corrupt image member is a row error", r)
r = by_key.get("000010002", [])
check(r and "image" in r[5], "a sample without an image is a row error", r)
r = by_key.get("000020003", [])
check(r and r[1] == t2 and r[2] == "https://example.com/000020003.png" and r[3] == "a dog near a house"
      and r[4] and not r[5], "a good sample: source as given, url from its json, caption without newline", r)
check(out[1][0] == "000000000" and out[-1][0] == "img/c8.png" and out[-1][1] == csv_in,
      "CSV rows: key = image path as written, source = the CSV", (out[1][:2], out[-1][:2]))
j = json.load(open(os.path.join(S, "single", "run.json")))
check(j["inputs"] == inputs and len(j["inputs_digest"]) == 64 and j["failed"] == 3,
      "run.json lists the inputs, their digest and the failures", {k: j.get(k) for k in ("inputs", "failed")})

# The same samples as an img2dataset folder give the same scores.
fold = os.path.join(S, "files")
os.makedirs(os.path.join(fold, "00000"))
with tarfile.open(t2) as tf:
    tf.extractall(os.path.join(fold, "00000"))
rc, _, err = run(["score", fold] + M + ["-o", os.path.join(S, "fold"), "-q"])
fo = read_csv(os.path.join(S, "fold", "output.csv"))
tar_rows = [r for r in out[1:] if r[1] == t2]
# Printed to 6 decimals: rows encoded in other batches may differ by a rounding
# step of the encoders, which can turn the last printed digit (1e-6).
def close(a, b):
    return (a == b) if not (a and b) else abs(float(a) - float(b)) <= 1e-6 + 1e-9


check(rc == 0 and [r[0] for r in fo[1:]] == ["00000/" + r[0] for r in tar_rows]
      and all(close(a[4], b[4]) for a, b in zip(fo[1:], tar_rows)),
      "a files folder: keys with their subfolder, same scores as the tar", (rc, err[-300:], fo[1:3]))

# A truncated tar: an error row naming the tar and the last key read; the run goes on.
trunc = os.path.join(S, "trunc.tar")
data = open(t2, "rb").read()
write(trunc, data[: len(data) // 2 + 100], "wb")
rc, _, err = run(["score", trunc, csv_in] + M + ["-o", os.path.join(S, "trunc"), "-q"])
tr = read_csv(os.path.join(S, "trunc", "output.csv"))
bad = [r for r in tr[1:] if r[5]]
check(rc == 3 and len(bad) == 1 and "trunc.tar" in bad[0][5] and bad[0][0] in bad[0][5]
      and "truncated" in bad[0][5].lower(), "a truncated tar is one error row naming it and its last key",
      (rc, bad, err[-300:]))
check(len(tr) - 1 > 9 and tr[-1][1] == csv_in, "the rows before the cut and the next input are scored", len(tr))

# --image-key / --caption-key.
alt = os.path.join(S, "alt.tar")
with tarfile.open(alt, "w") as tf:
    for i in range(3):
        add(tf, f"k{i}.img.png", png_bytes(20, 20, i))
        add(tf, f"k{i}.title", f"a {WORDS[i]}".encode())
rc, _, err = run(["score", alt, "--image-key", "img.png", "--caption-key", "title"] + M + ["-o", os.path.join(S, "alt"), "-q"])
al = read_csv(os.path.join(S, "alt", "output.csv"))
check(rc == 0 and [r[0] for r in al[1:]] == ["k0", "k1", "k2"] and al[2][3] == "a green",
      "--image-key and --caption-key choose the members", (rc, err[-300:], al))

# ---------------------------------------------------------------- shards and merge
def score_parts(n, dest, extra=()):
    for k in range(n):
        rc, _, err = run(["score"] + inputs + M + ["-o", os.path.join(dest, f"p{k}"), "--shard", f"{k}/{n}", "-q"] + list(extra))
        if rc not in (0, 3):
            return err
    return ""


for n, how in ((3, "whole inputs"), (6, "row ranges")):
    d = os.path.join(S, f"sh{n}")
    e = score_parts(n, d)
    check(not e, f"{n} shards score", e[-300:])
    share = [json.load(open(os.path.join(d, f"p{k}", "run.json")))["share"] for k in range(n)]
    if n <= len(inputs):
        want = [{"first_input": k * 4 // n, "end_input": (k + 1) * 4 // n} for k in range(n)]
    else:
        want = [{"first_row": k * total // n, "end_row": (k + 1) * total // n} for k in range(n)]
    check(share == want, f"{n} shards: {how}, as documented", share)
    parts = [os.path.join(d, f"p{k}") for k in reversed(range(n))]  # any order
    rc, _, err = run(["merge", "-o", os.path.join(d, "merged")] + parts)
    mo = read_csv(os.path.join(d, "merged", "output.csv"))
    same = len(mo) == len(out) and all(
        a[:4] == b[:4] and a[5] == b[5] and close(a[4], b[4])
        for a, b in zip(mo[1:], out[1:]))
    check(rc == 3 and mo[0] == out[0] and same, f"merge of {n} parts equals the single run", (rc, err[-300:]))
    mj = json.load(open(os.path.join(d, "merged", "run.json")))
    rep = os.path.join(d, "merged", "report.html")
    html = open(rep, encoding="utf-8").read() if os.path.exists(rep) else ""
    check(mj.get("report") is True and "report.html" in mj.get("outputs", []) and "<html" in html
          and f"{total} rows" in html, f"merge of {n} parts writes report.html of all rows", mj.get("report"))
    check(mj["rows"] == total and mj["failed"] == 3 and len(mj["parts"]) == n
          and abs(mj["mean_similarity"] - j["mean_similarity"]) < 1e-6,
          f"merged run.json: summed counts, mean, each part", {k: mj.get(k) for k in ("rows", "failed", "mean_similarity")})

# Figures: the first of 6 parts holds fewer rows than the figures show, so the merge
# draws them again from the merged rows, reading the images again.
import clitest
if clitest.HAVE_FIGURES:
    d = os.path.join(S, "sh6", "merged")
    mj = json.load(open(os.path.join(d, "run.json")))
    check(mj["figures"] is True and os.path.getsize(os.path.join(d, "image_captions.jpg")) > 1000
          and os.path.getsize(os.path.join(d, "similarity_matrix.jpg")) > 1000,
          "merge draws the figures again when the first part is short", mj.get("figures"))
    moved = t0 + ".away"
    os.rename(t0, moved)
    rc, _, err = run(["merge", "-o", os.path.join(S, "sh6", "m2")] + [os.path.join(S, "sh6", f"p{k}") for k in range(6)])
    os.rename(moved, t0)
    check(rc == 3 and "warning: figures not drawn" in err and os.path.exists(os.path.join(S, "sh6", "m2", "output.csv"))
          and not os.path.exists(os.path.join(S, "sh6", "m2", "image_captions.jpg")),
          "images not reachable: the figures are a warning, the merge goes on", (rc, err[-300:]))

# Refusals, each naming the part.
d = os.path.join(S, "sh3")
parts = [os.path.join(d, f"p{k}") for k in range(3)]
rc, _, err = run(["merge", "-o", os.path.join(S, "mx")] + parts[:2])
check(rc != 0 and "2/3 is missing" in err, "merge refuses a missing part", err[-300:])
rc, _, err = run(["merge", "-o", os.path.join(S, "mx")] + parts + [parts[1]])
check(rc != 0 and "both shard 1/3" in err, "merge refuses a repeated part", err[-300:])
other = os.path.join(S, "other")
shutil.copytree(parts[1], other)
write(os.path.join(other, ".clipscore.journal"), "clipscore journal 2\n{}\n")
rc, _, err = run(["merge", "-o", os.path.join(S, "mx"), parts[0], other, parts[2]])
check(rc != 0 and "unfinished" in err and other in err, "merge refuses an unfinished part", err[-300:])
os.remove(os.path.join(other, ".clipscore.journal"))
os.remove(os.path.join(other, "run.json"))
rc, _, err = run(["merge", "-o", os.path.join(S, "mx"), parts[0], other, parts[2]])
check(rc != 0 and "no run.json" in err and other in err, "merge refuses a part without run.json", err[-300:])
model2 = os.path.join(tmp, "model2")
subprocess.run([os.path.abspath(__import__("sys").argv[2]), model2, "hf", "7"], check=True)
M2 = ["--model", model2] + M[2:]
rc, _, err = run(["score"] + inputs + M2 + ["-o", other, "--shard", "1/3", "-q"])
rc, _, err = run(["merge", "-o", os.path.join(S, "mx"), parts[0], other, parts[2]])
check(rc != 0 and "other model weights" in err and other in err, "merge refuses a part of another model", err[-300:])
rc, _, err = run(["score"] + inputs + M + ["-o", other, "--shard", "1/3", "--template", "a photo of {}", "-q"])
rc, _, err = run(["merge", "-o", os.path.join(S, "mx"), parts[0], other, parts[2]])
check(rc != 0 and "template" in err and other in err, "merge refuses a part scored with another template", err[-300:])
rc, _, err = run(["score"] + inputs[:3] + M + ["-o", other, "--shard", "1/3", "-q"])
rc, _, err = run(["merge", "-o", os.path.join(S, "mx"), parts[0], other, parts[2]])
check(rc != 0 and "input list" in err, "merge refuses a part of another input list", err[-300:])
check(not os.path.exists(os.path.join(S, "mx", "output.csv")), "a refused merge writes nothing")

# --shard slurm reads the array's variables.
rc, _, err = run(["score"] + inputs + M + ["-o", os.path.join(S, "slurm1"), "--shard", "slurm", "-q"],
                 env_extra={"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "3"})
sj = json.load(open(os.path.join(S, "slurm1", "run.json"))) if rc in (0, 3) else {}
check(sj.get("shard") == [1, 3] and "shard 1/3" in err, "--shard slurm: K = task id - min, N = count, said on stderr",
      (rc, err[-300:], sj.get("shard")))
rc, _, err = run(["score"] + inputs + M + ["-o", os.path.join(S, "slurm2"), "--shard", "slurm", "-q"],
                 env_extra={"SLURM_ARRAY_TASK_ID": "", "SLURM_ARRAY_TASK_MIN": "", "SLURM_ARRAY_TASK_COUNT": ""})
check(rc == 2 and "Slurm" in err, "--shard slurm outside an array is a usage error", (rc, err[-300:]))
rc, _, err = run(["score", csv_in] + M + ["--shard", "3/3"])
check(rc == 2 and "K/N" in err, "--shard 3/3 is refused", (rc, err[-200:]))

# ---------------------------------------------------------------- kept.csv
def expected_kept(rows, t=None, f=None):
    h = rows[0]
    si = h.index("similarity")
    scored = [(float(r[si]), i) for i, r in enumerate(rows[1:]) if r[si]]
    keep = set(i for _, i in scored)
    if t is not None:
        keep &= {i for s, i in scored if s >= t}
    if f is not None:
        k = max(1, math.ceil(f * len(scored) - 1e-9))
        order = sorted(scored, key=lambda x: (-x[0], x[1]))  # ties: input order
        keep &= {i for _, i in order[:k]}
    return [h] + [r for i, r in enumerate(rows[1:]) if i in keep]


med = sorted(float(s) for s in sims(out) if s)[len([s for s in sims(out) if s]) // 2]
for opts, t, f in ((["--keep-threshold", f"{med:.6f}"], med, None), (["--keep-fraction", "0.3"], None, 0.3),
                   (["--keep-threshold", f"{med:.6f}", "--keep-fraction", "0.3"], med, 0.3)):
    d = os.path.join(S, "keep" + "_".join(o.strip("-") for o in opts))
    rc, _, err = run(["score"] + inputs + M + ["-o", d, "-q"] + opts)
    kept = read_csv(os.path.join(d, "kept.csv")) if os.path.exists(os.path.join(d, "kept.csv")) else []
    want = expected_kept(read_csv(os.path.join(d, "output.csv")), float(f"{t:.6f}") if t is not None else None, f)
    kj = json.load(open(os.path.join(d, "run.json"))).get("keep", {})
    check(rc == 3 and kept == want and kj.get("kept") == len(want) - 1 and kj.get("threshold") is not None,
          f"kept.csv for {' '.join(opts)}: the rows as the rule says; run.json records count and threshold",
          (rc, err[-300:], len(kept), len(want), kj))

# Ties at the fraction's cut are kept in input order: the same caption and image five times.
tie = os.path.join(S, "tie.csv")
write(tie, "image,caption\n" + "img/c0.png,a red thing\n" * 5 + "img/c1.png,a green thing\n")
rc, _, err = run(["score", tie] + M + ["-o", os.path.join(S, "tie"), "-q", "--keep-fraction", "0.5"])
to = read_csv(os.path.join(S, "tie", "output.csv"))
kept = read_csv(os.path.join(S, "tie", "kept.csv"))
check(kept == expected_kept(to, None, 0.5) and len(kept) - 1 == 3, "fraction ties: kept in input order", kept)

# The fraction is global over merged shards.
d = os.path.join(S, "sh3")
rc, _, err = run(["merge", "-o", os.path.join(S, "mkeep"), "--keep-fraction", "0.3"] + [os.path.join(d, f"p{k}") for k in range(3)])
mk = read_csv(os.path.join(S, "mkeep", "kept.csv"))
check(rc == 3 and mk == expected_kept(read_csv(os.path.join(S, "mkeep", "output.csv")), None, 0.3),
      "merge --keep-fraction takes the top fraction over all parts", (rc, err[-300:]))

# ---------------------------------------------------------------- resume
big = os.path.join(S, "big.csv")
write(big, "image,caption\n" + "".join(f"img/c{i % 9}.png,a {WORDS[i % 12]} and {WORDS[(i * 7) % 12]} no {i}\n" for i in range(1500)))
ref = os.path.join(S, "ref")
rc, _, err = run(["score", big] + M + ["-o", ref, "-q", "-b", "2"])
check(rc == 0, "the uninterrupted run", err[-300:])


def marks(path):
    try:
        return open(path, "rb").read().count(b"MARK\x00\x00\x00\x00")
    except OSError:
        return 0


res = os.path.join(S, "res")
killed = False
for attempt in range(3):
    shutil.rmtree(res, ignore_errors=True)
    p = subprocess.Popen([BIN, "score", big, "-o", res, "-q", "-b", "2"] + M, env=env(), stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None and marks(os.path.join(res, ".clipscore.journal")) < 2:
        time.sleep(0.01)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = True
        break
check(killed, "the run was killed mid-way (SIGKILL)")
check(not os.path.exists(os.path.join(res, "output.csv")), "a killed run replaces nothing")
# A record cut short or damaged at the end (a crash mid-write) is dropped, with what follows it.
with open(os.path.join(res, ".clipscore.journal"), "ab") as fh:
    fh.write(b"JROW\x10\x00\x00\x00garbage")
rc, _, err = run(["score", big] + M + ["-o", res, "-b", "2", "--no-figures"])
check(rc == 2 and "figure_limit" in err and "--restart" in err, "a restart with other options is refused, naming the option",
      (rc, err[-300:]))
rc, _, err = run(["score", big] + M + ["-o", res, "-b", "2"])
rj = json.load(open(os.path.join(res, "run.json"))) if rc == 0 else {}
n = rj.get("resumed_rows", 0)
check(rc == 0 and f"resuming: {n} rows already scored" in err and n >= 32, "the same command continues the run",
      (rc, n, err[-300:]))
check(open(os.path.join(res, "output.csv"), "rb").read() == open(os.path.join(ref, "output.csv"), "rb").read(),
      "resumed after SIGKILL: output.csv identical to the uninterrupted run's")
check(open(os.path.join(res, "image_captions.jpg"), "rb").read() == open(os.path.join(ref, "image_captions.jpg"), "rb").read()
      if os.path.exists(os.path.join(ref, "image_captions.jpg")) else True, "and the same figures")
check(not os.path.exists(os.path.join(res, ".clipscore.journal")), "the journal is removed once committed")
check(rj.get("rows") == 1500 and rj.get("scored") == 1500, "run.json counts the resumed rows", rj.get("rows"))
# --restart starts over.
rc, _, err = run(["score", big] + M + ["-o", res, "-b", "2", "--restart", "-q"])
check(rc == 0 and json.load(open(os.path.join(res, "run.json")))["resumed_rows"] == 0, "--restart starts over", err[-200:])
# A changed input is refused.
shutil.rmtree(res)
p = subprocess.Popen([BIN, "score", big, "-o", res, "-q", "-b", "2"] + M, env=env(), stderr=subprocess.DEVNULL)
while p.poll() is None and marks(os.path.join(res, ".clipscore.journal")) < 1:
    time.sleep(0.01)
p.send_signal(signal.SIGKILL)
p.wait()
with open(big, "a") as fh:
    fh.write("img/c0.png,one more row\n")
rc, _, err = run(["score", big] + M + ["-o", res, "-b", "2", "-q"])
check(rc == 2 and big in err and "changed" in err, "a changed input is refused, naming it", (rc, err[-300:]))

finish()
