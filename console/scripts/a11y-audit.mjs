// Lighthouse (12.x, Debian's chromium) accessibility audit of every primary view, light and dark, on the built
// console serving the recorded snapshot. Reports go to OUT (default runs/gates/a11y, beside the other gates' artifacts): one HTML report per view and
// scores.json; exits 1 when a score is below MIN_SCORE (default 95).
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as chromeLauncher from 'chrome-launcher';
import lighthouse from 'lighthouse';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.resolve(process.env.OUT ?? path.join(here, '../../runs/gates/a11y'));
const minScore = Number(process.env.MIN_SCORE ?? 95);
const port = Number(process.env.STATIC_PORT ?? 4174);
const VIEWS = process.env.VIEWS ? process.env.VIEWS.split(',') : ['matrix', 'alerts', 'traces', 'learner', 'scheduler'];

mkdirSync(out, { recursive: true });
const server = spawn('node', [path.join(here, '../tests/static-server.mjs')], {
  env: { ...process.env, PORT: String(port), RECORDED: '1' },
  stdio: 'inherit',
});
const chrome = await chromeLauncher.launch({
  chromePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  chromeFlags: ['--headless=new', '--no-sandbox', '--disable-gpu'],
});
const scores = {};
let failed = false;
try {
  for (let i = 0; i < 50; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/console/`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  for (const theme of ['light', 'dark']) {
    for (const view of VIEWS) {
      const url = `http://127.0.0.1:${port}/console/${view}?theme=${theme}`;
      const result = await lighthouse(url, { port: chrome.port, onlyCategories: ['accessibility'], output: 'html', logLevel: 'error' });
      const score = Math.round(result.lhr.categories.accessibility.score * 100);
      const name = `${view}-${theme}`;
      scores[name] = score;
      writeFileSync(path.join(out, `${name}.html`), result.report);
      const failing = Object.values(result.lhr.audits)
        .filter((a) => a.score !== null && a.score < 1 && a.scoreDisplayMode === 'binary')
        .map((a) => a.id);
      console.log(`${name.padEnd(16)} accessibility ${score}${failing.length ? `  (failing: ${failing.join(', ')})` : ''}`);
      if (score < minScore) failed = true;
    }
  }
} finally {
  await chrome.kill();
  server.kill();
}
writeFileSync(path.join(out, 'scores.json'), JSON.stringify(scores, null, 2) + '\n');
if (failed) {
  console.error(`accessibility below ${minScore} on at least one view (reports in ${out})`);
  process.exit(1);
}
