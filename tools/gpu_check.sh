#!/usr/bin/env bash
# The CUDA check in one command on a GPU machine (about 5 minutes; at most 9): relevance on the CUDA provider against
# the CPU provider (cosine >= 0.9999) and forward/explain times with I/O binding, for the shipped digits CNN and ViT
# and the seeded VGG-16 and ViT-S/16 (exported here with torch). See tools/bench/gpu.py.
#
#   tools/gpu_check.sh [WHEELS_DIR] [-- options of python -m tools.bench.gpu]
#
# Needs python3 with torch, onnx, numpy, scipy, pillow, matplotlib. What is missing (onnx-graphsurgeon, tqdm,
# threadpoolctl, and onnxruntime-gpu where only the CPU build is installed) is installed from PyPI, or, on a
# machine without network, from WHEELS_DIR, made beforehand elsewhere with
#   pip download --no-deps -d wheels onnx-graphsurgeon tqdm threadpoolctl onnxruntime-gpu
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then WHEELS=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
missing=()
for module in onnx_graphsurgeon tqdm threadpoolctl; do
  $PY -c "import $module" 2>/dev/null || missing+=("${module//_/-}")
done
$PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" \
  || missing+=(onnxruntime-gpu)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  if [ -n "$WHEELS" ]; then
    $PY -m pip install -q --no-index --find-links "$WHEELS" --no-deps "${missing[@]}"
  else
    $PY -m pip install -q --no-deps "${missing[@]}"
  fi
fi
export EXPLAINER_GRAPH_CACHE=${EXPLAINER_GRAPH_CACHE:-/tmp/explainer-graphs}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PYTHONPATH=. timeout 540 "$PY" -m tools.bench.gpu "$@"
