"""Shared helpers of the command-line tests (test_cli.py, test_hardening.py).

Importing it reads argv (CLIPSCORE MAKE_TINY_MODEL), makes a temporary folder
with a tiny random model and six small PNGs, and counts checks; finish()
prints 'N passed, N failed' and exits 1 when a check failed. Standard
library only.
"""
import csv, hashlib, os, shutil, struct, subprocess, sys, tempfile, zlib

BIN, MAKE_MODEL = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
HAVE_FIGURES = os.environ.get("CLIPSCORE_FIGURES", "1") != "0"
_count = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    if ok:
        _count["passed"] += 1
    else:
        _count["failed"] += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""), flush=True)


def finish():
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{_count['passed']} passed, {_count['failed']} failed")
    sys.exit(1 if _count["failed"] else 0)


def png(path, w, h, seed=0, mode="RGB"):
    """A small PNG written with zlib (8-bit RGB, RGBA or gray)."""
    ch = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    ctype = {"RGB": 2, "RGBA": 6, "L": 0}[mode]
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            for c in range(ch):
                raw.append((x * 7 + y * 13 + c * 50 + seed * 31) % 256)
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)
    return data


def env(extra=None):
    e = dict(os.environ)
    e.pop("CLIPSCORE_OFFLINE", None)
    e["CLIPSCORE_CACHE"] = os.path.join(tmp, "cache")  # keep the user's cache out of it
    if extra:
        e.update(extra)
    return e


def run(args, cwd=None, env_extra=None, stdin=None, timeout=300, **kw):
    p = subprocess.run([BIN] + args, capture_output=True, cwd=cwd, env=env(env_extra), timeout=timeout,
                       stdin=stdin, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def write(path, text, mode="w"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""})) as f:
        f.write(text)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def load_npy(path):
    with open(path, "rb") as f:
        assert f.read(6) == b"\x93NUMPY"
        f.read(2)
        hl = struct.unpack("<H", f.read(2))[0]
        h = eval(f.read(hl).decode("latin1"))
        data = f.read()
    n = len(data) // 4
    vals = struct.unpack(f"<{n}f", data)
    rows, cols = h["shape"]
    return h, [vals[i * cols:(i + 1) * cols] for i in range(rows)]


tmp = tempfile.mkdtemp(prefix="clipscore-cli-")
model = os.path.join(tmp, "model")
subprocess.run([MAKE_MODEL, model, "hf", "3"], check=True)
img = os.path.join(tmp, "img")
os.makedirs(img)
for i in range(6):
    png(os.path.join(img, f"a{i}.png"), 40 + 9 * i, 30 + 5 * i, seed=i, mode=["RGB", "RGBA", "L"][i % 3])
M = ["--model", model, "--device", "cpu", "--precision", "fp32"]
