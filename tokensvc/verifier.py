"""Read-only checks of each client's Twilio credentials, and what they say about its keys.

For every API key of a client, against the client's home-region hosts (``twilio_hosts``):

    application   GET {api}/2010-04-01/Accounts/{AC}/Applications/{AP}.json   (app configured)
    applications  GET {api}/2010-04-01/Accounts/{AC}/Applications.json?PageSize=1   (otherwise)
    push.<slot>   GET {notify}/v1/Credentials/{CR}     slot: ios.production | ios.sandbox | android

GET only, Basic auth with the key SID and secret, every call under a total deadline with no
redirects followed (``fetch.Fetcher``), never the Accounts or Keys resources (a Standard key
gets 401/20003 from ``Accounts/{AC}.json``). Only definitive answers decide:

    answer                                        check      meaning
    2xx (and for push: right type and sandbox)    ok         the key works, the resource is right
    401 with code 20003                           rejected   wrong secret, deleted key, suspended
                                                             account, or a key of another region
    404 with code 20404                           missing    the app or credential does not exist
    2xx push with wrong ``type`` or ``sandbox``   mismatch   a config problem (e.g. swapped APNs)
    anything else: network error, timeout,        unknown    retried on the same host with
    5xx, 429, other 4xx, unreadable body                     back-off, then left undecided

A key is ``rejected`` when any check says so, ``ok`` when Twilio authenticated it at least
once, else ``unknown``. A client is ``rejected`` (any key rejected), else ``missing`` (any
check missing or mismatch), else ``unknown`` (anything undecided), else ``ok``.

:class:`KeyHealth` keeps the last reports. An ``unknown`` never overwrites a definitive answer
(a Twilio outage changes nothing); a definitive one replaces it (a revoked key turns rejected
on the next round; a fixed secret is a new key identity and starts clean). In ``enforce`` mode
it is the minter's :class:`~tokensvc.minting.KeyChooser`: the first key of ``api_keys`` not
known to be rejected signs. The lookup is a dict read; the checks never run on the token path.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from tokensvc.clients import ApiKey, ClientConfig, TwilioConfig
from tokensvc.fetch import Fetcher, FetchError
from tokensvc.twilio_hosts import DEFAULT_HOSTS, RegionHosts

CheckStatus = Literal["ok", "rejected", "missing", "mismatch", "unknown"]
KeyStatus = Literal["ok", "rejected", "unknown"]
ClientStatus = Literal["ok", "rejected", "missing", "unknown"]
DEFINITIVE_FAILURES = frozenset({"rejected", "missing", "mismatch"})
MAX_BODY = 64 * 1024  # a Twilio resource is a few hundred bytes
PUSH_SLOTS: tuple[tuple[str, str, str | None], ...] = (
    # slot, expected type, expected sandbox flag
    ("ios.production", "apn", "false"),
    ("ios.sandbox", "apn", "true"),
    ("android", "fcm", None),
)


@dataclass(frozen=True, slots=True)
class Check:
    """One call's verdict. ``detail`` is safe to show: a Twilio code or a short reason."""

    name: str  # application | applications | push.ios.production | push.ios.sandbox | ...
    resource: str  # the SID read (AP.., CR..), or "" for the list read
    status: CheckStatus
    detail: str = ""

    @property
    def definitive(self) -> bool:
        return self.status != "unknown"


@dataclass(frozen=True, slots=True)
class KeyReport:
    sid: str
    status: KeyStatus
    checks: tuple[Check, ...]


@dataclass(frozen=True, slots=True)
class ClientReport:
    client_id: str
    status: ClientStatus
    keys: tuple[KeyReport, ...]

    def failures(self) -> list[tuple[str, Check]]:
        """(key SID, check) for every definitive failure."""
        return [(k.sid, c) for k in self.keys for c in k.checks if c.status in DEFINITIVE_FAILURES]

    def undecided(self) -> list[tuple[str, Check]]:
        return [(k.sid, c) for k in self.keys for c in k.checks if c.status == "unknown"]

    def as_dict(self) -> dict[str, object]:
        return {
            "client": self.client_id,
            "status": self.status,
            "keys": [
                {
                    "sid": k.sid,
                    "status": k.status,
                    "checks": [
                        {
                            "name": c.name,
                            "resource": c.resource,
                            "status": c.status,
                            "detail": c.detail,
                        }
                        for c in k.checks
                    ],
                }
                for k in self.keys
            ],
        }


