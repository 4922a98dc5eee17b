import { expect, test } from '@playwright/test';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { BASE, recorded } from './recorded';

// One token reaches both libraries: the primary colour of tokens.json (TOKENS, default the repository's) is
// the background of an MUI component (the AppBar) and of a shadcn component (the Button), in both schemes.
const here = path.dirname(fileURLToPath(import.meta.url));
const tokens = JSON.parse(readFileSync(process.env.TOKENS ?? path.join(here, '../../tokens.json'), 'utf8'));

function resolved(pathName: string): string {
  const value: string = pathName.split('.').reduce((node, key) => node[key], tokens).$value;
  const alias = /^\{(.+)\}$/.exec(value);
  return alias ? resolved(alias[1]) : value;
}

function rgb(hex: string): string {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  return `rgb(${r}, ${g}, ${b})`;
}

for (const mode of ['light', 'dark'] as const) {
  test(`the primary token colours MUI's AppBar and shadcn's Button (${mode})`, async ({ page }) => {
    await recorded(page, mode === 'dark');
    await page.goto(`${BASE}/console/traces`);
    await page.getByLabel('decision id or trace id').fill('x');
    const expected = rgb(resolved(`color.${mode}.primary`));
    const mui = page.locator('header.MuiAppBar-root');
    const shadcn = page.getByRole('button', { name: 'Show' });
    await expect(mui).toHaveCSS('background-color', expected);
    await expect(shadcn).toHaveCSS('background-color', expected);
  });
}
