"""Latency lookup tables against end-to-end measurements, on this machine's CPU.

For each case (space, resolutions, widths, backend) it builds a table with `nat.objectives.latency_build`
(one thread, batch 1; the build's own calibration subnets come from seed 0), then measures held-out
random subnets (seed 1) end to end with the same backend and drift-corrected timing, in 6 interleaved
rounds (bursts of load from other processes then hit every subnet alike), and compares:

* Kendall tau between predicted and measured latency (target >= 0.9), and, for reference, the tau of
  MAdds against the measurements (how much a table beats the usual proxy);
* absolute relative error of the calibrated prediction (median: target <= 10%; 90th percentile), and
  the same for the plain sum of layer latencies (the bias the calibration removes);
* the build time (layers and calibration) and the number of table entries.

Cases: PyTorch eager on OFA's space (192 and 224 px, both widths) and on nat's small-input `tiny`
preset (28 and 32 px), and ONNX Runtime's CPU provider on `tiny` (28 px) and OFA's space (224 px, width
1.0). ONNX Runtime needs one ONNX export per network (nat's exporter, about 5-15 s for an OFA subnet on
this machine), so its OFA case measures fewer subnets (``--ort-ofa-subnets``). The deployed forms
(`nat export --int8` / `--executorch`): ONNX Runtime int8, ExecuTorch (XNNPACK) fp32 and int8 on `tiny`
at 32 px, with ``--runtime-subnets`` held-out subnets (each layer and network is lowered, and quantized,
on its own: seconds each).

    python bench/latency_lut.py [--only torch|onnxruntime|executorch|deployed|cuda] [--subnets 100]
        [--ort-ofa-subnets 30] [--runtime-subnets 20] [--out FILE]

``--only cuda`` runs one more case, on a GPU: OFA's space at 224 px, width 1.0, PyTorch on CUDA (for
`bench/gpu_check.sh`; a GPU's timings are far less noisy than this shared CPU's). Writes
bench/results/latency_lut.json (or ``--out``) and keeps the tables in ``latency_tables/`` beside it
(bench/results/latency_tables/ by default), so a run elsewhere never rewrites the committed tables.
Run it on an otherwise idle machine: it is a timing benchmark.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.objectives.complexity import ComplexityTable  # noqa: E402
from nat.objectives.latency_build import (  # noqa: E402
    Timing,
    TimingSettings,
    build_table,
    cpu_name,
    make_backend,
    time_round,
)
from nat.objectives.latency_table import LatencyPredictor  # noqa: E402
from nat.space import Subnet, get_space  # noqa: E402
from nat.space.genome import encode  # noqa: E402
from nat.supernet.static import StaticMobileNetV3  # noqa: E402
from nat.versions import library_versions  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "latency_lut.json"
CLASSES = 1000
#: end-to-end measurements of the held-out subnets: rounds, and the timing of one subnet in a round
ROUND = TimingSettings(warmup=2, repeats=4, min_block_ms=10.0, rounds=6, drift_correction=True)


def cases(args: argparse.Namespace) -> list[dict]:
    all_cases = [
        {"name": "torch_ofa_mbv3", "device": "cpu", "space": "ofa_mbv3", "resolutions": [192, 224],
         "widths": [1.0, 1.2], "subnets": args.subnets, "calibration": 20},
        {"name": "torch_tiny", "device": "cpu", "space": "tiny", "resolutions": [24, 32, 40],
         "widths": [1.0], "subnets": args.subnets, "calibration": 20},
        {"name": "onnxruntime_tiny", "device": "onnxruntime", "space": "tiny", "resolutions": [24, 40],
         "widths": [1.0], "subnets": args.subnets, "calibration": 10},
        {"name": "onnxruntime_ofa_mbv3", "device": "onnxruntime", "space": "ofa_mbv3", "resolutions": [224],
         "widths": [1.0], "subnets": args.ort_ofa_subnets, "calibration": 10},
        {"name": "cuda_ofa_mbv3", "device": "cuda", "space": "ofa_mbv3", "resolutions": [224],
         "widths": [1.0], "subnets": args.subnets, "calibration": 20},
        # the deployed forms (`nat export --onnx --executorch --int8`): one resolution and fewer subnets,
        # since every layer and every held-out network is exported (and quantized) on its own
        {"name": "onnxruntime_int8_tiny", "device": "onnxruntime", "int8": True, "space": "tiny",
         "resolutions": [32], "widths": [1.0], "subnets": args.runtime_subnets, "calibration": 10},
        {"name": "executorch_tiny", "device": "executorch", "space": "tiny", "resolutions": [32],
         "widths": [1.0], "subnets": args.runtime_subnets, "calibration": 10},
        {"name": "executorch_int8_tiny", "device": "executorch", "int8": True, "space": "tiny",
         "resolutions": [32], "widths": [1.0], "subnets": args.runtime_subnets, "calibration": 10},
    ]  # fmt: skip
    if args.only is None:  # a GPU case only when asked for: this benchmark's results are this CPU's
        return [c for c in all_cases if c["device"] != "cuda"]
    if args.only == "deployed":
        return [
            c
            for c in all_cases
            if c["name"] in ("onnxruntime_int8_tiny", "executorch_tiny", "executorch_int8_tiny")
        ]
    backend = {"torch": "cpu", "onnxruntime": "onnxruntime", "cuda": "cuda", "executorch": "executorch"}[
        args.only
    ]
    return [c for c in all_cases if c["device"] == backend]


def run_case(case: dict, threads: int, commit: str, tables: Path) -> dict:
    space = get_space(case["space"]).model_copy(
        update={"resolutions": tuple(case["resolutions"]), "width_mults": tuple(case["widths"])}
    )
    backend = make_backend(case["device"], threads, 1, int8=case.get("int8", False))
    table_path = tables / f"{case['name']}.yaml"
    table_path.unlink(missing_ok=True)
    start = time.perf_counter()
    table = build_table(
        table_path, space, backend, [CLASSES], calibration_subnets=case["calibration"], seed=0, progress=True
    )
    build_s = time.perf_counter() - start
    predictor = LatencyPredictor(table, space, CLASSES)
    rng = random.Random(1)
    held_out = [Subnet.sample(space, rng) for _ in range(case["subnets"])]
    genomes = np.array([encode(s, space) for s in held_out])
    predicted = predictor(genomes)
    plain = predictor.layer_sums(genomes)
    madds = ComplexityTable(space, CLASSES)(genomes)[0]
    groups = sorted({(s.r, s.w) for s in held_out})
    start = time.perf_counter()
    calls = []
    for i, subnet in enumerate(held_out):
        model = StaticMobileNetV3(space, subnet, CLASSES)
        calls.append(backend.prepare(model, torch.randn(1, 3, subnet.r, subnet.r)))
        print(f"\r  {case['name']}: prepared {i + 1}/{len(held_out)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    # interleaved rounds: every subnet is timed once per round, so a burst of load from other processes
    # on a shared machine spreads over many subnets; a subnet's figure is the median of all its blocks
    backend.settings = ROUND
    rounds = [time_round(backend, calls) for _ in range(ROUND.rounds)]
    per_subnet = list(zip(*rounds, strict=True))
    measured = np.array([Timing.combined(list(t)).median for t in per_subnet])
    # the measurements' own repeatability: odd rounds against even rounds (a ceiling for any predictor)
    odd = np.array([Timing.combined(list(t[0::2])).median for t in per_subnet])
    even = np.array([Timing.combined(list(t[1::2])).median for t in per_subnet])
    measure_s = time.perf_counter() - start
    err = np.abs(predicted - measured) / measured
    err_plain = np.abs(plain - measured) / measured
    return {
        **case,
        "machine": torch.cuda.get_device_name() if case["device"] == "cuda" else cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,  # per case: a run of some cases keeps the others' rows, made by other code
        "threads": threads,
        "batch_size": 1,
        "table_entries": len(table.entries),
        "build_s": round(build_s, 1),
        "measure_s": round(measure_s, 1),
        "kendall_tau": round(float(kendalltau(predicted, measured).statistic), 4),
        "kendall_tau_madds": round(float(kendalltau(madds, measured).statistic), 4),
        "kendall_tau_measurement_repeat": round(float(kendalltau(odd, even).statistic), 4),
        "kendall_tau_within_resolution_width": {
            f"r{r}_w{w:g}": round(float(kendalltau(predicted[idx], measured[idx]).statistic), 4)
            for r, w in groups
            if len(idx := [i for i, s in enumerate(held_out) if (s.r, s.w) == (r, w)]) > 2
        },
        "median_abs_error": round(float(np.median(err)), 4),
        "p90_abs_error": round(float(np.percentile(err, 90)), 4),
        "median_abs_error_uncorrected": round(float(np.median(err_plain)), 4),
        "p90_abs_error_uncorrected": round(float(np.percentile(err_plain, 90)), 4),
        "mean_signed_error_uncorrected": round(float(np.mean((plain - measured) / measured)), 4),
        "calibration": {k: table.calibration[k] for k in ("scale", "offset_ms")},
        "measured_ms": {
            "min": round(float(measured.min()), 3),
            "median": round(float(np.median(measured)), 3),
            "max": round(float(measured.max()), 3),
        },  # fmt: skip
        "pairs": [[round(float(p), 4), round(float(m), 4)] for p, m in zip(predicted, measured, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        choices=["torch", "onnxruntime", "executorch", "deployed", "cuda"],
        help="cuda: OFA's space at 224 px on the GPU; deployed: the int8 and ExecuTorch cases",
    )
    parser.add_argument("--subnets", type=int, default=100)
    parser.add_argument("--ort-ofa-subnets", type=int, default=30)
    parser.add_argument(
        "--runtime-subnets", type=int, default=20, help="held-out subnets of the deployed cases"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT, help=f"default: {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    result_path = args.out
    tables = result_path.parent / "latency_tables"  # beside the result file
    tables.mkdir(parents=True, exist_ok=True)
    previous = json.loads(result_path.read_text()) if result_path.is_file() else {}
    results = {c["name"]: c for c in previous.get("cases", [])}
    for case in cases(args):
        print(f"== {case['name']}", file=sys.stderr)
        result = run_case(case, args.threads, commit, tables)
        results[case["name"]] = result
        print(
            f"{case['name']}: tau {result['kendall_tau']:.3f} (MAdds {result['kendall_tau_madds']:.3f}, "
            f"measurement against itself {result['kendall_tau_measurement_repeat']:.3f}), "
            f"median error {100 * result['median_abs_error']:.1f}% (uncorrected "
            f"{100 * result['median_abs_error_uncorrected']:.1f}%), "
            f"p90 {100 * result['p90_abs_error']:.1f}%, "
            f"{result['table_entries']} entries built in {result['build_s']:.0f} s"
        )
    record = {
        "machine": torch.cuda.get_device_name() if args.only == "cuda" else cpu_name(),
        "versions": {k: str(v) for k, v in library_versions().items()},
        "date": time.strftime("%Y-%m-%d"),
        "cases": list(results.values()),
    }
    write_result(result_path, record, threads=args.threads, commit=commit)


if __name__ == "__main__":
    main()
