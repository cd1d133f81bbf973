// Regional failover of createTokenProvider against stand-in regions on 127.0.0.1.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';

import {
  TokenRequestError,
  TokenUnavailableError,
  createTokenProvider,
  parseRetryAfter,
} from '../src/index.js';
import { deadRegionUrl, startRegion } from '../testing/regions.mjs';

/** @type {Array<{close: () => Promise<void>}>} */
let started = [];
afterEach(async () => {
  await Promise.all(started.map((r) => r.close()));
  started = [];
});

/** @param {Parameters<typeof startRegion>} args */
async function region(...args) {
  const r = await startRegion(...args);
  started.push(r);
  return r;
}

/**
 * A provider over `urls` that records every attempt as "endpoint outcome[status]".
 *
 * @param {string[]} urls
 * @param {Partial<import('../index.js').ProviderOptions>} [extra]
 */
function provider(urls, extra = {}) {
  /** @type {import('../index.js').Attempt[]} */
  const attempts = [];
  const p = createTokenProvider({
    endpoints: urls,
    client: 'webphone',
    getCredential: async () => 'caller-credential',
    attemptTimeoutMs: 1000,
    cooldownMs: 60_000,
    backoffBaseMs: 50,
    maxRounds: 1,
    onAttempt: (a) => attempts.push(a),
    ...extra,
  });
  return { p, attempts, tried: () => attempts.map((a) => a.endpoint) };
}

describe('request', () => {
  test('POSTs to /v1/clients/<client>/token with the bearer credential and a JSON body', async () => {
    const eu = await region('eu');
    const { p } = provider([eu.url], { country: 'IE' });
    await p.fetchToken();
    assert.deepEqual(
      eu.hits.map((h) => [h.method, h.path, h.authorization, h.contentType, h.body]),
      [['POST', '/v1/clients/webphone/token', 'Bearer caller-credential', 'application/json',
        { platform: 'browser', country: 'IE' }]],
    );
  });

  test('returns the service JSON: token, edges, refresh_in, region', async () => {
    const eu = await region('eu', 'ok', { edges: ['dublin', 'frankfurt'], refreshIn: 1234 });
    const { p } = provider([eu.url]);
    const response = await p.fetchToken();
    assert.deepEqual(
      [response.token, response.edges, response.refresh_in, response.region],
      ['stand-in-token-eu-1', ['dublin', 'frankfurt'], 1234, 'eu'],
    );
  });

  test('a trailing slash on an endpoint does not double the slash in the path', async () => {
    const eu = await region('eu');
    const { p } = provider([`${eu.url}/`]);
    await p.fetchToken();
    assert.equal(eu.hits[0]?.path, '/v1/clients/webphone/token');
  });

  test('rejects an empty endpoint list at construction', () => {
    assert.throws(() => provider([]), TypeError);
  });
});

