// A test page on 127.0.0.1 that loads the helper's ES modules (src/) and a stand-in Device class,
// plus the headless Chromium launcher the browser test uses.
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-quic',
  '--disable-sync',
];

const SRC_DIR = fileURLToPath(new URL('../src/', import.meta.url));

const INDEX_HTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>tokensvc browser helper test</title>
<script type="module">
import * as tokensvc from '/src/index.js';

// Records what the binding does, like voice-sdk 2.x's Device would receive it.
class StandInDevice {
  static created = [];
  constructor(token, options) {
    this.token = token;
    this.options = { ...options };
    this.tokenUpdates = [];
    this.optionUpdates = [];
    this.calls = [];
    this.isBusy = false;
    this.listeners = new Map();
    StandInDevice.created.push(this);
  }
  on(event, fn) { this.listeners.set(event, [...(this.listeners.get(event) ?? []), fn]); return this; }
  off(event, fn) { this.listeners.set(event, (this.listeners.get(event) ?? []).filter((f) => f !== fn)); return this; }
  emit(event, ...args) { for (const fn of this.listeners.get(event) ?? []) fn(...args); }
  updateToken(token) { this.token = token; this.tokenUpdates.push(token); }
  updateOptions(options) { this.options = { ...this.options, ...options }; this.optionUpdates.push(options); }
  // Device.runPreflight: a stand-in PreflightTest that completes with a voice-sdk 2.18-shaped
  // report (edge, selectedEdge, stats.{rtt,jitter,mos}.average, callQuality, networkTiming).
  static preflights = [];
  static runPreflight(token, options) {
    const listeners = new Map();
    const test = {
      on(event, fn) { listeners.set(event, [...(listeners.get(event) ?? []), fn]); return test; },
      off(event, fn) { listeners.set(event, (listeners.get(event) ?? []).filter((f) => f !== fn)); return test; },
      stop() {},
    };
    StandInDevice.preflights.push({ token, options });
    const stat = (v) => ({ average: v, max: v, min: v });
    const report = {
      edge: options.edge, selectedEdge: options.edge, callSid: 'CA0', networkTiming: {},
      stats: { rtt: stat(42), jitter: stat(3.5), mos: stat(4.3) }, callQuality: 'excellent',
    };
    setTimeout(() => { for (const fn of listeners.get('completed') ?? []) fn(report); }, 10);
    return test;
  }
}

window.tokensvc = tokensvc;
window.StandInDevice = StandInDevice;
document.body.dataset.ready = 'yes';
</script>
<body></body>
</html>
`;

/** Serve the test page and src/*.js on 127.0.0.1 (nothing else). */
export async function startPageServer() {
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (pathname === '/' || pathname === '/index.html') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(INDEX_HTML);
      return;
    }
    const match = /^\/src\/([a-z-]+\.js)$/.exec(pathname);
    if (match && existsSync(SRC_DIR + match[1])) {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(readFileSync(SRC_DIR + match[1]));
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  return {
    origin: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/**
 * Why the browser test cannot run here, or null when it can.
 *
 * @returns {Promise<string | null>}
 */
export async function browserUnavailable() {
  if (!existsSync(CHROMIUM)) {
    return `${CHROMIUM} is missing: run js/scripts/ensure-chromium.sh (apt-get install chromium)`;
  }
  try {
    await import('playwright-core');
  } catch {
    return 'playwright-core is not installed: run `npm ci` in js/';
  }
  return null;
}

/** Launch headless Chromium through playwright-core. */
export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_FLAGS,
    timeout: 30_000,
  });
}

/**
 * Print a banner nobody can miss, for a skipped browser test.
 *
 * @param {string} what
 * @param {string} why
 */
export function loudSkip(what, why) {
  const line = '!'.repeat(78);
  console.error(`\n${line}\n!!! SKIPPED: ${what}\n!!! because ${why}\n${line}\n`);
  return `SKIPPED LOUDLY: ${why}`;
}
