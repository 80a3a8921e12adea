"""`RuntimeSettings`: where and how a run computes, one config section for every kind of run.

Seed, device, precision, TF32, cuDNN autotuning, memory layout, CPU threads and the torchrun timeout
are the same settings for a search and a pretraining (and for what later kinds of run add), so they are
declared once here and both configs inherit them as top-level fields (YAML unchanged). `Runtime`
(`nat.runtime`) turns them into the objects the code passes down.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nat.errors import ConfigError
from nat.runtime.device import check_device_name
from nat.runtime.precision import CudnnBenchmarkField, MemoryFormatField, PrecisionName


def device_name(value: str) -> str:
    """A config's device name, checked (a `ValueError` for pydantic to report with the field)."""
    try:
        return check_device_name(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class RuntimeSettings(BaseModel):
    """The runtime fields of a run config (inherited by `SearchConfig` and `PretrainConfig`)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="the run seed: every random draw of the run derives from it")
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1' ...")
    precision: PrecisionName = Field(
        "fp32",
        description="forward passes of training, BN recalibration, evaluation and fine-tuning: fp32, or "
        "autocast to bf16 / fp16 (fp16 with loss scaling); parameters stay fp32 (docs/scale.md)",
    )
    tf32: bool = Field(
        True,
        description="on CUDA: allow TF32 (10-bit mantissa) in fp32 matmuls and convolutions, much faster on "
        "Ampere and later; false keeps full fp32 arithmetic (docs/scale.md). No effect on CPU",
    )
    cudnn_benchmark: CudnnBenchmarkField = False
    memory_format: MemoryFormatField = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads. None: torch's default, one per core, so CPU results can differ "
        "between machines with different core counts; results are reproducible for a given thread count "
        "(recorded in versions.json). On a machine shared with other jobs 1 is often fastest",
    )
    reuse_host_memory: bool = Field(
        True,
        description="on Linux (glibc): keep large freed CPU buffers for the next batch instead of returning "
        "them to the OS at every free; CPU evaluation at 256 px measured 1.6x faster. The process keeps its "
        "peak memory while the run lasts; false gives it back at once (nat.runtime.memory)",
    )
    distributed_timeout_minutes: float = Field(
        30.0,
        gt=0,
        description="under torchrun: how long a process waits for the others at a collective (rank 0 "
        "fits surrogates and runs NSGA-III while they wait) before the job ends with an error",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        return device_name(value)
