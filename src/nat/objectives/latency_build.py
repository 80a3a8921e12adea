"""Building latency tables on a device: time every layer configuration, then calibrate on whole networks.

Timing (`time_call`): ``warmup`` untimed calls (allocator, oneDNN / cuDNN / ONNX Runtime kernel choice),
then ``repeats`` timed blocks with `torch.utils.benchmark.Timer`; each block runs the call ``number``
times, ``number`` chosen so one block lasts at least ``min_block_ms``, so a 20-microsecond layer is not
measured against the timer's own overhead. The Timer synchronises CUDA around each block. An entry keeps
the median, mean, standard deviation and count of the per-call times of its blocks.

Backends: ``torch`` on ``cpu``, ``cuda`` or ``cuda:N`` (eager PyTorch, eval mode, no autograd, NCHW) and
``onnxruntime`` (each layer exported with nat's ONNX exporter, the one ``nat export --onnx`` uses, and run
by ONNX Runtime's CPU provider with ``threads`` intra-op threads). End-to-end measurements use the same
backend and timing, so predictions and measurements compare like with like.

Resumable: a build writes its table (atomically) every few seconds and when it stops, so an interrupted
build keeps its finished entries and the same command continues. Building into an existing table adds
only the missing entries (more resolutions, another space, another class count) if the device, backend,
batch size and threads agree.

Calibration: the sum of isolated layer times is biased against the whole network (per-layer timing keeps
weights and activations hot in cache, while the network pays its own call overhead once), so the build
also measures ``calibration_subnets`` random subnets end to end and fits ``measured = scale * sum +
offset`` (Theil-Sen, robust to disturbed measurements) on every calibration sample the table holds
(docs/latency.md has the figures).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import platform
import random
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nat.errors import ConfigError
from nat.files import write_text_atomic
from nat.objectives.latency_table import (
    FORMAT,
    LatencyTable,
    LayerSpec,
    space_layers,
    subnet_layers,
)
from nat.progress import progress_bar
from nat.runtime.device import resolve_device
from nat.space.definition import SearchSpace
from nat.space.subnet import Subnet
from nat.supernet.static import StaticMobileNetV3
from nat.versions import library_versions

#: how often (seconds) a build writes its table while it runs
SAVE_EVERY_S = 2.0
#: layers (networks) prepared and timed together in interleaved rounds; a chunk is written when done
CHUNK, CALIBRATION_CHUNK = 32, 10
#: the header fields an extended table must keep
IDENTITY = ("backend", "device", "batch_size", "threads", "se_reduction")


@dataclass(frozen=True)
class Timing:
    """Per-call milliseconds of timed blocks (each block ``number`` calls): their median, mean, standard
    deviation and count."""

    median: float
    mean: float
    std: float
    count: int
    number: int
    blocks: tuple[float, ...] = ()

    @classmethod
    def of(cls, blocks: Sequence[float], number: int) -> Timing:
        std = statistics.stdev(blocks) if len(blocks) > 1 else 0.0
        return cls(
            statistics.median(blocks), statistics.fmean(blocks), std, len(blocks), number, tuple(blocks)
        )

    def scaled(self, factor: float) -> Timing:
        return Timing.of([t * factor for t in self.blocks], self.number)

    @classmethod
    def combined(cls, timings: Sequence[Timing]) -> Timing:
        """One timing from several rounds of the same call: all their blocks together."""
        return cls.of([t for timing in timings for t in timing.blocks], timings[0].number)

    def entry(self) -> dict[str, float]:
        return {
            "median": round(self.median, 6),
            "mean": round(self.mean, 6),
            "std": round(self.std, 6),
            "count": self.count,
        }


@dataclass(frozen=True)
class TimingSettings:
    """``warmup`` untimed calls, then ``repeats`` timed blocks of at least ``min_block_ms`` each, in each
    of ``rounds`` interleaved rounds (`time_rounds`)."""

    warmup: int = 5
    repeats: int = 5
    min_block_ms: float = 5.0
    rounds: int = 3
    drift_correction: bool = True


#: the fixed layer timed after every timing to correct for the machine's changing speed: a typical
#: block of the space (1x1 expand, 5x5 depthwise, SE, h-swish, 1x1 project, residual)
REFERENCE_LAYER = LayerSpec(
    "expanded_conv", 28, 40, 28, 40, mid=120, kernel=5, stride=1, residual=True, se_channels=32
)
REFERENCE_SETTINGS = TimingSettings(warmup=1, repeats=3, min_block_ms=5.0, rounds=1, drift_correction=False)


def time_call(
    fn: Callable[[], Any], settings: TimingSettings, cuda: bool = False, threads: int = 1
) -> Timing:
    """Time ``fn()``: warm-up, then ``settings.repeats`` blocks with `torch.utils.benchmark.Timer`."""
    # imported here: torch.utils.benchmark pulls in torch's C++-extension tooling (slow, and it logs a
    # warning on machines without CUDA, silenced here), and most nat commands never time anything
    extension_log = logging.getLogger("torch.utils.cpp_extension")
    level = extension_log.level
    extension_log.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        extension_log.setLevel(level)

    if settings.repeats < 1:
        raise ConfigError(f"repeats must be >= 1, got {settings.repeats}")
    for _ in range(settings.warmup):
        fn()
    clock = benchmark.utils.timer.timer if cuda else timeit.default_timer
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, timer=clock, num_threads=threads)
    single = timer.timeit(number=1).median
    number = max(1, math.ceil(settings.min_block_ms / 1000.0 / max(single, 1e-9)))
    return Timing.of([timer.timeit(number=number).median * 1000.0 for _ in range(settings.repeats)], number)


def time_rounds(backend: Backend, calls: Sequence[Callable[[], Any]]) -> list[Timing]:
    """Time every call once per round, for ``backend.settings.rounds`` rounds, and combine each call's
    rounds. Load from other processes comes in bursts; interleaving spreads a burst over many calls'
    rounds instead of spoiling one call's whole measurement.

    With ``settings.drift_correction``, every timing is followed by one of a fixed reference layer
    (`REFERENCE_LAYER`) and rescaled by ``backend.reference_ms / reference``: a machine that runs
    everything 30% slower for a while (another tenant, a clock change) then leaves the entries as they
    were. ``backend.reference_ms`` is set by the first measurement of the reference (a table keeps it,
    so that an extended or resumed build stays in the same units)."""
    rounds = [time_round(backend, calls) for _ in range(max(1, backend.settings.rounds))]
    return [Timing.combined(list(r)) for r in zip(*rounds, strict=True)]


def time_round(backend: Backend, calls: Sequence[Callable[[], Any]]) -> list[Timing]:
    """One round of `time_rounds`: each call timed once (drift-corrected if the settings say so)."""
    reference = backend.reference_call() if backend.settings.drift_correction else None
    out = []
    for call in calls:
        timing = backend.time_call(call)
        if reference is not None:
            level = backend.time_call(reference, REFERENCE_SETTINGS).median
            if backend.reference_ms is None:
                backend.reference_ms = level
            timing = timing.scaled(backend.reference_ms / level)
        out.append(timing)
    return out


# ----------------------------------------------------------------------------------------- backends


class Backend:
    """Runs a module on one device and times it: `prepare` makes the call to time (moved to the device,
    exported and loaded into a session, ...), `time_module` prepares and times it."""

    name = "torch"

    def __init__(self, device: str, threads: int, batch_size: int, settings: TimingSettings) -> None:
        self.device_name, self.threads, self.batch_size, self.settings = device, threads, batch_size, settings
        #: the reference layer's latency all timings are rescaled to (`time_rounds`)
        self.reference_ms: float | None = None
        self._reference: Callable[[], Any] | None = None

    def reference_call(self) -> Callable[[], Any]:
        """The prepared reference layer (`REFERENCE_LAYER`), made once."""
        if self._reference is None:
            self._reference = self.prepare(REFERENCE_LAYER.build(), REFERENCE_LAYER.example(self.batch_size))
        return self._reference

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        raise NotImplementedError

    def time_call(self, call: Callable[[], Any], settings: TimingSettings | None = None) -> Timing:
        return time_call(call, settings or self.settings, threads=self.threads)

    def time_module(self, module: nn.Module, example: torch.Tensor) -> Timing:
        return self.time_call(self.prepare(module, example))

    def describe(self) -> dict[str, Any]:
        """What the table's header records about the hardware and software."""
        return {"device_name": cpu_name()}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, device: str, threads: int, batch_size: int, settings: TimingSettings) -> None:
        super().__init__(device, threads, batch_size, settings)
        self.device = resolve_device(device)

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        module = module.to(self.device).eval()
        x = example.to(self.device)
        if x.dim() == 4:  # layers timed on NHWC activations, as the networks run them (StaticMobileNetV3)
            x = x.contiguous(memory_format=torch.channels_last)

        def call() -> Any:
            with torch.no_grad():
                return module(x)

        return call

    def time_call(self, call: Callable[[], Any], settings: TimingSettings | None = None) -> Timing:
        cuda = self.device.type == "cuda"
        on_device = torch.cuda.device(self.device) if cuda else contextlib.nullcontext()
        with on_device, _threads(self.threads):
            return time_call(call, settings or self.settings, cuda=cuda, threads=self.threads)

    def describe(self) -> dict[str, Any]:
        if self.device.type == "cuda":
            return {"device_name": torch.cuda.get_device_name(self.device)}
        return super().describe()


