// C10 in a real browser: a patient opens "My data", reads everything held about them, and
// downloads it as a JSON file.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { useServer, newPage, signIn, checkPage, mainText, ACCOUNTS } from '../lib/harness.js';

describe('my data', { timeout: 120_000 }, () => {
  const env = useServer({ before, after });

  it('shows everything held about the patient and downloads it as JSON', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.patient);
      await page.getByRole('link', { name: 'My data' }).click();
      await page.getByRole('heading', { level: 1, name: 'My data' }).waitFor();
      const text = await mainText(page);
      for (const expected of [/Ann Jones/, /Riverside Pharmacy/, /Riverside Surgery/, /Repeat medicines/, /Who has seen your record/]) {
        assert.match(text, expected);
      }
      assert.ok((await page.locator('#export-items tbody tr').count()) >= 5, 'every repeat line is listed');
      await checkPage(page, 'my-data');

      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByRole('link', { name: /download it all as a file/ }).click(),
      ]);
      assert.match(download.suggestedFilename(), /^repeatrx-my-data-\d{4}-\d{2}-\d{2}\.json$/);
      const data = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
      assert.equal(data.format, 'repeatrx-patient-export/1');
      assert.equal(data.patient.family_name, 'Jones');
      assert.ok(data.orders.length >= 1);
    } finally {
      await page.close();
    }
  });
});
