"""Run every benchmark, one child process each, then print one summary table.

Run: ``python -m benchmarks`` or ``python benchmarks/run_all.py [--only NAME ...] [--quick]``
(``--quick``: smaller sizes for a smoke test; the figures are then not the issue's.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ["photometry", "output_size", "scaling", "end_to_end", "memory"]
QUICK = {
    "photometry": ["--stars", "2000", "--frames", "3", "--rounds", "2", "--photutils-runs", "1"],
    "output_size": ["--stars", "2000", "--ffis", "4"],
    "scaling": ["--stars", "2000", "--ffis", "10", "--prefetch", "2"],
    "end_to_end": ["--stars", "1000", "--ffis", "8"],
    "memory": ["--stars", "1000", "--ffis", "8", "--cadences", "50", "150"],
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", nargs="+", choices=ORDER, default=ORDER)
    p.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = p.parse_args(argv)
    results, failed = [], []
    for name in [n for n in ORDER if n in args.only]:
        cmd = [sys.executable, str(HERE / f"{name}.py"), *(QUICK[name] if args.quick else [])]
        print(f"\n##### {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=HERE.parent)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("BENCH_RESULT "):
                results.append(json.loads(line[len("BENCH_RESULT "):]))
            else:
                print(line, end="", flush=True)
        if proc.wait() != 0:
            failed.append(name)
        print(f"##### {name}: {time.perf_counter() - t0:.0f} s", flush=True)

    print("\n================ summary (figure, value, target) ================")
    for res in results:
        print(f"-- {res['benchmark']}")
        for f in res["figures"]:
            if not f["target"]:
                continue
            verdict = {True: "PASS", False: "MISS", None: "    "}[f["ok"]]
            print(f"  [{verdict}] {f['name']:<62} {f['value']:>9.3g} {f['unit']:<6} "
                  f"target {f['target']}")
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
