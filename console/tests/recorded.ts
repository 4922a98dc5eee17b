import type { Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SNAPSHOT = JSON.parse(readFileSync(path.join(here, 'fixtures/snapshot.json'), 'utf8'));
export const QUERY = JSON.parse(readFileSync(path.join(here, 'fixtures/query.json'), 'utf8'));
export const BASE = `http://127.0.0.1:${process.env.STATIC_PORT ?? 4173}`;

// The console on a recorded snapshot at a frozen time: the feed sends it once and asks the browser not to
// reconnect for ten minutes; the views that query get fixed rows.
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
    const rows = sql.includes('FROM alerts') ? QUERY.alerts : QUERY.learner;
    return route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(rows) });
  });
  await page.addInitScript((mode) => localStorage.setItem('symphony-console-mode', mode), dark ? 'dark' : 'light');
}
