"""Shared operational state: edge drains, identity blocks, rate-limit counters, JWKS cache.

Modules, from the bottom of the import graph up (each imports only those above it)::

    base        value types (Drain, Block, Snapshot, Delta) and the Store protocol
    urls        Redis URL parsing: Endpoint (no secrets in its repr), Timeouts
    entries     a drain or block as stored (Entry), its field encoding, and the merge rule
                (last writer wins) with the Lua scripts that implement it inside Redis
    breaker     CircuitBreaker: closed / open / half-open
    memory      MemoryStore: in-process Store (the embedded default)
    sentinel    EpochSentinel: primary discovery that believes the newest Sentinel config
    connection  RedisConnection: clients, timeouts, every driver error -> StoreError,
                READONLY reconnect, primary tracking (shared by the two classes below)
    redis       RedisStore: the data-plane Store on Redis / Sentinel / a read replica
    admin       RegionAdmin: the operator's API on one region's Redis (apply, prune, list)
    shared      SharedState: the request path's view, and the one fail-open policy
    factory     store_from_settings / shared_state_from_settings: the backend by URL scheme

This package's ``__init__`` imports nothing, so importing one module never imports another.
"""
