import { useEffect, useState } from 'react';
import { Badge } from '@/components/ui/badge';
import { Button } from '@/components/ui/button';
import { getJson } from '@/feed';
import { Loading, RowsTable, useQuery } from './QueryTable';

const SQL = `SELECT window_start, \`group\`, estimator, round(value, 4) AS utility, round(low, 4) AS low, round(high, 4) AS high,
  round(champion, 4) AS champion, samples, promotion_candidate, challenger_version
FROM learner_metrics WHERE as_of = (SELECT max(as_of) FROM learner_metrics) ORDER BY window_start DESC, \`group\`, estimator LIMIT 100`;

// What `just learner-promote` recorded (the promotion event, ClickHouse promotions), newest first.
const HISTORY_SQL = `SELECT toUnixTimestamp64Milli(ts) AS at_ms, version, champion_version, challenger_version, candidate,
  uplift_low, forced_over, branch, commit, pull_request_url, pull_request_number, diff
FROM promotions FINAL ORDER BY ts DESC LIMIT 20`;

interface ArmChange {
  arm: string;
  before: number | null;
  after: number | null;
}
interface TaskChange {
  task: string;
  new: boolean;
  top_before: string;
  top_after: string;
  unchanged: number;
  changes: ArmChange[];
}
interface PolicyDiff {
  champion_version: string;
  challenger_version: string | null;
  reason?: string;
  tasks: TaskChange[];
}

interface Estimate {
  value: number;
  low: number;
  high: number;
}
interface Evaluation {
  champion_version: string;
  challenger_version: string;
  decisions: number;
  promotion: { candidate: boolean; reasons: string[] };
  windows: ({ start_ms: number; group: string; samples: number; champion: number; ended: boolean } & Record<string, unknown>)[];
}

const interval = (e: unknown) => {
  const x = e as Estimate | undefined;
  return x ? `${x.value.toFixed(3)} [${x.low.toFixed(3)}, ${x.high.toFixed(3)}]` : '–';
};

// The promotion rule's verdict now: GET /learner/metrics evaluates the published challenger over the last week
// (and records the evaluation, so it runs when asked, not on a timer).
function Evaluate() {
  const [result, setResult] = useState<Evaluation | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const run = () => {
    setBusy(true);
    getJson<Evaluation>('/console/learner/metrics?days=7&resamples=200')
      .then((r) => (setResult(r), setError(null)))
      .catch((e: Error) => setError(e.message))
      .finally(() => setBusy(false));
  };
  return (
    <div className="flex flex-col gap-3">
      <div className="flex items-center gap-3">
        <Button onClick={run} disabled={busy}>
          {busy ? 'Evaluating…' : 'Evaluate the challenger now'}
        </Button>
        {result && (
          <Badge variant={result.promotion.candidate ? 'success' : 'outline'}>
            {result.promotion.candidate ? 'promotion candidate' : 'not a candidate'}
          </Badge>
        )}
      </div>
      {error && <Loading error={error} />}
      {result && (
        <>
          <p className="text-md">
            champion {result.champion_version} · challenger {result.challenger_version} · {result.decisions} decisions
          </p>
          <ul className="list-disc pl-6 text-md">
            {result.promotion.reasons.map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
          <RowsTable
            label="utility per window"
            rows={result.windows.map((w) => ({
              window: new Date(w.start_ms).toISOString().slice(0, 10),
              ended: w.ended ? 'yes' : 'no',
              group: w.group,
              samples: w.samples,
              champion: w.champion.toFixed(3),
              'SNIPS [95% CI]': interval(w.snips),
              'DR [95% CI]': interval(w.dr),
            }))}
          />
        </>
      )}
    </div>
  );
}

const utility = (v: number | null) => (v === null ? '–' : v.toFixed(4));
const change = (a: ArmChange) =>
  a.before === null ? 'added' : a.after === null ? 'removed' : `${a.after - a.before >= 0 ? '+' : ''}${(a.after - a.before).toFixed(4)}`;

// The champion against the challenger published now: the diff a promotion's pull request would carry.
function Diff() {
  const [diff, setDiff] = useState<PolicyDiff | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    getJson<PolicyDiff>('/console/learner/diff')
      .then((d) => (setDiff(d), setError(null)))
      .catch((e: Error) => setError(e.message));
  }, []);
  if (!diff) return <Loading error={error} />;
  if (diff.challenger_version === null) return <p role="status">champion {diff.champion_version}: {diff.reason}</p>;
  const changed = diff.tasks.filter((t) => t.changes.length > 0);
  return (
    <div className="flex flex-col gap-2" data-testid="policy-diff">
      <p className="text-md">
        champion {diff.champion_version} → challenger {diff.challenger_version} · tasks changed:{' '}
        {changed.length === 0 ? 'none' : changed.map((t) => t.task).join(', ')}
      </p>
      {changed.length > 0 && (
        <RowsTable
          label="policy diff"
          rows={changed.flatMap((t) =>
            t.changes.map((a) => ({
              task: t.new ? `${t.task} (new)` : t.task,
              arm: a.arm,
              before: utility(a.before),
              after: utility(a.after),
              change: change(a),
              'top arm': t.top_before === t.top_after ? t.top_after : `${t.top_before} → ${t.top_after}`,
            })),
          )}
        />
      )}
    </div>
  );
}

