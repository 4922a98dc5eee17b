// The approval drill: a changed token fails the visual tests until the baselines are updated.
//   1. Build the console from a copy of tokens.json whose light primary colour changed (in a temporary copy of
//      console/, so nothing in the repository changes).
//   2. The committed baselines (copied) must fail exactly the light views' screenshots, and the MUI and
//      shadcn components must both show the new colour.
//   3. After `--update-snapshots` on the copy (what `just visual-baseline --update` does), they must pass.
// Exit 0 when all of that holds. Run by `just console-test`.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const consoleDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const NEW_PRIMARY = '#0b6e4f';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'token-change-'));

function playwright(env, ...args) {
  const run = spawnSync('npx', ['playwright', 'test', ...args, '--reporter=json'], {
    cwd: consoleDir,
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const report = JSON.parse(run.stdout);
  const failed = [];
  const walk = (suite) => {
    for (const spec of suite.specs ?? []) if (!spec.ok) failed.push(spec.title);
    for (const child of suite.suites ?? []) walk(child);
  };
  report.suites.forEach(walk);
  return { status: run.status, failed: failed.sort() };
}

function check(ok, message) {
  if (!ok) {
    console.error(`token-change drill FAILED: ${message}`);
    process.exitCode = 1;
  } else console.error(`ok: ${message}`);
}

try {
  for (const part of ['src', 'scripts', 'index.html', 'vite.config.ts', 'tsconfig.json']) {
    cpSync(path.join(consoleDir, part), path.join(tmp, part), { recursive: true });
  }
  symlinkSync(path.join(consoleDir, 'node_modules'), path.join(tmp, 'node_modules'));
  const tokens = JSON.parse(readFileSync(path.join(consoleDir, '../tokens.json'), 'utf8'));
  tokens.palette['indigo-700'].$value = NEW_PRIMARY; // the light scheme's primary (the dark one uses indigo-300)
  writeFileSync(path.join(tmp, 'tokens.json'), JSON.stringify(tokens, null, 2));
  const quiet = { cwd: tmp, stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, TOKENS: path.join(tmp, 'tokens.json') } };
  execFileSync('node', ['scripts/build-tokens.mjs'], quiet);
  execFileSync('npx', ['vite', 'build', '--logLevel', 'error', '--outDir', path.join(tmp, 'dist')], quiet);
  cpSync(path.join(consoleDir, 'tests/__screenshots__'), path.join(tmp, 'shots'), { recursive: true });

  const env = { DIST: path.join(tmp, 'dist'), SHOTS: path.join(tmp, 'shots'), TOKENS: path.join(tmp, 'tokens.json') };
  const before = playwright(env, 'tests/visual.spec.ts', 'tests/tokens.spec.ts', '-g', 'matrix|primary');
  check(
    JSON.stringify(before.failed) === JSON.stringify(['matrix in light']),
    `with the old baselines exactly the light Model Matrix fails, and the new primary ${NEW_PRIMARY} reaches ` +
      `MUI's AppBar and shadcn's Button (failed: ${before.failed.join(', ') || 'none'})`,
  );
  playwright(env, 'tests/visual.spec.ts', '-g', 'matrix in light', '--update-snapshots');
  const after = playwright(env, 'tests/visual.spec.ts', '-g', 'matrix in light');
  check(after.status === 0, `after the baselines are updated they pass (failed: ${after.failed.join(', ') || 'none'})`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
