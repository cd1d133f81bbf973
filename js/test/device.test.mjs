// bindDevice with a stand-in Device class (the voice-sdk 2.x surface it relies on) and a real
// provider talking to stand-in regions on 127.0.0.1.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { afterEach, describe, test } from 'node:test';

import { TokenUnavailableError, bindDevice, createTokenProvider } from '../src/index.js';
import { startRegion, waitFor } from '../testing/regions.mjs';

/**
 * Records what the binding does to it. Like voice-sdk 2.x: `isBusy` means an active call, `calls`
 * also holds ringing incoming calls, and an edge change during an active call throws.
 */
class StandInDevice extends EventEmitter {
  /** @type {StandInDevice[]} */
  static created = [];

  /**
   * @param {string} token
   * @param {Record<string, unknown>} options
   */
  constructor(token, options) {
    super();
    this.token = token;
    this.options = { ...options };
    /** @type {string[]} */
    this.tokenUpdates = [];
    /** @type {Array<Record<string, unknown>>} */
    this.optionUpdates = [];
    /** edge changes attempted during an active call (the SDK throws) */
    this.refusedOptionUpdates = 0;
    /** @type {Array<EventEmitter | object>} */
    this.calls = [];
    /** @type {EventEmitter | object | null} */
    this.activeCall = null;
    StandInDevice.created.push(this);
  }

  get isBusy() {
    return this.activeCall !== null;
  }

  /** @param {string} token */
  updateToken(token) {
    this.token = token;
    this.tokenUpdates.push(token);
  }

  /** @param {Record<string, unknown>} options */
  updateOptions(options) {
    if (this.isBusy && 'edge' in options) {
      this.refusedOptionUpdates += 1;
      throw new Error('Cannot change Edge while on an active Call');
    }
    this.options = { ...this.options, ...options };
    this.optionUpdates.push(options);
  }

  /** An accepted call (`active`) or a ringing incoming one. */
  startCall({ active = true } = {}) {
    const call = new EventEmitter();
    this.calls.push(call);
    if (active) this.activeCall = call;
    return call;
  }

  /** @param {EventEmitter} call */
  endCall(call) {
    this.calls = this.calls.filter((c) => c !== call);
    if (this.activeCall === call) this.activeCall = null;
    call.emit('disconnect', call);
  }
}

/**
 * Token requests a stand-in region received (edge reports go to the same region).
 *
 * @param {{hits: {path: string}[]}} region
 */
const tokenRequests = (region) => region.hits.filter((h) => h.path.endsWith('/token')).length;

/**
 * Edge-report bodies a stand-in region received.
 *
 * @param {{hits: {path: string, body: unknown}[]}} region
 */
const reportsTo = (region) => region.hits.filter((h) => h.path.endsWith('/edge-report')).map((h) => h.body);

/** @type {Array<{close: () => Promise<void>}>} */
let started = [];
/** @type {Array<{stop: () => void}>} */
let bindings = [];
afterEach(async () => {
  for (const b of bindings) b.stop();
  bindings = [];
  await Promise.all(started.map((r) => r.close()));
  started = [];
  StandInDevice.created = [];
});

/**
 * A region, a provider for it and a binding with test-sized timers.
 *
 * @param {{refreshIn?: number, edges?: string[], bind?: import('../index.js').BindOptions}} [options]
 */
async function setup(options = {}) {
  const region = await startRegion('eu', 'ok', { refreshIn: options.refreshIn ?? 3600, edges: options.edges });
  started.push(region);
  const provider = createTokenProvider({
    endpoints: [region.url],
    client: 'webphone',
    getCredential: () => 'caller-credential',
    attemptTimeoutMs: 1000,
    backoffBaseMs: 20,
    maxRounds: 1,
    cooldownMs: 0,
  });
  /** @type {unknown[]} */
  const errors = [];
  const binding = await bindDevice(StandInDevice, provider, {
    minRefreshMs: 10,
    idleCheckMs: 50,
    onError: (e) => errors.push(e),
    ...options.bind,
  });
  bindings.push(binding);
  return { region, provider, binding, device: binding.device, errors };
}

