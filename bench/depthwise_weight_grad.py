"""The depthwise convolution's weight gradient on CPU: oneDNN's kernel, nat's batched product, nat's C kernel.

``nat.supernet.depthwise`` picks the weight gradient per call: nat's C kernel
(``nat.supernet.native``) for 5x5 and 7x7 kernels where it can be compiled, otherwise the
batched-matmul product on small maps (where oneDNN's backward-weights kernel is pathologically slow)
and oneDNN elsewhere. This benchmark measures all three on the map sizes of OFA's space at 128 px (4x4
to 64x64 inputs, kernels 3/5/7, strides 1/2, channel counts of its stages), interleaved, medians of
``--repeats`` timings, one torch thread by default, batch 16 (OFA's 128 px regime in
bench/supernet_speed.py), channels-last activations (the supernet's layout on CPU). Each row also says
which one the library picks, so a row where the pick is not the fastest shows at a glance.

    python bench/depthwise_weight_grad.py [--threads 1] [--repeats 9]

Writes bench/results/depthwise_weight_grad.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.supernet import native  # noqa: E402
from nat.supernet.depthwise import (  # noqa: E402
    uses_matmul_weight_grad,
    weight_grad_matmul,
    weight_grad_method,
)
from record import code_version, write_result  # noqa: E402

#: the batched product grows with the square of the map: at 32x32 it takes 60-300 ms per call
#: (oneDNN about 1-20 ms), so larger maps are not timed with it (it is never picked there)
PRODUCT_MAX_SIZE = 16
RESULT = ROOT / "bench" / "results" / "depthwise_weight_grad.json"
#: (channels, input map size, stride)
SHAPES = [
    (96, 64, 1),
    (96, 64, 2),
    (144, 32, 1),
    (144, 32, 2),
    (240, 16, 1),
    (480, 16, 1),
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

    def own() -> torch.Tensor:
        return native.depthwise_weight_grad(x, grad, kernel, stride, pad)

    methods = {"onednn": onednn}
    if size <= PRODUCT_MAX_SIZE:
        methods["product"] = product
    if native.depthwise_weight_grad_library() is not None:
        methods["native"] = own
    reference = onednn()
    errors = {
        name: ((fn() - reference).abs().max() / reference.abs().max()).item() for name, fn in methods.items()
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(3):  # interleaved rounds: load from other processes hits every method alike
        for name, fn in methods.items():
            times[name].append(_median_ms(fn, repeats))
    best = {name: sorted(t)[1] for name, t in times.items()}
    pick = {"pytorch": "onednn", "matmul": "product", "native": "native"}[
        weight_grad_method(x, kernel, stride)
    ]
    without_native = "product" if uses_matmul_weight_grad(x, kernel, stride) else "onednn"
    return {
        "channels": channels,
        "size": size,
        "stride": stride,
        "kernel": kernel,
        **{f"{name}_ms": ms for name, ms in best.items()},
        "library_picks": pick,
        "picks_without_native": without_native,
        "fastest": min(best, key=best.get),
        "pick_is_fastest": best[pick] <= min(best.values()) * 1.05,
        "max_relative_difference": max(errors.values()),
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
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    rows = []
    for channels, size, stride in SHAPES:
        for kernel in (3, 5, 7):
            row = measure(channels, size, stride, kernel, args.batch, args.repeats)
            rows.append(row)
            product = f"{row['product_ms']:6.2f} ms" if "product_ms" in row else "     -   "
            own = f", native {row['native_ms']:6.2f} ms" if "native_ms" in row else ""
            print(
                f"C{channels:4d} {size:2d}x{size:<2d} s{stride} k{kernel}: "
                f"oneDNN {row['onednn_ms']:6.2f} ms, product {product}{own}; "
                f"picks {row['library_picks']}{'' if row['pick_is_fastest'] else ' (not the fastest)'}",
                flush=True,
            )
    result = {
        "device": "cpu",
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "rows": rows,
        "native_kernel_available": "native_ms" in rows[0],
        "total_ms_onednn_only": sum(r["onednn_ms"] for r in rows),
        "total_ms_without_native": sum(r[f"{r['picks_without_native']}_ms"] for r in rows),
        "total_ms_library_pick": sum(r[f"{r['library_picks']}_ms"] for r in rows),
        "total_ms_best_possible": sum(r[f"{r['fastest']}_ms"] for r in rows),
        "picks_not_fastest": sum(not r["pick_is_fastest"] for r in rows),
        "notes": "medians of 3 interleaved rounds, each a median of `repeats` timings; channels-last "
        "inputs; a pick counts as the fastest within 5%; the product is timed on maps up to "
        f"{PRODUCT_MAX_SIZE}x{PRODUCT_MAX_SIZE} only",
    }
    write_result(args.out, result, threads=args.threads, commit=commit)
    print(
        f"all shapes: oneDNN only {result['total_ms_onednn_only']:.0f} ms, without the C kernel "
        f"{result['total_ms_without_native']:.0f} ms, "
        f"library's pick {result['total_ms_library_pick']:.0f} ms, "
        f"best possible {result['total_ms_best_possible']:.0f} ms; "
        f"{result['picks_not_fastest']} of {len(rows)} picks not the fastest; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
