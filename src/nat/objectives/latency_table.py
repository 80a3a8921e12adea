"""Latency lookup tables: one device's measured latency per layer configuration, and predictions from them.

A network of the space is a chain of layers (stem, the fixed first block, the active inverted-residual
blocks, final expand, global pooling, feature mix, classifier). Its latency is predicted as the sum of
each layer's latency, looked up by the layer's *configuration key*. nat uses OFA's key layout
(``MBv3LatencyTable.query``), so OFA's published tables (one YAML file per resolution) load as they are:

* ``Conv-input:224x224x3-output:112x112x16`` (the stem: 3x3 conv, BN, h-swish),
* ``expanded_conv-input:56x56x24-output:28x28x40-expand:72-kernel:5-stride:2-idskip:0-se:1-hs:0``
  (a block; ``expand`` is the hidden width, ``idskip`` the residual, ``hs`` h-swish against ReLU),
* ``Conv_1-input:7x7x160-output:7x7x960`` (final 1x1 expand), ``AvgPool2D-input:7x7x960-output:1x1x960``,
  ``Conv_2-input:1x1x960-output:1x1x1280`` (feature mix), ``Logits-input:1x1x1280-output:1000``.

The key holds everything that changes the layer's work except the squeeze-and-excite width, which
follows the space's ``se_reduction`` (4 in OFA's space and every nat preset); a table records the one
it was built with and a space with another is refused.

A nat table (``nat latency build``) is YAML: a header (device, backend, batch size, threads, library
versions, timing settings), ``entries`` (per key: median, mean, std and count of the timed repeats, in
ms) and ``calibration``: the end-to-end measurements of random subnets taken during the build, and the
affine correction ``scale * sum + offset_ms`` fitted on them (docs/latency.md says why the plain sum is
biased). A prediction is ``scale * sum(layer medians) + offset_ms``; OFA's tables have only means and no
calibration, so theirs is the plain sum of means.

`LatencyPredictor` turns a table into per-(width, resolution, slot, operation) arrays like
`nat.objectives.complexity.ComplexityTable`, so the search predicts thousands of genomes in milliseconds,
and it refuses a table that does not cover the space, naming what is missing and the command that adds it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from nat.config_io import validation_message
from nat.errors import ConfigError
from nat.objectives.complexity import as_genomes, conv_out, genome_sums
from nat.space.definition import NUM_STAGES, SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.supernet.layers import Classifier, ConvLayer, MBConv, ResidualBlock

FORMAT = "nat.latency_table/1"
#: the squeeze-and-excite reduction OFA's tables assume (the key does not record it)
OFA_SE_REDUCTION = 4
LayerKind = Literal["Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits"]


# ----------------------------------------------------------------------------------------- layers


def _shape(*dims: int) -> str:
    return "x".join(str(d) for d in dims)


@dataclass(frozen=True)
class LayerSpec:
    """One layer configuration: what its table key says, and enough to build and time the layer."""

    kind: LayerKind
    size_in: int
    c_in: int
    size_out: int
    c_out: int
    mid: int = 0
    kernel: int = 0
    stride: int = 1
    residual: bool = False
    se_channels: int = 0  # 0: no squeeze-and-excite
    act: str = "h_swish"

    @property
    def key(self) -> str:
        """The layer's key in OFA's table layout."""
        io = f"input:{_shape(self.size_in, self.size_in, self.c_in)}"
        if self.kind == "Logits":
            return f"Logits-input:{_shape(1, 1, self.c_in)}-output:{self.c_out}"
        io += f"-output:{_shape(self.size_out, self.size_out, self.c_out)}"
        if self.kind != "expanded_conv":
            return f"{self.kind}-{io}"
        return (
            f"expanded_conv-{io}-expand:{self.mid}-kernel:{self.kernel}-stride:{self.stride}"
            f"-idskip:{int(self.residual)}-se:{int(self.se_channels > 0)}-hs:{int(self.act == 'h_swish')}"
        )

    def build(self, dropout_rate: float = 0.0) -> nn.Module:
        """The layer as a module in eval mode (random weights: latency does not depend on them)."""
        if self.kind == "Conv":
            module: nn.Module = ConvLayer(self.c_in, self.c_out, 3, self.stride, "h_swish")
        elif self.kind == "expanded_conv":
            se = self.se_channels or None
            conv = MBConv(
                self.c_in,
                self.c_out,
                self.kernel,
                self.stride,
                self.mid,
                self.act,
                se,  # type: ignore[arg-type]
                expand=self.mid != self.c_in,
            )
            module = ResidualBlock(conv, self.residual)
        elif self.kind == "Conv_1":
            module = ConvLayer(self.c_in, self.c_out, 1, 1, "h_swish")
        elif self.kind == "AvgPool2D":
            module = GlobalAveragePool()
        elif self.kind == "Conv_2":
            module = ConvLayer(self.c_in, self.c_out, 1, 1, "h_swish", use_bn=False)
        else:
            module = Classifier(self.c_in, self.c_out, dropout_rate)
        return module.eval()

    def example(self, batch_size: int) -> torch.Tensor:
        """A random input of the layer's shape (NCHW; ``(batch, features)`` for the classifier)."""
        if self.kind == "Logits":
            return torch.randn(batch_size, self.c_in)
        return torch.randn(batch_size, self.c_in, self.size_in, self.size_in)


