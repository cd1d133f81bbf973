// Compile-only check that index.d.ts describes a usable API (npm run typecheck). Never executed.
import {
  bindDevice,
  createTokenProvider,
  PROBLEM_CODES,
  runPreflight,
  TokenRequestError,
  TokenUnavailableError,
  type DeviceLike,
  type PreflightResult,
  type PreflightTestLike,
  type PreflightTokenResponse,
  type ProblemCode,
  type ReportResult,
  type TokenResponse,
} from '../index.js';

class StandInDevice implements DeviceLike {
  readonly calls: never[] = [];
  readonly isBusy = false;
  constructor(readonly token: string, readonly options: Record<string, unknown>) {}
  on(_event: string, _listener: (...args: unknown[]) => void): this {
    return this;
  }
  off(_event: string, _listener: (...args: unknown[]) => void): this {
    return this;
  }
  updateToken(token: string): void {
    void token;
  }
  updateOptions(options: { edge?: string | string[] }): void {
    void options;
  }
  register(): Promise<void> {
    return Promise.resolve();
  }
}

export async function example(): Promise<void> {
  const provider = createTokenProvider({
    endpoints: ['https://token.eu.example.com', 'https://token.us.example.com'],
    client: 'webphone',
    getCredential: async () => 'caller-jwt',
    attemptTimeoutMs: 3000,
    country: () => 'IE',
    onAttempt: (a) => console.debug(a.endpoint, a.outcome, a.status ?? '-', a.elapsedMs),
  });
  try {
    const response: TokenResponse = await provider.fetchToken();
    const first: string | undefined = response.edges[0];
    void first;
  } catch (err) {
    if (err instanceof TokenRequestError && err.code === 'unauthenticated') return;
    if (err instanceof TokenUnavailableError) console.warn(err.retryInMs, err.attempts.length);
    throw err;
  }
  const binding = await bindDevice(StandInDevice, provider, {
    deviceOptions: { closeProtection: true },
    onEdgesChanged: (edges) => console.info(edges.join(',')),
  });
  await binding.device.register(); // the concrete Device type flows through
  const edges: readonly string[] = binding.edges;
  void edges;
  binding.stop();
}

class StandInPreflight implements PreflightTestLike {
  on(_event: string, _listener: (...args: unknown[]) => void): this {
    return this;
  }
  stop(): void {}
}

export async function reportsAndPreflight(): Promise<void> {
  const provider = createTokenProvider({
    endpoints: ['https://token.eu.example.com'],
    client: 'webphone',
    getCredential: () => 'caller-jwt',
  });
  const sent: ReportResult = await provider.reportEdges({ edges: ['dublin'], connected_edge: 'dublin', error_code: null });
  if (!sent.sent && sent.reason === 'rejected') console.warn(sent.code);
  try {
    const preflight: PreflightTokenResponse = await provider.fetchPreflightToken();
    void preflight.edges;
  } catch (err) {
    if (err instanceof TokenRequestError && err.code === 'no_preflight_app') return;
    throw err;
  }
  const Device = { runPreflight: (_token: string, _options: Record<string, unknown>) => new StandInPreflight() };
  const results: PreflightResult[] = await runPreflight(Device, provider, {
    edges: ['dublin', 'frankfurt'],
    onResult: (r) => console.info(r.edge, r.ok, r.rttMs ?? '-', r.quality ?? '-'),
  });
  void results;
  const codes: readonly ProblemCode[] = PROBLEM_CODES;
  void codes;
  const binding = await bindDevice(StandInDevice, provider, {
    reportEdges: false,
    onReport: (result, report) => console.debug(result.sent, report.edges),
  });
  const edge: string | null = binding.edge;
  void edge;
}
