"""Standalone (extracted) models on NHWC against NCHW activations: CPU inference, same weights and inputs.

`StaticMobileNetV3` makes its input channels-last (``channels_last=True``, the default, as the
supernet does); this measures what that buys over the NCHW layout for extracted random subnets in two
regimes: the shipped supernet's space at 28 px (batch 256) and OFA's space at 224 px (batch 16). The two
layouts run the same model object (only the flag differs), interleaved, and their outputs are checked
equal within float tolerance. Figures: medians over subnets of the best of ``--repeats`` timed passes.

    python bench/static_layout.py [--threads 1] [--subnets 4] [--repeats 5]

Writes bench/results/static_layout.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.space import Subnet  # noqa: E402
from nat.supernet import Supernet  # noqa: E402
from record import write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "static_layout.json"
#: regime -> (space preset, resolution, batch)
REGIMES = {"tiny-s2 28 px": ("tiny-s2", 28, 256), "ofa_mbv3 224 px": ("ofa_mbv3", 224, 16)}


def best_time(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t0)
    return min(times)


def measure(preset: str, resolution: int, batch: int, subnets: int, repeats: int) -> dict:
    net = Supernet(preset, 1.0, 10)
    rng = random.Random(0)
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
    ratios, nchw, nhwc = [], [], []
    for _ in range(subnets):
        s = Subnet.sample(net.space, rng)
        model = net.extract(Subnet(s.ks, s.e, s.d, resolution, 1.0)).eval()
        with torch.no_grad():
            model.channels_last = True
            fast = model(x)
            model.channels_last = False
            torch.testing.assert_close(model(x), fast, rtol=1e-4, atol=1e-4)
            a = b = 0.0
            for layout in (False, True, True, False):  # interleaved: load hits both alike
                model.channels_last = layout
                t = best_time(model, x, repeats)
                if layout:
                    b += t / 2
                else:
                    a += t / 2
        nchw.append(batch / a)
        nhwc.append(batch / b)
        ratios.append(a / b)
    return {
        "batch": batch,
        "subnets": subnets,
        "nchw_images_per_s": statistics.median(nchw),
        "nhwc_images_per_s": statistics.median(nhwc),
        "speedup": statistics.median(ratios),
        "speedups": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--subnets", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "torch": torch.__version__, "regimes": {}}
    for name, (preset, resolution, batch) in REGIMES.items():
        figures = measure(preset, resolution, batch, args.subnets, args.repeats)
        result["regimes"][name] = figures
        print(
            f"{name}, batch {batch}: NHWC {figures['nhwc_images_per_s']:.0f} img/s vs NCHW "
            f"{figures['nchw_images_per_s']:.0f} img/s: {figures['speedup']:.2f}x "
            f"(median of {args.subnets} subnets)"
        )
    write_result(args.out, result, indent=2, threads=args.threads)


if __name__ == "__main__":
    main()
