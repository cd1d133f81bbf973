/**
 * Preflight runs: one real test call per edge with a preflight token, each reported to tokensvc.
 *
 *     provider.fetchPreflightToken()            a short-lived token for the client's echo TwiML app
 *     for each edge (the token's list, or options.edges), one at a time:
 *       Device.runPreflight(token, {edge})     voice-sdk 2.x's PreflightTest
 *       'completed' (report) | 'failed' (error) | timeout (test.stop())
 *       provider.reportEdges({edges: [edge], connected_edge, error_code, preflight})
 *     -> one PreflightResult per edge, in order (after every report has settled)
 *
 * What is read of the SDK's `PreflightTest.Report` (voice-sdk 2.18 `lib/twilio/preflight/
 * preflight.ts`): `edge` (the edge the test call connected to, `device.edge`), `selectedEdge`
 * (the `edge` option given), `stats.rtt.average` / `stats.jitter.average` (milliseconds) /
 * `stats.mos.average` (absent when no sample had a MOS), `callQuality` (`excellent`, `great`,
 * `good`, `fair`, `degraded`; set with `stats`) and `networkTiming` (passed through in the
 * result, not reported). `failed` carries a TwilioError (`code`) or a DOMException.
 *
 * Each run reports only its own edge (`edges: [edge]`): under the service's counting rule a
 * failure counts against that edge alone and a success for the edge connected to. Figures
 * outside the ranges the service accepts (RTT and jitter 0..60000 ms, MOS 1..5) are sent as
 * null rather than refused. A token with less than `renewBeforeMs` left is replaced before
 * the next run (a preflight takes some seconds; the token lives `preflight.ttl_seconds`).
 *
 * @module
 */

const QUALITIES = ['excellent', 'great', 'good', 'fair', 'degraded'];

/**
 * @typedef {import('./provider.js').TokenProvider} TokenProvider
 * @typedef {import('./provider.js').PreflightFigures} PreflightFigures
 * @typedef {import('./provider.js').ReportResult} ReportResult
 *
 * @typedef {object} PreflightTestLike What is used of voice-sdk's `PreflightTest`.
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} on
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} [off]
 * @property {(event: string, listener: (...args: any[]) => void) => unknown} [removeListener]
 * @property {() => void} [stop]
 *
 * @typedef {{runPreflight(token: string, options: Record<string, unknown>): PreflightTestLike}}
 *   PreflightDevice the `Device` class (its static `runPreflight`)
 *
 * @typedef {object} PreflightResult One edge's run.
 * @property {string} edge the edge asked for
 * @property {boolean} ok the test completed
 * @property {string | null} connectedEdge the edge the test call connected to (null on failure)
 * @property {number | null} rttMs average round-trip time
 * @property {number | null} jitterMs average jitter
 * @property {number | null} mos average MOS
 * @property {PreflightFigures['quality']} quality the SDK's call-quality grade
 * @property {number | null} errorCode the failure's Twilio error code
 * @property {'failed' | 'timeout' | null} failure
 * @property {unknown} [networkTiming] the SDK report's `networkTiming`, as it came
 * @property {unknown} [error] what `failed` carried
 * @property {ReportResult | null} reported what became of the edge report (null: not sent)
 *
 * @typedef {object} RunPreflightOptions
 * @property {string[]} [edges] edges to test (default: the preflight token's list)
 * @property {(result: PreflightResult) => void} [onResult] after each run, before its report
 *   settled (`reported` is null then)
 * @property {Record<string, unknown>} [preflightOptions] more `runPreflight` options
 *   (`fakeMicInput`, `iceServers`, `signalingTimeoutMs`...); `edge` is set per run
 * @property {number} [timeoutMs] give up on one run after this long (default 60000)
 * @property {number} [renewBeforeMs] fetch a new token when less than this is left (default 60000)
 * @property {boolean} [report] send an edge report per run (default true)
 * @property {AbortSignal} [signal] stops the running test and rejects with the signal's reason
 */

/**
 * @param {PreflightDevice} Device the `Device` class of `@twilio/voice-sdk`
 * @param {TokenProvider} provider
 * @param {RunPreflightOptions} [options]
 * @returns {Promise<PreflightResult[]>}
 */
