#!/usr/bin/env python3
"""report.html in a real browser: Debian's headless Chromium renders it at
1280 px and at phone width (the screenshots must not be blank), its DOM
lists the lowest-scoring pair first, and the page requests nothing from the
network (read from Chromium's net log, with a control page that does
request something, so the check is known to work). Skipped (77) when
chromium is not installed. Standard library only.
Usage: test_report_browser.py CLIPSCORE MAKE_TINY_MODEL
"""
import json, os, re, shutil, subprocess, sys, zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    print("chromium not found: skipped")
    sys.exit(77)
from clitest import M, check, finish, read_csv, run, tmp, write

BROWSER_FLAGS = ["--headless", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # Names nothing: a request that gets out still shows in the net log.
                 "--host-resolver-rules=MAP * ~NOTFOUND"]
if os.geteuid() == 0:
    BROWSER_FLAGS.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox


def chromium(args, url):
    prof = os.path.join(tmp, "chromium-profile")
    shutil.rmtree(prof, ignore_errors=True)
    p = subprocess.run([CHROMIUM] + BROWSER_FLAGS + [f"--user-data-dir={prof}"] + args + [url],
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def png_pixels(path):
    """(width, height, rows of bytes) of an 8-bit RGB or RGBA, non-interlaced PNG."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h, bpp = 8, b"", 0, 0, 3
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = int.from_bytes(body[:4], "big"), int.from_bytes(body[4:8], "big"), \
                body[8], body[9], body[10], body[11], body[12]
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, bpp, rows


def not_blank(path, what):
    w, h, bpp, rows = png_pixels(path)
    colours, ink = set(), 0
    for r in rows:
        for x in range(0, w * bpp, bpp):
            px = r[x:x + 3]
            colours.add(px)
            ink += px not in (b"\xfa\xfa\xfa", b"\xff\xff\xff")  # the page's background, white
    check(len(colours) >= 50 and ink >= 0.05 * w * h, f"{what}: screenshot is not blank",
          f"{len(colours)} colours, {ink} of {w * h} pixels drawn")


def page_requests(netlog):
    """URLs the page itself asked for (not Chromium's own background requests)."""
    d = json.load(open(netlog))
    start = d["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in d["events"]
            if e["type"] == start and e.get("params", {}).get("network_isolation_key", "").startswith("file:")
            and not e["params"]["url"].startswith(("file:", "data:"))]


# A run with more rows than --report-pairs: lowest and highest sections.
d = os.path.join(tmp, "browser")
os.makedirs(d)
caps = ["a photo of a cat", "the dog", "a red photo", "cat and dog", "the photo", "a dog", "a tree",
        "a green field", "two cats", "a blue sky", "a car", "a house"]
write(os.path.join(d, "pairs.csv"), "image,caption\n" + "".join(f"../img/a{i % 6}.png,{c}\n" for i, c in enumerate(caps))
      + "../img/missing.png,gone\n")
rc, _, err = run(["score", os.path.join(d, "pairs.csv"), "--report-pairs", "4", "--no-figures", "-q"] + M)
check(rc == 3, "run exits 3 (one row fails)", err[-300:])
report = os.path.join(d, "report.html")
url = "file://" + report
scores = [(float(r[2]), i + 1) for i, r in enumerate(read_csv(os.path.join(d, "output.csv"))[1:]) if r[2]]
lowest_row = min(scores)[1]

# The DOM as Chromium built it: the lowest pair first.
rc, dom, err = chromium(["--dump-dom"], url)
check(rc == 0 and "</html>" in dom, "chromium --dump-dom renders the report", err[-300:])
m = re.search(r'<ol class="grid" id="lowest">\s*<li class="pair" data-row="(\d+)"', dom)
check(m and int(m.group(1)) == lowest_row, "the DOM lists the lowest pair first",
      (m and m.group(1), lowest_row))
check(dom.count("<img ") == 8 and 'id="highest"' in dom and 'id="failed"' in dom,
      "DOM has the pairs' pictures, the highest pairs and the failed rows", dom.count("<img "))

# Screenshots at desktop and phone widths.
for w, h, what in ((1280, 900, "1280 px"), (390, 844, "phone width")):
    shot = os.path.join(tmp, f"shot-{w}.png")
    rc, _, err = chromium([f"--screenshot={shot}", f"--window-size={w},{h}"], url)
    check(rc == 0 and os.path.exists(shot), f"{what}: screenshot taken", err[-300:])
    if os.path.exists(shot):
        not_blank(shot, what)

# Network: the report without its Content-Security-Policy (which would hide
# a reference by blocking it) requests nothing; a control page that refers
# to an outside image and style sheet is seen doing so.
html = open(report, encoding="utf-8").read()
bare = os.path.join(d, "bare.html")
write(bare, re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html))
check("Content-Security-Policy" not in open(bare, encoding="utf-8").read(), "CSP taken out for the network check")
control = os.path.join(d, "control.html")
write(control, '<!DOCTYPE html><html><head><link rel="stylesheet" href="https://probe.invalid/a.css"></head>'
      '<body><img src="http://probe.invalid/x.png"></body></html>')
for page, expect in ((control, 2), (bare, 0)):
    netlog = os.path.join(tmp, "netlog.json")
    rc, _, err = chromium([f"--log-net-log={netlog}", "--dump-dom"], "file://" + page)
    reqs = page_requests(netlog) if os.path.exists(netlog) else None
    check(reqs is not None and len(reqs) == expect,
          f"{os.path.basename(page)}: {expect} network requests seen", reqs)

finish()
