#!/usr/bin/python3
"""Report for bench/takeover-vs-sanlock.

    takeover_report.py check WHO JSON_FILE
        exit non-zero with a clear message unless JSON_FILE holds one JSON
        object with a numeric takeover_s or acq_rel_ms_median.
    takeover_report.py report LAT_NOSPLIT LAT_SANLOCK TO1_NOSPLIT TO1_SANLOCK TO10_NOSPLIT TO10_SANLOCK
        print the comparison table and, as the very last line,
        summary: nosplit_takeover_s=.. sanlock_takeover_s=.. speedup=..
        An empty path means that run was skipped (its figures become "na").

The JSON files come from bench/takeover_nosplit.py and bench/takeover_sanlock.py.
"""

import json
import math
import sys

RHO = 0.001  # docs/timing.md: clock rate bound


def nosplit_host_dead(t):
    """docs/timing.md: host dead = (fire(1+rho) + T)/(1-rho), fire = 3.5T + max(T/2, 1 s)."""
    fire = 3.5 * t + max(t / 2.0, 1.0)
    # rounded up to the millisecond, as docs/timing.md lists it
    return math.ceil((fire * (1 + RHO) + t) / (1 - RHO) * 1000) / 1000


def sanlock_host_dead(t):
    """sanlock 3.x: 8 x io_timeout + 60 s (watchdog margin) after the last renewal."""
    return 8 * t + 60


def load(path, who=None):
    if not path:
        return None
    with open(path) as f:
        text = f.read()
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                pass
    sys.exit(f"error: {who or path}: no JSON object in {path}")


def fmt(v, nd=3):
    if v is None:
        return "na"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def ratio(s, n):
    if s is None or n is None or n == 0:
        return ""
    return f"{s / n:.1f}x"


def ms_to_s(v):
    return None if v is None else v / 1000.0


def get(obj, key):
    return None if obj is None else obj.get(key)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "check":
        who, path = sys.argv[2], sys.argv[3]
        obj = load(path, who)
        if not isinstance(obj, dict) or not (
                isinstance(obj.get("takeover_s"), (int, float))
                or isinstance(obj.get("acq_rel_ms_median"), (int, float))):
            sys.exit(f"error: {who}: unusable output in {path}")
        return 0
    if len(sys.argv) != 8 or sys.argv[1] != "report":
        sys.exit(__doc__)
    lat_n, lat_s, to1_n, to1_s, to10_n, to10_s = (load(p) for p in sys.argv[2:8])
    version = next((o["version"] for o in (lat_s, to1_s, to10_s) if o and o.get("version")),
                   "sanlock")

    rows = []  # (label, nosplit, sanlock, ratio, ndigits)

    def add(label, n, s, nd=3, show_ratio=True):
        rows.append((label, fmt(n, nd), fmt(s, nd), ratio(s, n) if show_ratio else ""))

    for t, on, os_ in ((1, to1_n, to1_s), (10, to10_n, to10_s)):
        if on is None and os_ is None:
            continue
        add(f"takeover after power-off, io_timeout {t} s (s)",
            get(on, "takeover_s"), get(os_, "takeover_s"))
        add("  power-off after host 1's last renewal (s)",
            ms_to_s(get(on, "since_renewal_at_poweroff_ms")),
            ms_to_s(get(os_, "since_renewal_at_poweroff_ms")), show_ratio=False)
        add("  host 2's host-dead clock started after it (s)",
            get(on, "observer_lag_s"), get(os_, "observer_lag_s"), nd=2, show_ratio=False)
        add("  takeover after host 1's last renewal (s)",
            get(on, "renewal_to_takeover_s"), get(os_, "renewal_to_takeover_s"), nd=3)
        add("  design host-dead time after last renewal (s)",
            nosplit_host_dead(t), float(sanlock_host_dead(t)))
        add("  acquire attempts by host 2 (every 100 ms)",
            get(on, "attempts"), get(os_, "attempts"), show_ratio=False)
        add("  longest single acquire attempt (ms)",
            get(on, "max_attempt_ms"), get(os_, "max_attempt_ms"), nd=1, show_ratio=False)
        add(f"  join, host 1, io_timeout {t} s (s)",
            get(on, "join_s_host1"), get(os_, "join_s_host1"))
    if lat_n is not None or lat_s is not None:
        it = get(lat_n, "iterations") or get(lat_s, "iterations")
        add("acquire+release via daemon, median, io 1 s (ms)",
            get(lat_n, "acq_rel_ms_median"), get(lat_s, "acq_rel_ms_median"))
        add(f"acquire+release via daemon, p99 (ms, n={it})",
            get(lat_n, "acq_rel_ms_p99"), get(lat_s, "acq_rel_ms_p99"))
        add("  acquire alone, median (ms)",
            get(get(lat_n, "acquire"), "median_ms"), get(get(lat_s, "acquire"), "median_ms"))
        add("  release alone, median (ms)",
            get(get(lat_n, "release"), "median_ms"), get(get(lat_s, "release"), "median_ms"))

    head = ("metric", "nosplit", version, "sanlock/nosplit")
    w = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    line = "| " + " | ".join(h.ljust(w[i]) for i, h in enumerate(head)) + " |"
    print(line)
    print("|" + "|".join("-" * (w[i] + 2) for i in range(4)) + "|")
    for r in rows:
        print("| " + r[0].ljust(w[0]) + " | " + " | ".join(r[i].rjust(w[i]) for i in (1, 2, 3)) + " |")
    print()
    print("takeover: host 1 holds the lease, its process group (nosplit: leader, leased, holder) or")
    print("daemon + holder (sanlock) is SIGKILLed at power-off; host 2 retries acquire every 100 ms.")
    print("Host 2 joins half a renewal interval after host 1 (nosplit T/4, sanlock T), so it sees")
    print("host 1's renewals about midway between its own checks; power-off comes 2 x io_timeout + 2 s")
    print("after host 1 acquired. Takeover = (when host 2 saw host 1's last renewal) + host-dead time")
    print("- (power-off - last renewal). sanlock runs without a watchdog here and waits out its")
    print("host-dead time, 8 x io_timeout + 60 s; its times are whole seconds (+-1 s), nosplit's")
    print("host-2 clock start comes from the busy answer's 'dead in X s' (+-0.1 s).")
    for o in (to1_n, to10_n):
        if o is not None and not o.get("host2_reports_lease", True):
            print(f"WARNING: nosplit io_timeout {o['io_timeout_ms']} ms: host 2's status does not list the lease")

    n1 = get(to1_n, "takeover_s")
    s1 = get(to1_s, "takeover_s")
    sp = f"{s1 / n1:.1f}" if (n1 and s1) else "na"
    print(f"summary: nosplit_takeover_s={fmt(n1, 2)} sanlock_takeover_s={fmt(s1, 2)} speedup={sp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
