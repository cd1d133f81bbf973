"""The drill's status feed: a fake Statuspage on loopback that every region's pods poll.

``write_config`` writes the one file every process gets as ``TOKENSVC_STATUS_FEED_CONFIG``
(as the chart would mount it): a 2 s poll, ``confirm_polls`` 2, ``clear_polls`` 2, and the
fake's edge components mapped to edges of the drill's client lists. Each region elects its own
poller through its own Redis lock, so each region drains on its own.

The step marks ``COMPONENT`` ``major_outage`` and expects ``EDGE`` to leave every region's
lists within ``BOUND_S``: ``confirm_polls`` jittered polls (the first may come a full interval
after the change) plus the drill's 2 s propagation target; the same bound for its return after
``clear_polls`` clean polls.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from drill import callers
from tokensvc.statusfeed.config import JITTER
from tokensvc.statusfeed.edgelist import apply_drains

POLL_S = 2.0
CONFIRM_POLLS = 2
CLEAR_POLLS = 2
TIMEOUT_S = 1.0
LEASE_S = 10.0  # > one jittered poll + its timeout (config rule); renewed every poll
MIN_EDGES_KEPT = 1
PROPAGATION_S = 2.0  # the drill's drain target: store -> every process of every region
#: Components of the fake page (drill/fake_statuspage.py LAYOUT) -> edges the drill's lists use.
COMPONENTS = {
    "ashburn00001": ["ashburn"],
    "dublin000001": ["dublin"],
    "frankfurt001": ["frankfurt"],
    "tokyo0000001": ["tokyo"],
    "sydney000001": ["sydney"],
}
COMPONENT = "dublin000001"
EDGE = "dublin"  # in the lists of US, CA, BR, IE, DE and GB; first in IE's and GB's
PROBE_COUNTRY = "IE"
REASON = f"statusfeed:{COMPONENT}:major_outage"
BOUND_S = round(CONFIRM_POLLS * POLL_S * (1 + JITTER) + PROPAGATION_S, 2)
CLEAR_BOUND_S = round(CLEAR_POLLS * POLL_S * (1 + JITTER) + PROPAGATION_S, 2)


def write_config(path: Path, url: str) -> Path:
    doc = {
        "url": url,
        "poll_interval_seconds": POLL_S,
        "timeout_seconds": TIMEOUT_S,
        "max_stale_seconds": 60,
        "confirm_polls": CONFIRM_POLLS,
        "clear_polls": CLEAR_POLLS,
        "lease_seconds": LEASE_S,
        "min_edges_kept": MIN_EDGES_KEPT,
        "components": COMPONENTS,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def expected_edges(country: str) -> list[str]:
    """The list a caller from ``country`` must get while the feed drains ``EDGE``."""
    listed = callers.POLICY.for_country(country)
    return apply_drains(listed, frozenset(), frozenset({EDGE}), MIN_EDGES_KEPT)
