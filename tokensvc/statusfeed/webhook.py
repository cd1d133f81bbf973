"""The Statuspage webhook receiver on the admin port: a push only pokes the poller.

``POST /statusfeed/webhook/<secret>`` (Statuspage cannot send custom headers, so the secret
is a path segment), or ``POST /statusfeed/webhook`` with the secret in the
``X-Tokensvc-Webhook-Secret`` header. The secret is ``TOKENSVC_STATUS_FEED_WEBHOOK_SECRET``
(or ``_FILE``), compared in constant time. A wrong or missing secret, or no secret configured,
is a 404 (the route does not exist for that caller). A match answers 202 and calls
``PodFeed.poke()``: the body is not read at all, because an unsigned push must never drain by
itself; polling stays the source of truth. The access log shows the path with the secret
replaced by ``<SECRET>`` (``WEBHOOK_PREFIX``).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from tokensvc.errors import NotFound
from tokensvc.render import Answer, json_answer

WEBHOOK_PATH = "/statusfeed/webhook"
WEBHOOK_PREFIX = WEBHOOK_PATH + "/"
HEADER = "x-tokensvc-webhook-secret"


def is_webhook_path(path: str) -> bool:
    return path == WEBHOOK_PATH or (
        path.startswith(WEBHOOK_PREFIX) and "/" not in path[len(WEBHOOK_PREFIX) :]
    )


def masked(path: str) -> str:
    """The path as logs may show it."""
    return WEBHOOK_PREFIX + "<SECRET>" if path.startswith(WEBHOOK_PREFIX) else path


async def webhook(request: Request) -> Answer:
    service = request.app.state.service
    feed = request.app.state.status_feed
    expected = service.settings.status_feed_webhook_secret
    given = request.path_params.get("secret") or request.headers.get(HEADER, "")
    if feed is None or expected is None or not given:
        raise NotFound()
    if not hmac.compare_digest(given.encode(), expected.reveal().encode()):
        raise NotFound()
    feed.poke()
    return json_answer({"status": "accepted", "effect": "poll soon"}, status=202)
