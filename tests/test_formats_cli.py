#!/usr/bin/env python3
"""End-to-end test of the formats decoded in src/image_*.c: WebP, TIFF
(LZW, CMYK), JPEG 2000 (JP2, J2K), ICO, HEIC and AVIF files written by
`test_formats --write DIR` are scored; truncated and corrupt copies of each
are row errors (CI runs the sanitizer build, so a crash or memory error
fails the run); --max-pixels refuses every format from its header.
Leaves out: pixel values (test_formats.c and the conformance check).

Usage: test_formats_cli.py CLIPSCORE MAKE_TINY_MODEL TEST_FORMATS; prints
'N passed, N failed'.
"""
import os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import M, check, finish, read_csv, run, tmp, write

FORMATS = os.path.abspath(sys.argv[3])
Q = ["--no-figures", "-q"] + M
# libheif 1.15's dav1d plugin loses 40 bytes on some broken AVIFs: a leak
# inside the library, not a crash, which LeakSanitizer would report at exit.
SUPP = os.path.join(tmp, "lsan.supp")
write(SUPP, "leak:libdav1d.so\n")
LSAN = {"LSAN_OPTIONS": "suppressions=" + SUPP}

d = os.path.join(tmp, "formats")
os.makedirs(d)
p = subprocess.run([FORMATS, "--write", d], capture_output=True)
check(p.returncode == 0, "test_formats --write made the files", p.stderr.decode()[-300:])
names = sorted(os.listdir(d))
check(len(names) == 9, "nine files, one per format variant", names)

lines, want = ["image,caption"], []
for n in names:
    data = open(os.path.join(d, n), "rb").read()
    lines.append(f"{n},a photo")
    want.append((n, None))
    write(os.path.join(d, "cut_" + n), data[: len(data) * 2 // 3], "wb")
    lines.append(f"cut_{n},a photo")
    want.append(("cut_" + n, "cut"))
    # What the format is told by kept, the header after it overwritten.
    keep = {"webp": 12, "tif": 4, "jp2": 12, "j2k": 4, "ico": 6, "heic": 12, "avif": 12}[n.split(".")[1]]
    write(os.path.join(d, "bad_" + n), data[:keep] + b"\xff" * 64 + data[keep + 64:], "wb")
    lines.append(f"bad_{n},a photo")
    want.append(("bad_" + n, "bad"))
write(os.path.join(d, "in.csv"), "\n".join(lines) + "\n")
rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q, env_extra=LSAN)
check(rc == 3, "some rows failed: exit status 3, no crash", (rc, err[-600:]))
got = read_csv(os.path.join(d, "output.csv")) if os.path.exists(os.path.join(d, "output.csv")) else []
check(len(got) == len(lines), "every row in output.csv", len(got))
for (name, kind), row in zip(want, got[1:]):
    sim, msg = row[2], row[3]
    if kind is None:
        check(sim != "" and msg == "", f"{name} scored", row)
    else:
        check(sim == "" and msg != "" and name in msg, f"{name}: row error", row)
    if kind == "cut":
        check(any(w in msg for w in ("truncated", "corrupt")), f"{name}: says truncated or corrupt", msg)

# The pixel limit, from each header (64x48 = 3072 pixels).
rc, _, err = run(["score", os.path.join(d, "in.csv"), "--max-pixels", "3000", "-o", os.path.join(d, "lim")] + Q,
                 env_extra=LSAN)
got = read_csv(os.path.join(d, "lim", "output.csv")) if rc == 3 else []
for (name, kind), row in zip(want, got[1:]):
    if kind is None:
        check(row[2] == "" and "over the limit" in row[3], f"{name}: over --max-pixels", row)
check(len(got) == len(lines), "limit run wrote every row", (rc, err[-300:]))
finish()
