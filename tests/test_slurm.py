#!/usr/bin/env python3
"""clipscore on a real Slurm: a job array with --shard slurm, a task killed
mid-run and requeued, a dependent merge job, against a single-process run.

Starts a one-node cluster of its own (tests/slurm_cluster.py: munged,
slurmctld, slurmd, stopped by PID at the end), writes three webdataset tars
and a CSV scored by the tiny test model, and submits them with the example
examples/slurm/submit.sh: a 3-task array, then the merge as a job depending
on it. Once one task's journal holds an epoch of rows, that task is frozen
(SIGSTOP through scancel) and requeued with `scontrol requeue`, which kills
it as a preemption would (SIGCONT, SIGTERM, SIGKILL after KillWait); the
requeued task must resume ('resuming:' in its log, resumed_rows in its
run.json), and the merged output.csv and kept.csv (--keep-fraction, which
submit.sh hands to the merge too: a fraction of all parts) must equal a
single-process run's: same rows, order and fields, similarities within 1e-6.

Skips (exit 77) without Slurm's and munge's programs or without root, saying
why. Standard library only.
Usage: test_slurm.py CLIPSCORE MAKE_TINY_MODEL EXAMPLES_SLURM_DIR
"""
import io, json, math, os, re, struct, subprocess, sys, tarfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import slurm_cluster

why = slurm_cluster.missing()
if why:
    print(f"skipped: {why}")
    sys.exit(77)

EXAMPLES = os.path.abspath(sys.argv[3])
from clitest import BIN, M, check, finish, png, read_csv, tmp, write
import clitest

T0 = time.monotonic()
TASKS = 3
# Samples per tar and rows of the CSV. With one thread, batches of 2 (an
# epoch mark every 16 rows) and 320-pixel images, a task of 120 rows scores
# for about 2 s after its first mark in the sanitizer build: time to freeze it.
PER_INPUT = 120
OPTS = M + ["--no-figures", "--batch-size", "2", "--threads", "1", "--keep-fraction", "0.3"]


def elapsed():
    return f"{time.monotonic() - T0:.1f} s"


# Inputs: three webdataset tars (KEY.png, KEY.txt, KEY.json with a url; one
# sample without a caption, a row error) and a CSV of PNG files. The images
# are a few distinct PNGs, reused: decoding, not writing them, is the work.
data = os.path.join(tmp, "data")
os.makedirs(data)
pngs = [png(os.path.join(data, f"p{i}.png"), 320 + 8 * i, 300 - 6 * i, seed=i) for i in range(5)]
words = ["a cat", "a dog", "the red photo", "cat and dog", "a photo of a bus", "the sea"]


def add(tf, name, data_bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data_bytes)
    info.mtime = 1700000000
    tf.addfile(info, io.BytesIO(data_bytes))


inputs = []
for s in range(3):
    path = os.path.join(data, f"shard-{s:05d}.tar")
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(PER_INPUT):
            key = f"{s:05d}{i:04d}"
            add(tf, f"{key}.png", pngs[(s + i) % len(pngs)])
            if not (s == 1 and i == 7):  # no caption: a row error in the output
                add(tf, f"{key}.txt", f"{words[(s * 7 + i) % len(words)]} {i}".encode())
            add(tf, f"{key}.json", json.dumps({"url": f"https://example.com/{key}.png", "key": key}).encode())
    inputs.append(path)
csv_path = os.path.join(data, "pairs.csv")
write(csv_path, "image,caption\n" + "".join(f"p{i % len(pngs)}.png,{words[i % len(words)]} number {i}\n"
                                            for i in range(PER_INPUT)))
inputs.append(csv_path)
ALL_ROWS = 4 * PER_INPUT

# The reference: one process over the same inputs.
single = os.path.join(tmp, "single")
rc, _, err = clitest.run(["score"] + inputs + OPTS + ["-q", "-o", single])
check(rc == 3, "single-process run exits 3 (one row without a caption)", f"rc {rc}: {err[-800:]}")
ref = read_csv(os.path.join(single, "output.csv")) if os.path.exists(os.path.join(single, "output.csv")) else []
check(len(ref) == 1 + ALL_ROWS, "single-process run: one row per sample and CSV row", len(ref))
check(ref[:1] == [["key", "source", "url", "caption", "similarity", "error"]], "single run's columns", ref[:1])
print(f"single-process run done ({elapsed()})", flush=True)


def part_dirs(out):
    pd = os.path.join(out, "parts")
    return sorted(os.path.join(pd, d) for d in os.listdir(pd)) if os.path.isdir(pd) else []


