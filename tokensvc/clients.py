"""Client configuration: ``clients_config/<client-id>.yaml`` -> validated ``ClientConfig``.

The file's structure (keys, types, patterns, enums, which keys go together) is defined once, by
the JSON Schema ``tokensvc/data/client.schema.json`` (see ``clientschema``). This module reads
and parses each file, checks it against that schema, then makes the checks a schema cannot
express: secret references resolve (``secret.resolve_secret``; literals only in ``dev: true``
files), PEM keys parse and suit the pinned algorithms, HMAC secrets are long enough, dev-only
values (``http://`` URLs and origins, ``auth.type: none``), ISO country codes, and distinct
identity prefixes for clients sharing a Twilio account.

Contract: ``scan_clients`` never raises for any file content. Every problem in every file is
collected as a ``Problem`` naming file and field (``app.yaml: edges.default[0]: ...``) before
anything is rejected, so an operator fixes a directory in one pass. A file over
``MAX_FILE_BYTES`` is refused before it is read. The environment used for ``{env: NAME}`` is
passed in by the caller; this module never reads ``os.environ``. Secrets are held as
``Secret`` so they never show in a repr or a log line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tokensvc.clientschema import schema_problems
from tokensvc.edges import HOME_REGION_EDGES, NON_SDK_EDGES, EdgePolicy, is_country
from tokensvc.errors import ConfigError, Problem
from tokensvc.jwks import key_problem
from tokensvc.secret import (
    MAX_SECRET_FILE_BYTES,
    Secret,
    SecretRefError,
    resolve_secret,
    secret_file,
)

CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
HOME_REGIONS = ("us1", "ie1", "au1")
MAX_TTL = 86400  # Twilio's maximum token lifetime
MIN_TTL = 60
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600}
IDENTITY_ENCODINGS = ("escape", "strict")
#: A client file is a few kilobytes; anything past this is refused before it is read.
MAX_FILE_BYTES = 1024 * 1024
#: YAML nodes a file may hold, counted while parsing (a client file has a few hundred): this
#: bounds the work before any value is built.
MAX_EVENTS = 50_000
#: Parsed values (aliases counted each time they are used) and nesting a file may hold.
MAX_NODES = 100_000
MAX_DEPTH = 32
#: Shortest HMAC secret per algorithm: the hash's output size (RFC 7518 section 3.2; pyjwt
#: warns below it). A client allowing several HS algorithms needs the longest.
MIN_HMAC_SECRET = {"HS256": 32, "HS384": 48, "HS512": 64}
_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(second|minute|hour)\s*")
_KEY_TYPES: dict[str, Any] = {
    "RS": rsa.RSAPublicKey,
    "PS": rsa.RSAPublicKey,
    "ES": ec.EllipticCurvePublicKey,
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ApiKey:
    sid: str
    secret: Secret


@dataclass(frozen=True)
class PushCredentials:
    ios_production: str | None = None
    ios_sandbox: str | None = None
    android: str | None = None


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    api_keys: tuple[ApiKey, ...]  # the first signs
    outgoing_application_sid: str | None
    incoming_allow: bool
    home_region: str
    push: PushCredentials


@dataclass(frozen=True)
class RateLimit:
    limit: int
    window: int  # seconds

    def __str__(self) -> str:
        unit = {v: k for k, v in RATE_UNITS.items()}[self.window]
        return f"{self.limit}/{unit}"


@dataclass(frozen=True)
class PreflightConfig:
    """``preflight:``: the echo TwiML app a preflight token calls, its lifetime, its limit."""

    outgoing_application_sid: str
    ttl_seconds: int = 300
    rate_per_identity: RateLimit = RateLimit(10, 3600)


@dataclass(frozen=True)
class AdaptiveConfig:
    """``edges.adaptive:``: reorder configured lists from edge reports (tokensvc.adaptive)."""

    window_seconds: int = 600
    min_reports: int = 50


@dataclass(frozen=True)
class ReportLimits:
    """``edges.reports:``: the edge-report endpoint's own rate limits."""

    per_identity: RateLimit = RateLimit(20, 3600)
    per_ip: RateLimit = RateLimit(100, 3600)


