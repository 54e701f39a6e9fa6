"""Serial against parallel sweeps: the same suite with --jobs 1, 2, ... one after the other.

    python benchmarks/parallel_sweep.py                       # quick suite, --jobs 1 and 2
    python benchmarks/parallel_sweep.py --suite quick-all --jobs 1,2,4 --out runs/parallel

Each sweep runs `ptft-bench run` into its own fresh folder (the runs are the same: same run ids),
timed from start to exit (wall clock, the report included). Prints the wall time of each, the
ratio to the first, and whether every run's test metrics are equal to the first sweep's; the
per-run threads differ (cores / jobs), so a different summation order can move a metric in its
last digits, and the table says by how much. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sweep(suite: str, jobs: str, out: Path, extra: list[str]) -> float:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "ptft_bench", "run", "--suite", suite, "--jobs", jobs]
    cmd += ["--out", str(out), "--quiet", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def metrics(out: Path) -> dict[str, dict]:
    recs = (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))
    return {r["run_id"]: r.get("metrics", {}).get("test", {}) for r in recs}


def largest_difference(a: dict[str, dict], b: dict[str, dict]) -> float:
    diffs = [abs(a[k][m] - b[k][m]) for k in a if k in b for m in a[k] if m in b[k]]
    return max(diffs, default=float("nan"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--jobs", default="1,2", help="comma-separated --jobs values, in order")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "parallel-sweep")
    ap.add_argument("extra", nargs="*", help="more `ptft-bench run` flags (after --)")
    args = ap.parse_args()
    from ptft_bench.env import describe

    env = describe()
    print(f"{args.suite} on {env['cpu']} ({env['cores_available']} cores), {env['git_commit']}")
    rows, first = [], None
    for jobs in args.jobs.split(","):
        out = args.out / f"jobs-{jobs}"
        seconds = sweep(args.suite, jobs, out, args.extra)
        m = metrics(out)
        first = first or (seconds, m)
        same = m == first[1]
        rows.append(
            (jobs, seconds, first[0] / seconds, len(m), same, largest_difference(m, first[1]))
        )
        print(f"--jobs {jobs}: {seconds:.0f} s", flush=True)
    print(
        f"\n{'jobs':>5} {'wall s':>8} {'speed-up':>9} {'runs':>5} {'metrics equal':>14} {'max diff':>9}"
    )
    for jobs, seconds, ratio, n, same, diff in rows:
        print(f"{jobs:>5} {seconds:8.0f} {ratio:8.2f}x {n:5d} {str(same):>14} {diff:9.2g}")
    (args.out / "summary.json").write_text(
        json.dumps({"suite": args.suite, "env": env, "rows": rows}, indent=1)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
