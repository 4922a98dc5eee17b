import TextField from '@mui/material/TextField';
import { useEffect, useState } from 'react';
import { Button } from '@/components/ui/button';
import { getJson, query } from '@/feed';
import { Loading, RowsTable } from './QueryTable';

interface Trace {
  trace_id: string;
  decision: Record<string, unknown> | null;
  spans: Record<string, unknown>[];
}

const HEX32 = /^[0-9a-f]{32}$/;

// A trace id as it is, or the trace of a decision id (looked up in ClickHouse).
async function traceOf(id: string): Promise<Trace> {
  let traceId = id.toLowerCase();
  if (!HEX32.test(traceId)) {
    // Only letters, digits and dashes reach the SQL (a decision id is a ULID and a suffix: 01M8…-kyr4j4bucx2w).
    if (!/^[0-9A-Za-z-]{1,80}$/.test(id)) throw new Error('a decision id is letters, digits and dashes; a trace id 32 hex digits');
    const rows = await query(`SELECT trace_id FROM decisions WHERE decision_id = '${id}' LIMIT 1`);
    if (rows.length === 0) throw new Error(`no decision ${id}`);
    traceId = String(rows[0].trace_id);
  }
  return getJson<Trace>(`/console/traces/${traceId}`);
}

export function Traces() {
  const initial = new URLSearchParams(location.search).get('trace') ?? '';
  const [id, setId] = useState(initial);
  const [trace, setTrace] = useState<Trace | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const look = (value: string) => {
    setBusy(true);
    traceOf(value.trim())
      .then((t) => (setTrace(t), setError(null)))
      .catch((e: Error) => (setTrace(null), setError(e.message)))
      .finally(() => setBusy(false));
  };
  useEffect(() => {
    if (initial) look(initial);
  }, []); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <section aria-labelledby="traces-title" className="flex flex-col gap-3">
      <h2 id="traces-title" className="text-lg font-bold">Traces: one decision's spans</h2>
      <form
        className="flex items-center gap-2"
        onSubmit={(e) => {
          e.preventDefault();
          look(id);
        }}
      >
        <TextField size="small" label="decision id or trace id" value={id} onChange={(e) => setId(e.target.value)} />
        <Button type="submit" disabled={!id.trim()}>Show</Button>
      </form>
      {busy && <Loading error={null} />}
      {error && <Loading error={error} />}
      {trace && (
        <>
          <p className="text-md">
            trace <span className="font-mono">{trace.trace_id}</span>
            {trace.decision ? ` · decision ${String(trace.decision.decision_id ?? '')}` : ''}
          </p>
          <RowsTable
            label="spans"
            rows={trace.spans.map((s) => ({ ...s, SpanAttributes: JSON.stringify(s.SpanAttributes ?? {}) }))}
          />
        </>
      )}
    </section>
  );
}
