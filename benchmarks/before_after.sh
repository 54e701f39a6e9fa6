#!/usr/bin/env bash
# What the speed features buy: four strategies of the quick suite (full, head_only, top_k k=2,
# lora r=8; rotten_tomatoes, 2,000 examples, 2 epochs) with length grouping and frozen-prefix
# caching off (suites/quick-before.toml) and on (suites/quick-after.toml), one after the other in
# the same conditions. Prints each run's train + eval seconds and the totals.
#   benchmarks/before_after.sh [OUT_DIR]        (default runs/before-after; ~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/before-after}"
ptft-bench run --suite benchmarks/suites/quick-before.toml --out "$OUT/before" --quiet --no-report >/dev/null
ptft-bench run --suite benchmarks/suites/quick-after.toml --out "$OUT/after" --quiet --no-report >/dev/null
python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows, tot = {}, {"before": 0.0, "after": 0.0}
for side in ("before", "after"):
    for p in (out / side / "records").glob("*.json"):
        r = json.loads(p.read_text())
        s = r["train_seconds"] + r["eval_seconds"]
        rows.setdefault(r["variant"], {})[side] = (s, r["metrics"]["test"]["accuracy"], r.get("padding_share"))
        tot[side] += s
print(f"{'variant':<14} {'before s':>9} {'after s':>8} {'speed-up':>8}  acc before/after  padding before/after")
for v, d in sorted(rows.items()):
    (b, ab, pb), (a, aa, pa) = d["before"], d["after"]
    print(f"{v:<14} {b:9.1f} {a:8.1f} {b / a:7.2f}x  {ab:.3f} / {aa:.3f}      {pb:.1%} / {pa:.1%}")
print(f"{'total':<14} {tot['before']:9.1f} {tot['after']:8.1f} {tot['before'] / tot['after']:7.2f}x")
PY
