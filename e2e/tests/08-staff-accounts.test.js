// A pharmacy manager looks after the staff accounts in a real browser: invites a colleague (the
// invitation goes through a real SMTP sink), the colleague chooses a password from the emailed
// link and is taken to set up an authenticator app; the manager changes the colleague's role and
// suspends the account with a reason.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServerWithMail, newPage, signIn, checkPage, submit, mainText, ACCOUNTS } from '../lib/harness.js';

describe('staff accounts', { timeout: 300_000 }, () => {
  const { env, mail: inbox } = useServerWithMail({ before, after });

  it('invites a colleague, who chooses a password; then changes their role and suspends them', async () => {
    const manager = await newPage(env.browser);
    const colleague = await newPage(env.browser);
    try {
      await signIn(manager, env.url, ACCOUNTS.manager);
      await manager.getByRole('link', { name: 'Staff' }).click();
      await manager.getByRole('heading', { level: 1, name: 'Staff accounts' }).waitFor();
      await checkPage(manager, 'staff-accounts');

      // An invitation without a name is refused with the problem linked to the field.
      await manager.locator('#invite-email').fill('jo.burns@demo.example');
      assert.equal(await submit(manager, manager.getByRole('button', { name: 'Send the invitation' })), 422);
      assert.match(await manager.getByRole('alert').innerText(), /Name: is required/);
      assert.equal(await manager.locator('#invite-email').inputValue(), 'jo.burns@demo.example');

      await manager.locator('#invite-name').fill('Jo Burns');
      await manager.locator('#invite-role').selectOption('counter_assistant');
      await submit(manager, manager.getByRole('button', { name: 'Send the invitation' }));
      assert.match(await mainText(manager), /The invitation has been emailed/);
      const row = manager.locator('tr', { hasText: 'jo.burns@demo.example' });
      assert.match(await row.innerText(), /Counter assistant/);
      assert.match(await row.innerText(), /Invited/);

      const mail = await inbox.sink.waitFor((m) => m.to.includes('jo.burns@demo.example') && /invited/i.test(m.subject));
      const link = mail.text.match(/https:\/\/\S+\/invitation\/\S+/)[0];
      await colleague.goto(link.replace(/^https:\/\/[^/]+/, env.url));
      await colleague.getByRole('heading', { level: 1, name: 'Welcome to RepeatRx, Jo Burns' }).waitFor();
      await colleague.locator('#password').fill('harbour pencil meadow 7');
      await colleague.locator('#confirm').fill('harbour pencil meadow 7');
      await colleague.locator('.strength-text').filter({ hasText: /./ }).waitFor();
      await checkPage(colleague, 'invitation');
      assert.equal(await submit(colleague, colleague.getByRole('button', { name: 'Choose this password' })), 200);
      await colleague.getByRole('heading', { level: 1, name: 'Your password is set' }).waitFor();

      await colleague.goto(`${env.url}/sign-in`);
      await colleague.locator('#email').fill('jo.burns@demo.example');
      await colleague.locator('#password').fill('harbour pencil meadow 7');
      await Promise.all([
        colleague.waitForURL('**/sign-in/enrol'),
        colleague.getByRole('button', { name: 'Sign in', exact: true }).click(),
      ]);
      await colleague.getByRole('heading', { level: 1, name: 'Set up your authenticator app' }).waitFor();

      // The manager makes Jo a dispenser, then suspends the account.
      await manager.reload();
      const jo = manager.locator('tr', { hasText: 'jo.burns@demo.example' });
      await jo.getByLabel(/Role/).selectOption('dispenser');
      await submit(manager, jo.getByRole('button', { name: /Change role/ }));
      assert.match(await mainText(manager), /The role has been changed/);
      const moved = manager.locator('tr', { hasText: 'jo.burns@demo.example' });
      assert.match(await moved.innerText(), /Dispenser/);
      await moved.locator('details.suspend summary').click();
      await moved.getByLabel(/Why is Jo Burns/).fill('left the pharmacy');
      await submit(manager, moved.getByRole('button', { name: 'Suspend the account' }));
      assert.match(await mainText(manager), /The account is suspended/);
      const suspended = manager.locator('tr', { hasText: 'jo.burns@demo.example' });
      assert.match(await suspended.innerText(), /Suspended/);
      assert.ok(await suspended.getByRole('button', { name: /Reinstate/ }).isVisible());
      await checkPage(manager, 'staff-accounts-changed');
    } finally {
      await manager.close();
      await colleague.close();
    }
  });
});