class GlobalAveragePool(nn.Module):
    """The network's global average pooling (``x.mean((2, 3), keepdim=True)``) as a module to time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


def _block(
    space: SearchSpace, stage: int, size: int, c_in: int, c_out: int, e: int, k: int, j: int
) -> LayerSpec:
    stride = space.stage_strides[stage] if j == 0 else 1
    mid = space.middle_channels(c_in, e)
    return LayerSpec(
        "expanded_conv",
        size,
        c_in,
        conv_out(size, stride),
        c_out,
        mid=mid,
        kernel=k,
        stride=stride,
        residual=stride == 1 and c_in == c_out,
        se_channels=space.se_channels(mid) if space.stage_se[stage] else 0,
        act=space.stage_acts[stage],
    )


def _fixed_layers(
    space: SearchSpace, width: float, resolution: int, num_classes: int
) -> tuple[list[LayerSpec], list[LayerSpec]]:
    """(stem and first block, final expand / pooling / feature mix / classifier) of every subnet."""
    w = space.widths(width)
    size = conv_out(resolution, space.stem_stride)
    stem = LayerSpec("Conv", resolution, 3, size, w[0], stride=space.stem_stride)
    first = LayerSpec(
        "expanded_conv", size, w[0], size, w[1], mid=w[0], kernel=3, stride=1,
        residual=w[0] == w[1], act=space.first_block_act,
    )  # fmt: skip
    for stride in space.stage_strides:
        size = conv_out(size, stride)
    head = [
        LayerSpec("Conv_1", size, w[6], size, w[7]),
        LayerSpec("AvgPool2D", size, w[7], 1, w[7]),
        LayerSpec("Conv_2", 1, w[7], 1, w[8]),
        LayerSpec("Logits", 1, w[8], 1, num_classes),
    ]
    return [stem, first], head


def slot_layers(space: SearchSpace, width: float, resolution: int) -> dict[tuple[int, int], LayerSpec]:
    """The block of every (genome slot, operation code >= 1) at one width and resolution.

    Slots after the first of a stage are identical (stride 1, ``c_out -> c_out``), so a skipped slot
    in the middle of a stage, which moves later blocks forward, does not change what they cost."""
    widths = space.widths(width)
    size, c_in = conv_out(resolution, space.stem_stride), widths[1]
    out: dict[tuple[int, int], LayerSpec] = {}
    for stage in range(NUM_STAGES):
        c_out = widths[2 + stage]
        for j in range(space.max_depth):
            block_in = c_in if j == 0 else c_out
            block_size = size if j == 0 else conv_out(size, space.stage_strides[stage])
            for code, (e, k) in enumerate(space.op_choices, start=1):
                out[stage * space.max_depth + j, code] = _block(
                    space, stage, block_size, block_in, c_out, e, k, j
                )
        size = conv_out(size, space.stage_strides[stage])
        c_in = c_out
    return out


def subnet_layers(space: SearchSpace, subnet: Subnet, num_classes: int) -> list[LayerSpec]:
    """The layers of one subnet, in order."""
    subnet.check(space)
    front, head = _fixed_layers(space, subnet.w, subnet.r, num_classes)
    blocks, c_in = [], space.widths(subnet.w)[1]
    size = conv_out(subnet.r, space.stem_stride)
    for stage, stage_blocks in enumerate(subnet.stage_blocks()):
        c_out = space.widths(subnet.w)[2 + stage]
        for j, (k, e) in enumerate(stage_blocks):
            spec = _block(space, stage, size, c_in, c_out, e, k, j)
            blocks.append(spec)
            size, c_in = spec.size_out, c_out
    return front + blocks + head


def space_layers(
    space: SearchSpace,
    num_classes: Sequence[int],
    resolutions: Sequence[int] | None = None,
    widths: Sequence[float] | None = None,
) -> dict[str, LayerSpec]:
    """Every distinct layer configuration the space can produce (at the given resolutions, widths and
    class counts), keyed and in a stable order: what a table for the space must hold."""
    out: dict[str, LayerSpec] = {}
    for w in widths or space.width_mults:
        for r in resolutions or space.resolutions:
            for n in num_classes:
                front, head = _fixed_layers(space, w, r, n)
                for spec in front + head:
                    out.setdefault(spec.key, spec)
            for spec in slot_layers(space, w, r).values():
                out.setdefault(spec.key, spec)
    return out


def network_layers(net: nn.Module, resolution: int) -> list[LayerSpec]:
    """The layers of a built network with OFA's MobileNetV3 module names (nat's static networks and
    NAT/OFA ``net.config`` networks), read from its modules as OFA's ``predict_network_latency`` does."""
    first = net.first_conv.conv
    size = conv_out(resolution, first.stride[0])
    specs = [LayerSpec("Conv", resolution, 3, size, first.out_channels, stride=first.stride[0])]
    for i, block in enumerate(net.blocks):
        conv = block.conv
        depth = conv.depth_conv.conv
        stride = depth.stride[0]
        act = _act_name(conv.depth_conv.act, f"blocks[{i}]")
        se = conv.depth_conv.se.fc.reduce.out_channels if "se" in conv.depth_conv._modules else 0
        c_in = (
            conv.inverted_bottleneck.conv.in_channels
            if conv.inverted_bottleneck is not None
            else depth.in_channels
        )
        spec = LayerSpec(
            "expanded_conv", size, c_in, conv_out(size, stride), conv.point_linear.conv.out_channels,
            mid=depth.in_channels, kernel=depth.kernel_size[0], stride=stride,
            residual=bool(block.residual), se_channels=se, act=act,
        )  # fmt: skip
        specs.append(spec)
        size = spec.size_out
    expand, mix = net.final_expand_layer.conv, net.feature_mix_layer.conv
    linear = net.classifier.linear
    specs += [
        LayerSpec("Conv_1", size, expand.in_channels, size, expand.out_channels),
        LayerSpec("AvgPool2D", size, expand.out_channels, 1, expand.out_channels),
        LayerSpec("Conv_2", 1, mix.in_channels, 1, mix.out_channels),
        LayerSpec("Logits", 1, linear.in_features, 1, linear.out_features),
    ]
    return specs


