// Headless Chromium pages with the real @twilio/voice-sdk Device bound through bindDevice
// (js/src/device.js). Usage: node drill/browser.mjs PLAN.json; runs until SIGTERM.
// Each page binds a Device through the global endpoint, then refreshes every 2 s (as a
// tokenWillExpire would, sooner), and records the service's edges next to the edges the SDK
// derived its signaling URIs from (device._chunderURIs: wss://voice-js.<edge>.twilio.com).
// Line: {event: bound|refresh|error, page, country, region, edges, sdkEdges, t}
import { createWriteStream, readFileSync } from 'node:fs';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = createWriteStream(plan.out, { flags: 'a' });
const SRC = fileURLToPath(new URL('../js/src/', import.meta.url));
const SDK = fileURLToPath(new URL('./node_modules/@twilio/voice-sdk/dist/twilio.min.js', import.meta.url));

const PAGE = `<!doctype html><html lang="en"><meta charset="utf-8"><title>drill</title>
<script src="/sdk/twilio.min.js"></script>
<script type="module">
import * as tokensvc from '/src/index.js';
window.tokensvc = tokensvc;
document.body.dataset.ready = 'yes';
</script><body></body></html>`;

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url ?? '/', 'http://127.0.0.1');
  const js = (body) => { res.writeHead(200, { 'Content-Type': 'text/javascript' }); res.end(body); };
  if (pathname === '/') { res.writeHead(200, { 'Content-Type': 'text/html' }); res.end(PAGE); return; }
  if (pathname === '/sdk/twilio.min.js') { js(readFileSync(SDK)); return; }
  const match = /^\/src\/([a-z-]+\.js)$/.exec(pathname);
  if (match) { try { js(readFileSync(SRC + match[1])); return; } catch { /* 404 below */ } }
  res.writeHead(404); res.end();
});
await new Promise((resolve) => server.listen(plan.port, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: plan.chromium, headless: true, timeout: 60_000,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync'],
});
const write = (line) => out.write(`${JSON.stringify({ t: Date.now(), ...line })}\n`);

const pages = await Promise.all(plan.pages.map(async (spec, index) => {
  const page = await browser.newPage();
  page.on('pageerror', (e) => write({ event: 'error', page: index, country: spec.country, error: String(e).slice(0, 200) }));
  await page.exposeFunction('drillRecord', (line) => write({ page: index, country: spec.country, ...line }));
  await page.goto(`http://127.0.0.1:${plan.port}/`);
  await page.waitForSelector('body[data-ready="yes"]', { state: 'attached', timeout: 30_000 });
  await page.evaluate(async ({ endpoints, credential, client, country }) => {
    const { createTokenProvider, bindDevice } = window.tokensvc;
    const sdkEdges = (device) => (device._chunderURIs ?? []).map((u) => (/voice-js\.([a-z0-9-]+)\.twilio\.com/.exec(u) ?? [])[1]);
    const provider = createTokenProvider({
      endpoints, client, getCredential: () => credential, attemptTimeoutMs: 2000,
      fetch: (url, init) => fetch(`${url}?drill_geo=${country}`, init),
    });
    const binding = await bindDevice(window.Twilio.Device, provider, {
      deviceOptions: { logLevel: 'error' }, minRefreshMs: 1000,
      onToken: (r) => window.drillRecord({ event: 'refresh', region: r.region, edges: r.edges, sdkEdges: sdkEdges(binding.device) }),
      onError: (e) => window.drillRecord({ event: 'error', error: String(e?.code ?? e) }),
    });
    window.drillRecord({ event: 'bound', region: null, edges: [...binding.edges], sdkEdges: sdkEdges(binding.device) });
    setInterval(() => { binding.refresh().catch(() => {}); }, 2000);
  }, { endpoints: spec.endpoints, credential: spec.credential, client: plan.client, country: spec.country });
  return page;
}));

async function stop() {
  await Promise.allSettled(pages.map((p) => p.close()));
  await browser.close();
  server.close();
  await new Promise((r) => out.end(r));
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
