import { Loading, RowsTable, useQuery } from './QueryTable';

const SQL = `SELECT at, status, alertname, provider, model, objective, round(value, 3) AS value, threshold, attempts, trace_id
FROM alerts ORDER BY at DESC LIMIT 50`;

export function Alerts() {
  const { rows, error } = useQuery(SQL);
  return (
    <section aria-labelledby="alerts-title" className="flex flex-col gap-3">
      <h2 id="alerts-title" className="text-lg font-bold">Alerts: firing and resolved (latest 50)</h2>
      {rows ? (
        <RowsTable
          label="alerts"
          rows={rows}
          render={{
            trace_id: (v) =>
              v ? (
                <a className="text-primary underline" href={`/console/traces?trace=${String(v)}`}>
                  trace {String(v).slice(0, 8)}
                </a>
              ) : (
                ''
              ),
          }}
        />
      ) : (
        <Loading error={error} />
      )}
    </section>
  );
}
