// The platform operator's organisation page: the lists, adding a pharmacy (the manager's one-time
// password shown once), and that the new manager can sign in with it. The operator sees no
// patient data.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, checkPage, submit, mainText, ACCOUNTS } from '../lib/harness.js';

describe('operator: organisations', { timeout: 300_000 }, () => {
  const env = useServer({ before, after });
  let page;
  const created = { email: 'lena.marsh@northgate.example', password: '' };

  before(async () => {
    page = await newPage(env.browser);
    await signIn(page, env.url, ACCOUNTS.operator);
  });
  after(async () => {
    if (page) await page.context().close().catch(() => {});
  });

  it('lists the pharmacies and practices, and no patient data', async () => {
    assert.equal(new URL(page.url()).pathname, '/admin');
    await page.getByRole('heading', { level: 1, name: 'Organisations' }).waitFor();
    const text = await mainText(page);
    for (const org of ['Riverside Pharmacy', 'FA101', 'Hilltop Chemist', 'Riverside Surgery', 'Old Mill Practice']) {
      assert.ok(text.includes(org), `lists ${org}`);
    }
    assert.doesNotMatch(text, /Ann Jones|NHS number/i, 'no patient data on the operator\'s page');
    const nav = await page.getByRole('navigation', { name: 'Main' }).innerText();
    assert.doesNotMatch(nav, /Patients|Order queue/);
    await checkPage(page, 'admin');
  });

  it('refuses an incomplete pharmacy with an error summary and keeps what was typed', async () => {
    const form = page.locator('form[action="/admin/pharmacies"]');
    await form.getByLabel('Name', { exact: true }).fill('Half Finished Pharmacy');
    const status = await submit(page, form.getByRole('button', { name: 'Add pharmacy' }));
    assert.equal(status, 422);
    const alert = page.getByRole('alert');
    assert.ok((await alert.innerText()).trim().length > 0);
    assert.equal(await page.locator('form[action="/admin/pharmacies"]').getByLabel('Name', { exact: true }).inputValue(), 'Half Finished Pharmacy');
    await checkPage(page, 'admin-error');
  });

  it('adds a pharmacy and shows the manager\'s one-time password once', async () => {
    await page.goto(`${env.url}/admin`);
    const form = page.locator('form[action="/admin/pharmacies"]');
    await form.getByLabel('Name', { exact: true }).fill('Northgate Pharmacy');
    await form.getByLabel('ODS code').fill('FN303');
    await form.getByLabel('Address (optional)').fill('9 North Gate, Exampleton, EX9 9NN');
    await form.getByLabel("Manager's name").fill('Lena Marsh');
    await form.getByLabel("Manager's email address").fill(created.email);
    await submit(page, form.getByRole('button', { name: 'Add pharmacy' }));
    await page.getByRole('heading', { level: 1, name: 'Pharmacy added' }).waitFor();
    const text = await mainText(page);
    assert.match(text, /Northgate Pharmacy \(FN303\) is now on RepeatRx/);
    assert.ok(text.includes(created.email));
    created.password = (await page.locator('code.secret').innerText()).trim();
    assert.ok(created.password.length >= 12, `a long one-time password (${created.password.length} characters)`);
    assert.match(text, /shown only once/);
    await checkPage(page, 'admin-created');
    // Back on the list, the pharmacy is there and the password is not.
    await page.getByRole('link', { name: 'Back to organisations' }).click();
    await page.getByRole('heading', { level: 1, name: 'Organisations' }).waitFor();
    const list = await mainText(page);
    assert.ok(list.includes('Northgate Pharmacy'));
    assert.ok(!list.includes(created.password), 'the one-time password is never shown again');
  });

  it('the new manager signs in with the one-time password to an empty Pharmacy Dashboard', async () => {
    assert.ok(created.password, 'needs the pharmacy added by the previous test');
    const manager = await newPage(env.browser);
    try {
      await signIn(manager, env.url, created.email, created.password);
      // A first sign-in may ask for a new password; either way it must not be refused.
      assert.notEqual(new URL(manager.url()).pathname, '/sign-in', 'the one-time password works');
      if (new URL(manager.url()).pathname === '/pharmacy') {
        await manager.getByRole('heading', { level: 1, name: 'Order queue' }).waitFor();
        assert.match(await mainText(manager), /No open orders/);
        assert.match(await manager.locator('header').innerText(), /Lena Marsh/);
      }
    } finally {
      await manager.context().close();
    }
  });
});
