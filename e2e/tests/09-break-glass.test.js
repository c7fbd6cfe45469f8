// A live-data custodian's break-glass access in a real browser: nothing to see without a grant;
// a grant needs a reason and a fresh authenticator code; the pharmacy's manager and the other
// custodian are emailed (through a real SMTP sink); the record opens read-only with a banner; the
// patient sees who looked and why; ending the grant closes the record again.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServerWithMail, newPage, signIn, signOut, checkPage, submit, mainText, nextCode, ACCOUNTS } from '../lib/harness.js';

const CUSTODIAN = 'custodian@demo.example';
const REASON = 'Support ticket 5120: Riverside reports an order that vanished';

describe('break-glass access', { timeout: 300_000 }, () => {
  const { env, mail: inbox } = useServerWithMail({ before, after });

  it('opens one patient for reading under a stated reason, announced and shown to the patient', async () => {
    const patient = await newPage(env.browser);
    const custodian = await newPage(env.browser);
    try {
      await signIn(patient, env.url, ACCOUNTS.patient);
      const annId = await patient.evaluate(async () => (await (await fetch('/api/v1/me')).json()).patient_id);

      await signIn(custodian, env.url, CUSTODIAN);
      assert.equal(new URL(custodian.url()).pathname, '/custody', 'custodians start on their break-glass page');
      await custodian.getByRole('heading', { level: 1, name: 'Break-glass access' }).waitFor();
      assert.match(await mainText(custodian), /You have no open grant/);
      const closed = await custodian.goto(`${env.url}/custody/patients/${annId}`);
      assert.equal(closed.status(), 404, 'no grant, no record');
      await custodian.goto(`${env.url}/custody`);
      await checkPage(custodian, 'custody');

      // A reason that says nothing is refused, and the code is asked for again.
      await custodian.locator('#grant-patient').fill(annId);
      await custodian.locator('#grant-reason').fill('checking');
      await custodian.locator('#grant-code').fill(await nextCode(CUSTODIAN));
      assert.equal(await submit(custodian, custodian.getByRole('button', { name: 'Open break-glass access' })), 422);
      assert.match(await custodian.getByRole('alert').innerText(), /Reason: say why/);

      await custodian.locator('#grant-reason').fill(REASON);
      await custodian.locator('#grant-minutes').selectOption('30');
      await custodian.locator('#grant-code').fill(await nextCode(CUSTODIAN));
      assert.equal(await submit(custodian, custodian.getByRole('button', { name: 'Open break-glass access' })), 200);
      await custodian.getByRole('heading', { level: 1, name: 'Ann Jones' }).waitFor();
      assert.match(await custodian.getByRole('note').innerText(), /Break-glass access/);
      assert.match(await mainText(custodian), /Repeat medicines/);
      assert.equal(await custodian.locator('main form').count(), 0, 'read only: no forms on the record');
      await checkPage(custodian, 'custody-patient');

      const toManager = await inbox.sink.waitFor((m) => m.to.includes(ACCOUNTS.manager) && /Break-glass/.test(m.subject));
      assert.match(toManager.text, /Casey Quinn/);
      assert.match(toManager.text, /Support ticket 5120/);
      await inbox.sink.waitFor((m) => m.to.includes('custodian2@demo.example') && /Break-glass/.test(m.subject));

      await patient.goto(`${env.url}/patient/access`);
      const row = patient.locator('tr', { hasText: 'Casey Quinn' }).first();
      assert.match(await row.innerText(), /Live-data custodian/);
      assert.match(await row.innerText(), /Support ticket 5120/);
      await checkPage(patient, 'patient-access-break-glass');

      await custodian.goto(`${env.url}/custody`);
      await submit(custodian, custodian.getByRole('button', { name: 'End this grant now' }));
      assert.match(await mainText(custodian), /The grant has ended/);
      assert.match(await custodian.locator('#past-grants').innerText(), /ended early/);
      const again = await custodian.goto(`${env.url}/custody/patients/${annId}`);
      assert.equal(again.status(), 404, 'closed again once ended');
      await custodian.goto(`${env.url}/custody`);
      await signOut(custodian);

      // The pharmacy's manager finds the break-glass access in the audit trail.
      const manager = await newPage(env.browser);
      try {
        await signIn(manager, env.url, ACCOUNTS.manager);
        await manager.getByRole('link', { name: 'Audit trail' }).click();
        await manager.getByRole('heading', { level: 1, name: 'Audit trail' }).waitFor();
        await manager.locator('#trail-kind').selectOption('custody');
        await manager.locator('#trail-patient').fill(annId);
        await submit(manager, manager.getByRole('button', { name: 'Search' }));
        const entry = manager.locator('#trail tr', { hasText: 'custody.grant' });
        assert.match(await entry.innerText(), /Casey Quinn/);
        assert.match(await entry.innerText(), /Support ticket 5120/);
        await checkPage(manager, 'audit-trail');
      } finally {
        await manager.close();
      }
    } finally {
      await patient.close();
      await custodian.close();
    }
  });
});
