// The helper in headless Chromium: real fetch, CORS preflights, AbortController, module loading.
// 1. against stand-in regions (always, when Chromium is there);
// 2. against two real `tokensvc serve` instances, the first one then stopped (when tokensvc is on
//    PATH): failover, then the binding's registration report, a preflight token and a preflight
//    run's reports, all answered by the real server and counted in its /metrics. The Device is
//    the page's stand-in: the real SDK cannot register without Twilio's servers.
//    Missing Chromium or tokensvc skips loudly instead of failing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { browserUnavailable, launchChromium, loudSkip, startPageServer } from '../testing/page.mjs';
import { deadRegionUrl, startRegion, waitFor } from '../testing/regions.mjs';
import {
  CLIENT_EDGES,
  decodeJwt,
  sampleValue,
  signCallerJwt,
  startTokensvc,
  which,
  writeClientConfig,
} from '../testing/tokensvc.mjs';

const CLIENT = 'webphone';

describe('in headless Chromium', async () => {
  const unavailable = await browserUnavailable();
  /** @type {import('playwright-core').Browser | undefined} */
  let browser;
  /** @type {Awaited<ReturnType<typeof startPageServer>> | undefined} */
  let pageServer;

  before(async () => {
    if (unavailable) return;
    pageServer = await startPageServer();
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await pageServer?.close();
  });

  /** A fresh page with the helper loaded as `window.tokensvc`. */
  async function openPage() {
    if (!browser || !pageServer) throw new Error('browser not started');
    const page = await browser.newPage();
    page.setDefaultTimeout(20_000);
    /** @type {string[]} */
    const consoleErrors = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${pageServer.origin}/`);
    await page.waitForSelector('body[data-ready="yes"]', { state: 'attached' });
    return { page, consoleErrors };
  }

  test('stand-in regions: refused, hanging and 503 regions are passed over for the fourth', async (t) => {
    if (unavailable) return t.skip(loudSkip('browser test against stand-in regions', unavailable));
    const origin = /** @type {NonNullable<typeof pageServer>} */ (pageServer).origin;
    const dead = await deadRegionUrl();
    const hanging = await startRegion('hanging', 'hang', { corsOrigin: origin });
    const busy = await startRegion('busy', { status: 503, code: 'not_ready' }, { corsOrigin: origin });
    const good = await startRegion('good', 'ok', { corsOrigin: origin, edges: ['tokyo', 'singapore'] });
    t.after(() => Promise.all([hanging.close(), busy.close(), good.close()]));
    const { page, consoleErrors } = await openPage();
    t.after(() => page.close());

    const result = await page.evaluate(async ({ endpoints }) => {
      const { createTokenProvider, bindDevice } = window.tokensvc;
      const attempts = [];
      const provider = createTokenProvider({
        endpoints,
        client: 'webphone',
        getCredential: async () => 'caller-credential',
        attemptTimeoutMs: 500,
        maxRounds: 1,
        country: 'JP',
        onAttempt: (a) => attempts.push([a.endpoint, a.outcome, a.status ?? null]),
      });
      const started = performance.now();
      const binding = await bindDevice(window.StandInDevice, provider, { deviceOptions: { logLevel: 'warn' } });
      const elapsedMs = performance.now() - started;
      binding.stop();
      const device = window.StandInDevice.created[0];
      return { attempts, elapsedMs, token: device.token, options: device.options, created: window.StandInDevice.created.length };
    }, { endpoints: [dead, hanging.url, busy.url, good.url] });

    assert.deepEqual(result.attempts, [
      [dead, 'network', null],
      [hanging.url, 'timeout', null],
      [busy.url, 'http', 503],
      [good.url, 'ok', 200],
    ]);
    assert.ok(result.elapsedMs >= 450 && result.elapsedMs < 500 + 2500, `took ${result.elapsedMs} ms`);
    assert.deepEqual(
      [result.created, result.token, result.options],
      [1, 'stand-in-token-good-1', { logLevel: 'warn', enableImprovedSignalingErrorPrecision: true, edge: ['tokyo', 'singapore'] }],
    );
    assert.deepEqual(
      good.hits.map((h) => [h.method, h.authorization, h.body]),
      [['POST', 'Bearer caller-credential', { platform: 'browser', country: 'JP' }]],
    );
    assert.deepEqual(consoleErrors, []);
  });

  test('stand-in regions: a cross-origin 401 surfaces as TokenRequestError with its code', async (t) => {
    if (unavailable) return t.skip(loudSkip('browser test against stand-in regions', unavailable));
    const origin = /** @type {NonNullable<typeof pageServer>} */ (pageServer).origin;
    const eu = await startRegion('eu', { status: 401, code: 'unauthenticated' }, { corsOrigin: origin });
    const us = await startRegion('us', 'ok', { corsOrigin: origin });
    t.after(() => Promise.all([eu.close(), us.close()]));
    const { page } = await openPage();
    t.after(() => page.close());

    const result = await page.evaluate(async ({ endpoints }) => {
      const { createTokenProvider, TokenRequestError } = window.tokensvc;
      const provider = createTokenProvider({ endpoints, client: 'webphone', getCredential: () => 'expired' });
      try {
        await provider.fetchToken();
        return { thrown: false };
      } catch (e) {
        return { thrown: true, typed: e instanceof TokenRequestError, status: e.status, code: e.code };
      }
    }, { endpoints: [eu.url, us.url] });

    assert.deepEqual(result, { thrown: true, typed: true, status: 401, code: 'unauthenticated' });
    assert.equal(us.hits.length, 0);
  });

  test('tokensvc: with the first region stopped, the token comes from the second and its edges reach the Device', async (t) => {
    if (unavailable) return t.skip(loudSkip('browser test against tokensvc', unavailable));
    const executable = which('tokensvc');
    if (!executable) {
      return t.skip(loudSkip('browser test against real tokensvc instances', '`tokensvc` is not on PATH (pip install -e . in the repository root)'));
    }
    const origin = /** @type {NonNullable<typeof pageServer>} */ (pageServer).origin;
    const config = writeClientConfig({ client: CLIENT, origin });
    t.after(() => config.remove());
    const eu = await startTokensvc({ executable, configDir: config.dir, region: 'eu' });
    t.after(() => eu.stop());
    const us = await startTokensvc({ executable, configDir: config.dir, region: 'us' });
    t.after(() => us.stop());
    const credential = signCallerJwt(config.hs256Secret, 'alice');
    const { page, consoleErrors } = await openPage();
    t.after(() => page.close());

    // Both regions up: the Device is created with a token from the first region.
    const first = await page.evaluate(async ({ endpoints, credential: jwt, client }) => {
      const { createTokenProvider, bindDevice } = window.tokensvc;
      window.attempts = [];
      window.provider = createTokenProvider({
        endpoints,
        client,
        getCredential: () => jwt,
        attemptTimeoutMs: 3000,
        maxRounds: 1,
        country: 'IE',
        onAttempt: (a) => window.attempts.push([a.endpoint, a.outcome, a.status ?? null]),
      });
      window.reports = [];
      window.binding = await bindDevice(window.StandInDevice, window.provider, {
        onReport: (result, report) => window.reports.push({ result, report }),
      });
      return { attempts: window.attempts.splice(0), lastEndpoint: window.provider.lastEndpoint };
    }, { endpoints: [eu.url, us.url], credential, client: CLIENT });
    assert.deepEqual(first, { attempts: [[eu.url, 'ok', 200]], lastEndpoint: eu.url });

    await eu.stop();

    // First region gone: the refresh fails over to the second one.
    const second = await page.evaluate(async () => {
      const response = await window.binding.refresh();
      const device = window.StandInDevice.created[0];
      return {
        attempts: window.attempts.splice(0),
        response,
        deviceToken: device.token,
        deviceEdges: device.options.edge,
        edgeUpdates: device.optionUpdates,
        created: window.StandInDevice.created.length,
      };
    });

    assert.deepEqual(second.attempts.map(([endpoint, outcome]) => [endpoint, outcome]), [[eu.url, 'network'], [us.url, 'ok']]);
    assert.equal(second.response.region, 'us');
    assert.deepEqual(second.response.edges, CLIENT_EDGES.IE);
    assert.equal(second.created, 1);
    assert.ok(second.deviceToken === second.response.token, 'the Device holds the token from the second region');
    assert.deepEqual(second.deviceEdges, second.response.edges);
    assert.deepEqual(second.edgeUpdates, []); // same edges from both regions: options untouched
    const { header, payload } = decodeJwt(second.deviceToken);
    assert.deepEqual([header.alg, header.cty, payload.grants?.identity], ['HS256', 'twilio-fpa;v=1', 'alice']);

    // Registration: the binding reports to the region of the last token (us); the real server
    // answers 202 and counts it (the counting rule: frankfurt connected, dublin before it failed).
    const counts = async () => {
      const text = await us.metrics();
      const count = (/** @type {string} */ edge, /** @type {string} */ outcome) =>
        sampleValue(text, 'tokensvc_edge_reports_total', { client: CLIENT, edge, outcome });
      return {
        dublinFailed: count('dublin', 'failed'),
        frankfurtConnected: count('frankfurt', 'connected'),
        preflightRtt: sampleValue(text, 'tokensvc_edge_preflight_rtt_seconds_count', { client: CLIENT, edge: 'dublin' }),
      };
    };
    const before = await counts();
    const registration = await page.evaluate(async () => {
      const device = window.StandInDevice.created[0];
      device.edge = 'frankfurt'; // what voice-sdk sets before emitting `registered`
      device.emit('registered');
      const deadline = Date.now() + 10_000;
      while (window.reports.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      window.binding.stop();
      return window.reports.map(({ result, report }) => ({
        report, sent: result.sent, status: result.status, endpoint: result.endpoint,
      }));
    });
    assert.deepEqual(registration, [{
      report: { edges: CLIENT_EDGES.IE, connected_edge: 'frankfurt', error_code: null },
      sent: true,
      status: 202,
      endpoint: us.url,
    }]);
    const counted = await waitFor(async () => {
      const now = await counts();
      return now.dublinFailed === before.dublinFailed + 1 && now.frankfurtConnected === before.frankfurtConnected + 1;
    }, 10_000);
    assert.ok(counted, `tokensvc_edge_reports_total not incremented: ${JSON.stringify([before, await counts()])}`);

    // A preflight token from the real server (the client's echo app, no incoming grant), then one
    // preflight run per given edge, each reported with its figures (the RTT histogram counts it).
    const preflight = await page.evaluate(async () => {
      const token = await window.provider.fetchPreflightToken();
      const results = await window.tokensvc.runPreflight(window.StandInDevice, window.provider, { edges: ['dublin'] });
      return {
        token,
        runs: window.StandInDevice.preflights.map((p) => p.options.edge),
        results: results.map((r) => ({ edge: r.edge, ok: r.ok, rttMs: r.rttMs, quality: r.quality, sent: r.reported?.sent, status: r.reported?.status })),
      };
    });
    const pf = decodeJwt(preflight.token.token).payload;
    assert.deepEqual(
      [preflight.token.region, preflight.token.edges, pf.grants?.voice?.outgoing?.application_sid, pf.grants?.voice?.incoming],
      ['us', CLIENT_EDGES.IE, config.preflightAppSid, undefined],
    );
    assert.deepEqual([preflight.runs, preflight.results], [
      ['dublin'],
      [{ edge: 'dublin', ok: true, rttMs: 42, quality: 'excellent', sent: true, status: 202 }],
    ]);
    assert.ok(
      await waitFor(async () => (await counts()).preflightRtt === before.preflightRtt + 1, 10_000),
      'tokensvc_edge_preflight_rtt_seconds not observed',
    );
    assert.deepEqual(consoleErrors, []);
  });
});
