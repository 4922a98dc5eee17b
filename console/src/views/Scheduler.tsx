import type { Feed } from '@/feed';
import { useTick } from '@/feed';
import { duration } from '@/format';
import { RowsTable } from './QueryTable';

interface Job {
  id: string;
  app: string | null;
  state: string | null;
  planned_provider: string | null;
  planned_ms: string | null;
  deadline_ms: string | null;
  tokens: string | null;
}

const until = (ms: string | null, now: number) => (ms ? duration(Number(ms) - now) : '–');

// Per provider window the plan sends jobs into: a lane from now to the last deadline, each job a bar from its
// send time to its deadline.
function Timeline({ jobs, now }: { jobs: Job[]; now: number }) {
  const end = Math.max(now + 60_000, ...jobs.map((j) => Number(j.deadline_ms ?? 0)));
  const at = (ms: number) => `${Math.min(100, Math.max(0, ((ms - now) / (end - now)) * 100))}%`;
  const lanes = [...new Set(jobs.map((j) => j.planned_provider || 'not planned'))].sort();
  return (
    <div className="flex flex-col gap-2" aria-label={`plan timeline, now to ${duration(end - now)} ahead`} role="group">
      {lanes.map((lane) => (
        <div key={lane} className="flex items-center gap-3">
          <span className="w-32 shrink-0 text-md font-bold">{lane}</span>
          <div className="relative h-8 grow rounded-md border border-border bg-card">
            {jobs
              .filter((j) => (j.planned_provider || 'not planned') === lane)
              .map((j) => {
                const start = j.planned_ms ? Number(j.planned_ms) : now;
                const deadline = Number(j.deadline_ms ?? start);
                return (
                  <div
                    key={j.id}
                    className="absolute top-1 flex h-6 items-center overflow-hidden rounded-sm bg-primary px-1 text-sm text-primary-foreground"
                    style={{ left: at(start), width: `calc(${at(deadline)} - ${at(start)})` }}
                    title={`${j.id}: sends in ${until(j.planned_ms, now)}, deadline in ${until(j.deadline_ms, now)}`}
                  >
                    {j.id}
                  </div>
                );
              })}
          </div>
        </div>
      ))}
    </div>
  );
}

export function Scheduler({ feed }: { feed: Feed }) {
  useTick(1000);
  const jobs = feed.snapshot?.jobs as Job[] | undefined;
  const now = feed.clockNow();
  return (
    <section aria-labelledby="scheduler-title" className="flex flex-col gap-4">
      <h2 id="scheduler-title" className="text-lg font-bold">Scheduler: queued and running jobs, their plan and deadlines</h2>
      {!jobs ? (
        <p role="status">Waiting for the control plane's first snapshot…</p>
      ) : jobs.length === 0 ? (
        <p role="status">No job is queued or running.</p>
      ) : (
        <>
          <Timeline jobs={jobs} now={now} />
          <RowsTable
            label="jobs"
            rows={jobs.map((j) => ({
              id: j.id,
              app: j.app,
              state: j.state,
              'plan: provider': j.planned_provider || '–',
              'sends in': until(j.planned_ms, now),
              'deadline in': until(j.deadline_ms, now),
              tokens: j.tokens,
            }))}
          />
        </>
      )}
    </section>
  );
}
