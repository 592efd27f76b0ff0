#!/usr/bin/env python3
"""Regression tests for the defects that hostile input found (the hardening
issue): each check here failed before its fix.

  1  a FIFO as an image path blocked the run forever
  3  captions of rows whose image had already failed were still encoded
  4  standard input, /dev/stdin and <(...) wrote outputs beside the device
  7  Ctrl-C / SIGTERM during start-up (the row count) was lost
  8  a fatal error at the end left some new outputs beside old ones
  5  an impossible preprocessor config failed every row instead of the model
  9  --save-embeddings could overwrite the input
  and: stale temporaries of killed runs, two runs into one folder, long
  error messages losing their reason, figures of an earlier run left beside
  a --no-figures run.

Usage: test_hardening.py CLIPSCORE MAKE_TINY_MODEL; prints 'N passed, N failed'.
"""
import fcntl, json, os, resource, shutil, signal, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clitest import BIN, HAVE_FIGURES, M, check, env, finish, img, model, png, read_csv, run, tmp, write

Q = ["--no-figures", "-q"] + M


def listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# 1. A FIFO as an image: a row error at once, not a hang.
d = os.path.join(tmp, "fifo")
os.makedirs(d)
os.mkfifo(os.path.join(d, "f.png"))
png(os.path.join(d, "ok.png"), 20, 20)
write(os.path.join(d, "in.csv"), "image,caption\nf.png,x\nok.png,y\n")
try:
    rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q, timeout=60)
except subprocess.TimeoutExpired:
    rc, err = None, "timed out: blocked on the FIFO"
got = read_csv(os.path.join(d, "output.csv")) if rc == 3 else []
check(rc == 3 and len(got) == 3 and "regular file" in got[1][-1] and got[2][-1] == "",
      "a FIFO image path is a row error, the other row is scored", (rc, got, err[-300:]))

# 3. Rows whose image failed are not worth encoding their captions.
d = os.path.join(tmp, "missing")
os.makedirs(d)
png(os.path.join(d, "ok.png"), 20, 20)
write(os.path.join(d, "in.csv"),
      "image,caption\n" + "".join(f"nope{i}.png,caption {i}\n" for i in range(300)) + "ok.png,fine\n")
rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q)
rj = json.load(open(os.path.join(d, "run.json"))) if rc == 3 else {}
check(rc == 3 and rj.get("failed") == 300 and rj.get("texts_encoded") == 1 and rj.get("images_encoded") == 1,
      "captions of rows with a missing image are not encoded",
      (rc, rj.get("texts_encoded"), rj.get("images_encoded"), err[-200:]))

# 4. Standard input, /dev/stdin, <(...): outputs and relative images in the
# current folder (or -o); nothing written beside a device.
d = os.path.join(tmp, "stream")
os.makedirs(os.path.join(d, "pics"))
png(os.path.join(d, "pics", "p.png"), 20, 20)
src = os.path.join(tmp, "stream-input.csv")
write(src, "image,caption\npics/p.png,a picture\n")
for how in ("-", "/dev/stdin"):
    for f in ("output.csv", "run.json"):
        if os.path.exists(os.path.join(d, f)):
            os.unlink(os.path.join(d, f))
    with open(src, "rb") as fin:
        rc, _, err = run(["score", how] + Q, cwd=d, stdin=fin)
    got = read_csv(os.path.join(d, "output.csv")) if os.path.exists(os.path.join(d, "output.csv")) else []
    check(rc == 0 and len(got) == 2 and got[1][-1] == "" and os.path.exists(os.path.join(d, "run.json")),
          f"input {how}: outputs in the current folder, images relative to it", (rc, got, err[-300:]))
    check(not os.path.exists("/dev/output.csv") and not os.path.exists("/dev/run.json"),
          f"input {how}: nothing written in /dev")
od = os.path.join(tmp, "stream-o")
with open(src, "rb") as fin:
    rc, _, err = run(["score", "-", "-o", od, "--image-root", d] + Q, cwd=tmp, stdin=fin)
check(rc == 0 and os.path.exists(os.path.join(od, "output.csv")), "input -: -o and --image-root are honoured",
      (rc, err[-300:]))
pipe_dir = os.path.join(tmp, "procsub")
os.makedirs(pipe_dir)
os.symlink(os.path.join(d, "pics"), os.path.join(pipe_dir, "pics"))
p = subprocess.run(["bash", "-c", f'"$0" score <(cat "$1") "${{@:2}}"', BIN, src] + Q, cwd=pipe_dir,
                   capture_output=True, env=env(), timeout=300)
