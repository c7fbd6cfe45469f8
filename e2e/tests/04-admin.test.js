// The platform operator's organisation page: the lists, adding a pharmacy (its manager is emailed
// an invitation, read here from the demo's outbox), and that the new manager chooses a password
// and signs in. The operator sees no patient data, and never knows the manager's password.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, signOut, checkPage, submit, mainText, nextCode, rememberSecret, ACCOUNTS } from '../lib/harness.js';

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

  it('adds a pharmacy and emails its manager an invitation', async () => {
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
    assert.match(text, new RegExp(`We have emailed ${created.email.replace('.', '\\.')} a link to choose their own password`));
    assert.equal(await page.locator('code.secret').count(), 0, 'no password is shown to the operator');
    await checkPage(page, 'admin-created');
    await page.getByRole('link', { name: 'Back to organisations' }).click();
    await page.getByRole('heading', { level: 1, name: 'Organisations' }).waitFor();
    assert.ok((await mainText(page)).includes('Northgate Pharmacy'));

    // The manager opens the emailed link (the demo keeps emails on its outbox page) and chooses a password.
    const manager = await newPage(env.browser);
    try {
      await manager.goto(`${env.url}/demo/outbox`);
      const mail = manager.locator('li', { hasText: created.email }).filter({ hasText: 'You are invited to RepeatRx' }).first();
      const body = await mail.locator('pre.email-body').innerText();
      assert.match(body, /You have been invited to RepeatRx as pharmacy manager at Northgate Pharmacy/);
      const link = body.match(/https:\/\/\S+\/invitation\/\S+/)[0];
      await manager.goto(link.replace(/^https:\/\/[^/]+/, env.url));
      await manager.getByRole('heading', { level: 1, name: 'Welcome to RepeatRx, Lena Marsh' }).waitFor();
      created.password = 'harbour pencil meadow 7';
      await manager.locator('#password').fill(created.password);
      await manager.locator('#confirm').fill(created.password);
      assert.equal(await submit(manager, manager.getByRole('button', { name: 'Choose this password' })), 200);
      await manager.getByRole('heading', { level: 1, name: 'Your password is set' }).waitFor();
    } finally {
      await manager.close();
    }
  });

  it('the new manager must set up an authenticator app (QR code) before reaching the dashboard', async () => {
    assert.ok(created.password, 'needs the pharmacy added by the previous test');
    const manager = await newPage(env.browser);
    try {
      await manager.goto(`${env.url}/sign-in`);
      await manager.locator('#email').fill(created.email);
      await manager.locator('#password').fill(created.password);
      await Promise.all([
        manager.waitForURL('**/sign-in/enrol'),
        manager.getByRole('button', { name: 'Sign in', exact: true }).click(),
      ]);
      await manager.getByRole('heading', { level: 1, name: 'Set up your authenticator app' }).waitFor();
      // Nothing else is reachable until the second factor is set up.
      const blocked = await manager.goto(`${env.url}/pharmacy`);
      assert.equal(new URL(manager.url()).pathname, '/sign-in', `the dashboard needs the second factor (${blocked.status()})`);
      await manager.goto(`${env.url}/sign-in/enrol`);
      const qr = manager.locator('#totp-qr svg');
      assert.ok((await qr.boundingBox()).width >= 150, 'a scannable QR code is shown');
      const secret = (await manager.locator('#totp-secret').innerText()).replace(/\s+/g, '');
      assert.match(secret, /^[A-Z2-7]{32}$/, 'the secret is also given as text');
      assert.match(await manager.locator('#totp-url').textContent(), /^otpauth:\/\/totp\/RepeatRx:/);
      await checkPage(manager, 'totp-enrol');

      await manager.locator('#code').fill('000000');
      assert.equal(await submit(manager, manager.getByRole('button', { name: 'Confirm' })), 422);
      assert.match(await manager.getByRole('alert').innerText(), /not right/);

      rememberSecret(created.email, secret);
      await manager.locator('#code').fill(await nextCode(created.email));
      await submit(manager, manager.getByRole('button', { name: 'Confirm' }));
      await manager.getByRole('heading', { level: 1, name: 'Your recovery codes' }).waitFor();
      const codes = await manager.locator('#recovery-codes li').allInnerTexts();
      assert.equal(codes.length, 10);
      assert.equal(new Set(codes).size, 10);
      await checkPage(manager, 'totp-recovery-codes');
      await manager.getByRole('link', { name: /continue/i }).click();
      await manager.getByRole('heading', { level: 1, name: 'Order queue' }).waitFor();
      assert.match(await mainText(manager), /No open orders/);
      assert.match(await manager.locator('header').innerText(), /Lena Marsh/);

      // Signing in again asks for a code; a recovery code works once instead.
      await signOut(manager);
      await manager.locator('#email').fill(created.email);
      await manager.locator('#password').fill(created.password);
      await Promise.all([manager.waitForURL('**/sign-in/code'), manager.getByRole('button', { name: 'Sign in', exact: true }).click()]);
      await checkPage(manager, 'sign-in-code');
      await manager.locator('#code').fill(codes[0]);
      await Promise.all([manager.waitForURL('**/pharmacy'), manager.getByRole('button', { name: 'Continue' }).click()]);
    } finally {
      await manager.context().close();
    }
  });
});