class RuntimeBackend(Backend):
    """A deployment runtime's backend (``name``: its ``--device``), in fp32 or, with ``int8``, timing the
    int8 form `nat export --int8` delivers; an int8 table is named ``<runtime>-int8``, so that the
    table identity keeps the two forms apart."""

    def __init__(
        self, device: str, threads: int, batch_size: int, settings: TimingSettings, int8: bool = False
    ) -> None:
        super().__init__(device, threads, batch_size, settings)
        from nat.export.deploy import require_runtime

        require_runtime(self.name, f"--device {self.name}")
        self.int8 = int8
        if int8:
            self.name = f"{self.name}-int8"


class OnnxRuntimeBackend(RuntimeBackend):
    """ONNX Runtime's CPU provider on nat's ONNX export of each layer; ``int8``: the layer quantized as
    ``nat export --onnx --int8`` quantizes a model (`nat.export.deploy`), calibrated on random inputs
    of the layer's shape (ranges only matter for accuracy, not for the kernels that run)."""

    name = "onnxruntime"

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        from nat.export.deploy import onnx_session, write_onnx_int8
        from nat.export.model_files import export_onnx

        with tempfile.TemporaryDirectory(prefix="nat-latency-") as tmp:
            path = Path(tmp) / "layer.onnx"
            if self.int8:
                write_onnx_int8(module.eval(), path, _calibration_inputs(example))
            else:
                export_onnx(module.eval(), path, example=example)
            session = onnx_session(path, self.threads)
        feed = {session.get_inputs()[0].name: example.numpy()}
        return lambda: session.run(None, feed)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"device_name": cpu_name(), "onnxruntime": ort.__version__}


