"""One campaign's memory vectors in memory, changed in place as memories come and go.

Rows live in a float32 matrix with spare capacity (an eighth more when read, doubling when full), so
adding a turn's entries costs microseconds instead of a rebuild that reads 100,000 vectors back from
SQLite (~470 ms). A removed row is only marked dead; the matrix is compacted when half of it is dead.
Scoring several queries at once goes through torch's matrix product: numpy's was 2-3x slower for a
tall, three-column product on this CPU (and one product per query reads the matrix again each time).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class VectorIndex:
    """A campaign's memory vectors in one matrix, kept in step with the store, scored in one product."""
    def __init__(self, ids: Sequence[int], matrix: np.ndarray, keys: Sequence[int]) -> None:
        count = len(ids)
        capacity = max(64, count + count // 8)
        self.dim = int(matrix.shape[1]) if count else 0
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._keys = np.zeros(capacity, dtype=np.int64)  # turn keys (memory_store.turn_key)
        self._matrix = np.zeros((capacity, self.dim), dtype=np.float32)
        self._alive = np.zeros(capacity, dtype=bool)
        self._ids[:count], self._keys[:count], self._alive[:count] = ids, keys, True
        if count:
            self._matrix[:count] = matrix
        self._size, self._dead = count, 0
        self._row = {int(i): r for r, i in enumerate(ids)}

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, memory_id: int) -> bool:
        return memory_id in self._row

    def add(self, memory_id: int, vector: np.ndarray, key: int) -> bool:
        """Add one row; False when its size does not fit this index (the caller rebuilds)."""
        if self.dim == 0 and not self._row:
            self.dim = int(vector.shape[0])
            self._matrix = np.zeros((len(self._ids), self.dim), dtype=np.float32)
        if vector.shape != (self.dim,):
            return False
        if memory_id in self._row:
            return True
        if self._size == len(self._ids):
            self._grow()
        row = self._size
        self._ids[row], self._keys[row], self._matrix[row], self._alive[row] = memory_id, key, vector, True
        self._row[memory_id] = row
        self._size += 1
        return True

    def remove(self, memory_ids: Sequence[int]) -> None:
        for memory_id in memory_ids:
            row = self._row.pop(int(memory_id), None)
            if row is not None:
                self._alive[row] = False
                self._dead += 1
        if self._dead > 64 and self._dead * 2 > self._size:
            self._compact()

    def vector(self, memory_id: int) -> np.ndarray | None:
        row = self._row.get(memory_id)
        return None if row is None else self._matrix[row]

    def rows(self, memory_ids: Sequence[int]) -> list[int]:
        """The rows of memory ids the index holds (as `scores` numbers them)."""
        return [self._row[i] for i in memory_ids]

    def key(self, memory_id: int) -> int | None:
        row = self._row.get(memory_id)
        return None if row is None else int(self._keys[row])

    def best_scores(self, queries: np.ndarray, skip_from: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, each row's best similarity to any of the queries); dead rows and rows whose turn key
        is at least `skip_from` score -inf. Weighted queries give weighted similarities."""
        import torch

        size = self._size
        product = torch.from_numpy(self._matrix[:size]) @ torch.from_numpy(np.ascontiguousarray(queries)).T
        best = product.amax(dim=1).numpy()
        hidden = self._keys[:size] >= skip_from
        if self._dead:
            hidden |= ~self._alive[:size]
        best[hidden] = -np.inf
        return self._ids[:size], best

    def _grow(self) -> None:
        capacity = len(self._ids) * 2
        self._ids, self._keys = np.resize(self._ids, capacity), np.resize(self._keys, capacity)
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])
        matrix = np.empty((capacity, self.dim), dtype=np.float32)
        matrix[:self._size] = self._matrix[:self._size]
        self._matrix = matrix

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[:self._size])
        self.__init__(self._ids[keep].tolist(), self._matrix[keep], self._keys[keep].tolist())
