"""The one error hierarchy of tokensvc.

    TokensvcError                      base of everything this package raises on purpose
    ├── ConfigError                    a client file or setting is invalid (carries every Problem)
    ├── StoreError                     shared state (Redis) failed; callers fail open or closed
    ├── ClientGone                     the caller disconnected mid-request: nothing to answer
    └── ApiError                       rendered as RFC 9457 problem+json, with a stable ``code``
        ├── InvalidRequest             400 invalid_request
        ├── Unauthenticated            401 unauthenticated (with WWW-Authenticate)
        ├── Forbidden                  403 forbidden
        ├── UnknownClient              404 unknown_client
        ├── NotFound                   404 not_found
        ├── NoPreflightApp             404 no_preflight_app (the client has no preflight section)
        ├── MethodNotAllowed           405 method_not_allowed
        ├── RequestTimeout             408 request_timeout
        ├── PayloadTooLarge            413 payload_too_large
        ├── UnsupportedMediaType       415 unsupported_media_type
        ├── RateLimited                429 rate_limited (with Retry-After)
        ├── HeadersTooLarge            431 headers_too_large
        ├── InternalError              500 internal (what an unexpected exception becomes)
        ├── NotReady                   503 not_ready
        └── HttpVersionNotSupported    505 http_version_not_supported (HTTP/2 on cleartext)

The ``code`` strings are part of the public API: clients switch on them, never on ``detail``.
"""

from __future__ import annotations

from dataclasses import dataclass

PROBLEM_BASE = "https://tokensvc.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


class TokensvcError(Exception):
    """Base of every error tokensvc raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a configuration: where (file, field) and what."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.field}" if self.field else self.source
        return f"{where}: {self.message}"


class ConfigError(TokensvcError):
    """A configuration is invalid. Holds every problem found, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class StoreError(TokensvcError):
    """Shared state could not be read or written (Redis down, slow, read-only...)."""


class ClientGone(TokensvcError):
    """The client disconnected before its request body arrived: nothing to answer."""


class ApiError(TokensvcError):
    """An error answered to an HTTP caller as ``application/problem+json``."""

    status: int = 400
    code: str = "invalid_request"
    title: str = "Invalid request"

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)

    def document(self) -> dict[str, object]:
        """The RFC 9457 problem document."""
        return {
            "type": f"{PROBLEM_BASE}{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }


class InvalidRequest(ApiError):
    status, code, title = 400, "invalid_request", "Invalid request"


class Unauthenticated(ApiError):
    status, code, title = 401, "unauthenticated", "Authentication required"

    def __init__(self, detail: str = "", *, reason: str = "invalid_credential") -> None:
        #: a bounded label for metrics and logs (never the credential itself)
        self.reason = reason
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="tokensvc"'})


class Forbidden(ApiError):
    status, code, title = 403, "forbidden", "Forbidden"


class UnknownClient(ApiError):
    status, code, title = 404, "unknown_client", "Unknown client"


class NotFound(ApiError):
    status, code, title = 404, "not_found", "Not found"


class NoPreflightApp(ApiError):
    status, code, title = 404, "no_preflight_app", "No preflight app"


class MethodNotAllowed(ApiError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class RequestTimeout(ApiError):
    status, code, title = 408, "request_timeout", "Request body not received in time"


class PayloadTooLarge(ApiError):
    status, code, title = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(ApiError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: int = 1, scope: str = "identity") -> None:
        self.retry_after = max(1, int(retry_after))
        #: which limit refused: "ip" or "identity" (a metric label)
        self.scope = scope
        super().__init__(detail, headers={"Retry-After": str(self.retry_after)})


class HeadersTooLarge(ApiError):
    status, code, title = 431, "headers_too_large", "Request headers too large"


class NotReady(ApiError):
    status, code, title = 503, "not_ready", "Service not ready"


class InternalError(ApiError):
    """Never raised on purpose: what an unexpected exception is rendered as."""

    status, code, title = 500, "internal", "Internal error"


class HttpVersionNotSupported(ApiError):
    """HTTP/2 (prior knowledge or an h2c upgrade) on the cleartext port, unless allowed."""

    status, code, title = 505, "http_version_not_supported", "HTTP version not supported"


def api_errors() -> list[type[ApiError]]:
    """Every concrete ApiError class, in the order of the tree above (the OpenAPI enum)."""
    found: list[type[ApiError]] = []
    pending = list(ApiError.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found
