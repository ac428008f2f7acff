"""A cache bounded by bytes, not by count: long Traces are large, short ones tiny.

Shared by every browser session of one server process. Each key is computed once even
when several sessions ask at the same moment (the others wait for it); least recently
used entries go first when the budget is exceeded.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

GIB = 1 << 30


def default_budget() -> int:
    """ATLAS_TRACE_CACHE_GB if set, else 40 % of the memory available when the server starts."""
    setting = os.environ.get("ATLAS_TRACE_CACHE_GB")
    if setting:
        return int(float(setting) * GIB)
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        available = 8 * GIB
    return int(0.4 * available)


class ByteBudgetCache(Generic[V]):
    def __init__(self, budget: int, size_of: Callable[[V], int]):
        self.budget = budget
        self._size_of = size_of
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    @property
    def used(self) -> int:
        with self._lock:
            return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value for `key`, computing it (once, whoever asks first) when absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:  # a second session asking for the same key waits here, then finds it cached
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key][0]
            try:
                value = compute()  # outside the cache lock: other keys stay servable meanwhile
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            with self._lock:
                self._entries[key] = (value, self._size_of(value))
                self._evict(keep=key)
        return value

    def _evict(self, keep: Hashable) -> None:
        """Drop least recently used entries until within budget; the newest entry always stays."""
        total = sum(size for _, size in self._entries.values())
        for key in list(self._entries):
            if total <= self.budget:
                break
            if key != keep:
                total -= self._entries.pop(key)[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
