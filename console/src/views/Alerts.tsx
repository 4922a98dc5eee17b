import { Loading, RowsTable, useQuery } from './QueryTable';

// Each alert with its evidence bundle: evidence_bundles.incident_id is the alert's alert_id (the latest bundle
// recorded for it; '' when none was captured).
const SQL = `SELECT a.at AS at, a.status AS status, a.alertname AS alertname, a.provider AS provider, a.model AS model,
  a.objective AS objective, round(a.value, 3) AS value, a.threshold AS threshold, a.attempts AS attempts,
  a.trace_id AS trace_id, b.bundle_id AS evidence
FROM alerts AS a
LEFT JOIN (SELECT incident_id, argMax(bundle_id, recorded_at) AS bundle_id FROM evidence_bundles FINAL GROUP BY incident_id) AS b
  ON b.incident_id = a.alert_id
ORDER BY a.at DESC LIMIT 50`;

// A bundle id reads evidence-<decision id>-<16 hex digits> (sinks/evidence/bundle.py); the control plane checks it again.
const BUNDLE_ID = /^evidence-[0-9A-Za-z_-]{1,64}-[0-9a-f]{16}$/;

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
            evidence: (v) =>
              typeof v === 'string' && BUNDLE_ID.test(v) ? (
                <a className="text-primary underline" href={`/console/evidence/${v}`} data-testid="evidence-link">
                  bundle {v.slice(-8)}
                </a>
              ) : (
                'none'
              ),
          }}
        />
      ) : (
        <Loading error={error} />
      )}
    </section>
  );
}
