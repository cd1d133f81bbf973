// Stand-in regional tokensvc deployments for the provider and binding tests: node:http servers on
// 127.0.0.1 whose behaviour a test can switch between requests.
import http from 'node:http';
import net from 'node:net';

/**
 * @typedef {'ok' | 'hang' | 'garbage' | {status: number, code?: string, retryAfter?: string, html?: boolean}} Behaviour
 */

const PROBLEM_TITLES = {
  400: 'Invalid request',
  401: 'Authentication required',
  403: 'Forbidden',
  404: 'Unknown client',
  429: 'Too many requests',
  503: 'Not ready',
};

/**
 * Start a stand-in region.
 *
 * @param {string} name region name, returned as `region`
 * @param {Behaviour} behaviour
 * @param {{edges?: string[], refreshIn?: number, corsOrigin?: string}} [options] `corsOrigin`: answer
 *   preflights and add CORS headers for this page origin (browser tests)
 */
export async function startRegion(name, behaviour = 'ok', options = {}) {
  const region = {
    name,
    behaviour,
    edges: options.edges ?? ['ashburn', 'umatilla', 'roaming'],
    refreshIn: options.refreshIn ?? 2700,
    /** @type {{method: string, path: string, authorization: string | undefined, contentType: string | undefined, body: unknown, at: number}[]} */
    hits: [],
    issued: 0,
    reports: 0,
    preflights: 0,
    preflightTtl: 300,
    url: '',
    /** @param {Behaviour} b */
    set(b) {
      region.behaviour = b;
    },
    close: async () => {},
  };
  const server = http.createServer((req, res) => {
    if (options.corsOrigin) {
      res.setHeader('Access-Control-Allow-Origin', options.corsOrigin);
      res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
      res.setHeader('Vary', 'Origin');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, {
          'Access-Control-Allow-Methods': 'POST',
          'Access-Control-Allow-Headers': 'authorization, content-type',
          'Access-Control-Max-Age': '600',
        });
        res.end();
        return;
      }
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = null;
      }
      region.hits.push({
        method: req.method ?? '',
        path: req.url ?? '',
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body,
        at: Date.now(),
      });
      respond(region, res, req.url ?? '');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const address = /** @type {import('node:net').AddressInfo} */ (server.address());
  region.url = `http://127.0.0.1:${address.port}`;
  region.close = async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(() => resolve(undefined)));
  };
  return region;
}

/**
 * `ok` answers what tokensvc would for the path: a token, a preflight token (`stand-in-preflight-
 * <region>-<n>`), or 202 with no body for an edge report.
 *
 * @param {Awaited<ReturnType<typeof startRegion>>} region
 * @param {import('node:http').ServerResponse} res
 * @param {string} path
 */
function respond(region, res, path) {
  const b = region.behaviour;
  if (b === 'hang') return; // never answer; the connection is destroyed at close()
  if (b === 'garbage') {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end('<html>captive portal</html>');
    return;
  }
  if (b === 'ok' && path.endsWith('/edge-report')) {
    region.reports += 1;
    res.writeHead(202, { 'Cache-Control': 'no-store' });
    res.end();
    return;
  }
  if (b === 'ok' && path.endsWith('/preflight-token')) {
    region.preflights += 1;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({
      token: `stand-in-preflight-${region.name}-${region.preflights}`,
      identity: 'alice',
      ttl: region.preflightTtl,
      edges: region.edges,
      country: null,
      region: region.name,
      home_region: 'us1',
    }));
    return;
  }
  if (b === 'ok') {
    region.issued += 1;
    const ttl = 3600;
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
    res.end(JSON.stringify({
      token: `stand-in-token-${region.name}-${region.issued}`,
      identity: 'alice',
      ttl,
      expires_at: new Date(Date.now() + ttl * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
      refresh_in: region.refreshIn,
      edges: region.edges,
      region: region.name,
      home_region: 'us1',
    }));
    return;
  }
  const headers = {};
  if (b.retryAfter !== undefined) headers['Retry-After'] = b.retryAfter;
  if (b.html) {
    res.writeHead(b.status, { ...headers, 'Content-Type': 'text/html' });
    res.end('<html>blocked by proxy</html>');
    return;
  }
  const code = b.code ?? `code_${b.status}`;
  res.writeHead(b.status, { ...headers, 'Content-Type': 'application/problem+json' });
  res.end(JSON.stringify({
    type: 'about:blank',
    title: PROBLEM_TITLES[b.status] ?? 'Error',
    status: b.status,
    detail: `stand-in ${region.name} says ${b.status}`,
    code,
  }));
}

/** A port on 127.0.0.1 that nothing listens on (connections are refused). */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const { port } = /** @type {import('node:net').AddressInfo} */ (server.address());
  await new Promise((resolve) => server.close(() => resolve(undefined)));
  return port;
}

/** Base URL of a region that refuses connections. */
export async function deadRegionUrl() {
  return `http://127.0.0.1:${await freePort()}`;
}

/**
 * Poll `predicate` (awaited: it may be async) every 10 ms until it is truthy or `timeoutMs` passes.
 *
 * @param {() => unknown} predicate
 * @param {number} [timeoutMs]
 */
export async function waitFor(predicate, timeoutMs = 3000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await predicate()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return Boolean(await predicate());
}
