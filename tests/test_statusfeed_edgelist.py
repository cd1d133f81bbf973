"""tokensvc.statusfeed.edgelist: drains and demotions applied to one edge list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tokensvc.edges import EDGES, ROAMING
from tokensvc.statusfeed.edgelist import apply_drains, non_roaming

NAMES = sorted(EDGES)


def test_feed_drains_are_removed_while_the_floor_allows() -> None:
    """Two non-roaming edges, min 1: the first feed-drained edge goes, the list keeps one."""
    assert ["umatilla", ROAMING] == apply_drains(
        ["ashburn", "umatilla", ROAMING], frozenset(), frozenset({"ashburn"}), 1
    )


def test_past_the_floor_feed_drains_are_demoted_after_roaming() -> None:
    """Both edges drained by the feed, min 1: ashburn removed, umatilla moved to the end."""
    assert [ROAMING, "umatilla"] == apply_drains(
        ["ashburn", "umatilla", ROAMING], frozenset(), frozenset({"ashburn", "umatilla"}), 1
    )


def test_operator_drains_are_always_removed() -> None:
    """The floor limits only the feed: an operator drain removes the edge outright."""
    assert [ROAMING] == apply_drains(["ashburn", ROAMING], frozenset({"ashburn"}), frozenset(), 2)


def test_an_emptied_list_falls_back_to_roaming() -> None:
    """As without_drained does: nothing left means [roaming]."""
    assert [ROAMING] == apply_drains(["ashburn"], frozenset({"ashburn"}), frozenset(), 0)


@given(
    st.lists(st.sampled_from(NAMES), min_size=1, max_size=8, unique=True),
    st.frozensets(st.sampled_from(NAMES)),
    st.frozensets(st.sampled_from(NAMES)),
    st.integers(0, 4),
)
def test_the_result_is_a_reordering_within_the_floor(
    edges: list[str], operator: frozenset[str], feed: frozenset[str], k: int
) -> None:
    """Only listed edges come out, each once, no operator-drained one, roaming never removed
    by the feed, and at least min(k, what the operator left) non-roaming edges."""
    out = apply_drains(edges, operator, feed, k)
    left = [e for e in edges if e not in operator]
    assert len(out) == len(set(out))
    assert set(out) <= set(left) | {ROAMING}
    assert (ROAMING in left) <= (ROAMING in out)
    assert non_roaming(out) >= min(k, non_roaming(left))
