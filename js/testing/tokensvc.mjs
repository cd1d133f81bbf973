// Running real tokensvc instances for the browser test: a temp client config, an HS256 caller JWT,
// `tokensvc serve` processes on free loopback ports, stopped by their own PID.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { freePort } from './regions.mjs';

export const CALLER_ISSUER = 'https://idp.example.com/';
export const CALLER_AUDIENCE = 'tokensvc';
/** The client file's edge lists, which the test expects back from the service. */
export const CLIENT_EDGES = Object.freeze({
  default: ['ashburn', 'umatilla', 'roaming'],
  IE: ['dublin', 'frankfurt', 'ashburn'],
});

/**
 * Absolute path of an executable on PATH, or null.
 *
 * @param {string} name
 */
export function which(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/** @param {number} n */
const hex = (n) => randomBytes(n).toString('hex');

/**
 * A temp config dir holding one dev client file (JSON is valid YAML), with a preflight (echo)
 * TwiML app. Secrets and SIDs are random per run.
 *
 * @param {{client: string, origin: string}} options
 */
export function writeClientConfig({ client, origin }) {
  const dir = mkdtempSync(path.join(tmpdir(), 'tokensvc-js-'));
  const hs256Secret = hex(32);
  const preflightAppSid = `AP${hex(16)}`;
  const config = {
    twilio: {
      account_sid: `AC${hex(16)}`,
      api_key_sid: `SK${hex(16)}`,
      api_key_secret: hex(16),
      outgoing_application_sid: `AP${hex(16)}`,
      incoming_allow: true,
      home_region: 'us1',
    },
    token: { ttl_seconds: 3600 },
    auth: {
      type: 'jwt',
      algorithms: ['HS256'],
      hs256_secret: hs256Secret,
      issuer: CALLER_ISSUER,
      audience: CALLER_AUDIENCE,
      identity_claim: 'sub',
    },
    cors: { allow_origins: [origin] },
    edges: { default: [...CLIENT_EDGES.default], by_country: { IE: [...CLIENT_EDGES.IE] } },
    rate_limit: { per_identity: '30/minute', per_ip: '300/minute' },
    preflight: { outgoing_application_sid: preflightAppSid, ttl_seconds: 300 },
    dev: true,
  };
  writeFileSync(path.join(dir, `${client}.yaml`), `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  return { dir, hs256Secret, preflightAppSid, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** @param {object} value */
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

/**
 * A caller JWT signed with HS256 (what the app's identity provider would issue).
 *
 * @param {string} secret
 * @param {string} subject
 * @param {number} [lifetimeSeconds]
 */
export function signCallerJwt(secret, subject, lifetimeSeconds = 600) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url({ alg: 'HS256', typ: 'JWT' });
  const body = b64url({
    iss: CALLER_ISSUER,
    aud: CALLER_AUDIENCE,
    sub: subject,
    iat: now,
    exp: now + lifetimeSeconds,
  });
  const signature = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/**
 * Decode a JWT's header and payload without verifying it.
 *
 * @param {string} jwt
 */
export function decodeJwt(jwt) {
  const [head = '', body = ''] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(head, 'base64url').toString('utf8')),
    payload: JSON.parse(Buffer.from(body, 'base64url').toString('utf8')),
  };
}

/**
 * Start `tokensvc serve` for one region and wait for /readyz. The process leads its own group so
 * that stop() also reaches any Hypercorn worker it forked. `/metrics` is on its own admin port
 * (`instance.metrics()` reads it).
 *
 * @param {{executable: string, configDir: string, region: string, readyTimeoutMs?: number}} options
 */
export async function startTokensvc({ executable, configDir, region, readyTimeoutMs = 30_000 }) {
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const child = spawn(executable, ['serve', '--config', configDir, '--host', '127.0.0.1', '--port', String(port)], {
    env: {
      ...process.env,
      TOKENSVC_REGION: region,
      TOKENSVC_ADMIN_PORT: String(adminPort),
      TOKENSVC_GRACEFUL_TIMEOUT: '1',
      TOKENSVC_RELOAD_INTERVAL: '0',
      TOKENSVC_LOG_LEVEL: 'warning',
      TOKENSVC_LOG_FORMAT: 'text',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const pid = /** @type {number} */ (child.pid);
  let output = '';
  const keep = (/** @type {Buffer} */ chunk) => {
    output = (output + chunk.toString('utf8')).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  /** @type {number | null} */
  let exitCode = null;
  let exited = false;
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = true;
      exitCode = code ?? (signal ? 128 : null);
      resolve(undefined);
    });
  });

  const url = `http://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const instance = {
    region,
    url,
    adminUrl,
    pid,
    /** The Prometheus text of the admin port's /metrics. */
    async metrics() {
      const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(2000) });
      return res.text();
    },
    get output() {
      return output;
    },
    /** SIGTERM to the process group, SIGKILL after `graceMs`; resolves once the process exited. */
    async stop(graceMs = 5000) {
      if (exited) return;
      signalGroup(pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(pid, 'SIGKILL'), graceMs);
      await exitedPromise;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + readyTimeoutMs;
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`tokensvc (${region}) exited with ${exitCode} before ready:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200) return instance;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await instance.stop();
  throw new Error(`tokensvc (${region}) not ready within ${readyTimeoutMs} ms:\n${output}`);
}

/**
 * @param {number} pid
 * @param {NodeJS.Signals} signal
 */
function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

/**
 * The value of one sample in Prometheus text, or 0 when the series is absent: `name` and every
 * label of `labels` must match (other labels may be present).
 *
 * @param {string} text
 * @param {string} name
 * @param {Record<string, string>} labels
 */
export function sampleValue(text, name, labels) {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries([...(match[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return 0;
}
