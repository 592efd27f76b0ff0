"""A throwaway one-node Slurm cluster for the tests (test_slurm.py).

Cluster() writes, in a temporary folder, a munge key, a slurm.conf for this
host alone (its CPUs and memory as `slurmd -C` reports them, free ports, a
partition `test`, process tracking by /proc so no cgroups are needed), starts
munged, slurmctld and slurmd in the foreground as its own children, and
waits until the node is idle. stop() cancels what is left in the queue and
stops exactly those three processes, by PID, then removes the folder. The
system's munged or Slurm, if any, is neither used nor touched: everything
lives in the folder, and the client commands find the cluster through
SLURM_CONF (set in env()).

Needs root (slurmd runs jobs as their owner, and SlurmUser is root here) and
Debian's slurm-wlm and munge; missing() says what is absent. Standard library
only. Not a model of a production setup: no accounting, no cgroups, no
authentication beyond a local munge key.

  python3 tests/slurm_cluster.py   # smoke test: a 3-task array echoing its ids
"""
import os, shutil, signal, socket, subprocess, tempfile, time

TOOLS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol", "scancel"]


def _which(name):
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] + os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def missing():
    """Why a cluster cannot be started here, or None when it can."""
    absent = [t for t in TOOLS if _which(t) is None]
    if absent:
        return "no " + ", ".join(absent) + " (Debian packages slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "not root (slurmd must run jobs as their owner)"
    return None


def _free_ports(n):
    """n distinct TCP ports free on this host now (the kernel's choice)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _node_line():
    """This host as `slurmd -C` describes it: NodeName=... CPUs=... RealMemory=..."""
    out = subprocess.run([_which("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0].strip()


class Cluster:
    def __init__(self, timeout=60):
        self.dir = tempfile.mkdtemp(prefix="clipscore-slurm-")
        self.procs = []  # (name, Popen), in start order
        self.conf = os.path.join(self.dir, "slurm.conf")
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def env(self, extra=None):
        e = dict(os.environ)
        # Settings of a surrounding Slurm (a CI job inside an allocation, a
        # user's default partition) must not leak in.
        if extra:
            e.update(extra)
        for k in list(e):
            if k.startswith(("SLURM_", "SBATCH_", "SALLOC_", "SQUEUE_", "SINFO_")) and not (extra and k in extra):
                del e[k]
        e["SLURM_CONF"] = self.conf
        return e

    def cmd(self, args, check=True, timeout=30):
        """Runs a Slurm client command against this cluster; returns stdout."""
        p = subprocess.run(args, capture_output=True, text=True, env=self.env(), cwd=self.dir, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p.stdout

    def _spawn(self, name, args):
        log = open(self.path(f"{name}.out"), "wb")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=self.env(), start_new_session=True)
        log.close()
        self.procs.append((name, p))
        return p

    def _logs(self):
        text = []
        for name in ["munged.out", "munged.log", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"]:
            try:
                with open(self.path(name), errors="replace") as f:
                    tail = f.read()[-3000:]
            except OSError:
                continue
            if tail.strip():
                text.append(f"--- {name} (end) ---\n{tail}")
        return "\n".join(text)

    def _wait_for(self, what, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited ({p.returncode}) while waiting for {what}\n{self._logs()}")
            if cond():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}\n{self._logs()}")

    def _start(self, timeout):
        d = self.dir
        os.chmod(d, 0o700)  # munged refuses a socket folder others can write to
        for sub in ["state", "spool", "munge"]:
            os.makedirs(self.path(sub), mode=0o700)
        # munge: a key of our own, and a socket in the folder.
        key = self.path("munge", "munge.key")
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(os.urandom(1024))  # what mungekey writes: random bytes
        self.munge_socket = self.path("munge", "munge.socket")
        self._spawn("munged", [_which("munged"), "--foreground", "--force", "--key-file", key,
                               "--socket", self.munge_socket, "--pid-file", self.path("munge", "munged.pid"),
                               "--log-file", self.path("munged.log"), "--seed-file", self.path("munge", "seed")])
        self._wait_for("munged's socket", lambda: os.path.exists(self.munge_socket), timeout)

        node = _node_line()
        self.node = node.split()[0].split("=", 1)[1]
        ctld_port, slurmd_port = _free_ports(2)
        conf = f"""# Written by tests/slurm_cluster.py: one node, this host, for a test.
