import type { Feed } from '@/feed';
import { RowsTable } from './QueryTable';

export function Scheduler({ feed }: { feed: Feed }) {
  const jobs = feed.snapshot?.jobs;
  return (
    <section aria-labelledby="scheduler-title" className="flex flex-col gap-3">
      <h2 id="scheduler-title" className="text-lg font-bold">Scheduler: queued and running jobs, their plan and deadlines</h2>
      {jobs ? <RowsTable label="jobs" rows={jobs} /> : <p role="status">Waiting for the control plane's first snapshot…</p>}
    </section>
  );
}
