// P13 in a real browser: a pharmacist deletes a patient's data at the counter (with a reason),
// and a patient deletes their own account from "My data" (password and a ticked box), after
// which they are signed out and cannot sign in again. P12: an operator marks a pharmacy as
// leaving and sees the countdown to its patients' deletion.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, checkPage, mainText, submit, ACCOUNTS, PASSWORD } from '../lib/harness.js';

describe('erasure on request', { timeout: 180_000 }, () => {
  const env = useServer({ before, after });

  it('a pharmacist deletes a patient at the counter, saying who asked', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.pharmacist);
      await page.goto(`${env.url}/pharmacy/patients`);
      // Someone other than Ann, whom the next test needs.
      const link = page.locator('table a[href^="/pharmacy/patients/"]').filter({ hasNotText: 'Ann Jones' }).first();
      const name = (await link.innerText()).trim();
      await link.click();
      await page.getByRole('heading', { level: 2, name: "Delete this patient's data" }).waitFor();
      await checkPage(page, 'pharmacy-erase-form');

      // Without a reason or the ticked box: an error summary, nothing deleted.
      await submit(page, page.getByRole('button', { name: "Delete this patient's data" }));
      const problems = await page.locator('.error-summary').innerText();
      assert.match(problems, /Who asked/);
      assert.match(problems, /Confirm/);
      await checkPage(page, 'pharmacy-erase-problems');

      await page.getByLabel('Who asked, and how did you check it was them?').fill('The patient in person, photo ID seen');
      await page.getByLabel(/Delete everything about/).check();
      await submit(page, page.getByRole('button', { name: "Delete this patient's data" }));
      await page.waitForURL((u) => u.pathname === '/pharmacy/patients');
      assert.match(await mainText(page), /deleted for good/);
      assert.equal(await page.getByRole('link', { name, exact: true }).count(), 0, `${name} is no longer listed`);
    } finally {
      await page.close();
    }
  });

  it('a patient deletes their own account and data, and cannot sign in again', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.patient);
      await page.getByRole('link', { name: 'My data' }).click();
      await page.getByRole('link', { name: 'Delete my account and data' }).click();
      await page.getByRole('heading', { level: 1, name: 'Delete your account and data' }).waitFor();
      assert.ok(await page.getByRole('link', { name: /Download all your data/ }).isVisible(), 'a last chance to export');
      await checkPage(page, 'patient-erase');

      await page.getByLabel('Your password').fill('not my password');
      await page.getByLabel(/I understand/).check();
      await submit(page, page.getByRole('button', { name: 'Delete my account and data' }));
      assert.match(await page.locator('.error-summary').innerText(), /not your password/);

      await page.getByLabel('Your password').fill(PASSWORD);
      await page.getByLabel(/I understand/).check();
      await submit(page, page.getByRole('button', { name: 'Delete my account and data' }));
      await page.waitForURL((u) => u.pathname === '/sign-in');
      assert.match(await mainText(page), /deleted for good/);
      await checkPage(page, 'patient-erased');

      await page.locator('#email').fill(ACCOUNTS.patient);
      await page.locator('#password').fill(PASSWORD);
      await submit(page, page.getByRole('button', { name: 'Sign in', exact: true }));
      assert.match(await mainText(page), /email address or password is not right/);
    } finally {
      await page.close();
    }
  });

  it('an operator marks a pharmacy as leaving and sees the countdown', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.operator);
      await page.goto(`${env.url}/admin`);
      await page.getByRole('heading', { level: 2, name: 'A pharmacy leaves' }).waitFor();
      await page.getByLabel('Pharmacy', { exact: true }).selectOption({ label: 'Hilltop Chemist (FB202)' });
      // Not confirmed: refused, nothing happens.
      await submit(page, page.getByRole('button', { name: 'Mark as leaving' }));
      assert.match(await page.locator('.error-summary').innerText(), /Confirm/);
      await page.getByLabel('Pharmacy', { exact: true }).selectOption({ label: 'Hilltop Chemist (FB202)' });
      await page.getByLabel("Delete its patients' data after").selectOption('7');
      await page.getByLabel(/Lock out its staff now/).check();
      await submit(page, page.getByRole('button', { name: 'Mark as leaving' }));
      await page.waitForURL((u) => u.pathname === '/admin' && u.search === '?notice=leaving');
      const row = page.locator('table tr', { hasText: 'Hilltop Chemist' });
      assert.match(await row.innerText(), /Leaving: its patients' data is deleted on .* \(in 7 days\)/);
      await checkPage(page, 'admin-pharmacy-leaving');
    } finally {
      await page.close();
    }
  });
});
