"""Deployed forms of a model: ONNX Runtime and ExecuTorch files, in fp32 and int8, and their measurement.

Why these two runtimes: NATNets are mobile-setting models, and PyTorch users deploy such models either
through ONNX (ONNX Runtime on servers, desktops and phones) or through ExecuTorch (PyTorch's own
on-device runtime for Android, iOS and embedded boards, here with its XNNPACK CPU delegate). Why int8:
that is the precision such models ship in; it makes the file about 4x smaller and, where the runtime has
int8 kernels, the model faster, at some accuracy cost that is measured per model, never assumed.

The files of one model folder (`FORMATS`): ``model.onnx`` and ``model.int8.onnx``, ``model.pte`` and
``model.int8.pte``, beside ``model.safetensors`` (the ``pytorch`` form). int8 is post-training static
quantization by each runtime's own tools, never hand-written:

* ONNX: ``onnxruntime.quantization.quantize_static`` on the fp32 graph nat's exporter writes (after ONNX
  Runtime's ``quant_pre_process``): QDQ format, per-channel symmetric int8 weights, uint8 activations
  with MinMax ranges (U8S8: on x86 ONNX Runtime's int8 kernels multiply uint8 by int8; S8S8 ran an OFA
  subnet at 224 px 3.6x slower there, at commit 824b9b5).
* ExecuTorch: ``torch.export`` at batch 1, PyTorch's PT2E flow (``prepare_pt2e`` / ``convert_pt2e``)
  with ExecuTorch's ``XNNPACKQuantizer`` (per-channel symmetric), then lowered to the XNNPACK delegate.

Both are calibrated on images of the task's *training* split (`calibration_split`), never on the
validation or test images the figures are measured on.

`measure` runs a file in its own runtime: test top-1/top-5 over a loader (the figures a user of that
runtime gets) and latency at batch 1 (warm-up, then the median of timed calls, with the thread count
recorded). ONNX Runtime and ExecuTorch are optional (``pip install 'nat[deploy]'``); without them a
request for their files is refused in one line (`require_runtime`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nat.errors import CheckpointError, ConfigError
from nat.files import write_atomic, write_bytes_atomic
from nat.runtime.threads import torch_threads

#: the extra that installs both runtimes
EXTRA = "pip install 'nat[deploy]'"


@dataclass(frozen=True)
class DeployFormat:
    """One form a model is delivered in: its key in ``models.json``, its file, runtime and precision."""

    name: str
    file: str
    runtime: str
    int8: bool

    @property
    def label(self) -> str:
        """How reports name it: ``ONNX Runtime int8``, ``ExecuTorch fp32``, ``PyTorch fp32``."""
        runtime = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "executorch": "ExecuTorch"}
        return f"{runtime[self.runtime]} {'int8' if self.int8 else 'fp32'}"


FORMATS: dict[str, DeployFormat] = {
    f.name: f
    for f in (
        DeployFormat("pytorch", "model.safetensors", "pytorch", False),
        DeployFormat("onnx", "model.onnx", "onnxruntime", False),
        DeployFormat("onnx_int8", "model.int8.onnx", "onnxruntime", True),
        DeployFormat("executorch", "model.pte", "executorch", False),
        DeployFormat("executorch_int8", "model.int8.pte", "executorch", True),
    )
}
#: the packages each runtime needs (module names)
_RUNTIME_MODULES = {"onnxruntime": ("onnx", "onnxruntime"), "executorch": ("executorch",)}
_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "executorch": "ExecuTorch"}


def requested_formats(*, onnx: bool, executorch: bool, int8: bool) -> list[DeployFormat]:
    """The files a request asks for, in a fixed order (``int8`` adds the int8 file of each runtime asked
    for; on its own it names no runtime, which the config refuses before this is called)."""
    names = []
    if onnx:
        names += ["onnx", "onnx_int8"] if int8 else ["onnx"]
    if executorch:
        names += ["executorch", "executorch_int8"] if int8 else ["executorch"]
    return [FORMATS[n] for n in names]


def format_of(path: str | Path) -> DeployFormat:
    """The format a file is in, from its name (``*.int8.onnx`` is ONNX int8, ``*.pte`` ExecuTorch, ...)."""
    name = Path(path).name
    for fmt in FORMATS.values():
        if name == fmt.file:
            return fmt
    int8 = ".int8." in name
    if name.endswith(".onnx"):
        return FORMATS["onnx_int8" if int8 else "onnx"]
    if name.endswith(".pte"):
        return FORMATS["executorch_int8" if int8 else "executorch"]
    if name.endswith(".safetensors"):
        return FORMATS["pytorch"]
    raise ConfigError(f"{path}: not a model file nat can run (.onnx, .pte, or a model folder)")


def require_runtime(runtime: str, what: str = "") -> None:
    """One line, never an ImportError traceback, when ``runtime``'s packages are not installed."""
    missing = [m for m in _RUNTIME_MODULES.get(runtime, ()) if importlib.util.find_spec(m) is None]
    if missing:
        need = what or f"{_RUNTIME_NAMES[runtime]} files"
        raise ConfigError(f"{need} need the {' and '.join(missing)} package(s): {EXTRA}")


