"""The public URL paths, each written once.

``TOKEN_PATH`` is the template the OpenAPI document publishes, the template the request
context matches to send the token POST past the Starlette router (the hot path), and the
source of the access log's ``route`` label. ``EDGES_PATH`` likewise for the edges route.
Matching is done on the raw (still percent-encoded) path: ``/v1/clients/a%2Ftoken`` is not
``/v1/clients/a/token``.
"""

from __future__ import annotations

from typing import Final

CLIENT_PARAM: Final = "{client}"
TOKEN_PATH: Final = "/v1/clients/{client}/token"  # noqa: S105 - a URL path, not a secret
EDGES_PATH: Final = "/v1/clients/{client}/edges"

_TOKEN_PREFIX, _TOKEN_SUFFIX = TOKEN_PATH.split(CLIENT_PARAM)
_EDGES_PREFIX, _EDGES_SUFFIX = EDGES_PATH.split(CLIENT_PARAM)


def _segment(path: str, prefix: str, suffix: str) -> str | None:
    if path.startswith(prefix) and path.endswith(suffix):
        segment = path[len(prefix) : -len(suffix)]
        if segment and "/" not in segment:
            return segment
    return None


def classify(path: str) -> tuple[str, str | None]:
    """``(route label, client id if a token path)``; the label is ``token``, ``edges`` or
    ``other`` (bounded, for metrics)."""
    client = _segment(path, _TOKEN_PREFIX, _TOKEN_SUFFIX)
    if client is not None:
        return "token", client
    if _segment(path, _EDGES_PREFIX, _EDGES_SUFFIX) is not None:
        return "edges", None
    return "other", None


def token_client(path: str) -> str | None:
    """The ``{client}`` segment of a token path, else None."""
    return _segment(path, _TOKEN_PREFIX, _TOKEN_SUFFIX)