// The promotions `just learner-promote` opened, each with its pull request and the diff it carried.
function History() {
  const { rows, error } = useQuery(HISTORY_SQL, 10000);
  if (!rows) return <Loading error={error} />;
  if (rows.length === 0) return <p role="status">No promotion recorded yet (`just learner-promote` records each one).</p>;
  return (
    <ul className="flex flex-col gap-3" aria-label="promotions">
      {rows.map((row) => {
        const url = String(row.pull_request_url ?? '');
        const forced = (row.forced_over as string[] | null) ?? [];
        const uplift = row.uplift_low === null || row.uplift_low === undefined ? '–' : `${(Number(row.uplift_low) * 100).toFixed(1)}%`;
        return (
          <li key={`${String(row.version)}-${String(row.at_ms)}`} className="rounded-md border border-border p-3" data-testid="promotion">
            <div className="flex flex-wrap items-center gap-3 text-md">
              <span className="font-bold">{String(row.version)}</span>
              <span>
                was {String(row.champion_version)} · challenger {String(row.challenger_version)} ·{' '}
                {new Date(Number(row.at_ms)).toISOString().slice(0, 16).replace('T', ' ')} UTC
              </span>
              <Badge variant={row.candidate ? 'success' : 'warning'}>
                {row.candidate ? 'candidate' : 'not a candidate'}
              </Badge>
              <span>uplift ≥ {uplift}</span>
              {url.startsWith('https://') || url.startsWith('http://') ? (
                <a className="text-primary underline" href={url}>
                  pull request #{String(row.pull_request_number)}
                </a>
              ) : (
                <span>branch {String(row.branch)} (no pull request)</span>
              )}
            </div>
            {forced.length > 0 && <p className="text-sm">forced over: {forced.join('; ')}</p>}
            <details className="mt-2">
              <summary className="cursor-pointer text-md">policy diff of {String(row.version)}</summary>
              <pre className="mt-2 overflow-x-auto whitespace-pre-wrap text-sm">{String(row.diff)}</pre>
            </details>
          </li>
        );
      })}
    </ul>
  );
}

export function Learner() {
  const { rows, error } = useQuery(SQL, 10000);
  return (
    <section aria-labelledby="learner-title" className="flex flex-col gap-4">
      <h2 id="learner-title" className="text-lg font-bold">Learner: utility per window with confidence intervals</h2>
      <Evaluate />
      <h3 className="text-md font-bold">The latest recorded evaluation</h3>
      {rows ? <RowsTable label="learner metrics" rows={rows} /> : <Loading error={error} />}
      <h3 className="text-md font-bold">Policy diff: the champion against the published challenger</h3>
      <Diff />
      <h3 className="text-md font-bold">Promotions and their pull requests</h3>
      <History />
    </section>
  );
}
