#!/usr/bin/python3
"""sanlock half of bench/takeover-vs-sanlock (Debian's sanlock 3.8 + python3-sanlock).

    /usr/bin/python3 bench/takeover_sanlock.py --dir DIR --io-timeout 1 --mode takeover|latency

Uses bench/sanlock_bench.py's Daemon (two watchdog-less daemons, host ids 1
and 2, each with its own SANLOCK_RUN_DIR, never daemonised, each leading its
own process group) and its worker conventions: every process that talks to
daemon N is a separate child started with that daemon's SANLOCK_RUN_DIR,
because libsanlock caches the socket path per process.

--mode latency: both hosts join (`add_lockspace -o IO`); one registered
process on host 1 does warmup + --iterations timed acquire + release cycles
(sanlock_bench.py's `worker --mode latency`).

--mode takeover: both hosts join; a registered process on host 1 acquires
the resource and keeps holding it; host 2 has a registered process. Power-off
of host 1 = SIGKILL of daemon 1's process group (daemon + sanlock-helper),
then of the holder. There is no watchdog, so nothing stops host 1's holder:
sanlock has to wait out its host-dead time (8 x io_timeout + 60 s after the
last renewal). Host 2's process then calls sanlock.acquire every --retry-ms
until it succeeds (an acquire may also block inside the daemon while it
watches the owner's delta lease); takeover time = success - power-off.

Prints one JSON object on stdout; progress on stderr. Daemons are listed in
DIR/sanlock-daemons.pids ("pid run_dir") for the caller's safety net.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing sanlock_bench
import sanlock_bench as sb  # noqa: E402

LS_NAME = sb.LS_NAME
RES_NAME = sb.RES_NAME


def log(msg):
    print(f"[takeover_sanlock {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# workers (separate processes, bound to one daemon through SANLOCK_RUN_DIR)
# --------------------------------------------------------------------------

def worker_main(a):
    import sanlock  # noqa: PLC0415

    sb.die_with_parent()
    if os.getppid() == 1:
        raise SystemExit("parent gone")
    ls, res = LS_NAME.encode(), RES_NAME.encode()
    disks = [(a.res_path, 0)]
    fd = sanlock.register()
    out = sys.stdout
    if a.role == "hold":
        sanlock.acquire(ls, res, disks, slkfd=fd)
        out.write(json.dumps({"held": True, "pid": os.getpid()}) + "\n")
        out.flush()
        sys.stdin.readline()  # hold until told otherwise (or killed)
        return
    # role take: wait for "go", then retry until acquired
    out.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    out.flush()
    line = sys.stdin.readline()
    if not line.startswith("go"):
        raise SystemExit("no go")
    deadline = time.monotonic() + a.max_wait_s
    sleep_s = a.retry_ms / 1000.0
    attempts, errors, msgs, max_attempt, attempt_log = 0, {}, {}, 0.0, []
    while True:
        t0 = time.monotonic()
        try:
            sanlock.acquire(ls, res, disks, slkfd=fd)
            t1 = time.monotonic()
            attempts += 1
            max_attempt = max(max_attempt, t1 - t0)
            break
        except sanlock.SanlockException as e:
            t1 = time.monotonic()
            attempts += 1
            max_attempt = max(max_attempt, t1 - t0)
            code = str(e.errno)
            errors[code] = errors.get(code, 0) + 1
            msgs.setdefault(code, str(e))
            if t1 - t0 > 0.5:
                attempt_log.append([round(t0, 3), round(t1 - t0, 3), code])
            if t1 > deadline:
                out.write(json.dumps({"ok": False, "attempts": attempts, "errors": errors,
                                      "messages": msgs}) + "\n")
                out.flush()
                raise SystemExit(3)
            time.sleep(sleep_s)
    out.write(json.dumps({"ok": True, "t_ok": t1, "t_last_start": t0, "attempts": attempts,
                          "errors": errors, "messages": msgs, "max_attempt_s": round(max_attempt, 3),
                          "long_attempts": attempt_log}) + "\n")
    out.flush()
    sys.stdin.readline()  # keep holding until the bench is done


# --------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, a):
        self.a = a
        self.dir = os.path.abspath(a.dir)
        os.makedirs(self.dir, exist_ok=True)
        self.ls_path = os.path.join(self.dir, "sanlock-lockspace.img")
        self.res_path = os.path.join(self.dir, "sanlock-resource.img")
        self.pidfile = os.path.join(self.dir, "sanlock-daemons.pids")
        self.daemons = []
        self.workers = []

    def direct(self, *args):
        cmd = [sb.SANLOCK, "direct", *args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if r.returncode != 0 or " done 0" not in r.stdout:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout.strip()}")
        return r.stdout

    def spawn(self, daemon, *args):
        p = subprocess.Popen([sys.executable, *args], env=daemon.env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
        self.workers.append(p)
        return p

    def spawn_role(self, daemon, role):
        return self.spawn(daemon, os.path.abspath(__file__), "worker", "--role", role,
                          "--res-path", self.res_path, "--retry-ms", repr(self.a.retry_ms),
                          "--max-wait-s", repr(self.a.max_wait_s))

    def read_line(self, p, what, timeout):
        """One JSON line from a worker, within timeout (the worker may block in sanlock)."""
        box = {}

        def rd():
            box["line"] = p.stdout.readline()

        t = threading.Thread(target=rd, daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise RuntimeError(f"{what}: no answer within {timeout:.0f} s")
        line = box.get("line", "")
        if not line:
            p.wait()
            raise RuntimeError(f"{what}: worker exited ({p.returncode}) without answering")
        return json.loads(line)

    def setup(self):
        a = self.a
        version = subprocess.run([sb.SANLOCK, "version"], stdout=subprocess.PIPE, text=True,
                                 check=True).stdout.strip()
        self.version = f"sanlock {version}"
        for path in (self.ls_path, self.res_path):
            with open(path, "wb") as f:
                f.truncate(sb.LEASE_FILE_SIZE)
        self.direct("init", "-o", str(a.io_timeout), "-s", f"{LS_NAME}:0:{self.ls_path}:0")
        self.direct("init", "-r", f"{LS_NAME}:{RES_NAME}:{self.res_path}:0")
        d1 = sb.Daemon(self.dir, 1, a.io_timeout, self.pidfile)
        d2 = sb.Daemon(self.dir, 2, a.io_timeout, self.pidfile)
        self.daemons = [d1, d2]
        d1.start()
        d2.start()
        log(f"{self.version}: daemons up (host 1 pid {d1.pid}, host 2 pid {d2.pid}); "
            f"add_lockspace -o {a.io_timeout}, host 2 {a.stagger_s:.1f} s after host 1 ...")
        joins, errs = {}, {}

        def join(d):
            try:
                if d.host_id == 2:
                    # half a renewal interval (2T / 2) after host 1: host 2's
                    # checks of host 1 then fall midway between host 1's
                    # renewals (the mean observation lag), instead of the
                    # near-worst phase that starting both at once gives
                    time.sleep(a.stagger_s)
                joins[d.host_id] = d.add_lockspace(self.ls_path)
            except Exception as e:  # noqa: BLE001
                errs[d.host_id] = e

        ts = [threading.Thread(target=join, args=(d,)) for d in self.daemons]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errs:
            raise RuntimeError(f"add_lockspace failed: {errs}")
        self.join = joins
        log(f"joined: host 1 in {joins[1]:.3f} s, host 2 in {joins[2]:.3f} s")

    def base_result(self):
        return {"product": "sanlock", "version": self.version, "mode": self.a.mode,
                "io_timeout_ms": self.a.io_timeout * 1000,
                "join_s_host1": round(self.join[1], 3), "join_s_host2": round(self.join[2], 3),
                "dir": self.dir}

    def latency(self):
        a = self.a
        d1 = self.daemons[0]
        w = self.spawn(d1, os.path.join(HERE, "sanlock_bench.py"), "worker", "--mode", "latency",
                       "--host-id", "1", "--res-path", self.res_path, "--daemon-pid", str(d1.pid),
                       "--iterations", str(a.iterations), "--warmup", str(a.warmup))
        out, _ = w.communicate(timeout=120 + a.iterations)
        if w.returncode != 0:
            raise RuntimeError(f"latency worker failed ({w.returncode})")
        lat = json.loads(out)
        total = sb.ms_stats(lat["total_ns"])
        log(f"acquire+release through sanlock: median {total['median_ms']} ms, p99 {total['p99_ms']} ms "
            f"({a.iterations} iterations)")
        res = self.base_result()
        res.update(acq_rel_ms_median=total["median_ms"], acq_rel_ms_p99=total["p99_ms"],
                   iterations=a.iterations, warmup=a.warmup, acq_rel=total,
                   acquire=sb.ms_stats(lat["acq_ns"]), release=sb.ms_stats(lat["rel_ns"]),
                   wall_s=round(lat["t_end"] - lat["t_start"], 3))
        return res

    def takeover(self):
        a = self.a
        d1, d2 = self.daemons
        holder = self.spawn_role(d1, "hold")
        h = self.read_line(holder, "host 1 holder", 60 + 10 * a.io_timeout)
        taker = self.spawn_role(d2, "take")
        t = self.read_line(taker, "host 2 taker", 60)
        log(f"host 1 process {h['pid']} holds {LS_NAME}/{RES_NAME}; host 2 process {t['pid']} registered; "
            f"settling {a.settle_s} s")
        time.sleep(a.settle_s)
        # host 1's last renewal (sanlock's renewal history: CLOCK_MONOTONIC seconds, whole seconds)
        last_renewal = None
        ts = d1.renewal_timestamps()
        if ts:
            last_renewal = ts[-1]
        t_off = time.monotonic()
        os.killpg(d1.pid, signal.SIGKILL)  # the daemon and its helper
        holder.kill()                        # after the daemon: it cannot release
        d1.proc.wait()
        holder.wait()
        log(f"power-off: SIGKILL daemon 1 group {d1.pid} and holder {h['pid']} "
            f"(host 1 last renewed at {last_renewal}, now {t_off:.1f}); host 2 retries acquire "
            f"every {a.retry_ms:.0f} ms")
        taker.stdin.write("go\n")
        taker.stdin.flush()
        r = self.read_line(taker, "host 2 taker", a.max_wait_s + 60)
        if not r.get("ok"):
            raise RuntimeError(f"no takeover within {a.max_wait_s:.0f} s of power-off: {r}; "
                               f"daemon 2 log tail:\n{d2.log_tail()}")
        takeover = r["t_ok"] - t_off
        # daemon 2's verdict, e.g. "paxos_acquire owner 1 1 6512 delta 1 1 6532 dead 6694-6553>140":
        # host 1's last renewal timestamp 6532; host 2 started counting at 6553
        dead_line = observer_lag = None
        try:
            with open(d2.log_path, errors="replace") as f:
                for line in f:
                    m = re.search(r"delta \d+ \d+ (\d+) dead (\d+)-(\d+)>(\d+)", line)
                    if m:
                        dead_line = line.strip()
                        observer_lag = int(m.group(3)) - int(m.group(1))
        except OSError:
            pass
        log(f"host 2 acquired {LS_NAME}/{RES_NAME} {takeover:.3f} s after power-off "
            f"({r['attempts']} attempts, errors {r['errors']}, longest attempt {r['max_attempt_s']} s)")
        res = self.base_result()
        res.update(takeover_s=round(takeover, 3),
                   renewal_to_takeover_s=None if last_renewal is None
                   else round(r["t_ok"] - last_renewal, 1),
                   last_renewal_monotonic_s=last_renewal, poweroff_monotonic_s=round(t_off, 3),
                   since_renewal_at_poweroff_ms=None if last_renewal is None
                   else round((t_off - last_renewal) * 1000),
                   observer_lag_s=observer_lag, daemon2_dead_line=dead_line, stagger_s=a.stagger_s,
                   attempts=r["attempts"], errors=r["errors"], error_messages=r["messages"],
                   max_attempt_ms=round(r["max_attempt_s"] * 1000, 1),
                   long_attempts=r["long_attempts"], retry_ms=a.retry_ms, settle_s=a.settle_s)
        return res

    def run(self):
        self.setup()
        return self.latency() if self.a.mode == "latency" else self.takeover()

    def cleanup(self):
        for p in self.workers:
            if p.poll() is None:
                p.kill()
            p.wait()
        # no rem_lockspace: shutdown -f 1, then SIGTERM/SIGKILL of the group (Daemon.stop)
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
    wp.add_argument("--role", choices=["hold", "take"], required=True)
    wp.add_argument("--res-path", required=True)
    wp.add_argument("--retry-ms", type=float, default=100.0)
    wp.add_argument("--max-wait-s", type=float, default=400.0)
    ap.add_argument("--dir")
    ap.add_argument("--io-timeout", type=int, default=1, help="sanlock io_timeout, seconds")
    ap.add_argument("--mode", choices=["takeover", "latency"])
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--retry-ms", type=float, default=100.0)
    ap.add_argument("--settle-s", type=float, default=None,
                    help="pause between host 1 acquiring and the power-off (default 2 x io_timeout"
                         " + 2 s: one sanlock renewal interval, so host 2 has checked host 1's"
                         " delta lease since joining; the same default as takeover_nosplit.py)")
    ap.add_argument("--stagger-s", type=float, default=None,
                    help="start host 2's add_lockspace this long after host 1's (default io_timeout:"
                         " half of sanlock's renewal interval, 2T)")
    ap.add_argument("--max-wait-s", type=float, default=0.0,
                    help="give up this long after power-off (default 16 x io_timeout + 120 s)")
    a = ap.parse_args()
    if a.cmd == "worker":
        worker_main(a)
        return 0
    if not a.dir or not a.mode:
        ap.error("--dir and --mode are required")
    if a.stagger_s is None:
        a.stagger_s = float(a.io_timeout)
    if a.settle_s is None:
        a.settle_s = 2.0 * a.io_timeout + 2
    if not a.max_wait_s:
        a.max_wait_s = 16 * a.io_timeout + 120
    try:
        import sanlock  # noqa: F401,PLC0415
    except ImportError:
        print(f"error: {sys.executable} cannot import sanlock; install python3-sanlock and use /usr/bin/python3",
              file=sys.stderr)
        return 2
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
