"""The supernets a run starts from: one per width multiplier, from files, nat's assets, or fresh weights.

`load_supernets` returns networks whose ``space`` is already the run's space (the supernet's own, with
the config's resolutions/width changes and narrowed to the widths actually given), so nothing later
has to change a network's space behind its back. It reads only the supernet sources, never a run
folder: a run restores its adapted weights on top (`nat.search.rundir.RunDir.restore_supernets`), and a
benchmark can load the same pretrained starting point for its baselines.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from nat.errors import CheckpointError, ConfigError
from nat.runtime import Runtime
from nat.search.config import SearchConfig
from nat.search.seeds import classifier_seed, fresh_weights_seed
from nat.space.definition import SearchSpace, get_space, space_over
from nat.space.subnet import Subnet
from nat.supernet import Supernet
from nat.supernet.checkpoint import load_supernet, read_metadata

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "assets"
#: ``supernet: random``: fresh weights, only when asked
RANDOM = "random"
#: space fields a run may change on a loaded supernet's own space (they do not change its weights)
FREE_FIELDS = {"name", "resolutions", "width_mults"}


def builtin_supernet(name: str) -> Path:
    path = BUILTIN_DIR / f"supernet_{name}.safetensors"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("supernet_") for p in BUILTIN_DIR.glob("supernet_*.safetensors"))
        raise CheckpointError(f"no built-in supernet {name!r}; shipped with nat: {known or 'none'}")
    return path


def supernet_path(source: str) -> Path:
    """The file of a config's supernet source (``builtin:NAME`` or a path)."""
    if source.startswith("builtin:"):
        return builtin_supernet(source.removeprefix("builtin:"))
    return Path(source).expanduser()


def _fresh(config: SearchConfig, num_classes: int) -> dict[float, Supernet]:
    space = space_over(get_space("tiny"), config.space)
    nets = {}
    for w in space.width_mults:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fresh_weights_seed(config.seed, w))
            nets[w] = Supernet(space, w, num_classes)
    return nets


def _loaded(source: str, config: SearchConfig, num_classes: int, task: int) -> Supernet:
    path = supernet_path(source)
    net = load_supernet(path)
    if net.num_classes != num_classes:  # a new head for the task, drawn from the run seed
        net.reset_classifier(num_classes, seed=classifier_seed(config.seed, net.width_mult, task))
    if config.space is not None:
        wanted = space_over(net.space, config.space)
        if wanted.model_dump(exclude=FREE_FIELDS) != net.space.model_dump(exclude=FREE_FIELDS):
            raise ConfigError(
                f"space {config.space!r} does not describe the supernet in {path}: only "
                "resolutions and width_mults may differ from the supernet's own space"
            )
        net.space = wanted
    return net


def load_supernets(
    config: SearchConfig, num_classes: int, runtime: Runtime, task: int = 0
) -> tuple[SearchSpace, dict[float, Supernet]]:
    """The run's search space and its pretrained supernets keyed by width, sorted, on ``device``.

    A pretrained supernet whose class count is not the task's gets a new classifier drawn from the run
    seed, the width and ``task`` (the task's place in a many-task run), so the same config always
    starts from the same weights."""
    sources = config.supernet if isinstance(config.supernet, list) else [config.supernet]
    nets: dict[float, Supernet] = {}
    if sources == [None]:
        raise ConfigError("no supernet decided for this run: name one (supernet: FILE, builtin:NAME, random)")
    for source in sources:
        if source == RANDOM:
            nets.update(_fresh(config, num_classes))
            continue
        net = _loaded(source, config, num_classes, task)
        if net.width_mult in nets:
            raise ConfigError(f"two supernets of width {net.width_mult} given: {sources}")
        nets[net.width_mult] = net
    nets = dict(sorted(nets.items()))
    space = next(iter(nets.values())).space
    if any(not any(math.isclose(w, k) for k in nets) for w in space.width_mults):
        # the search space covers only the widths we have supernets for
        space = space.model_copy(update={"width_mults": tuple(nets)})
    for net in nets.values():
        net.space = space
        net.channels_last = runtime.channels_last
        net.to(runtime.device)
    return space, nets


def planned_space(config: SearchConfig) -> SearchSpace | None:
    """The search space the run will have, read without loading any weights or data (a nat supernet
    file's metadata, or the fresh supernet's space), so that settings the space cannot satisfy fail
    before any work; None where only loading the weights can tell (OFA's ``.pth`` files)."""
    sources = config.supernet if isinstance(config.supernet, list) else [config.supernet]
    if sources == [RANDOM]:
        return space_over(get_space("tiny"), config.space)
    spaces, widths = [], set()
    for source in sources:
        path = supernet_path(source) if source not in (None, RANDOM) else None
        if path is None or not path.is_file() or path.suffix != ".safetensors":
            return None
        try:
            metadata = read_metadata(path)
            own = SearchSpace.model_validate_json(metadata["space"])
            widths.add(float(metadata["width_mult"]))
        except Exception:  # noqa: BLE001 - a damaged file is reported, with its name, when it is loaded
            return None
        spaces.append(space_over(own, config.space))
    return spaces[0].model_copy(update={"width_mults": tuple(sorted(widths))})


def check_initial_samples(config: SearchConfig, space: SearchSpace | None) -> None:
    """`ConfigError` when ``initial_samples`` asks for more distinct subnets than ``space`` holds (the
    initial archive is drawn without repeats, so the draw would never end)."""
    if space is None:
        return
    count, wanted = space.num_subnets, config.initial_samples
    if wanted > count:
        raise ConfigError(
            f"initial_samples: {wanted} distinct subnets asked for, but the search space "
            f"'{space.name}' has only {count}; lower initial_samples to at most {count} or widen "
            "the space (more resolutions, depths, kernel sizes or expand ratios)"
        )


def supernet_for(supernets: dict[float, Supernet], subnet: Subnet) -> Supernet:
    """The supernet whose width the subnet has."""
    for width, net in supernets.items():
        if math.isclose(width, subnet.w):
            return net
    raise KeyError(f"no supernet of width {subnet.w} (have {sorted(supernets)})")
