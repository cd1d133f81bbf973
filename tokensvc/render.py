"""The one renderer: results and ``ApiError``s become HTTP responses, for every route.

An ``Answer`` is a finished response (status, encoded body, raw headers) and an ASGI app, so a
Starlette endpoint can return it and the token endpoint can send it without Starlette's
response machinery. ``problem`` is the only place an error becomes RFC 9457
``application/problem+json``; every problem carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from json import encoder as _json_encoder

from starlette.types import Receive, Scope, Send

from tokensvc.errors import PROBLEM_MEDIA_TYPE, ApiError

JSON_TYPE = b"application/json"
PROBLEM_TYPE = PROBLEM_MEDIA_TYPE.encode()
_encode = json.JSONEncoder(separators=(",", ":")).encode


def _default(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# ``JSONEncoder.encode`` builds a C encoder on every call (about half of its cost for a token
# response); this one is built once, with the same output as ``_encode`` for our documents.
# No circular-reference check: documents are built by this service, never from caller data.
_c_encoder = getattr(_json_encoder, "c_make_encoder", None)
_fast_encode = (
    _c_encoder(
        None, _default, _json_encoder.encode_basestring_ascii, None, ":", ",", False, False, True
    )
    if _c_encoder is not None
    else None
)


def encode_document(document: Mapping[str, object]) -> bytes:
    """``document`` as compact JSON bytes (ASCII, ``,``/``:`` separators)."""
    if _fast_encode is None:
        return _encode(document).encode()
    return "".join(_fast_encode(document, 0)).encode()


class Answer:
    """A complete HTTP response; ``await answer(scope, receive, send)`` sends it."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.body = body
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})


def _raw(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def body(
    content: bytes, content_type: bytes, status: int = 200, headers: Mapping[str, str] | None = None
) -> Answer:
    raw = [(b"content-type", content_type), (b"content-length", str(len(content)).encode())]
    if headers:
        raw += _raw(headers)
    return Answer(status, content, raw)


async def send_json(
    send: Send,
    document: Mapping[str, object],
    headers: Mapping[str, str],
    raw_headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send a 200 JSON document at once: ``json_answer`` without the Answer (the hot path).
    ``raw_headers``: fixed headers, already encoded (lower-case names), sent after ``headers``."""
    content = encode_document(document)
    raw = [(b"content-type", JSON_TYPE), (b"content-length", str(len(content)).encode())]
    if headers:
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw += raw_headers
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": content})


def json_answer(
    document: Mapping[str, object], status: int = 200, headers: Mapping[str, str] | None = None
) -> Answer:
    """A JSON document (``application/json``)."""
    return body(_encode(document).encode(), JSON_TYPE, status, headers)


def empty(status: int, headers: Mapping[str, str]) -> Answer:
    """A response without a body (204)."""
    return Answer(status, b"", _raw(headers))


def problem(error: ApiError, headers: Mapping[str, str] | None = None) -> Answer:
    """An RFC 9457 problem document for ``error``; ``headers`` are added to the error's own
    (CORS headers of the client, ``Connection: close``...)."""
    merged = {**error.headers, **(headers or {}), "Cache-Control": "no-store"}
    return body(_encode(error.document()).encode(), PROBLEM_TYPE, error.status, merged)
