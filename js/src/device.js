/**
 * Binds a Twilio Voice `Device` to a token provider: creates (or updates) the Device with the
 * token and edge list from tokensvc, keeps the token fresh, and applies edge-list changes only
 * between calls.
 *
 * The `Device` class is a parameter (pass the one from `@twilio/voice-sdk`); this module imports
 * nothing from the SDK. What it relies on, all present in voice-sdk 2.x:
 *   `new Device(token, options)`, `device.updateToken(token)`, `device.updateOptions({edge})`,
 *   `device.on/off(event, fn)` (or `removeListener`), the `tokenWillExpire` and `destroyed` events,
 *   `device.isBusy` and `device.calls` (calls emit `disconnect`, `cancel`, `reject`, `error`).
 *
 * Refreshes are driven by two clocks: the Device's `tokenWillExpire` event and a timer armed from
 * the service's `refresh_in` (the SDK's event has fired only once in some releases). Both lead to
 * the same single in-flight refresh.
 *
 * Edge reports (unless `reportEdges: false`, and when the provider has `reportEdges`): one after
 * each `registered` event (`{edges: <the list the Device was given>, connected_edge: device.edge
 * || null, error_code: null}`), and one after a Device error with a connection code
 * (`CONNECTION_ERROR_CODES`: `connected_edge: null` and the code), at most one such per
 * registration attempt (an attempt ends with `registering` or `registered`). Reports are
 * fire-and-forget: nothing waits for them and they never fail the binding.
 *
 * @module
 */

import { MAX_TIMER_MS } from './provider.js';
import { TokenUnavailableError } from './errors.js';

/** Events after which a call no longer blocks an edge change. */
const CALL_END_EVENTS = ['disconnect', 'cancel', 'reject', 'error'];

/**
 * Twilio error codes that mean "this token is bad" (expired, invalid signature, wrong key or
 * grant). A new token is the fix; a new edge is not, so these never rotate edges.
 * With `enableImprovedSignalingErrorPrecision` off (the SDK's default), 31202 arrives as 53000
 * and 31204/31205 as 31005, indistinguishable from network faults: the binding turns it on.
 */
export const TOKEN_ERROR_CODES = Object.freeze([
  20101, 20103, 20104, 20107, 20151, 20157, 31202, 31204, 31205, 31207,
]);

/**
 * Connection errors: the SDK's own edge fallback (WebSocket close 1006/1015, 5 s connect timeout)
 * handles them by moving to the next edge of the list. The binding never fetches a token for them.
 */
export const CONNECTION_ERROR_CODES = Object.freeze([31005, 31009, 53000]);

/** The SDK option that separates token errors from connection errors. */
const PRECISION_FLAG = 'enableImprovedSignalingErrorPrecision';

/**
 * @typedef {import('./provider.js').TokenProvider} TokenProvider
 * @typedef {import('./provider.js').TokenResponse} TokenResponse
 *
 * @typedef {object} Emitter
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} on
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} [off]
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} [removeListener]
 *
 * @typedef {Emitter & {
 *   updateToken(token: string): void,
 *   updateOptions(options: {edge?: string | string[]}): void,
 *   readonly isBusy?: boolean,
 *   readonly calls?: ReadonlyArray<Partial<Emitter>>,
 * }} DeviceLike
 *
 * @typedef {object} BindOptions
 * @property {DeviceLike} [device] update this Device instead of creating one
 * @property {Record<string, unknown>} [deviceOptions] passed to `new Device(token, ...)`; `edge`
 *   is always set from the service's answer
 * @property {number} [minRefreshMs] shortest delay between refreshes (default 5000)
 * @property {number} [retryMs] delay before retrying after a final error such as 401 (default
 *   30000); after `TokenUnavailableError` the provider's back-off is used instead
 * @property {number} [idleCheckMs] how often to check whether calls ended while an edge change
 *   waits (default 1000); call events also trigger the check
 * @property {(response: TokenResponse) => void} [onToken] after each refreshed token was applied
 * @property {(edges: string[]) => void} [onEdgesChanged] after a new edge list was applied
 * @property {(error: unknown) => void} [onError] a refresh failed (default: `console.warn`)
 * @property {(error: {code?: number, message?: string}, action: DeviceErrorAction) => void}
 *   [onDeviceError] the Device emitted `error`; `action` says what the binding did about it
 * @property {boolean} [reportEdges] send edge reports after registrations and connection errors
 *   (default true)
 * @property {(result: import('./provider.js').ReportResult,
 *   report: import('./provider.js').EdgeReport) => void} [onReport] after each edge report
 *
 * @typedef {'refresh' | 'sdk_fallback' | 'none'} DeviceErrorAction
 *   `refresh`: a token error, a new token was requested at once (never a new edge);
 *   `sdk_fallback`: a connection error, left to the SDK's edge fallback (no token request);
 *   `none`: anything else
 *
 * @typedef {object} DeviceBinding
 * @property {DeviceLike} device
 * @property {() => Promise<TokenResponse>} refresh fetch and apply a token now
 * @property {() => void} stop clear timers and listeners; does not destroy the Device
 * @property {readonly string[]} edges the edge list the Device is using
 * @property {readonly string[] | null} pendingEdges an edge list waiting for calls to end
 * @property {string | null} edge the edge the Device is connected to (`device.edge`, read on
 *   `registered`), or null before the first registration
 * @property {boolean} stopped
 */