export async function runPreflight(Device, provider, options = {}) {
  if (!Device || typeof Device.runPreflight !== 'function') {
    throw new TypeError('Device must be the Device class (with runPreflight)');
  }
  if (!provider || typeof provider.fetchPreflightToken !== 'function') {
    throw new TypeError('provider must have fetchPreflightToken (createTokenProvider)');
  }
  const { signal } = options;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const renewBeforeMs = options.renewBeforeMs ?? 60_000;
  const fetchToken = () => /** @type {NonNullable<TokenProvider['fetchPreflightToken']>} */ (
    provider.fetchPreflightToken
  ).call(provider, { signal });

  let response = await fetchToken();
  let expiresAt = expiry(response.ttl);
  const edges = options.edges ?? (response.edges.length > 0 ? response.edges : ['roaming']);
  /** @type {PreflightResult[]} */
  const results = [];
  /** @type {Promise<void>[]} */
  const reports = [];
  for (const edge of edges) {
    signal?.throwIfAborted();
    if (expiresAt - Date.now() < renewBeforeMs) {
      response = await fetchToken();
      expiresAt = expiry(response.ttl);
    }
    const test = Device.runPreflight(response.token, { ...options.preflightOptions, edge });
    const result = await outcome(test, edge, timeoutMs, signal);
    results.push(result);
    options.onResult?.({ ...result });
    if (options.report !== false && typeof provider.reportEdges === 'function') {
      reports.push(provider.reportEdges(reportOf(result)).then((r) => {
        result.reported = r;
      }, () => {}));
    }
  }
  await Promise.all(reports);
  return results;
}

/** @param {number | undefined} ttl seconds */
function expiry(ttl) {
  return typeof ttl === 'number' && ttl > 0 ? Date.now() + ttl * 1000 : Infinity;
}

/**
 * Wait for one test's `completed` or `failed`, or time it out.
 *
 * @param {PreflightTestLike} test
 * @param {string} edge
 * @param {number} timeoutMs
 * @param {AbortSignal | undefined} signal
 * @returns {Promise<PreflightResult>}
 */
function outcome(test, edge, timeoutMs, signal) {
  return new Promise((resolve, reject) => {
    /** @type {Array<[string, (...args: any[]) => void]>} */
    const listeners = [];
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      for (const [event, fn] of listeners) off(test, event, fn);
    };
    /** @param {Record<string, any> | undefined} report */
    const onCompleted = (report) => {
      done();
      resolve(completed(edge, report ?? {}));
    };
    /** @param {unknown} error */
    const onFailed = (error) => {
      done();
      resolve(failed(edge, 'failed', error));
    };
    const onAbort = () => {
      done();
      test.stop?.();
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      done();
      try {
        test.stop?.();
      } catch {
        // a test that already ended
      }
      resolve(failed(edge, 'timeout', undefined));
    }, timeoutMs);
    listeners.push(['completed', onCompleted], ['failed', onFailed]);
    for (const [event, fn] of listeners) test.on(event, fn);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * @param {string} edge
 * @param {Record<string, any>} report the SDK's PreflightTest.Report
 * @returns {PreflightResult}
 */
function completed(edge, report) {
  const stats = report.stats ?? {};
  const quality = QUALITIES.includes(report.callQuality) ? report.callQuality : null;
  return {
    edge,
    ok: true,
    connectedEdge: typeof report.edge === 'string' && report.edge ? report.edge : edge,
    rttMs: within(stats.rtt?.average, 0, 60_000),
    jitterMs: within(stats.jitter?.average, 0, 60_000),
    mos: within(stats.mos?.average, 1, 5),
    quality,
    errorCode: null,
    failure: null,
    networkTiming: report.networkTiming,
    reported: null,
  };
}

/**
 * @param {string} edge
 * @param {'failed' | 'timeout'} failure
 * @param {unknown} error
 * @returns {PreflightResult}
 */
function failed(edge, failure, error) {
  const code = /** @type {{code?: unknown}} */ (error ?? {}).code;
  return {
    edge,
    ok: false,
    connectedEdge: null,
    rttMs: null,
    jitterMs: null,
    mos: null,
    quality: null,
    errorCode: Number.isInteger(code) && Number(code) >= 10000 && Number(code) <= 99999 ? Number(code) : null,
    failure,
    error,
    reported: null,
  };
}

/**
 * The edge report of one run: its edge alone, so a failure counts against it and nothing else.
 *
 * @param {PreflightResult} result
 * @returns {import('./provider.js').EdgeReport}
 */
export function reportOf(result) {
  return {
    edges: [result.edge],
    connected_edge: result.connectedEdge,
    error_code: result.errorCode,
    preflight: {
      edge: result.connectedEdge ?? result.edge,
      rtt_ms: result.rttMs,
      jitter_ms: result.jitterMs,
      mos: result.mos,
      quality: result.quality,
    },
  };
}

/**
 * @param {unknown} value
 * @param {number} low
 * @param {number} high
 */
function within(value, low, high) {
  return typeof value === 'number' && Number.isFinite(value) && value >= low && value <= high ? value : null;
}

/**
 * @param {PreflightTestLike} target
 * @param {string} event
 * @param {(...args: any[]) => void} fn
 */
function off(target, event, fn) {
  const remove = target.off ?? target.removeListener;
  if (typeof remove === 'function') remove.call(target, event, fn);
}