describe('failover', () => {
  test('a region refusing connections is skipped at once for the next one', async () => {
    const dead = await deadRegionUrl();
    const us = await region('us');
    const { p, attempts } = provider([dead, us.url], { attemptTimeoutMs: 2000 });
    const t0 = Date.now();
    const response = await p.fetchToken();
    const elapsed = Date.now() - t0;
    assert.deepEqual(attempts.map((a) => [a.endpoint, a.outcome]), [[dead, 'network'], [us.url, 'ok']]);
    assert.equal(response.region, 'us');
    assert.ok(elapsed < 1000, `refused connection should fail over well under the timeout, took ${elapsed} ms`);
  });

  test('a hanging region is abandoned after attemptTimeoutMs, not later', async () => {
    const eu = await region('eu', 'hang');
    const us = await region('us');
    const { p, attempts } = provider([eu.url, us.url], { attemptTimeoutMs: 300 });
    const t0 = Date.now();
    const response = await p.fetchToken();
    const elapsed = Date.now() - t0;
    assert.deepEqual(attempts.map((a) => [a.endpoint, a.outcome]), [[eu.url, 'timeout'], [us.url, 'ok']]);
    assert.equal(response.region, 'us');
    assert.ok(elapsed >= 290, `failover before the timeout: ${elapsed} ms`);
    assert.ok(elapsed < 300 + 1000, `failover too late: ${elapsed} ms`);
  });

  for (const status of [500, 502, 503, 504, 408, 429]) {
    test(`status ${status} moves on to the next region`, async () => {
      const eu = await region('eu', { status });
      const us = await region('us');
      const { p, attempts } = provider([eu.url, us.url]);
      const response = await p.fetchToken();
      assert.deepEqual(attempts.map((a) => [a.outcome, a.status]), [['http', status], ['ok', 200]]);
      assert.equal(response.region, 'us');
    });
  }

  test('a 200 that is not a token response (captive portal) moves on to the next region', async () => {
    const eu = await region('eu', 'garbage');
    const us = await region('us');
    const { p, attempts } = provider([eu.url, us.url]);
    const response = await p.fetchToken();
    assert.deepEqual(attempts.map((a) => a.outcome), ['bad_response', 'ok']);
    assert.equal(response.region, 'us');
  });

  for (const [status, code] of [[400, 'invalid_request'], [401, 'unauthenticated'], [403, 'forbidden'], [404, 'unknown_client']]) {
    test(`status ${status} is final: TokenRequestError with code ${code}, next region not asked`, async () => {
      const eu = await region('eu', { status, code });
      const us = await region('us');
      const { p } = provider([eu.url, us.url]);
      const error = await p.fetchToken().then(() => null, (e) => e);
      assert.ok(error instanceof TokenRequestError, `expected TokenRequestError, got ${error}`);
      assert.deepEqual([error.status, error.code, error.endpoint], [status, code, eu.url]);
      assert.equal(us.hits.length, 0);
    });
  }

  test('a final status without problem+json (a proxy page) gets code http_<status>', async () => {
    const eu = await region('eu', { status: 403, html: true });
    const { p } = provider([eu.url]);
    const error = await p.fetchToken().then(() => null, (e) => e);
    assert.ok(error instanceof TokenRequestError);
    assert.equal(error.code, 'http_403');
  });

  test('aborting the signal stops fetchToken without trying further regions', async () => {
    const eu = await region('eu', 'hang');
    const us = await region('us');
    const { p } = provider([eu.url, us.url], { attemptTimeoutMs: 5000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const t0 = Date.now();
    const error = await p.fetchToken({ signal: controller.signal }).then(() => null, (e) => e);
    assert.equal(error?.name, 'AbortError');
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(us.hits.length, 0);
  });
});

describe('stickiness and cool-down', () => {
  test('the region that last worked is asked first even after the first one recovers', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p, tried } = provider([eu.url, us.url], { cooldownMs: 50 });
    await p.fetchToken();
    eu.set('ok');
    await new Promise((r) => setTimeout(r, 100)); // eu's cool-down is over: only stickiness is left
    const response = await p.fetchToken();
    assert.deepEqual(tried(), [eu.url, us.url, us.url]);
    assert.equal(response.region, 'us');
  });

  test('after stickyMs the configured order applies again', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p, tried } = provider([eu.url, us.url], { cooldownMs: 0, stickyMs: 100 });
    await p.fetchToken();
    eu.set('ok');
    await new Promise((r) => setTimeout(r, 150));
    const response = await p.fetchToken();
    assert.deepEqual(tried(), [eu.url, us.url, eu.url]);
    assert.equal(response.region, 'eu');
  });

  test('a region in cool-down is skipped while others remain, and asked again once it ends', async () => {
    const a = await region('a', { status: 503 });
    const b = await region('b');
    const c = await region('c');
    const { p, tried } = provider([a.url, b.url, c.url], { cooldownMs: 300 });
    await p.fetchToken(); // a fails (cools down), b answers
    b.set({ status: 503 });
    await p.fetchToken(); // b fails; a is cooling, so c
    assert.deepEqual(tried(), [a.url, b.url, b.url, c.url]);
    assert.deepEqual(p.status().cooling.map((x) => x.endpoint).sort(), [a.url, b.url].sort());

    await new Promise((r) => setTimeout(r, 350)); // a's and b's cool-downs end
    a.set('ok');
    c.set({ status: 503 });
    const response = await p.fetchToken(); // c (sticky) fails, then a, in configured order
    assert.deepEqual(tried().slice(4), [c.url, a.url]);
    assert.equal(response.region, 'a');
  });

  test('regions in cool-down are still asked, last, when every other region fails', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p, tried } = provider([eu.url, us.url], { cooldownMs: 60_000 });
    await p.fetchToken();
    us.set({ status: 503 });
    eu.set('ok');
    const response = await p.fetchToken();
    assert.deepEqual(tried(), [eu.url, us.url, us.url, eu.url]);
    assert.equal(response.region, 'eu');
  });

  test('429 with Retry-After keeps the region cooling at least that long', async () => {
    const eu = await region('eu', { status: 429, retryAfter: '120' });
    const us = await region('us');
    const { p } = provider([eu.url, us.url], { cooldownMs: 10 });
    await p.fetchToken();
    const cooling = p.status().cooling.find((x) => x.endpoint === eu.url);
    assert.ok(cooling && cooling.remainingMs > 100_000, `cool-down too short: ${JSON.stringify(cooling)}`);
  });

  test('reset() forgets stickiness and cool-downs', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p } = provider([eu.url, us.url]);
    await p.fetchToken();
    p.reset();
    assert.deepEqual(p.status(), { preferred: null, cooling: [], backoffRemainingMs: 0 });
  });
});

