#!/usr/bin/env python3
"""report.html from the command line: what it lists and in which order,
that it is self-contained, --report-pairs, --no-report, and text escaping.
The pairs listed are checked against output.csv. Standard library only.
Usage: test_report.py CLIPSCORE MAKE_TINY_MODEL
"""
import csv, io, json, os, re, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import M, check, finish, img, read_csv, run, tmp, write


def pairs_of(html, section):
    """(row, score) of each pair card in the <ol id=section>, in page order."""
    m = re.search(r'<ol class="grid" id="%s">(.*?)</ol>' % section, html, re.S)
    if not m:
        return None
    return [(int(r), float(s)) for r, s in re.findall(r'data-row="(\d+)" data-score="([-0-9.]+)"', m.group(1))]


def outside_refs(html):
    """Every src/href/url() that is not a data: URI or a #fragment, and any http(s):// at all."""
    bad = [v for v in re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html) if not v.startswith(("data:", "#"))]
    bad += re.findall(r'url\(([^)]*)\)', html)
    bad += re.findall(r'https?://', html)
    return bad


# Twelve rows over the six images, two of them failing (a missing file, an
# empty caption), one caption with markup in it.
d = os.path.join(tmp, "report")
os.makedirs(d)
caps = ["a photo of a cat", "the dog", "a red photo", "cat and dog", "the photo", "a dog",
        "<script>alert(1)</script> & \"quotes\"", "a green field", "two cats", "a blue sky"]
rows = [["image", "caption"]] + [[f"../img/a{i % 6}.png", c] for i, c in enumerate(caps)]
rows += [["../img/missing.png", "not there"], ["../img/a0.png", ""]]
buf = io.StringIO()
csv.writer(buf, lineterminator="\n").writerows(rows)
inp = os.path.join(d, "pairs.csv")
write(inp, buf.getvalue())

rc, _, err = run(["score", inp, "-o", os.path.join(d, "small"), "--no-figures", "-q"] + M)
check(rc == 3, "run with failed rows exits 3", err[-300:])
rep = os.path.join(d, "small", "report.html")
check(os.path.exists(rep), "report.html written by default")
html = open(rep, encoding="utf-8").read()
got = read_csv(os.path.join(d, "small", "output.csv"))
scored = [(i + 1, float(r[2])) for i, r in enumerate(got[1:]) if r[2]]
check(len(scored) == 10, "ten rows scored", len(scored))
# At most --report-pairs (50) scored rows: every pair, in input order.
check(pairs_of(html, "pairs") is not None and [r for r, _ in pairs_of(html, "pairs")] == [r for r, _ in scored],
      "a small run lists every scored pair in input order", pairs_of(html, "pairs"))
check(pairs_of(html, "lowest") is None, "no lowest/highest split for a small run")
check(all(abs(s - dict(scored)[r]) < 1e-6 for r, s in pairs_of(html, "pairs") or []), "scores as in output.csv")
check(html.count("<img ") == 10 and html.count('src="data:image/jpeg;base64,') == 10,
      "a JPEG data: URI thumbnail per pair", html.count("<img "))
check(outside_refs(html) == [], "nothing referenced outside the file", outside_refs(html)[:5])
check("<script" not in html.lower().replace("&lt;script", ""), "no script, the caption's markup escaped")
check("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;" in html, "caption text escaped")
m = re.search(r'<table id="failed">(.*?)</table>', html, re.S)
check(m and "missing.png" in m.group(1) and "empty caption" in m.group(1) and m.group(1).count("<tr>") == 3,
      "failed rows listed with their errors", m and m.group(1)[:300])
for k in ("median", "5th percentile", "95th percentile", "mean similarity", "weights SHA-256", "<svg"):
    check(k in html, f"report shows {k}")
rj = json.load(open(os.path.join(d, "small", "run.json")))
check("report.html" in rj["outputs"] and rj["report"] is True, "run.json lists report.html", rj.get("outputs"))
sims = sorted(s for _, s in scored)
med = (sims[4] + sims[5]) / 2
mm = re.search(r"<th>median</th><td class=\"n\">([-0-9.]+)</td>", html)
check(mm and abs(float(mm.group(1)) - med) <= 0.0005 + 1e-5, "median as computed from output.csv",
      (mm and mm.group(1), med))

# --report-pairs 3: the three lowest, lowest first, and the three highest.
rc, _, err = run(["score", inp, "-o", os.path.join(d, "three"), "--no-figures", "-q", "--report-pairs", "3",
                  "--batch-size", "4"] + M)
html3 = open(os.path.join(d, "three", "report.html"), encoding="utf-8").read()
by_low = sorted(scored, key=lambda t: (t[1], t[0]))
by_high = sorted(scored, key=lambda t: (-t[1], t[0]))
low, high = pairs_of(html3, "lowest"), pairs_of(html3, "highest")
check(low is not None and [r for r, _ in low] == [r for r, _ in by_low[:3]], "the three lowest, lowest first",
      (low, by_low[:3]))
check(high is not None and [r for r, _ in high] == [r for r, _ in by_high[:3]], "the three highest, highest first",
      (high, by_high[:3]))
# Batches of 4 send repeated images through the embedding cache: those rows'
# thumbnails are made at the end; every pair shown still has one.
check(html3.count('src="data:image/jpeg;base64,') == 6, "every pair shown has a thumbnail",
      html3.count('src="data:image/jpeg;base64,'))
m = re.search(r'<table id="failed">(.*?)</table>', html3, re.S)
check(m and m.group(1).count("<tr>") == 3, "failed rows: all (two) listed under --report-pairs 3")

# --no-report: none written, and the previous run's removed (it would pass
# for this run's).
rc, _, err = run(["score", inp, "-o", os.path.join(d, "small"), "--no-figures", "-q", "--no-report"] + M)
check(rc == 3 and not os.path.exists(rep), "--no-report: no report.html, the earlier one removed",
      os.listdir(os.path.join(d, "small")))
rj = json.load(open(os.path.join(d, "small", "run.json")))
check("report.html" not in rj["outputs"] and rj["report"] is False, "run.json: report false")
rc, _, err = run(["score", inp, "--report-pairs", "0"] + M)
check(rc == 2 and "--report-pairs" in err, "--report-pairs 0 is a usage error", err[-200:])

# A report.html folder in the way is refused before any work.
od = os.path.join(d, "blocked")
os.makedirs(os.path.join(od, "report.html"))
rc, _, err = run(["score", inp, "-o", od, "--no-figures", "-q"] + M)
check(rc == 1 and "report.html" in err and not os.path.exists(os.path.join(od, "output.csv")),
      "a folder named report.html is a fatal error, nothing written", err[-300:])

finish()
