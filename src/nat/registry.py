"""One small registry for everything a user can pick by name: strategies, surrogates, datasets.

In the style of timm's ``register_model`` / ``list_models``: a module adds its thing with a decorator,
configs validate a name against `Registry.names`, and an unknown name is one error that lists what is
known and suggests the closest spelling. Adding a strategy, a surrogate or a dataset is then one
decorated definition plus its test, never an edit to a list elsewhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from nat.errors import ConfigError, NATError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind (``kind`` names it in messages), with aliases and normalised keys."""

    def __init__(
        self, kind: str, error: type[NATError] = ConfigError, normalise: Callable[[str], str] | None = None
    ) -> None:
        self.kind, self.error = kind, error
        self._normalise = normalise or (lambda name: name)
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        """Register ``entry`` under ``name`` (and ``aliases``); a name taken by another entry is a
        programming error (`ValueError`), registering the same entry twice is harmless."""
        key = self._normalise(name)
        taken = self._entries.get(key, entry)
        if key in self._aliases or taken is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[key] = entry
        for alias in aliases:
            self._aliases[self._normalise(alias)] = key
        return entry

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of `add`."""

        def decorate(entry: T) -> T:
            return self.add(name, entry, aliases)

        return decorate

    def remove(self, name: str) -> None:
        """Forget ``name`` and its aliases (for tests that register an entry for themselves)."""
        key = self.key(name)
        del self._entries[key]
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    def key(self, name: str) -> str:
        """The registered name ``name`` stands for (aliases and spelling normalised); the registry's
        error, listing the known names and the closest one, when there is none."""
        key = self._normalise(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            close = difflib.get_close_matches(key, [*self._entries, *self._aliases], n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise self.error(f"unknown {self.kind} {name!r}; {hint}known: {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.key(name)]

    def names(self) -> list[str]:
        """The registered names (not the aliases), sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._normalise(name)
        return key in self._entries or key in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