describe('back-off', () => {
  test('when every region fails, rounds are separated by a jittered back-off', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us', { status: 503 });
    // random() = 0: the back-off is exactly half its cap (cap = 200 ms after the first round).
    const { p } = provider([eu.url, us.url], { maxRounds: 2, backoffBaseMs: 200, random: () => 0, cooldownMs: 0 });
    const error = await p.fetchToken().then(() => null, (e) => e);
    assert.ok(error instanceof TokenUnavailableError, `expected TokenUnavailableError, got ${error}`);
    assert.equal(error.attempts.length, 4);
    const euHits = eu.hits.map((h) => h.at);
    const usFirst = us.hits[0]?.at ?? 0;
    const gap = (euHits[1] ?? 0) - usFirst;
    assert.ok(gap >= 90, `second round started ${gap} ms after the first ended, expected >= 100 ms`);
    assert.equal(error.retryInMs, 200); // after two failed rounds: cap 400, half of it
  });

  test('the jitter stays between half and all of the exponential cap', async () => {
    const eu = await region('eu', { status: 503 });
    for (const [random, expected] of [[0, 100], [0.5, 150], [1, 200]]) {
      const { p } = provider([eu.url], { backoffBaseMs: 200, random: () => random });
      const error = await p.fetchToken().then(() => null, (e) => e);
      assert.equal(error?.retryInMs, expected, `random() = ${random}`);
    }
  });

  test('the next fetchToken waits for the back-off before sending anything', async () => {
    const eu = await region('eu', { status: 503 });
    const { p } = provider([eu.url], { backoffBaseMs: 600, random: () => 0, cooldownMs: 0 });
    const failedAt = await p.fetchToken().then(() => 0, () => Date.now());
    eu.set('ok');
    await p.fetchToken();
    const waited = (eu.hits[1]?.at ?? 0) - failedAt;
    assert.ok(waited >= 280, `second request sent ${waited} ms after the failure, expected >= 300 ms`);
  });

  test('a Retry-After from every region sets the least back-off', async () => {
    const eu = await region('eu', { status: 429, retryAfter: '2' });
    const { p } = provider([eu.url], { backoffBaseMs: 10 });
    const error = await p.fetchToken().then(() => null, (e) => e);
    assert.equal(error?.retryInMs, 2000);
  });

  test('a success clears the back-off', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p } = provider([eu.url, us.url], { cooldownMs: 0 });
    us.set({ status: 503 });
    await p.fetchToken().catch(() => {});
    assert.ok(p.status().backoffRemainingMs > 0);
    us.set('ok');
    await p.fetchToken();
    assert.equal(p.status().backoffRemainingMs, 0);
  });
});

