"""Statuspage documents: ``components.json`` or ``summary.json`` -> :class:`FeedPage`.

Both documents carry ``page`` and ``components``; ``summary.json`` adds ``incidents``,
``scheduled_maintenances`` and ``status``, which are ignored here (component status is the only
input the decision engine uses). A document is accepted only whole: anything that does not match
:data:`SCHEMA` (a missing field, an unknown status, a child id that is not in the document) is a
:class:`FeedError` ``malformed``, never a partial reading, so a broken feed renews nothing.

Groups: a component with ``group: true`` lists its children's ids in ``components``. A mapped
group's *effective* status is the worst of its own status and its children's, so mapping a
group id stands for "any of its parts". A child's status is its own.

Staleness is never judged from ``page.updated_at`` (a quiet page's is days old); the runner
counts time since the last good poll. The one use of ``updated_at`` is to refuse a document
*older than one already seen* (a lagging cache or replica): see :func:`parse_page`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jsonschema

from tokensvc.errors import TokensvcError
from tokensvc.fetch import Fetcher, FetchError
from tokensvc.statusfeed.config import STATUSES, FeedConfig

#: The largest document accepted (Twilio's summary.json is well under 100 KiB).
MAX_BYTES = 2 * 1024 * 1024
SEVERITY = {status: rank for rank, status in enumerate(STATUSES)}

_COMPONENT = {
    "type": "object",
    "required": ["id", "name", "status"],
    "properties": {
        "id": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "status": {"enum": list(STATUSES)},
        "group": {"type": "boolean"},
        "group_id": {"type": ["string", "null"]},
        "components": {"type": "array", "items": {"type": "string"}},
        "updated_at": {"type": ["string", "null"]},
        "only_show_if_degraded": {"type": "boolean"},
    },
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["page", "components"],
    "properties": {
        "page": {
            "type": "object",
            "required": ["id", "updated_at"],
            "properties": {"id": {"type": "string"}, "updated_at": {"type": "string"}},
        },
        "components": {"type": "array", "items": _COMPONENT},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


class FeedError(TokensvcError):
    """No usable reading: ``reason`` is http_<status> | timeout | too_large | redirect |
    network | malformed | stale_document (a short label for metrics and ``check``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Component:
    id: str
    name: str
    status: str
    group: bool
    group_id: str | None
    children: tuple[str, ...]


@dataclass(frozen=True)
class FeedPage:
    page_id: str
    updated_at: datetime
    components: Mapping[str, Component]

    def effective_status(self, component_id: str) -> str | None:
        """The component's status (a group's: worst of itself and its children), or None
        when the document does not list it."""
        component = self.components.get(component_id)
        if component is None:
            return None
        statuses = [component.status] + [
            self.components[c].status for c in component.children if c in self.components
        ]
        return max(statuses, key=SEVERITY.__getitem__)

    def statuses(self, ids: Mapping[str, object] | list[str]) -> dict[str, str]:
        """Effective status of each listed id that the document has."""
        out: dict[str, str] = {}
        for cid in ids:
            status = self.effective_status(cid)
            if status is not None:
                out[cid] = status
        return out


def _timestamp(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FeedError("malformed", f"{where} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise FeedError("malformed", f"{where} has no time zone")
    return parsed


def parse_page(body: bytes, newest_seen: datetime | None = None) -> FeedPage:
    """Decode and validate one document; ``FeedError`` when it is not whole and well-formed,
    or ``stale_document`` when its ``page.updated_at`` is older than ``newest_seen``."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):
        raise FeedError("malformed", "not JSON") from None
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(raw))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "document"
        raise FeedError("malformed", f"{where}: {error.message[:200]}")
    components: dict[str, Component] = {}
    for item in raw["components"]:
        cid = item["id"]
        if cid in components:
            raise FeedError("malformed", f"duplicate component id {cid!r}")
        components[cid] = Component(
            id=cid,
            name=item["name"],
            status=item["status"],
            group=item.get("group", False),
            group_id=item.get("group_id"),
            children=tuple(item.get("components") or ()),
        )
    for component in components.values():
        missing = [c for c in component.children if c not in components]
        if missing:
            raise FeedError("malformed", f"group {component.id!r} lists unknown {missing[0]!r}")
    updated_at = _timestamp(raw["page"]["updated_at"], "page.updated_at")
    if newest_seen is not None and updated_at < newest_seen:
        raise FeedError(
            "stale_document",
            f"page.updated_at {updated_at.isoformat()} is older than one already "
            f"seen ({newest_seen.isoformat()})",
        )
    return FeedPage(raw["page"]["id"], updated_at, components)


async def poll(
    fetcher: Fetcher, config: FeedConfig, newest_seen: datetime | None = None
) -> FeedPage:
    """One GET of ``config.url`` within ``timeout_seconds``, no redirects, ``MAX_BYTES`` cap."""
    try:
        response = await fetcher.get(
            config.url,
            deadline=config.timeout_seconds,
            max_bytes=MAX_BYTES,
            headers={"Accept": "application/json"},
        )
    except FetchError as exc:
        raise FeedError(exc.reason, str(exc)) from None
    if response.status != 200:
        raise FeedError(f"http_{response.status}", "")
    return parse_page(response.body, newest_seen)


def describe_components(page: FeedPage) -> list[tuple[str, str, str, str]]:
    """(id, group, name, status) rows for ``status-feed components``: groups first, each
    followed by its children; ``group`` is the parent's name ("-" at top level, "(group)" for a
    group itself)."""
    rows: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    tops = [
        c
        for c in page.components.values()
        if c.group_id is None or c.group_id not in page.components
    ]
    for top in tops:
        rows.append((top.id, "(group)" if top.group else "-", top.name, top.status))
        seen.add(top.id)
        for child_id in top.children:
            child = page.components[child_id]
            rows.append((child.id, top.name, child.name, child.status))
            seen.add(child.id)
    for c in page.components.values():
        if c.id not in seen:
            parent = page.components.get(c.group_id or "")
            rows.append((c.id, parent.name if parent else "-", c.name, c.status))
    return rows
