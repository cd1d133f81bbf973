// runPreflight with a stand-in Device class whose static runPreflight returns a scripted
// PreflightTest (voice-sdk 2.x: `completed` with a Report, `failed` with a TwilioError), and a
// real provider talking to stand-in regions on 127.0.0.1.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, describe, test } from 'node:test';

import { TokenRequestError, createTokenProvider, runPreflight } from '../src/index.js';
import { startRegion } from '../testing/regions.mjs';

/**
 * A voice-sdk 2.18 PreflightTest.Report with the fields runPreflight reads (and a few it does not).
 *
 * @param {string} edge
 * @param {{rtt?: number, jitter?: number, mos?: number, quality?: string, stats?: boolean}} [figures]
 */
function sdkReport(edge, { rtt = 40, jitter = 2.5, mos = 4.4, quality = 'excellent', stats = true } = {}) {
  const stat = (/** @type {number} */ v) => ({ average: v, max: v, min: v });
  return {
    callSid: 'CA00000000000000000000000000000000',
    edge,
    selectedEdge: edge,
    iceCandidateStats: [],
    networkTiming: { signaling: { start: 1, end: 101, duration: 100 } },
    samples: [],
    testTiming: { start: 0, end: 20_000, duration: 20_000 },
    warnings: [],
    ...(stats ? { stats: { rtt: stat(rtt), jitter: stat(jitter), mos: stat(mos) }, callQuality: quality } : {}),
  };
}

/**
 * @typedef {{completed: object} | {failed: {code?: number, message?: string}} | 'hang'} Script
 */

/** Records runPreflight calls; each test plays the script given for its edge. */
class StandInDevice {
  /** @type {Array<{token: string, options: Record<string, unknown>, test: EventEmitter & {stopped: number}}>} */
  static runs = [];
  /** @type {(edge: string) => Script} */
  static script = (edge) => ({ completed: sdkReport(edge) });

  /**
   * @param {string} token
   * @param {Record<string, unknown>} options
   */
  static runPreflight(token, options) {
    const test = Object.assign(new EventEmitter(), { stopped: 0, stop() { test.stopped += 1; } });
    StandInDevice.runs.push({ token, options, test });
    const play = StandInDevice.script(String(options.edge));
    if (play !== 'hang') {
      setTimeout(() => {
        if ('completed' in play) test.emit('completed', play.completed);
        else test.emit('failed', play.failed);
      }, 5);
    }
    return test;
  }
}

/** @type {Array<{close: () => Promise<void>}>} */
let started = [];
afterEach(async () => {
  await Promise.all(started.map((r) => r.close()));
  started = [];
  StandInDevice.runs = [];
  StandInDevice.script = (edge) => ({ completed: sdkReport(edge) });
});

/** @param {Parameters<typeof startRegion>} args */
async function setup(...args) {
  const region = await startRegion(...args);
  started.push(region);
  const provider = createTokenProvider({
    endpoints: [region.url],
    client: 'webphone',
    getCredential: () => 'caller-credential',
    maxRounds: 1,
  });
  const reports = () => region.hits.filter((h) => h.path.endsWith('/edge-report')).map((h) => h.body);
  return { region, provider, reports };
}