class ExecuTorchBackend(RuntimeBackend):
    """ExecuTorch's runtime with the XNNPACK delegate, each layer lowered as ``nat export --executorch``
    lowers a model (`nat.export.deploy.executorch_program`); ``int8``: quantized with PT2E and the
    XNNPACK quantizer on random inputs of the layer's shape. Programs run at batch 1 only (how ExecuTorch
    models are exported), so a table for it has batch size 1."""

    name = "executorch"

    def __init__(
        self, device: str, threads: int, batch_size: int, settings: TimingSettings, int8: bool = False
    ) -> None:
        if batch_size != 1:
            raise ConfigError("--device executorch times batch 1 only (its programs are exported at batch 1)")
        super().__init__(device, threads, batch_size, settings, int8)

    def prepare(self, module: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
        from nat.export.deploy import executorch_method, executorch_program

        calibration = _calibration_inputs(example) if self.int8 else None
        program = executorch_program(module.eval(), example, calibration)
        loaded, method = executorch_method(program, self.threads)
        inputs = [example.contiguous()]

        def call(_program: Any = loaded) -> Any:  # the program must live as long as its method
            return method.execute(inputs)

        return call

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"device_name": cpu_name(), "executorch": version("executorch")}


def _calibration_inputs(example: torch.Tensor) -> torch.Tensor:
    """Random inputs of ``example``'s shape (8 of them) to calibrate a layer's int8 ranges."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(8, *example.shape[1:], generator=generator)


def make_backend(
    device: str,
    threads: int,
    batch_size: int,
    settings: TimingSettings | None = None,
    int8: bool = False,
) -> Backend:
    """The backend for a ``--device`` value: ``cpu``, ``cuda[:N]`` (PyTorch), ``onnxruntime`` or
    ``executorch`` (each of the last two in fp32, or int8 with ``int8``)."""
    settings = settings or TimingSettings()
    if threads < 1 or batch_size < 1:
        raise ConfigError(f"threads and batch size must be >= 1, got {threads} and {batch_size}")
    if device == "onnxruntime":
        return OnnxRuntimeBackend(device, threads, batch_size, settings, int8=int8)
    if device == "executorch":
        return ExecuTorchBackend(device, threads, batch_size, settings, int8=int8)
    if int8:
        raise ConfigError("--int8 times the int8 files of a runtime: give --device onnxruntime or executorch")
    if device == "auto":
        raise ConfigError(
            "a latency table is for one device: give --device cpu, cuda, cuda:N, onnxruntime or executorch"
        )
    return TorchBackend(device, threads, batch_size, settings)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what `platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _images(backend: Backend, resolution: int) -> torch.Tensor:
    return torch.randn(backend.batch_size, 3, resolution, resolution)


def measure_network_ms(backend: Backend, model: nn.Module, resolution: int) -> Timing:
    """End-to-end latency of a network on ``resolution`` px images, timed as table entries are (all
    rounds of one network follow each other here: there is nothing to interleave it with)."""
    call = backend.prepare(model.eval(), _images(backend, resolution))
    return time_rounds(backend, [call])[0]


# ----------------------------------------------------------------------------------------- building


def fit_calibration(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``scale`` and ``offset_ms`` of ``measured ~ scale * layer_sum + offset``, fitted with the
    Theil-Sen estimator (medians of pairwise slopes: a measurement disturbed by another process on a
    shared machine does not drag the line, as it would least squares); offset only with fewer than 3
    samples or a non-positive slope. Also the median relative error before and after correction."""
    if not samples:
        return {}
    from scipy.stats import theilslopes

    s = np.array([x["layer_sum_ms"] for x in samples], float)
    y = np.array([x["measured_ms"] for x in samples], float)
    scale, offset = 1.0, float(np.median(y - s))
    if len(samples) >= 3 and np.ptp(s) > 0:
        fit = theilslopes(y, s, method="joint")
        if fit.slope > 0:
            scale, offset = float(fit.slope), float(fit.intercept)
    rel = lambda pred: float(np.median(np.abs(pred - y) / y))  # noqa: E731
    return {
        "scale": round(scale, 6),
        "offset_ms": round(offset, 6),
        "samples": [dict(x) for x in samples],
        "median_rel_error_uncorrected": round(rel(s), 6),
        "median_rel_error": round(rel(scale * s + offset), 6),
    }