def key_status(checks: tuple[Check, ...]) -> KeyStatus:
    if any(c.status == "rejected" for c in checks):
        return "rejected"
    if any(c.status in ("ok", "missing", "mismatch") for c in checks):
        return "ok"  # Twilio authenticated the key before answering about the resource
    return "unknown"


def client_status(keys: tuple[KeyReport, ...]) -> ClientStatus:
    if any(k.status == "rejected" for k in keys):
        return "rejected"
    checks = [c for k in keys for c in k.checks]
    if any(c.status in ("missing", "mismatch") for c in checks):
        return "missing"
    if any(c.status == "unknown" for c in checks):
        return "unknown"
    return "ok"


def key_identity(account_sid: str, key: ApiKey) -> str:
    """Account, SID and a digest of the secret: a corrected secret is a different key."""
    digest = hashlib.sha256(key.secret.reveal().encode()).hexdigest()[:16]
    return f"{account_sid}:{key.sid}:{digest}"


class TwilioVerifier:
    """Runs the checks of one client; every call bounded by ``deadline``, ``attempts`` tries."""

    def __init__(
        self,
        fetcher: Fetcher,
        hosts: Mapping[str, RegionHosts] = DEFAULT_HOSTS,
        *,
        deadline: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        concurrency: int = 8,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.fetcher = fetcher
        self.hosts = hosts
        self.deadline = deadline
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)

    async def check_client(self, client: ClientConfig) -> ClientReport:
        keys = await asyncio.gather(
            *(self.check_key(client.twilio, k) for k in client.twilio.api_keys)
        )
        reports = tuple(keys)
        return ClientReport(client.client_id, client_status(reports), reports)

    async def check_key(self, twilio: TwilioConfig, key: ApiKey) -> KeyReport:
        hosts = self.hosts[twilio.home_region]
        account = twilio.account_sid
        app = twilio.outgoing_application_sid
        calls: list[Awaitable[Check]] = []
        if app:
            calls.append(
                self._resource(
                    "application",
                    app,
                    f"{hosts.api}/2010-04-01/Accounts/{account}/Applications/{app}.json",
                    key,
                    None,
                )
            )
        else:
            calls.append(
                self._resource(
                    "applications",
                    "",
                    f"{hosts.api}/2010-04-01/Accounts/{account}/Applications.json?PageSize=1",
                    key,
                    None,
                )
            )
        push = twilio.push
        sids = {
            "ios.production": push.ios_production,
            "ios.sandbox": push.ios_sandbox,
            "android": push.android,
        }
        for slot, kind, sandbox in PUSH_SLOTS:
            sid = sids[slot]
            if sid:
                calls.append(
                    self._resource(
                        f"push.{slot}",
                        sid,
                        f"{hosts.notify}/v1/Credentials/{sid}",
                        key,
                        (kind, sandbox),
                    )
                )
        checks = tuple(await asyncio.gather(*calls))
        return KeyReport(key.sid, key_status(checks), checks)

    async def _resource(
        self, name: str, sid: str, url: str, key: ApiKey, push: tuple[str, str | None] | None
    ) -> Check:
        check = Check(name, sid, "unknown", "not tried")
        for attempt in range(self.attempts):
            if attempt:
                # Same host again: Twilio's CDN routes by geo-DNS, another edge gains nothing.
                delay = self.backoff * 2 ** (attempt - 1)
                await self._sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
            check = await self._once(name, sid, url, key, push)
            if check.definitive:
                return check
        return check

    async def _once(
        self, name: str, sid: str, url: str, key: ApiKey, push: tuple[str, str | None] | None
    ) -> Check:
        try:
            async with self._slots:
                response = await self.fetcher.get(
                    url,
                    deadline=self.deadline,
                    max_bytes=MAX_BODY,
                    headers={"Accept": "application/json"},
                    auth=(key.sid, key.secret.reveal()),
                )
        except FetchError as exc:
            return Check(name, sid, "unknown", exc.reason)
        body = _json(response.body)
        code = body.get("code") if body is not None else None
        if response.status == 401 and code == 20003:
            return Check(name, sid, "rejected", "401/20003")
        if response.status == 404 and code == 20404:
            return Check(name, sid, "missing", "404/20404")
        if not 200 <= response.status < 300:
            suffix = f"/{code}" if isinstance(code, int) else ""
            return Check(name, sid, "unknown", f"HTTP {response.status}{suffix}")
        if body is None:
            return Check(name, sid, "unknown", "unreadable body")
        if push is not None:
            kind, sandbox = push
            if body.get("type") != kind:
                return Check(
                    name,
                    sid,
                    "mismatch",
                    f"type is {str(body.get('type'))[:16]!r}, expected {kind!r}",
                )
            if sandbox is not None and str(body.get("sandbox")).lower() != sandbox:
                return Check(
                    name,
                    sid,
                    "mismatch",
                    f"sandbox is {str(body.get('sandbox'))[:8]}, expected {sandbox}",
                )
        return Check(name, sid, "ok")


