#!/usr/bin/env python3
"""End-to-end test of model fetching through the command line, against the
test HTTP server on 127.0.0.1 (no other network).

A model folder is served, named in a CLIPSCORE_REGISTRY file with the
SHA-256 of each file, fetched into an empty cache by `clipscore score`,
then used again with the server gone and CLIPSCORE_OFFLINE=1. The scores
must equal those of the same folder used directly (the tiny model written
by make_tiny_model), and, when the shared conformance fixtures exist, the
reference's similarities within the conformance tolerance (0.002).
Usage: test_fetch_cli.py CLIPSCORE MAKE_TINY_MODEL TEST_HTTP_SERVER
"""
import csv, hashlib, json, os, shutil, subprocess, sys, tempfile

BIN, MAKE_MODEL, SERVER = (os.path.abspath(a) for a in sys.argv[1:4])
CONF = os.environ.get("CLIPSCORE_CONFORMANCE", "")
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    passed += bool(ok)
    failed += not ok
    if not ok:
        print(f"FAIL {what}: {detail}", flush=True)


def run(args, env):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPSCORE_", "HF_"))}
    e["CLIPSCORE_CACHE"] = os.path.join(tmp, "default-cache")  # never the user's cache
    e.update(env)
    p = subprocess.run([BIN] + args, capture_output=True, env=e, timeout=600)
    return p.returncode, p.stdout.decode(), p.stderr.decode("utf-8", "replace")


def sims(path):
    with open(path, newline="", encoding="utf-8") as f:
        return [float(r["similarity"]) for r in csv.DictReader(f)]


class Server:
    def __init__(self, folder):
        self.p = subprocess.Popen([SERVER, folder, "--timeout", "600"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        self.port = int(self.p.stdout.readline())

    def stop(self):
        self.p.stdin.close()
        self.p.wait(timeout=30)


def registry(path, name, folder, port):
    files = {}
    for f in sorted(os.listdir(folder)):
        digest = hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest()
        files[f] = {"url": f"http://127.0.0.1:{port}/{f}", "sha256": digest}
    json.dump({name: {"files": files}}, open(path, "w"))


def scenario(tag, model_dir, pairs, expected):
    tmp = tempfile.mkdtemp(prefix=f"clipscore-fetch-{tag}-")
    cache, reg = os.path.join(tmp, "cache"), os.path.join(tmp, "registry.json")
    srv = Server(model_dir)
    registry(reg, "tiny/test", model_dir, srv.port)
    env = {"CLIPSCORE_CACHE": cache, "CLIPSCORE_REGISTRY": reg}
    args = ["score", pairs, "--model", "tiny/test", "--device", "cpu", "--precision", "fp32", "--no-figures"]
    rc, _, err = run(args + ["-o", os.path.join(tmp, "fetched")], env)
    check(rc == 0, f"{tag}: first run fetches the model and scores", err[-600:])
    srv.stop()
    if rc:
        return
    got = sims(os.path.join(tmp, "fetched", "output.csv"))
    d = max(abs(a - b) for a, b in zip(got, expected))
    check(len(got) == len(expected) and d <= 2e-3, f"{tag}: fetched model scores as expected", d)
    # server gone, offline: the cache alone must do
    rc, _, err = run(args + ["-o", os.path.join(tmp, "cached")], dict(env, CLIPSCORE_OFFLINE="1"))
    check(rc == 0, f"{tag}: cached run with the network gone", err[-600:])
    if rc == 0:
        check(sims(os.path.join(tmp, "cached", "output.csv")) == got, f"{tag}: cached run gives the same scores")
    rc, out, err = run(["models"], env)
    check(rc == 0 and "tiny/test" in out, f"{tag}: `clipscore models` lists the registry name", out + err)
    shutil.rmtree(tmp, ignore_errors=True)


tmp = tempfile.mkdtemp(prefix="clipscore-fetch-cli-")
# Always: the tiny model, against the same folder used directly.
model = os.path.join(tmp, "model")
subprocess.run([MAKE_MODEL, model, "hf", "5"], check=True)
img = os.path.join(tmp, "a.ppm")
with open(img, "wb") as f:
    f.write(b"P6 24 20 255\n" + bytes((x * 11 + y * 5) % 256 for y in range(20) for x in range(24 * 3)))
pairs = os.path.join(tmp, "pairs.csv")
with open(pairs, "w") as f:
    f.write("image,caption\na.ppm,a photo of the cat\na.ppm,the red dog\n")
rc, _, err = run(["score", pairs, "--model", model, "--device", "cpu", "-o", os.path.join(tmp, "direct"),
                  "--no-figures", "-q"], {})
check(rc == 0, "tiny model scores directly", err[-400:])
if rc == 0:
    scenario("tiny", model, pairs, sims(os.path.join(tmp, "direct", "output.csv")))

# The default model, ViT-B/32: offline with an empty cache says how to fetch it;
# through a mirror that lacks the file, a clear 404 naming the file.
env = {"CLIPSCORE_CACHE": os.path.join(tmp, "empty-cache")}
rc, _, err = run(["score", pairs, "--no-figures", "--offline"], env)
check(rc == 1 and "clipscore models fetch ViT-B/32" in err, "offline, empty cache: says which command fetches",
      err[-400:])
srv = Server(tmp)
rc, _, err = run(["score", pairs, "--no-figures"], dict(env, CLIPSCORE_MIRROR=f"http://127.0.0.1:{srv.port}"))
srv.stop()
check(rc == 1 and "404" in err and "ViT-B-32.pt" in err, "default model through a mirror: 404 names the file",
      err[-400:])
check(not os.path.exists(os.path.join(tmp, "output.csv")), "nothing written when the model is missing")

# With the shared fixtures: the conformance model fetched, scored against the reference.
if CONF and os.path.isdir(CONF):
    exp = os.path.join(CONF, "expected", "expected_similarity.csv")
    scenario("conformance", os.path.join(CONF, "model-hf"), os.path.join(CONF, "pairs.csv"), sims(exp))
else:
    print("conformance fixtures not found: that part skipped")

shutil.rmtree(tmp, ignore_errors=True)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
