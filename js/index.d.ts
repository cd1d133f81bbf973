// Type declarations of the tokensvc browser helper (src/index.js). Keep in step with the JSDoc.

/** The service's 200 answer to `POST /v1/clients/{client}/token`. */
export interface TokenResponse {
  /** The Twilio Voice Access Token (a JWT). Never log it. */
  token: string;
  /** Ordered edge names for the Device, e.g. `["dublin", "frankfurt", "ashburn"]`. */
  edges: string[];
  /** Seconds after which to fetch a new token (already jittered by the service). */
  refresh_in?: number;
  /** Token lifetime in seconds. */
  ttl?: number;
  /** RFC 3339 UTC expiry time. */
  expires_at?: string;
  identity?: string;
  /** Region of the tokensvc deployment that answered. */
  region?: string;
  /** Twilio home region of the client's account (`us1`, `ie1`, `au1`). */
  home_region?: string;
  [key: string]: unknown;
}

/** One request to one regional endpoint. */
export interface Attempt {
  endpoint: string;
  outcome: 'ok' | 'network' | 'timeout' | 'http' | 'bad_response';
  status?: number;
  /** problem+json `code`, or `http_<status>` when the body was not problem+json. */
  code?: string;
  elapsedMs: number;
}

export interface ProviderOptions {
  /** Ordered regional base URLs, e.g. `["https://token.eu.example.com", "https://token.us.example.com"]`. */
  endpoints: string[];
  /** tokensvc client id. */
  client: string;
  /** Returns the caller credential sent as `Authorization: Bearer ...`; called once per round. */
  getCredential: () => string | Promise<string>;
  /** Timeout of one request to one endpoint, headers and body (default 5000). */
  attemptTimeoutMs?: number;
  /** How long an endpoint that just failed is skipped (default 30000). */
  cooldownMs?: number;
  /** How long the endpoint that last worked is tried first (default 600000). */
  stickyMs?: number;
  /** Rounds over all endpoints per `fetchToken()` (default 3). */
  maxRounds?: number;
  /** Back-off after the first failed round, doubling per failed round, jittered (default 500). */
  backoffBaseMs?: number;
  /** Largest back-off (default 30000). */
  backoffMaxMs?: number;
  /** Sent in the body (default "browser"). */
  platform?: 'browser' | 'ios' | 'android';
  /** ISO 3166 country hint sent in the body. */
  country?: string | (() => string | undefined);
  /** Only for tokensvc clients that authenticate with an API key. */
  identity?: string;
  /** Called after every attempt; never receives the token or the credential. */
  onAttempt?: (attempt: Attempt) => void;
  /** fetch implementation (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Random source for the jitter (default `Math.random`). */
  random?: () => number;
}

export interface ProviderStatus {
  preferred: string | null;
  cooling: { endpoint: string; remainingMs: number }[];
  backoffRemainingMs: number;
}

/** The service's 200 answer to `POST /v1/clients/{client}/preflight-token`. */
export interface PreflightTokenResponse {
  /** A short-lived token for the client's echo TwiML app: no incoming grant, no push. */
  token: string;
  /** The client's configured edge list for the country (no drains, no adaptive order). */
  edges: string[];
  ttl?: number;
  expires_at?: string;
  identity?: string;
  country?: string | null;
  region?: string;
  home_region?: string;
  [key: string]: unknown;
}

/** The grade voice-sdk's PreflightTest gives a call (`report.callQuality`). */
export type CallQuality = 'excellent' | 'great' | 'good' | 'fair' | 'degraded';

/** The `preflight` object of an edge report. */
export interface PreflightFigures {
  edge: string;
  rtt_ms: number | null;
  jitter_ms: number | null;
  mos: number | null;
  quality: CallQuality | null;
}

/** The body of `POST /v1/clients/{client}/edge-report` (`identity` is added for api_key clients). */
export interface EdgeReport {
  /** The edge list the Device was given, 1..16 edges. */
  edges: string[];
  /** The edge connected to (`device.edge`), or null: none. */
  connected_edge?: string | null;
  /** The Twilio error code seen, or null. */
  error_code?: number | null;
  preflight?: PreflightFigures | null;
}

/** What became of one edge report. `reportEdges` never rejects. */
export interface ReportResult {
  /** A region answered 2xx (202). */
  sent: boolean;
  /** The region that answered last, if any. */
  endpoint: string | null;
  status?: number;
  /** problem+json `code` of a refusal. */
  code?: string;
  /**
   * Why it was not sent: a 4xx (`rejected`); no region answered in two tries (`unavailable`);
   * the provider is backing off (`backoff`); `getCredential` failed (`credential`); the report is
   * malformed and nothing was sent (`invalid`).
   */
  reason?: 'rejected' | 'unavailable' | 'backoff' | 'credential' | 'invalid';
  attempts: Attempt[];
}