describe('parseRetryAfter', () => {
  test('reads delay-seconds and HTTP dates, ignores garbage', () => {
    const inAMinute = new Date(Date.now() + 60_000).toUTCString();
    const fromDate = parseRetryAfter(inAMinute);
    assert.deepEqual([parseRetryAfter('7'), parseRetryAfter(null), parseRetryAfter('soon')], [7000, 0, 0]);
    assert.ok(fromDate > 55_000 && fromDate <= 60_000, `date gave ${fromDate}`);
  });
});

/** A valid registration report. */
const REPORT = Object.freeze({ edges: ['dublin', 'frankfurt'], connected_edge: 'frankfurt', error_code: null });

/**
 * Edge-report requests a stand-in region received.
 *
 * @param {{hits: {path: string}[]}} r
 */
const reportHits = (r) => r.hits.filter((h) => h.path.endsWith('/edge-report'));

describe('reportEdges', () => {
  test('POSTs the report with the bearer credential to the region of the last token', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p } = provider([eu.url, us.url]);
    await p.fetchToken(); // eu fails, us answers
    eu.set('ok'); // eu is back, but the report goes where the token came from
    const result = await p.reportEdges(REPORT);
    assert.deepEqual(
      [result.sent, result.endpoint, result.status, reportHits(eu).length,
        reportHits(us).map((h) => [h.path, h.authorization, h.contentType, h.body])],
      [true, us.url, 202, 0, [['/v1/clients/webphone/edge-report', 'Bearer caller-credential', 'application/json',
        { edges: ['dublin', 'frankfurt'], connected_edge: 'frankfurt', error_code: null, preflight: null }]]],
    );
  });

  test('before any token it goes to the first region of the round order', async () => {
    const eu = await region('eu');
    const us = await region('us');
    const { p } = provider([eu.url, us.url]);
    const result = await p.reportEdges(REPORT);
    assert.deepEqual([result.endpoint, reportHits(eu).length, reportHits(us).length], [eu.url, 1, 0]);
  });

  test('a 5xx moves it to one other region, and that is the only retry', async () => {
    const eu = await region('eu');
    const us = await region('us', { status: 503 });
    const ap = await region('ap', { status: 503 });
    const { p } = provider([eu.url, us.url, ap.url]);
    await p.fetchToken();
    eu.set({ status: 503 });
    const result = await p.reportEdges(REPORT);
    assert.deepEqual(
      [result.sent, result.reason, result.attempts.map((a) => [a.endpoint, a.status]), reportHits(ap).length],
      [false, 'unavailable', [[eu.url, 503], [us.url, 503]], 0],
    );
  });

  test('a refused connection moves it to the next region, which takes it', async () => {
    const dead = await deadRegionUrl();
    const us = await region('us');
    const { p } = provider([dead, us.url]);
    const result = await p.reportEdges(REPORT);
    assert.deepEqual([result.sent, result.attempts.map((a) => a.outcome)], [true, ['network', 'ok']]);
  });

  test('a 4xx is final: one request, the problem code, no other region asked', async () => {
    const eu = await region('eu', { status: 400, code: 'invalid_request' });
    const us = await region('us');
    const { p } = provider([eu.url, us.url]);
    const result = await p.reportEdges(REPORT);
    assert.deepEqual(
      [result.sent, result.reason, result.status, result.code, reportHits(us).length],
      [false, 'rejected', 400, 'invalid_request', 0],
    );
  });

  test('a failed report changes no failover state: no cool-down, no back-off, no stickiness', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us', { status: 503 });
    const { p } = provider([eu.url, us.url]);
    await p.reportEdges(REPORT);
    assert.deepEqual(p.status(), { preferred: null, cooling: [], backoffRemainingMs: 0 });
  });

  test('while the provider backs off the report is dropped without a request', async () => {
    const eu = await region('eu', { status: 503 });
    const { p } = provider([eu.url], { backoffBaseMs: 60_000 });
    await p.fetchToken().catch(() => {});
    const before = eu.hits.length;
    const result = await p.reportEdges(REPORT);
    assert.deepEqual([result.sent, result.reason, eu.hits.length - before], [false, 'backoff', 0]);
  });

  test('never rejects: a failing getCredential resolves with reason credential', async () => {
    const eu = await region('eu');
    const p = createTokenProvider({
      endpoints: [eu.url],
      client: 'webphone',
      getCredential: () => { throw new Error('signed out'); },
    });
    const result = await p.reportEdges(REPORT);
    assert.deepEqual([result.sent, result.reason, eu.hits.length], [false, 'credential', 0]);
  });

  for (const [what, report] of /** @type {const} */ ([
    ['no edges', { edges: [] }],
    ['a malformed edge name', { edges: ['Dublin!'] }],
    ['an error code out of range', { edges: ['dublin'], error_code: 999 }],
    ['an unknown call quality', { edges: ['dublin'], preflight: { edge: 'dublin', quality: 'superb' } }],
  ])) {
    test(`a report with ${what} is not sent (reason invalid)`, async () => {
      const eu = await region('eu');
      const { p } = provider([eu.url]);
      const result = await p.reportEdges(/** @type {any} */ (report));
      assert.deepEqual([result.sent, result.reason, eu.hits.length], [false, 'invalid', 0]);
    });
  }

  test('only the preflight fields the service takes are sent, non-numbers as null', async () => {
    const eu = await region('eu');
    const { p } = provider([eu.url]);
    await p.reportEdges({
      edges: ['dublin'],
      connected_edge: 'dublin',
      preflight: /** @type {any} */ ({ edge: 'dublin', rtt_ms: 41.5, jitter_ms: Number.NaN, mos: '4', quality: 'good', callSid: 'CA1' }),
    });
    assert.deepEqual(reportHits(eu)[0]?.body, {
      edges: ['dublin'], connected_edge: 'dublin', error_code: null,
      preflight: { edge: 'dublin', rtt_ms: 41.5, jitter_ms: null, mos: null, quality: 'good' },
    });
  });

  test('an api_key client names the identity in the report', async () => {
    const eu = await region('eu');
    const { p } = provider([eu.url], { identity: 'alice' });
    await p.reportEdges(REPORT);
    assert.equal(/** @type {{identity?: string}} */ (reportHits(eu)[0]?.body).identity, 'alice');
  });
});

