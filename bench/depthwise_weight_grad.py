"""The depthwise convolution's weight gradient on CPU: oneDNN's kernel against nat's batched product.

``nat.supernet.depthwise`` takes the batched-matmul weight gradient on small maps, where oneDNN's
backward-weights kernel is pathologically slow; this benchmark measures both on the map sizes where the
choice is made (4x4 to 16x16 inputs, kernels 3/5/7, strides 1/2, channel counts of OFA's stages 4-5),
interleaved, medians of ``--repeats`` timings, one torch thread by default, batch 16 (OFA's 128 px
regime in bench/supernet_speed.py), channels-last activations (the supernet's layout on CPU). Each row
also says which one the library picks, so a row where the pick is the slower one shows at a glance.

    python bench/depthwise_weight_grad.py [--threads 1] [--repeats 9]

Writes bench/results/depthwise_weight_grad.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.supernet.depthwise import uses_matmul_weight_grad, weight_grad_matmul  # noqa: E402

RESULT = ROOT / "bench" / "results" / "depthwise_weight_grad.json"
#: (channels, input map size, stride)
SHAPES = [
    (672, 4, 1),
    (480, 7, 1),
    (480, 8, 1),
    (672, 8, 1),
    (672, 8, 2),
    (960, 8, 2),
    (240, 9, 1),
    (240, 12, 2),
    (240, 16, 1),
    (240, 16, 2),
]


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2] * 1e3


def measure(channels: int, size: int, stride: int, kernel: int, batch: int, repeats: int) -> dict:
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, 1, kernel, kernel)
    pad = kernel // 2
    out = F.conv2d(x, weight, None, stride, pad, 1, channels)
    grad = torch.randn_like(out).contiguous(memory_format=torch.channels_last)

    def onednn() -> torch.Tensor:
        return torch.ops.aten.convolution_backward(
            grad,
            x,
            weight,
            None,
            [stride] * 2,
            [pad] * 2,
            [1, 1],
            False,
            [0, 0],
            channels,
            [False, True, False],
        )[1]

    def product() -> torch.Tensor:
        return weight_grad_matmul(x, grad, kernel, stride, pad)

    reference = onednn()
    error = ((product() - reference).abs().max() / reference.abs().max()).item()
    onednn_ms, product_ms = [], []
    for _ in range(3):  # interleaved rounds: load from other processes hits both alike
        onednn_ms.append(_median_ms(onednn, repeats))
        product_ms.append(_median_ms(product, repeats))
    onednn_best, product_best = sorted(onednn_ms)[1], sorted(product_ms)[1]
    picks_product = uses_matmul_weight_grad(x, kernel, stride)
    return {
        "channels": channels,
        "size": size,
        "stride": stride,
        "kernel": kernel,
        "onednn_ms": onednn_best,
        "product_ms": product_best,
        "product_speedup": onednn_best / product_best,
        "library_picks": "product" if picks_product else "onednn",
        "pick_is_faster": (product_best <= onednn_best) == picks_product,
        "max_relative_difference": error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--out", type=Path, default=RESULT, help="default: bench/results/depthwise_weight_grad.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for channels, size, stride in SHAPES:
        for kernel in (3, 5, 7):
            row = measure(channels, size, stride, kernel, args.batch, args.repeats)
            rows.append(row)
            print(
                f"C{channels:4d} {size:2d}x{size:<2d} s{stride} k{kernel}: "
                f"oneDNN {row['onednn_ms']:6.2f} ms, "
                f"product {row['product_ms']:6.2f} ms ({row['product_speedup']:4.1f}x); "
                f"picks {row['library_picks']}{'' if row['pick_is_faster'] else ' (slower)'}",
                flush=True,
            )
    picked = [r["onednn_ms"] if r["library_picks"] == "onednn" else r["product_ms"] for r in rows]
    result = {
        "device": "cpu",
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "rows": rows,
        "total_ms_onednn_only": sum(r["onednn_ms"] for r in rows),
        "total_ms_library_pick": sum(picked),
        "total_ms_best_possible": sum(min(r["onednn_ms"], r["product_ms"]) for r in rows),
        "slower_picks": sum(not r["pick_is_faster"] for r in rows),
        "notes": "medians of 3 interleaved rounds, each a median of `repeats` timings; channels-last inputs",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        f"all shapes: oneDNN only {result['total_ms_onednn_only']:.0f} ms, library's pick "
        f"{result['total_ms_library_pick']:.0f} ms, best possible {result['total_ms_best_possible']:.0f} ms; "
        f"{result['slower_picks']} of {len(rows)} picks slower; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
