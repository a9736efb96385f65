"""Maximum flow on the layered attention graph (Edmonds-Karp: shortest augmenting paths by BFS).

The graph of Abnar & Zuidema (2020): node ``(l, i)`` is token ``i`` after layer ``l`` (``l = 0`` the
input); layer ``l``'s residual-augmented attention ``Â_l[i, j]`` is the capacity of the edge
``(l, i) → (l-1, j)``. The residual graph is kept as two dense arrays per layer: what is left of each
edge's capacity, and the flow on it (the capacity of the reverse edge). Small graphs only: this is the
exact combinatorial definition, run on the CPU in float64.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import torch

_EPS = 1e-12


def max_flow_layered(caps: Sequence[torch.Tensor], source: int, sink: int) -> float:
    """Max flow from node ``(L, source)`` to ``(0, sink)``; ``caps[l-1]`` is layer ``l``'s ``[T, T]``."""
    left = [np.array(c.detach().cpu().double().numpy(), copy=True) for c in caps]  # (l+1,i)->(l,j)
    flow = [np.zeros_like(c) for c in left]  # reverse edges (l,j)->(l+1,i)
    n_layers = len(left)
    total = 0.0
    while True:
        # BFS from the source over edges with residual capacity; parent[(l, i)] = (l', i')
        start = (n_layers, source)
        goal = (0, sink)
        parent: dict[tuple[int, int], tuple[int, int]] = {start: start}
        queue = deque([start])
        while queue and goal not in parent:
            lay, i = queue.popleft()
            if lay > 0:  # down along the edges of layer l
                for j in np.nonzero(left[lay - 1][i] > _EPS)[0].tolist():
                    if (lay - 1, j) not in parent:
                        parent[(lay - 1, j)] = (lay, i)
                        queue.append((lay - 1, j))
            if lay < n_layers:  # up along flow already sent (cancelling it)
                for k in np.nonzero(flow[lay][:, i] > _EPS)[0].tolist():
                    if (lay + 1, k) not in parent:
                        parent[(lay + 1, k)] = (lay, i)
                        queue.append((lay + 1, k))
        if goal not in parent:
            return total
        path = []
        node = goal
        while node != start:
            prev = parent[node]
            path.append((prev, node))
            node = prev
        bottleneck = min(
            left[a[0] - 1][a[1], b[1]] if b[0] == a[0] - 1 else flow[a[0]][b[1], a[1]] for a, b in path
        )
        for a, b in path:
            if b[0] == a[0] - 1:  # forward edge (a) -> (b) of layer a[0]
                left[a[0] - 1][a[1], b[1]] -= bottleneck
                flow[a[0] - 1][a[1], b[1]] += bottleneck
            else:  # reverse edge: cancel flow on (b) -> (a)
                flow[a[0]][b[1], a[1]] -= bottleneck
                left[a[0]][b[1], a[1]] += bottleneck
        total += bottleneck
