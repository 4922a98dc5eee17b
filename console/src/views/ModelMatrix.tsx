import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import { Badge } from '@/components/ui/badge';
import { Card, CardContent, CardHeader, CardTitle } from '@/components/ui/card';
import type { Breaker, Feed, Health, MatrixRow } from '@/feed';
import { useTick } from '@/feed';
import { amount, duration, percent } from '@/format';

const STATE_VARIANT = { healthy: 'success', slow: 'warning', unhealthy: 'destructive', idle: 'outline' } as const;

function HealthBadge({ health }: { health: Health | undefined }) {
  const state = health?.state ?? 'idle';
  return (
    <Badge variant={STATE_VARIANT[state]} data-testid={`health-${health?.provider}`} data-state={state}>
      {state}
    </Badge>
  );
}

const BREAKER_VARIANT = { closed: 'success', 'half-open': 'warning', open: 'destructive', unknown: 'outline' } as const;

// The proxies' breakers (published by each replica) beside the control plane's judgement of the attempts.
function BreakerBadge({ provider, breaker }: { provider: string; breaker: Breaker | undefined }) {
  const state = breaker?.state ?? 'unknown';
  const counts =
    breaker && breaker.replicas > 0 && state !== 'closed' ? ` on ${breaker[state as 'open' | 'half-open']} of ${breaker.replicas}` : '';
  return (
    <Badge
      variant={BREAKER_VARIANT[state]}
      data-testid={`breaker-${provider}`}
      data-state={state}
      title={breaker?.reasons.join('; ') || undefined}
    >
      breaker {state}
      {counts}
    </Badge>
  );
}

// A clock counting down from what the snapshot said, at the shared clock's pace.
function Eta({ ms, elapsed, testId }: { ms: number | null; elapsed: number; testId: string }) {
  const left = ms === null ? null : Math.max(0, Math.round(ms - elapsed));
  return (
    <span className="whitespace-nowrap font-mono" data-testid={testId} data-ms={left ?? ''}>
      {duration(left)}
    </span>
  );
}

function ProviderCard({
  provider,
  rows,
  health,
  breaker,
  elapsed,
}: {
  provider: string;
  rows: MatrixRow[];
  health: Health | undefined;
  breaker: Breaker | undefined;
  elapsed: number;
}) {
  return (
    <Card data-testid={`provider-${provider}`}>
      <CardHeader className="flex-row items-center justify-between">
        <CardTitle>{provider}</CardTitle>
        <span className="flex flex-wrap items-center gap-2">
          <BreakerBadge provider={provider} breaker={breaker} />
          <HealthBadge health={health} />
        </span>
      </CardHeader>
      <CardContent>
        <p className="mb-2 text-sm text-muted-foreground">
          attempts {health?.attempts ?? 0} · error rate {percent(health?.error_rate ?? null)} · p95{' '}
          {health?.p95_ms == null ? '–' : `${Math.round(health.p95_ms)} ms`}
        </p>
        <Table size="small" aria-label={`${provider} quotas by window`}>
          <TableHead>
            <TableRow>
              <TableCell>scope</TableCell>
              <TableCell>window</TableCell>
              <TableCell>metric</TableCell>
              <TableCell align="right">policy cap</TableCell>
              <TableCell align="right">runtime cap</TableCell>
              <TableCell align="right">used</TableCell>
              <TableCell align="right">remaining</TableCell>
              <TableCell align="right">resets in</TableCell>
              <TableCell align="right">exhausted in</TableCell>
            </TableRow>
          </TableHead>
          <TableBody>
            {rows.map((row) => {
              const id = `${row.scope}-${row.window}-${row.metric}`;
              return (
                <TableRow key={id}>
                  <TableCell>{row.scope === provider ? '' : row.scope.slice(provider.length + 1)}</TableCell>
                  <TableCell>{row.window}</TableCell>
                  <TableCell>{row.metric}</TableCell>
                  <TableCell align="right">{amount(row.policy_cap)}</TableCell>
                  <TableCell align="right">{row.runtime_cap === null ? '–' : amount(row.runtime_cap)}</TableCell>
                  <TableCell align="right">{amount(row.used)}</TableCell>
                  <TableCell align="right">{amount(row.remaining)}</TableCell>
                  <TableCell align="right">
                    <Eta ms={row.reset_in} elapsed={elapsed} testId={`reset-${id}`} />
                  </TableCell>
                  <TableCell align="right">
                    <Eta ms={row.exhaust_in} elapsed={elapsed} testId={`exhaust-${id}`} />
                    {row.no_eta && <span className="ml-1 text-sm text-muted-foreground">({row.no_eta})</span>}
                  </TableCell>
                </TableRow>
              );
            })}
          </TableBody>
        </Table>
      </CardContent>
    </Card>
  );
}

export function ModelMatrix({ feed }: { feed: Feed }) {
  useTick(250);
  const { snapshot } = feed;
  if (!snapshot) return <p role="status">Waiting for the control plane's first snapshot…</p>;
  const elapsed = feed.clockNow() - snapshot.now_ms;
  const shares = Object.entries(snapshot.split);
  return (
    <div className="flex flex-col gap-4">
      <div className="flex flex-wrap items-center gap-3 text-md" data-testid="clock">
        <span>
          shared clock <span className="font-mono">{new Date(feed.clockNow()).toISOString().slice(0, 19).replace('T', ' ')}</span> UTC
        </span>
        <span aria-label="policy split">
          split:{' '}
          {shares.length === 0
            ? 'no decisions in the window'
            : shares.map(([policy, share]) => `${policy} ${percent(share)}`).join(' · ')}
        </span>
      </div>
      <div className="grid gap-4">
        {snapshot.providers.map((provider) => (
          <ProviderCard
            key={provider}
            provider={provider}
            rows={snapshot.matrix.filter((r) => r.scope === provider || r.scope.startsWith(`${provider}/`))}
            health={snapshot.health.find((h) => h.provider === provider)}
            breaker={snapshot.breakers?.[provider]}
            elapsed={elapsed}
          />
        ))}
      </div>
    </div>
  );
}
