// Account security in a real browser against a demo server that sends its emails to a real SMTP
// sink: six failed sign-ins lock the patient out (the right password too), the emailed link and
// the date of birth unlock the account; the inactivity warning appears before the session ends,
// "Stay signed in" keeps it, and doing nothing signs the patient out; the strength meter reacts.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServerWithMail, newPage, signIn, signOut, checkPage, submit, mainText, ACCOUNTS, PASSWORD } from '../lib/harness.js';

describe('account security', { timeout: 600_000 }, () => {
  const { env, mail: inbox } = useServerWithMail({ before, after }, ['--patient-idle-minutes', '1']);

  it('six failed sign-ins lock the account; the emailed link and the date of birth unlock it', async () => {
    const page = await newPage(env.browser);
    try {
      // The patient's date of birth, as their pharmacy has it (read while still signed in).
      await signIn(page, env.url, ACCOUNTS.patient);
      const dob = await page.evaluate(async () => {
        const me = await (await fetch('/api/v1/me')).json();
        const p = await (await fetch(`/api/v1/patients/${me.patient_id}`)).json();
        return p.date_of_birth;
      });
      assert.match(dob, /^\d{4}-\d{2}-\d{2}$/);
      await signOut(page);

      const attempt = async (password) => {
        await page.goto(`${env.url}/sign-in`);
        await page.locator('#email').fill(ACCOUNTS.patient);
        await page.locator('#password').fill(password);
        return submit(page, page.getByRole('button', { name: 'Sign in', exact: true }));
      };
      let wrongText = '';
      for (let i = 0; i < 6; i += 1) {
        assert.equal(await attempt('not my password at all'), 401);
        wrongText = await page.getByRole('alert').innerText();
      }
      assert.equal(await attempt(PASSWORD), 401, 'the right password is refused once locked');
      assert.equal(await page.getByRole('alert').innerText(), wrongText, 'with the same message as a wrong one');
      await checkPage(page, 'sign-in-refused');

      await page.getByRole('alert').getByRole('link', { name: 'unlock it here' }).click();
      await page.getByRole('heading', { level: 1 }).waitFor();
      assert.equal(new URL(page.url()).pathname, '/unlock');
      await checkPage(page, 'unlock-request');
      await page.locator('#email').fill(ACCOUNTS.patient);
      assert.equal(await submit(page, page.locator('main form button[type=submit]')), 200);
      await page.getByRole('heading', { level: 1, name: 'Check your email' }).waitFor();

      const mail = await inbox.sink.waitFor((m) => m.to.includes(ACCOUNTS.patient) && /unlock/i.test(m.subject));
      const link = mail.text.match(/https:\/\/\S+\/unlock\/[A-Za-z0-9_-]+/);
      assert.ok(link, `an unlock link in the email: ${mail.text}`);
      const url = new URL(link[0]);
      assert.equal(url.origin, env.url, 'the link points at this server');

      await page.goto(link[0]);
      await page.getByRole('heading', { level: 1, name: 'Unlock your account' }).waitFor();
      await checkPage(page, 'unlock-date-of-birth');
      await page.locator('#date_of_birth').fill('01/01/1901');
      assert.equal(await submit(page, page.getByRole('button', { name: 'Unlock my account' })), 422);
      assert.match(await page.getByRole('alert').innerText(), /3/, 'says how many tries are left');

      const [y, m, d] = dob.split('-');
      await page.locator('#date_of_birth').fill(`${d}/${m}/${y}`);
      assert.equal(await submit(page, page.getByRole('button', { name: 'Unlock my account' })), 200);
      assert.match(await mainText(page), /unlocked/i);
      await checkPage(page, 'unlocked');
      const again = await page.goto(link[0]);
      assert.equal(again.status(), 410, 'the link works once');

      await signIn(page, env.url, ACCOUNTS.patient);
      assert.equal(new URL(page.url()).pathname, '/patient');
      // The patient can see who at the pharmacy has been in their record.
      await page.getByRole('link', { name: 'Who has seen my record' }).click();
      await page.getByRole('heading', { level: 1, name: 'Who has seen my record' }).waitFor();
      await checkPage(page, 'patient-access');
    } finally {
      await page.context().close();
    }
  });

  it('warns before the idle timeout, stays signed in on request, then signs out', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.patient);
      const warning = page.locator('#idle-warning');
      assert.equal(await warning.isVisible(), false);
      // Idle timeout is 1 minute in this run: the warning comes before it ends.
      await warning.waitFor({ state: 'visible', timeout: 55_000 });
      assert.match(await warning.innerText(), /signed out/i);
      await checkPage(page, 'idle-warning');
      await page.getByRole('button', { name: 'Stay signed in' }).click();
      await warning.waitFor({ state: 'hidden', timeout: 10_000 });
      // Now do nothing: the session ends and the page goes to sign in, saying why.
      await page.waitForURL((u) => u.pathname === '/sign-in', { timeout: 120_000 });
      assert.match(await mainText(page), /inactive/i);
      const res = await page.goto(`${env.url}/patient`);
      assert.equal(new URL(page.url()).pathname, '/sign-in', `the session has really ended (${res.status()})`);
    } finally {
      await page.context().close();
    }
  });

  it('the account page lists sessions and the strength meter rates new passwords', async () => {
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.pharmacist);
      await page.goto(`${env.url}/account`);
      await page.getByRole('heading', { level: 1 }).waitFor();
      const text = await mainText(page);
      assert.match(text, /this device/i, 'the current session is marked');
      const input = page.locator('input[data-strength]').first();
      const meter = page.locator('meter').first();
      await input.fill('password');
      await page.waitForFunction(() => document.querySelector('meter') && document.querySelector('meter').value <= 1, null, { timeout: 10_000 });
      const weak = await meter.evaluate((el) => el.value);
      await input.fill('tangerine orbit lantern quietly');
      await page.waitForFunction((w) => document.querySelector('meter').value > w, weak, { timeout: 10_000 });
      await checkPage(page, 'account');
    } finally {
      await page.context().close();
    }
  });
});
