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
 * @typedef {object} TokenProvider
 * @property {(options?: {signal?: AbortSignal}) => Promise<TokenResponse>} fetchToken
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

  /** @param {{signal?: AbortSignal}} [callOptions] */
  async function fetchToken(callOptions = {}) {
    const { signal } = callOptions;
    signal?.throwIfAborted();
    /** @type {Attempt[]} */
    const attempts = [];
    for (let round = 1; ; round += 1) {
      await sleep(notBefore - Date.now(), signal);
      const credential = await cfg.getCredential();
      const body = JSON.stringify(requestBody(cfg));
      let retryAfterMs = 0;
      for (const endpoint of order()) {
        const result = await attempt(cfg, endpoint, credential, body, signal);
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

  return {
    fetchToken,
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
 * @typedef {object} AttemptResult
 * @property {Attempt} attempt
 * @property {TokenResponse} [response] set on success
 * @property {TokenRequestError} [final] set on a final (non-retryable) answer
 * @property {number} retryAfterMs from a `Retry-After` header, else 0
 */

/**
 * One request to one endpoint, bounded by `attemptTimeoutMs` (headers and body).
 *
 * @param {ReturnType<typeof normalize>} cfg
 * @param {string} endpoint
 * @param {string} credential
 * @param {string} body
 * @param {AbortSignal | undefined} signal the caller's signal: aborting it aborts `fetchToken()`
 * @returns {Promise<AttemptResult>}
 */
async function attempt(cfg, endpoint, credential, body, signal) {
  const url = `${endpoint}/v1/clients/${encodeURIComponent(cfg.client)}/token`;
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
      const response = parseTokenResponse(text);
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
