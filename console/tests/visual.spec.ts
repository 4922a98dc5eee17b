import { expect, test } from '@playwright/test';
import { BASE, recorded } from './recorded';

// Every primary view, light and dark, against committed baselines (tests/__screenshots__). CI never updates
// them: `just visual-baseline --update` writes new ones, which land only through a reviewed change.
const VIEWS = ['matrix', 'alerts', 'traces', 'learner', 'scheduler'];

for (const mode of ['light', 'dark'] as const) {
  for (const view of VIEWS) {
    test(`${view} in ${mode}`, async ({ page }) => {
      await recorded(page, mode === 'dark');
      await page.goto(`${BASE}/console/${view}`);
      await expect(page.locator('main')).not.toContainText('Waiting for');
      await expect(page.locator('main')).not.toContainText('Loading');
      await expect(page).toHaveScreenshot(`${view}-${mode}.png`, { fullPage: true, animations: 'disabled' });
    });
  }
}
