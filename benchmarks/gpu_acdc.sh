#!/usr/bin/env bash
# The one device command of benchmarks/gpu_acdc.py (see its docstring): run through the device tool
# with carry [".device"] after `.venv/bin/python benchmarks/gpu_acdc.py pack` here.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
# train needs pydantic (absent there); datakit and train run from this tree, nothing else is installed
python3 -m pip install --quiet --no-index --find-links .device/wheels pydantic
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
python3 benchmarks/gpu_acdc.py run --out "$out" "$@" 2>&1 | tee "$out/log.txt"