@dataclass(frozen=True)
class AuthConfig:
    type: str  # jwt | api_key | none
    algorithms: tuple[str, ...] = ()
    jwks_url: str | None = None
    public_keys: tuple[str, ...] = ()  # PEM texts
    hmac_secret: Secret | None = None
    issuer: str | None = None
    audience: str | None = None
    identity_claim: str = "sub"
    identity_encoding: str = "escape"
    identity_prefix: str = ""
    leeway_seconds: int = 30
    api_keys: tuple[Secret, ...] = ()
    #: ``auth.max_token_lifetime_seconds``: the longest caller JWT accepted (``exp - iat`` and
    #: ``exp - now``), None for no bound. Enforced by ``auth.py``.
    max_token_lifetime: int | None = None


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    source: str
    twilio: TwilioConfig
    ttl_seconds: int
    auth: AuthConfig
    allow_origins: frozenset[str]
    edges: EdgePolicy
    rate_per_identity: RateLimit | None
    rate_per_ip: RateLimit | None
    #: caller subjects exactly as verified (``auth0|123``), before encoding and prefix
    blocked_subjects: frozenset[str]
    #: Twilio identities as issued (prefix and encoding applied)
    blocked_twilio_identities: frozenset[str]
    dev: bool
    fingerprint: str = field(default="", compare=False)
    #: files the config refers to (secrets, PEM keys): a change to one triggers a reload
    watched_files: tuple[str, ...] = field(default=(), compare=False)
    #: ``preflight:`` (None: the preflight-token endpoint answers 404 no_preflight_app)
    preflight: PreflightConfig | None = None
    #: ``edges.adaptive:`` (None: the configured order always stands)
    adaptive: AdaptiveConfig | None = None
    report_limits: ReportLimits = ReportLimits()

    def blocks(self, raw_subject: str, twilio_identity: str) -> bool:
        """Whether this file blocks the caller: its raw subject is in ``blocked_subjects`` or
        the Twilio identity it maps to is in ``blocked_twilio_identities`` (never crossed)."""
        return (
            raw_subject in self.blocked_subjects
            or twilio_identity in self.blocked_twilio_identities
        )


@dataclass(frozen=True)
class LoadResult:
    clients: dict[str, ClientConfig]
    problems: list[Problem]
    warnings: list[str]


def load_clients(directory: str | Path, environ: Mapping[str, str]) -> dict[str, ClientConfig]:
    """Load and validate every client file; raise ConfigError listing every problem."""
    result = scan_clients(directory, environ)
    if result.problems:
        raise ConfigError(result.problems)
    return result.clients


def client_files(root: Path) -> list[Path]:
    """The client files of a directory (``*.yaml``/``*.yml``), sorted."""
    return sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def scan_clients(directory: str | Path, environ: Mapping[str, str]) -> LoadResult:
    """Every client of ``directory`` with every problem and warning; never raises for bad
    content. ``environ`` resolves ``{env: NAME}`` references."""
    root = Path(directory)
    problems: list[Problem] = []
    warnings: list[str] = []
    clients: dict[str, ClientConfig] = {}
    try:
        files = client_files(root)
    except OSError as exc:
        reason = "not a directory" if not root.is_dir() else f"cannot list: {exc.strerror}"
        return LoadResult({}, [Problem(str(root), "", reason)], [])
    if not files:
        problems.append(Problem(str(root), "", "no client files (*.yaml) found"))
    for path in files:
        client = _load_file(path, environ, problems, warnings)
        if client is not None:
            if client.client_id in clients:
                problems.append(Problem(str(path), "", f"duplicate client id {client.client_id!r}"))
            clients[client.client_id] = client
    problems += _shared_account_problems(clients)
    return LoadResult(clients, problems, warnings)