def _act_name(module: nn.Module, where: str) -> str:
    if isinstance(module, nn.Hardswish):
        return "h_swish"
    if isinstance(module, nn.ReLU):
        return "relu"
    raise ConfigError(
        f"{where}: activation {type(module).__name__} has no latency-table key (tables know ReLU and h-swish)"
    )


# ----------------------------------------------------------------------------------------- tables


@dataclass
class LatencyTable:
    """Layer latencies (ms) of one device, backend, batch size and thread count."""

    entries: dict[str, dict[str, float]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    @property
    def is_ofa(self) -> bool:
        return self.meta.get("format") == "ofa"

    @property
    def se_reduction(self) -> int:
        return int(self.meta.get("se_reduction", OFA_SE_REDUCTION))

    def value(self, key: str) -> float:
        """A layer's latency: the median of its timed repeats (nat tables), else the mean (OFA's)."""
        entry = self.entries[key]
        return float(entry["median"] if "median" in entry else entry["mean"])

    @property
    def scale(self) -> float:
        return float(self.calibration.get("scale", 1.0))

    @property
    def offset_ms(self) -> float:
        return float(self.calibration.get("offset_ms", 0.0))

    def correct(self, layer_sum: np.ndarray | float) -> np.ndarray | float:
        """The calibrated prediction from a sum of layer latencies."""
        return self.scale * layer_sum + self.offset_ms

    def predict_layers(self, layers: Iterable[LayerSpec]) -> float:
        """The calibrated latency of a chain of layers; a `ConfigError` naming missing keys."""
        layers = list(layers)
        missing = [s.key for s in layers if s.key not in self.entries]
        if missing:
            hint = "extend it with `nat latency build` (an existing table is extended)"
            if all(k.startswith("Logits-") for k in missing):
                held = sorted(
                    {k.rpartition(":")[2] for k in self.entries if k.startswith("Logits-")}, key=int
                )
                hint = (
                    f"the table has classifiers for {', '.join(held) or 'no'} classes (--num-classes); "
                    + hint
                )
            raise ConfigError(
                f"latency table {self.name} has no entry for {len(missing)} layer(s) of this network, "
                f"e.g. {missing[0]!r}; {hint}"
            )
        return float(self.correct(self.layer_sum(layers)))

    def layer_sum(self, layers: Iterable[LayerSpec]) -> float:
        """The uncorrected sum of the layers' entries (every key must be in the table)."""
        return sum(self.value(s.key) for s in layers)

    @property
    def name(self) -> str:
        return ", ".join(self.sources) or "(in memory)"

    def digest(self) -> str:
        """A content hash of the entries and calibration (what a search's results depend on)."""
        payload = yaml.safe_dump({"entries": self.entries, "calibration": self.calibration}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ files
    def to_yaml(self) -> str:
        data = {
            "format": FORMAT,
            **{k: v for k, v in self.meta.items() if k != "format"},
            "calibration": self.calibration,
            "entries": self.entries,
        }
        return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=200)

    @classmethod
    def from_data(cls, data: Any, source: str) -> LatencyTable:
        """A table from a parsed YAML mapping: nat's format, or OFA's flat ``key: {mean: ...}`` layout."""
        if not isinstance(data, Mapping) or not data:
            raise ConfigError(
                f"latency table {source}: expected a YAML mapping of layer entries, got {data!r:.80}"
            )
        if data.get("format") == FORMAT:
            _check_header(data, source)
            entries = data.get("entries") or {}
            meta = {k: v for k, v in data.items() if k not in ("entries", "calibration")}
            calibration = dict(data.get("calibration") or {})
        elif "format" in data:
            raise ConfigError(
                f"latency table {source}: unknown format {data['format']!r} (nat reads {FORMAT})"
            )
        else:
            entries, meta, calibration = data, {"format": "ofa"}, {}
        checked = {str(k): _entry(k, v, source) for k, v in entries.items()}
        return cls(checked, meta, calibration, [source])

    @classmethod
    def load(cls, paths: str | Path | Sequence[str | Path]) -> LatencyTable:
        """One table from one or more files, or folders of ``*.yaml`` files (OFA ships one file per
        resolution): entries merged; nat tables must agree on device, backend, batch size and threads."""
        files = []
        for p in [paths] if isinstance(paths, str | Path) else paths:
            path = Path(p).expanduser()
            found = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
            if not found:
                raise ConfigError(f"latency table folder {path} holds no .yaml files")
            files += found
        if not files:
            raise ConfigError("no latency table file given")
        tables = [cls.from_data(_read_yaml(f), str(f)) for f in files]
        merged = tables[0]
        for other in tables[1:]:
            merged = merged.merged(other)
        return merged

    def merged(self, other: LatencyTable) -> LatencyTable:
        keys = ("format", "backend", "device", "batch_size", "threads", "se_reduction")
        differ = [k for k in keys if self.meta.get(k) != other.meta.get(k)]
        if differ:
            raise ConfigError(
                f"latency tables {self.name} and {other.name} differ in {differ}: a latency objective must "
                "come from one device, backend, batch size and thread count"
            )
        if self.calibration and other.calibration and self.calibration != other.calibration:
            raise ConfigError(f"latency tables {self.name} and {other.name} carry different calibrations")
        return LatencyTable(
            {**self.entries, **other.entries},
            dict(self.meta),
            self.calibration or other.calibration,
            self.sources + other.sources,
        )


class _Calibration(BaseModel):
    """A nat table's ``calibration``: what a prediction reads of it (``scale``, ``offset_ms``)."""

    model_config = ConfigDict(extra="allow")
    scale: float = Field(1.0, gt=0, allow_inf_nan=False)
    offset_ms: float = Field(0.0, allow_inf_nan=False)
    samples: list[dict[str, Any]] = Field(default_factory=list)


class _Header(BaseModel):
    """A nat table's top level: the fields read for predictions and for merging tables."""

    model_config = ConfigDict(extra="allow")
    format: str
    entries: dict[str, Any] | None = None
    calibration: _Calibration | None = None
    batch_size: int | None = Field(None, ge=1)
    threads: int | None = Field(None, ge=1)
    se_reduction: int | None = Field(None, ge=1)
    reference_ms: float | None = Field(None, gt=0, allow_inf_nan=False)


def _check_header(data: Mapping[str, Any], source: str) -> None:
    """Validate a nat table when it is loaded, so that a wrong type is named here, not hit mid-search."""
    try:
        _Header.model_validate(dict(data), strict=True)
    except ValidationError as exc:
        raise ConfigError(f"latency table {source}: {validation_message(exc)}") from None


class _Dumper(yaml.SafeDumper):
    """Plain YAML without anchors (entries repeat structures, never objects)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _entry(key: Any, value: Any, source: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not ("mean" in value or "median" in value):
        raise ConfigError(f"latency table {source}: entry {key!r} needs a 'mean' (ms), got {value!r:.80}")
    out = {}
    for name, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"latency table {source}: entry {key!r} has {name} = {v!r}, not a latency")
        out[str(name)] = float(v) if name != "count" else int(v)
    return out


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"latency table not found: {path} (make one with `nat latency build`)")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(path.read_text(), Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"latency table {path} is not valid YAML: {' '.join(str(exc).split())}") from None


# ----------------------------------------------------------------------------------------- prediction


class LatencyPredictor:
    """Vectorised table latency (ms) of genomes of one space and class count.

    Construction checks that the table covers the whole space (every width, resolution, block and the
    classifier for ``num_classes``) and raises a `ConfigError` that names what is missing."""

    def __init__(self, table: LatencyTable, space: SearchSpace, num_classes: int) -> None:
        self.table, self.space, self.num_classes = table, space, num_classes
        if space.se_reduction != table.se_reduction:
            raise ConfigError(
                f"latency table {table.name} was built for squeeze-and-excite reduction "
                f"{table.se_reduction}, "
                f"the space '{space.name}' uses {space.se_reduction}; build a table for this space"
            )
        n_w, n_r, n_ops = len(space.width_mults), len(space.resolutions), len(space.op_choices)
        self.fixed = np.zeros((n_w, n_r))
        self.slots = np.zeros((n_w, n_r, NUM_STAGES * space.max_depth, n_ops + 1))
        lacking: list[tuple[float, int, str]] = []  # (width, resolution, how many layers are missing)
        missing_keys: list[str] = []
        for wi, w in enumerate(space.width_mults):
            for ri, r in enumerate(space.resolutions):
                front, head = _fixed_layers(space, w, r, num_classes)
                slots = slot_layers(space, w, r)
                keys = list(dict.fromkeys(s.key for s in [*front, *head, *slots.values()]))
                missing = [k for k in keys if k not in table.entries]
                if missing:
                    what = "all" if len(missing) == len(keys) else f"{len(missing)} of {len(keys)}"
                    lacking.append((w, r, what))
                    missing_keys += missing
                    continue
                self.fixed[wi, ri] = table.layer_sum(front + head)
                for (slot, code), spec in slots.items():
                    self.slots[wi, ri, slot, code] = table.value(spec.key)
        if lacking:
            raise self._not_covered(lacking, missing_keys)

    def _not_covered(self, lacking: list[tuple[float, int, str]], missing_keys: list[str]) -> ConfigError:
        """The error for a table that lacks ``missing_keys`` (per width and resolution: ``lacking``)."""
        space, table = self.space, self.table
        if all(k.startswith("Logits-") for k in missing_keys):
            summary, flags = f"the classifier for {self.num_classes} classes", ""
        else:
            parts = [f"resolution {r} width {w:g} ({what} layers)" for w, r, what in lacking]
            summary = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")
            rs = sorted({r for _, r, _ in lacking})
            ws = sorted({w for w, _, _ in lacking})
            flags = f" --resolutions {' '.join(map(str, rs))}"
            if len(ws) < len(space.width_mults):
                flags += f" --widths {' '.join(f'{w:g}' for w in ws)}"
        return ConfigError(
            f"latency table {table.name} does not cover the space '{space.name}': missing {summary} "
            f"({len(missing_keys)} layer configurations, e.g. {missing_keys[0]!r}); add them with "
            f"`nat latency build --space {space.name}{flags} --num-classes {self.num_classes} --out TABLE` "
            "(it extends an existing nat table) or restrict the run's space to what the table holds"
        )

    def layer_sums(self, genomes: np.ndarray) -> np.ndarray:
        """The uncorrected sum of layer latencies of a batch of genomes (n, L)."""
        return genome_sums(self.fixed, self.slots, as_genomes(genomes, self.space))

    def __call__(self, genomes: np.ndarray) -> np.ndarray:
        """Calibrated latency (ms) of a batch of genomes."""
        return np.asarray(self.table.correct(self.layer_sums(genomes)), dtype=float)

    def subnet(self, subnet: Subnet) -> float:
        return float(self(encode(subnet, self.space)[None])[0])

    def minimum(self) -> float:
        """The exact smallest predicted latency over the whole space: per width and resolution, the
        fixed layers plus, per stage, the cheapest allowed depth of cheapest operations."""
        best = math.inf
        d_max = self.space.max_depth
        for wi in range(len(self.space.width_mults)):
            for ri in range(len(self.space.resolutions)):
                total = self.fixed[wi, ri]
                for stage in range(NUM_STAGES):
                    cheapest = self.slots[wi, ri, stage * d_max : (stage + 1) * d_max, 1:].min(1).cumsum()
                    total += min(cheapest[d - 1] for d in self.space.depths)
                best = min(best, total)
        return float(self.table.correct(best))