check(p.returncode == 0 and os.path.exists(os.path.join(pipe_dir, "output.csv")),
      "input <(...): outputs in the current folder", (p.returncode, p.stderr.decode()[-300:]))

# 5. A preprocessor config that cannot work refuses the model at load (exit 1),
# naming the file and the field, before any row is read.
d = os.path.join(tmp, "badcfg")
os.makedirs(d)
png(os.path.join(d, "p.png"), 20, 20)
write(os.path.join(d, "in.csv"), "image,caption\np.png,x\n")
for field, value in (("image_std", [0, 0, 0]), ("image_mean", [1e39, 0.5, 0.5])):
    bad = os.path.join(d, "model-" + field)
    shutil.copytree(model, bad)
    cfg = {"crop_size": 32, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25]}
    cfg[field] = value
    write(os.path.join(bad, "preprocessor_config.json"), json.dumps(cfg))
    rc, _, err = run(["score", os.path.join(d, "in.csv"), "--model", bad, "-o", os.path.join(d, "o")] + Q[:2])
    check(rc == 1 and field in err and "preprocessor_config.json" in err
          and not os.path.exists(os.path.join(d, "o", "output.csv")),
          f"{field} {value}: the model is refused at load, naming file and field", (rc, err[-300:]))

# 7. SIGTERM during start-up (counting the rows of a large CSV) stops the run.
d = os.path.join(tmp, "startup")
os.makedirs(d)
png(os.path.join(d, "p.png"), 20, 20)
with open(os.path.join(d, "in.csv"), "w") as f:
    f.write("image,caption\n")
    f.write("p.png,a caption of a few words\n" * 1000000)
od = os.path.join(d, "out")
p = subprocess.Popen([BIN, "score", os.path.join(d, "in.csv"), "-o", od, "--no-figures"] + M,
                     stderr=subprocess.PIPE, env=env())
deadline = time.time() + 120
while time.time() < deadline and p.poll() is None and not any(".tmp." in f for f in listing(od)):
    time.sleep(0.005)  # output.csv's temporary is made just before the row count starts
p.send_signal(signal.SIGTERM)
try:
    err = p.communicate(timeout=30)[1].decode()
except subprocess.TimeoutExpired:
    p.kill()
    err = p.communicate()[1].decode() + " (did not stop)"
check(p.returncode == 130 and "interrupted" in err and not os.path.exists(os.path.join(od, "output.csv")),
      "SIGTERM during start-up stops the run: exit 130, no output", (p.returncode, err[-300:]))
check(listing(od) == [], "nothing left in the output folder after a start-up interrupt", listing(od))

# 8. Outputs are committed together: a failure at the end replaces nothing.
d = os.path.join(tmp, "commit")
os.makedirs(d)
png(os.path.join(d, "p.png"), 20, 20)
write(os.path.join(d, "in.csv"), "image,caption\n" + "p.png,a small caption\n" * 3)
od = os.path.join(d, "out")
os.makedirs(os.path.join(od, "output.csv"))  # a folder where output.csv goes
write(os.path.join(od, "run.json"), "OLD")
rc, _, err = run(["score", os.path.join(d, "in.csv"), "-o", od] + M)
check(rc == 1 and "output.csv" in err, "a folder named output.csv is a fatal error", (rc, err[-300:]))
check(open(os.path.join(od, "run.json")).read() == "OLD" and listing(od) == ["output.csv", "run.json"],
      "nothing else written or replaced", listing(od))
# A full disk (emulated with a file-size limit) while output.csv is written.
od = os.path.join(d, "full")
os.makedirs(od)
for f in ("output.csv", "run.json"):
    write(os.path.join(od, f), "OLD " + f)
big = os.path.join(d, "big.csv")
write(big, "image,caption\n" + "".join(f"p.png,caption number {i} {'y' * 80}\n" for i in range(3000)))


def limit_files():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


p = subprocess.run([BIN, "score", big, "-o", od] + M, capture_output=True, env=env(), timeout=300,
                   preexec_fn=limit_files)
err = p.stderr.decode()
check(p.returncode == 1, "a write failure at the end is fatal", (p.returncode, err[-300:]))
# The journal of the rows scored may stay (the same command continues once there is room).
check([f for f in listing(od) if f != ".clipscore.journal"] == ["output.csv", "run.json"]
      and open(os.path.join(od, "run.json")).read() == "OLD run.json"
      and open(os.path.join(od, "output.csv")).read() == "OLD output.csv",
      "after a failed write the old outputs are untouched and no new one is left", listing(od))

