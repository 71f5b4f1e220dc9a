"""Vectors and rankings: the arithmetic of semantic search, pure (numpy, imported by the callers
that need it; no I/O).

Vectors are unit length, so a dot product is the cosine. They are stored as float16 (half the
bytes; a cosine moves by less than 0.001) and scored in float32, a block of rows at a time, so
that 100,000 tickets cost about 50 MB at any moment, not the whole matrix in float32 at once.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Any

# Reciprocal rank fusion's constant (Cormack et al. 2009): a document's fused score is the sum over
# rankings of 1 / (K + its rank). 60 is the paper's, and the usual default.
RRF_K = 60
BLOCK = 16384  # rows scored at a time


def pack(vectors: Any) -> list[bytes]:
    import numpy as np

    return [row.tobytes() for row in np.asarray(vectors, dtype="<f2")]


def unpack(blobs: Sequence[bytes], dim: int) -> Any:
    """The (n, dim) float32 matrix of packed vectors (a blob of another width is a zero row)."""
    import numpy as np

    want = dim * 2
    joined = b"".join(b if len(b) == want else bytes(want) for b in blobs)
    return np.frombuffer(joined, dtype="<f2").reshape(len(blobs), dim).astype(np.float32)


def blocks_of(blobs: Sequence[bytes], dim: int) -> Iterator[Any]:
    """Packed vectors as float32 matrices of BLOCK rows, made one at a time (for nearest_many)."""
    for start in range(0, len(blobs), BLOCK):
        yield unpack(blobs[start:start + BLOCK], dim)


def nearest_many(blocks: Iterable[Any], queries: Any, *, k: int, floor: float = -1.0) -> list[list[tuple[int, float]]]:
    """For each row of `queries` (m, dim), the `k` rows most like it among `blocks` (float16 or
    float32 arrays, rows numbered across the blocks in order), with their cosines, best first, none under
    `floor`. One matrix product per block and query batch: the index finds the neighbours of a
    thousand open tickets at once, not one at a time."""
    import numpy as np

    queries = np.asarray(queries, dtype=np.float32)
    found: list[list[tuple[float, int]]] = [[] for _ in range(len(queries))]
    if k <= 0 or not len(queries):
        return [[] for _ in found]
    offset = 0
    for block in blocks:
        for start in range(0, len(block), BLOCK):
            scores = queries @ np.asarray(block[start:start + BLOCK], dtype=np.float32).T  # (m, rows)
            # Only what reaches the floor is ranked: with a floor most of a block is not (one
            # comparison each, where ranking every row costs several).
            rows, columns = np.nonzero(scores >= floor)
            bounds = np.searchsorted(rows, np.arange(len(queries) + 1))
            for q in range(len(queries)):
                cols = columns[bounds[q]:bounds[q + 1]]
                if not len(cols):
                    continue
                values = scores[q, cols]
                if len(cols) > k:
                    top = np.argpartition(-values, k - 1)[:k]
                    cols, values = cols[top], values[top]
                kept = found[q] + list(zip(values.tolist(), (cols + offset + start).tolist()))
                found[q] = heapq.nsmallest(k, kept, key=lambda sp: (-sp[0], sp[1]))
        offset += len(block)
    return [[(p, s) for s, p in rows] for rows in found]


def fuse(rankings: Sequence[Sequence[Hashable]], *, k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Reciprocal rank fusion: each ranking (best first) gives a key 1 / (k + rank); keys sorted by
    the sum, best first, ties in the order they were first seen."""
    scores: dict[Hashable, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda ks: (-ks[1], order[ks[0]]))


def clusters(vectors: Any, groups: Sequence[Hashable], *, threshold: float, min_size: int) -> list[list[int]]:
    """Rows alike in meaning (cosine to their cluster's centroid >= `threshold`) and in group (the
    same CI), in one pass in row order: each row joins the nearest centroid of its group, or starts
    a cluster. Returns the clusters of at least `min_size` rows, as row positions. Linear in rows
    times clusters per group; no n x n matrix."""
    import numpy as np

    by_group: dict[Hashable, list[list[int]]] = {}
    sums: dict[Hashable, list[Any]] = {}
    for row, group in enumerate(groups):
        vector = vectors[row]
        if not np.any(vector):
            continue  # no words: alike nothing
        found, centroids = by_group.setdefault(group, []), sums.setdefault(group, [])
        if centroids:
            matrix = np.stack(centroids)
            cosines = matrix @ vector / np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
            best = int(np.argmax(cosines))
            if cosines[best] >= threshold:
                found[best].append(row)
                centroids[best] = centroids[best] + vector
                continue
        found.append([row])
        centroids.append(vector.copy())
    return [members for group in by_group.values() for members in group if len(members) >= min_size]


def medoid(vectors: Any, members: Sequence[int]) -> int:
    """The member most like the others (the sum of its cosines to them is the largest)."""
    import numpy as np

    block = vectors[list(members)]
    return members[int(np.argmax((block @ block.sum(axis=0))))]
