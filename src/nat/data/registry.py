"""The dataset registry: adding a dataset is one decorated function ``(root) -> DatasetSource``.

Example::

    @register_dataset("my-set", layout="ROOT/train/<class>/*.jpg and ROOT/test/<class>/*.jpg")
    def my_set(root: Path | None) -> DatasetSource:
        ...

The registry owns the checks every reader would otherwise repeat (unknown name, missing or absent root)
so readers only deal with their own layout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nat.data.source import DatasetSource
from nat.errors import DataError
from nat.registry import Registry

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


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


#: every dataset, by name and alias (case-insensitive, ``_`` = ``-``)
DATASETS: Registry[DatasetEntry] = Registry("dataset", DataError, normalise=_key)


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
        entry = DatasetEntry(
            _key(name), factory, layout, needs_root, tuple(Path(p) for p in default_roots), description
        )
        DATASETS.add(name, entry, aliases)
        return factory

    return deco


def list_datasets() -> list[str]:
    """Names of all registered datasets, sorted."""
    _ensure_builtin()
    return DATASETS.names()


def get_entry(name: str) -> DatasetEntry:
    """Look ``name`` up (case-insensitive, ``_`` = ``-``, aliases allowed) or raise `DataError`."""
    _ensure_builtin()
    return DATASETS.get(name)


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
            f"the command line; expected layout: {entry.layout}"
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
