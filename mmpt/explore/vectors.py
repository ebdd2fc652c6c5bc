"""The explorer's points and their unit vectors, held as zero-copy views of the Arrow columns Lance returns.

Point p is one (row, modality) embedding; points are grouped by modality (one contiguous block each) and
ordered by row within a block. Each modality's vectors stay the [rows, D] float32 buffer of its Arrow
column (rows without that embedding included, never looked at): copying 600 MB of fresh memory cost
3-6 s on the 2-core VM, more than reading it from Lance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mmpt.errors import DataError

if TYPE_CHECKING:
    import torch

EXACT_BELOW = 20_000  # blocks this small are scored exactly in float32; larger ones get a float16 first pass


def column_view(column: pa.ChunkedArray) -> np.ndarray:
    """A FixedSizeList<float32, D> column as float32 [rows, D]: zero copy for one chunk (null rows hold junk)."""
    dim = column.type.list_size
    parts = []
    for chunk in column.chunks:
        if not len(chunk):
            continue
        values = chunk.values  # the child array, ignoring the chunk's offset and validity
        if values.type != pa.float32():
            values = values.cast(pa.float32())
        start = values.offset + chunk.offset * dim
        data = values.buffers()[1]
        parts.append(
            np.frombuffer(data, np.float32, count=len(chunk) * dim, offset=start * 4).reshape(-1, dim)
        )
    if not parts:
        return np.zeros((0, dim), np.float32)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class PointVectors:
    """Points (row, modality) and their unit vectors, with exact-up-to-float16 nearest-neighbour search."""

    def __init__(self, columns: dict[str, pa.ChunkedArray], n_rows: int) -> None:
        self.modalities = tuple(columns)
        self.mats: dict[str, np.ndarray] = {}  # modality -> [n_rows, D] unit vectors (by row position)
        self.rows: dict[str, np.ndarray] = {}  # modality -> row positions holding it (ascending)
        self.blocks: dict[str, tuple[int, int]] = {}  # modality -> its [start, stop) point range
        self.row_point: dict[str, np.ndarray] = {}  # modality -> point index per row (-1: none)
        start = 0
        for m, column in columns.items():
            valid = (
                column.is_valid().to_numpy(zero_copy_only=False) if column.num_chunks else np.zeros(0, bool)
            )
            rows = np.flatnonzero(valid)
            mat = column_view(column)
            squares = np.einsum("ij,ij->i", mat, mat)[rows]  # no [N, D] temporary, unlike np.linalg.norm
            if len(rows) and np.abs(squares - 1.0).max() > 1e-4:  # not written unit-length: normalise a copy
                mat = mat / np.sqrt(np.maximum(np.einsum("ij,ij->i", mat, mat), 1e-24))[:, None]
            self.mats[m], self.rows[m] = mat, rows
            self.blocks[m] = (start, start + len(rows))
            lookup = np.full(n_rows, -1, np.int64)
            lookup[rows] = np.arange(len(rows)) + start
            self.row_point[m] = lookup
            start += len(rows)
        dims = {mat.shape[1] for mat in self.mats.values()}
        if len(dims) != 1:
            raise DataError(f"the embedding columns differ in dimension: {sorted(dims)}")
        self.dim = dims.pop()
        self.point_row = np.concatenate(list(self.rows.values())).astype(np.int64)
        sizes = [len(r) for r in self.rows.values()]
        self.point_modality = np.repeat(np.arange(len(columns), dtype=np.int8), sizes)
        self._half: dict[str, torch.Tensor] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.point_row)

    def points_of(self, modality: str, rows: np.ndarray) -> np.ndarray:
        """Point index of each row position in `modality` (-1 for rows without it or negative rows)."""
        rows = np.asarray(rows, np.int64)
        return np.where(rows >= 0, self.row_point[modality][np.maximum(rows, 0)], -1)

    def parts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(matrix, rows) per modality, in point order: the points are matrix[rows]."""
        return [(self.mats[m], self.rows[m]) for m in self.modalities]

    def vector(self, point: int) -> np.ndarray:
        """The unit vector of one point."""
        m = self.modalities[self.point_modality[point]]
        return self.mats[m][self.point_row[point]]

    def stacked(self) -> np.ndarray:
        """All points' vectors as one float32 [points, D] copy (for UMAP / t-SNE)."""
        return np.concatenate([mat[rows] for mat, rows in self.parts()])

    def _half_matrix(self, modality: str) -> torch.Tensor:
        """The points of a modality as a compact torch float16 [points, D] tensor (half the bytes to stream
        per query), built once, in chunks so that no float32 copy of the whole block is made."""
        import torch

        with self._lock:
            if modality not in self._half:
                mat, rows = self.mats[modality], self.rows[modality]
                half = torch.empty((len(rows), self.dim), dtype=torch.float16)
                for lo in range(0, len(rows), 8192):
                    half[lo : lo + 8192] = torch.from_numpy(mat[rows[lo : lo + 8192]])
                self._half[modality] = half
            return self._half[modality]

    def nearest(
        self, query: np.ndarray, targets: Sequence[str], k: int, exclude: int = -1
    ) -> tuple[np.ndarray, np.ndarray]:
        """(points, cosine scores) of the k best points of the target modalities, best first.

        A float32 scan of 100k x 512 streams 200 MB (15-35 ms on 2 cores), so blocks of EXACT_BELOW points
        or more get a float16 pass (half the bytes) that picks max(4k, k + 64) candidates, re-scored in
        float32: exact unless float16 rounding (~1e-3) pushes a true top-k point out of that pool. Small
        products use einsum: on a loaded box, waking OpenBLAS's second thread cost 10-25 ms per call.
        """
        if k < 1:
            raise DataError(f"k must be at least 1, got {k}")
        q = np.asarray(query, np.float32)
        q = q / max(float(np.linalg.norm(q)), 1e-12)
        found_points, found_scores = [], []
        for m in targets:
            start, stop = self.blocks[m]
            rows = self.rows[m]
            if stop - start < EXACT_BELOW:
                points = np.arange(start, stop)
                scores = np.einsum("pd,d->p", self.mats[m], q)[rows]
            else:
                import torch

                # one parallel op per query: under load every torch op that wakes its thread pool costs
                # ~10 ms, so the rest (topk, re-scoring) stays serial
                rough = torch.mv(self._half_matrix(m), torch.from_numpy(q).half())
                pool = torch.topk(rough, min(stop - start, max(4 * k, k + 64)), sorted=False).indices.numpy()
                points = pool + start
                scores = np.einsum("pd,d->p", self.mats[m][rows[pool]], q)  # exact float32 re-scoring
            found_points.append(points)
            found_scores.append(scores)
        points = np.concatenate(found_points) if found_points else np.zeros(0, np.int64)
        scores = np.concatenate(found_scores) if found_scores else np.zeros(0, np.float32)
        keep = points != exclude
        points, scores = points[keep], scores[keep]
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return points[top], scores[top].astype(np.float32)
