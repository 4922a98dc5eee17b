import { useState } from 'react';
import { Badge } from '@/components/ui/badge';
import { Button } from '@/components/ui/button';
import { getJson } from '@/feed';
import { Loading, RowsTable, useQuery } from './QueryTable';

const SQL = `SELECT window_start, \`group\`, estimator, round(value, 4) AS utility, round(low, 4) AS low, round(high, 4) AS high,
  round(champion, 4) AS champion, samples, promotion_candidate, challenger_version
FROM learner_metrics WHERE as_of = (SELECT max(as_of) FROM learner_metrics) ORDER BY window_start DESC, \`group\`, estimator LIMIT 100`;

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

export function Learner() {
  const { rows, error } = useQuery(SQL, 10000);
  return (
    <section aria-labelledby="learner-title" className="flex flex-col gap-4">
      <h2 id="learner-title" className="text-lg font-bold">Learner: utility per window with confidence intervals</h2>
      <Evaluate />
      <h3 className="text-md font-bold">The latest recorded evaluation</h3>
      {rows ? <RowsTable label="learner metrics" rows={rows} /> : <Loading error={error} />}
    </section>
  );
}
