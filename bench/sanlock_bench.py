#!/usr/bin/python3
"""Measure sanlock (Debian's sanlock 3.8 + python3-sanlock) on plain files.

Run by bench/lease-vs-sanlock; can also be run on its own:

    /usr/bin/python3 bench/sanlock_bench.py --dir /var/tmp/somewhere --iterations 500

What it does, all on files in --dir (use a real disk, not tmpfs):
  * starts two watchdog-less sanlock daemons (host ids 1 and 2), each with its
    own SANLOCK_RUN_DIR, as child processes (never daemonised);
  * `sanlock direct init -o IO` of a lockspace file and a resource file;
  * times `sanlock client add_lockspace -o IO` for host 1 (first join of a
    fresh lockspace) and then host 2;
  * uncontended: ITER x (acquire + release) of an exclusive resource lease from
    a registered process on host 1; median / p99 in ms;
  * bytes: the daemon's /proc/PID/io read_bytes/write_bytes around each
    acquire and each release (median over --io-samples cycles), plus the
    bytes of one delta-lease renewal measured over an idle window;
  * contended: one registered process per host loops acquire + release on the
    same resource for --contended-seconds; counts successes and busy failures;
  * stops everything: rem_lockspace, `sanlock client shutdown -f 1`, then
    SIGTERM/SIGKILL of the daemon's process group if still there.

Prints exactly one JSON object on stdout; progress goes to stderr.

Notes (checked on Debian 12, sanlock 3.8.5):
  * python3-sanlock is built for Debian's /usr/bin/python3 only.
  * libsanlock reads SANLOCK_RUN_DIR once per process (the socket path is
    cached): changing os.environ afterwards still talks to the first daemon.
    So every process that talks to daemon N is a separate child process
    started with that daemon's SANLOCK_RUN_DIR (the `worker` sub-command).
  * The daemon does its lease I/O with libaio (io_submit), which the kernel
    does NOT count in /proc/PID/io rchar/wchar; the block-layer counters
    read_bytes/write_bytes do count it (the files are opened O_DIRECT, so
    these are real device bytes).  Both are reported in "detail".
"""

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time

SANLOCK = os.environ.get("SANLOCK_BIN", "sanlock")
LS_NAME = "nsbench"
RES_NAME = "bench-res"
LEASE_FILE_SIZE = 1 << 20  # align size 1 MiB, sector 512 (sanlock defaults)

# acquire() failures meaning "another host holds it" (sanlock_rv.h):
# SANLK_ACQUIRE_IDLIVE -243, SANLK_ACQUIRE_OWNED -244, SANLK_ACQUIRE_OTHER -245,
# plus plain EAGAIN / EBUSY in case a version maps them.
BUSY_CODES = (-243, -244, -245, 11, -11, 16, -16)


