"""The dataset registry: adding a dataset is one decorated function ``(root) -> DatasetSource``.

Example::

    @register_dataset("my-set", layout="ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg")
    def my_set(root: Path | None) -> DatasetSource:
        ...

The registry owns the checks every reader would otherwise repeat (unknown name, missing or absent root)
so readers only deal with their own layout.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nat.data.source import DatasetSource
from nat.errors import DataError

logger = logging.getLogger(__name__)

DatasetFactory = Callable[[Path | None], DatasetSource]


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: its reader plus what the CLI and error messages say about it."""

    name: str
    factory: DatasetFactory
    layout: str
    needs_root: bool = True
    default_roots: tuple[Path, ...] = ()
    description: str = ""


_REGISTRY: dict[str, DatasetEntry] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(
    name: str,
    *,
    layout: str,
    needs_root: bool = True,
    default_roots: tuple[str | Path, ...] = (),
    aliases: tuple[str, ...] = (),
    description: str = "",
) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register ``factory`` under ``name`` (and ``aliases``); ``layout`` is quoted in error messages."""

    def deco(factory: DatasetFactory) -> DatasetFactory:
        key = _key(name)
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"dataset {name!r} is already registered")
        _REGISTRY[key] = DatasetEntry(
            key, factory, layout, needs_root, tuple(Path(p) for p in default_roots), description
        )
        for alias in aliases:
            _ALIASES[_key(alias)] = key
        return factory

    return deco


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_entry(name: str) -> DatasetEntry:
    """Look ``name`` up (case-insensitive, ``_`` = ``-``, aliases allowed) or raise `DataError`."""
    _ensure_builtin()
    key = _ALIASES.get(_key(name), _key(name))
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY) + list(_ALIASES), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise DataError(f"unknown dataset {name!r}; {hint}known datasets: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def resolve_root(entry: DatasetEntry, root: str | Path | None) -> Path | None:
    """Check the root a dataset needs: given and present, or one of its default locations."""
    if not entry.needs_root:
        if root is not None:
            logger.debug("dataset %s is bundled with its package; ignoring root %s", entry.name, root)
        return None
    if root is None:
        for cand in entry.default_roots:
            if cand.is_dir():
                logger.debug("using default root %s for %s", cand, entry.name)
                return cand
        raise DataError(
            f"dataset {entry.name!r} needs the folder it is in: data.root in a run config, --root PATH on "
            f"`nat data` and `nat eval`; expected layout: {entry.layout}"
        )
    path = Path(root).expanduser()
    if not path.exists():
        raise DataError(f"root {path} does not exist; for {entry.name!r} expected layout: {entry.layout}")
    if not path.is_dir():
        raise DataError(f"root {path} is not a directory; for {entry.name!r} expected layout: {entry.layout}")
    return path


def get_source(name: str, root: str | Path | None = None) -> DatasetSource:
    """Read a registered dataset's official splits from ``root`` (no caching, no hold-out)."""
    entry = get_entry(name)
    path = resolve_root(entry, root)
    source = entry.factory(path)
    source.root = path
    return source


_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Import the built-in readers on first use (they register themselves)."""
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        import nat.data.datasets  # noqa: F401