def abort(cluster):
    """Stops the cluster (its jobs write into tmp), then reports and exits."""
    cluster.stop()
    finish()


def show_logs(out):
    logs = os.path.join(out, "logs")
    for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
        print(f"--- {name} ---\n" + open(os.path.join(logs, name), errors="replace").read()[-2000:])


def journal_marked_rows(part):
    """Rows in a part's journal that a restart would keep: those before its
    last epoch mark (src/journal.h: a magic line, an identity line, then
    records of a 4-byte kind, 4-byte length, 4-byte CRC and the payload).
    0 while there is no journal or no mark."""
    try:
        data = open(os.path.join(part, ".clipscore.journal"), "rb").read()
    except OSError:
        return 0
    lines = data.split(b"\n", 2)
    if len(lines) < 3 or not lines[0].startswith(b"clipscore journal"):
        return 0
    rest, pos, rows, marked = lines[2], 0, 0, 0
    while pos + 12 <= len(rest):
        kind, size = struct.unpack_from("<4sI", rest, pos)
        if pos + 12 + size > len(rest):
            break  # a record still being written
        pos += 12 + size
        if kind == b"JROW":
            rows += 1
        elif kind == b"MARK":
            marked = rows
    return marked


with slurm_cluster.Cluster() as cl:
    print(f"cluster up: node {cl.node} ({elapsed()})", flush=True)
    out = os.path.join(tmp, "run")
    # The jobs get this environment (sbatch exports it): the program, its cache.
    env = cl.env({"CLIPSCORE": BIN, "SBATCH_ARGS": "--cpus-per-task=1",
                  "CLIPSCORE_CACHE": clitest.env()["CLIPSCORE_CACHE"]})
    p = subprocess.run(["bash", os.path.join(EXAMPLES, "submit.sh"), str(TASKS), out] + inputs + OPTS,
                       capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
    check(p.returncode == 0, "submit.sh submits the array and the merge", p.stderr[-800:])
    m = re.search(r"array job (\d+) .*merge job (\d+)", p.stdout)
    check(m is not None, "submit.sh prints the two job ids", p.stdout)
    if p.returncode != 0 or not m:
        print(p.stdout, p.stderr)
        abort(cl)
    array_job, merge_job = m.groups()

    # Wait for a task whose journal holds rows a restart would keep (an epoch
    # mark), freeze it there, check that it is mid-run (no output.csv yet),
    # and requeue it.
    victim = None
    deadline = time.monotonic() + 60
    next_check = 0
    while victim is None and time.monotonic() < deadline:
        for part in part_dirs(out):
            if journal_marked_rows(part) > 0 and not os.path.exists(os.path.join(part, "output.csv")):
                victim = part
                break
        if victim is None and time.monotonic() > next_check:  # every task ended: none to catch
            states = cl.jobs(array_job)
            if len(states) == TASKS and all(s not in ("PENDING", "RUNNING", "CONFIGURING") for s in states.values()):
                break
            next_check = time.monotonic() + 1
        time.sleep(0.02)
    check(victim is not None, "a task's journal received an epoch of rows while it ran")
    if victim is None:
        show_logs(out)
        abort(cl)
    k = int(victim.rsplit("-", 1)[1])
    task = f"{array_job}_{k}"
    cl.cmd(["scancel", "--signal=STOP", "--full", task])
    time.sleep(0.5)
    kept = journal_marked_rows(victim)
    mid_run = not os.path.exists(os.path.join(victim, "output.csv"))
    check(mid_run, f"task {k} stopped mid-run (no output.csv yet)", "it finished first: make PER_INPUT larger")
    cl.cmd(["scontrol", "requeue", task])
    print(f"task {task} frozen with {kept} rows journalled and requeued ({elapsed()})", flush=True)

    try:
        states = cl.wait([array_job, merge_job], timeout=120)
    except RuntimeError as e:
        show_logs(out)
        check(False, "the jobs ended", e)
        abort(cl)
    print(f"jobs ended: {states} ({elapsed()})", flush=True)
    check(all(states.get(f"{array_job}_{i}") == "COMPLETED" for i in range(TASKS)), "every array task completed",
          states)
    check(states.get(merge_job) == "COMPLETED", "the merge job ran after the array and completed", states)
    show = cl.cmd(["scontrol", "-o", "show", "job", task], check=False)
    check(" Restarts=1 " in f" {show} ", f"task {k} was requeued once", show[:400])

    logs = os.path.join(out, "logs")
    log = open(os.path.join(logs, f"{array_job}_{k}.log"), errors="replace").read()
    check("resuming:" in log, f"task {k}'s second run resumed", log[-1500:])

    # Parts: one per task, each a share, the requeued one resumed.
    parts = part_dirs(out)
    check(len(parts) == TASKS, "one part per task", parts)
    part_rows = 0
    for part in parts:
        i = int(part.rsplit("-", 1)[1])
        try:
            rj = json.load(open(os.path.join(part, "run.json")))
        except (OSError, ValueError) as e:
            check(False, f"part {i} has run.json", e)
            continue
        check(rj.get("shard") == [i, TASKS], f"part {i}'s run.json says shard [{i}, {TASKS}]", rj.get("shard"))
        part_rows += rj.get("rows", 0)
        if part == victim:
            # At least what the journal held when the task was frozen (SIGTERM
            # lets it finish the batches in flight), not all of its rows.
            r = rj.get("resumed_rows", 0)
            check(kept <= r < rj.get("rows", 0), f"part {i} resumed from its journal, mid-run",
                  f"resumed_rows {r}, {kept} journalled when frozen, {rj.get('rows')} rows")
        else:
            check(not rj.get("resumed_rows"), f"part {i} was not resumed", rj.get("resumed_rows"))
        tlog = open(os.path.join(logs, f"{array_job}_{i}.log"), errors="replace").read()
        if part == victim:
            check(f"resuming: {rj.get('resumed_rows')} rows already scored" in tlog,
                  f"task {i}'s log and run.json agree on the rows resumed", tlog[-600:])
        check(f"--shard slurm: shard {i}/{TASKS}" in tlog, f"task {i}'s log says its shard came from Slurm",
              tlog[-600:])
    check(part_rows == ALL_ROWS, "the parts' rows add up to the inputs'", part_rows)


def compare(name):
    """The merged OUT/name against the single run's: same rows and fields,
    similarities within 1e-6 (fp32 on CPU; both print 6 decimals, so the
    difference is a rounding step at most)."""
    got_p, ref_p = os.path.join(out, name), os.path.join(single, name)
    got = read_csv(got_p) if os.path.exists(got_p) else []
    ref = read_csv(ref_p) if os.path.exists(ref_p) else []
    check(len(got) == len(ref) > 1, f"merged {name} has the single run's row count", (len(got), len(ref)))
    if not got or not ref:
        return ref
    check(got[0] == ref[0], f"{name}: same header", (got[0], ref[0]))
    si = ref[0].index("similarity") if "similarity" in ref[0] else -1
    worst, diff_rows = 0.0, []
    for n, (a, b) in enumerate(zip(got[1:], ref[1:])):
        if len(a) != len(b) or any(x != y for j, (x, y) in enumerate(zip(a, b)) if j != si):
            diff_rows.append((n, a, b))
            continue
        if a[si] or b[si]:
            try:
                worst = max(worst, abs(float(a[si]) - float(b[si])))
            except ValueError:
                diff_rows.append((n, a, b))
    check(not diff_rows, f"merged {name} rows equal the single run's (order, fields)", diff_rows[:3])
    check(worst <= 1e-6, f"{name}: similarities within 1e-6 of the single run's", worst)
    print(f"merged vs single run, {name}: {len(got) - 1} rows, largest similarity difference {worst:.2e}")
    return got


# The merge against the single-process run.
merged = compare("output.csv")
compare("kept.csv")
# What both should hold, so that two equally wrong outputs do not pass.
by_key = {r[0]: r for r in merged[1:]}
check(sum(1 for r in merged[1:] if r[2].startswith("https://example.com/")) == 3 * PER_INPUT,
      "the tars' rows carry their json url")
nocap = by_key.get("000010007", [""] * 6)
check(nocap[4] == "" and nocap[5] != "", "the sample without a caption is a row error", nocap)
try:
    mj, sj = (json.load(open(os.path.join(d, "run.json"))) for d in (out, single))
    # The top 30% of all scored rows (more only with ties at the threshold).
    mk, sk = mj.get("keep", {}).get("kept", -1), sj.get("keep", {}).get("kept", -2)
    check(mk == sk >= math.ceil(0.3 * sj.get("scored", 0)) > 0, "merged run.json keeps what the single run keeps",
          (mj.get("keep"), sj.get("keep")))
    for key in ("rows", "scored", "failed"):
        check(mj.get(key) == sj.get(key), f"merged run.json {key} equals the single run's",
              (mj.get(key), sj.get(key)))
    check(abs(mj.get("mean_similarity", 9) - sj.get("mean_similarity", -9)) <= 1e-6, "merged mean similarity",
          (mj.get("mean_similarity"), sj.get("mean_similarity")))
except (OSError, ValueError) as e:
    check(False, "merged and single run.json readable", e)
print(f"done in {elapsed()}")
finish()
