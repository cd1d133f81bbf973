/**
 * tokensvc browser helper: regional failover for the token endpoint, edges into the Twilio Voice
 * Device, tokens kept fresh, edge reports and preflight runs. No runtime dependencies; pass the
 * SDK's `Device` class in.
 *
 * @module
 */

export { createTokenProvider, isRetryableStatus, parseRetryAfter } from './provider.js';
export { CONNECTION_ERROR_CODES, TOKEN_ERROR_CODES, bindDevice, isBusy } from './device.js';
export { runPreflight } from './preflight.js';
export { PROBLEM_CODES, TokenProviderError, TokenRequestError, TokenUnavailableError } from './errors.js';
