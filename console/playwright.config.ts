import { defineConfig } from '@playwright/test';

// Debian's chromium (Playwright's own download cannot reach its site here).
export default defineConfig({
  testDir: './tests',
  timeout: 60_000,
  expect: { timeout: 10_000, toHaveScreenshot: { maxDiffPixels: 0, threshold: 0 } },
  // SHOTS: another baseline directory (the token-change drill works on a copy, never on the committed ones).
  snapshotPathTemplate: `${process.env.SHOTS || '{testDir}/__screenshots__'}/{testFilePath}/{arg}{ext}`,
  reporter: [['list']],
  // The built console (DIST, default the committed build) for the recorded-snapshot tests.
  webServer: {
    command: 'node tests/static-server.mjs',
    url: `http://127.0.0.1:${process.env.STATIC_PORT ?? 4173}/console/`,
    env: { PORT: process.env.STATIC_PORT ?? '4173', DIST: process.env.DIST ?? '' },
    reuseExistingServer: false,
  },
  workers: 1,
  use: {
    launchOptions: { executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] },
    viewport: { width: 1280, height: 900 },
  },
});