# --------------------------------------------------------------------------------------- writing
def calibration_images(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], count: int) -> torch.Tensor:
    """The first ``count`` images of ``batches`` (a loader over `calibration_split`'s subset), on the CPU."""
    images, have = [], 0
    for x, _ in batches:
        images.append(x[: count - have].detach().float().cpu())
        have += len(images[-1])
        if have >= count:
            break
    if have < count:
        raise ConfigError(f"asked for {count} calibration images but the training split gave only {have}")
    return torch.cat(images)


def calibration_split(train_split: Any, count: int, seed: int) -> Any:
    """``count`` images of the training split drawn at random with ``seed`` (in index order): a sorted
    folder's first images would all be of its first classes. Refuses a count the split cannot give."""
    n = len(train_split)
    if count < 1:
        raise ConfigError(f"calibration_images must be at least 1, got {count}")
    if count > n:
        raise ConfigError(
            f"calibration_images is {count} but the training split holds {n} images; give {n} or fewer"
        )
    rows = np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))
    return train_split.subset(rows)


def write_format(
    model: nn.Module, fmt: DeployFormat, path: str | Path, calibration: torch.Tensor | None
) -> Path:
    """Write ``model`` in ``fmt`` at ``path`` (atomically: a failure leaves no file, or the old one).
    ``calibration`` (N x C x R x R, the task's training images) is needed for int8."""
    if fmt.runtime == "pytorch":
        raise ValueError("the pytorch form is the model folder's own model.safetensors")
    require_runtime(fmt.runtime)
    if fmt.int8 and (calibration is None or len(calibration) == 0):
        raise ConfigError(f"{fmt.label} needs calibration images")
    model = model.cpu().eval()
    path = Path(path)
    if fmt.runtime == "onnxruntime":
        if fmt.int8:
            _write_onnx_int8(model, path, calibration)
        else:
            from nat.export.model_files import export_onnx

            export_onnx(model, path)
    else:
        program = executorch_program(model, _example(model, calibration), calibration if fmt.int8 else None)
        write_bytes_atomic(path, program)
    return path


def _example(model: nn.Module, calibration: torch.Tensor | None) -> torch.Tensor:
    if calibration is not None:
        return calibration[:1].contiguous()
    subnet = getattr(model, "subnet", None)
    r = getattr(subnet, "r", None) or getattr(model, "resolution", None) or 224
    return torch.randn(1, 3, r, r)


def write_onnx_int8(model: nn.Module, path: Path, calibration: torch.Tensor) -> None:
    """``model`` as int8 ONNX (QDQ, per-channel int8 weights, uint8 activations) calibrated on
    ``calibration`` (inputs of the model's shape: images, or a layer's activations)."""
    require_runtime("onnxruntime")
    _write_onnx_int8(model, path, calibration)


def _write_onnx_int8(model: nn.Module, path: Path, calibration: torch.Tensor) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from nat.export.model_files import export_onnx

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration.split(32))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch.numpy()}

    with tempfile.TemporaryDirectory(prefix="nat-int8-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        export_onnx(model, fp32, example=_example(model, calibration))
        with _quiet_logs("root"):  # its shape-inference notes go to the root logger at INFO
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)

        def write(tmp_path: Path) -> None:
            quantize_static(
                str(prepared),
                str(tmp_path),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )

        import onnxruntime as ort

        # the quantizer's own sessions log at WARNING ("Removing initializer ... not used"): notes about
        # its intermediate graphs, not the user's model; its default severity (2) is restored after
        ort.set_default_logger_severity(3)
        try:
            with _quiet_logs("root"):
                write_atomic(path, write)
        finally:
            ort.set_default_logger_severity(2)