describe('creation', () => {
  test('creates the Device with the token and the edge array from the service', async () => {
    const { device } = await setup({ edges: ['dublin', 'frankfurt', 'ashburn'], bind: { deviceOptions: { closeProtection: true } } });
    assert.equal(StandInDevice.created.length, 1);
    assert.equal(device.token, 'stand-in-token-eu-1');
    assert.deepEqual(device.options, {
      closeProtection: true, enableImprovedSignalingErrorPrecision: true, edge: ['dublin', 'frankfurt', 'ashburn'],
    });
  });

  test("the app's own choice of the error-precision flag is kept", async () => {
    const { device } = await setup({ bind: { deviceOptions: { enableImprovedSignalingErrorPrecision: false } } });
    assert.equal(device.options.enableImprovedSignalingErrorPrecision, false);
  });

  test('an existing Device gets the token and the edges instead of a new Device', async () => {
    const region = await startRegion('eu', 'ok', { edges: ['sydney', 'roaming'] });
    started.push(region);
    const existing = new StandInDevice('old-token', { edge: 'roaming' });
    const provider = createTokenProvider({ endpoints: [region.url], client: 'webphone', getCredential: () => 'c' });
    const binding = await bindDevice(StandInDevice, provider, { device: existing, onError: () => {} });
    bindings.push(binding);
    assert.equal(binding.device, existing);
    assert.equal(StandInDevice.created.length, 1);
    assert.deepEqual([existing.tokenUpdates, existing.optionUpdates], [['stand-in-token-eu-1'], [{ edge: ['sydney', 'roaming'] }]]);
  });

  test('bindDevice rejects with the provider error when no token can be had', async () => {
    const region = await startRegion('eu', { status: 401, code: 'unauthenticated' });
    started.push(region);
    const provider = createTokenProvider({ endpoints: [region.url], client: 'webphone', getCredential: () => 'c' });
    const error = await bindDevice(StandInDevice, provider).then(() => null, (e) => e);
    assert.equal(error?.code, 'unauthenticated');
    assert.equal(StandInDevice.created.length, 0);
  });
});

describe('token refresh', () => {
  test('the refresh_in timer fetches a new token and calls updateToken', async () => {
    const { device } = await setup({ refreshIn: 0.1 });
    const refreshed = await waitFor(() => device.tokenUpdates.length >= 2, 3000);
    assert.ok(refreshed, `updateToken calls: ${device.tokenUpdates.length}`);
    assert.deepEqual(device.tokenUpdates.slice(0, 2), ['stand-in-token-eu-2', 'stand-in-token-eu-3']);
  });

  test('tokenWillExpire fetches a new token and calls updateToken', async () => {
    const { device } = await setup();
    device.emit('tokenWillExpire', device);
    assert.ok(await waitFor(() => device.tokenUpdates.length === 1));
    assert.deepEqual(device.tokenUpdates, ['stand-in-token-eu-2']);
  });

  test('two triggers at once share one request', async () => {
    const { device, region, binding } = await setup();
    device.emit('tokenWillExpire', device);
    await binding.refresh();
    assert.deepEqual([region.hits.length, device.tokenUpdates], [2, ['stand-in-token-eu-2']]);
  });

  test('a failed refresh is reported and retried after the back-off', async () => {
    const { device, region, errors } = await setup();
    region.set({ status: 503 });
    device.emit('tokenWillExpire', device);
    assert.ok(await waitFor(() => errors.length === 1));
    assert.ok(errors[0] instanceof TokenUnavailableError);
    region.set('ok');
    assert.ok(await waitFor(() => device.tokenUpdates.length === 1), 'no retry after the failure');
    assert.deepEqual(device.tokenUpdates, ['stand-in-token-eu-2']);
  });
});

