"""The elastic MobileNetV3 supernet (OFA's ``OFAMobileNetV3``), activation and extraction of subnets."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from nat.errors import ConfigError
from nat.space.definition import SearchSpace, get_space
from nat.space.subnet import Subnet
from nat.supernet.dynamic import BatchNorm2d, DynamicMBConv
from nat.supernet.layers import Classifier, ResidualBlock
from nat.supernet.static import StaticMobileNetV3, first_block, head_layers, mobilenet_features, stem


def init_weights(module: nn.Module) -> None:
    """OFA's initialisation: conv 'he_fout', BN (1, 0), linear uniform(+-1/sqrt(fan_in)), bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.size(1))
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Supernet(nn.Module):
    """A weight-sharing supernet of one width multiplier over a `SearchSpace`.

    ``blocks[0]`` is the fixed first block; ``blocks[1 + stage * max_depth + j]`` is slot ``j`` of a
    stage. The active subnet (``set_active``) selects the first ``d`` blocks of each stage and each
    block's kernel and expansion. Inputs are fed at the subnet's resolution ``r`` by the caller (the
    network itself is resolution-agnostic, as in OFA).
    """

    def __init__(
        self,
        space: SearchSpace | str | None = None,
        width_mult: float | None = None,
        num_classes: int = 1000,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        #: run convolutions on NHWC activations: on CPU this selects oneDNN kernels for every conv and
        #: halves the cost of a training step; on GPU it is the layout tensor cores prefer
        self.channels_last = channels_last
        space = get_space(space)
        width_mult = float(space.width_mults[0] if width_mult is None else width_mult)
        if not any(math.isclose(width_mult, w) for w in space.width_mults):
            raise ConfigError(
                f"width multiplier {width_mult} is not in the search space {list(space.width_mults)}"
            )
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.space, self.width_mult, self.num_classes = space, width_mult, num_classes
        widths = space.widths(width_mult)
        self.first_conv = stem(space, width_mult, BatchNorm2d)
        blocks: list[nn.Module] = [first_block(space, width_mult, BatchNorm2d)]
        in_channels = widths[1]
        for stage in range(len(space.stage_strides)):
            out_channels = widths[2 + stage]
            for j in range(space.max_depth):
                stride = space.stage_strides[stage] if j == 0 else 1
                conv = DynamicMBConv(
                    in_channels,
                    out_channels,
                    space.kernel_sizes,
                    space.expand_ratios,
                    stride,
                    space.stage_acts[stage],
                    space.stage_se[stage],
                    space.se_reduction,
                    space.bn_momentum,
                    space.bn_eps,
                )
                blocks.append(ResidualBlock(conv, residual=stride == 1 and in_channels == out_channels))
                in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer, self.feature_mix_layer, self.classifier = head_layers(
            space, width_mult, num_classes, BatchNorm2d
        )
        init_weights(self)
        self.active = Subnet.largest(space, w=width_mult)
        self.set_active(self.active)

    # ----------------------------------------------------------------- checkpoints
    @classmethod
    def from_ofa_checkpoint(
        cls,
        path: str | Path,
        space: SearchSpace | str | None = None,
        num_classes: int | None = None,
        *,
        classifier_seed: int = 0,
    ) -> Supernet:
        """Load one of OFA's public MobileNetV3 supernets from a local file (`nat.supernet.checkpoint`)."""
        from nat.supernet.checkpoint import from_ofa_checkpoint

        return from_ofa_checkpoint(path, space, num_classes, classifier_seed=classifier_seed)

    @classmethod
    def load(cls, path: str | Path, num_classes: int | None = None, *, classifier_seed: int = 0) -> Supernet:
        """Load a nat supernet file (safetensors) or an OFA checkpoint."""
        from nat.supernet.checkpoint import load_supernet

        return load_supernet(path, num_classes, classifier_seed=classifier_seed)

    def save(self, path: str | Path) -> Path:
        from nat.supernet.checkpoint import save_supernet

        return save_supernet(self, path)

    # ----------------------------------------------------------------- subnets
    def stage_blocks(self, stage: int) -> list[ResidualBlock]:
        start = 1 + stage * self.space.max_depth
        return list(self.blocks[start : start + self.space.max_depth])

    def set_active(self, subnet: Subnet) -> Supernet:
        """Make ``subnet`` the network that ``forward`` runs; checks it belongs to this supernet."""
        subnet.check(self.space)
        if not math.isclose(subnet.w, self.width_mult):
            raise ConfigError(
                f"subnet has width multiplier {subnet.w} but this supernet has "
                f"{self.width_mult}; use the supernet of that width"
            )
        for stage, stage_blocks in enumerate(subnet.stage_blocks()):
            for block, (k, e) in zip(self.stage_blocks(stage), stage_blocks, strict=False):
                block.conv.set_active(k, e)
        self.active = subnet
        return self

    def sample_active(self, rng: random.Random) -> Subnet:
        """Activate and return a uniformly sampled subnet of this supernet's width."""
        subnet = Subnet.sample(self.space, rng, w=self.width_mult)
        self.set_active(subnet)
        return subnet

    def active_blocks(self) -> Iterator[nn.Module]:
        yield self.blocks[0]
        for stage, depth in enumerate(self.active.d):
            yield from self.stage_blocks(stage)[:depth]

    # ----------------------------------------------------------------- forward
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return mobilenet_features(self, self.active_blocks(), x, mix_as_matmul=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))

    # ----------------------------------------------------------------- heads and extraction
    def reset_classifier(self, num_classes: int, dropout_rate: float | None = None, *, seed: int = 0) -> None:
        """Replace the classifier for a new task's class count (freshly initialised, OFA-style).

        The new weights are drawn on the CPU from ``seed`` alone (the global random state is neither
        read nor advanced), then moved to the network's device: the same seed gives the same head in
        every process, on every device, whatever ran before. A head drawn from the global state made
        two identical searches of a task whose class count differs from the checkpoint's differ."""
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        old = self.classifier
        rate = old.dropout_rate if dropout_rate is None else dropout_rate
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            classifier = Classifier(old.linear.in_features, num_classes, rate)
            init_weights(classifier)
        self.classifier = classifier.to(old.linear.weight)
        self.num_classes = num_classes

    @torch.no_grad()
    def extract(self, subnet: Subnet | None = None) -> StaticMobileNetV3:
        """A standalone network of ``subnet`` (default: the active one) with copied weights.

        BN running statistics are copied as they are: recalibrate first (`nat.supernet.recalibrate_bn`)
        if the supernet's statistics do not belong to this subnet.
        """
        subnet = subnet or self.active
        self.set_active(subnet)
        param = next(self.parameters())
        static = StaticMobileNetV3(self.space, subnet, self.num_classes).to(param)
        static.first_conv.load_state_dict(self.first_conv.state_dict())
        static.blocks[0].load_state_dict(self.blocks[0].state_dict())
        for target, block in zip(list(static.blocks)[1:], list(self.active_blocks())[1:], strict=True):
            _copy_block(block.conv, target.conv)
        static.final_expand_layer.load_state_dict(self.final_expand_layer.state_dict())
        static.feature_mix_layer.load_state_dict(self.feature_mix_layer.state_dict())
        static.classifier.load_state_dict(self.classifier.state_dict())
        static.train(self.training)
        return static


