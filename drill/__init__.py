"""The three-region drill: real Sentinel-managed Valkey, real ``tokensvc serve`` processes, a real
HAProxy in front, the real ``js/`` helper as clients, scripted faults, a report with a timeline.

    procs.py     free ports, bounded waits, child processes stopped by their own PID
    valkey.py    one region's Valkey: a primary, a replica and three sentinels
    regions.py   the region list (from the chart overlays) and one region's deployment
    haproxy.py   the HAProxy config written from the region list, and its process
    callers.py   the non-dev client file, caller JWTs, the app population per country
    load.mjs     simulated app start-ups under Node (js/src createTokenProvider)
    browser.mjs  headless Chromium pages with @twilio/voice-sdk bound through bindDevice
    topology.py  everything above started together, stopped together
    scenario.py  the fault steps and the scripted run
    report.py    per-step figures, targets, the Markdown report and the PNG timeline
    demo.py      the live status page (``make demo``)

Run: ``python -m drill run`` (full), ``python -m drill run --short``, ``python -m drill demo``.
The drill is not part of the runtime package; it only drives it from outside.
"""