def _shared_account_problems(clients: Mapping[str, ClientConfig]) -> list[Problem]:
    """Clients on one Twilio account share its identity namespace: each needs a distinct
    identity_prefix, none a prefix of another, so no two callers get the same identity."""
    by_account: dict[str, list[ClientConfig]] = {}
    for client in clients.values():
        by_account.setdefault(client.twilio.account_sid, []).append(client)
    problems = []
    for group in by_account.values():
        if len(group) < 2:
            continue
        for client in group:
            mine = client.auth.identity_prefix
            clash = [
                o.client_id
                for o in group
                if o is not client
                and (
                    not mine
                    or o.auth.identity_prefix.startswith(mine)
                    or mine.startswith(o.auth.identity_prefix)
                )
            ]
            if clash:
                problems.append(
                    Problem(
                        client.source,
                        "auth.identity_prefix",
                        f"shares its Twilio account with {', '.join(sorted(clash))}: give each "
                        "client a distinct identity_prefix, none a prefix of another",
                    )
                )
    return problems


def directory_signature(directory: str | Path, extra_files: Iterable[str] = ()) -> str:
    """A cheap fingerprint of the client files and the files they refer to (names, sizes,
    mtimes, resolved targets). Follows symlinks, so the ``..data`` swap Kubernetes performs
    for ConfigMap and Secret volumes changes it."""
    root = Path(directory)
    parts: list[str] = []
    try:
        paths = [p for p in sorted(root.iterdir()) if p.suffix in (".yaml", ".yml")]
    except OSError:
        return "unreadable"
    for p in [*paths, *map(Path, sorted(set(extra_files)))]:
        try:
            st = p.stat()
            parts.append(f"{p}:{p.resolve()}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p}:missing")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


# --- reading and parsing ----------------------------------------------------------------------


