import { Loading, RowsTable, useQuery } from './QueryTable';

const SQL = `SELECT window_start, \`group\`, estimator, round(value, 4) AS utility, round(low, 4) AS low, round(high, 4) AS high,
  round(champion, 4) AS champion, samples, promotion_candidate, challenger_version
FROM learner_metrics WHERE as_of = (SELECT max(as_of) FROM learner_metrics) ORDER BY window_start DESC, \`group\`, estimator LIMIT 100`;

export function Learner() {
  const { rows, error } = useQuery(SQL, 10000);
  return (
    <section aria-labelledby="learner-title" className="flex flex-col gap-3">
      <h2 id="learner-title" className="text-lg font-bold">Learner: utility per window with confidence intervals (latest evaluation)</h2>
      {rows ? <RowsTable label="learner metrics" rows={rows} /> : <Loading error={error} />}
    </section>
  );
}