def executorch_program(model: nn.Module, example: torch.Tensor, calibration: torch.Tensor | None) -> bytes:
    """The ExecuTorch program of ``model`` for inputs shaped as ``example`` (batch 1), lowered to
    XNNPACK; int8 (PT2E, XNNPACK quantizer) when ``calibration`` inputs are given."""
    require_runtime("executorch")
    with _executorch_quiet(), torch.no_grad():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        if calibration is None:
            exported = torch.export.export(model, (example,))
        else:
            from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
            # calibrated in batches: traced at batch 2 with the batch dynamic (torch.export would
            # specialise a batch of 1), then exported again at batch 1 once quantized
            pair = example.expand(2, *example.shape[1:]).contiguous()
            batch = torch.export.Dim("batch", min=1)
            graph = torch.export.export(model, (pair,), dynamic_shapes=({0: batch},)).module()
            prepared = prepare_pt2e(graph, quantizer)
            for chunk in calibration.split(32):
                prepared(chunk)
            exported = torch.export.export(convert_pt2e(prepared), (example,))
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        return lowered.to_executorch().buffer


@contextlib.contextmanager
def _quiet_logs(*names: str, level: int = logging.WARNING) -> Iterator[None]:
    loggers = [logging.getLogger(n if n != "root" else None) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.level))
    try:
        yield
    finally:
        for lg, lv in zip(loggers, before, strict=True):
            lg.setLevel(lv)


@contextlib.contextmanager
def _executorch_quiet() -> Iterator[None]:
    """ExecuTorch's and torchao's imports warn through torch's pytree logger about an Enum registration
    that concerns torch.compile, not nat; the notice is held back here."""
    with _quiet_logs("torch.utils._pytree", level=logging.ERROR), warnings.catch_warnings():
        # and its modules' own notices (an "experimental API", importlib.resources deprecations)
        warnings.filterwarnings("ignore", message="This API is experimental")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"executorch\.")
        yield


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """ExecuTorch's C++ runtime prints its CPU probing (``[cpuinfo_utils.cpp:71] Reading file ...``)
    straight to file descriptor 2 when it first runs; that descriptor is pointed at /dev/null meanwhile."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(fd, 2)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------- running
class Runner(nn.Module):
    """A model file in its runtime, callable as a module on N x C x R x R float tensors (CPU), returning
    logits; so nat's own evaluation (`nat.train.evaluate_accuracy`) measures it like any network."""

    fmt: DeployFormat
    threads: int

    def train(self, mode: bool = True) -> Runner:
        """Inference only: evaluation code that restores a training mode leaves the model as it is."""
        return self

    def single(self, x: torch.Tensor) -> Callable[[], Any]:
        """A call of the runtime on one image (batch 1) with nothing converted per call, for latency."""
        raise NotImplementedError


class TorchRunner(Runner):
    def __init__(self, model: nn.Module, threads: int) -> None:
        super().__init__()
        self.model, self.fmt, self.threads = model.cpu().eval(), FORMATS["pytorch"], threads

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch_threads(self.threads):
            return self.model(x)

    def single(self, x: torch.Tensor) -> Callable[[], Any]:
        model = self.model

        def call() -> Any:
            with torch.inference_mode():
                return model(x)

        return call


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session of ``path`` on the CPU provider with ``threads`` intra-op threads (one
    inter-op thread), logging errors only (its notes about unused initialisers are not the user's)."""
    require_runtime("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner(Runner):
    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        require_runtime("onnxruntime")
        self.fmt, self.threads = format_of(path), threads
        try:
            self.session = onnx_session(path, threads)
        except Exception as exc:  # onnxruntime raises its own exception types for a broken file
            raise CheckpointError(
                f"{path} is not a model ONNX Runtime can load: {_first_line(exc)}"
            ) from None
        self.input = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: x.detach().float().cpu().numpy()})[0]
        return torch.from_numpy(out)

    def single(self, x: torch.Tensor) -> Callable[[], Any]:
        feed, session = {self.input: x.detach().float().cpu().numpy()}, self.session
        return lambda: session.run(None, feed)


