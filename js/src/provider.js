/**
 * Token provider: asks tokensvc for a Twilio Voice Access Token, failing over between regional
 * deployments of the service.
 *
 * One call to `fetchToken()` runs up to `maxRounds` rounds. A round tries every endpoint once, in
 * this order: the endpoint that last worked (sticky for `stickyMs`), then the others in their
 * configured order, with endpoints in cool-down moved to the end (they are tried only when every
 * other endpoint has failed in this round). Each attempt has its own timeout.
 *
 * - network error, timeout, 5xx, 408, 429, unreadable 2xx: the endpoint cools down, try the next;
 * - 400/401/403/404 (and any other 4xx): a final answer, thrown as `TokenRequestError`;
 * - every endpoint failed: back off (exponential, jittered, at least the largest `Retry-After`)
 *   and start another round, or throw `TokenUnavailableError` after the last round. The back-off
 *   is remembered: the next `fetchToken()` waits for it before sending anything.
 *
 * `fetchPreflightToken()` asks `POST .../preflight-token` the same way (same rounds, cool-downs,
 * stickiness and back-off); a client without a preflight app answers 404 `no_preflight_app`.
 *
 * `reportEdges(report)` posts one edge report (`POST .../edge-report`, 202) and never rejects:
 * it goes to the region that produced the last token (else the first of the round order), and
 * after a network error, timeout, 5xx, 408 or 429 to one other region, never more (at most two
 * requests per report). A 4xx is final. It honours a running back-off (the report is dropped:
 * every region just failed) and changes no state: a lost report never cools a region down or
 * delays a token.
 *
 * @module
 */

import { TokenRequestError, TokenUnavailableError } from './errors.js';

/** Edge names as Twilio spells them (`ashburn`, `sao-paulo`, `frankfurt-ix`...). */
const EDGE_NAME = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/** setTimeout's largest delay; longer ones fire immediately. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const DEFAULTS = Object.freeze({
  attemptTimeoutMs: 5000,
  cooldownMs: 30_000,
  stickyMs: 10 * 60_000,
  maxRounds: 3,
  backoffBaseMs: 500,
  backoffMaxMs: 30_000,
  platform: 'browser',
});

/**
 * @typedef {import('./errors.js').Attempt} Attempt
 *
 * @typedef {object} TokenResponse The service's 200 answer.
 * @property {string} token the Twilio Access Token (a JWT)
 * @property {string[]} edges ordered edge names for the Device
 * @property {number} [refresh_in] seconds after which to fetch a new token (jittered by the service)
 * @property {number} [ttl] token lifetime in seconds
 * @property {string} [expires_at] RFC 3339 UTC expiry
 * @property {string} [identity]
 * @property {string} [region] region of the tokensvc deployment that answered
 * @property {string} [home_region] Twilio home region of the client's account
 *
 * @typedef {object} ProviderOptions
 * @property {string[]} endpoints ordered regional base URLs, e.g. `https://token.eu.example.com`
 * @property {string} client tokensvc client id
 * @property {() => string | Promise<string>} getCredential returns the caller credential (a JWT
 *   from your identity provider) sent as `Authorization: Bearer ...`; called once per round
 * @property {number} [attemptTimeoutMs] timeout of one request to one endpoint (default 5000)
 * @property {number} [cooldownMs] how long an endpoint that just failed is skipped (default 30000)
 * @property {number} [stickyMs] how long the endpoint that last worked stays first (default 600000)
 * @property {number} [maxRounds] rounds over all endpoints per `fetchToken()` (default 3)
 * @property {number} [backoffBaseMs] back-off after the first failed round (default 500); doubles
 *   per consecutive failed round, with jitter (between half and all of it)
 * @property {number} [backoffMaxMs] largest back-off (default 30000)
 * @property {'browser'|'ios'|'android'} [platform] sent in the body (default "browser")
 * @property {string | (() => string | undefined)} [country] ISO 3166 country hint sent in the body
 * @property {string} [identity] only for tokensvc clients that authenticate with an API key
 * @property {(attempt: Attempt) => void} [onAttempt] called after every attempt (logging, metrics);
 *   it never receives the token or the credential
 * @property {typeof fetch} [fetch] fetch implementation (default `globalThis.fetch`)
 * @property {() => number} [random] random source for the jitter (default `Math.random`)
 *
 * @typedef {object} ProviderStatus
 * @property {string | null} preferred the sticky endpoint, if any
 * @property {{endpoint: string, remainingMs: number}[]} cooling endpoints in cool-down
 * @property {number} backoffRemainingMs time before the next request may be sent
 *
 * @typedef {object} PreflightTokenResponse The service's 200 answer to `POST .../preflight-token`.
 * @property {string} token a short-lived token for the client's echo TwiML app (no incoming grant)
 * @property {string[]} edges the client's configured edge list for the country: one preflight each
 * @property {number} [ttl]
 * @property {string} [expires_at]
 * @property {string} [identity]
 * @property {string | null} [country]
 * @property {string} [region]
 * @property {string} [home_region]
 *
 * @typedef {object} PreflightFigures The `preflight` object of an edge report.
 * @property {string} edge
 * @property {number | null} rtt_ms
 * @property {number | null} jitter_ms
 * @property {number | null} mos
 * @property {'excellent'|'great'|'good'|'fair'|'degraded' | null} quality
 *
 * @typedef {object} EdgeReport The body of `POST .../edge-report` (`identity` is added for
 *   api_key clients).
 * @property {string[]} edges the edge list the Device was given, 1..16 edges
 * @property {string | null} [connected_edge] the edge connected to (`device.edge`), or null
 * @property {number | null} [error_code] the Twilio error code, or null
 * @property {PreflightFigures | null} [preflight]
 *
 * @typedef {object} ReportResult What became of one edge report (never a rejection).
 * @property {boolean} sent true when a region answered 2xx (202)
 * @property {string | null} endpoint the region that answered last, if any
 * @property {number} [status] its HTTP status
 * @property {string} [code] problem+json `code` of a refusal
 * @property {'rejected'|'unavailable'|'backoff'|'credential'|'invalid'} [reason] why not sent:
 *   a 4xx; no region answered in two tries; the provider is backing off; `getCredential` failed;
 *   the report itself is malformed (nothing sent)
 * @property {Attempt[]} attempts
 *
 * @typedef {object} TokenProvider
 * @property {(options?: {signal?: AbortSignal}) => Promise<TokenResponse>} fetchToken
 * @property {(options?: {signal?: AbortSignal}) => Promise<PreflightTokenResponse>} [fetchPreflightToken]
 * @property {(report: EdgeReport) => Promise<ReportResult>} [reportEdges]
 * @property {() => ProviderStatus} status
 * @property {() => void} reset forget stickiness, cool-downs and back-off (e.g. on `online`)
 * @property {readonly string[]} endpoints
 * @property {string | null} lastEndpoint the endpoint that produced the last token
 */