describe('edges', () => {
  test('a changed edge list is applied with updateOptions when no call is active', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn', 'umatilla'] });
    region.edges = ['dublin', 'frankfurt'];
    await binding.refresh();
    assert.deepEqual(device.optionUpdates, [{ edge: ['dublin', 'frankfurt'] }]);
    assert.deepEqual(binding.edges, ['dublin', 'frankfurt']);
  });

  test('an unchanged edge list does not touch the Device options', async () => {
    const { device, binding } = await setup();
    await binding.refresh();
    assert.deepEqual([device.tokenUpdates.length, device.optionUpdates], [1, []]);
  });

  test('during a call the new edges wait, and are applied when the call ends', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn'], bind: { idleCheckMs: 60_000 } });
    const call = device.startCall();
    region.edges = ['dublin', 'frankfurt'];
    await binding.refresh();
    assert.deepEqual(
      [device.tokenUpdates, device.optionUpdates, device.refusedOptionUpdates, binding.pendingEdges],
      [['stand-in-token-eu-2'], [], 0, ['dublin', 'frankfurt']],
    );
    device.endCall(call); // the call event, not the (1 minute) poll, triggers the update
    assert.ok(await waitFor(() => device.optionUpdates.length === 1, 1000));
    assert.deepEqual([device.optionUpdates, binding.pendingEdges], [[{ edge: ['dublin', 'frankfurt'] }], null]);
  });

  test('a ringing incoming call also defers the edge change (re-connecting would drop it)', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn'], bind: { idleCheckMs: 60_000 } });
    const ringing = device.startCall({ active: false });
    region.edges = ['singapore'];
    await binding.refresh();
    assert.deepEqual([device.optionUpdates, binding.pendingEdges], [[], ['singapore']]);
    device.endCall(ringing);
    assert.ok(await waitFor(() => device.optionUpdates.length === 1, 1000));
    assert.deepEqual(device.optionUpdates, [{ edge: ['singapore'] }]);
  });

  test('a deferred edge list is applied by the idle poll when calls vanish without events', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn'], bind: { idleCheckMs: 50 } });
    const silent = {}; // a call object with no event API
    device.calls = [silent];
    device.activeCall = silent;
    region.edges = ['tokyo'];
    await binding.refresh();
    assert.deepEqual(device.optionUpdates, []);
    device.calls = [];
    device.activeCall = null;
    assert.ok(await waitFor(() => device.optionUpdates.length === 1, 1000));
    assert.deepEqual(device.optionUpdates, [{ edge: ['tokyo'] }]);
  });

  test('while deferred, a newer edge list replaces the waiting one', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn'], bind: { idleCheckMs: 60_000 } });
    const call = device.startCall();
    region.edges = ['dublin'];
    await binding.refresh();
    region.edges = ['frankfurt'];
    await binding.refresh();
    device.endCall(call);
    assert.ok(await waitFor(() => device.optionUpdates.length === 1, 1000));
    assert.deepEqual(device.optionUpdates, [{ edge: ['frankfurt'] }]);
  });
});

describe('device errors', () => {
  for (const code of [20101, 20103, 20104, 20107, 20151, 20157, 31202, 31204, 31205, 31207]) {
    test(`token error ${code} fetches a new token at once and never changes edges`, async () => {
      /** @type {Array<[number | undefined, string]>} */
      const seen = [];
      const { device, region } = await setup({ bind: { onDeviceError: (e, action) => seen.push([e.code, action]) } });
      device.emit('error', { code, message: 'token problem' });
      assert.ok(await waitFor(() => device.tokenUpdates.length === 1));
      assert.deepEqual([region.hits.length, device.optionUpdates, seen], [2, [], [[code, 'refresh']]]);
    });
  }

  for (const code of [31005, 31009, 53000]) {
    test(`connection error ${code} is left to the SDK: no token request, no edge change`, async () => {
      /** @type {string[]} */
      const actions = [];
      const { device, region } = await setup({ bind: { onDeviceError: (_e, action) => actions.push(action) } });
      device.emit('error', { code, message: 'connection problem' });
      await new Promise((r) => setTimeout(r, 100));
      assert.deepEqual([tokenRequests(region), device.tokenUpdates, device.optionUpdates, actions], [1, [], [], ['sdk_fallback']]);
    });
  }

  test('a burst of token errors makes one token request (debounced, one in flight)', async () => {
    const { device, region } = await setup({ bind: { minRefreshMs: 60_000 } });
    for (let i = 0; i < 5; i += 1) device.emit('error', { code: 31204 });
    assert.ok(await waitFor(() => device.tokenUpdates.length === 1));
    device.emit('error', { code: 31204 });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([region.hits.length, device.tokenUpdates.length], [2, 1]);
  });

  test('binding.edge is the edge the Device reports on registered', async () => {
    const { device, binding } = await setup({ edges: ['dublin', 'frankfurt'] });
    assert.equal(binding.edge, null);
    Object.assign(device, { edge: 'frankfurt' });
    device.emit('registered');
    assert.equal(binding.edge, 'frankfurt');
  });
});

