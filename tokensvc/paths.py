"""The public URL paths, each written once.

``TOKEN_PATH`` is the template the OpenAPI document publishes, the template the request
context matches to send the token POST past the Starlette router (the hot path), and the
source of the access log's ``route`` label. ``EDGES_PATH``, ``PREFLIGHT_TOKEN_PATH`` and
``EDGE_REPORT_PATH`` likewise for their routes (served by the Starlette router).
Matching is done on the raw (still percent-encoded) path: ``/v1/clients/a%2Ftoken`` is not
``/v1/clients/a/token``.
"""

from __future__ import annotations

from typing import Final

CLIENT_PARAM: Final = "{client}"
TOKEN_PATH: Final = "/v1/clients/{client}/token"  # noqa: S105 - a URL path, not a secret
EDGES_PATH: Final = "/v1/clients/{client}/edges"
PREFLIGHT_TOKEN_PATH: Final = "/v1/clients/{client}/preflight-token"  # noqa: S105 - a path
EDGE_REPORT_PATH: Final = "/v1/clients/{client}/edge-report"

_TOKEN_PREFIX, _TOKEN_SUFFIX = TOKEN_PATH.split(CLIENT_PARAM)
_EDGES_PREFIX, _EDGES_SUFFIX = EDGES_PATH.split(CLIENT_PARAM)
_OTHER_ROUTES = (
    ("preflight_token", *PREFLIGHT_TOKEN_PATH.split(CLIENT_PARAM)),
    ("edge_report", *EDGE_REPORT_PATH.split(CLIENT_PARAM)),
)


def _segment(path: str, prefix: str, suffix: str) -> str | None:
    if path.startswith(prefix) and path.endswith(suffix):
        segment = path[len(prefix) : -len(suffix)]
        if segment and "/" not in segment:
            return segment
    return None


def classify(path: str) -> tuple[str, str | None]:
    """``(route label, client id if a token path)``; the label is ``token``, ``edges``,
    ``preflight_token``, ``edge_report`` or ``other`` (bounded, for metrics)."""
    client = _segment(path, _TOKEN_PREFIX, _TOKEN_SUFFIX)
    if client is not None:
        return "token", client
    if _segment(path, _EDGES_PREFIX, _EDGES_SUFFIX) is not None:
        return "edges", None
    for label, prefix, suffix in _OTHER_ROUTES:
        if _segment(path, prefix, suffix) is not None:
            return label, None
    return "other", None


def token_client(path: str) -> str | None:
    """The ``{client}`` segment of a token path, else None."""
    return _segment(path, _TOKEN_PREFIX, _TOKEN_SUFFIX)
