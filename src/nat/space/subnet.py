"""`Subnet`: one architecture of the space, in NAT's ``net.subnet`` format.

``ks`` and ``e`` hold one entry per *active* block (stage by stage), ``d`` the depth of each of the five
stages, ``r`` the input resolution and ``w`` the width multiplier of the supernet it comes from. Because
only active blocks are listed, two equal networks always have equal descriptions: the format is
canonical, so ``Subnet`` values can be compared and hashed directly.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nat.config_io import read_text
from nat.errors import ConfigError
from nat.space.definition import NUM_STAGES, SearchSpace


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        raise ConfigError(f"{what} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Subnet:
    """A subnet of an elastic MobileNetV3 supernet (immutable, hashable, canonical)."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int
    w: float = 1.0

    def __post_init__(self) -> None:
        if len(self.d) != NUM_STAGES:
            raise ConfigError(f"subnet 'd' needs one depth per stage ({NUM_STAGES}), got {len(self.d)}")
        n_active = sum(self.d)
        for name in ("ks", "e"):
            if len(getattr(self, name)) != n_active:
                raise ConfigError(
                    f"subnet '{name}' needs one entry per active block: sum(d) = {n_active}, "
                    f"got {len(getattr(self, name))}"
                )

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], space: SearchSpace | None = None) -> Subnet:
        """Parse NAT's ``net.subnet`` dict; with ``space``, also check every value lies in it."""
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"a subnet must be a mapping with keys ks, e, d, r, w; got {type(data).__name__}"
            )
        missing = [k for k in ("ks", "e", "d", "r") if k not in data]
        if missing:
            raise ConfigError(f"subnet is missing key(s) {missing}; expected ks, e, d, r and optionally w")
        unknown = sorted(set(data) - {"ks", "e", "d", "r", "w"})
        if unknown:
            raise ConfigError(f"subnet has unknown key(s) {unknown}; expected ks, e, d, r, w")
        lists = {}
        for key in ("ks", "e", "d"):
            value = data[key]
            if not isinstance(value, list | tuple):
                raise ConfigError(f"subnet '{key}' must be a list, got {value!r}")
            lists[key] = tuple(_as_int(v, f"subnet '{key}' entry") for v in value)
        r = data["r"]
        if isinstance(r, list | tuple) and len(r) == 1:  # some NAT files store r as a 1-list
            r = r[0]
        w = data.get("w", 1.0)
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
            raise ConfigError(f"subnet 'w' must be a number, got {w!r}")
        subnet = cls(ks=lists["ks"], e=lists["e"], d=lists["d"], r=_as_int(r, "subnet 'r'"), w=float(w))
        if space is not None:
            subnet.check(space)
        return subnet

    @classmethod
    def from_file(cls, path: str | Path, space: SearchSpace | None = None) -> Subnet:
        """Read a ``net.subnet`` JSON file (a bare subnet dict or ``{"subnet": {...}}``)."""
        path = Path(path)
        text = read_text(path, "subnet file")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                "expected a net.subnet object like "
                '{"ks": [...], "e": [...], "d": [...], "r": 224, "w": 1.0}'
            ) from None
        if isinstance(data, dict) and "subnet" in data and "ks" not in data:
            data = data["subnet"]
        try:
            return cls.from_dict(data, space)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": self.r, "w": self.w}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    # ----------------------------------------------------------------- checks and views
    def check(self, space: SearchSpace) -> Subnet:
        """Raise `ConfigError` unless every choice of this subnet exists in ``space``."""

        def bad(what: str, values: Any, allowed: Any) -> ConfigError:
            return ConfigError(
                f"subnet {what} {values} outside the search space '{space.name}' (allowed: {list(allowed)})"
            )

        wrong_d = [x for x in self.d if x not in space.depths]
        if wrong_d:
            raise bad("depth(s)", wrong_d, space.depths)
        wrong_k = sorted({x for x in self.ks if x not in space.kernel_sizes})
        if wrong_k:
            raise bad("kernel size(s)", wrong_k, space.kernel_sizes)
        wrong_e = sorted({x for x in self.e if x not in space.expand_ratios})
        if wrong_e:
            raise bad("expand ratio(s)", wrong_e, space.expand_ratios)
        if self.r not in space.resolutions:
            raise bad("resolution", self.r, space.resolutions)
        if not any(math.isclose(self.w, w) for w in space.width_mults):
            raise bad("width multiplier", self.w, space.width_mults)
        return self

    def stage_blocks(self) -> list[list[tuple[int, int]]]:
        """Per stage, the (kernel, expand) pair of each active block."""
        out, i = [], 0
        for depth in self.d:
            out.append(list(zip(self.ks[i : i + depth], self.e[i : i + depth], strict=True)))
            i += depth
        return out

    def padded(self, max_depth: int) -> tuple[list[int], list[int]]:
        """OFA's per-block lists (``max_depth`` slots per stage; inactive slots repeat the last value)."""
        ks, es = [], []
        for blocks in self.stage_blocks():
            for j in range(max_depth):
                k, e = blocks[min(j, len(blocks) - 1)]
                ks.append(k)
                es.append(e)
        return ks, es

    # ----------------------------------------------------------------- special members
    @classmethod
    def largest(cls, space: SearchSpace, w: float | None = None, r: int | None = None) -> Subnet:
        n = NUM_STAGES * space.max_depth
        return cls(
            ks=(max(space.kernel_sizes),) * n,
            e=(max(space.expand_ratios),) * n,
            d=(space.max_depth,) * NUM_STAGES,
            r=r or max(space.resolutions),
            w=w if w is not None else max(space.width_mults),
        )

    @classmethod
    def smallest(cls, space: SearchSpace, w: float | None = None, r: int | None = None) -> Subnet:
        n = NUM_STAGES * space.min_depth
        return cls(
            ks=(min(space.kernel_sizes),) * n,
            e=(min(space.expand_ratios),) * n,
            d=(space.min_depth,) * NUM_STAGES,
            r=r or min(space.resolutions),
            w=w if w is not None else min(space.width_mults),
        )

    @classmethod
    def sample(cls, space: SearchSpace, rng: random.Random, w: float | None = None) -> Subnet:
        """OFA-style uniform sample: each depth, kernel, expansion, resolution and width independently."""
        d = tuple(rng.choice(space.depths) for _ in range(NUM_STAGES))
        n = sum(d)
        return cls(
            ks=tuple(rng.choice(space.kernel_sizes) for _ in range(n)),
            e=tuple(rng.choice(space.expand_ratios) for _ in range(n)),
            d=d,
            r=rng.choice(space.resolutions),
            w=w if w is not None else rng.choice(space.width_mults),
        )