/**
 * @param {ProviderOptions} options
 * @returns {TokenProvider}
 */
export function createTokenProvider(options) {
  const cfg = normalize(options);

  /** @type {string | null} */
  let preferred = null;
  let preferredSince = 0;
  /** @type {Map<string, number>} endpoint -> time its cool-down ends */
  const coolUntil = new Map();
  let failedRounds = 0;
  let notBefore = 0;
  /** @type {string | null} */
  let lastEndpoint = null;

  function order() {
    const now = Date.now();
    if (preferred !== null && now - preferredSince > cfg.stickyMs) preferred = null;
    const sequence = preferred === null
      ? cfg.endpoints
      : [preferred, ...cfg.endpoints.filter((e) => e !== preferred)];
    const isCooling = (/** @type {string} */ e) => (coolUntil.get(e) ?? 0) > now;
    return [...sequence.filter((e) => !isCooling(e)), ...sequence.filter(isCooling)];
  }

  /** @param {string} endpoint */
  function succeeded(endpoint) {
    coolUntil.delete(endpoint);
    if (preferred !== endpoint) {
      preferred = endpoint;
      preferredSince = Date.now();
    }
    failedRounds = 0;
    notBefore = 0;
    lastEndpoint = endpoint;
  }

  /**
   * @param {string} endpoint
   * @param {number} retryAfterMs
   */
  function failed(endpoint, retryAfterMs) {
    coolUntil.set(endpoint, Date.now() + Math.max(cfg.cooldownMs, retryAfterMs));
    if (preferred === endpoint) preferred = null;
  }

  /** @param {number} retryAfterMs */
  function backoff(retryAfterMs) {
    failedRounds += 1;
    const cap = Math.min(cfg.backoffMaxMs, cfg.backoffBaseMs * 2 ** (failedRounds - 1));
    const jittered = cap / 2 + cfg.random() * (cap / 2);
    const delay = Math.round(Math.max(jittered, Math.min(retryAfterMs, cfg.backoffMaxMs)));
    notBefore = Date.now() + delay;
    return delay;
  }

  /**
   * Rounds over the regions until one answers `path` with a token (see the module comment).
   *
   * @param {string} path `token` or `preflight-token`
   * @param {() => Record<string, string>} makeBody
   * @param {{signal?: AbortSignal}} callOptions
   * @returns {Promise<TokenResponse>}
   */
  async function obtain(path, makeBody, callOptions) {
    const { signal } = callOptions;
    signal?.throwIfAborted();
    /** @type {Attempt[]} */
    const attempts = [];
    for (let round = 1; ; round += 1) {
      await sleep(notBefore - Date.now(), signal);
      const credential = await cfg.getCredential();
      const body = JSON.stringify(makeBody());
      let retryAfterMs = 0;
      for (const endpoint of order()) {
        const result = await attempt(cfg, endpoint, path, credential, body, signal, parseTokenResponse);
        attempts.push(result.attempt);
        cfg.onAttempt?.(result.attempt);
        if (result.response) {
          succeeded(endpoint);
          return result.response;
        }
        if (result.final) throw result.final;
        failed(endpoint, result.retryAfterMs);
        retryAfterMs = Math.max(retryAfterMs, result.retryAfterMs);
      }
      const delay = backoff(retryAfterMs);
      if (round >= cfg.maxRounds) throw new TokenUnavailableError(attempts, delay);
    }
  }

  /** @param {{signal?: AbortSignal}} [callOptions] */
  function fetchToken(callOptions = {}) {
    return obtain('token', () => requestBody(cfg), callOptions);
  }

  /** @param {{signal?: AbortSignal}} [callOptions] */
  function fetchPreflightToken(callOptions = {}) {
    return /** @type {Promise<PreflightTokenResponse>} */ (
      obtain('preflight-token', () => preflightBody(cfg), callOptions)
    );
  }

  /**
   * @param {EdgeReport} report
   * @returns {Promise<ReportResult>}
   */
  async function reportEdges(report) {
    /** @type {Attempt[]} */
    const attempts = [];
    const body = reportBody(cfg, report);
    if (body === null) return { sent: false, endpoint: null, reason: 'invalid', attempts };
    if (notBefore > Date.now()) return { sent: false, endpoint: null, reason: 'backoff', attempts };
    let credential;
    try {
      credential = await cfg.getCredential();
    } catch {
      return { sent: false, endpoint: null, reason: 'credential', attempts };
    }
    const rest = order();
    const first = lastEndpoint ?? rest[0];
    const targets = [first, ...rest.filter((e) => e !== first)].slice(0, 2);
    const text = JSON.stringify(body);
    /** @type {string | null} */
    let endpoint = null;
    for (const target of targets) {
      endpoint = target;
      const result = await attempt(cfg, target, 'edge-report', credential, text, undefined, acceptAny);
      attempts.push(result.attempt);
      const { status, code } = result.attempt;
      if (result.response) return { sent: true, endpoint, status, attempts };
      if (result.final) return { sent: false, endpoint, status, code, reason: 'rejected', attempts };
    }
    return { sent: false, endpoint, reason: 'unavailable', attempts };
  }

  return {
    fetchToken,
    fetchPreflightToken,
    reportEdges,
    endpoints: cfg.endpoints,
    get lastEndpoint() {
      return lastEndpoint;
    },
    status() {
      const now = Date.now();
      if (preferred !== null && now - preferredSince > cfg.stickyMs) preferred = null;
      return {
        preferred,
        cooling: [...coolUntil]
          .filter(([, until]) => until > now)
          .map(([endpoint, until]) => ({ endpoint, remainingMs: until - now })),
        backoffRemainingMs: Math.max(0, notBefore - now),
      };
    },
    reset() {
      preferred = null;
      coolUntil.clear();
      failedRounds = 0;
      notBefore = 0;
    },
  };
}