class ExecuTorchRunner(Runner):
    """A ``.pte`` program in ExecuTorch's Python runtime. Its programs are exported at batch 1, so a
    batch is run image by image.

    Threads: XNNPACK runs on ExecuTorch's one thread pool per process, which a loaded program holds on
    to: resetting the pool under a loaded program crashes the process (measured: a segmentation fault
    on the next call). So the pool is sized *before* the program is loaded, and never again while this
    runner is used; a later runner with another thread count makes earlier ones unusable, which is why
    nat opens, measures and drops one runner at a time."""

    def __init__(self, path: Path, threads: int) -> None:
        super().__init__()
        require_runtime("executorch")
        self.fmt, self.threads = format_of(path), threads
        try:
            self._program, self.method = executorch_method(path, threads)
        except Exception as exc:  # the bindings raise RuntimeError (and others) for a broken program
            raise CheckpointError(
                f"{path} is not a program ExecuTorch can load: {_first_line(exc)}"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = [x[i : i + 1].detach().float().cpu().contiguous() for i in range(len(x))]
        return torch.cat([self.method.execute([image])[0].clone() for image in images])

    def single(self, x: torch.Tensor) -> Callable[[], Any]:
        method, inputs = self.method, [x.detach().float().cpu().contiguous()]
        return lambda: method.execute(inputs)


def executorch_method(program: bytes | Path, threads: int) -> tuple[Any, Any]:
    """ExecuTorch's loaded program (file or bytes) and its ``forward`` method, XNNPACK's thread pool
    sized to ``threads`` first (see `ExecuTorchRunner`); keep the program alive while the method runs."""
    require_runtime("executorch")
    with _executorch_quiet():
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

    with _native_stderr_silenced():  # the pool announces its size and CPU probing on descriptor 2
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
    with _native_stderr_silenced(), _executorch_quiet():
        loaded = Runtime.get().load_program(program)
        return loaded, loaded.load_method("forward")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def open_runner(path: str | Path, threads: int = 1, model: nn.Module | None = None) -> Runner:
    """The runner of a model file (``.onnx``, ``.pte``), or of ``model`` for the ``pytorch`` form."""
    path = Path(path)
    fmt = format_of(path)
    if fmt.runtime == "pytorch":
        if model is None:
            from nat.export.model_files import load_model

            model = load_model(path.parent)
        return TorchRunner(model, threads)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    return OnnxRunner(path, threads) if fmt.runtime == "onnxruntime" else ExecuTorchRunner(path, threads)


# --------------------------------------------------------------------------------------- measuring
def latency_ms(
    runner: Runner, example: torch.Tensor, warmup: int = 10, repeats: int = 50
) -> dict[str, float]:
    """Batch-1 latency of ``runner`` in milliseconds: ``warmup`` untimed calls, then the median (and
    the spread) of ``repeats`` timed ones, at the runner's thread count."""
    call = runner.single(example[:1])
    times = []
    with torch_threads(runner.threads), _native_stderr_silenced():
        for _ in range(warmup):
            call()
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {
        "latency_ms": statistics.median(times),
        "latency_p10_ms": times[len(times) // 10],
        "latency_p90_ms": times[(9 * len(times)) // 10],
    }


def measure(
    runner: Runner,
    path: Path,
    example: torch.Tensor,
    test_batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None,
    repeats: int = 50,
) -> dict[str, Any]:
    """One format's facts for ``models.json``: file, size, test accuracy in that runtime (when
    ``test_batches`` are given) and batch-1 latency."""
    from nat.train.evaluation import evaluate_accuracy

    facts: dict[str, Any] = {
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "runtime": runner.fmt.runtime,
        "precision": "int8" if runner.fmt.int8 else "fp32",
    }
    if test_batches is not None:
        scores = evaluate_accuracy(runner, test_batches, device="cpu")
        facts.update(test_top1=scores["top1"], test_top5=scores["top5"], test_images=scores["images"])
    facts.update(latency_ms(runner, example, repeats=repeats))
    facts.update(threads=runner.threads, batch_size=1)
    return facts
