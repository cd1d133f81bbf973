"""How operator drains and feed drains apply to one configured edge list.

Operator drains remove an edge (as ``edges.without_drained`` does today). Feed drains remove
an edge too, unless removing it would leave fewer than ``min_edges_kept`` non-roaming edges in
the list; then the edge is **demoted**: moved to the very end of the list (after ``roaming``),
keeping the relative order of demoted edges. A demoted edge is still handed out, but the SDK
tries every healthy edge and roaming first. Feed drains are considered in list order, so the
earliest ones are removed and the later ones demoted.

Guarantee (property-tested): the non-roaming count of the result is at least
``min(min_edges_kept, non-roaming count after operator drains alone)``; the feed never makes a
list shorter than that, and never removes ``roaming``. An empty result falls back to
``[roaming]``, as ``without_drained`` does.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokensvc.edges import ROAMING


def non_roaming(edges: Iterable[str]) -> int:
    return sum(1 for e in edges if e != ROAMING)


def apply_drains(
    edges: Iterable[str],
    operator_drained: frozenset[str],
    feed_drained: frozenset[str],
    min_edges_kept: int,
) -> list[str]:
    """The list a client is handed: operator drains removed, feed drains removed or demoted."""
    after_operator = [e for e in edges if e not in operator_drained]
    budget = non_roaming(after_operator) - min_edges_kept  # removals the floor allows
    kept: list[str] = []
    demoted: list[str] = []
    for edge in after_operator:
        if edge in feed_drained and edge != ROAMING:
            if budget > 0:
                budget -= 1
            else:
                demoted.append(edge)
            continue
        kept.append(edge)
    return (kept + demoted) or [ROAMING]


def demoted_edges(
    edges: Iterable[str],
    operator_drained: frozenset[str],
    feed_drained: frozenset[str],
    min_edges_kept: int,
) -> list[str]:
    """The feed-drained edges that :func:`apply_drains` keeps (at the end) for this list."""
    listed = list(edges)
    result = apply_drains(listed, operator_drained, feed_drained, min_edges_kept)
    return [e for e in result if e in feed_drained and e != ROAMING]