def open_table(out: Path, backend: Backend, space: SearchSpace) -> LatencyTable:
    """The table at ``out`` to extend (its header must match this build), or a new one."""
    header = {
        "format": FORMAT,
        "backend": backend.name,
        "device": backend.device_name,
        "batch_size": backend.batch_size,
        "threads": backend.threads,
        "se_reduction": space.se_reduction,
    }
    if out.exists():
        table = LatencyTable.load(out)
        if table.is_ofa:
            raise ConfigError(f"{out} is an OFA table; nat extends only its own tables: choose another --out")
        differ = {k: (table.meta.get(k), header[k]) for k in IDENTITY if table.meta.get(k) != header[k]}
        if differ:
            detail = ", ".join(f"{k} {old!r} (asked: {new!r})" for k, (old, new) in differ.items())
            raise ConfigError(
                f"{out} was built with {detail}; a table holds one device, backend, batch size and thread "
                "count: choose another --out"
            )
        return table
    return LatencyTable({}, header, {}, [str(out)])


def build_table(
    out: str | Path,
    space: SearchSpace,
    backend: Backend,
    num_classes: Sequence[int] = (1000,),
    resolutions: Sequence[int] | None = None,
    widths: Sequence[float] | None = None,
    calibration_subnets: int = 20,
    seed: int = 0,
    progress: bool | None = None,
) -> LatencyTable:
    """Measure every layer configuration of ``space`` missing from the table at ``out`` (created or
    extended), then ``calibration_subnets`` random subnets end to end; returns the saved table."""
    out = Path(out)
    resolutions = list(resolutions or space.resolutions)
    widths = list(widths or space.width_mults)
    bad = [r for r in resolutions if r not in space.resolutions] + [
        w for w in widths if w not in space.width_mults
    ]
    if bad:
        raise ConfigError(
            f"{bad} not in the space '{space.name}' (resolutions {list(space.resolutions)}, widths "
            f"{list(space.width_mults)})"
        )
    if out.parent and not out.parent.is_dir():
        raise ConfigError(f"--out: folder {out.parent} does not exist")
    table = open_table(out, backend, space)
    if backend.settings.drift_correction and table.meta.get("reference_ms"):
        backend.reference_ms = float(table.meta["reference_ms"])  # an extended table keeps its units
    table.meta.update(
        {
            **backend.describe(),
            "versions": {k: str(v) for k, v in library_versions().items()}
            | {"torch_threads": str(backend.threads)},
            "timing": dataclasses.asdict(backend.settings),
        }
    )
    spaces = table.meta.setdefault("spaces", [])
    built = {
        "name": space.name,
        "resolutions": resolutions,
        "widths": widths,
        "num_classes": list(num_classes),
    }
    if built not in spaces:
        spaces.append(built)
    todo = [
        s for k, s in space_layers(space, num_classes, resolutions, widths).items() if k not in table.entries
    ]
    saver = _Saver(out, table, backend)
    bar = progress_bar(total=len(todo), desc="latency layers", unit="layer", show=progress is not False)
    try:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            calls = [
                backend.prepare(s.build(space.dropout_rate), s.example(backend.batch_size)) for s in chunk
            ]
            for spec, timing in zip(chunk, time_rounds(backend, calls), strict=True):
                table.entries[spec.key] = timing.entry()
            bar.update(len(chunk))
            saver.maybe_save()
        bar.close()
        _calibrate(
            table,
            space,
            backend,
            num_classes,
            resolutions,
            widths,
            calibration_subnets,
            seed,
            saver,
            progress,
        )
    finally:
        saver.save()
    return table


