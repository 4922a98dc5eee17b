import { expect, test, type Page } from '@playwright/test';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// The console on a real stack (`symphony up` on the simulator, its clock at SPEED times real time), in Debian's
// chromium: its ETA clocks follow the simulated clock, and a provider failing in the simulator shows unhealthy.
const SPEED = 60;
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const symphony = path.join(root, '.venv/bin/symphony');

interface Stack {
  up: ChildProcess;
  varDir: string;
  ports: Record<string, number>;
  token: string;
  key: string;
}
let stack: Stack;
let traffic: AbortController;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function startStack(): Promise<Stack> {
  const varDir = mkdtempSync(path.join(os.tmpdir(), 'console-live-'));
  const names = ['REDIS', 'PROXY_PORT', 'SIM_PORT', 'ENGINE_PORT', 'SCHEDULER_PORT'];
  const ports = Object.fromEntries(await Promise.all(names.map(async (n) => [n, await freePort()])));
  const env = {
    ...process.env,
    VAR_DIR: varDir,
    CLICKHOUSE_URL: '',
    REDIS_URL: `redis://127.0.0.1:${ports.REDIS}/0`,
    PROXY_PORT: String(ports.PROXY_PORT),
    SIM_PORT: String(ports.SIM_PORT),
    ENGINE_PORT: String(ports.ENGINE_PORT),
    SCHEDULER_PORT: String(ports.SCHEDULER_PORT),
    SLO_MIN_ATTEMPTS: '5', // a handful of failures is enough to judge, so the test needs little traffic
  };
  const up = spawn(symphony, ['up', '--speed', String(SPEED)], { cwd: root, env, detached: true });
  let said = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`symphony up did not come up in 80 s:\n${said}`)), 80_000);
    const listen = (chunk: Buffer) => {
      said += chunk.toString();
      if (said.includes('Symphony is up.')) {
        clearTimeout(timer);
        resolve();
      }
    };
    up.stdout!.on('data', listen);
    up.stderr!.on('data', listen);
    up.on('exit', (code) => reject(new Error(`symphony up exited (${code}):\n${said}`)));
  });
  const read = (name: string) => readFileSync(path.join(varDir, name), 'utf8').trim();
  return { up, varDir, ports, token: read('admin-token'), key: read('dev-key') };
}

