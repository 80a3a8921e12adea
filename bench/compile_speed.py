"""Does ``finalize.compile`` pay off? torch.compile of an extracted front model, against the eager paths.

One front-model-sized subnet of a supernet, three ways of fine-tuning it, each step the same SGD step
on the same batch, run interleaved (one step of each per round) so that load from other processes hits
all alike:

- ``supernet``: the subnet trained inside its supernet (nat's default fine-tuning path);
- ``standalone``: the extracted `StaticMobileNetV3`, eager (what ``finalize.compile`` trains, uncompiled);
- ``compiled``: the same network under ``torch.compile`` (backend ``--backend``, default inductor).

Plus inference (a test batch, eval mode, no gradients), eager against compiled. It reports the compile
times (the first steps / first batch of a new architecture, which every front model is), the per-step
and per-batch medians, and the break-even: how many steps (or test images) a model must run before
compiling has paid for itself (``null`` when the compiled step is not faster).

    python bench/compile_speed.py [--setting fashion_mnist_28px_b64] [--device cpu] [--threads 1]
                                  [--rounds 15] [--backend inductor] [--warm] [--out FILE.json]

Settings: ``fashion_mnist_28px_b64`` (the shipped supernet, the quickstart's fine-tune: 28 px, batch
64) and ``ofa_mbv3_224px_b64`` (OFA's space at the paper's resolution, random weights: GPU scale).
Writes bench/results/compile_speed.json.
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# cold compiles, as a new front model gets: torch's on-disk caches of earlier runs (e.g. the last run of
# this benchmark) would make compiling look nearly free. Set before torch reads them; --warm keeps them.
if "--warm" not in sys.argv:
    _CACHE = tempfile.mkdtemp(prefix="nat-compile-bench-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.search.supernets import builtin_supernet  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import Supernet  # noqa: E402
from nat.supernet.checkpoint import load_supernet  # noqa: E402
from nat.train.engine import param_groups  # noqa: E402
from nat.train.standalone import compiled  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "compile_speed.json"
SETTINGS = {  # name: (supernet source, resolution, training batch, test batch)
    "fashion_mnist_28px_b64": ("builtin:fashion_mnist_tiny", 28, 64, 500),
    "ofa_mbv3_224px_b64": ("ofa_mbv3", 224, 64, 256),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _supernet(source: str) -> Supernet:
    if source.startswith("builtin:"):
        return load_supernet(builtin_supernet(source.removeprefix("builtin:")), num_classes=10)
    torch.manual_seed(0)
    return Supernet(source, 1.0, 1000)


def _median_subnet(net: Supernet, resolution: int) -> Subnet:
    """A random subnet of median expansion/kernel/depth choices (seed 0) at ``resolution``."""
    sampled = Subnet.sample(net.space, random.Random(0), w=net.width_mult)
    return Subnet(ks=sampled.ks, e=sampled.e, d=sampled.d, r=resolution, w=sampled.w)


def _step(forward, module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor):
    optimizer = torch.optim.SGD(param_groups(module, 3e-5), lr=0.01, momentum=0.9, nesterov=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(forward(images), labels, label_smoothing=0.1).backward()
        optimizer.step()

    return step


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def measure(setting: str, device: torch.device, rounds: int, backend: str) -> dict:
    source, resolution, batch, test_batch = SETTINGS[setting]
    net = _supernet(source).to(device)
    subnet = _median_subnet(net, resolution)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, resolution, resolution, generator=g).to(device)
    labels = torch.randint(0, net.num_classes, (batch,), generator=g).to(device)
    test = torch.randn(test_batch, 3, resolution, resolution, generator=g).to(device)

    inside = copy.deepcopy(net).train()
    inside.set_active(subnet)
    standalone = net.extract(subnet).train()
    to_compile = net.extract(subnet).train()
    fast = compiled(to_compile, backend)
    steps = {
        "supernet": _step(lambda x: (inside.set_active(subnet), inside(x))[1], inside, images, labels),
        "standalone": _step(standalone, standalone, images, labels),
        "compiled": _step(fast, to_compile, images, labels),
    }
    compile_train_s = _timed(lambda: (steps["compiled"](), steps["compiled"]()), device)
    for name in ("supernet", "standalone"):
        steps[name]()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(_timed(step, device))
    step_s = {k: statistics.median(v) for k, v in times.items()}

    eager_eval = net.extract(subnet).eval()
    compiled_module = net.extract(subnet).eval()
    fast_eval = compiled(compiled_module, backend)
    with torch.no_grad():
        compile_eval_s = _timed(lambda: (fast_eval(test), fast_eval(test)), device)
        eager_eval(test)
        infer: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(rounds):
            infer["eager"].append(_timed(lambda: eager_eval(test), device))
            infer["compiled"].append(_timed(lambda: fast_eval(test), device))
    infer_s = {k: statistics.median(v) for k, v in infer.items()}

    saved_step = step_s["standalone"] - step_s["compiled"]
    saved_image = (infer_s["eager"] - infer_s["compiled"]) / test_batch
    return {
        "supernet": source,
        "resolution": resolution,
        "batch": batch,
        "test_batch": test_batch,
        "subnet": subnet.to_dict(),
        "compile_train_seconds": compile_train_s,
        "compile_eval_seconds": compile_eval_s,
        "train_step_seconds": step_s,
        "standalone_speedup_over_supernet": step_s["supernet"] / step_s["standalone"],
        "compiled_speedup_over_standalone": step_s["standalone"] / step_s["compiled"],
        "compiled_speedup_over_supernet": step_s["supernet"] / step_s["compiled"],
        "train_break_even_steps": compile_train_s / saved_step if saved_step > 0 else None,
        "inference_batch_seconds": infer_s,
        "inference_speedup": infer_s["eager"] / infer_s["compiled"],
        "inference_break_even_images": compile_eval_s / saved_image if saved_image > 0 else None,
    }


def _count(value: float | None, unit: str) -> str:
    return "never (compiled is not faster)" if value is None else f"after {value:,.0f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", nargs="+", default=["fashion_mnist_28px_b64"], choices=sorted(SETTINGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--warm", action="store_true", help="keep torch's compile caches (default: cold)")
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {name: measure(name, device, args.rounds, args.backend) for name in args.setting}
    out = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "threads": args.threads,
        "backend": args.backend,
        "compile_caches": "warm" if args.warm else "cold (a fresh TORCHINDUCTOR_CACHE_DIR)",
        "rounds": args.rounds,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "settings": results,
        "notes": "medians over interleaved rounds; compile times include the first two steps or batches; "
        "break-even = compile time / time saved per step (or per test image); null: compiled is not faster",
    }
    write_result(args.out, out, threads=args.threads, commit=commit)
    for name, r in results.items():
        s = r["train_step_seconds"]
        print(
            f"{name}: train step supernet {1e3 * s['supernet']:.0f} ms, "
            f"standalone {1e3 * s['standalone']:.0f} ms, compiled {1e3 * s['compiled']:.0f} ms "
            f"(compile {r['compile_train_seconds']:.0f} s, "
            f"break-even {_count(r['train_break_even_steps'], 'steps')}); "
            f"inference x{r['inference_speedup']:.2f} compiled (compile {r['compile_eval_seconds']:.0f} s, "
            f"break-even {_count(r['inference_break_even_images'], 'images')})"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
