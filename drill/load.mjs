// Simulated app start-ups, each one a fresh app using the real helper (js/src/index.js):
// a new createTokenProvider with its country's endpoints in order, one fetchToken(), one JSON
// line recording the outcome. Usage: node drill/load.mjs PLAN.json  (stops on SIGTERM/SIGINT,
// lets in-flight start-ups finish for up to 10 s, then exits 0).
//
// PLAN: {client, rate, attemptTimeoutMs, out, geoHeader, apps: [{country, kind, weight,
//        endpoints, credentials}]}
// Line: {t, ms, ok, country, kind, region, endpoint, edges, attempts, error}
// A line never holds a token or a credential.
import { createWriteStream, readFileSync } from 'node:fs';

import { createTokenProvider } from '../js/src/index.js';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const out = createWriteStream(plan.out, { flags: 'a' });
const apps = plan.apps;
const totalWeight = apps.reduce((sum, app) => sum + app.weight, 0);
let rate = plan.rate;
let stopping = false;
let inFlight = 0;
let launched = 0;
let clock = Date.now();
let due = 0;

function pick() {
  let r = Math.random() * totalWeight;
  for (const app of apps) {
    r -= app.weight;
    if (r <= 0) return app;
  }
  return apps[apps.length - 1];
}

async function startUp(app) {
  const credential = app.credentials[Math.floor(Math.random() * app.credentials.length)];
  const attempts = [];
  const provider = createTokenProvider({
    endpoints: app.endpoints,
    client: plan.client,
    getCredential: () => credential,
    attemptTimeoutMs: plan.attemptTimeoutMs,
    maxRounds: 3,
    backoffBaseMs: 200,
    onAttempt: (a) => attempts.push([app.endpoints.indexOf(a.endpoint), a.outcome, a.status ?? null]),
    fetch: (url, init) => fetch(url, { ...init, headers: { ...init.headers, [plan.geoHeader]: app.country } }),
  });
  const t = Date.now();
  const started = performance.now();
  const line = { t, ms: 0, ok: false, country: app.country, kind: app.kind, region: null,
    endpoint: null, edges: null, attempts, error: null };
  try {
    const response = await provider.fetchToken();
    line.ok = true;
    line.region = response.region ?? null;
    line.edges = response.edges;
    line.endpoint = app.endpoints.indexOf(provider.lastEndpoint);
  } catch (err) {
    line.error = err?.code ?? err?.name ?? String(err);
  }
  line.ms = Math.round((performance.now() - started) * 10) / 10;
  out.write(`${JSON.stringify(line)}\n`);
}

function tick() {
  if (stopping) return;
  const now = Date.now();
  due += (rate * (now - clock)) / 1000;
  clock = now;
  while (due >= 1 && inFlight < 4000) {
    due -= 1;
    launched += 1;
    inFlight += 1;
    startUp(pick()).finally(() => { inFlight -= 1; });
  }
  setTimeout(tick, 10);
}

async function stop() {
  if (stopping) return;
  stopping = true;
  const deadline = Date.now() + 10_000;
  while (inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => out.end(r));
  process.exit(0);
}

process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// "RATE n" on stdin changes the rate (the demo page's slider could use it).
process.stdin.on('data', (data) => {
  const match = /RATE (\d+(?:\.\d+)?)/.exec(String(data));
  if (match) rate = Number(match[1]);
});
process.stdin.on('end', () => {});
tick();