def log(msg):
    print(f"[sanlock_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(values, p):
    """Nearest-rank percentile of an unsorted list (p in 0..100)."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def ms_stats(ns_values):
    if not ns_values:
        return {"n": 0, "median_ms": None, "p99_ms": None, "min_ms": None, "max_ms": None}
    ms = [v / 1e6 for v in ns_values]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p99_ms": round(pct(ms, 99), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
    }


def read_proc_io(pid):
    out = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            k, v = line.split(":")
            out[k.strip()] = int(v)
    return out


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


IO_KEYS = ("read_bytes", "write_bytes", "rchar", "wchar")


def io_delta(a, b):
    return {k: b[k] - a[k] for k in IO_KEYS}


# --------------------------------------------------------------------------
# worker: a separate process bound (through SANLOCK_RUN_DIR) to one daemon
# --------------------------------------------------------------------------

def die_with_parent():
    """PR_SET_PDEATHSIG: a worker must not outlive the bench process."""
    try:
        import ctypes  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def worker_main(args):
    import sanlock  # noqa: PLC0415  (only the workers need the binding)

    die_with_parent()
    if os.getppid() == 1:
        raise SystemExit("parent gone")

    ls = LS_NAME.encode()
    res = RES_NAME.encode()
    disks = [(args.res_path, 0)]
    fd = sanlock.register()
    out = {"host_id": args.host_id, "pid": os.getpid()}

    def cycle():
        sanlock.acquire(ls, res, disks, slkfd=fd)
        sanlock.release(ls, res, disks, slkfd=fd)

    if args.mode == "latency":
        for _ in range(args.warmup):
            cycle()
        total, acq, rel = [], [], []
        pc = time.perf_counter_ns
        io_start = read_proc_io(args.daemon_pid)
        t_start = time.monotonic()
        for _ in range(args.iterations):
            t0 = pc()
            sanlock.acquire(ls, res, disks, slkfd=fd)
            t1 = pc()
            sanlock.release(ls, res, disks, slkfd=fd)
            t2 = pc()
            total.append(t2 - t0)
            acq.append(t1 - t0)
            rel.append(t2 - t1)
        t_end = time.monotonic()
        io_end = read_proc_io(args.daemon_pid)
        out.update(total_ns=total, acq_ns=acq, rel_ns=rel, t_start=t_start, t_end=t_end,
                   io=io_delta(io_start, io_end))

    elif args.mode == "iobytes":
        pid = args.daemon_pid
        acq_d, rel_d = [], []
        for _ in range(args.iterations):
            a = read_proc_io(pid)
            sanlock.acquire(ls, res, disks, slkfd=fd)
            b = read_proc_io(pid)
            sanlock.release(ls, res, disks, slkfd=fd)
            c = read_proc_io(pid)
            acq_d.append(io_delta(a, b))
            rel_d.append(io_delta(b, c))
        out.update(acq=acq_d, rel=rel_d)

    elif args.mode == "contend":
        ok_ns, busy_ns, fail_ns = [], [], []
        errors = {}
        busy = other = 0
        pc = time.perf_counter_ns
        now = time.monotonic()
        if args.start_at > now:
            time.sleep(args.start_at - now)
        end = args.start_at + args.duration
        sleep_s = args.busy_sleep_ms / 1000.0
        while time.monotonic() < end:
            t0 = pc()
            try:
                sanlock.acquire(ls, res, disks, slkfd=fd)
            except sanlock.SanlockException as e:
                t1 = pc()
                code = e.errno
                errors[str(code)] = errors.get(str(code), 0) + 1
                fail_ns.append(t1 - t0)
                if code in BUSY_CODES:
                    busy += 1
                    busy_ns.append(t1 - t0)
                else:
                    other += 1
                if sleep_s:
                    time.sleep(sleep_s)
                continue
            sanlock.release(ls, res, disks, slkfd=fd)
            ok_ns.append(pc() - t0)
        out.update(ok_ns=ok_ns, busy_ns=busy_ns, fail_ns=fail_ns, busy=busy, other_err=other,
                   errors=errors)
    else:
        raise SystemExit(f"unknown worker mode {args.mode}")

    json.dump(out, sys.stdout)
    sys.stdout.flush()


# --------------------------------------------------------------------------
# daemons
# --------------------------------------------------------------------------

class Daemon:
    def __init__(self, workdir, host_id, io_timeout, pidfile):
        self.host_id = host_id
        self.io_timeout = io_timeout
        self.run_dir = os.path.join(workdir, f"sanlock-run{host_id}")
        self.log_path = os.path.join(workdir, f"sanlock-daemon{host_id}.log")
        self.env = dict(os.environ, SANLOCK_RUN_DIR=self.run_dir, SANLOCK_PRIVILEGED="0")
        self.pidfile = pidfile
        self.proc = None
        self.logger = None
        self.joined_spec = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self):
        os.makedirs(self.run_dir, exist_ok=True)
        cmd = [SANLOCK, "daemon", "-D", "-w", "0", "-e", f"nsbench-host{self.host_id}",
               "-S", "-1", "-L", "-1", "-l", "0"]
        log(f"host {self.host_id}: SANLOCK_RUN_DIR={self.run_dir} SANLOCK_PRIVILEGED=0 {' '.join(cmd)}")
        # The daemon's (debug, -D) log goes through a pipe to `cat`, which
        # writes the file: written straight to a file, the log's page-cache
        # dirtying would be counted in the daemon's /proc/PID/io write_bytes
        # (4 KiB per newly dirtied page) and spoil the bytes-per-op figures.
        with open(self.log_path, "ab") as logf:
            self.logger = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=logf)
        # Own session/process group: the daemon forks a sanlock-helper child,
        # and killpg() then reaches both without touching anything else.
        self.proc = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.logger.stdin, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.logger.stdin.close()
        with open(self.pidfile, "a") as f:
            f.write(f"{self.proc.pid} {self.run_dir}\n")
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sanlock daemon {self.host_id} exited with {self.proc.returncode}; "
                                   f"log tail:\n{self.log_tail()}")
            if os.path.exists(os.path.join(self.run_dir, "sanlock.sock")):
                r = self.client("status", timeout=5, check=False)
                if r.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sanlock daemon {self.host_id} did not come up; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def client(self, *args, timeout=30, check=True):
        cmd = [SANLOCK, "client", *args]
        r = subprocess.run(cmd, env=self.env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n"
                               f"daemon log tail:\n{self.log_tail()}")
        return r

    def add_lockspace(self, ls_path):
        spec = f"{LS_NAME}:{self.host_id}:{ls_path}:0"
        t0 = time.monotonic()
        self.client("add_lockspace", "-o", str(self.io_timeout), "-s", spec,
                    timeout=60 + 30 * self.io_timeout)
        dt = time.monotonic() - t0
        self.joined_spec = spec
        return dt

    def renewal_timestamps(self):
        r = self.client("renewal", "-s", self.joined_spec, timeout=10, check=False)
        ts = []
        for line in r.stdout.splitlines():
            for tok in line.split():
                if tok.startswith("timestamp="):
                    ts.append(int(tok.split("=", 1)[1]))
        return ts

    def io(self):
        return read_proc_io(self.pid)

    def start_rem_lockspace(self):
        if self.proc is None or self.proc.poll() is not None or not self.joined_spec:
            return None
        return subprocess.Popen([SANLOCK, "client", "rem_lockspace", "-s", self.joined_spec],
                                env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            self.stop_logger()
            return
        try:
            self.client("shutdown", "-f", "1", timeout=10, check=False)
        except Exception as e:  # noqa: BLE001
            log(f"host {self.host_id}: shutdown request failed: {e}")
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 3)):
            if self.proc.poll() is not None:
                break
            log(f"host {self.host_id}: sending {sig.name} to daemon pgid {self.proc.pid}")
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        # the helper child (same process group) exits when the daemon does;
        # make sure nothing of ours lingers in that group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.stop_logger()

    def stop_logger(self):
        if self.logger is None:
            return
        try:
            self.logger.wait(timeout=5)  # EOF once the daemon and its helper are gone
        except subprocess.TimeoutExpired:
            self.logger.kill()
            self.logger.wait()


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.dir = os.path.abspath(args.dir)
        self.ls_path = os.path.join(self.dir, "sanlock-lockspace.img")
        self.res_path = os.path.join(self.dir, "sanlock-resource.img")
        self.pidfile = os.path.join(self.dir, "sanlock-daemons.pids")
        self.daemons = []
        self.workers = []

    # -- helpers --
    def spawn_worker(self, daemon, mode, iterations=0, warmup=0, start_at=0.0, duration=0.0):
        cmd = [sys.executable, os.path.abspath(__file__), "worker",
               "--mode", mode, "--host-id", str(daemon.host_id),
               "--res-path", self.res_path, "--daemon-pid", str(daemon.pid),
               "--iterations", str(iterations), "--warmup", str(warmup),
               "--start-at", repr(start_at), "--duration", repr(duration),
               "--busy-sleep-ms", repr(self.args.busy_sleep_ms)]
        p = subprocess.Popen(cmd, env=daemon.env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, text=True)
        self.workers.append(p)
        return p

    def collect(self, p, timeout):
        out, _ = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"worker {p.args[3:6]} failed with exit code {p.returncode}")
        return json.loads(out)

    def direct(self, *args):
        cmd = [SANLOCK, "direct", *args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if r.returncode != 0 or " done 0" not in r.stdout:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout.strip()}")
        return r.stdout

    # -- phases --
    def run(self):
        a = self.args
        os.makedirs(self.dir, exist_ok=True)
        version = subprocess.run([SANLOCK, "version"], stdout=subprocess.PIPE, text=True,
                                 check=True).stdout.strip()
        load_start = loadavg()
        log(f"sanlock {version}, dir {self.dir}, iterations {a.iterations}, io_timeout {a.io_timeout}s, "
            f"loadavg {load_start}")

        # fresh files every run, so the first join really is a fresh lockspace
        for path in (self.ls_path, self.res_path):
            with open(path, "wb") as f:
                f.truncate(LEASE_FILE_SIZE)
        self.direct("init", "-o", str(a.io_timeout), "-s", f"{LS_NAME}:0:{self.ls_path}:0")
        self.direct("init", "-r", f"{LS_NAME}:{RES_NAME}:{self.res_path}:0")
        leader = self.direct("read_leader", "-s", f"{LS_NAME}:1:{self.ls_path}:0")
        on_disk_iot = next((ln.split()[1] for ln in leader.splitlines()
                            if ln.startswith("io_timeout ")), "?")
        log(f"lockspace + resource initialised (io_timeout on disk: {on_disk_iot})")

        d1 = Daemon(self.dir, 1, a.io_timeout, self.pidfile)
        d2 = Daemon(self.dir, 2, a.io_timeout, self.pidfile)
        self.daemons = [d1, d2]
        d1.start()
        d2.start()
        log(f"daemons up: host1 pid {d1.pid}, host2 pid {d2.pid}")

        # ---- join ----
        io0 = d1.io()
        join1 = d1.add_lockspace(self.ls_path)
        join1_io = io_delta(io0, d1.io())
        log(f"host 1 joined the fresh lockspace in {join1:.3f} s")
        join2 = d2.add_lockspace(self.ls_path)
        log(f"host 2 joined in {join2:.3f} s")

        # ---- uncontended latency (host 1 only; host 2 idle in the lockspace) ----
        log(f"uncontended: {a.iterations} x acquire+release on host 1 ...")
        w = self.spawn_worker(d1, "latency", iterations=a.iterations, warmup=a.warmup)
        lat = self.collect(w, timeout=60 + a.iterations)
        loop_io = lat["io"]
        # renewals (sanlock timestamps are CLOCK_MONOTONIC seconds) during the timed loop
        loop_renewals = len([t for t in d1.renewal_timestamps()
                             if int(lat["t_start"]) <= t <= lat["t_end"]])
        total = ms_stats(lat["total_ns"])
        acq = ms_stats(lat["acq_ns"])
        rel = ms_stats(lat["rel_ns"])
        log(f"uncontended acq+rel: median {total['median_ms']} ms, p99 {total['p99_ms']} ms "
            f"(acquire {acq['median_ms']} ms, release {rel['median_ms']} ms)")

        # ---- idle window: renewal traffic ----
        log(f"idle window {a.idle_seconds:.1f} s to measure delta-lease renewals ...")
        # Sample /proc/PID/io every 20 ms; a run of consecutive non-zero
        # deltas is one I/O burst (one renewal: they are 2*io_timeout apart).
        # The per-renewal figure is the median burst, so an odd extra write
        # (seen now and then: +4096 B, probably ext4 falling back to a
        # buffered write for a 512 B O_DIRECT write) does not skew it.
        ts_c = d1.renewal_timestamps()
        io_c = d1.io()
        t_c = time.monotonic()
        bursts, cur, prev = [], None, io_c
        while time.monotonic() - t_c < a.idle_seconds:
            time.sleep(0.02)
            now_io = d1.io()
            dlt = io_delta(prev, now_io)
            prev = now_io
            if dlt["read_bytes"] or dlt["write_bytes"]:
                if cur is None:
                    cur = {"read_bytes": 0, "write_bytes": 0}
                    bursts.append(cur)
                cur["read_bytes"] += dlt["read_bytes"]
                cur["write_bytes"] += dlt["write_bytes"]
            else:
                cur = None
        io_d = prev
        t_d = time.monotonic()
        ts_d = d1.renewal_timestamps()
        idle_io = io_delta(io_c, io_d)
        idle_renewals = len([t for t in ts_d if not ts_c or t > ts_c[-1]])
        if bursts:
            renew_r = int(statistics.median(b["read_bytes"] for b in bursts))
            renew_w = int(statistics.median(b["write_bytes"] for b in bursts))
        else:
            renew_r = renew_w = None
        log(f"idle: {idle_renewals} renewals, {len(bursts)} I/O bursts, {idle_io['read_bytes']} B read, "
            f"{idle_io['write_bytes']} B written -> per renewal (median burst) {renew_r} B read, "
            f"{renew_w} B written")

        # loop bytes per cycle, with the renewals that happened during the loop taken out
        if renew_r is not None:
            cyc_r = (loop_io["read_bytes"] - loop_renewals * renew_r) / a.iterations
            cyc_w = (loop_io["write_bytes"] - loop_renewals * renew_w) / a.iterations
        else:
            cyc_r = cyc_w = None

        # ---- per-op bytes (median over samples; a renewal landing in a sample is an outlier) ----
        log(f"bytes per op: {a.io_samples} sampled acquire/release cycles ...")
        w = self.spawn_worker(d1, "iobytes", iterations=a.io_samples)
        iob = self.collect(w, timeout=60 + a.io_samples)

        def med(samples, key):
            return int(statistics.median(s[key] for s in samples))

        acq_r, acq_w = med(iob["acq"], "read_bytes"), med(iob["acq"], "write_bytes")
        rel_r, rel_w = med(iob["rel"], "read_bytes"), med(iob["rel"], "write_bytes")
        log(f"acquire: {acq_r} B read, {acq_w} B written; release: {rel_r} B read, {rel_w} B written "
            f"(rchar/wchar per acquire: {med(iob['acq'], 'rchar')}/{med(iob['acq'], 'wchar')})")

        # ---- contended ----
        log(f"contended: host 1 and host 2 loop acquire+release on the same resource "
            f"for {a.contended_seconds:.1f} s ...")
        start_at = time.monotonic() + 1.0
        ws = [self.spawn_worker(d, "contend", start_at=start_at, duration=a.contended_seconds)
              for d in (d1, d2)]
        cres = [self.collect(w, timeout=60 + a.contended_seconds) for w in ws]
        ok_ns = [v for r in cres for v in r["ok_ns"]]
        busy_ns = [v for r in cres for v in r["busy_ns"]]
        fail_ns = [v for r in cres for v in r["fail_ns"]]
        cont = ms_stats(ok_ns)
        busy_stats = ms_stats(busy_ns)
        fail_stats = ms_stats(fail_ns)
        c_ok = len(ok_ns)
        c_busy = sum(r["busy"] for r in cres)
        c_other = sum(r["other_err"] for r in cres)
        log(f"contended: {c_ok} ok, {c_busy} busy, {c_other} other errors; "
            f"ok acq+rel median {cont['median_ms']} ms, p99 {cont['p99_ms']} ms; "
            f"failed attempt median {fail_stats['median_ms']} ms, max {fail_stats['max_ms']} ms; "
            f"per host ok {[len(r['ok_ns']) for r in cres]}, errors {[r['errors'] for r in cres]}")

        load_end = loadavg()
        result = {
            "join_s_host1": round(join1, 3),
            "join_s_host2": round(join2, 3),
            "acq_rel_ms_median": total["median_ms"],
            "acq_rel_ms_p99": total["p99_ms"],
            "contended_ms_median": cont["median_ms"],
            "contended_ms_p99": cont["p99_ms"],
            "contended_ok": c_ok,
            "contended_busy": c_busy,
            "acquire_read_bytes": acq_r,
            "acquire_write_bytes": acq_w,
            "renewal_read_bytes": renew_r,
            "renewal_write_bytes": renew_w,
            "version": f"sanlock {version}",
            "detail": {
                "iterations": a.iterations,
                "warmup": a.warmup,
                "io_timeout_s": a.io_timeout,
                "io_timeout_on_disk": on_disk_iot,
                "dir": self.dir,
                "uncontended_acq_rel_ms": total,
                "uncontended_acquire_ms": acq,
                "uncontended_release_ms": rel,
                "uncontended_wall_s": round(lat["t_end"] - lat["t_start"], 3),
                "release_read_bytes": rel_r,
                "release_write_bytes": rel_w,
                "cycle_read_bytes_mean": None if cyc_r is None else round(cyc_r),
                "cycle_write_bytes_mean": None if cyc_w is None else round(cyc_w),
                "loop_renewals": loop_renewals,
                "idle_seconds": round(t_d - t_c, 3),
                "idle_renewals": idle_renewals,
                "idle_bursts": bursts,
                "idle_read_bytes": idle_io["read_bytes"],
                "idle_write_bytes": idle_io["write_bytes"],
                "join_host1_read_bytes": join1_io["read_bytes"],
                "join_host1_write_bytes": join1_io["write_bytes"],
                "acquire_rchar": med(iob["acq"], "rchar"),
                "acquire_wchar": med(iob["acq"], "wchar"),
                "io_samples": a.io_samples,
                "contended_seconds": a.contended_seconds,
                "contended_other_err": c_other,
                "contended_errors_by_host": {str(r["host_id"]): r["errors"] for r in cres},
                "contended_ok_by_host": {str(r["host_id"]): len(r["ok_ns"]) for r in cres},
                "contended_busy_attempt_ms": busy_stats,
                "contended_failed_attempt_ms": fail_stats,
                "busy_sleep_ms": a.busy_sleep_ms,
                "loadavg_start": load_start,
                "loadavg_end": load_end,
                "cpus": os.cpu_count(),
            },
        }
        return result

    def cleanup(self):
        for p in self.workers:
            if p.poll() is None:
                p.kill()
                p.wait()
        t0 = time.monotonic()
        rems = [(d, d.start_rem_lockspace()) for d in self.daemons]
        for d, p in rems:
            if p is None:
                continue
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"host {d.host_id}: rem_lockspace still running after 20 s, killing it")
                p.kill()
                p.wait()
        if any(p for _, p in rems):
            log(f"rem_lockspace done in {time.monotonic() - t0:.2f} s")
        for d in self.daemons:
            d.stop()
        self.daemons = []
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    wp = sub.add_parser("worker", help="internal: one registered sanlock client process")
    wp.add_argument("--mode", required=True, choices=["latency", "iobytes", "contend"])
    wp.add_argument("--host-id", type=int, required=True)
    wp.add_argument("--res-path", required=True)
    wp.add_argument("--daemon-pid", type=int, required=True)
    wp.add_argument("--iterations", type=int, default=0)
    wp.add_argument("--warmup", type=int, default=0)
    wp.add_argument("--start-at", type=float, default=0.0)
    wp.add_argument("--duration", type=float, default=0.0)
    wp.add_argument("--busy-sleep-ms", type=float, default=0.0)

    ap.add_argument("--dir", help="work directory (files are created there)")
    ap.add_argument("--iterations", type=int, default=int(os.environ.get("ITER", "500")))
    ap.add_argument("--warmup", type=int, default=10, help="untimed cycles before the timed loop")
    ap.add_argument("--io-timeout", type=int, default=1, help="sanlock io_timeout in seconds (default 1)")
    ap.add_argument("--idle-seconds", type=float, default=6.0,
                    help="idle window for measuring renewal bytes (renewal every 2*io_timeout)")
    ap.add_argument("--io-samples", type=int, default=100, help="cycles sampled for bytes per op")
    ap.add_argument("--contended-seconds", type=float, default=5.0)
    ap.add_argument("--busy-sleep-ms", type=float, default=0.0,
                    help="pause after a busy failure in the contended loop (default: retry at once)")
    args = ap.parse_args()

    if args.cmd == "worker":
        worker_main(args)
        return 0

    if not args.dir:
        ap.error("--dir is required")
    try:
        import sanlock  # noqa: F401,PLC0415
    except ImportError:
        print(f"error: python module 'sanlock' not importable by {sys.executable}; install Debian's "
              "python3-sanlock and run this with /usr/bin/python3", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    bench = Bench(args)
    try:
        result = bench.run()
    finally:
        bench.cleanup()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