describe('edge reports', () => {
  test('each registered event sends one report: the edges given and device.edge', async () => {
    /** @type {unknown[]} */
    const results = [];
    const { device, region } = await setup({
      edges: ['dublin', 'frankfurt', 'ashburn'],
      bind: { onReport: (result) => results.push([result.sent, result.status]) },
    });
    Object.assign(device, { edge: 'frankfurt' });
    device.emit('registered');
    assert.ok(await waitFor(() => results.length === 1));
    assert.deepEqual(
      [reportsTo(region), region.hits.at(-1)?.authorization, results],
      [[{ edges: ['dublin', 'frankfurt', 'ashburn'], connected_edge: 'frankfurt', error_code: null, preflight: null }],
        'Bearer caller-credential', [[true, 202]]],
    );
  });

  test('a Device without an edge on registered reports connected_edge null', async () => {
    const { device, region } = await setup({ edges: ['sydney'] });
    device.emit('registered');
    assert.ok(await waitFor(() => reportsTo(region).length === 1));
    assert.deepEqual(reportsTo(region), [{ edges: ['sydney'], connected_edge: null, error_code: null, preflight: null }]);
  });

  test('an empty edge list is reported as the SDK default the Device was given: roaming', async () => {
    const { device, region } = await setup({ edges: [] });
    Object.assign(device, { edge: 'roaming' });
    device.emit('registered');
    assert.ok(await waitFor(() => reportsTo(region).length === 1));
    assert.deepEqual(reportsTo(region)[0], { edges: ['roaming'], connected_edge: 'roaming', error_code: null, preflight: null });
  });

  test('reportEdges: false sends no report on registered nor on a connection error', async () => {
    const { device, region } = await setup({ bind: { reportEdges: false } });
    device.emit('registered');
    device.emit('error', { code: 31005 });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(reportsTo(region), []);
  });

  test('a connection error sends one report with connected_edge null and the code', async () => {
    const { device, region } = await setup({ edges: ['dublin', 'frankfurt'] });
    device.emit('error', { code: 53000 });
    assert.ok(await waitFor(() => reportsTo(region).length === 1));
    assert.deepEqual(reportsTo(region), [{ edges: ['dublin', 'frankfurt'], connected_edge: null, error_code: 53000, preflight: null }]);
  });

  test('a burst of connection errors in one registration attempt sends one report', async () => {
    const { device, region } = await setup();
    for (const code of [31005, 31009, 53000, 31005]) device.emit('error', { code });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(reportsTo(region).map((b) => /** @type {{error_code: number}} */ (b).error_code), [31005]);
  });

  test('a new registration attempt (registering) allows one more connection-error report', async () => {
    const { device, region } = await setup();
    device.emit('error', { code: 31005 });
    device.emit('registering');
    device.emit('error', { code: 31009 });
    device.emit('error', { code: 31009 });
    assert.ok(await waitFor(() => reportsTo(region).length === 2));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(reportsTo(region).map((b) => /** @type {{error_code: number}} */ (b).error_code), [31005, 31009]);
  });

  test('a token error sends no edge report (it is not the edge)', async () => {
    const { device, region } = await setup();
    device.emit('error', { code: 31204 });
    assert.ok(await waitFor(() => device.tokenUpdates.length === 1));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(reportsTo(region), []);
  });

  test('a refused report never reaches onError and the binding keeps working', async () => {
    /** @type {unknown[]} */
    const results = [];
    const { device, region, binding, errors } = await setup({ bind: { onReport: (r) => results.push([r.sent, r.code]) } });
    region.set({ status: 400, code: 'invalid_request' });
    device.emit('registered');
    assert.ok(await waitFor(() => results.length === 1));
    region.set('ok');
    await binding.refresh();
    assert.deepEqual([results, errors, device.tokenUpdates.length], [[[false, 'invalid_request']], [], 1]);
  });

  test('a provider without reportEdges (a custom one) binds and sends nothing', async () => {
    const region = await startRegion('eu', 'ok');
    started.push(region);
    const full = createTokenProvider({ endpoints: [region.url], client: 'webphone', getCredential: () => 'c' });
    const binding = await bindDevice(StandInDevice, { fetchToken: (o) => full.fetchToken(o) }, { onError: () => {} });
    bindings.push(binding);
    binding.device.emit('registered');
    binding.device.emit('error', { code: 31005 });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(reportsTo(region), []);
  });
});

describe('stop', () => {
  test('stop() removes the listeners and the refresh timer', async () => {
    const { device, region, binding } = await setup({ refreshIn: 0.1 });
    binding.stop();
    device.emit('tokenWillExpire', device);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(
      [device.listenerCount('tokenWillExpire'), device.listenerCount('destroyed'), device.listenerCount('error'),
        device.listenerCount('registered'), device.listenerCount('registering'), region.hits.length, device.tokenUpdates],
      [0, 0, 0, 0, 0, 1, []],
    );
  });

  test('stop() also removes listeners it put on calls and the idle poll', async () => {
    const { device, region, binding } = await setup({ edges: ['ashburn'], bind: { idleCheckMs: 20 } });
    const call = device.startCall();
    region.edges = ['dublin'];
    await binding.refresh();
    binding.stop();
    device.endCall(call);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([call.listenerCount('disconnect'), device.optionUpdates], [0, []]);
  });

  test('the Device being destroyed stops the binding', async () => {
    const { device, binding } = await setup();
    device.emit('destroyed');
    assert.deepEqual([binding.stopped, device.listenerCount('tokenWillExpire')], [true, 0]);
  });
});
