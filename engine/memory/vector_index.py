"""One campaign's memory vectors in memory, changed in place as memories come and go.

Rows live in a float32 matrix with spare capacity (an eighth more when read, doubling when full), so
adding a turn's entries costs microseconds instead of a rebuild that reads 100,000 vectors back from
SQLite (~470 ms). A removed row is only marked dead; the matrix is compacted when half of it is dead.

Scoring every row on float32 reads 154 MB a search at 100,000 x 384. Beside the float32 rows the index
keeps a sketch of each: from FIT_ROWS rows on, the row projected on the SKETCH_DIMS directions that keep
most of the campaign's dot products (fitted on the rows, again each time the matrix doubles), as int8
(each row scaled to +-127, its scale kept): a twelfth of the bytes, a third of the int8 work. Every
row is scored on its sketch with torch's int8 matrix product, and the best EXACT_ROWS again on float32,
so what recall picks is what the float32 search picks (top-5 agreement 1.0 in bench/retrieval.py).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


BLOCK_ROWS = 8192  # int8 rows scored at a time: their int32 sums (256 KB) stay in the cache until reduced
FIT_ROWS = 4096  # from this many rows on, the sketch is projected (fewer: every dimension, it costs nothing)
SKETCH_DIMS = 128  # directions a projected sketch keeps (a third of MiniLM's 384: ~87% of its variance)
EXACT_ROWS = 512  # rows scored again on float32 after the sketch (what the sketch may misorder lies within)
FIT_SAMPLE = 16384  # rows the directions are fitted on


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
        self._sketch_all()
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
            self._sketch_all()
        if vector.shape != (self.dim,):
            return False
        if memory_id in self._row:
            return True
        if self._size == len(self._ids):
            self._grow()
        row = self._size
        self._ids[row], self._keys[row], self._matrix[row], self._alive[row] = memory_id, key, vector, True
        small, scale = quantised(self._project(self._matrix[row:row + 1]))
        self._small[row], self._scale[row] = small[0], scale[0]
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

    def best(self, queries: np.ndarray, skip_from: int, count: int,
             exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the `count` rows most alike to any of the queries, best first, with that similarity
        on float32 (weighted queries give weighted similarities). Dead rows and rows whose turn key is at
        least `skip_from` are left out. Every row is scored on its int8 sketch and the best of those (EXACT_ROWS,
        or `count` if more) again on float32; a small index, or `exact` (the reference the sketch is held
        to), scores every row on float32."""
        size = self._size
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        hidden = self._hidden(size, skip_from)
        rescored = max(count, EXACT_ROWS)
        if exact or size <= rescored or _INT8 is None:
            rows, scores = np.arange(size), self._exact(slice(0, size), queries)
            scores[hidden] = -np.inf
        else:
            approx = self._approximate(size, queries)
            approx[hidden] = -np.inf
            rows = np.argpartition(approx, size - rescored)[size - rescored:]
            scores = self._exact(rows, queries)
            scores[hidden[rows]] = -np.inf  # fewer visible rows than `count`: hidden ones filled the rest
        if len(rows) > count:
            keep = np.argpartition(-scores, count - 1)[:count]
            rows, scores = rows[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        order = order[scores[order] > -np.inf]
        return self._ids[rows[order]], scores[order]

    def exact_scores(self, rows: Sequence[int], queries: np.ndarray) -> np.ndarray:
        """The rows' best similarity to the queries, on float32 (for rows found by other means)."""
        return self._exact(np.asarray(rows, dtype=np.int64), np.ascontiguousarray(queries, dtype=np.float32))

    def _hidden(self, size: int, skip_from: int) -> np.ndarray:
        hidden = self._keys[:size] >= skip_from
        if self._dead:
            hidden |= ~self._alive[:size]
        return hidden

    def _exact(self, rows, queries: np.ndarray) -> np.ndarray:
        import torch
        product = torch.from_numpy(np.ascontiguousarray(self._matrix[rows])) @ torch.from_numpy(queries).T
        return product.amax(dim=1).numpy() if product.shape[0] else np.zeros(0, dtype=np.float32)

    def _approximate(self, size: int, queries: np.ndarray) -> np.ndarray:
        """Every row's best similarity, up to one factor, from the sketches and the queries sketched alike
        (torch's int8 product, int32 sums). The queries share one scale, so a row's best is taken on the
        int32 sums of one block of rows while they are in the cache, and only that column becomes floats."""
        import torch
        projected = self._project(queries)
        small, _ = quantised(projected.reshape(1, -1))
        columns = -(-len(queries) // 8) * 8  # the int8 product wants whole groups of 8 columns
        padded = np.empty((projected.shape[1], columns), dtype=np.int8)
        padded[:, :len(queries)] = small.reshape(projected.shape).T
        padded[:, len(queries):] = padded[:, :1]  # copies of the first query: the best of a row is unchanged
        rows, product = torch.from_numpy(self._small[:size]), torch.from_numpy(padded)
        best = torch.empty(size, dtype=torch.int32)
        for start in range(0, size, BLOCK_ROWS):
            torch.amax(_INT8(rows[start:start + BLOCK_ROWS], product), dim=1, out=best[start:start + BLOCK_ROWS])
        return best.numpy() * self._scale[:size]  # to rank them: the queries' one scale changes no order

    def _grow(self) -> None:
        capacity = len(self._ids) * 2
        self._ids, self._keys = np.resize(self._ids, capacity), np.resize(self._keys, capacity)
        self._alive = np.concatenate([self._alive, np.zeros(capacity - len(self._alive), dtype=bool)])
        matrix = np.empty((capacity, self.dim), dtype=np.float32)
        matrix[:self._size] = self._matrix[:self._size]
        self._matrix = matrix
        self._sketch_all()  # room for the new rows, and directions fitted on what the campaign holds now

    def _sketch_all(self) -> None:
        """(Re)fit the sketch's directions on the rows (from FIT_ROWS on) and sketch every row."""
        size = self._size
        self._basis = principal_directions(self._matrix[:size], SKETCH_DIMS) \
            if size >= FIT_ROWS and self.dim > SKETCH_DIMS else None
        width = self.dim if self._basis is None else SKETCH_DIMS
        self._small = np.zeros((len(self._ids), width), dtype=np.int8)  # the sketches
        self._scale = np.zeros(len(self._ids), dtype=np.float32)  # each times this is the projected row
        for start in range(0, size, FIT_SAMPLE):  # a block at a time: no full float copy of the projection
            end = min(size, start + FIT_SAMPLE)
            self._small[start:end], self._scale[start:end] = quantised(self._project(self._matrix[start:end]))

    def _project(self, rows: np.ndarray) -> np.ndarray:
        return rows if self._basis is None else rows @ self._basis

    def _compact(self) -> None:
        keep = np.flatnonzero(self._alive[:self._size])
        self.__init__(self._ids[keep].tolist(), self._matrix[keep], self._keys[keep].tolist())


def principal_directions(rows: np.ndarray, width: int) -> np.ndarray:
    """The `width` orthonormal directions that keep most of the rows' dot products (the top eigenvectors of
    a sample's uncentred Gram matrix: dot products with queries, not the spread around a mean, are kept)."""
    sample = rows[::max(1, len(rows) // FIT_SAMPLE)].astype(np.float64)
    _, vectors = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    return np.ascontiguousarray(vectors[:, ::-1][:, :width], dtype=np.float32)


def quantised(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as int8 (each scaled so its largest value is +-127) and the scale that brings each back."""
    peak = np.abs(rows).max(axis=1)
    peak[peak == 0] = 1.0
    small = np.rint(rows * (127.0 / peak)[:, None]).astype(np.int8)
    return small, (peak / 127.0).astype(np.float32)


def _int8_product():
    """torch's int8 x int8 -> int32 matrix product where this build has it on the CPU, else None (float32 only)."""
    try:
        import torch
        probe = torch.ones((32, 64), dtype=torch.int8)
        if int(torch._int_mm(probe, torch.ones((64, 8), dtype=torch.int8))[0, 0]) != 64:
            return None
        return torch._int_mm
    except Exception:  # noqa: BLE001 - an older torch or a build without it: the float32 path
        return None


_INT8 = _int8_product()