export interface TokenProvider {
  /**
   * Fetch a token, failing over between endpoints.
   * @throws {TokenRequestError} a final answer (400/401/403/404...)
   * @throws {TokenUnavailableError} no endpoint produced a token
   */
  fetchToken(options?: { signal?: AbortSignal }): Promise<TokenResponse>;
  /**
   * Fetch a preflight token the same way (rounds, cool-downs, back-off).
   * @throws {TokenRequestError} e.g. `no_preflight_app` (404) when the client has no preflight app
   * @throws {TokenUnavailableError}
   */
  fetchPreflightToken?(options?: { signal?: AbortSignal }): Promise<PreflightTokenResponse>;
  /**
   * Send one edge report to the region of the last token (one other region after a retryable
   * failure, never more). Never rejects; changes no failover state.
   */
  reportEdges?(report: EdgeReport): Promise<ReportResult>;
  /** Stickiness, cool-downs and back-off, for diagnostics. */
  status(): ProviderStatus;
  /** Forget stickiness, cool-downs and back-off (e.g. on the browser's `online` event). */
  reset(): void;
  readonly endpoints: readonly string[];
  /** The endpoint that produced the last token. */
  readonly lastEndpoint: string | null;
}

/** The provider `createTokenProvider` returns: it has every optional method. */
export interface FullTokenProvider extends TokenProvider {
  fetchPreflightToken(options?: { signal?: AbortSignal }): Promise<PreflightTokenResponse>;
  reportEdges(report: EdgeReport): Promise<ReportResult>;
}

export function createTokenProvider(options: ProviderOptions): FullTokenProvider;
/** True for statuses after which another region may do better (5xx, 408, 429). */
export function isRetryableStatus(status: number): boolean;
/** `Retry-After` (seconds or HTTP date) in milliseconds; 0 when absent or unreadable. */
export function parseRetryAfter(value: string | null): number;

/** The service's problem+json codes (tokensvc/errors.py `api_errors()`). */
export type ProblemCode =
  | 'invalid_request'
  | 'unauthenticated'
  | 'forbidden'
  | 'unknown_client'
  | 'not_found'
  | 'no_preflight_app'
  | 'method_not_allowed'
  | 'request_timeout'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'headers_too_large'
  | 'not_ready'
  | 'internal'
  | 'http_version_not_supported';

/** Every `ProblemCode`, in the service's order. */
export const PROBLEM_CODES: readonly ProblemCode[];

export class TokenProviderError extends Error {
  constructor(message: string, options?: { cause?: unknown });
}

/** A final answer from the service: do not fail over. Switch on `code`. */
export class TokenRequestError extends TokenProviderError {
  constructor(init: {
    status: number;
    code: string;
    endpoint: string;
    title?: string;
    detail?: string;
    type?: string;
  });
  readonly name: 'TokenRequestError';
  status: number;
  /** A `ProblemCode` (`unauthenticated`, `no_preflight_app`...), or `http_<status>` from a proxy. */
  code: ProblemCode | `http_${number}` | (string & {});
  endpoint: string;
  title: string;
  detail: string;
  type: string;
}

/** No endpoint produced a token. */
export class TokenUnavailableError extends TokenProviderError {
  constructor(attempts: Attempt[], retryInMs: number);
  readonly name: 'TokenUnavailableError';
  code: 'unavailable';
  attempts: Attempt[];
  /** Back-off the provider honours before its next request. */
  retryInMs: number;
}

type Listener = (...args: any[]) => void;

/** What the binding uses of a voice-sdk `Call`. */
export interface CallLike {
  on?(event: string, listener: Listener): unknown;
  off?(event: string, listener: Listener): unknown;
  removeListener?(event: string, listener: Listener): unknown;
}

/** What the binding uses of a voice-sdk `Device`. */
export interface DeviceLike {
  on(event: string, listener: Listener): unknown;
  off?(event: string, listener: Listener): unknown;
  removeListener?(event: string, listener: Listener): unknown;
  updateToken(token: string): void;
  updateOptions(options: { edge?: string | string[] }): void;
  readonly isBusy?: boolean;
  readonly calls?: ReadonlyArray<CallLike>;
  /** The edge the Device connected to (voice-sdk sets it on `registered`). */
  readonly edge?: string | null;
}

/** What the binding did about a Device `error` event. */
export type DeviceErrorAction = 'refresh' | 'sdk_fallback' | 'none';

/** Token errors: the binding fetches a new token at once and never changes edges. */
export const TOKEN_ERROR_CODES: readonly number[];
/** Connection errors: left to the SDK's edge fallback; no token request. */
export const CONNECTION_ERROR_CODES: readonly number[];

