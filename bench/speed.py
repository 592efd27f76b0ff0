#!/usr/bin/env python3
"""speed.py - what issue 12 changed, measured: the first run (weights not yet
hashed) against a later one, and `--decode fast` against `--decode exact`
on 12 MP photos (fidelity, preprocess throughput, pairs/s end to end).

  bench/speed.py [--repeat 3] [--pairs 128] [--photos 32] [--skip PART ...]

Parts: hash, fidelity, preprocess, e2e. Uses bench.py's ViT-B/32-shaped
random model and inputs under bench/work/ (built if missing). Every timing
is repeated and the median shown, with the load average before and after
(the machine may be shared). See bench/README.md.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402  (re-executes under /usr/bin/python3 when numpy/Pillow are missing)
import modelgen  # noqa: E402
import numpy as np  # noqa: E402

CONFORMANCE = "/work/shared/conformance"


def timed(cmd, env=None):
    """Wall seconds of cmd and its CPU seconds (user + system, its threads
    together): on a shared machine the CPU time moves much less than the
    wall time, which waits for the others."""
    u0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall, u1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 3):
        sys.exit(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return wall, (u1.ru_utime - u0.ru_utime) + (u1.ru_stime - u0.ru_stime)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def photos_12mp(work, n):
    """n photo-like 4032x3024 JPEGs (q90), bench.py's generator at 12 MP."""
    folder = os.path.join(work, "photos-12mp")
    return folder, modelgen.ensure_images(folder, n, width=4032, height=3024, prefix="p12")


def conformance_12mp(work):
    """The conformance images upscaled (bicubic) to about 12 MP, saved as
    JPEG q90 (4:2:0, Pillow's default): the fidelity set."""
    from PIL import Image
    src = os.path.join(CONFORMANCE, "images")
    if not os.path.isdir(src):
        return []
    out = os.path.join(work, "conformance-12mp")
    os.makedirs(out, exist_ok=True)
    paths = []
    for name in sorted(os.listdir(src)):
        p = os.path.join(out, os.path.splitext(name)[0] + ".jpg")
        if not os.path.exists(p):
            im = Image.open(os.path.join(src, name)).convert("RGB")
            k = (12e6 / (im.width * im.height)) ** 0.5
            im.resize((round(im.width * k), round(im.height * k)), Image.BICUBIC).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def load_npy(path):
    return np.load(path)


def part_hash(a, model, pairs_csv, out):
    """First run (an empty hash memo: the weights are hashed) against a
    later one (the memo knows them), alternating, a fresh memo each pair."""
    res = {"first": ([], []), "later": ([], [])}
    for rep in range(a.repeat):
        cache = tempfile.mkdtemp(prefix="cs-memo-")
        env = dict(os.environ, CLIPSCORE_CACHE=cache)
        cmd = bench.clipscore_cmd(a, pairs_csv, model, out)
        for kind in ("first", "later"):
            wall, cpu = timed(cmd, env)
            run = json.load(open(os.path.join(out, "run.json")))
            res[kind][0].append(wall)
            res[kind][1].append(cpu)
            print(f"  {kind} run {rep + 1}: {wall:.2f} s wall, {cpu:.2f} CPU-s "
                  f"(load {run['seconds']['load_model']:.2f} s, load avg {bench.load()})", flush=True)
        shutil.rmtree(cache, ignore_errors=True)
    n = a.pairs
    print(f"\n| run ({n} pairs) | wall s (median of {a.repeat}) | CPU s (median) | all walls |")
    print("| --- | --- | --- | --- |")
    for name, kind in (("first (weights hashed)", "first"), ("later (hash remembered)", "later")):
        w, c = res[kind]
        print(f"| {name} | {median(w):.2f} | {median(c):.2f} | {', '.join(f'{x:.2f}' for x in w)} |")
    diffs = [f - l for f, l in zip(res["first"][0], res["later"][0])]
    print(f"first minus later, wall, per pair of runs: median {median(diffs):+.2f} s "
          f"({', '.join(f'{d:+.2f}' for d in diffs)}); CPU medians "
          f"{median(res['first'][1]) - median(res['later'][1]):+.2f} s")
    return res


def part_fidelity(a, model, tmp):
    """Embedding cosine, fast against exact, per conformance image at 12 MP."""
    paths = conformance_12mp(a.work)
    if not paths:
        print("fidelity: skipped (no conformance images)")
        return None
    emb = {}
    for mode in ("exact", "fast"):
        out = os.path.join(tmp, f"emb-{mode}.npy")
        timed([a.bin, "embed", "--model", model, "--device", "cpu", "--precision", "fp32", "--offline",
               "--decode", mode, "-o", out, "--images"] + paths)
        emb[mode] = load_npy(out)
    e, f = emb["exact"], emb["fast"]
    cos = (e * f).sum(1) / np.linalg.norm(e, axis=1) / np.linalg.norm(f, axis=1)
    print("\n| image (upscaled to ~12 MP) | embedding cosine fast vs exact |")
    print("| --- | --- |")
    for p, c in zip(paths, cos):
        print(f"| {os.path.basename(p)} | {c:.6f} |")
    print(f"minimum {cos.min():.6f}, mean {cos.mean():.6f} over {len(cos)} images")
    return dict(min=float(cos.min()), mean=float(cos.mean()), per_image=[float(c) for c in cos])


