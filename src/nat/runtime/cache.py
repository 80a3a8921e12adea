"""A bounded cache of prepared images per resolution, least recently used first out.

A search measures every subnet on the same BN-calibration and search-validation images, at the few
resolutions of its space, so both sets are prepared once per resolution and kept on the device
(`nat.supernet.BNCalibrator`, `nat.search.evaluator.ValidationCache`). The device's memory is finite
(OFA's space has 17 resolutions; 5,000 validation images at 224 px take 718 MiB even as uint8), so the
cache is bounded in bytes, and optionally in entries: what does not fit is evicted least recently used
first, and an entry larger than the whole bound is never kept (its owner prepares it for each use).
What is cached changes speed only, never results: an evicted resolution is prepared again from the
same images.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Value = TypeVar("Value")


class ResolutionCache(Generic[Value]):
    """Values by resolution within ``max_bytes`` (None: no byte bound) and ``max_entries`` (None: no
    count bound), each stored with the bytes its owner counts for it."""

    def __init__(self, max_bytes: int | None, max_entries: int | None = None) -> None:
        self.max_bytes, self.max_entries = max_bytes, max_entries
        self._entries: dict[int, tuple[Value, int]] = {}  # in order of use, most recent last

    def resolutions(self) -> list[int]:
        """The resolutions held now, least recently used first."""
        return list(self._entries)

    def bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def get(self, resolution: int) -> Value | None:
        """The value held for ``resolution`` (now the most recently used), or None."""
        if resolution not in self._entries:
            return None
        self._entries[resolution] = self._entries.pop(resolution)
        return self._entries[resolution][0]

    def fits(self, size: int) -> bool:
        """Whether an entry of ``size`` bytes may be kept at all."""
        return self.max_bytes is None or size <= self.max_bytes

    def make_room(self, size: int) -> None:
        """Evict least recently used entries until one of ``size`` bytes fits beside the rest."""
        while self._entries and self._full(size):
            del self._entries[next(iter(self._entries))]

    def put(self, resolution: int, value: Value, size: int) -> None:
        self._entries[resolution] = (value, size)

    def _full(self, incoming: int) -> bool:
        too_many = self.max_entries is not None and len(self._entries) >= self.max_entries
        return too_many or (self.max_bytes is not None and self.bytes() + incoming > self.max_bytes)
