#!/usr/bin/env bash
# The GPU checks of issue 17 in one run, for a machine with a CUDA device (nothing here needs a network).
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# 1. the CUDA tests (pytest -m cuda: precision paths, latency on CUDA, ...), skipped elsewhere;
# 2. bench/precision_speed.py on cuda: fp32 vs bf16 vs fp16 training step and inference of the supernet;
# 3. bench/paper_scale.py --device cuda: the paper-scale path (OFA w1.0 + w1.2, 192-256 px, JPEG folder)
#    and the projected wall time of a paper-sized CIFAR-10 run on this GPU, by precision;
# 4. bench/compile_speed.py --device cuda: whether finalize.compile pays off there (the shipped supernet
#    at 28 px and OFA's space at 224 px; cold compiles);
# 5. bench/distributed_scaling.py is CPU-only (gloo) and is not run here.
#
# nat runs from src/ (PYTHONPATH), with the python3 that holds a CUDA torch. Its other dependencies
# (pyproject.toml: pydantic, pymoo, scikit-learn, safetensors, tqdm, mlxtend, ...; ofa for the paper-scale
# checkpoints) must be importable: on a machine that cannot download them, carry them as wheels first.
# Figures go to OUT_DIR (default bench/results) as JSON, with the GPU's name in each file.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" \
  | tee "$OUT/gpu_name.txt"
$PY -m pytest -m cuda -q -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_pytest.txt"
cp bench/results/precision_speed.json /tmp/precision_speed_cpu.json  # the script writes one file name
$PY bench/precision_speed.py --device cuda --precisions fp32 bf16 fp16 2>&1 | tee "$OUT/gpu_precision_speed.txt"
cp bench/results/precision_speed.json "$OUT/precision_speed_cuda.json"
cp /tmp/precision_speed_cpu.json bench/results/precision_speed.json
$PY bench/paper_scale.py --device cuda --precisions fp32 bf16 fp16 2>&1 | tee "$OUT/gpu_paper_scale.txt"
cp bench/results/paper_scale_cuda.json "$OUT/" 2>/dev/null || true
$PY bench/compile_speed.py --device cuda --setting fashion_mnist_28px_b64 ofa_mbv3_224px_b64 \
  --out "$OUT/compile_speed_cuda.json" 2>&1 | tee "$OUT/gpu_compile_speed.txt"