describe('fetchPreflightToken', () => {
  test('POSTs preflight-token with country and identity only, and returns token and edges', async () => {
    const eu = await region('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    const { p } = provider([eu.url], { country: 'IE', identity: 'alice' });
    const response = await p.fetchPreflightToken();
    assert.deepEqual(
      [response.token, response.edges, eu.hits.map((h) => [h.path, h.authorization, h.body])],
      ['stand-in-preflight-eu-1', ['dublin', 'frankfurt'],
        [['/v1/clients/webphone/preflight-token', 'Bearer caller-credential', { country: 'IE', identity: 'alice' }]]],
    );
  });

  test('fails over like the token fetch', async () => {
    const eu = await region('eu', { status: 503 });
    const us = await region('us');
    const { p, tried } = provider([eu.url, us.url]);
    const response = await p.fetchPreflightToken();
    assert.deepEqual([response.region, tried(), p.lastEndpoint], ['us', [eu.url, us.url], us.url]);
  });

  test('a client without a preflight app: TokenRequestError no_preflight_app, next region not asked', async () => {
    const eu = await region('eu', { status: 404, code: 'no_preflight_app' });
    const us = await region('us');
    const { p } = provider([eu.url, us.url]);
    const error = await p.fetchPreflightToken().then(() => null, (e) => e);
    assert.deepEqual(
      [error instanceof TokenRequestError, error?.status, error?.code, us.hits.length],
      [true, 404, 'no_preflight_app', 0],
    );
  });
});