export interface BindOptions<D extends DeviceLike = DeviceLike> {
  /** Update this Device instead of creating one. */
  device?: D;
  /** Passed to `new Device(token, ...)`; `edge` is always set from the service's answer. */
  deviceOptions?: Record<string, unknown>;
  /** Shortest delay between refreshes (default 5000). */
  minRefreshMs?: number;
  /** Delay before retrying after a final error such as 401 (default 30000). */
  retryMs?: number;
  /** How often to check whether calls ended while an edge change waits (default 1000). */
  idleCheckMs?: number;
  onToken?: (response: TokenResponse) => void;
  onEdgesChanged?: (edges: string[]) => void;
  /** A refresh failed (default: `console.warn` with the message). */
  onError?: (error: unknown) => void;
  /** The Device emitted `error`, and what the binding did about it. */
  onDeviceError?: (error: { code?: number; message?: string }, action: DeviceErrorAction) => void;
  /**
   * Send an edge report after each registration and after a connection error (at most one per
   * registration attempt). Default true.
   */
  reportEdges?: boolean;
  /** After each edge report the binding sent. */
  onReport?: (result: ReportResult, report: EdgeReport) => void;
}

export interface DeviceBinding<D extends DeviceLike = DeviceLike> {
  readonly device: D;
  /** Fetch and apply a token now (shares an in-flight refresh). */
  refresh(): Promise<TokenResponse>;
  /** Clear timers and listeners. Does not destroy the Device. */
  stop(): void;
  /** The edge list the Device is using. */
  readonly edges: readonly string[];
  /** An edge list waiting for calls to end. */
  readonly pendingEdges: readonly string[] | null;
  /** The edge the Device is connected to (read on `registered`), or null. */
  readonly edge: string | null;
  readonly stopped: boolean;
}

/**
 * Create (or update) a Device with a token and edges from tokensvc and keep both fresh.
 * Pass the `Device` class of `@twilio/voice-sdk`.
 */
export function bindDevice<D extends DeviceLike>(
  Device: new (token: string, options: Record<string, any>) => D,
  provider: TokenProvider,
  options?: BindOptions<D>,
): Promise<DeviceBinding<D>>;

/** True while the Device has any call, active or ringing. */
export function isBusy(device: DeviceLike): boolean;

/** What `runPreflight` uses of voice-sdk's `PreflightTest`. */
export interface PreflightTestLike {
  on(event: string, listener: Listener): unknown;
  off?(event: string, listener: Listener): unknown;
  removeListener?(event: string, listener: Listener): unknown;
  stop?(): void;
}

/** The `Device` class as `runPreflight` uses it: its static `runPreflight(token, {edge})`. */
export interface PreflightDevice {
  runPreflight(token: string, options: Record<string, any>): PreflightTestLike;
}

/** One edge's preflight run. */
export interface PreflightResult {
  /** The edge asked for. */
  edge: string;
  /** The test completed. */
  ok: boolean;
  /** The edge the test call connected to (the report's `edge`); null on failure. */
  connectedEdge: string | null;
  /** `report.stats.rtt.average` (ms). */
  rttMs: number | null;
  /** `report.stats.jitter.average` (ms). */
  jitterMs: number | null;
  /** `report.stats.mos.average`. */
  mos: number | null;
  /** `report.callQuality`. */
  quality: CallQuality | null;
  /** The Twilio error code `failed` carried. */
  errorCode: number | null;
  failure: 'failed' | 'timeout' | null;
  /** `report.networkTiming`, as the SDK gave it. */
  networkTiming?: unknown;
  /** What `failed` carried. */
  error?: unknown;
  /** What became of the edge report (null: none sent). */
  reported: ReportResult | null;
}

export interface RunPreflightOptions {
  /** Edges to test (default: the preflight token's list). */
  edges?: string[];
  /** After each run, before its report settled. */
  onResult?: (result: PreflightResult) => void;
  /** More `runPreflight` options (`fakeMicInput`, `iceServers`...); `edge` is set per run. */
  preflightOptions?: Record<string, unknown>;
  /** Give up on one run after this long (default 60000). */
  timeoutMs?: number;
  /** Fetch a new preflight token when less than this is left (default 60000). */
  renewBeforeMs?: number;
  /** Send one edge report per run (default true). */
  report?: boolean;
  /** Stops the running test and rejects with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * Fetch a preflight token, run `Device.runPreflight(token, {edge})` once per edge, one after the
 * other, report each run, and resolve with the results in order.
 * @throws {TokenRequestError} `no_preflight_app` when the client has no preflight app
 */
export function runPreflight(
  Device: PreflightDevice,
  provider: TokenProvider,
  options?: RunPreflightOptions,
): Promise<PreflightResult[]>;