def _read(path: Path) -> tuple[bytes | None, str]:
    """The file's bytes, or None and why not. The size is checked before reading."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, (
                f"is {size} bytes, over the {MAX_FILE_BYTES} byte limit for a client "
                "file (a client file is a few kilobytes)"
            )
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    if len(raw) > MAX_FILE_BYTES:  # grew between stat and read
        return None, f"is over the {MAX_FILE_BYTES} byte limit for a client file"
    return raw, ""


def _parse(raw: bytes) -> tuple[object, str, str]:
    """``(document, field, problem)``: the parsed YAML, or where and why it is not YAML."""
    try:
        # First count the parser's events (cheap, and it yields the GIL between events), so a
        # huge document is refused before the composer builds it in one long C call.
        for count, _ in enumerate(yaml.parse(raw, Loader=_Loader)):
            if count > MAX_EVENTS:
                return None, "", f"holds more than {MAX_EVENTS} YAML nodes"
        return yaml.load(raw, Loader=_Loader), "", ""  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        return None, where, f"invalid YAML: {exc.problem or exc}"
    except yaml.YAMLError as exc:
        return None, "", f"invalid YAML: {exc}"
    except RecursionError:
        return None, "", "invalid YAML: nested too deeply"
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values such as a timestamp 2001-13-45.
        return None, "", f"invalid YAML value: {exc}"


def _shape_problem(document: object) -> tuple[str, str] | None:
    """The first reason ``document`` is not a small JSON-like tree (non-string keys, too
    deep, too many values once aliases are expanded), checked without recursion."""
    stack: list[tuple[object, list[str | int], int]] = [(document, [], 0)]
    nodes = 0
    while stack:
        node, where, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return "", f"holds more than {MAX_NODES} values (counting YAML aliases)"
        if depth > MAX_DEPTH:
            return _field(where), f"nested more than {MAX_DEPTH} levels deep"
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    return _field(where), f"key {_short(key)} must be a string"
                stack.append((value, [*where, key], depth + 1))
        elif isinstance(node, list):
            stack.extend((value, [*where, i], depth + 1) for i, value in enumerate(node))
    return None


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 60 else text[:59] + "…"


def _field(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


# --- one file ---------------------------------------------------------------------------------


class _Ctx:
    """Checks on one schema-valid file: where problems are reported, what is watched."""

    def __init__(
        self, source: str, env: Mapping[str, str], problems: list[Problem], dev: bool
    ) -> None:
        self.source = source
        self.env = env
        self.problems = problems
        self.dev = dev
        self.watched: list[str] = []

    def problem(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.source, field_name, message))

    def secret(self, ref: object, where: str) -> Secret | None:
        path = secret_file(ref)
        if path is not None:
            self.watched.append(path)
        try:
            return resolve_secret(ref, self.env, allow_literal=self.dev)
        except SecretRefError as exc:
            self.problem(f"{where}.{exc.field}" if exc.field else where, exc.message)
            return None


def _load_file(
    path: Path, env: Mapping[str, str], problems: list[Problem], warnings: list[str]
) -> ClientConfig | None:
    source = str(path)
    before = len(problems)
    client_id = path.stem
    if not CLIENT_ID.fullmatch(client_id):
        problems.append(
            Problem(
                source,
                "",
                f"file name {client_id!r} is not a valid client id ([a-z0-9][a-z0-9-]{{0,63}})",
            )
        )
    raw, why = _read(path)
    if raw is None:
        problems.append(Problem(source, "", why))
        return None
    doc, where, why = _parse(raw)
    if why:
        problems.append(Problem(source, where, why))
        return None
    if doc is None:
        problems.append(
            Problem(
                source,
                "",
                "is empty or holds only comments: a client file needs at least twilio and auth",
            )
        )
        return None
    shape = _shape_problem(doc)
    if shape is not None:
        problems.append(Problem(source, *shape))
        return None
    problems += [Problem(source, f, m) for f, m in schema_problems(doc)]
    if len(problems) > before or not isinstance(doc, dict):
        return None
    ctx = _Ctx(source, env, problems, dev=doc.get("dev", False))
    twilio = _twilio(ctx, doc["twilio"])
    auth = _auth(ctx, doc["auth"])
    origins = _cors(ctx, doc.get("cors") or {})
    edges = _edges(ctx, doc.get("edges") or {})
    rates = doc.get("rate_limit") or {}
    warnings += [f"{path}: {w}" for w in twilio_warnings(twilio.home_region, edges)]
    if auth.type == "none":
        if not ctx.dev:
            ctx.problem("auth.type", "'none' is only allowed with dev: true")
        else:
            warnings.append(
                f"{path}: auth.type none: ANY caller can mint a token for ANY "
                "identity. Never deploy this client."
            )
    if len(problems) > before:
        return None
    return ClientConfig(
        client_id=client_id,
        source=source,
        twilio=twilio,
        ttl_seconds=int((doc.get("token") or {}).get("ttl_seconds", 3600)),
        auth=auth,
        allow_origins=origins,
        edges=edges,
        rate_per_identity=_rate(rates.get("per_identity")),
        rate_per_ip=_rate(rates.get("per_ip")),
        blocked_subjects=frozenset(doc.get("blocked_subjects") or ()),
        blocked_twilio_identities=frozenset(doc.get("blocked_twilio_identities") or ()),
        dev=ctx.dev,
        fingerprint=hashlib.sha256(raw).hexdigest()[:12],
        watched_files=tuple(ctx.watched),
        preflight=_preflight(doc.get("preflight")),
        adaptive=_adaptive((doc.get("edges") or {}).get("adaptive")),
        report_limits=_report_limits((doc.get("edges") or {}).get("reports")),
    )


def _preflight(p: dict[str, Any] | None) -> PreflightConfig | None:
    if p is None:
        return None
    rate = _rate(p.get("rate_limit"))
    return PreflightConfig(
        outgoing_application_sid=p["outgoing_application_sid"],
        ttl_seconds=int(p.get("ttl_seconds", 300)),
        rate_per_identity=rate or PreflightConfig.rate_per_identity,
    )


def _adaptive(a: dict[str, Any] | None) -> AdaptiveConfig | None:
    if a is None:
        return None
    return AdaptiveConfig(int(a.get("window_seconds", 600)), int(a.get("min_reports", 50)))


def _report_limits(r: dict[str, Any] | None) -> ReportLimits:
    r = r or {}
    default = ReportLimits()
    return ReportLimits(
        _rate(r.get("per_identity")) or default.per_identity,
        _rate(r.get("per_ip")) or default.per_ip,
    )


def _rate(value: str | None) -> RateLimit | None:
    if value is None:
        return None
    m = _RATE.fullmatch(value)
    if m is None:  # pragma: no cover - the schema's pattern is the same
        raise AssertionError(value)
    return RateLimit(int(m.group(1)), RATE_UNITS[m.group(2)])


def _twilio(ctx: _Ctx, t: dict[str, Any]) -> TwilioConfig:
    keys: list[ApiKey] = []
    if "api_keys" in t:
        pairs = [
            (e["sid"], e["secret"], f"twilio.api_keys[{i}].secret")
            for i, e in enumerate(t["api_keys"])
        ]
    else:
        pairs = [(t["api_key_sid"], t["api_key_secret"], "twilio.api_key_secret")]
    for sid, ref, where in pairs:
        secret = ctx.secret(ref, where)
        if secret is not None:
            keys.append(ApiKey(sid, secret))
    push = t.get("push_credentials") or {}
    ios = push.get("ios") or {}
    return TwilioConfig(
        account_sid=t["account_sid"],
        api_keys=tuple(keys),
        outgoing_application_sid=t.get("outgoing_application_sid"),
        incoming_allow=t.get("incoming_allow", False),
        home_region=t.get("home_region", "us1"),
        push=PushCredentials(ios.get("production"), ios.get("sandbox"), push.get("android")),
    )


def _auth(ctx: _Ctx, a: dict[str, Any]) -> AuthConfig:
    kind: str = a["type"]
    prefix: str = a.get("identity_prefix", "")
    encoding: str = a.get("identity_encoding", "escape")
    if kind == "none":
        return AuthConfig(type="none", identity_prefix=prefix)
    if kind == "api_key":
        secrets = [ctx.secret(k, f"auth.keys[{i}]") for i, k in enumerate(a["keys"])]
        return AuthConfig(
            type="api_key",
            api_keys=tuple(s for s in secrets if s is not None),
            identity_encoding=encoding,
            identity_prefix=prefix,
        )
    algorithms: list[str] = a["algorithms"]
    jwks_url: str | None = a.get("jwks_url")
    if jwks_url is not None and not (jwks_url.startswith("https://") or ctx.dev):
        ctx.problem("auth.jwks_url", "must be https:// (http:// only with dev: true)")
    pems = [
        pem
        for i, entry in enumerate(a.get("public_keys", ()))
        if (pem := _read_pem(ctx, entry, f"auth.public_keys[{i}]", algorithms))
    ]
    hmac_secret = None
    if "hs256_secret" in a:
        hmac_secret = ctx.secret(a["hs256_secret"], "auth.hs256_secret")
        need = max((MIN_HMAC_SECRET[a] for a in algorithms if a in MIN_HMAC_SECRET), default=32)
        if hmac_secret is not None and len(hmac_secret.reveal().encode()) < need:
            ctx.problem(
                "auth.hs256_secret", f"must be at least {need} bytes for {', '.join(algorithms)}"
            )
    lifetime = a.get("max_token_lifetime_seconds")
    return AuthConfig(
        type="jwt",
        algorithms=tuple(algorithms),
        jwks_url=jwks_url,
        public_keys=tuple(pems),
        hmac_secret=hmac_secret,
        issuer=a["issuer"],
        audience=a["audience"],
        identity_claim=a.get("identity_claim", "sub"),
        identity_encoding=encoding,
        identity_prefix=prefix,
        leeway_seconds=int(a.get("leeway_seconds", 30)),
        max_token_lifetime=None if lifetime is None else int(lifetime),
    )


def _read_pem(ctx: _Ctx, entry: dict[str, str], where: str, algorithms: list[str]) -> str | None:
    if "file" in entry:
        ctx.watched.append(entry["file"])
        try:
            with Path(entry["file"]).open("rb") as handle:
                data = handle.read(MAX_SECRET_FILE_BYTES + 1)
            if len(data) > MAX_SECRET_FILE_BYTES:
                ctx.problem(f"{where}.file", f"larger than {MAX_SECRET_FILE_BYTES} bytes")
                return None
            pem = data.decode("utf-8")
        except OSError as exc:
            ctx.problem(f"{where}.file", f"cannot read: {exc.strerror}")
            return None
        except UnicodeDecodeError:
            ctx.problem(f"{where}.file", "not UTF-8 text")
            return None
    else:
        pem = entry["pem"]
    if "-----BEGIN PUBLIC KEY-----" not in pem:
        ctx.problem(where, "not a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return None
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        ctx.problem(where, "the PEM public key cannot be parsed")
        return None
    wanted = {_KEY_TYPES[alg[:2]] for alg in algorithms}
    if not isinstance(key, tuple(wanted)):
        ctx.problem(
            where, f"a {type(key).__name__.lstrip('_')} cannot verify {', '.join(algorithms)}"
        )
        return None
    weak = key_problem(key)
    if weak is not None:
        ctx.problem(where, f"refused: {weak}")
        return None
    return pem


def _cors(ctx: _Ctx, c: dict[str, Any]) -> frozenset[str]:
    good: set[str] = set()
    for i, origin in enumerate(c.get("allow_origins", ())):
        if origin.startswith("http://") and not ctx.dev and not _is_loopback(origin):
            ctx.problem(f"cors.allow_origins[{i}]", "http:// origins only with dev: true")
        else:
            good.add(origin)
    return frozenset(good)


def _is_loopback(origin: str) -> bool:
    host = origin.split("://", 1)[1].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]")


def _edges(ctx: _Ctx, e: dict[str, Any]) -> EdgePolicy:
    by_country: dict[str, tuple[str, ...]] = {}
    for code, edges in (e.get("by_country") or {}).items():
        if not is_country(code):
            ctx.problem(
                f"edges.by_country.{code}", "not an ISO 3166-1 alpha-2 country code (upper case)"
            )
        else:
            by_country[code] = tuple(edges)
    return EdgePolicy(
        default=tuple(e.get("default", ["roaming"])), by_country=by_country, geo=e.get("geo", False)
    )


def twilio_warnings(home_region: str, edges: EdgePolicy) -> list[str]:
    """Where Twilio's rules make a valid config doubtful (``check-config`` prints these; they
    never refuse a file): edges the JS SDK's enum lacks, edge lists that do not start at the
    home region's edges, and the reminder that IE1/AU1 resources are created in that region."""
    out: list[str] = []
    lists = [("edges.default", edges.default)] + [
        (f"edges.by_country.{code}", listed) for code, listed in sorted(edges.by_country.items())
    ]
    for where, listed in lists:
        for i, edge in enumerate(listed):
            if edge in NON_SDK_EDGES:
                out.append(
                    f"{where}[{i}]: {edge} is not in the Voice JavaScript SDK's Edge enum "
                    "(allowed by edges.allow_non_sdk_edges): check that your SDK versions "
                    "connect to it before relying on it"
                )
    first = HOME_REGION_EDGES.get(home_region)
    if first is None:
        return out
    wanted = " or ".join(first)
    for where, listed in lists:
        if listed[0] not in first:
            out.append(
                f"{where}: home_region {home_region} but the list starts with {listed[0]}: "
                f"Twilio advises matching the edge to the home region (start with {wanted})"
            )
    if edges.geo:
        out.append(
            f"edges.geo: home_region {home_region} but the geo table hands callers their "
            f"nearest public edge: Twilio advises matching the edge to the home region ({wanted})"
        )
    out.append(
        f"twilio.home_region: {home_region}: the API keys, TwiML App and push credentials must "
        f"be created in the {home_region.upper()} region; keys from another region are rejected "
        "(401/20003): run tokensvc check-twilio"
    )
    return out


def describe(client: ClientConfig) -> dict[str, Any]:
    """A safe summary (no secrets) for logs and the CLI."""
    return {
        "client": client.client_id,
        "auth": client.auth.type,
        "home_region": client.twilio.home_region,
        "api_keys": [k.sid for k in client.twilio.api_keys],
        "ttl_seconds": client.ttl_seconds,
        "dev": client.dev,
        "fingerprint": client.fingerprint,
    }
