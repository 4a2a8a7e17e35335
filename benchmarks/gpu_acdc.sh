#!/usr/bin/env bash
# The one device command of benchmarks/gpu_acdc.py (see its docstring): run through the device tool
# with carry [".device"] after `.venv/bin/python benchmarks/gpu_acdc.py pack` here.
#
#   bash benchmarks/gpu_acdc.sh              # eager (the default)
#   COMPILE=1 bash benchmarks/gpu_acdc.sh    # every method with `train run --compile` (torch.compile)
#
# COMPILE is off by default: --compile was measured on CPU only (docs/benchmarks.md), never on a GPU;
# its compile time (the first step) counts against each method's --time-budget. Other arguments go
# to `gpu_acdc.py run` (e.g. --methods maag --sequential).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
# train needs pydantic (absent there); datakit and train run from this tree, nothing else is installed
python3 -m pip install --quiet --no-index --find-links .device/wheels pydantic
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
extra=()
case "${COMPILE:-0}" in
  1) extra+=(--compile) ;;
  0) ;;
  *) echo "COMPILE must be 0 or 1, not '${COMPILE}'" >&2; exit 2 ;;
esac
python3 benchmarks/gpu_acdc.py run --out "$out" ${extra[@]+"${extra[@]}"} "$@" 2>&1 | tee "$out/log.txt"
