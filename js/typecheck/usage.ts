// Compile-only check that index.d.ts describes a usable API (npm run typecheck). Never executed.
import {
  bindDevice,
  createTokenProvider,
  TokenRequestError,
  TokenUnavailableError,
  type DeviceLike,
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
