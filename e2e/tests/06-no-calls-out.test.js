// Promise P5: no third parties. Every request a browser makes while each kind of user works
// through their main pages goes to the RepeatRx server itself: no CDN, web fonts or analytics.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, ACCOUNTS } from '../lib/harness.js';

const PAGES = [
  [ACCOUNTS.patient, ['/patient', '/patient/orders']],
  [ACCOUNTS.pharmacist, ['/pharmacy', '/pharmacy/patients', '/pharmacy/patients/new']],
  [ACCOUNTS.prescriber, ['/practice']],
  [ACCOUNTS.operator, ['/admin']],
];

describe('P5: no calls out', { timeout: 300_000 }, () => {
  const env = useServer({ before, after });

  it('loads every asset of every main page from the RepeatRx server only', async () => {
    const origin = new URL(env.url).origin;
    const elsewhere = [];
    let seen = 0;
    for (const [account, paths] of PAGES) {
      const page = await newPage(env.browser, { bypassCSP: false });
      page.on('request', (r) => {
        seen += 1;
        const u = new URL(r.url());
        if (u.protocol !== 'data:' && u.origin !== origin) elsewhere.push(r.url());
      });
      await signIn(page, env.url, account);
      for (const p of paths) {
        await page.goto(`${env.url}${p}`);
        await page.waitForLoadState('networkidle');
      }
      await page.context().close();
    }
    assert.ok(seen > 10, `the pages made requests (${seen})`);
    assert.deepEqual(elsewhere, [], 'requests left the RepeatRx server');
  });
});