# 9. No output, whatever option names it, may overwrite the input.
d = os.path.join(tmp, "embin")
os.makedirs(os.path.join(d, "emb"))
png(os.path.join(d, "emb", "p.png"), 20, 20)
inp = os.path.join(d, "emb", "image_embeddings.npy")  # a CSV with an unlucky name
write(inp, "image,caption\np.png,x\n")
before = open(inp, "rb").read()
rc, _, err = run(["score", inp, "--save-embeddings", os.path.join(d, "emb"), "-o", os.path.join(d, "o")] + Q)
check(rc == 2 and "overwritten" in err and open(inp, "rb").read() == before,
      "--save-embeddings that would overwrite the input is refused", (rc, err[-300:]))

# Stale temporaries of a killed run are removed; a live process's are kept.
d = os.path.join(tmp, "stale")
os.makedirs(d)
png(os.path.join(d, "p.png"), 20, 20)
write(os.path.join(d, "in.csv"), "image,caption\np.png,x\n")
stale = os.path.join(d, f"output.csv.tmp.{dead_pid()}")
alive = os.path.join(d, f"run.json.tmp.{os.getpid()}")
other = os.path.join(d, f"notes.txt.tmp.{dead_pid()}")
for f in (stale, alive, other):
    write(f, "x")
rc, _, err = run(["score", os.path.join(d, "in.csv"), "--no-figures"] + M)
check(rc == 0 and not os.path.exists(stale) and os.path.exists(alive) and os.path.exists(other),
      "a dead run's temporaries are removed, a live one's and other files kept", (rc, listing(d), err[-300:]))
check("removed 1 temporary file" in err, "the clean-up is reported", err[-300:])

# Two runs into one folder: the second is refused, naming the first's PID.
lock = open(os.path.join(d, ".clipscore.lock"), "w")
fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
lock.write(f"{os.getpid()}\n")  # as a run writes its PID
lock.flush()
rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q)
check(rc == 1 and f"PID {os.getpid()}" in err, "a second run into a locked folder is refused with the PID",
      (rc, err[-300:]))
lock.close()
os.unlink(os.path.join(d, ".clipscore.lock"))
rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q)
check(rc == 0 and not os.path.exists(os.path.join(d, ".clipscore.lock")), "the lock goes with the run", rc)

# A long image path does not cost the error its reason.
d = os.path.join(tmp, "longpath")
os.makedirs(d)
deep = "/".join(["a-rather-long-folder-name"] * 60) + "/missing.png"
write(os.path.join(d, "in.csv"), f"image,caption\n{deep},x\n")
rc, _, err = run(["score", os.path.join(d, "in.csv")] + Q)
got = read_csv(os.path.join(d, "output.csv")) if rc == 3 else []
check(rc == 3 and len(got) == 2 and got[1][-1].endswith("No such file or directory") and len(deep) > 1024,
      "the reason survives a path longer than the message buffer", (rc, got[1][-1][-80:] if got else err[-300:]))

# --no-figures removes an earlier run's figures; run.json lists this run's files.
if HAVE_FIGURES:
    d = os.path.join(tmp, "figs")
    os.makedirs(d)
    png(os.path.join(d, "p.png"), 20, 20)
    write(os.path.join(d, "in.csv"), "image,caption\np.png,x\n")
    rc, _, _ = run(["score", os.path.join(d, "in.csv"), "-q"] + M)
    first = json.load(open(os.path.join(d, "run.json")))
    check(rc == 0 and sorted(first.get("outputs", [])) ==
          ["image_captions.jpg", "output.csv", "report.html", "run.json", "similarity_matrix.jpg"],
          "run.json lists the run's outputs", first.get("outputs"))
    rc, _, _ = run(["score", os.path.join(d, "in.csv")] + Q)
    second = json.load(open(os.path.join(d, "run.json")))
    check(rc == 0 and not os.path.exists(os.path.join(d, "image_captions.jpg"))
          and not os.path.exists(os.path.join(d, "similarity_matrix.jpg"))
          and sorted(second.get("outputs", [])) == ["output.csv", "report.html", "run.json"],
          "a --no-figures run removes the earlier run's figures", listing(d))
    # Figures a user put there (no run.json of ours says they are ours) stay.
    write(os.path.join(d, "run.json"), "{}")
    write(os.path.join(d, "image_captions.jpg"), "mine")
    rc, _, _ = run(["score", os.path.join(d, "in.csv")] + Q)
    check(rc == 0 and open(os.path.join(d, "image_captions.jpg")).read() == "mine",
          "files not known to be from an earlier run are left alone")

finish()