// Requests through the proxy until stopped: `auto` ones, and ones pinned to deepseek (which the test breaks).
async function sendTraffic(signal: AbortSignal): Promise<void> {
  const url = `http://127.0.0.1:${stack.ports.PROXY_PORT}/v1/chat/completions`;
  const headers = { authorization: `Bearer ${stack.key}`, 'content-type': 'application/json' };
  const one = (model: string) =>
    fetch(url, { method: 'POST', headers, signal, body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }) })
      .then((r) => r.arrayBuffer())
      .catch(() => undefined);
  while (!signal.aborted) {
    await Promise.all([one('auto'), one('auto'), one('deepseek/deepseek-chat')]);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function open(page: Page): Promise<void> {
  await page.context().setHTTPCredentials({ username: 'admin', password: stack.token });
  await page.goto(`http://127.0.0.1:${stack.ports.ENGINE_PORT}/console/matrix`);
}

test.describe.configure({ mode: 'serial' });

test.beforeAll(async () => {
  test.setTimeout(120_000);
  stack = await startStack();
  traffic = new AbortController();
  void sendTraffic(traffic.signal);
});

test.afterAll(async () => {
  traffic?.abort();
  if (stack) {
    process.kill(-stack.up.pid!, 'SIGTERM');
    await new Promise((r) => stack.up.once('exit', r));
    rmSync(stack.varDir, { recursive: true, force: true });
  }
});

test.use({ httpCredentials: { username: 'admin', password: '' } });

test('the ETA clock to the reset of a fixed window counts down at the simulated clock speed', async ({ page }) => {
  await open(page);
  // openai's 3h subscription window resets at fixed times: its clock runs down SPEED ms for each real ms.
  const eta = page.getByTestId('reset-openai-3h-requests');
  await expect(eta).toHaveAttribute('data-ms', /^\d+$/, { timeout: 30_000 });
  for (let attempt = 0; attempt < 3; attempt++) {
    const first = Number(await eta.getAttribute('data-ms'));
    const shown = await eta.textContent();
    const started = Date.now();
    await page.waitForTimeout(3_000);
    const second = Number(await eta.getAttribute('data-ms'));
    const real = Date.now() - started;
    if (second > first) continue; // the window reset between the readings (every 3 simulated hours, 3 real minutes): read again
    const expected = real * SPEED;
    expect(first - second).toBeGreaterThan(expected * 0.6);
    expect(first - second).toBeLessThan(expected * 1.4);
    await expect(eta).not.toHaveText(shown!); // and what the operator reads changed
    return;
  }
  throw new Error('the window reset at every reading');
});

test('a provider failing in the simulator shows unhealthy within seconds', async ({ page }) => {
  await open(page);
  const badge = page.getByTestId('health-deepseek');
  await expect(badge).toHaveAttribute('data-state', 'healthy', { timeout: 30_000 });
  const sim = `http://127.0.0.1:${stack.ports.SIM_PORT}/admin/faults/deepseek`;
  const broke = await fetch(sim, { method: 'PUT', body: JSON.stringify({ rate_5xx: 1.0 }), headers: { 'content-type': 'application/json' } });
  expect(broke.status).toBe(200);
  const started = Date.now();
  await expect(badge).toHaveAttribute('data-state', 'unhealthy', { timeout: 10_000 });
  console.log(`deepseek shown unhealthy ${Date.now() - started} ms after its fault was set`);
  // The proxy's own breaker, as the replica publishes it: ejected (open, or half-open between trials).
  await expect(page.getByTestId('breaker-deepseek')).toHaveAttribute('data-state', /open/, { timeout: 10_000 });
  console.log(`deepseek's breaker shown ${await page.getByTestId('breaker-deepseek').textContent()} ${Date.now() - started} ms after its fault was set`);
});

test("the Learner view evaluates the published challenger on the engine and shows the rule's verdict", async ({ page }) => {
  await page.context().setHTTPCredentials({ username: 'admin', password: stack.token });
  await page.goto(`http://127.0.0.1:${stack.ports.ENGINE_PORT}/console/learner`);
  await page.getByRole('button', { name: 'Evaluate the challenger now' }).click();
  await expect(page.getByText(/^(promotion candidate|not a candidate)$/)).toBeVisible({ timeout: 30_000 });
  await expect(page.getByText(/champion \S+ · challenger \S+ · \d+ decisions/)).toBeVisible();
  const windows = page.getByRole('table', { name: 'utility per window' }).or(page.getByText('Nothing yet.').first());
  await expect(windows.first()).toBeVisible(); // a fresh stack may have no window with feedback yet
  // The diff against the challenger the learner published (or why there is none yet) and the promotions' history.
  await expect(page.getByTestId('policy-diff').or(page.getByText(/no challenger is published|the uniform one/))).toBeVisible();
  await expect(page.getByText(/^No promotion recorded yet/).or(page.getByRole('list', { name: 'promotions' }))).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);
});

test('the Alerts and Traces views read the engine with the credentials the pages were given', async ({ page }) => {
  await page.context().setHTTPCredentials({ username: 'admin', password: stack.token });
  const engine = `http://127.0.0.1:${stack.ports.ENGINE_PORT}`;
  await page.goto(`${engine}/console/alerts`);
  await expect(page.getByRole('heading', { name: /Alerts/ })).toBeVisible();
  await expect(page.getByText(/^(Nothing yet\.)$/).or(page.getByRole('table', { name: 'alerts' }))).toBeVisible();
  await expect(page.getByRole('alert')).toHaveCount(0);

  const answer = await page.request.post(`${engine}/console/query`, {
    data: { sql: 'SELECT decision_id FROM decisions ORDER BY ts DESC LIMIT 1' },
  });
  const decision = String((await answer.json()).rows[0][0]);
  await page.goto(`${engine}/console/traces`);
  await page.getByLabel('decision id or trace id').fill(decision);
  await page.getByRole('button', { name: 'Show' }).click();
  await expect(page.getByText(`decision ${decision}`)).toBeVisible({ timeout: 15_000 });
  await expect(page.getByRole('table', { name: 'spans' }).or(page.getByText('Nothing yet.'))).toBeVisible();
});
