#!/usr/bin/env bash
# The GPU section of the benchmark page, in one go on a CUDA machine: the layer benchmark (the CPU protocol's batch of
# 8, then a batch of 64), the batched Lasso solve, the CUDA parity tests, the memory benchmark and torch.compile'd
# VARS-D / VARS-SD rows at N = 196 (mode reduce-overhead: CUDA graphs).
#
#   bash benchmarks/gpu.sh OUT_DIR [STEP ...]    STEP: layers layers_b64 solve tests memory compile (default: all)
#
# Each step runs under its own time limit (seconds, below) and a failing or stopped step does not stop the others;
# every step's outputs land in OUT_DIR (the batched solve rewrites its JSON after each setting). GPU_AFTER_STEP, when
# set, is a command run after every step (for instance to copy OUT_DIR elsewhere while the rest runs).
set -u
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
cd "$(dirname "$0")/.."

step() {
    local limit=$1
    shift
    echo "== $(date -u +%T) $* (limit ${limit} s)"
    timeout "$limit" "$@"
    echo "== $(date -u +%T) exit status $?"
    if [ -n "${GPU_AFTER_STEP:-}" ]; then bash -c "$GPU_AFTER_STEP"; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
"$py" -c "import torch, timm; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'timm', timm.__version__,
                 torch.cuda.get_device_name())"
steps=${*:2}
steps=${steps:-layers layers_b64 solve tests memory compile}
for name in $steps; do
    case $name in
    layers) step "${LIMIT_LAYERS:-120}" "$py" benchmarks/layers.py --device cuda --out "$out" --name layers_cuda ;;
    layers_b64) step "${LIMIT_LAYERS_B64:-50}" "$py" benchmarks/layers.py --device cuda --batch 64 --no-models \
        --out "$out" --name layers_cuda_b64 ;;
    solve) step "${LIMIT_SOLVE:-270}" "$py" benchmarks/batched_solve.py --device cuda --out "$out" ;;
    tests) step "${LIMIT_TESTS:-100}" "$py" -m pytest tests/core/test_cuda.py -q -n 4 -p no:cacheprovider ;;
    memory) step "${LIMIT_MEMORY:-30}" "$py" benchmarks/memory.py --device cuda --out "$out/memory_cuda.json" ;;
    compile) step "${LIMIT_COMPILE:-150}" "$py" benchmarks/layers.py --device cuda --compile --grids 14 --no-models \
        --compile-mode reduce-overhead --out "$out" --name layers_cuda_compile ;;
    *) echo "unknown step $name (layers layers_b64 solve tests memory compile)" >&2; exit 2 ;;
    esac
done
