"""Numeric precision of forward passes (fp32, bf16, fp16) and the CUDA fast path.

``precision`` in the search, pretraining and fine-tuning configs names how forward passes run:

* ``fp32``: plain float32, exactly as before this option existed (the default, so results are
  unchanged);
* ``bf16``: `torch.autocast` with bfloat16: convolutions and matmuls run in bf16, reductions, softmax
  and losses stay in float32 (autocast's own op lists). bf16 has float32's exponent range, so no loss
  scaling is needed; it works on CPU too, which is how the CPU tests cover the mixed-precision path;
* ``fp16``: `torch.autocast` with float16 plus a `torch.amp.GradScaler`, because fp16's narrow exponent
  range lets small gradients underflow to zero unless the loss is scaled up first. Also accepted on CPU
  (torch supports CPU fp16 autocast and ``GradScaler("cpu")``), where it is correct but slow.

Parameters, optimiser state and BN running statistics stay float32 in every mode (autocast casts op
inputs, never the module's tensors), so checkpoints look the same whatever the precision.

`enable_cuda_fast_path` is what nat turns on for a CUDA device: TF32 matmuls and convolutions (10-bit
mantissa inputs, float32 accumulation: the usual trade of Ampere and later GPUs). ``cudnn.benchmark``
(convolution algorithms autotuned per input shape) stays off unless asked for (``cudnn_benchmark``):
an elastic supernet meets new layer shapes at almost every step, and in nat's first GPU run (an
H200) new shapes dominated: with it on (and the supernet channels-last) the smoke search took 15 s
per training step.
Nothing here is applied to a CPU run, whose results stay bit-reproducible.

`supernet_channels_last` decides the supernet's layout (``memory_format`` in the configs):
channels-last (NHWC) on CPU, where it selects oneDNN's kernels and halves a training step; the
default layout (NCHW) on CUDA, because there the first step of each newly seen subnet cost about 5 s
channels-last (cuDNN builds a kernel for each new depthwise-convolution shape), against 0.17 s for
OFA's network in NCHW. The figures and what is still unmeasured are in docs/scale.md.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Annotated, Literal, get_args

import torch
from pydantic import Field

from nat.errors import ConfigError

PrecisionName = Literal["fp32", "bf16", "fp16"]
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
#: the two CUDA settings of the search and pretraining configs, one definition for both
CudnnBenchmarkField = Annotated[
    bool,
    Field(
        description="on CUDA: autotune convolution algorithms per input shape (cudnn.benchmark). Off: a "
        "supernet meets new shapes at almost every step and the tuning dominated on a GPU (docs/scale.md)"
    ),
]
MemoryFormatField = Annotated[
    MemoryFormat,
    Field(
        description="the supernet's activation layout: channels_last, contiguous (NCHW), or auto = "
        "channels_last on CPU, contiguous on CUDA (docs/scale.md)"
    ),
]
PRECISIONS: tuple[str, ...] = get_args(PrecisionName)
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """How forward passes run on ``device``: an autocast context and, for fp16, a gradient scaler.

    ``Precision("fp32")`` is a no-op everywhere (``autocast()`` is a `nullcontext`, no scaler), so the
    default path executes exactly the code it did before mixed precision existed.
    """

    def __init__(self, name: str = "fp32", device: torch.device | str = "cpu") -> None:
        if name not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {name!r}")
        self.name = name
        self.device = torch.device(device)
        self.dtype = _DTYPES[name]

    @property
    def mixed(self) -> bool:
        """True for bf16/fp16: forward passes run under autocast."""
        return self.name != "fp32"

    def autocast(self) -> AbstractContextManager:
        """The context forward passes (and losses) run in: autocast to ``dtype`` on the device's type,
        or nothing at all for fp32."""
        if not self.mixed:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A fresh `torch.amp.GradScaler` for fp16 (None otherwise: bf16 and fp32 need no scaling)."""
        if self.name != "fp16":
            return None
        return torch.amp.GradScaler(self.device.type)

    def __repr__(self) -> str:
        return f"Precision({self.name!r}, {str(self.device)!r})"


def as_precision(precision: Precision | str | None, device: torch.device | str) -> Precision:
    """``precision`` as a `Precision` on ``device`` (a name, an existing one, or None for fp32)."""
    if isinstance(precision, Precision):
        return precision
    return Precision(precision or "fp32", device)


def enable_cuda_fast_path(
    device: torch.device | str, tf32: bool = True, cudnn_benchmark: bool = False
) -> bool:
    """On a CUDA ``device``: allow TF32 in matmuls and cuDNN convolutions (unless ``tf32`` is false:
    then forbid it, whatever torch's defaults) and set ``cudnn.benchmark`` to ``cudnn_benchmark`` (off
    by default: see the module's docstring); returns whether it did anything (nothing on CPU, where
    these flags would not matter and results stay bit-reproducible).

    These are process-wide torch flags, set through the long-standing ``allow_tf32`` attributes: torch
    2.9+ also has ``fp32_precision``, and mixing the two APIs makes later reads of either raise, whereas
    the ``allow_tf32`` setters keep both views consistent on every torch nat supports.
    """
    if torch.device(device).type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = cudnn_benchmark
    return True


def supernet_channels_last(memory_format: MemoryFormat, device: torch.device | str) -> bool:
    """Whether a supernet on ``device`` runs channels-last: ``auto`` means yes on CPU, no on CUDA (and
    other accelerators), for the reasons in the module's docstring."""
    if memory_format not in get_args(MemoryFormat):
        raise ConfigError(
            f"memory_format must be one of {list(get_args(MemoryFormat))}, got {memory_format!r}"
        )
    if memory_format == "auto":
        return torch.device(device).type == "cpu"
    return memory_format == "channels_last"