ClusterName=clipscoretest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again cred_expire + 1 s later (default 120).
AuthInfo=socket={self.munge_socket},cred_expire=5
StateSaveLocation={self.path("state")}
SlurmdSpoolDir={self.path("spool")}
SlurmctldPidFile={self.path("slurmctld.pid")}
SlurmdPidFile={self.path("slurmd.pid")}
SlurmctldLogFile={self.path("slurmctld.log")}
SlurmdLogFile={self.path("slurmd.log")}
SlurmctldDebug=info
SlurmdDebug=info
# Processes tracked through /proc: no cgroups needed.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# A scheduling pass every second, not every minute: a requeued task (and
# the job waiting on it) starts as soon as it may.
SchedulerParameters=sched_interval=1,bf_interval=1
ReturnToService=2
JobRequeue=1
KillWait=2
# Ended jobs stay visible to squeue for the test's checks.
MinJobAge=600
PlugStackConfig={self.path("plugstack.conf")}
{node} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        with open(self.conf, "w") as f:
            f.write(conf)
        with open(self.path("plugstack.conf"), "w") as f:
            f.write("# no SPANK plugins\n")
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i", "-f", self.conf])
        self._wait_for("slurmctld", lambda: subprocess.run([_which("scontrol"), "ping"], capture_output=True,
                                                            env=self.env()).returncode == 0, timeout)
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", self.conf])

        def idle():
            p = subprocess.run([_which("sinfo"), "-h", "-n", self.node, "-o", "%T"], capture_output=True,
                               text=True, env=self.env())
            return p.returncode == 0 and p.stdout.strip() == "idle"

        self._wait_for(f"node {self.node} to be idle", idle, timeout)

    def sbatch(self, args):
        """Submits a batch job (sbatch ARGS... --parsable); returns its id."""
        out = self.cmd([_which("sbatch"), "--parsable"] + args)
        return out.strip().split(";")[0]

    def jobs(self, job):
        """{task id (e.g. '123_1' or '124'): state} of job's tasks still known."""
        out = self.cmd([_which("squeue"), "-h", "-t", "all", "-r", "-j", job, "-o", "%i %T"], check=False)
        return dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2)

    def job_state(self, task):
        """The state of one job or array task (JobState= of scontrol show job)."""
        out = self.cmd([_which("scontrol"), "-o", "show", "job", task], check=False)
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return None

    def wait(self, jobs, timeout, done=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL",
                                       "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED")):
        """Waits until every task of the given jobs has ended; returns {task: state}."""
        end = time.monotonic() + timeout
        while True:
            states = {}
            for j in jobs:
                states.update(self.jobs(j))
            if states and all(s in done for s in states.values()):
                return states
            if time.monotonic() > end:
                raise RuntimeError(f"timed out after {timeout} s waiting for jobs {jobs}: {states}\n{self._logs()}")
            time.sleep(0.3)

    def stop(self):
        """Cancels any job left, stops the daemons we started (by PID), removes the folder."""
        if any(n == "slurmctld" and p.poll() is None for n, p in self.procs):
            subprocess.run([_which("scancel"), "--full", "--user", str(os.geteuid())], env=self.env(),
                           capture_output=True, timeout=30)
            end = time.monotonic() + 15
            while time.monotonic() < end:
                out = subprocess.run([_which("squeue"), "-h", "-o", "%i"], capture_output=True, text=True,
                                     env=self.env(), timeout=30)
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(0.3)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    import sys
    why = missing()
    if why:
        print(f"cannot start a cluster: {why}")
        sys.exit(77)
    t0 = time.monotonic()
    with Cluster() as c:
        print(f"cluster up in {time.monotonic() - t0:.1f} s: node {c.node}, {c.conf}")
        out = c.path("out")
        os.makedirs(out)
        job = c.sbatch(["--array=0-2", "-o", os.path.join(out, "%A_%a.log"), "--wrap",
                        "echo task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT"])
        states = c.wait([job], 60)
        print(states)
        for i in range(3):
            print(open(os.path.join(out, f"{job}_{i}.log")).read().strip())
        ok = all(s == "COMPLETED" for s in states.values()) and len(states) == 3
    print(f"done in {time.monotonic() - t0:.1f} s: {'ok' if ok else 'FAILED'}")
    sys.exit(0 if ok else 1)
