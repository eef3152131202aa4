#!/usr/bin/python3
"""nosplit half of bench/takeover-vs-sanlock: two emulated hosts, each a
process group with its own `nosplit leased` and a lab watchdog.

    /usr/bin/python3 bench/takeover_nosplit.py --bin target/release/nosplit \\
        --dir DIR --io-timeout-ms 1000 --mode takeover|latency [--iterations 200]

A host (index i = 1, 2; host id i):
  * a placeholder `sleep` leads a new process group (pgid = its pid);
  * `nosplit watchdog-lab --socket DIR/runI/wd.sock --pgid PGID --margin-ms 1000`
    in a process group of its own (it kills the host's group if leased stops
    re-arming it);
  * `nosplit leased --config DIR/runI/leased.toml` inside the host's group;
  * holders: `sleep` processes inside the host's group, registered with leased.
Clients speak leased's JSON-lines protocol on DIR/runI/leased.sock directly
(crates/leased/src/api.rs), so no CLI start-up time is measured.

--mode latency: both hosts join; one holder on host 1 does --warmup untimed
and --iterations timed acquire + release cycles of an exclusive lease.

--mode takeover: both hosts join; a holder on host 1 acquires the lease; host 2
has a registered holder. Power-off of host 1 = SIGKILL of its whole process
group (leader, leased, holder; not its watchdog supervisor, which is another
box in real life). Host 2 then retries acquire every --retry-ms until it
succeeds: takeover time = success - power-off.

Prints one JSON object on stdout; progress on stderr. Every process it starts
gets PR_SET_PDEATHSIG(SIGKILL) and is listed in DIR/nosplit-procs.pids
("pid starttime" lines) for the caller's safety net; all are stopped on exit.
"""

import argparse
import ctypes
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

LS = "ls1"
RES = "vm1"

_libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    print(f"[takeover_nosplit {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pdeathsig():
    """preexec_fn: die (SIGKILL) when the bench process goes away."""
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
        return data.rsplit(")", 1)[1].split()[19]  # field 22
    except (OSError, IndexError):
        return None


def pct(values, p):
    s = sorted(values)
    k = max(1, math.ceil(p / 100.0 * len(s)))
    return s[k - 1]


def ms_stats(ns):
    ms = [v / 1e6 for v in ns]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p99_ms": round(pct(ms, 99), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3)}


class Client:
    """One connection to leased: a JSON request per line, a JSON response per line."""

    def __init__(self, path, timeout=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.rf = self.sock.makefile("rb")

    def call(self, req):
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        line = self.rf.readline()
        if not line:
            raise RuntimeError("leased closed the connection")
        return json.loads(line)

    def close(self):
        try:
            self.rf.close()
            self.sock.close()
        except OSError:
            pass


class Procs:
    """Every process started, for cleanup and the caller's pid file."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.procs = []

    def start(self, cmd, **kw):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, preexec_fn=pdeathsig, **kw)
        self.procs.append(p)
        st = starttime(p.pid)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid} {st}\n")
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    p.kill()
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"pid {p.pid} did not exit after SIGKILL")
        try:
            os.unlink(self.pidfile)
        except OSError:
            pass


class Host:
    def __init__(self, bench, idx):
        self.b = bench
        self.idx = idx
        self.run = os.path.join(bench.dir, f"run{idx}")
        self.sock_path = os.path.join(self.run, "leased.sock")
        self.wd_sock = os.path.join(self.run, "wd.sock")
        self.cfg = os.path.join(self.run, "leased.toml")
        self.leader = self.wd = self.leased = None
        self.pgid = None
        self.client = None
        self.t_start = None
        self.join_s = None
        self.powered_off = False
        self.members = []  # our processes in the host's group

    def start(self):
        b = self.b
        os.makedirs(self.run, exist_ok=True)
        self.leader = b.procs.start(["sleep", "100000"], process_group=0)
        self.members.append(self.leader)
        self.pgid = self.leader.pid
        wd_err = open(os.path.join(self.run, "wd.stderr"), "ab")
        self.wd = b.procs.start([b.bin, "watchdog-lab", "--socket", self.wd_sock,
                                 "--pgid", str(self.pgid), "--margin-ms", "1000"],
                                process_group=0, stdout=wd_err, stderr=subprocess.STDOUT)
        wd_err.close()
        deadline = time.monotonic() + 15
        while not os.path.exists(self.wd_sock):
            if self.wd.poll() is not None:
                raise RuntimeError(f"host {self.idx}: watchdog-lab exited with {self.wd.returncode}: "
                                   f"{self.tail('wd.stderr')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {self.idx}: watchdog-lab socket {self.wd_sock} did not appear")
            time.sleep(0.01)
        with open(self.cfg, "w") as f:
            f.write(f'host_name = "bench-h{self.idx}"\n'
                    f'run_dir = "{self.run}"\n'
                    "[watchdog]\n"
                    'backend = "lab"\n'
                    f'lab_socket = "{self.wd_sock}"\n'
                    "[[lockspace]]\n"
                    f'name = "{LS}"\n'
                    f'path = "{b.ids}"\n'
                    f"host_id = {self.idx}\n")
        err = open(os.path.join(self.run, "leased.stderr"), "ab")
        out = open(os.path.join(self.run, "leased.stdout"), "ab")
        self.t_start = time.monotonic()
        self.leased = b.procs.start([b.bin, "leased", "--config", self.cfg],
                                    process_group=self.pgid, stdout=out, stderr=err)
        self.members.append(self.leased)
        err.close()
        out.close()
        log(f"host {self.idx}: pgid {self.pgid}, watchdog-lab pid {self.wd.pid}, leased pid {self.leased.pid}")

    def tail(self, name, n=15):
        try:
            with open(os.path.join(self.run, name), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(none)"

    def check_alive(self):
        if self.leased.poll() is not None:
            raise RuntimeError(f"host {self.idx}: leased exited with {self.leased.returncode}; "
                               f"leased.stderr tail:\n{self.tail('leased.stderr')}")

    def connect(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            if os.path.exists(self.sock_path):
                try:
                    self.client = Client(self.sock_path)
                    return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"host {self.idx}: no socket {self.sock_path} after {timeout} s")
            time.sleep(0.01)

    def status(self):
        r = self.client.call({"op": "status"})
        if r.get("result") != "status":
            raise RuntimeError(f"host {self.idx}: status answered {r}")
        return r

    def joined(self):
        """True once lockspaces[0].state == joined (records the join time)."""
        self.check_alive()
        if self.client is None:
            if not os.path.exists(self.sock_path):
                return False
            self.connect()
        ls = self.status()["lockspaces"]
        if ls and ls[0]["state"] == "joined":
            if self.join_s is None:
                self.join_s = time.monotonic() - self.t_start
            return True
        return False

    def new_holder(self):
        h = self.b.procs.start(["sleep", "100000"], process_group=self.pgid)
        self.members.append(h)
        r = self.client.call({"op": "register", "pid": h.pid})
        if r.get("result") != "registered":
            raise RuntimeError(f"host {self.idx}: register {h.pid} answered {r}")
        return h

    def power_off(self):
        self.powered_off = True
        os.killpg(self.pgid, signal.SIGKILL)
        # reap them, so that the group is really gone (not a group of zombies)
        for p in self.members:
            p.wait()


def host_dead_s(t):
    """docs/timing.md: (fire(1+rho) + T)/(1-rho), fire = 3.5T + max(T/2, 1 s), rho = 1000 ppm."""
    fire = 3.5 * t + max(t / 2.0, 1.0)
    return (fire * 1.001 + t) / 0.999


def acquire_req(b, pid):
    return {"op": "acquire", "pid": pid,
            "lease": {"lockspace": LS, "resource": RES, "path": b.res, "offset": 0},
            "mode": "exclusive"}


def release_req(pid):
    return {"op": "release", "pid": pid, "lockspace": LS, "resource": RES}


class Bench:
    def __init__(self, a):
        self.a = a
        self.bin = os.path.abspath(a.bin)
        self.dir = os.path.abspath(a.dir)
        self.ids = os.path.join(self.dir, "ids")
        self.res = os.path.join(self.dir, "vm1.lease")
        os.makedirs(self.dir, exist_ok=True)
        self.procs = Procs(os.path.join(self.dir, "nosplit-procs.pids"))
        self.hosts = []

    def nosplit(self, *args):
        cmd = [self.bin, *args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout.strip()}")

    def setup(self):
        a = self.a
        self.nosplit("lease", "init", "lockspace", self.ids, "--name", LS,
                     "--io-timeout-ms", str(a.io_timeout_ms), "--create")
        self.nosplit("lease", "init", "resource", self.res, "--lockspace", LS, "--name", RES, "--create")
        self.hosts = [Host(self, 1), Host(self, 2)]
        self.hosts[0].start()
        # host 2 starts half a renewal interval (T/2 / 2) later, so that its
        # scans fall midway between host 1's renewals: the mean observation
        # lag, not a phase that happens to follow from starting both at once
        time.sleep(a.stagger_s)
        self.hosts[1].start()
        deadline = time.monotonic() + 60 + 10 * a.io_timeout_ms / 1000.0
        pending = list(self.hosts)
        while pending:
            pending = [h for h in pending if not h.joined()]
            if pending and time.monotonic() > deadline:
                raise RuntimeError("hosts " + ", ".join(str(h.idx) for h in pending) + " did not join; "
                                   + " ".join(f"host {h.idx} leased.stderr:\n{h.tail('leased.stderr')}"
                                              for h in pending))
            time.sleep(0.02)
        log(f"joined: host 1 in {self.hosts[0].join_s:.3f} s, host 2 in {self.hosts[1].join_s:.3f} s "
            f"(io_timeout {a.io_timeout_ms} ms, host 2 started {a.stagger_s:.2f} s after host 1)")

    def base_result(self):
        return {"product": "nosplit", "mode": self.a.mode, "io_timeout_ms": self.a.io_timeout_ms,
                "join_s_host1": round(self.hosts[0].join_s, 3),
                "join_s_host2": round(self.hosts[1].join_s, 3), "dir": self.dir}

    def latency(self):
        a = self.a
        h1 = self.hosts[0]
        holder = h1.new_holder()
        c = h1.client
        acq, rel = acquire_req(self, holder.pid), release_req(holder.pid)

        def call(req, want):
            r = c.call(req)
            if r.get("result") != want:
                raise RuntimeError(f"{req['op']} answered {r}")

        for _ in range(a.warmup):
            call(acq, "acquired")
            call(rel, "ok")
        pc = time.perf_counter_ns
        tot, ta, tr = [], [], []
        t_start = time.monotonic()
        for _ in range(a.iterations):
            t0 = pc()
            call(acq, "acquired")
            t1 = pc()
            call(rel, "ok")
            t2 = pc()
            tot.append(t2 - t0)
            ta.append(t1 - t0)
            tr.append(t2 - t1)
        wall = time.monotonic() - t_start
        total = ms_stats(tot)
        log(f"acquire+release through leased: median {total['median_ms']} ms, p99 {total['p99_ms']} ms "
            f"({a.iterations} iterations, {wall:.2f} s)")
        out = self.base_result()
        out.update(acq_rel_ms_median=total["median_ms"], acq_rel_ms_p99=total["p99_ms"],
                   iterations=a.iterations, warmup=a.warmup, acq_rel=total,
                   acquire=ms_stats(ta), release=ms_stats(tr), wall_s=round(wall, 3))
        return out

    def takeover(self):
        a = self.a
        h1, h2 = self.hosts
        holder1 = h1.new_holder()
        r = h1.client.call(acquire_req(self, holder1.pid))
        if r.get("result") != "acquired":
            raise RuntimeError(f"host 1: acquire answered {r}")
        lver1 = r.get("lver")
        holder2 = h2.new_holder()
        log(f"host 1 holder {holder1.pid} holds {LS}/{RES} (lver {lver1}); host 2 holder {holder2.pid} "
            f"registered; settling {a.settle_s} s")
        time.sleep(a.settle_s)
        # one status right before power-off: how long ago host 1 last renewed
        st = h1.status()
        t_q = time.monotonic()
        ls1 = st["lockspaces"][0]
        since = ls1.get("since_renewal_ms")
        hosts_seen_by_2 = {h["host_id"]: h["state"] for h in h2.status()["lockspaces"][0]["hosts"]}
        if not any(l["lease"]["resource"] == RES for hs in st["holders"] for l in hs["leases"]):
            raise RuntimeError(f"host 1 does not report the lease before power-off: {st['holders']}")
        t_off = time.monotonic()
        h1.power_off()
        log(f"power-off: SIGKILL process group {h1.pgid} (host 1 renewed {since} ms before); "
            f"host 2 saw hosts {hosts_seen_by_2}; host 2 retries acquire every {a.retry_ms} ms")
        c = h2.client
        req = acquire_req(self, holder2.pid)
        attempts, errors, max_attempt = 0, {}, 0.0
        last_msg = None
        first_msg = {}
        limit = t_off + a.max_wait_s
        pc = time.perf_counter
        t_ok = None
        while True:
            h2.check_alive()
            t0 = pc()
            r = c.call(req)
            dt = pc() - t0
            attempts += 1
            max_attempt = max(max_attempt, dt)
            if r.get("result") == "acquired":
                t_ok = time.monotonic()
                lver2 = r.get("lver")
                break
            kind = r.get("kind", r.get("result"))
            errors[kind] = errors.get(kind, 0) + 1
            first_msg.setdefault(kind, r.get("message"))
            last_msg = (time.monotonic(), r.get("message") or "")
            if time.monotonic() > limit:
                raise RuntimeError(f"no takeover {a.max_wait_s} s after power-off; errors {errors}, "
                                   f"first messages {first_msg}; host 2 leased.stderr:\n"
                                   f"{h2.tail('leased.stderr')}")
            time.sleep(a.retry_ms / 1000.0)
        takeover = t_ok - t_off
        from_renewal = None if since is None else t_ok - (t_q - since / 1000.0)
        log(f"host 2 acquired {LS}/{RES} (lver {lver2}) {takeover:.3f} s after power-off "
            f"({attempts} attempts, errors {errors}, longest attempt {max_attempt * 1000:.1f} ms)")
        # When host 2's host-dead clock for host 1 started, from the last busy
        # answer's "... it is dead in X s" (0.1 s resolution) and the
        # lockspace's host-dead time (docs/timing.md).
        observer_lag = None
        if last_msg and since is not None:
            m = re.search(r"dead in ([0-9.]+) s", last_msg[1])
            if m:
                clock_start = last_msg[0] + float(m.group(1)) - host_dead_s(a.io_timeout_ms / 1000.0)
                observer_lag = round(clock_start - (t_q - since / 1000.0), 2)
        st2 = h2.status()
        held = any(l["lease"]["resource"] == RES and hs["pid"] == holder2.pid
                   for hs in st2["holders"] for l in hs["leases"])
        h1_state = {h["host_id"]: h["state"] for h in st2["lockspaces"][0]["hosts"]}.get(1)
        out = self.base_result()
        out.update(takeover_s=round(takeover, 3),
                   renewal_to_takeover_s=None if from_renewal is None else round(from_renewal, 3),
                   since_renewal_at_poweroff_ms=since, observer_lag_s=observer_lag,
                   last_busy_message=last_msg[1] if last_msg else None,
                   stagger_s=a.stagger_s, attempts=attempts, errors=errors,
                   first_error_messages=first_msg, max_attempt_ms=round(max_attempt * 1000, 1),
                   lver_host1=lver1, lver_host2=lver2, host2_reports_lease=held,
                   host1_state_seen_by_host2_after=h1_state, retry_ms=a.retry_ms,
                   settle_s=a.settle_s)
        return out

    def run(self):
        self.setup()
        return self.latency() if self.a.mode == "latency" else self.takeover()

    def cleanup(self):
        for h in self.hosts:
            if h.client:
                h.client.close()
        # holders, leased and leaders first (reverse start order), watchdogs too:
        # nothing here must outlive the bench.
        self.procs.stop_all()


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the nosplit binary")
    ap.add_argument("--dir", required=True, help="work directory (lease files, run dirs, logs)")
    ap.add_argument("--io-timeout-ms", type=int, default=1000)
    ap.add_argument("--mode", choices=["takeover", "latency"], required=True)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--retry-ms", type=float, default=100.0)
    ap.add_argument("--settle-s", type=float, default=None,
                    help="pause between host 1 acquiring and the power-off (default 2 x io_timeout"
                         " + 2 s: steady state, host 2 has seen host 1 renew since it joined;"
                         " the same default as takeover_sanlock.py)")
    ap.add_argument("--stagger-s", type=float, default=None,
                    help="start host 2 this long after host 1 (default io_timeout/4: half of"
                         " nosplit's renewal interval, T/2; takeover_sanlock.py staggers by half"
                         " of sanlock's, 2T)")
    ap.add_argument("--max-wait-s", type=float, default=0.0,
                    help="give up this long after power-off (default 30 x io_timeout + 60 s)")
    a = ap.parse_args()
    if a.stagger_s is None:
        a.stagger_s = a.io_timeout_ms / 1000.0 / 4
    if a.settle_s is None:
        a.settle_s = 2 * a.io_timeout_ms / 1000.0 + 2
    if not a.max_wait_s:
        a.max_wait_s = 30 * a.io_timeout_ms / 1000.0 + 60
    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    signal.signal(signal.SIGINT, _raise_exit)
    b = Bench(a)
    try:
        result = b.run()
    finally:
        b.cleanup()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
