// Pages under the real Content-Security-Policy (a context WITHOUT bypassCSP, as a person's browser
// sees them): no CSP violations in the console, and an injected inline script is blocked.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, ACCOUNTS } from '../lib/harness.js';

describe('Content-Security-Policy', { timeout: 300_000 }, () => {
  const env = useServer({ before, after });

  it('loads the sign-in page and a dashboard under the real CSP with no violations', async () => {
    // A context WITHOUT bypassCSP: exactly what a person's browser enforces.
    const page = await newPage(env.browser, { bypassCSP: false });
    const problems = [];
    page.on('console', (m) => {
      if (/Content[- ]Security[- ]Policy/i.test(m.text())) problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        console.error(`Content Security Policy violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
      });
    });
    const failed = [];
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${r.failure()?.errorText}`));

    const res = await page.goto(`${env.url}/sign-in`);
    const csp = res.headers()['content-security-policy'];
    assert.ok(csp, 'the page is served with a Content-Security-Policy');
    assert.match(csp, /default-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(res.headers()['strict-transport-security'] ?? '', /max-age=\d+/);
    assert.equal(res.headers()['x-content-type-options'], 'nosniff');

    // The stylesheet really applied (a CSP that blocked it would leave the default font).
    await page.waitForLoadState('load');
    const sheets = await page.evaluate(() => document.styleSheets.length);
    assert.ok(sheets >= 1, 'the stylesheet loaded');

    await signIn(page, env.url, ACCOUNTS.patient);
    await page.getByRole('heading', { level: 1, name: 'My medicines' }).waitFor();
    await page.waitForLoadState('load');
    // app.js is loaded by a same-origin script tag, which the CSP allows.
    assert.deepEqual(problems, [], `no CSP violations:\n${problems.join('\n')}`);
    assert.deepEqual(failed, [], `no failed requests:\n${failed.join('\n')}`);
    await page.context().close();
  });

  it('blocks an injected inline script (the CSP is really enforced)', async () => {
    const page = await newPage(env.browser, { bypassCSP: false });
    await page.goto(`${env.url}/sign-in`);
    const violations = await page.evaluate(
      () =>
        new Promise((resolve) => {
          const seen = [];
          document.addEventListener('securitypolicyviolation', (e) => seen.push(e.violatedDirective));
          const s = document.createElement('script');
          s.textContent = 'window.__inlineRan = true;';
          document.body.appendChild(s);
          setTimeout(() => resolve({ seen, ran: window.__inlineRan === true }), 200);
        }),
    );
    assert.equal(violations.ran, false, 'the inline script must not run');
    assert.ok(violations.seen.some((d) => d.startsWith('script-src')), `a script-src violation is reported: ${violations.seen}`);
    await page.context().close();
  });
});
