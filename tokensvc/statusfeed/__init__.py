"""Automatic edge drains from a Statuspage feed (issue 15), as short leases that fail open.

    config.py    the YAML file named by TOKENSVC_STATUS_FEED_CONFIG -> FeedConfig (or ConfigError)
    feed.py      components.json / summary.json -> FeedPage; one poll through tokensvc.fetch
    decide.py    the pure decision engine: statuses + counters + store state -> Plan
    edgelist.py  how drains and demotions apply to one configured edge list
    runner.py    the poll loop and the LeaseStore protocol the shared store implements
    cli.py       ``tokensvc status-feed components | check``

The feed can only ever *add* short drain leases; every failure (feed unreachable, malformed,
stale, Redis down, poller dead) leads to "renew nothing", so the leases expire and the
configured edge lists come back. See docs/status-feed.md.
"""
