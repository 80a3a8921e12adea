#!/usr/bin/env bash
# The GPU checks of issue 17 in one run, for a machine with a CUDA device (nothing here needs a network).
#
#   bash bench/gpu_check.sh [OUT_DIR] [BUDGET_SECONDS]
#
# On this project's lent GPU machine: `bash bench/gpu_wheels.sh` here first, then one run there with
# `.whl` carried: `bash bench/gpu_check.sh $OUT 585` (the stages fit 585 s; the whole lease is 15 min).
#
# Stages, most important first, each under its own time limit so that one slow stage cannot eat the
# others' time (a lent GPU comes with minutes, not hours; the limits come from the two H200 runs,
# bench/results/gpu_h200*/):
#  1. bench/supernet_throughput.py: training and inference images/s of OFA's supernet at 224 px, nat
#     (channels-last and NCHW) vs OFA's package, fp32 and bf16;
#  2. `nat search --preset smoke` on the GPU in bf16: the whole loop end to end on CUDA (in-memory data);
#  3. the CUDA tests (pytest -m cuda: bf16 step without host sync, fp16/bf16 evaluation, CUDA latency
#     tables), skipped elsewhere;
#  4. bench/paper_scale.py --device cuda: the paper-scale search end to end (OFA w1.0 + w1.2, 192-256 px,
#     a JPEG folder) with batches that fill a GPU, and the projected wall time of a paper-sized run
#     (issue 43's target: <= 3 hours);
#  5. bench/evaluation_speed.py --device cuda: one subnet evaluation (BN calibration + validation) against
#     its forward passes alone, OFA's space at 192-256 px in bf16, and at the paper's counts (5,000
#     validation images, 224 px; issue 43's target: >= 0.5; the JSON is rewritten after each setting);
#  6. the cost of new layer shapes over 24 steps on new subnets: nat NCHW, nat channels-last, OFA's network
#     (the JSON is rewritten after each, so a cut-off stage keeps what finished);
#  7. with what budget is left, bench/latency_lut.py --only cuda: a latency table of OFA's space on the
#     GPU against 30 subnets measured end to end (issue 18's Kendall tau, on a quieter device than a CPU).
# bench/compile_speed.py --device cuda (whether finalize.compile pays there) and
# bench/distributed_scaling.py (CPU-only, gloo) are not run here.
#
# nat runs from src/ (PYTHONPATH), with the python3 that holds a CUDA torch. Its other dependencies
# (pyproject.toml: pydantic, pymoo, ...; ofa for the comparison and the checkpoints) must be importable:
# on a machine that cannot download them, carry them as wheels in .whl/ (bench/gpu_wheels.sh fetches
# them; they are installed from there). Each stage's log and JSON go to OUT_DIR/gpu.tar.gz, rebuilt after
# every stage, so a run cut off at its limit still returns what finished; OUT_DIR/summary.txt has one
# line per stage.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/gpu}
BUDGET=${2:-575}
START=$SECONDS
WORK=/tmp/nat_gpu_check
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    >"$WORK/pip.txt" 2>&1 || { tail "$WORK/pip.txt"; exit 1; }
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

pack() { tar -czf "$OUT/gpu.tar.gz" -C "$WORK" . 2>/dev/null; }
stage() {  # stage NAME LIMIT_SECONDS COMMAND...: run under a limit cut to the budget left
  local name=$1 limit=$2; shift 2
  local left=$((BUDGET - (SECONDS - START)))
  ((limit > left)) && limit=$left
  if ((limit < 15)); then echo "$name: skipped (budget spent)" | tee -a "$OUT/summary.txt"; return; fi
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >"$WORK/$name.txt" 2>&1
  local rc=$?
  echo "$name: rc=$rc in $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/summary.txt"
  tail -n 4 "$WORK/$name.txt"
  pack
}

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda, \
torch.cuda.get_device_name(), torch.cuda.is_available())"
  nproc
} >"$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

stage throughput 140 $PY bench/supernet_throughput.py --device cuda --subnets 6 --precisions fp32 bf16 \
  --out "$WORK/supernet_throughput_cuda.json"
SMOKE=/tmp/nat_gpu_smoke_run  # the run folder stays on the machine; its summary and log come back
rm -rf "$SMOKE"
stage smoke_search 60 $PY -m nat search --preset smoke --set device=cuda --precision bf16 --out "$SMOKE"
cp "$SMOKE/summary.md" "$WORK/smoke_summary.md" 2>/dev/null
cp "$SMOKE/search.log" "$WORK/smoke_search.log" 2>/dev/null
pack
stage cuda_tests 100 $PY -m pytest -m cuda -q -p no:cacheprovider -o addopts="" tests
stage paper_scale 150 $PY bench/paper_scale.py --device cuda --precisions bf16 --threads 4 \
  --train-batch 64 --eval-batch 200 --workers 8 --max-steps 8 --calibration-images 200 --val-images 200 \
  --per-class 60 --strategy-from bench/results/paper_scale.json --out "$WORK/paper_scale_cuda.json"
stage evaluation 150 $PY bench/evaluation_speed.py --device cuda --precision bf16 \
  --settings ofa_jpeg ofa_jpeg_paper --subnets 4 --threads 4 --out "$WORK/evaluation_speed_cuda.json"
stage new_shapes 120 $PY bench/supernet_throughput.py --device cuda --precisions bf16 --sequence 24 \
  --sequence-only --out "$WORK/supernet_new_shapes_cuda.json"
stage latency_cuda 120 $PY bench/latency_lut.py --only cuda --subnets 30 --out "$WORK/latency_lut_cuda.json"
echo "total $((SECONDS - START)) s" | tee -a "$OUT/summary.txt"