/**
 * @template {DeviceLike} D
 * @param {new (token: string, options: Record<string, unknown>) => D} Device
 * @param {TokenProvider} provider
 * @param {BindOptions} [options]
 * @returns {Promise<DeviceBinding & {device: D}>}
 */
export async function bindDevice(Device, provider, options = {}) {
  if (typeof Device !== 'function') throw new TypeError('Device must be the Device class');
  if (!provider || typeof provider.fetchToken !== 'function') throw new TypeError('provider is required');
  const minRefreshMs = options.minRefreshMs ?? 5000;
  const retryMs = options.retryMs ?? 30_000;
  const idleCheckMs = options.idleCheckMs ?? 1000;
  const onError = options.onError ?? defaultOnError;
  const controller = new AbortController();

  const first = await provider.fetchToken({ signal: controller.signal });
  /** @type {D} */
  let device;
  /** @type {string[] | null} edges the Device is known to use */
  let currentEdges = null;
  if (options.device) {
    device = /** @type {D} */ (options.device);
    device.updateToken(first.token);
  } else {
    const deviceOptions = { ...options.deviceOptions };
    // Unless the app chose, tell token errors from network faults (see TOKEN_ERROR_CODES).
    if (!(PRECISION_FLAG in deviceOptions)) deviceOptions[PRECISION_FLAG] = true;
    device = new Device(first.token, { ...deviceOptions, edge: edgeOption(first.edges) });
    currentEdges = [...first.edges];
  }

  let stopped = false;
  /** @type {string[] | null} */
  let pendingEdges = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  let refreshTimer;
  /** @type {ReturnType<typeof setInterval> | undefined} */
  let idleTimer;
  /** @type {Promise<TokenResponse> | null} */
  let inflight = null;
  /** @type {Array<() => void>} undo functions of listeners added to calls */
  let callListeners = [];

  const onWillExpire = () => {
    refresh().catch(() => {}); // reported through onError
  };
  const onDestroyed = () => stop();
  /** @type {string | null} */
  let connectedEdge = null;
  /** A connection error was reported in this registration attempt (debounce). */
  let errorReported = false;
  const reporting = options.reportEdges !== false && typeof provider.reportEdges === 'function';
  /** @param {string | null} connected @param {number | null} errorCode */
  function sendReport(connected, errorCode) {
    if (!reporting || stopped || !provider.reportEdges) return;
    const report = {
      edges: edgeOption(currentEdges ?? []),
      connected_edge: connected,
      error_code: errorCode,
    };
    provider.reportEdges(report).then(
      (result) => options.onReport?.(result, report),
      () => {}, // reportEdges never rejects; a custom provider might
    );
  }
  const onRegistering = () => {
    errorReported = false;
  };
  const onRegistered = () => {
    const edge = /** @type {{edge?: unknown}} */ (device).edge;
    connectedEdge = typeof edge === 'string' && edge ? edge : null;
    errorReported = false;
    sendReport(connectedEdge, null);
  };
  /** @param {{code?: number, message?: string} | undefined} error */
  const onDeviceError = (error) => {
    const code = typeof error?.code === 'number' ? error.code : NaN;
    /** @type {DeviceErrorAction} */
    let action = 'none';
    if (TOKEN_ERROR_CODES.includes(code)) {
      action = 'refresh';
      tokenErrorRefresh();
    } else if (CONNECTION_ERROR_CODES.includes(code)) {
      action = 'sdk_fallback';
      if (!errorReported) {
        errorReported = true;
        sendReport(null, code);
      }
    }
    options.onDeviceError?.(error ?? {}, action);
  };
  device.on('tokenWillExpire', onWillExpire);
  device.on('destroyed', onDestroyed);
  device.on('registering', onRegistering);
  device.on('registered', onRegistered);
  device.on('error', onDeviceError);

  /** When the last token-error refresh started (debounce: one per minRefreshMs). */
  let lastTokenErrorRefresh = -Infinity;
  function tokenErrorRefresh() {
    if (stopped || inflight) return; // one request in flight: it brings the new token
    const now = Date.now();
    if (now - lastTokenErrorRefresh < minRefreshMs) return;
    lastTokenErrorRefresh = now;
    refresh().catch(() => {}); // reported through onError
  }

  /** @param {number} ms */
  function schedule(ms) {
    clearTimeout(refreshTimer);
    if (stopped) return;
    refreshTimer = setTimeout(onWillExpire, Math.min(Math.max(ms, 0), MAX_TIMER_MS));
  }

  /** @param {TokenResponse} response */
  function refreshDelayMs(response) {
    const seconds = typeof response.refresh_in === 'number' && response.refresh_in > 0
      ? response.refresh_in
      : typeof response.ttl === 'number' && response.ttl > 0
        ? response.ttl * 0.75
        : 60;
    return Math.max(seconds * 1000, minRefreshMs);
  }

  /** @returns {Promise<TokenResponse>} */
  function refresh() {
    if (stopped) return Promise.reject(new Error('device binding is stopped'));
    if (inflight) return inflight;
    clearTimeout(refreshTimer);
    inflight = (async () => {
      try {
        const response = await provider.fetchToken({ signal: controller.signal });
        if (stopped) return response;
        device.updateToken(response.token);
        applyEdges(response.edges);
        schedule(refreshDelayMs(response));
        options.onToken?.(response);
        return response;
      } catch (err) {
        if (!stopped) {
          schedule(err instanceof TokenUnavailableError ? err.retryInMs : retryMs);
          onError(err);
        }
        throw err;
      } finally {
        inflight = null;
      }
    })();
    return inflight;
  }

  /** @param {string[]} edges */
  function applyEdges(edges) {
    if (currentEdges !== null && sameList(edges, currentEdges)) {
      pendingEdges = null;
      unwatchIdle();
      return;
    }
    if (isBusy(device)) {
      pendingEdges = [...edges];
      watchIdle();
      return;
    }
    try {
      device.updateOptions({ edge: edgeOption(edges) });
    } catch (err) {
      // A call started between the check and the update (the SDK refuses edge changes then).
      pendingEdges = [...edges];
      watchIdle();
      onError(err);
      return;
    }
    currentEdges = [...edges];
    pendingEdges = null;
    unwatchIdle();
    options.onEdgesChanged?.([...edges]);
  }

  function checkIdle() {
    if (stopped || pendingEdges === null) return;
    if (isBusy(device)) {
      listenToCalls(); // calls may have started since the edge change was deferred
      return;
    }
    applyEdges(pendingEdges);
  }

  function watchIdle() {
    if (idleTimer === undefined) idleTimer = setInterval(checkIdle, idleCheckMs);
    listenToCalls();
  }

  function listenToCalls() {
    unlistenCalls();
    for (const call of device.calls ?? []) {
      if (typeof call.on !== 'function') continue;
      // The Device drops an ended call in its own listener; look after it has run.
      const nudge = () => setTimeout(checkIdle, 0);
      for (const event of CALL_END_EVENTS) {
        call.on(event, nudge);
        callListeners.push(() => removeListener(call, event, nudge));
      }
    }
  }

  function unlistenCalls() {
    for (const undo of callListeners) undo();
    callListeners = [];
  }

  function unwatchIdle() {
    clearInterval(idleTimer);
    idleTimer = undefined;
    unlistenCalls();
  }

  function stop() {
    if (stopped) return;
    stopped = true;
    controller.abort();
    clearTimeout(refreshTimer);
    unwatchIdle();
    removeListener(device, 'tokenWillExpire', onWillExpire);
    removeListener(device, 'destroyed', onDestroyed);
    removeListener(device, 'registering', onRegistering);
    removeListener(device, 'registered', onRegistered);
    removeListener(device, 'error', onDeviceError);
  }

  if (currentEdges === null) applyEdges(first.edges);
  schedule(refreshDelayMs(first));

  return {
    device,
    refresh,
    stop,
    get edges() {
      return currentEdges === null ? [] : [...currentEdges];
    },
    get pendingEdges() {
      return pendingEdges === null ? null : [...pendingEdges];
    },
    get edge() {
      return connectedEdge;
    },
    get stopped() {
      return stopped;
    },
  };
}

/**
 * True while the Device has an active call or any call (a ringing incoming one too): changing the
 * edge re-opens the signalling connection, which would drop them.
 *
 * @param {DeviceLike} device
 */
export function isBusy(device) {
  return device.isBusy === true || (Array.isArray(device.calls) && device.calls.length > 0);
}

/**
 * The Device's `edge` option; an empty list means the SDK default (`roaming`).
 *
 * @param {readonly string[]} edges
 * @returns {string[]}
 */
function edgeOption(edges) {
  return edges.length > 0 ? [...edges] : ['roaming'];
}

/**
 * @param {readonly string[]} a
 * @param {readonly string[]} b
 */
function sameList(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * @param {Partial<Emitter>} target
 * @param {string} event
 * @param {(...args: any[]) => void} listener
 */
function removeListener(target, event, listener) {
  const remove = target.off ?? target.removeListener;
  if (typeof remove === 'function') remove.call(target, event, listener);
}

/** @param {unknown} err */
function defaultOnError(err) {
  // The message names endpoints and statuses only, never the token or the credential.
  console.warn('[tokensvc] token refresh failed:', err instanceof Error ? err.message : err);
}
