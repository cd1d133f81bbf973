/**
 * Errors raised by the token provider.
 *
 *     TokenProviderError            base of everything this package throws on purpose
 *     ├── TokenRequestError         a region gave a final answer (400/401/403/404...): do not fail over
 *     └── TokenUnavailableError     no region produced a token (network, timeout, 5xx, 429)
 *
 * Switch on `code` (the service's problem+json `code`), never on `message`.
 *
 * @module
 */

/**
 * The service's problem+json codes (tokensvc/errors.py `api_errors()`, in its order; a Python
 * test keeps the two lists equal). `TokenRequestError.code` is one of these, or `http_<status>`
 * when a proxy answered instead of tokensvc.
 *
 * - `no_preflight_app` (404): `fetchPreflightToken()` for a client without a `preflight` section.
 */
export const PROBLEM_CODES = Object.freeze([
  'invalid_request',
  'unauthenticated',
  'forbidden',
  'unknown_client',
  'not_found',
  'no_preflight_app',
  'method_not_allowed',
  'request_timeout',
  'payload_too_large',
  'unsupported_media_type',
  'rate_limited',
  'headers_too_large',
  'not_ready',
  'internal',
  'http_version_not_supported',
]);

/** Base of every error this package throws on purpose. */
export class TokenProviderError extends Error {
  /**
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = 'TokenProviderError';
  }
}

/**
 * A region answered with a final error (the request itself is wrong: bad credential, unknown
 * client, forbidden identity...). Asking another region would give the same answer, so the
 * provider stops and surfaces it.
 */
export class TokenRequestError extends TokenProviderError {
  /**
   * @param {object} init
   * @param {number} init.status HTTP status
   * @param {string} init.code problem+json `code` (e.g. "unauthenticated"), or `http_<status>`
   *   when the body was not problem+json (a proxy answered, not tokensvc)
   * @param {string} init.endpoint the base URL that answered
   * @param {string} [init.title]
   * @param {string} [init.detail]
   * @param {string} [init.type]
   */
  constructor({ status, code, endpoint, title = '', detail = '', type = 'about:blank' }) {
    super(`token request rejected by ${endpoint}: ${status} ${code}${detail ? ` (${detail})` : ''}`);
    this.name = 'TokenRequestError';
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.code = code;
    /** @type {string} */
    this.endpoint = endpoint;
    /** @type {string} */
    this.title = title;
    /** @type {string} */
    this.detail = detail;
    /** @type {string} */
    this.type = type;
  }
}

/**
 * @typedef {object} Attempt One request to one region.
 * @property {string} endpoint base URL tried
 * @property {'ok'|'network'|'timeout'|'http'|'bad_response'} outcome
 * @property {number} [status] HTTP status, when one was received
 * @property {string} [code] problem+json `code`, when one was received
 * @property {number} elapsedMs time from sending to the outcome
 */

/**
 * Every region was tried (possibly over several rounds with back-off) and none produced a token.
 * `retryInMs` is the back-off the provider will honour before its next request.
 */
export class TokenUnavailableError extends TokenProviderError {
  /**
   * @param {Attempt[]} attempts
   * @param {number} retryInMs
   */
  constructor(attempts, retryInMs) {
    const summary = attempts
      .map((a) => `${a.endpoint}: ${a.outcome}${a.status ? ` ${a.status}` : ''}`)
      .join('; ');
    super(`no token endpoint answered (${summary})`);
    this.name = 'TokenUnavailableError';
    /** @type {string} */
    this.code = 'unavailable';
    /** @type {Attempt[]} */
    this.attempts = attempts;
    /** @type {number} */
    this.retryInMs = retryInMs;
  }
}
