import Table from '@mui/material/Table';
import TableBody from '@mui/material/TableBody';
import TableCell from '@mui/material/TableCell';
import TableHead from '@mui/material/TableHead';
import TableRow from '@mui/material/TableRow';
import { useEffect, useState } from 'react';
import { query } from '@/feed';

// Rows of a read-only query through the control plane's /query, refreshed every `refreshMs`.
export function useQuery(sql: string, refreshMs = 5000) {
  const [rows, setRows] = useState<Record<string, unknown>[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    const load = () =>
      query(sql)
        .then((r) => live && (setRows(r), setError(null)))
        .catch((e: Error) => live && setError(e.message));
    load();
    const timer = setInterval(load, refreshMs);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [sql, refreshMs]);
  return { rows, error };
}

export function RowsTable({ label, rows, render }: { label: string; rows: Record<string, unknown>[]; render?: Record<string, (v: unknown, row: Record<string, unknown>) => React.ReactNode> }) {
  if (rows.length === 0) return <p role="status">Nothing yet.</p>;
  const columns = Object.keys(rows[0]);
  return (
    <div className="overflow-x-auto">
      <Table size="small" aria-label={label}>
        <TableHead>
          <TableRow>
            {columns.map((c) => (
              <TableCell key={c}>{c}</TableCell>
            ))}
          </TableRow>
        </TableHead>
        <TableBody>
          {rows.map((row, i) => (
            <TableRow key={i}>
              {columns.map((c) => (
                <TableCell key={c}>{render?.[c] ? render[c](row[c], row) : String(row[c] ?? '')}</TableCell>
              ))}
            </TableRow>
          ))}
        </TableBody>
      </Table>
    </div>
  );
}

export function Loading({ error }: { error: string | null }) {
  return error ? <p role="alert" className="text-destructive">{error}</p> : <p role="status">Loading…</p>;
}
