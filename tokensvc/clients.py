"""Client configuration: ``clients_config/<client-id>.yaml`` -> validated ``ClientConfig``.

Every problem in every file is collected (file and field named) before anything is rejected,
so an operator fixes a directory in one pass. Secrets are resolved here, from ``{env: NAME}``
or ``{file: /path}`` references (a literal string only in ``dev: true`` files), and held as
``Secret`` so they never show in a repr or a log line.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tokensvc.edges import EDGES, EdgePolicy, is_country
from tokensvc.errors import ConfigError, Problem
from tokensvc.secret import Secret, read_secret_file

CLIENT_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_SID = {
    "AC": re.compile(r"AC[0-9a-f]{32}"),
    "SK": re.compile(r"SK[0-9a-f]{32}"),
    "AP": re.compile(r"AP[0-9a-f]{32}"),
    "CR": re.compile(r"CR[0-9a-f]{32}"),
}
HOME_REGIONS = ("us1", "ie1", "au1")
MAX_TTL = 86400  # Twilio's maximum token lifetime
MIN_TTL = 60
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600}
IDENTITY_ENCODINGS = ("escape", "strict")
_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(second|minute|hour)\s*")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")
_KEY_TYPES: dict[str, Any] = {
    "RS": rsa.RSAPublicKey, "PS": rsa.RSAPublicKey, "ES": ec.EllipticCurvePublicKey,
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
_PREFIX = re.compile(r"[A-Za-z0-9_]{0,32}")


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
    max_token_lifetime: int | None = None  # seconds; None: no bound beyond exp


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
    blocked_identities: frozenset[str]
    dev: bool
    fingerprint: str = field(default="", compare=False)
    #: files the config refers to (secrets, PEM keys): a change to one triggers a reload
    watched_files: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class LoadResult:
    clients: dict[str, ClientConfig]
    problems: list[Problem]
    warnings: list[str]


def load_clients(
    directory: str | Path, environ: Mapping[str, str] | None = None
) -> dict[str, ClientConfig]:
    """Load and validate every client file; raise ConfigError listing every problem."""
    result = scan_clients(directory, environ)
    if result.problems:
        raise ConfigError(result.problems)
    return result.clients


def scan_clients(directory: str | Path, environ: Mapping[str, str] | None = None) -> LoadResult:
    env = os.environ if environ is None else environ
    root = Path(directory)
    problems: list[Problem] = []
    warnings: list[str] = []
    clients: dict[str, ClientConfig] = {}
    if not root.is_dir():
        return LoadResult({}, [Problem(str(root), "", "not a directory")], [])
    files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if not files:
        problems.append(Problem(str(root), "", "no client files (*.yaml) found"))
    for path in files:
        client = _load_file(path, env, problems, warnings)
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
            clash = [o.client_id for o in group if o is not client and (
                not mine or o.auth.identity_prefix.startswith(mine)
                or mine.startswith(o.auth.identity_prefix))]
            if clash:
                problems.append(Problem(
                    client.source, "auth.identity_prefix",
                    f"shares its Twilio account with {', '.join(sorted(clash))}: give each "
                    "client a distinct identity_prefix, none a prefix of another"))
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


class _Ctx:
    """Validation context for one file: where problems are reported."""

    def __init__(self, source: str, env: Mapping[str, str], problems: list[Problem]) -> None:
        self.source = source
        self.env = env
        self.problems = problems
        self.dev = False
        self.watched: list[str] = []

    def watch(self, path: object) -> None:
        """Remember a referenced file: a change to it triggers a reload."""
        if isinstance(path, str):
            self.watched.append(path)

    def problem(self, field_name: str, message: str) -> None:
        self.problems.append(Problem(self.source, field_name, message))

    def mapping(self, value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(where, "must be a mapping")
            return {}
        for key in value:
            if key not in allowed:
                name = f"{where}.{key}" if where else str(key)
                self.problem(name, f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return value

    def string(self, value: Any, where: str, pattern: re.Pattern[str] | None = None,
               required: bool = True) -> str | None:
        if value is None:
            if required:
                self.problem(where, "is required")
            return None
        if not isinstance(value, str) or not value:
            self.problem(where, "must be a non-empty string")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problem(where, f"{value!r} does not match {pattern.pattern}")
            return None
        return value

    def boolean(self, value: Any, where: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(where, "must be true or false")
            return default
        return value

    def secret(self, value: Any, where: str) -> Secret | None:
        if value is None:
            self.problem(where, "is required")
            return None
        if isinstance(value, str):
            if not self.dev:
                self.problem(where, "a literal secret is only allowed with dev: true; "
                                    "use {env: NAME} or {file: /path}")
                return None
            return Secret(value)
        ref = self.mapping(value, where, {"env", "file"})
        if len(ref) != 1:
            self.problem(where, "must be {env: NAME} or {file: /path}")
            return None
        if "env" in ref:
            name = ref["env"]
            if not isinstance(name, str) or not self.env.get(name):
                self.problem(f"{where}.env", f"environment variable {name!r} is not set")
                return None
            return Secret(self.env[name])
        path = ref["file"]
        if not isinstance(path, str):
            self.problem(f"{where}.file", "must be a path")
            return None
        self.watch(path)
        try:
            secret = read_secret_file(path)
        except OSError as exc:
            self.problem(f"{where}.file", f"cannot read {path}: {exc.strerror}")
            return None
        if not secret:
            self.problem(f"{where}.file", f"{path} is empty")
            return None
        return secret

    def edge_list(self, value: Any, where: str) -> tuple[str, ...] | None:
        if not isinstance(value, list) or not value:
            self.problem(where, "must be a non-empty list of edge names")
            return None
        ok = True
        for i, edge in enumerate(value):
            if edge not in EDGES:
                self.problem(f"{where}[{i}]", f"unknown edge {edge!r} "
                                             f"(valid: {', '.join(sorted(EDGES))})")
                ok = False
        if len(set(value)) != len(value):
            self.problem(where, "lists an edge twice")
            ok = False
        return tuple(value) if ok else None

    def rate(self, value: Any, where: str) -> RateLimit | None:
        if value is None:
            return None
        m = _RATE.fullmatch(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) < 1:
            self.problem(where, "must look like '30/minute' (N >= 1 per second|minute|hour)")
            return None
        return RateLimit(int(m.group(1)), RATE_UNITS[m.group(2)])


def _load_file(
    path: Path, env: Mapping[str, str], problems: list[Problem], warnings: list[str]
) -> ClientConfig | None:
    ctx = _Ctx(str(path), env, problems)
    before = len(problems)
    client_id = path.stem
    if not CLIENT_ID.fullmatch(client_id):
        ctx.problem("", f"file name {client_id!r} is not a valid client id "
                        "([a-z0-9][a-z0-9-]{0,63})")
    try:
        raw = path.read_bytes()
        doc = yaml.safe_load(raw)
    except OSError as exc:
        ctx.problem("", f"cannot read: {exc.strerror}")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        ctx.problem(where, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")
        return None
    top = ctx.mapping(doc, "", {"twilio", "token", "auth", "cors", "edges", "rate_limit",
                                "blocked_identities", "dev"})
    if not isinstance(doc, dict):
        return None
    ctx.dev = ctx.boolean(top.get("dev"), "dev", False)
    twilio = _twilio(ctx, top.get("twilio"))
    ttl = _ttl(ctx, top.get("token"))
    auth = _auth(ctx, top.get("auth"))
    origins = _cors(ctx, top.get("cors"))
    edges = _edges(ctx, top.get("edges"))
    rl = ctx.mapping(top.get("rate_limit"), "rate_limit", {"per_identity", "per_ip"})
    per_identity = ctx.rate(rl.get("per_identity"), "rate_limit.per_identity")
    per_ip = ctx.rate(rl.get("per_ip"), "rate_limit.per_ip")
    blocked = top.get("blocked_identities") or []
    if not isinstance(blocked, list) or not all(isinstance(b, str) and b for b in blocked):
        ctx.problem("blocked_identities", "must be a list of identities")
        blocked = []
    if auth is not None and auth.type == "none":
        if not ctx.dev:
            ctx.problem("auth.type", "'none' is only allowed with dev: true")
        else:
            warnings.append(f"{path}: auth.type none: ANY caller can mint a token for ANY "
                            "identity. Never deploy this client.")
    if len(problems) > before or twilio is None or auth is None or edges is None:
        return None
    return ClientConfig(
        client_id=client_id,
        source=str(path),
        twilio=twilio,
        ttl_seconds=ttl,
        auth=auth,
        allow_origins=origins,
        edges=edges,
        rate_per_identity=per_identity,
        rate_per_ip=per_ip,
        blocked_identities=frozenset(blocked),
        dev=ctx.dev,
        fingerprint=hashlib.sha256(raw).hexdigest()[:12],
        watched_files=tuple(ctx.watched),
    )


def _twilio(ctx: _Ctx, value: Any) -> TwilioConfig | None:
    if value is None:
        ctx.problem("twilio", "is required")
        return None
    t = ctx.mapping(value, "twilio", {"account_sid", "api_key_sid", "api_key_secret", "api_keys",
                                      "outgoing_application_sid", "incoming_allow",
                                      "home_region", "push_credentials"})
    account = ctx.string(t.get("account_sid"), "twilio.account_sid", _SID["AC"])
    keys: list[ApiKey] = []
    if "api_keys" in t:
        if "api_key_sid" in t or "api_key_secret" in t:
            ctx.problem("twilio.api_keys", "use either api_keys or api_key_sid/api_key_secret")
        entries = t["api_keys"]
        if not isinstance(entries, list) or not entries:
            ctx.problem("twilio.api_keys", "must be a non-empty list of {sid, secret}")
            entries = []
        for i, entry in enumerate(entries):
            where = f"twilio.api_keys[{i}]"
            e = ctx.mapping(entry, where, {"sid", "secret"})
            sid = ctx.string(e.get("sid"), f"{where}.sid", _SID["SK"])
            secret = ctx.secret(e.get("secret"), f"{where}.secret")
            if sid and secret:
                keys.append(ApiKey(sid, secret))
    else:
        sid = ctx.string(t.get("api_key_sid"), "twilio.api_key_sid", _SID["SK"])
        secret = ctx.secret(t.get("api_key_secret"), "twilio.api_key_secret")
        if sid and secret:
            keys.append(ApiKey(sid, secret))
    app = ctx.string(t.get("outgoing_application_sid"), "twilio.outgoing_application_sid",
                     _SID["AP"], required=False)
    incoming = ctx.boolean(t.get("incoming_allow"), "twilio.incoming_allow", False)
    region = t.get("home_region", "us1")
    if region not in HOME_REGIONS:
        ctx.problem("twilio.home_region", f"must be one of {', '.join(HOME_REGIONS)}")
    push = _push(ctx, t.get("push_credentials"))
    if not account or not keys or region not in HOME_REGIONS:
        return None
    return TwilioConfig(account, tuple(keys), app, incoming, region, push)


def _push(ctx: _Ctx, value: Any) -> PushCredentials:
    p = ctx.mapping(value, "twilio.push_credentials", {"ios", "android"})
    ios = ctx.mapping(p.get("ios"), "twilio.push_credentials.ios", {"production", "sandbox"})
    return PushCredentials(
        ios_production=ctx.string(ios.get("production"), "twilio.push_credentials.ios.production",
                                  _SID["CR"], required=False),
        ios_sandbox=ctx.string(ios.get("sandbox"), "twilio.push_credentials.ios.sandbox",
                               _SID["CR"], required=False),
        android=ctx.string(p.get("android"), "twilio.push_credentials.android", _SID["CR"],
                           required=False),
    )


def _ttl(ctx: _Ctx, value: Any) -> int:
    t = ctx.mapping(value, "token", {"ttl_seconds"})
    ttl = t.get("ttl_seconds", 3600)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not MIN_TTL <= ttl <= MAX_TTL:
        ctx.problem("token.ttl_seconds", f"must be a whole number {MIN_TTL}..{MAX_TTL} "
                                         "(Twilio's maximum lifetime is 24 h)")
        return 3600
    return ttl


def _auth(ctx: _Ctx, value: Any) -> AuthConfig | None:
    if value is None:
        ctx.problem("auth", "is required")
        return None
    a = ctx.mapping(value, "auth", {"type", "algorithms", "jwks_url", "public_keys",
                                    "hs256_secret", "issuer", "audience", "identity_claim",
                                    "identity_encoding", "identity_prefix", "leeway_seconds",
                                    "keys"})
    kind = a.get("type")
    if kind not in ("jwt", "api_key", "none"):
        ctx.problem("auth.type", "must be jwt, api_key or none")
        return None
    prefix = a.get("identity_prefix", "")
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        ctx.problem("auth.identity_prefix", "must be 0-32 of [A-Za-z0-9_]")
        prefix = ""
    if kind == "none":
        return AuthConfig(type="none", identity_prefix=prefix)
    encoding = a.get("identity_encoding", "escape")
    if encoding not in IDENTITY_ENCODINGS:
        ctx.problem("auth.identity_encoding", f"must be one of {', '.join(IDENTITY_ENCODINGS)}")
    if kind == "api_key":
        entries = a.get("keys")
        if not isinstance(entries, list) or not entries:
            ctx.problem("auth.keys", "must be a non-empty list of secrets ({env: NAME}, ...)")
            return None
        secrets = [ctx.secret(k, f"auth.keys[{i}]") for i, k in enumerate(entries)]
        if any(s is None for s in secrets):
            return None
        return AuthConfig(type="api_key", api_keys=tuple(s for s in secrets if s is not None),
                          identity_encoding=encoding, identity_prefix=prefix)
    return _jwt_auth(ctx, a, encoding, prefix)


def _jwt_auth(ctx: _Ctx, a: dict[str, Any], encoding: str, prefix: str) -> AuthConfig | None:
    if "keys" in a:
        ctx.problem("auth.keys", "only for type: api_key")
    algs = a.get("algorithms")
    if not isinstance(algs, list) or not algs or not all(isinstance(x, str) for x in algs):
        ctx.problem("auth.algorithms", "must be a non-empty list, e.g. [RS256]")
        return None
    unknown = [x for x in algs if x not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS]
    if unknown:
        ctx.problem("auth.algorithms", f"unsupported: {', '.join(unknown)}")
        return None
    hmac_algs = set(algs) & HMAC_ALGORITHMS
    if hmac_algs and len(hmac_algs) != len(algs):
        ctx.problem("auth.algorithms", "do not mix HMAC (HS*) and public-key algorithms: "
                                       "that is how key-confusion attacks work")
        return None
    sources = [k for k in ("jwks_url", "public_keys", "hs256_secret") if k in a]
    if len(sources) != 1:
        ctx.problem("auth", "give exactly one of jwks_url, public_keys, hs256_secret")
        return None
    if hmac_algs and sources[0] != "hs256_secret":
        ctx.problem("auth.algorithms", "HS* algorithms need hs256_secret")
        return None
    if not hmac_algs and sources[0] == "hs256_secret":
        ctx.problem("auth.hs256_secret", "only usable with HS* algorithms")
        return None
    jwks_url = None
    pems: list[str] = []
    hmac_secret = None
    if sources[0] == "jwks_url":
        jwks_url = ctx.string(a["jwks_url"], "auth.jwks_url")
        if jwks_url and not (jwks_url.startswith("https://") or
                             (ctx.dev and jwks_url.startswith("http://"))):
            ctx.problem("auth.jwks_url", "must be https:// (http:// only with dev: true)")
            jwks_url = None
    elif sources[0] == "public_keys":
        entries = a["public_keys"]
        if not isinstance(entries, list) or not entries:
            ctx.problem("auth.public_keys", "must be a non-empty list of {file: path.pem}")
            entries = []
        for i, entry in enumerate(entries):
            e = ctx.mapping(entry, f"auth.public_keys[{i}]", {"file", "pem"})
            pem = _read_pem(ctx, e, f"auth.public_keys[{i}]", algs)
            if pem:
                pems.append(pem)
    else:
        hmac_secret = ctx.secret(a["hs256_secret"], "auth.hs256_secret")
        if hmac_secret is not None and len(hmac_secret.reveal()) < 32:
            ctx.problem("auth.hs256_secret", "must be at least 32 characters")
            hmac_secret = None
    issuer = ctx.string(a.get("issuer"), "auth.issuer")
    audience = ctx.string(a.get("audience"), "auth.audience")
    claim = ctx.string(a.get("identity_claim", "sub"), "auth.identity_claim")
    leeway = a.get("leeway_seconds", 30)
    if isinstance(leeway, bool) or not isinstance(leeway, int) or not 0 <= leeway <= 300:
        ctx.problem("auth.leeway_seconds", "must be a whole number 0..300")
        leeway = 30
    if not (issuer and audience and claim) or not (jwks_url or pems or hmac_secret):
        return None
    return AuthConfig(type="jwt", algorithms=tuple(algs), jwks_url=jwks_url,
                      public_keys=tuple(pems), hmac_secret=hmac_secret, issuer=issuer,
                      audience=audience, identity_claim=claim, identity_encoding=encoding,
                      identity_prefix=prefix, leeway_seconds=leeway)


def _read_pem(ctx: _Ctx, entry: dict[str, Any], where: str,
              algorithms: list[str]) -> str | None:
    if "file" in entry:
        ctx.watch(entry["file"])
        try:
            pem = Path(entry["file"]).read_text("utf-8")
        except (OSError, TypeError, ValueError) as exc:
            ctx.problem(f"{where}.file", f"cannot read: {exc}")
            return None
    elif "pem" in entry:
        pem = entry["pem"]
    else:
        ctx.problem(where, "must be {file: path.pem} or {pem: text}")
        return None
    if not isinstance(pem, str) or "-----BEGIN PUBLIC KEY-----" not in pem:
        ctx.problem(where, "not a PEM public key (-----BEGIN PUBLIC KEY-----)")
        return None
    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        ctx.problem(where, "the PEM public key cannot be parsed")
        return None
    wanted = {_KEY_TYPES[alg[:2]] for alg in algorithms}
    if not isinstance(key, tuple(wanted)):
        ctx.problem(where, f"a {type(key).__name__.lstrip('_')} cannot verify "
                           f"{', '.join(algorithms)}")
        return None
    return pem


def _cors(ctx: _Ctx, value: Any) -> frozenset[str]:
    c = ctx.mapping(value, "cors", {"allow_origins"})
    origins = c.get("allow_origins", [])
    if not isinstance(origins, list):
        ctx.problem("cors.allow_origins", "must be a list of origins")
        return frozenset()
    good: set[str] = set()
    for i, origin in enumerate(origins):
        if origin == "*":
            ctx.problem(f"cors.allow_origins[{i}]", "wildcard not allowed: list the app origins")
        elif not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
            ctx.problem(f"cors.allow_origins[{i}]",
                        "must be an origin like https://app.example.com (no path)")
        elif origin.startswith("http://") and not ctx.dev and not _is_loopback(origin):
            ctx.problem(f"cors.allow_origins[{i}]", "http:// origins only with dev: true")
        else:
            good.add(origin)
    return frozenset(good)


def _is_loopback(origin: str) -> bool:
    host = origin.split("://", 1)[1].rsplit(":", 1)[0]
    return host in ("localhost", "127.0.0.1", "[::1]")


def _edges(ctx: _Ctx, value: Any) -> EdgePolicy | None:
    e = ctx.mapping(value, "edges", {"default", "by_country", "geo"})
    default = ctx.edge_list(e.get("default", ["roaming"]), "edges.default")
    by_country: dict[str, tuple[str, ...]] = {}
    bc = e.get("by_country") or {}
    if not isinstance(bc, dict):
        ctx.problem("edges.by_country", "must be a mapping of country code -> edge list")
        bc = {}
    for code, edges in bc.items():
        where = f"edges.by_country.{code}"
        if not isinstance(code, str) or not is_country(code):
            ctx.problem(where, "not an ISO 3166-1 alpha-2 country code (upper case)")
            continue
        listed = ctx.edge_list(edges, where)
        if listed:
            by_country[code] = listed
    geo = ctx.boolean(e.get("geo"), "edges.geo", False)
    if default is None:
        return None
    return EdgePolicy(default=default, by_country=by_country, geo=geo)


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

