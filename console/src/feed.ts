import { useEffect, useRef, useState } from 'react';

export interface MatrixRow {
  scope: string;
  window: string;
  metric: string;
  policy_cap: number;
  runtime_cap: number | null;
  used: number;
  remaining: number;
  reset_in: number | null;
  exhaust_in: number | null;
  no_eta: string | null;
  source: string;
}

export interface Health {
  provider: string;
  attempts: number;
  error_rate: number | null;
  p95_ms: number | null;
  state: 'idle' | 'healthy' | 'slow' | 'unhealthy';
}

// The proxies' circuit breakers for one provider, summed over the live replicas (symphony/breakers.py).
export interface Breaker {
  state: 'closed' | 'open' | 'half-open' | 'unknown';
  replicas: number;
  closed: number;
  open: number;
  'half-open': number;
  reasons: string[];
}

export interface Snapshot {
  now_ms: number;
  sent_ms: number;
  speed: number;
  window_ms: number;
  providers: string[];
  matrix: MatrixRow[];
  health: Health[];
  breakers?: Record<string, Breaker>;
  split: Record<string, number>;
  jobs: Record<string, unknown>[];
}

export interface Feed {
  snapshot: Snapshot | null;
  error: string | null;
  // The shared clock's time now: the snapshot's send time run on at the clock's speed.
  clockNow: () => number;
}

// The control plane's live feed (server-sent events at /console/events).
export function useFeed(): Feed {
  const [snapshot, setSnapshot] = useState<Snapshot | null>(null);
  const [error, setError] = useState<string | null>(null);
  const anchor = useRef({ at: 0, now: 0, speed: 1 }); // performance.now() at arrival, sent_ms, speed

  useEffect(() => {
    const source = new EventSource('/console/events');
    source.addEventListener('snapshot', (message) => {
      const next = JSON.parse((message as MessageEvent<string>).data) as Snapshot;
      anchor.current = { at: performance.now(), now: next.sent_ms, speed: next.speed };
      setSnapshot(next);
      setError(null);
    });
    // The server's own account of a failed snapshot; the stream carries on.
    source.addEventListener('failure', (message) => {
      setError((JSON.parse((message as MessageEvent<string>).data) as { error: string }).error);
    });
    // The connection itself dropped: EventSource reconnects by itself.
    source.onerror = () => setError(source.readyState === EventSource.CLOSED ? 'the live feed is closed' : 'the live feed is reconnecting');
    return () => source.close();
  }, []);

  const clockNow = () => {
    const { at, now, speed } = anchor.current;
    return at === 0 ? now : now + (performance.now() - at) * speed;
  };
  return { snapshot, error, clockNow };
}

// Re-render every `ms` so clocks tick between snapshots.
export function useTick(ms: number): void {
  const [, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((t) => t + 1), ms);
    return () => clearInterval(timer);
  }, [ms]);
}

export async function query(sql: string): Promise<Record<string, unknown>[]> {
  const response = await fetch('/console/query', { method: 'POST', body: JSON.stringify({ sql }) });
  const body = (await response.json()) as { columns?: string[]; rows?: unknown[][]; error?: string };
  if (!response.ok || !body.columns || !body.rows) throw new Error(body.error ?? `query failed (${response.status})`);
  const columns = body.columns;
  return body.rows.map((row) => Object.fromEntries(columns.map((c, i) => [c, row[i]])));
}

export async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  const body = (await response.json()) as T & { error?: string };
  if (!response.ok) throw new Error(body.error ?? `${url} failed (${response.status})`);
  return body;
}