def _copy_bn(source: nn.BatchNorm2d, target: nn.BatchNorm2d) -> None:
    c = target.num_features
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(target, name).copy_(getattr(source, name)[:c])
    target.num_batches_tracked.copy_(source.num_batches_tracked)


def _copy_block(source: DynamicMBConv, target: nn.Module) -> None:
    mid, k, out = source.active_mid, source.active_kernel, source.out_channels
    ib, dw, pl = source.inverted_bottleneck, source.depth_conv, source.point_linear
    target.inverted_bottleneck.conv.weight.copy_(ib.conv.active_weight(mid, source.in_channels))
    _copy_bn(ib.bn.bn, target.inverted_bottleneck.bn)
    target.depth_conv.conv.weight.copy_(dw.conv.active_filter(mid, k))
    _copy_bn(dw.bn.bn, target.depth_conv.bn)
    if source.use_se:
        w1, b1, w2, b2 = dw.se.active_weights(mid)
        fc = target.depth_conv.se.fc
        fc.reduce.weight.copy_(w1)
        fc.reduce.bias.copy_(b1)
        fc.expand.weight.copy_(w2)
        fc.expand.bias.copy_(b2)
    target.point_linear.conv.weight.copy_(pl.conv.active_weight(out, mid))
    _copy_bn(pl.bn.bn, target.point_linear.bn)
