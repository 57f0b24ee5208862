#!/usr/bin/env bash
# One upper rung of the scale ladder on a GPU: `depthscope reproduce --ladder --device cuda`, unchanged recipe.
#
#   scripts/ladder_gpu.sh [OUT]          # default OUT: ${OUT:-out}/ladder_gpu
#
# Rung 16 x 384 (32 sublayers, ~29M parameters) on 4M bytes of pydoc per model, residual and Block AttnRes
# (S = 4, N = 8), seeds 0 and 1: 4 models, 16M training tokens in all. Sized for one 10-minute slot of an
# H100/H200 (the recipe's batch of 16 x 128 keeps each step small, so kernel launches, not FLOPs, set the
# pace; the first run prints tokens/s per model in losses.csv). The ladder resumes, so a run cut by the
# time limit finishes when the script runs again. Environment: RUNGS, CORPORA, SEEDS, DEVICE, LIMIT_S
# override the defaults (DEVICE=cpu RUNGS=1x16:4k for a dry run on a CPU); figures are drawn only where
# Chromium is installed (kaleido), otherwise the tables and report.md come without them (--no-figures).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-out}/ladder_gpu}
RUNGS=${RUNGS:-16x384:4M}
CORPORA=${CORPORA:-pydoc}
SEEDS=${SEEDS:-0,1}
DEVICE=${DEVICE:-cuda}
LIMIT_S=${LIMIT_S:-570}
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
FIGURES=()
command -v chromium >/dev/null 2>&1 || FIGURES=(--no-figures)
[ "$DEVICE" != cuda ] || "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
start=$(date +%s)
timeout "$LIMIT_S" "$PY" -m depthscope.cli reproduce --ladder --device "$DEVICE" --rungs "$RUNGS" \
    --corpora "$CORPORA" --seeds "$SEEDS" --out "$OUT_DIR" --no-progress "${FIGURES[@]}"
echo "ladder rung done in $(( $(date +%s) - start )) s: $OUT_DIR/report.md, $OUT_DIR/losses.csv (tokens/s per model)"
