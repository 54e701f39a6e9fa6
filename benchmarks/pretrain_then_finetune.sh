#!/usr/bin/env bash
# Pretraining as a benchmark axis, end to end: pretrain -> fine-tune suite -> report.
#
#   benchmarks/pretrain_then_finetune.sh [dapt] [scratch] [clm]     (default: all three)
#
#   dapt     continued MLM of MiniLM-L6 on movie-review snippets (runs/dapt-rt), then the dapt
#            suite: base vs adapted x full / head_only / lora / bitfit on rotten_tomatoes
#   scratch  bert-tiny randomly initialised vs MLM-pretrained on ../shared/data/corpora, then the
#            scratch suite (full / head_only): "why pretrain at all?"
#   clm      gpt-tiny from scratch on tinyshakespeare: held-out loss before / after
#
# Run from anywhere; paths are relative to the repository root. Environment:
#   PTFT_SHARED_DATA  shared data folder (default ../shared/data)
#   RUNS_DIR          where model folders and run records go (default runs)
#   THREADS           torch CPU threads for pretraining (default: torch's choice)
#   DAPT_STEPS SCRATCH_STEPS CLM_STEPS   pretraining budgets (default 200 / 600 / 200)
#   SMOKE=1           tiny budgets into runs/smoke-pretrain (a check that the chain works, ~3 min)
#   FRESH=1           delete this chain's earlier outputs first (run ids depend on the model path,
#                     not on its contents: a rebuilt model folder must not meet old records)
# Finished steps are skipped on a rerun: a model folder with pretrain_record.json is kept, and
# `ptft-bench run` resumes a suite where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${PTFT_SHARED_DATA:-../shared/data}"
C="$DATA/corpora"
SMOKE="${SMOKE:-0}"
if [[ "$SMOKE" == 1 ]]; then
  RUNS="${RUNS_DIR:-runs/smoke-pretrain}"
  DAPT_STEPS="${DAPT_STEPS:-4}"; SCRATCH_STEPS="${SCRATCH_STEPS:-20}"; CLM_STEPS="${CLM_STEPS:-20}"
  FT=(--max-train-samples 64 --max-eval-samples 64 --epochs 1 --quiet)
  EVAL=(--max-eval-blocks 16); HEAD_STEPS=3
else
  RUNS="${RUNS_DIR:-runs}"
  DAPT_STEPS="${DAPT_STEPS:-200}"; SCRATCH_STEPS="${SCRATCH_STEPS:-600}"; CLM_STEPS="${CLM_STEPS:-200}"
  FT=(); EVAL=(); HEAD_STEPS=50
fi
THREAD_ARGS=()
[[ -n "${THREADS:-}" ]] && THREAD_ARGS=(--threads "$THREADS")
STAGES=("$@")
[[ ${#STAGES[@]} -eq 0 ]] && STAGES=(dapt scratch clm)

for f in rt_snippets.txt wikitext2.valid.tokens wikitext2.test.tokens tinyshakespeare.txt; do
  [[ -f "$C/$f" ]] || { echo "missing $C/$f: set PTFT_SHARED_DATA" >&2; exit 2; }
done
mkdir -p "$RUNS"

pretrain() {  # OUT, then ptft-bench pretrain flags; skipped when OUT holds a finished run
  local out="$1"; shift
  if [[ -f "$out/pretrain_record.json" ]]; then
    echo "== $out already pretrained: skipped (FRESH=1 to redo)"; return
  fi
  echo "== ptft-bench pretrain --out $out $*"
  # --resume: an interrupted run continues from its last checkpoint (none yet: a fresh start)
  local resume=(); [[ -d "$out/checkpoints" ]] && resume=(--resume)
  ptft-bench pretrain --out "$out" "${resume[@]}" "${THREAD_ARGS[@]}" "${EVAL[@]}" --no-progress "$@"
}

summary() {  # STAGE TITLE FOLDER... -> $RUNS/pretraining-STAGE.md (held-out metrics before / after)
  local file="$RUNS/pretraining-$1.md" title="$2"; shift 2
  { echo "## $title"; echo
    python -c 'import sys; from ptft_bench.pretrain.report import records_table; print(records_table(sys.argv[1:]))' "$@"
  } | tee "$file"
}

for stage in "${STAGES[@]}"; do
  case "$stage" in
    dapt)
      [[ "${FRESH:-0}" == 1 ]] && rm -rf "$RUNS/dapt-rt" "$RUNS/dapt"
      pretrain "$RUNS/dapt-rt" --objective mlm --model minilm-l6 \
        --corpus "$C/rt_snippets.txt" --exclude-eval-of rotten_tomatoes \
        --block-size 64 --batch-size 16 --max-steps "$DAPT_STEPS" --lr 1e-4 \
        --fit-head-steps "$HEAD_STEPS"
      summary dapt "MiniLM-L6 continued MLM on rt_snippets" "$RUNS/dapt-rt"
      ptft-bench run --suite dapt --models "minilm-l6,$RUNS/dapt-rt" --out "$RUNS/dapt" \
        --no-report "${FT[@]}"
      ptft-bench report "$RUNS/dapt"
      ;;
    scratch)
      M="$RUNS/scratch-models"
      [[ "${FRESH:-0}" == 1 ]] && rm -rf "$M" "$RUNS/scratch"
      CORPUS=("$C/wikitext2.valid.tokens" "$C/wikitext2.test.tokens" "$C/rt_snippets.txt")
      # Random init first: it trains the WordPiece tokenizer on the corpus; the pretraining run
      # takes that tokenizer (--model), and with the same seed starts from the same weights.
      pretrain "$M/bert-tiny-random" --from-scratch bert-tiny --corpus "${CORPUS[@]}" \
        --exclude-eval-of rotten_tomatoes --max-steps 0
      pretrain "$M/bert-tiny-mlm" --from-scratch bert-tiny --model "$M/bert-tiny-random" \
        --corpus "${CORPUS[@]}" --exclude-eval-of rotten_tomatoes \
        --block-size 128 --batch-size 32 --max-steps "$SCRATCH_STEPS" --lr 1e-3
      summary scratch "bert-tiny random init vs MLM-pretrained" "$M/bert-tiny-random" "$M/bert-tiny-mlm"
      ptft-bench run --suite scratch --models "$M/bert-tiny-random,$M/bert-tiny-mlm" \
        --out "$RUNS/scratch" --no-report "${FT[@]}"
      ptft-bench report "$RUNS/scratch"
      ;;
    clm)
      [[ "${FRESH:-0}" == 1 ]] && rm -rf "$RUNS/gpt-tiny-shakespeare"
      pretrain "$RUNS/gpt-tiny-shakespeare" --objective clm --from-scratch gpt-tiny \
        --corpus "$C/tinyshakespeare.txt" --block-size 128 --batch-size 32 \
        --max-steps "$CLM_STEPS" --lr 1e-3
      summary clm "gpt-tiny from scratch on tinyshakespeare" "$RUNS/gpt-tiny-shakespeare"
      ;;
    *) echo "unknown stage $stage: use dapt, scratch, clm" >&2; exit 2 ;;
  esac
done
echo "pretraining before/after: $RUNS/pretraining-*.md; fine-tuning reports: $RUNS/dapt/report, $RUNS/scratch/report"
