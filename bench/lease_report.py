#!/usr/bin/python3
"""Report for bench/lease-vs-sanlock.

    lease_report.py check WHO JSON_FILE
        exit non-zero with a clear message unless JSON_FILE holds a JSON object
        with numeric acq_rel_ms_median and join_s_host1.
    lease_report.py report ITER NOSPLIT_JSON SANLOCK_JSON
        print the comparison table and, as the very last line,
        summary: nosplit_ms=.. sanlock_ms=.. speedup=.. join_s=..
        An empty path means that side was skipped (its figures become "na").

Both sides print one JSON object with the same keys (see sanlock_bench.py).
"""

import json
import sys

ROWS = [
    ("join, host 1, fresh lockspace (s)", "join_s_host1"),
    ("join, host 2 (s)", "join_s_host2"),
    ("acquire+release median (ms)", "acq_rel_ms_median"),
    ("acquire+release p99 (ms)", "acq_rel_ms_p99"),
    ("contended acq+rel median (ms)", "contended_ms_median"),
    ("contended acq+rel p99 (ms)", "contended_ms_p99"),
    ("contended successes", "contended_ok"),
    ("contended busy failures", "contended_busy"),
    ("bytes read per acquire", "acquire_read_bytes"),
    ("bytes written per acquire", "acquire_write_bytes"),
    ("bytes read per renewal", "renewal_read_bytes"),
    ("bytes written per renewal", "renewal_write_bytes"),
]


def load(path, who):
    if not path:
        return None
    with open(path) as f:
        text = f.read()
    if not text.strip():
        sys.exit(f"error: {who} printed nothing on stdout ({path}); is the command implemented? "
                 "(SKIP_NOSPLIT=1 runs the sanlock half alone)")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
        # tolerate log lines on stdout: take the last line that is a JSON object
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    obj = json.loads(line)
                    break
                except ValueError:
                    pass
    if not isinstance(obj, dict):
        sys.exit(f"error: {who} printed no JSON object on stdout ({path}):\n{text[-2000:]}")
    return obj


def need(obj, key, who):
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        sys.exit(f"error: {who} JSON has no numeric {key!r} (got {v!r})")
    return float(v)


def cell(obj, key):
    if obj is None:
        return "skipped"
    v = obj.get(key)
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def ratio(nos, san, key):
    if nos is None or san is None:
        return ""
    a, b = nos.get(key), san.get(key)
    if isinstance(a, bool) or isinstance(b, bool):
        return ""
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or a <= 0:
        return ""
    return f"{b / a:.1f}x"


def report(iters, nos_path, san_path):
    nos = load(nos_path, "nosplit lease bench")
    san = load(san_path, "sanlock_bench.py")

    w0 = max(len(label) for label, _ in ROWS)
    head = f"{'metric':<{w0}}  {'nosplit':>14}  {'sanlock':>14}  {'sanlock/nosplit':>15}"
    print()
    print(f"lease-vs-sanlock: {iters} uncontended acquire+release iterations, "
          "io timeout 1 s, one work dir")
    print(f"  nosplit: {nos.get('version', '?') if nos else 'skipped'}")
    print(f"  sanlock: {san.get('version', '?') if san else 'skipped'}")
    print(head)
    print("-" * len(head))
    for label, key in ROWS:
        print(f"{label:<{w0}}  {cell(nos, key):>14}  {cell(san, key):>14}  {ratio(nos, san, key):>15}")
    if san is not None and isinstance(san.get("detail"), dict):
        d = san["detail"]
        print(f"sanlock detail: release alone {d.get('release_read_bytes')} B read / "
              f"{d.get('release_write_bytes')} B written; contended successes by host "
              f"{d.get('contended_ok_by_host')}; failures by host and code "
              f"{d.get('contended_errors_by_host')} (-243 IDLIVE, -244 OWNED, -245 OTHER)")
    print()

    nos_ms = need(nos, "acq_rel_ms_median", "nosplit") if nos is not None else None
    san_ms = need(san, "acq_rel_ms_median", "sanlock") if san is not None else None
    join = need(nos, "join_s_host1", "nosplit") if nos is not None else None
    speedup = f"{san_ms / nos_ms:.1f}" if (nos_ms and san_ms is not None) else "na"
    nos_s = "na" if nos_ms is None else f"{nos_ms:.3f}"
    san_s = "na" if san_ms is None else f"{san_ms:.3f}"
    join_s = "na" if join is None else f"{join:.2f}"
    print(f"summary: nosplit_ms={nos_s} sanlock_ms={san_s} speedup={speedup} join_s={join_s}")


def main(argv):
    if len(argv) == 4 and argv[1] == "check":
        obj = load(argv[3], argv[2])
        need(obj, "acq_rel_ms_median", argv[2])
        need(obj, "join_s_host1", argv[2])
        return 0
    if len(argv) == 5 and argv[1] == "report":
        report(argv[2], argv[3], argv[4])
        return 0
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