def part_preprocess(a, model, tmp):
    """Images per second through `clipscore preprocess` (one thread, decode
    + resize + crop + normalise), exact and fast, on 12 MP and 640x480
    JPEGs; the model load is taken out by also timing a single image."""
    sets = {"12 MP (4032x3024)": photos_12mp(a.work, a.photos),
            "640x480": (os.path.join(a.work, "images"),
                        modelgen.ensure_images(os.path.join(a.work, "images"), 128))}
    res = {}
    print(f"\n| JPEGs | decode | images/s wall (median of {a.repeat}) | ms/image wall | "
          "images per CPU-s | CPU ms/image |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, (folder, names) in sets.items():
        paths = [os.path.join(folder, n) for n in names]
        bench.warm_cache(paths)
        for mode in ("exact", "fast"):
            rates, cpu_rates = [], []
            for _ in range(a.repeat):
                base = [a.bin, "preprocess", "--model", model, "--offline", "--decode", mode, "-o",
                        os.path.join(tmp, "px.npy")]
                t1, c1 = timed(base + paths[:1])
                tn, cn = timed(base + paths)
                rates.append((len(paths) - 1) / max(tn - t1, 1e-9))
                cpu_rates.append((len(paths) - 1) / max(cn - c1, 1e-9))
            r, rc = median(rates), median(cpu_rates)
            res[f"{label} {mode}"] = dict(wall=rates, cpu=cpu_rates)
            print(f"| {label} | {mode} | {r:.1f} | {1000 / r:.1f} | {rc:.1f} | {1000 / rc:.1f} |", flush=True)
    return res


def part_e2e(a, model, tmp):
    """pairs/s of `clipscore score` on 12 MP photos, exact and fast."""
    folder, names = photos_12mp(a.work, a.photos)
    caps = modelgen.captions(len(names))
    csv_path = os.path.join(a.work, f"pairs-12mp-{len(names)}.csv")
    modelgen.write_csv(csv_path, [(os.path.join("photos-12mp", m), c) for m, c in zip(names, caps)])
    bench.warm_cache([os.path.join(folder, m) for m in names])
    res = {}
    print(f"\n| decode | pairs | wall s (median of {a.repeat}) | pairs/s e2e | pairs/s steady | "
          "decode+pre CPU s | encoder waited s | process CPU s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for mode in ("exact", "fast"):
        walls, cpus, runs = [], [], []
        for _ in range(a.repeat):
            out = os.path.join(tmp, f"e2e-{mode}")
            wall, cpu = timed(bench.clipscore_cmd(a, csv_path, model, out) + ["--decode", mode])
            walls.append(wall)
            cpus.append(cpu)
            runs.append(json.load(open(os.path.join(out, "run.json"))))
        i = walls.index(sorted(walls)[len(walls) // 2])
        s = runs[i]["seconds"]
        n = len(names)
        print(f"| {mode} | {n} | {walls[i]:.2f} | {n / walls[i]:.2f} | {n / s['total']:.2f} | "
              f"{s['decode_preprocess_cpu']:.2f} | {s['wait_for_decode']:.2f} | {cpus[i]:.2f} |", flush=True)
        res[mode] = dict(walls=walls, cpu=cpus, seconds=s)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=128, help="pairs of the first/later-run comparison")
    ap.add_argument("--photos", type=int, default=32, help="12 MP photos for preprocess and e2e")
    ap.add_argument("--skip", nargs="*", default=[], choices=["hash", "fidelity", "preprocess", "e2e"])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "clipscore"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    a.gpu, a.batch_size = False, 0
    if not a.threads:
        a.threads = len(os.sched_getaffinity(0))
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "model-vitb32")
    note = modelgen.write_model(model, modelgen.VIT_B32, seed=1, vocab_words=modelgen.caption_words())
    print(f"model: ViT-B/32 shapes, random weights, {note}; commit {bench.git_commit()}; "
          f"{bench.cpu_model()}, {os.cpu_count()} cores, load avg {bench.load()}")
    bench.warm_cache([os.path.join(model, "open_clip_model.safetensors")])
    tmp = tempfile.mkdtemp(prefix="cs-speed-")
    results = {}
    try:
        if "hash" not in a.skip:
            names = modelgen.ensure_images(os.path.join(a.work, "images"), a.pairs)
            pairs_csv = os.path.join(a.work, f"pairs-{a.pairs}.csv")
            modelgen.write_csv(pairs_csv, [("images/" + m, c) for m, c in zip(names, modelgen.captions(a.pairs))])
            bench.warm_cache([os.path.join(a.work, "images", m) for m in names])
            print(f"\nfirst run against a later one: {a.pairs} pairs of 640x480 JPEGs")
            results["hash"] = part_hash(a, model, pairs_csv, os.path.join(tmp, "hash"))
        if "fidelity" not in a.skip:
            results["fidelity"] = part_fidelity(a, model, tmp)
        if "preprocess" not in a.skip:
            results["preprocess"] = part_preprocess(a, model, tmp)
        if "e2e" not in a.skip:
            results["e2e"] = part_e2e(a, model, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = os.path.join(a.work, "speed-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nresults: {path}; load avg now {bench.load()}")


if __name__ == "__main__":
    main()