/**
 * @template [R=TokenResponse]
 * @typedef {object} AttemptResult
 * @property {Attempt} attempt
 * @property {R} [response] set on success
 * @property {TokenRequestError} [final] set on a final (non-retryable) answer
 * @property {number} retryAfterMs from a `Retry-After` header, else 0
 */

/**
 * One POST to one endpoint, bounded by `attemptTimeoutMs` (headers and body).
 *
 * @template R
 * @param {ReturnType<typeof normalize>} cfg
 * @param {string} endpoint
 * @param {string} path the last path segment: `token`, `preflight-token`, `edge-report`
 * @param {string} credential
 * @param {string} body
 * @param {AbortSignal | undefined} signal the caller's signal: aborting it aborts the request
 * @param {(text: string) => R | null} parse a 2xx body, or null when it is not what was asked for
 * @returns {Promise<AttemptResult<R>>}
 */
async function attempt(cfg, endpoint, path, credential, body, signal, parse) {
  const url = `${endpoint}/v1/clients/${encodeURIComponent(cfg.client)}/${path}`;
  const started = Date.now();
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, cfg.attemptTimeoutMs);
  const forwardAbort = () => controller.abort();
  signal?.addEventListener('abort', forwardAbort, { once: true });
  /** @param {Omit<Attempt, 'endpoint' | 'elapsedMs'>} fields */
  const record = (fields) => ({ endpoint, elapsedMs: Date.now() - started, ...fields });
  try {
    const res = await cfg.fetch(url, {
      method: 'POST',
      headers: {
        Authorization: `Bearer ${credential}`,
        'Content-Type': 'application/json',
        Accept: 'application/json, application/problem+json',
      },
      body,
      signal: controller.signal,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
    const text = await res.text();
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'));
    if (res.ok) {
      const response = parse(text);
      if (response) return { attempt: record({ outcome: 'ok', status: res.status }), response, retryAfterMs: 0 };
      return { attempt: record({ outcome: 'bad_response', status: res.status }), retryAfterMs: 0 };
    }
    const problem = parseProblem(text);
    const code = typeof problem.code === 'string' ? problem.code : `http_${res.status}`;
    const attemptRecord = record({ outcome: 'http', status: res.status, code });
    if (isRetryableStatus(res.status)) return { attempt: attemptRecord, retryAfterMs };
    const final = new TokenRequestError({
      status: res.status,
      code,
      endpoint,
      title: typeof problem.title === 'string' ? problem.title : '',
      detail: typeof problem.detail === 'string' ? problem.detail : '',
      type: typeof problem.type === 'string' ? problem.type : 'about:blank',
    });
    return { attempt: attemptRecord, final, retryAfterMs: 0 };
  } catch (err) {
    if (signal?.aborted) throw signal.reason;
    return { attempt: record({ outcome: timedOut ? 'timeout' : 'network' }), retryAfterMs: 0 };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', forwardAbort);
  }
}

/**
 * Statuses after which another region may do better: the region is down, overloaded or slow.
 * Every other non-2xx status is the service's final word on this request.
 *
 * @param {number} status
 */
export function isRetryableStatus(status) {
  return status >= 500 || status === 429 || status === 408 || status < 200 || (status >= 300 && status < 400);
}

/** @param {ReturnType<typeof normalize>} cfg */
function requestBody(cfg) {
  /** @type {Record<string, string>} */
  const body = { platform: cfg.platform };
  const country = typeof cfg.country === 'function' ? cfg.country() : cfg.country;
  if (country) body.country = country;
  if (cfg.identity) body.identity = cfg.identity;
  return body;
}

/** @param {ReturnType<typeof normalize>} cfg */
function preflightBody(cfg) {
  const { platform: _platform, ...body } = requestBody(cfg);
  return body;
}

/** Any 2xx answers an edge report (202, no body). */
function acceptAny() {
  return {};
}

const QUALITIES = ['excellent', 'great', 'good', 'fair', 'degraded'];

/**
 * The report as the service takes it, or null when it is malformed (the service would answer
 * 400; nothing is sent).
 *
 * @param {ReturnType<typeof normalize>} cfg
 * @param {EdgeReport} report
 * @returns {Record<string, unknown> | null}
 */
function reportBody(cfg, report) {
  if (report === null || typeof report !== 'object') return null;
  const { edges, connected_edge: connected = null, error_code: code = null, preflight = null } = report;
  if (!Array.isArray(edges) || edges.length === 0 || edges.length > 16 || !edges.every(isEdgeName)) return null;
  if (connected !== null && !isEdgeName(connected)) return null;
  if (code !== null && !(Number.isInteger(code) && code >= 10000 && code <= 99999)) return null;
  /** @type {PreflightFigures | null} */
  let figures = null;
  if (preflight !== null) {
    if (typeof preflight !== 'object' || !isEdgeName(preflight.edge)) return null;
    const quality = preflight.quality ?? null;
    if (quality !== null && !QUALITIES.includes(quality)) return null;
    figures = {
      edge: preflight.edge,
      rtt_ms: finiteOrNull(preflight.rtt_ms),
      jitter_ms: finiteOrNull(preflight.jitter_ms),
      mos: finiteOrNull(preflight.mos),
      quality,
    };
  }
  /** @type {Record<string, unknown>} */
  const body = { edges: [...edges], connected_edge: connected, error_code: code, preflight: figures };
  if (cfg.identity) body.identity = cfg.identity;
  return body;
}

/** @param {unknown} value */
function finiteOrNull(value) {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

/** @param {unknown} value */
function isEdgeName(value) {
  return typeof value === 'string' && EDGE_NAME.test(value);
}

/**
 * @param {string} text
 * @returns {TokenResponse | null} null unless it is a usable token response
 */
function parseTokenResponse(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (data === null || typeof data !== 'object') return null;
  if (typeof data.token !== 'string' || data.token === '') return null;
  if (!Array.isArray(data.edges) || !data.edges.every((/** @type {unknown} */ e) => typeof e === 'string' && EDGE_NAME.test(e))) {
    return null;
  }
  return data;
}

/**
 * @param {string} text
 * @returns {Record<string, unknown>}
 */
function parseProblem(text) {
  try {
    const data = JSON.parse(text);
    return data !== null && typeof data === 'object' ? data : {};
  } catch {
    return {};
  }
}

/**
 * `Retry-After` as milliseconds: delay-seconds or an HTTP date. 0 when absent or unreadable.
 *
 * @param {string | null} value
 */
export function parseRetryAfter(value) {
  if (!value) return 0;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? 0 : Math.max(0, date - Date.now());
}

/**
 * Wait `ms` (nothing if <= 0); rejects with the signal's reason when aborted.
 *
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function sleep(ms, signal) {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.min(ms, MAX_TIMER_MS));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** @param {ProviderOptions} options */
function normalize(options) {
  if (options === null || typeof options !== 'object') throw new TypeError('options are required');
  const { endpoints, client, getCredential } = options;
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new TypeError('endpoints must be a non-empty array of base URLs');
  }
  const bases = endpoints.map((e) => {
    if (typeof e !== 'string') throw new TypeError(`endpoint is not a string: ${String(e)}`);
    const url = new URL(e); // throws TypeError on garbage
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new TypeError(`endpoint must be http(s): ${e}`);
    }
    return e.replace(/\/+$/, '');
  });
  if (new Set(bases).size !== bases.length) throw new TypeError('endpoints must be distinct');
  if (typeof client !== 'string' || client === '') throw new TypeError('client is required');
  if (typeof getCredential !== 'function') throw new TypeError('getCredential must be a function');
  const fetchImpl = options.fetch ?? globalThis.fetch;
  if (typeof fetchImpl !== 'function') throw new TypeError('no fetch implementation available');
  const cfg = {
    endpoints: Object.freeze(bases),
    client,
    getCredential,
    attemptTimeoutMs: positive(options.attemptTimeoutMs, DEFAULTS.attemptTimeoutMs, 'attemptTimeoutMs'),
    cooldownMs: nonNegative(options.cooldownMs, DEFAULTS.cooldownMs, 'cooldownMs'),
    stickyMs: nonNegative(options.stickyMs, DEFAULTS.stickyMs, 'stickyMs'),
    maxRounds: Math.floor(positive(options.maxRounds, DEFAULTS.maxRounds, 'maxRounds')),
    backoffBaseMs: nonNegative(options.backoffBaseMs, DEFAULTS.backoffBaseMs, 'backoffBaseMs'),
    backoffMaxMs: nonNegative(options.backoffMaxMs, DEFAULTS.backoffMaxMs, 'backoffMaxMs'),
    platform: options.platform ?? DEFAULTS.platform,
    country: options.country,
    identity: options.identity,
    onAttempt: options.onAttempt,
    // Called unbound: browsers throw "Illegal invocation" when fetch's `this` is not the window.
    fetch: /** @type {typeof fetch} */ ((input, init) => fetchImpl(input, init)),
    random: options.random ?? Math.random,
  };
  return cfg;
}

/**
 * @param {number | undefined} value
 * @param {number} fallback
 * @param {string} name
 */
function positive(value, fallback, name) {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new TypeError(`${name} must be > 0`);
  return Math.min(v, MAX_TIMER_MS);
}

/**
 * @param {number | undefined} value
 * @param {number} fallback
 * @param {string} name
 */
function nonNegative(value, fallback, name) {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new TypeError(`${name} must be >= 0`);
  return Math.min(v, MAX_TIMER_MS);
}
