#!/usr/bin/env python3
"""inputs.py - does reading webdataset tars, or keeping the resume journal,
slow clipscore down? The same pairs scored three ways, alternating, R times:

  csv         one CSV of JPEG files (the journal on, the default)
  tars        the same JPEGs and captions in 4 webdataset tar shards
  no-journal  the CSV with --no-resume

  bench/inputs.py [--pairs 512] [--repeat 3] [--threads N] [--bin build/clipscore]

The model and images are bench.py's (ViT-B/32 shapes, random weights, 640x480
JPEGs, cached under bench/work/). Reports each way's fastest and median
wall time and pairs/s, the tars' throughput relative to the CSV's, and the
journal's cost relative to no journal. See bench/README.md.
"""
import argparse
import io
import json
import os
import statistics
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (re-executes under the system python when needed)
import modelgen  # noqa: E402


def make_tars(work, names, caps, n_tars):
    paths = []
    per = (len(names) + n_tars - 1) // n_tars
    for t in range(n_tars):
        p = os.path.join(work, f"pairs-{len(names)}-{t}.tar")
        paths.append(p)
        if os.path.exists(p):
            continue
        with tarfile.open(p + ".tmp", "w") as tf:
            for i in range(t * per, min(len(names), (t + 1) * per)):
                key = f"{i:09d}"
                for ext, data in (("jpg", open(os.path.join(work, "images", names[i]), "rb").read()),
                                  ("txt", caps[i].encode())):
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        os.replace(p + ".tmp", p)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=512)
    ap.add_argument("--tars", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--bin", default=os.path.join(bench.ROOT, "build", "clipscore"))
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    a = ap.parse_args()
    a.gpu = False
    if not a.threads:
        a.threads = len(os.sched_getaffinity(0))
    os.makedirs(a.work, exist_ok=True)
    model = os.path.join(a.work, "model-vitb32")
    print(modelgen.write_model(model, modelgen.VIT_B32, seed=1, vocab_words=modelgen.caption_words()))
    names = modelgen.ensure_images(os.path.join(a.work, "images"), a.pairs)
    caps = modelgen.captions(a.pairs)
    pairs_csv = os.path.join(a.work, f"pairs-{a.pairs}.csv")
    modelgen.write_csv(pairs_csv, [("images/" + m, c) for m, c in zip(names, caps)])
    tars = make_tars(a.work, names, caps, a.tars)
    bench.warm_cache([os.path.join(model, "open_clip_model.safetensors"), pairs_csv] + tars +
                     [os.path.join(a.work, "images", m) for m in names])

    def cmd(inputs, extra=()):
        c = bench.clipscore_cmd(a, inputs[0], model, os.path.join(a.work, "out-inputs"))
        return c[:2] + inputs[1:] + c[2:] + list(extra)

    ways = {"csv": cmd([pairs_csv]), "tars": cmd(tars), "no-journal": cmd([pairs_csv], ["--no-resume"])}
    walls = {k: [] for k in ways}
    stages = {k: [] for k in ways}  # run.json's own timings: noise-free shares of a run
    for rep in range(a.repeat):
        for k, c in ways.items():
            m = bench.run_measured(c, os.path.join(a.work, f"inputs-{k}.log"))
            if m["rc"] not in (0, 3):
                sys.exit(f"{k}: clipscore failed, see {a.work}/inputs-{k}.log")
            walls[k].append(m["wall"])
            with open(os.path.join(a.work, "out-inputs", "run.json")) as f:
                t = json.load(f)["seconds"]
            stages[k].append(t)
            print(f"run {rep + 1} {k:10s} {m['wall']:7.2f} s  {a.pairs / m['wall']:6.2f} pairs/s  "
                  f"read {t['read']:.2f} s, encoders waiting for decode {t['wait_for_decode']:.2f} s, "
                  f"journal {t.get('journal', 0):.3f} s of {t['total']:.1f} s "
                  f"(others used {m['others']:.1f} CPU-s meanwhile)", flush=True)
    print(f"\n| way | fastest s | median s | pairs/s (fastest) |\n|---|---|---|---|")
    for k, w in walls.items():
        print(f"| {k} | {min(w):.2f} | {statistics.median(w):.2f} | {a.pairs / min(w):.2f} |")
    tar_rel = min(walls["csv"]) / min(walls["tars"])
    journal = min(walls["csv"]) / min(walls["no-journal"]) - 1
    print(f"\ntars' pairs/s / CSV's: {tar_rel:.3f} (fastest runs; medians "
          f"{statistics.median(walls['csv']) / statistics.median(walls['tars']):.3f})")
    print(f"journal's cost: {100 * journal:+.2f}% of the run (fastest runs; medians "
          f"{100 * (statistics.median(walls['csv']) / statistics.median(walls['no-journal']) - 1):+.2f}%)")
    for k in ways:
        t = stages[k]
        print(f"{k}: read stage {statistics.median(x['read'] for x in t):.2f} s, encoders waiting for "
              f"decode {statistics.median(x['wait_for_decode'] for x in t):.2f} s, journal "
              f"{statistics.median(x.get('journal', 0) for x in t):.3f} s, of "
              f"{statistics.median(x['total'] for x in t):.1f} s (medians of run.json's timings)")
    jt = [x["journal"] / x["total"] for x in stages["csv"]]
    print(f"journal's share of the CSV runs, measured inside clipscore: {100 * max(jt):.2f}% at most")


if __name__ == "__main__":
    main()