describe('runPreflight', () => {
  test('runs one preflight per edge of the token, in order, with the preflight token and {edge}', async () => {
    const { provider } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt', 'ashburn'] });
    await runPreflight(StandInDevice, provider, { preflightOptions: { fakeMicInput: true } });
    assert.deepEqual(
      StandInDevice.runs.map((r) => [r.token, r.options]),
      ['dublin', 'frankfurt', 'ashburn'].map((edge) => ['stand-in-preflight-eu-1', { fakeMicInput: true, edge }]),
    );
  });

  test("a completed run's result carries the report's edge, rtt, jitter, mos and call quality", async () => {
    StandInDevice.script = (edge) => ({ completed: sdkReport(edge, { rtt: 83, jitter: 4.25, mos: 3.9, quality: 'good' }) });
    const { provider } = await setup('eu', 'ok', { edges: ['dublin'] });
    const [result] = await runPreflight(StandInDevice, provider);
    assert.deepEqual(
      { ...result, reported: result?.reported?.sent },
      {
        edge: 'dublin', ok: true, connectedEdge: 'dublin', rttMs: 83, jitterMs: 4.25, mos: 3.9, quality: 'good',
        errorCode: null, failure: null, networkTiming: { signaling: { start: 1, end: 101, duration: 100 } }, reported: true,
      },
    );
  });

  test('each run sends one edge report with its own edge and the preflight figures', async () => {
    StandInDevice.script = (edge) => ({ completed: sdkReport(edge, { rtt: edge === 'dublin' ? 30 : 90 }) });
    const { provider, reports } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    await runPreflight(StandInDevice, provider);
    assert.deepEqual(reports(), ['dublin', 'frankfurt'].map((edge) => ({
      edges: [edge], connected_edge: edge, error_code: null,
      preflight: { edge, rtt_ms: edge === 'dublin' ? 30 : 90, jitter_ms: 2.5, mos: 4.4, quality: 'excellent' },
    })));
  });

  test('a failed run reports connected_edge null and its error code, and the next edge still runs', async () => {
    StandInDevice.script = (edge) => (edge === 'dublin' ? { failed: { code: 31005, message: 'gone' } } : { completed: sdkReport(edge) });
    const { provider, reports } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    const results = await runPreflight(StandInDevice, provider);
    assert.deepEqual(
      [results.map((r) => [r.edge, r.ok, r.failure, r.errorCode]), reports()[0]],
      [[['dublin', false, 'failed', 31005], ['frankfurt', true, null, null]],
        { edges: ['dublin'], connected_edge: null, error_code: 31005,
          preflight: { edge: 'dublin', rtt_ms: null, jitter_ms: null, mos: null, quality: null } }],
    );
  });

  test('a run that never ends is stopped after timeoutMs and counted as a failure', async () => {
    StandInDevice.script = () => 'hang';
    const { provider, reports } = await setup('eu', 'ok', { edges: ['tokyo'] });
    const started = Date.now();
    const [result] = await runPreflight(StandInDevice, provider, { timeoutMs: 100 });
    const elapsed = Date.now() - started;
    assert.deepEqual(
      [result?.failure, result?.ok, StandInDevice.runs[0]?.test.stopped, reports().length],
      ['timeout', false, 1, 1],
    );
    assert.ok(elapsed >= 95 && elapsed < 2000, `took ${elapsed} ms`);
  });

  test('a report without stats (no MOS sample) sends null figures; out-of-range ones become null', async () => {
    StandInDevice.script = (edge) => ({
      completed: edge === 'dublin' ? sdkReport(edge, { stats: false }) : sdkReport(edge, { rtt: -1, mos: 0.2 }),
    });
    const { provider, reports } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    await runPreflight(StandInDevice, provider);
    assert.deepEqual(reports().map((b) => /** @type {any} */ (b).preflight), [
      { edge: 'dublin', rtt_ms: null, jitter_ms: null, mos: null, quality: null },
      { edge: 'frankfurt', rtt_ms: null, jitter_ms: 2.5, mos: null, quality: 'excellent' },
    ]);
  });

  test('options.edges replaces the list; onResult sees each run; report: false sends none', async () => {
    const { provider, reports } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    /** @type {string[]} */
    const seen = [];
    const results = await runPreflight(StandInDevice, provider, {
      edges: ['sydney'], report: false, onResult: (r) => seen.push(r.edge),
    });
    assert.deepEqual([seen, results.map((r) => r.reported), reports()], [['sydney'], [null], []]);
  });

  test('a token about to expire is replaced before the next run', async () => {
    const { region, provider } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    region.preflightTtl = 30; // under the default renewBeforeMs (60 s)
    await runPreflight(StandInDevice, provider);
    assert.deepEqual(StandInDevice.runs.map((r) => r.token), ['stand-in-preflight-eu-2', 'stand-in-preflight-eu-3']);
  });

  test('a client without a preflight app rejects with no_preflight_app and runs nothing', async () => {
    const { provider } = await setup('eu', { status: 404, code: 'no_preflight_app' });
    const error = await runPreflight(StandInDevice, provider).then(() => null, (e) => e);
    assert.deepEqual([error instanceof TokenRequestError, error?.code, StandInDevice.runs.length], [true, 'no_preflight_app', 0]);
  });

  test('aborting the signal stops the running test and rejects with its reason', async () => {
    StandInDevice.script = () => 'hang';
    const { provider } = await setup('eu', 'ok', { edges: ['dublin', 'frankfurt'] });
    const controller = new AbortController();
    const running = runPreflight(StandInDevice, provider, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('user left')), 50);
    const error = await running.then(() => null, (e) => e);
    assert.deepEqual([error?.message, StandInDevice.runs.length, StandInDevice.runs[0]?.test.stopped], ['user left', 1, 1]);
  });
});
