"""A cache bounded by bytes, not by count: long Traces are large, short ones tiny.

Shared by every browser session of one server process. Each key is computed once even
when several sessions ask at the same moment (the others wait for it); least recently
used entries go first when any device's budget is exceeded (a Trace on a GPU keeps its
q/k/v there and its hidden states and logits in RAM: each pool has its own budget).
"""

from __future__ import annotations

import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import fields, is_dataclass
from typing import Generic, TypeVar

V = TypeVar("V")

GIB = 1 << 30


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return 8 * GIB


def default_budgets() -> dict[str, int]:
    """Bytes per device: ATLAS_TRACE_CACHE_GB (RAM) if set, else 40 % of the RAM available at start-up;
    on CUDA also ATLAS_TRACE_CACHE_GPU_GB, else half of the GPU's memory."""
    setting = os.environ.get("ATLAS_TRACE_CACHE_GB")
    budgets = {"cpu": int(float(setting) * GIB) if setting else int(0.4 * _available_ram())}
    import torch

    if torch.cuda.is_available():
        gpu = os.environ.get("ATLAS_TRACE_CACHE_GPU_GB")
        budgets["cuda"] = int(float(gpu) * GIB) if gpu else torch.cuda.get_device_properties(0).total_memory // 2
    return budgets


def nbytes(value: object, _depth: int = 0) -> int:
    """Bytes a derived view holds: its arrays, tensors, byte strings and text, found through dataclass
    fields, mappings and sequences (a value that says its own `nbytes` is taken at its word)."""
    if _depth > 6:
        return 64
    if isinstance(value, bytes | bytearray | str):
        return len(value)
    size = getattr(value, "nbytes", None)  # numpy arrays, and values that know their size
    if isinstance(size, int):
        return size
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # a torch tensor
        return value.element_size() * value.nelement()
    if is_dataclass(value):
        value = [getattr(value, f.name) for f in fields(value)]
    elif isinstance(value, Mapping):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple | set | frozenset):
        return 64 + sum(nbytes(item, _depth + 1) for item in value)
    return 64


class ByteBudgetCache(Generic[V]):
    def __init__(self, budgets: int | Mapping[str, int], size_of: Callable[[V], int | Mapping[str, int]]):
        """`budgets`: bytes per device ("cpu", "cuda"), or one number for "cpu". `size_of` gives a
        value's bytes the same way."""
        self.budgets = {"cpu": budgets} if isinstance(budgets, int) else dict(budgets)
        self._size_of = size_of
        self._entries: OrderedDict[Hashable, tuple[V, Counter]] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}

    @property
    def budget(self) -> int:
        return self.budgets["cpu"]

    def used_by_device(self) -> Counter:
        with self._lock:
            return self._total()

    @property
    def used(self) -> int:
        return sum(self.used_by_device().values())

    def _total(self) -> Counter:
        total: Counter = Counter()
        for _, size in self._entries.values():
            total.update(size)
        return total

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def lookup(self, key: Hashable) -> tuple[bool, V | None]:
        """(True, value) when `key` is cached (now the most recently used), else (False, None)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return True, self._entries[key][0]
        return False, None

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
            size = self._size_of(value)
            with self._lock:
                self._entries[key] = (value, Counter({"cpu": size} if isinstance(size, int) else size))
                self._evict(keep=key)
        return value

    def _evict(self, keep: Hashable) -> None:
        """Drop least recently used entries until every device is within budget; the newest always stays."""
        total = self._total()
        for key in list(self._entries):
            over = {device for device in total if total[device] > self.budgets.get(device, self.budget)}
            if not over:
                break
            if key != keep and any(self._entries[key][1][device] for device in over):  # frees what is short
                total.subtract(self._entries.pop(key)[1])

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
