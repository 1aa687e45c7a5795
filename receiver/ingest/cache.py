"""A least-recently-used cache bounded by the measured bytes of what it holds, not by a count of entries.

A count is no bound when entries are shaped by senders: a label set of a thousand one-character labels
costs about 64 KB as a tuple of pairs, so 16,384 of them pinned a gigabyte. Each entry here is weighed once,
with `sys.getsizeof` of its key and value parts plus what the cache itself spends on it, and the oldest
entries are dropped until the total is back under the budget.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# What one entry costs the cache beyond its key and value: its slot in the dict's tables, the ordered
# dict's link node and the (value, size) pair. Measured with tracemalloc in tests/unit/test_rules.py.
ENTRY_OVERHEAD = 200


def str_bytes(*values: str) -> int:
    """Bytes of these strings as Python holds them (1, 2 or 4 bytes a character, plus the header)."""
    return sum(sys.getsizeof(v) for v in values)


class SizedLRU(Generic[K, V]):
    def __init__(self, max_bytes: int, size_of: Callable[[K, V], int]):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(key, value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
