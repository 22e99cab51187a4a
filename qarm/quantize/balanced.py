"""Balanced k-means: equal-size clusters (OneRec's balanced k-means tokenizer, reference/anchors.md §2.3).

Glossary: N points, d dim, K clusters, m candidate centroids per point.

Capacities: cluster k holds `N // K + (k < N % K)` points: exactly N / K each when K divides N, otherwise the
sizes differ by at most 1 (the lowest-index clusters take the extra points).

Assignment rule (`balanced_assign`): the unique *stable* matching of points to capacity-limited centroids under
faiss's squared L2 distance (float32, what the plain k-means assignment sees), pairs ranked by (distance, point
index, centroid index): no point and centroid would both rather be matched to each other than keep what they
have (the point is farther from its own centroid, and the centroid has room or holds a point farther than it).
Both sides rank by the same pair order, so the stable matching is unique, and it is what the greedy "walk all
N x K pairs by increasing distance, take a pair when the point is free and the centroid has room" produces
(`reference_balanced_assign`, the slow reference, on the full distance matrix). The fast path gets it by
deferred acceptance (Gale-Shapley, points proposing; the result does not depend on the proposal order): every
point proposes to its nearest centroid, each centroid keeps its `capacity` nearest proposers (one vectorised
round); then the rejected points propose one at a time down their lists, a full centroid (a max-heap of its
members) taking a nearer proposer and releasing its farthest member, who proposes on. Cost: one faiss top-m
search (N x K x d flops), an O(N log N) first round, and O(proposals x log capacity) Python heap steps after it
(about 2 per point on well-spread data); a point that runs past its m candidates gets the rest of its row from
a second faiss search (the waiting points together). Equal to the reference whenever that second search ranks
a point's centroids as the first did: always when m >= K; faiss computes small batches without BLAS, so a
float32 near-tie at a point's m-th candidate could rank differently there.

Balanced k-means (`balanced_kmeans`): seeded faiss k-means centroids (the plain path's), then `iters` rounds of
(balanced assignment, centroid = mean of its members), stopping early when the assignment repeats; the final
labels are the balanced assignment under the final centroids, so centroids and labels agree.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

import numpy as np

from qarm.errors import QarmError
from qarm.quantize import faiss_utils
from qarm.quantize.reference import exact_sq_l2


def balanced_capacities(n: int, k: int) -> np.ndarray:
    """`(K,)` int64 cluster sizes summing to n: n // k each, plus one for the first n % k clusters."""
    if k < 1 or n < k:
        raise QarmError(f"balanced k-means needs 1 <= K <= N, got K={k}, N={n}")
    return n // k + (np.arange(k) < n % k).astype(np.int64)


