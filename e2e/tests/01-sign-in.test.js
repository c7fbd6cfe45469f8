// Signing in and out for every demo account, wrong passwords, session cookies, and the wall
// between audiences.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, signOut, checkPage, mainText, submit, ACCOUNTS, PASSWORD } from '../lib/harness.js';

describe('sign-in', { timeout: 300_000 }, () => {
  const env = useServer({ before, after });

  it('shows an accessible sign-in page with the demo sign-ins', async () => {
    const page = await newPage(env.browser);
    const res = await page.goto(`${env.url}/`);
    assert.ok(res.ok());
    assert.equal(new URL(page.url()).pathname, '/sign-in', 'the home page sends a stranger to sign in');
    await assert.doesNotReject(page.getByRole('heading', { level: 1, name: 'Sign in' }).waitFor());
    assert.equal(await page.title(), 'Sign in – RepeatRx');
    assert.equal(await page.getByLabel('Email address').getAttribute('autocomplete'), 'username');
    assert.equal(await page.getByLabel('Password').getAttribute('type'), 'password');
    const text = await mainText(page);
    assert.match(text, /Demo sign-ins/);
    for (const email of Object.values(ACCOUNTS)) assert.ok(text.includes(email), `the demo box lists ${email}`);
    assert.ok(text.includes(PASSWORD));
    await checkPage(page, 'sign-in');
    await page.context().close();
  });

  it('can be used from the keyboard: skip link first, then the form', async () => {
    const page = await newPage(env.browser);
    await page.goto(`${env.url}/sign-in`);
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement?.textContent?.trim());
    assert.equal(first, 'Skip to main content', 'the first Tab reaches the skip link');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.activeElement?.id === 'main' || location.hash === '#main');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'email', 'after skipping, Tab reaches the email field');
    await page.keyboard.type(ACCOUNTS.patient);
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await Promise.all([page.waitForURL('**/patient'), page.keyboard.press('Enter')]);
    await page.getByRole('heading', { level: 1, name: 'My medicines' }).waitFor();
    await page.context().close();
  });

  it('refuses a wrong password without saying which part was wrong, and keeps the email', async () => {
    const page = await newPage(env.browser);
    await page.goto(`${env.url}/sign-in`);
    await page.locator('#email').fill(ACCOUNTS.patient);
    await page.locator('#password').fill('not-the-password');
    const [res] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/sign-in') && r.request().method() === 'POST'),
      page.getByRole('button', { name: 'Sign in', exact: true }).click(),
    ]);
    assert.equal(res.status(), 401);
    await page.waitForLoadState('load');
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const msg = (await alert.innerText()).trim();
    assert.ok(msg.length > 0, 'an error is shown');
    assert.doesNotMatch(msg, /no account|unknown|not registered|wrong password/i, 'it does not say which part was wrong');
    assert.equal(await page.locator('#email').inputValue(), ACCOUNTS.patient);
    assert.equal(await page.locator('#password').inputValue(), '', 'the password is never echoed');
    await checkPage(page, 'sign-in-error');
    // An unknown address gets the very same answer.
    await page.locator('#email').fill('nobody@demo.example');
    await page.locator('#password').fill('not-the-password');
    await submit(page, page.getByRole('button', { name: 'Sign in', exact: true }));
    assert.equal((await page.getByRole('alert').innerText()).trim(), msg);
    assert.match(msg, /^[A-Z]/, `the message is written as a sentence, with a capital letter: "${msg}"`);
    await page.context().close();
  });

  const homes = [
    ['patient', '/patient', 'My medicines'],
    ['pharmacist', '/pharmacy', 'Order queue'],
    ['manager', '/pharmacy', 'Order queue'],
    ['prescriber', '/practice', 'Requests awaiting a decision'],
    ['receptionist', '/practice', 'Requests awaiting a decision'],
    ['operator', '/admin', 'Organisations'],
  ];
  for (const [who, home, heading] of homes) {
    it(`signs the ${who} in to ${home} and out again`, async () => {
      const page = await newPage(env.browser);
      await signIn(page, env.url, ACCOUNTS[who]);
      assert.equal(new URL(page.url()).pathname, home);
      await page.getByRole('heading', { level: 1, name: heading }).waitFor();
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
      const cookies = await page.context().cookies();
      assert.ok(cookies.length > 0, 'a session cookie is set');
      for (const c of cookies) {
        assert.equal(c.httpOnly, true, `cookie ${c.name} is HttpOnly`);
        assert.equal(c.secure, true, `cookie ${c.name} is Secure`);
        assert.notEqual(c.sameSite, 'None', `cookie ${c.name} is SameSite`);
      }
      await signOut(page);
      // Signed out: the dashboard sends us back to sign in.
      await page.goto(`${env.url}${home}`);
      assert.equal(new URL(page.url()).pathname, '/sign-in');
      await page.context().close();
    });
  }

  it('keeps one audience out of another audience\'s pages', async () => {
    const page = await newPage(env.browser);
    await signIn(page, env.url, ACCOUNTS.patient);
    for (const path of ['/pharmacy', '/practice', '/admin']) {
      const res = await page.goto(`${env.url}${path}`);
      assert.equal(res.status(), 403, `a patient gets 403 at ${path}`);
    }
    // The refusal is a proper page: a heading, a message, a way home.
    await page.getByRole('heading', { level: 1 }).waitFor();
    const message = (await page.getByRole('alert').innerText()).trim();
    assert.ok(message.length > 0);
    await page.getByRole('link', { name: 'Go to your home page' }).waitFor();
    assert.doesNotMatch(await mainText(page), /Riverside Pharmacy|Order queue/, 'nothing of the refused page leaks');
    await checkPage(page, 'forbidden');
    assert.match(message, /^[A-Z]/, `the message is written as a sentence, with a capital letter: "${message}"`);
    await page.context().close();
  });
});
