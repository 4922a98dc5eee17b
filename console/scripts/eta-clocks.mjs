// The Model Matrix's ETA clocks as an operator sees them: the console of a running engine (ENGINE_URL, as the
// analyst: ANALYST_TOKEN) opened in Debian's chromium, and for each of PROVIDERS (comma-separated) the clocks its
// card shows (resets in, exhausted in) read twice, TICK_MS apart. Prints JSON on stdout:
// {"<provider>": {"clocks": N, "ticking": true|false, "sample": "<text of one clock>"}}; exit 1 when the page
// does not load.
import { chromium } from '@playwright/test';

const engine = process.env.ENGINE_URL;
const token = process.env.ANALYST_TOKEN;
const providers = (process.env.PROVIDERS ?? '').split(',').filter(Boolean);
const tickMs = Number(process.env.TICK_MS ?? 1500);
if (!engine || !token || providers.length === 0) {
  console.error('eta-clocks: set ENGINE_URL, ANALYST_TOKEN and PROVIDERS');
  process.exit(2);
}

async function clocks(page, provider) {
  const selector = `[data-testid^="reset-${provider}-"], [data-testid^="exhaust-${provider}-"]`;
  return page.$$eval(selector, (nodes) =>
    nodes
      .filter((node) => /^\d+$/.test(node.getAttribute('data-ms') ?? ''))
      .map((node) => ({ id: node.getAttribute('data-testid'), ms: node.getAttribute('data-ms'), text: node.textContent })),
  );
}

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
try {
  const context = await browser.newContext({ httpCredentials: { username: 'analyst', password: token } });
  const page = await context.newPage();
  await page.goto(`${engine}/console/matrix`);
  await page.waitForSelector(`[data-testid="provider-${providers[0]}"]`, { timeout: 30_000 });
  await page.waitForFunction(() => document.querySelectorAll('[data-ms]:not([data-ms=""])').length > 0, null, {
    timeout: 30_000,
  });
  const first = Object.fromEntries(await Promise.all(providers.map(async (p) => [p, await clocks(page, p)])));
  await page.waitForTimeout(tickMs);
  const result = {};
  for (const provider of providers) {
    const later = new Map((await clocks(page, provider)).map((c) => [c.id, c.ms]));
    const ticking = first[provider].some((c) => later.has(c.id) && later.get(c.id) !== c.ms);
    result[provider] = { clocks: first[provider].length, ticking, sample: first[provider][0]?.text ?? '' };
  }
  console.log(JSON.stringify(result));
} catch (error) {
  console.error(`eta-clocks: ${error.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
