// The README's screenshot of the Model Matrix, from a running stack: node tests/readme-shot.mjs URL TOKEN OUT
import { chromium } from '@playwright/test';

const [url, token, out] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
const context = await browser.newContext({ httpCredentials: { username: 'admin', password: token }, viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
await page.goto(url);
await page.getByTestId('health-openai').waitFor();
await page.waitForTimeout(3000);
await page.screenshot({ path: out });
await browser.close();
