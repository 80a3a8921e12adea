"""nat's one C kernel: compiled on first use with the machine's C compiler, loaded with ctypes.

PyTorch has no fast CPU kernel for the weight gradient of a 5x5 or 7x7 depthwise convolution
(``depthwise_weight_grad.c`` says why it matters), so nat carries a small one in plain C. It needs no
PyTorch headers and no build step at install time: the first process that needs it compiles it (well
under a second) into a per-user cache, keyed by the source, the compiler, the flags and the CPU's
feature flags (it is built with ``-march=native``, so a cache shared between different machines gets
one library per kind of CPU instead of one that crashes on the other kind). Writes are atomic, so
processes that start together (torchrun) cannot load a half-written file.

Without a working compiler, or with ``NAT_NATIVE_KERNELS=0``, nat runs PyTorch's kernels instead: the
same gradient up to float rounding, slower. ``NAT_CACHE_DIR`` moves the cache (default
``$XDG_CACHE_HOME/nat`` or ``~/.cache/nat``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("depthwise_weight_grad.c")
#: tried in order; the second for compilers that do not know ``-march=native``
FLAG_SETS = (
    ("-O3", "-march=native", "-shared", "-fPIC", "-pthread"),
    ("-O3", "-shared", "-fPIC", "-pthread"),
)
#: largest kernel the C code handles (its accumulators are sized for 7x7)
MAX_KERNEL = 7
COMPILE_TIMEOUT_S = 120


def enabled() -> bool:
    """False when ``NAT_NATIVE_KERNELS`` is set to 0 (or ``false``/``no``/``off``)."""
    return os.environ.get("NAT_NATIVE_KERNELS", "1").strip().lower() not in {"0", "false", "no", "off"}


def cache_dir() -> Path:
    if os.environ.get("NAT_CACHE_DIR"):
        return Path(os.environ["NAT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "nat"


def compiler() -> list[str]:
    """The C compiler Python was built with (``CC``), as a command; ``cc`` when Python does not say."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(command)


@functools.cache
def depthwise_weight_grad_library() -> ctypes.CDLL | None:
    """The compiled kernel, or None where it cannot be built (then PyTorch's kernels run).

    Cached per process: the compile or the cache lookup happens once."""
    if not enabled():
        return None
    try:
        path = _build(SOURCE)
    except (OSError, subprocess.SubprocessError, RuntimeError) as err:
        log.warning(
            "nat's C kernel for the depthwise weight gradient could not be built (%s); "
            "using PyTorch's kernels, which give the same results more slowly",
            err,
        )
        return None
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        log.warning("nat's C kernel at %s could not be loaded (%s); using PyTorch's kernels", path, err)
        return None
    function = library.nat_depthwise_weight_grad
    function.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 10
    function.restype = ctypes.c_int
    return library


def depthwise_weight_grad(
    x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, stride: int, padding: int
) -> torch.Tensor:
    """The weight gradient ``(C, 1, k, k)`` of ``F.conv2d(x, w, None, stride, padding, groups=C)``.

    ``x`` and ``grad_out`` are float32 CPU tensors; channels-last ones are used without a copy.
    Call only when :func:`depthwise_weight_grad_library` returned a library."""
    library = depthwise_weight_grad_library()
    if library is None or kernel_size > MAX_KERNEL:
        raise RuntimeError("nat's depthwise weight-gradient kernel is not available here")
    n, c, h, w = x.shape
    out_h, out_w = grad_out.shape[-2:]
    # NHWC memory; a no-op for channels-last tensors, which is what the supernet runs on CPU
    inputs = x.permute(0, 2, 3, 1).contiguous()
    grads = grad_out.permute(0, 2, 3, 1).contiguous()
    out = torch.empty(c, 1, kernel_size, kernel_size, dtype=torch.float32)
    status = library.nat_depthwise_weight_grad(
        inputs.data_ptr(), grads.data_ptr(), out.data_ptr(),
        n, h, w, c, out_h, out_w, kernel_size, stride, padding, torch.get_num_threads(),
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"nat's depthwise weight-gradient kernel refused kernel size {kernel_size}")
    return out


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(source: Path) -> Path:
    """Compile ``source`` into the cache unless a library for this source, compiler and CPU is there."""
    cc = compiler()
    version = subprocess.run(
        [*cc, "--version"], capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, check=False
    ).stdout
    code = source.read_bytes()
    machine = (platform.machine(), _cpu_flags())
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join(s.encode() for s in (version, " ".join(flags), *machine)) + b"\0" + code
        ).hexdigest()[:20]
        target = cache_dir() / f"{source.stem}-{key}.so"
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            built = Path(tmp) / target.name
            result = subprocess.run(
                [*cc, *flags, "-o", str(built), str(source)],
                capture_output=True,
                text=True,
                timeout=COMPILE_TIMEOUT_S,
                check=False,
            )
            if result.returncode == 0:
                os.replace(built, target)
                return target
        errors.append(f"{' '.join(cc)} {' '.join(flags)}: {result.stderr.strip()[:300]}")
    raise RuntimeError("; ".join(errors))
