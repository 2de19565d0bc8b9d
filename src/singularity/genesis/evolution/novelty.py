"""Near-duplicate detection: one in-memory matrix of normalised embeddings per island.

The matrix is loaded once from the database and grown on every add (capacity doubles, so
appending is amortised O(1)); a check is one matrix-vector product, not a decode per row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from singularity.genesis.evolution.types import Neighbour

__all__ = ["NoveltyIndex"]


def _normalised(embedding: Sequence[float]) -> np.ndarray | None:
    vector = np.asarray(embedding, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else None


class _Island:
    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((16, dim), dtype=np.float32)
        self.ids: list[str] = []

    def append(self, program_id: str, vector: np.ndarray) -> None:
        n = len(self.ids)
        if n == self.matrix.shape[0]:
            grown = np.empty((2 * n, self.matrix.shape[1]), dtype=np.float32)
            grown[:n] = self.matrix
            self.matrix = grown
        self.matrix[n] = vector
        self.ids.append(program_id)

    def remove(self, program_id: str) -> np.ndarray:
        # Swap with the last row: O(1) apart from finding the row.
        row = self.ids.index(program_id)
        last = len(self.ids) - 1
        vector = self.matrix[row].copy()
        self.matrix[row] = self.matrix[last]
        self.ids[row] = self.ids[last]
        self.ids.pop()
        return vector

    def nearest(self, vector: np.ndarray) -> Neighbour | None:
        if not self.ids:
            return None
        # einsum runs on one thread: `@` would hand this to the BLAS thread pool, whose
        # threads spin against the database server for the CPU (p99 several times p50).
        similarities = np.einsum("ij,j->i", self.matrix[: len(self.ids)], vector)
        best = int(np.argmax(similarities))
        return Neighbour(program_id=self.ids[best], similarity=float(similarities[best]))


class NoveltyIndex:
    """Normalised embeddings by island; embeddings of another dimension are ignored."""

    def __init__(self) -> None:
        self._islands: dict[int, _Island] = {}
        self._dim: int | None = None

    def __len__(self) -> int:
        return sum(len(island.ids) for island in self._islands.values())

    def add(self, island: int, program_id: str, embedding: Sequence[float]) -> None:
        """Remember a program's embedding (a zero or empty one is not remembered)."""
        vector = self._vector(embedding)
        if vector is None:
            return
        if island not in self._islands:
            self._islands[island] = _Island(vector.shape[0])
        self._islands[island].append(program_id, vector)

    def move(self, program_id: str, source: int, target: int) -> None:
        """Follow a program that migrated from island `source` to `target`."""
        held = self._islands.get(source)
        if held is None or program_id not in held.ids:
            return
        vector = held.remove(program_id)
        if target not in self._islands:
            self._islands[target] = _Island(vector.shape[0])
        self._islands[target].append(program_id, vector)

    def nearest(self, island: int, embedding: Sequence[float]) -> Neighbour | None:
        """The most similar program on the island, or None if there is nothing to compare."""
        vector = self._vector(embedding)
        held = self._islands.get(island)
        if vector is None or held is None:
            return None
        return held.nearest(vector)

    def _vector(self, embedding: Sequence[float]) -> np.ndarray | None:
        if len(embedding) == 0:
            return None
        if self._dim is None:
            self._dim = len(embedding)
        if len(embedding) != self._dim:
            return None
        return _normalised(embedding)
