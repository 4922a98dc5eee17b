import type { Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SNAPSHOT = JSON.parse(readFileSync(path.join(here, 'fixtures/snapshot.json'), 'utf8'));
export const QUERY = JSON.parse(readFileSync(path.join(here, 'fixtures/query.json'), 'utf8'));
export const LEARNER_DIFF = JSON.parse(readFileSync(path.join(here, 'fixtures/learner-diff.json'), 'utf8'));

// The recorded rows for a view's query: by the table it reads.
export function rowsFor(sql: string): unknown {
  return sql.includes('FROM alerts') ? QUERY.alerts : sql.includes('FROM promotions') ? QUERY.promotions : QUERY.learner;
}
export const BASE = `http://127.0.0.1:${process.env.STATIC_PORT ?? 4173}`;

// The console on a recorded snapshot at a frozen time: the feed sends it once and asks the browser not to
// reconnect for ten minutes; the views that query get fixed rows, the Learner's diff a recorded one.
export async function recorded(page: Page, dark: boolean): Promise<void> {
  await page.clock.install({ time: SNAPSHOT.now_ms - 60_000 });
  await page.clock.pauseAt(SNAPSHOT.now_ms);
  await page.route('**/console/events', (route) =>
    route.fulfill({
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: `retry: 600000\nevent: snapshot\ndata: ${JSON.stringify(SNAPSHOT)}\n\n`,
    }),
  );
  await page.route('**/query', (route) => {
    const sql = JSON.parse(route.request().postData() ?? '{}').sql as string;
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(rowsFor(sql)) });
  });
  await page.route('**/console/learner/diff', (route) =>
    route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(LEARNER_DIFF) }),
  );
  await page.addInitScript((mode) => localStorage.setItem('symphony-console-mode', mode), dark ? 'dark' : 'light');
}