def ranked_candidates(x: np.ndarray, centroids: np.ndarray, m: int, *,
                      use_gpu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each row's m nearest centroids by (faiss squared L2, centroid index): x: (N, d) float32, centroids:
    (K, d) float32 -> (ids (N, m) int64, distances (N, m) float64)."""
    index = faiss_utils.flat_index(x.shape[1], "l2", use_gpu=use_gpu)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, ids = index.search(np.ascontiguousarray(x, dtype=np.float32), m)
    ids, dist = ids.astype(np.int64), dist.astype(np.float64)
    order = np.lexsort((ids, dist), axis=1)
    return np.take_along_axis(ids, order, 1), np.take_along_axis(dist, order, 1)


def pair_distances(x: np.ndarray, centroids: np.ndarray, *, use_gpu: bool = False) -> np.ndarray:
    """faiss squared L2 of every (point, centroid) pair: x: (N, d), centroids: (K, d) -> (N, K) float64."""
    ids, dist = ranked_candidates(x, centroids, centroids.shape[0], use_gpu=use_gpu)
    out = np.empty(ids.shape, dtype=np.float64)
    np.put_along_axis(out, ids, dist, 1)
    return out


def reference_balanced_assign(dist: np.ndarray, capacities: np.ndarray) -> np.ndarray:
    """Slow reference: greedy over all pairs by (distance, point, centroid). dist: (N, K) float64 (e.g.
    `pair_distances`), capacities: (K,) summing to N -> labels (N,) int64."""
    n, k = dist.shape
    pts, cts = np.divmod(np.arange(n * k), k)
    order = np.lexsort((cts, pts, dist.reshape(-1)))
    labels = np.full(n, -1, dtype=np.int64)
    room = np.asarray(capacities, dtype=np.int64).copy()
    left = n
    for i in order:
        p, c = pts[i], cts[i]
        if labels[p] < 0 and room[c] > 0:
            labels[p], room[c], left = c, room[c] - 1, left - 1
            if left == 0:
                break
    return labels


def balanced_assign(x: np.ndarray, centroids: np.ndarray, capacities: np.ndarray | None = None, *,
                    candidates: int = 16, use_gpu: bool = False) -> np.ndarray:
    """Stable capacity-limited assignment (module docstring). x: (N, d) float32, centroids: (K, d) float32,
    capacities: (K,) int64 summing to N (default: balanced_capacities) -> labels (N,) int64."""
    n, k = x.shape[0], centroids.shape[0]
    cap = balanced_capacities(n, k) if capacities is None else np.asarray(capacities, dtype=np.int64)
    if cap.shape != (k,) or int(cap.sum()) != n or cap.min() < 0:
        raise QarmError(f"capacities must be (K={k},) non-negative and sum to N={n}, got sum {int(cap.sum())}")
    m = min(k, max(1, candidates))
    pref, pdist = ranked_candidates(x, centroids, m, use_gpu=use_gpu)
    rest: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # point -> its ranked row past the m candidates

    # Round 1, vectorised: every point proposes to its nearest centroid, which keeps its `cap` best proposers.
    first_c, first_d = pref[:, 0], pdist[:, 0]
    order = np.lexsort((np.arange(n), first_d, first_c))
    cts = first_c[order]
    start = np.flatnonzero(np.r_[True, cts[1:] != cts[:-1]])
    rank = np.arange(n) - np.repeat(start, np.diff(np.r_[start, n]))
    keep = rank < cap[cts]
    # Then one proposal at a time: a max-heap per centroid of (-distance, -point), heap[0] its worst member.
    heaps: list[list[tuple[float, int]]] = [[] for _ in range(k)]
    for c, dd, p in zip(cts[keep].tolist(), first_d[order[keep]].tolist(), order[keep].tolist()):
        heaps[c].append((-dd, -p))
    for h in heaps:
        heapq.heapify(h)
    ptr = [1] * n
    room = cap.tolist()
    queue = order[~keep].tolist()
    while queue:
        waiting = []  # points past their m candidates: the rest of their rows is searched together
        for p in queue:
            while True:  # p proposes down its list until a centroid keeps it; a released member goes on
                j = ptr[p]
                if j < m:
                    c, dd = int(pref[p, j]), float(pdist[p, j])
                elif p in rest:
                    c, dd = int(rest[p][0][j - m]), float(rest[p][1][j - m])
                else:
                    waiting.append(p)
                    break
                ptr[p] = j + 1
                h = heaps[c]
                if len(h) < room[c]:
                    heapq.heappush(h, (-dd, -p))
                    break
                worst_d, worst_p = h[0]
                if (dd, p) < (-worst_d, -worst_p):
                    heapq.heapreplace(h, (-dd, -p))
                    p = -worst_p
        if waiting:
            rest.update(_rest_of_rows(x, centroids, pref, np.array(waiting), use_gpu))
        queue = waiting
    labels = np.empty(n, dtype=np.int64)
    for c, h in enumerate(heaps):
        labels[[-q for _, q in h]] = c
    return labels


def _rest_of_rows(x: np.ndarray, centroids: np.ndarray, pref: np.ndarray, points: np.ndarray,
                  use_gpu: bool) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """For each of `points: (P,)`, the centroids outside its candidate row `pref[p]: (m,)`, ranked:
    {point: (ids (K - m,), distances (K - m,))}."""
    k, m = centroids.shape[0], pref.shape[1]
    ids, dist = ranked_candidates(x[points], centroids, k, use_gpu=use_gpu)
    outside = np.ones((points.size, k), dtype=bool)
    outside[np.arange(points.size)[:, None], pref[points]] = False
    keep = np.take_along_axis(outside, ids, 1)
    ids, dist = ids[keep].reshape(-1, k - m), dist[keep].reshape(-1, k - m)
    return {int(p): (ids[i], dist[i]) for i, p in enumerate(points)}


@dataclass(frozen=True)
class BalancedKmeansResult:
    """Centroids `(K, d) float32`, balanced labels `(N,) int64`, wall seconds, objective (sum of squared
    distances to the own centroid, as faiss reports its k-means objective), and the balanced rounds run."""

    centroids: np.ndarray
    labels: np.ndarray
    seconds: float
    objective: float
    rounds: int


def cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of each cluster's rows: x: (N, d), labels: (N,) in [0, K), every cluster non-empty -> (K, d) float32."""
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, x.astype(np.float64))
    return (sums / np.bincount(labels, minlength=k)[:, None]).astype(np.float32)


def balanced_kmeans(x: np.ndarray, k: int, *, niter: int, seed: int, iters: int,
                    max_points_per_centroid: int | None, use_gpu: bool) -> BalancedKmeansResult:
    """Balanced k-means of `x: (N, d) float32` (module docstring): faiss k-means init, then up to `iters`
    balanced (assign, update) rounds."""
    t0 = time.perf_counter()
    cap = balanced_capacities(x.shape[0], k)
    centroids = faiss_utils.faiss_kmeans(x, k, niter=niter, seed=seed, max_points_per_centroid=max_points_per_centroid,
                                         use_gpu=use_gpu).centroids
    labels = balanced_assign(x, centroids, cap, use_gpu=use_gpu)
    rounds = 0
    for _ in range(iters):
        new_centroids = cluster_means(x, labels, k)
        new_labels = balanced_assign(x, new_centroids, cap, use_gpu=use_gpu)
        centroids, rounds = new_centroids, rounds + 1
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    objective = float(exact_sq_l2(x, centroids[labels]).sum())
    return BalancedKmeansResult(centroids, labels, time.perf_counter() - t0, objective, rounds)