def _calibrate(
    table: LatencyTable,
    space: SearchSpace,
    backend: Backend,
    num_classes: Sequence[int],
    resolutions: Sequence[int],
    widths: Sequence[float],
    count: int,
    seed: int,
    saver: _Saver,
    progress: bool | None,
) -> None:
    """Add ``count`` end-to-end samples for this space (seeded; resumed builds skip finished ones)."""
    samples = list(table.calibration.get("samples", []))
    sub = space.model_copy(
        update={"resolutions": tuple(sorted(resolutions)), "width_mults": tuple(sorted(widths))}
    )
    rng = random.Random(f"{seed}:{space.name}:{sorted(resolutions)}:{sorted(widths)}")
    wanted = [Subnet.sample(sub, rng) for _ in range(count)]
    done = {(x["space"], x["num_classes"], json.dumps(x["subnet"], sort_keys=True)) for x in samples}
    n_classes = num_classes[0]
    todo = [s for s in wanted if (space.name, n_classes, json.dumps(s.to_dict(), sort_keys=True)) not in done]
    for start in range(0, len(todo), CALIBRATION_CHUNK):
        chunk = todo[start : start + CALIBRATION_CHUNK]
        calls = [
            backend.prepare(StaticMobileNetV3(space, s, n_classes), _images(backend, s.r))
            for s in progress_bar(chunk, desc="latency calibration", unit="net", show=progress is not False)
        ]
        for subnet, measured in zip(chunk, time_rounds(backend, calls), strict=True):
            layer_sum = table.layer_sum(subnet_layers(space, subnet, n_classes))
            samples.append(
                {
                    "space": space.name,
                    "num_classes": n_classes,
                    "subnet": subnet.to_dict(),
                    "layer_sum_ms": round(layer_sum, 6),
                    "measured_ms": round(measured.median, 6),
                }
            )
        table.calibration = fit_calibration(samples)
        saver.maybe_save()
    table.calibration = fit_calibration(samples)


class _Saver:
    """Writes the table atomically at most every `SAVE_EVERY_S` seconds (and on `save`)."""

    def __init__(self, path: Path, table: LatencyTable, backend: Backend) -> None:
        self.path, self.table, self.backend, self.last = path, table, backend, time.monotonic()

    def maybe_save(self) -> None:
        if time.monotonic() - self.last >= SAVE_EVERY_S:
            self.save()

    def save(self) -> None:
        self.table.meta["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self.backend.reference_ms is not None:
            self.table.meta.setdefault("reference_ms", round(self.backend.reference_ms, 6))
        write_text_atomic(self.path, self.table.to_yaml())
        self.last = time.monotonic()