def _json(raw: bytes) -> dict[str, object] | None:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


class KeyHealth:
    """The last verification reports, merged so that only definitive answers change state."""

    def __init__(self, mode: str = "warn") -> None:
        self.mode = mode
        self.reports: dict[str, ClientReport] = {}
        self._rejected: set[str] = set()
        self._seen: dict[str, str] = {}  # key identity -> last definitive key status
        self.on_report: Callable[[ClientReport], None] = lambda report: None

    def signing_key(self, twilio: TwilioConfig) -> ApiKey | None:
        """The first key not known to be rejected (in enforce mode); else the first key."""
        if self.mode != "enforce":
            return twilio.api_keys[0]
        for key in twilio.api_keys:
            if key_identity(twilio.account_sid, key) not in self._rejected:
                return key
        return None

    def status(self) -> dict[str, ClientStatus]:
        return {cid: r.status for cid, r in sorted(self.reports.items())}

    def readiness(self, client_ids: Iterable[str]) -> dict[str, object]:
        """What ``/readyz`` shows (information only): per client its status, ``unknown``
        until a round has reported on it, and per key its SID, status and the checks that
        did not pass (never a secret)."""
        clients: dict[str, object] = {}
        for cid in sorted(client_ids):
            report = self.reports.get(cid)
            if report is None:
                clients[cid] = {"status": "unknown", "keys": []}
                continue
            clients[cid] = {
                "status": report.status,
                "keys": [
                    {
                        "sid": k.sid,
                        "status": k.status,
                        "checks": {c.name: c.status for c in k.checks},
                        "failed": [
                            {
                                "check": c.name,
                                "resource": c.resource,
                                "result": c.status,
                                "detail": c.detail,
                            }
                            for c in k.checks
                            if c.status != "ok"
                        ],
                    }
                    for k in report.keys
                ],
            }
        return {"mode": self.mode, "clients": clients}

    def record(self, client: ClientConfig, report: ClientReport) -> ClientReport:
        """Merge a fresh report into the last one and return what is now known."""
        previous = self.reports.get(client.client_id)
        old_keys = {k.sid: k for k in previous.keys} if previous else {}
        merged_keys = []
        for key, fresh in zip(client.twilio.api_keys, report.keys, strict=True):
            identity = key_identity(client.twilio.account_sid, key)
            old = old_keys.get(key.sid) if self._seen.get(identity) else None
            merged = _merge_key(old, fresh)
            if merged.status == "rejected":
                self._rejected.add(identity)
            elif merged.status == "ok":
                self._rejected.discard(identity)
            if merged.status != "unknown":
                self._seen[identity] = merged.status
            merged_keys.append(merged)
        keys = tuple(merged_keys)
        result = ClientReport(client.client_id, client_status(keys), keys)
        self.reports[client.client_id] = result
        self.on_report(result)
        return result

    def forget_except(self, client_ids: set[str]) -> None:
        for cid in set(self.reports) - client_ids:
            del self.reports[cid]


def _merge_key(old: KeyReport | None, fresh: KeyReport) -> KeyReport:
    """Undecided checks keep the previous definitive verdict for the same resource."""
    if old is None:
        return fresh
    before = {(c.name, c.resource): c for c in old.checks if c.definitive}
    checks = tuple(
        before.get((c.name, c.resource), c) if not c.definitive else c for c in fresh.checks
    )
    return replace(fresh, checks=checks, status=key_status(checks))
