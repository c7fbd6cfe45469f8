// The whole journey of a repeat order through the HTML dashboards, as the people who do it:
//   the patient orders two items for collection (and cancels a third, fresh order);
//   the pharmacist finds the order in the queue, accepts it and sends it to the prescriber;
//   the receptionist can see the request but not decide; the prescriber approves one item and
//   rejects the other with a reason; the pharmacist marks the approved item ready, then collected;
//   the patient sees the reason and the completed order; the demo outbox holds the emails.
// Each main page is checked with axe-core and photographed. The steps share one server and run
// in order; once a step fails, the steps after it are skipped (they would fail for the same cause).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  useServer,
  newPage,
  newPhonePage,
  signIn,
  nextCode,
  checkPage,
  shot,
  submit,
  mainText,
  ACCOUNTS,
} from '../lib/harness.js';

const ORDERED = /^Atorvastatin/i; // approved by the prescriber, then collected
const REJECTED = /^Salbutamol/i; // rejected with a reason
const CANCELLED = /^Omeprazole/i; // ordered and cancelled at once
const REJECT_NOTE = 'Please come in for an asthma review with the practice nurse first.';

describe('the journey of a repeat order', { timeout: 600_000 }, () => {
  const env = useServer({ before, after });
  const pages = {};
  const state = { orderId: '', cancelledId: '', patientPageUrl: '' };
  let broken = '';

  /** A step of the journey: skipped once an earlier one failed. */
  const step = (name, fn) =>
    it(name, async (t) => {
      if (broken) {
        t.skip(`an earlier step failed: ${broken}`);
        return;
      }
      try {
        await fn(t);
      } catch (e) {
        broken = name;
        throw e;
      }
    });

  const as = async (who) => {
    if (!pages[who]) {
      pages[who] = await newPage(env.browser);
      await signIn(pages[who], env.url, ACCOUNTS[who]);
    }
    return pages[who];
  };

  after(async () => {
    for (const p of Object.values(pages)) await p.context().close().catch(() => {});
  });

  // --- The patient orders -------------------------------------------------------------------

  step('patient: sees "My medicines" with what can be ordered and why the rest cannot', async () => {
    const page = await as('patient');
    assert.equal(new URL(page.url()).pathname, '/patient');
    await page.getByRole('heading', { level: 1, name: 'My medicines' }).waitFor();
    for (const name of [ORDERED, REJECTED, CANCELLED]) {
      const box = page.getByRole('checkbox', { name });
      assert.equal(await box.count(), 1, `${name} can be ticked`);
      assert.equal(await box.isChecked(), false);
    }
    const text = await mainText(page);
    assert.match(text, /Too early to order/, 'an item ordered recently says it is too early');
    assert.match(text, /Medication review needed/, 'an item past its review date says so');
    assert.match(text, /cannot be ordered online/, 'a controlled drug cannot be ordered online');
    for (const name of [/^Amlodipine/i, /^Levothyroxine/i]) {
      assert.equal(await page.getByRole('checkbox', { name }).count(), 0, `${name} has no checkbox`);
    }
    // Each refusal is shown with its own item.
    const early = page.locator('li.repeat-line', { hasText: /Amlodipine/i });
    assert.match(await early.innerText(), /Too early to order: you can order this from/);
    await page.getByRole('group', { name: /How would you like to get your medicines/ }).waitFor();
    await checkPage(page, 'patient-medicines');
  });

  step('patient: the list works on a phone (375 px) without sideways scrolling', async () => {
    const phone = await newPhonePage(env.browser);
    try {
      await signIn(phone, env.url, ACCOUNTS.patient);
      await phone.getByRole('heading', { level: 1, name: 'My medicines' }).waitFor();
      const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      await shot(phone, 'patient-medicines-phone');
      assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone's screen`);
      await checkPage(phone, 'patient-medicines-phone');
    } finally {
      await phone.context().close();
    }
  });

  step('patient: refuses an order with nothing ticked, with an error summary', async () => {
    const page = await as('patient');
    const status = await submit(page, page.getByRole('button', { name: 'Order selected items' }));
    assert.equal(status, 422);
    const alert = page.getByRole('alert');
    assert.match(await alert.innerText(), /Choose at least one item to order/);
    await checkPage(page, 'patient-medicines-error');
  });

  step('patient: orders two items for collection and lands on the order page', async () => {
    const page = await as('patient');
    await page.goto(`${env.url}/patient`);
    await page.getByRole('checkbox', { name: ORDERED }).check();
    await page.getByRole('checkbox', { name: REJECTED }).check();
    await page.getByLabel('Collect from the pharmacy').check();
    await page.getByLabel('Note for the pharmacy (optional)').fill('I will collect on Friday afternoon.');
    await submit(page, page.getByRole('button', { name: 'Order selected items' }));
    const url = new URL(page.url());
    const m = url.pathname.match(/^\/patient\/orders\/([^/]+)$/);
    assert.ok(m, `landed on an order page, not ${url.pathname}`);
    state.orderId = m[1];
    await page.getByRole('heading', { level: 1, name: /^Your order of / }).waitFor();
    assert.match(await page.getByRole('status').innerText(), /Your order has been sent to your pharmacy/);
    const text = await mainText(page);
    assert.match(text, /Status Submitted/);
    assert.match(text, /How Collect/i);
    assert.match(text, /I will collect on Friday afternoon\./);
    const items = page.locator('main ul.item-list > li');
    assert.equal(await items.count(), 2, 'two items on the order');
    assert.match(text, /Atorvastatin/i);
    assert.match(text, /Salbutamol/i);
    await page.getByRole('button', { name: 'Cancel this order' }).waitFor();
    await checkPage(page, 'patient-order');
  });

  step('patient: the ordered items are no longer orderable, and say why', async () => {
    const page = await as('patient');
    await page.goto(`${env.url}/patient`);
    assert.equal(await page.getByRole('checkbox', { name: ORDERED }).count(), 0);
    const line = page.locator('li.repeat-line', { hasText: /Atorvastatin/i });
    assert.match(await line.innerText(), /Already on an order that is in progress/);
  });

  step('patient: orders a third item and cancels that fresh order', async () => {
    const page = await as('patient');
    await page.goto(`${env.url}/patient`);
    await page.getByRole('checkbox', { name: CANCELLED }).check();
    await page.getByLabel('Collect from the pharmacy').check();
    await submit(page, page.getByRole('button', { name: 'Order selected items' }));
    const m = new URL(page.url()).pathname.match(/^\/patient\/orders\/([^/]+)$/);
    assert.ok(m, 'landed on the new order');
    state.cancelledId = m[1];
    assert.notEqual(state.cancelledId, state.orderId);
    page.dialogs.length = 0;
    await submit(page, page.getByRole('button', { name: 'Cancel this order' }));
    assert.equal(page.dialogs.length, 1, 'the browser asked to confirm the cancellation');
    assert.match(page.dialogs[0], /Cancel this order\?/);
    assert.match(await page.getByRole('status').innerText(), /The order has been cancelled/);
    assert.match(await mainText(page), /Status Cancelled/);
    assert.equal(await page.getByRole('button', { name: 'Cancel this order' }).count(), 0, 'no second cancel');
    // The cancelled item can be ordered again.
    await page.goto(`${env.url}/patient`);
    assert.equal(await page.getByRole('checkbox', { name: CANCELLED }).count(), 1);
  });

  step('patient: "My orders" lists both new orders with their status', async () => {
    const page = await as('patient');
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'My orders' }).click();
    await page.getByRole('heading', { level: 1, name: 'My orders' }).waitFor();
    const rows = page.locator('main table tbody tr');
    assert.ok((await rows.count()) >= 3, 'the two new orders and last month\'s');
    const hrefs = await page.locator('main table a').evaluateAll((as) => as.map((a) => a.getAttribute('href')));
    assert.ok(hrefs.includes(`/patient/orders/${state.orderId}`));
    assert.ok(hrefs.includes(`/patient/orders/${state.cancelledId}`));
    const first = await rows.first().innerText();
    assert.match(first, /Cancelled/, 'newest first: the cancelled order is at the top');
    await checkPage(page, 'patient-orders');
  });

  // --- The pharmacy accepts and sends to the prescriber ---------------------------------------

  let stageCounts = {};
  step('pharmacist: sees the queue with counts per stage', async () => {
    const page = await as('pharmacist');
    assert.equal(new URL(page.url()).pathname, '/pharmacy');
    await page.getByRole('heading', { level: 1, name: 'Order queue' }).waitFor();
    const cards = page.locator('ul.stage-cards a');
    const texts = await cards.allInnerTexts();
    assert.ok(texts.length >= 6, `a card per open stage and "All open orders": ${texts}`);
    stageCounts = Object.fromEntries(
      texts.map((t) => {
        const m = t.trim().match(/^(\d+)\s+(.+)$/);
        assert.ok(m, `card "${t}" shows a count`);
        return [m[2], Number(m[1])];
      }),
    );
    const { 'All open orders': total, ...stages } = stageCounts;
    assert.equal(total, Object.values(stages).reduce((a, b) => a + b, 0), 'the total is the sum of the stages');
    assert.ok(stages.Submitted >= 1, 'our order is waiting');
    assert.ok(stages['With the prescriber'] >= 1, 'the demo has orders with the prescriber');
    const rows = page.locator('table.queue tbody tr');
    assert.equal(await rows.count(), Math.min(total, 50), 'the queue shows every open order (one page)');
    await checkPage(page, 'pharmacy-queue');
  });

  step('pharmacist: filters the queue by stage', async () => {
    const page = await as('pharmacist');
    await page.getByLabel('Stage').selectOption({ label: 'Submitted' });
    await submit(page, page.getByRole('button', { name: 'Filter orders' }));
    assert.equal(new URL(page.url()).searchParams.get('stage'), 'submitted');
    const rows = page.locator('table.queue tbody tr');
    assert.equal(await rows.count(), stageCounts.Submitted);
    for (const t of await rows.allInnerTexts()) assert.match(t, /Submitted/);
    const current = page.locator('ul.stage-cards a[aria-current="page"]');
    assert.match(await current.innerText(), /Submitted/, 'the stage card shows it is the current filter');
    // The stage cards are links to the same filter.
    await page.locator('ul.stage-cards').getByRole('link', { name: /With the prescriber/ }).click();
    await page.waitForURL(/stage=with_prescriber/);
    assert.equal(await page.locator('table.queue tbody tr').count(), stageCounts['With the prescriber']);
    await page.getByRole('link', { name: 'Clear filters' }).click();
    await page.waitForURL((u) => u.pathname === '/pharmacy' && u.search === '');
  });

  step('pharmacist: searches the queue by the patient\'s family name', async () => {
    const page = await as('pharmacist');
    await page.getByLabel('Patient name').fill('Jones');
    await submit(page, page.getByRole('button', { name: 'Filter orders' }));
    const rows = page.locator('table.queue tbody tr');
    assert.ok((await rows.count()) >= 1);
    for (const t of await rows.allInnerTexts()) assert.match(t, /Jones/);
    await page.getByRole('link', { name: 'Open order for Ann Jones' }).waitFor();
    // A name nobody has: no rows, and says so.
    await page.getByLabel('Patient name').fill('Zzyzx');
    await submit(page, page.getByRole('button', { name: 'Filter orders' }));
    assert.equal(await page.locator('table.queue tbody tr').count(), 0);
    assert.match(await mainText(page), /No open orders match these filters/);
  });

  it('pharmacist: finds the order by the patient\'s full name ("Ann Jones")', async () => {
    // Separate from the journey: people type the whole name into a field labelled "Patient name".
    const page = await newPage(env.browser);
    try {
      await signIn(page, env.url, ACCOUNTS.pharmacist);
      await page.getByLabel('Patient name').fill('Ann Jones');
      await submit(page, page.getByRole('button', { name: 'Filter orders' }));
      assert.equal(
        await page.getByRole('link', { name: 'Open order for Ann Jones' }).count(),
        1,
        'a search for "Ann Jones" finds Ann Jones\'s open order',
      );
    } finally {
      await page.context().close();
    }
  });

  step('pharmacist: opens the patient\'s order from the search', async () => {
    const page = await as('pharmacist');
    await page.getByLabel('Patient name').fill('Ann');
    await submit(page, page.getByRole('button', { name: 'Filter orders' }));
    await page.getByRole('link', { name: 'Open order for Ann Jones' }).click();
    await page.waitForURL(`**/pharmacy/orders/${state.orderId}`);
    await page.getByRole('heading', { level: 1, name: 'Order for Ann Jones' }).waitFor();
    const text = await mainText(page);
    assert.match(text, /Status Submitted/);
    assert.match(text, /Practice Riverside Surgery/);
    assert.match(text, /Collect from the pharmacy/);
    assert.match(text, /I will collect on Friday afternoon\./);
    await page.getByRole('button', { name: 'Cancel at patient\'s request' }).waitFor();
    await checkPage(page, 'pharmacy-order');
  });

  step('pharmacist: accepts the order', async () => {
    const page = await as('pharmacist');
    await submit(page, page.getByRole('button', { name: 'Accept order' }));
    assert.match(await page.getByRole('status').innerText(), /The order has been accepted/);
    assert.match(await mainText(page), /Status In review at the pharmacy/);
    assert.equal(await page.getByRole('button', { name: 'Accept order' }).count(), 0);
  });

  step('pharmacist: sends it to the prescriber', async () => {
    const page = await as('pharmacist');
    await submit(page, page.getByRole('button', { name: 'Send to prescriber' }));
    assert.match(await page.getByRole('status').innerText(), /The order has been sent to the prescriber/);
    const text = await mainText(page);
    assert.match(text, /Status With the prescriber/);
    assert.match(text, /Waiting for a prescriber at Riverside Surgery/);
    assert.equal(await page.getByRole('button', { name: 'Send to prescriber' }).count(), 0);
    // The history records each step.
    const history = await page.locator('ol.timeline').innerText();
    assert.match(history, /Order – Submitted → In review at the pharmacy/);
    assert.match(history, /With the prescriber/);
  });

  step('pharmacist: opens the patient\'s record', async () => {
    const page = await as('pharmacist');
    await page.locator('main dl.facts').getByRole('link', { name: 'Ann Jones' }).click();
    await page.waitForURL(/\/pharmacy\/patients\/[^/]+$/);
    await page.getByRole('heading', { level: 1, name: 'Ann Jones' }).waitFor();
    const text = await mainText(page);
    assert.match(text, /Repeat medicines/);
    assert.match(text, /Already on an order that is in progress/);
    const orders = page.locator('main table tbody tr');
    assert.ok((await orders.count()) >= 3);
    await checkPage(page, 'pharmacy-patient');
  });

  // --- The practice decides -------------------------------------------------------------------

  step('receptionist: sees the request but cannot decide', async () => {
    const page = await as('receptionist');
    await page.getByRole('link', { name: 'Open request for Ann Jones' }).click();
    await page.waitForURL(`**/practice/orders/${state.orderId}`);
    assert.match(await mainText(page), /Only a prescriber can record it/);
    assert.equal(await page.getByRole('button', { name: 'Record decision' }).count(), 0);
  });

  step('prescriber: sees the requests waiting for a decision', async () => {
    const page = await as('prescriber');
    assert.equal(new URL(page.url()).pathname, '/practice');
    await page.getByRole('heading', { level: 1, name: 'Requests awaiting a decision' }).waitFor();
    const row = page.locator('main table tbody tr', { hasText: 'Ann Jones' });
    assert.equal(await row.count(), 1);
    const text = await row.innerText();
    assert.match(text, /Atorvastatin/i);
    assert.match(text, /Salbutamol/i);
    await checkPage(page, 'practice-requests');
  });

  const decisionForm = (page, name) =>
    page.locator('form').filter({ has: page.getByRole('group', { name: new RegExp(`^Decision on ${name.source.replace('^', '')}`, 'i') }) });

  step('prescriber: opens the request', async () => {
    const page = await as('prescriber');
    await page.getByRole('link', { name: 'Open request for Ann Jones' }).click();
    await page.waitForURL(`**/practice/orders/${state.orderId}`);
    await page.getByRole('heading', { level: 1, name: 'Request for Ann Jones' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Record decision' }).count(), 2, 'a decision form per item');
    await checkPage(page, 'practice-order');
  });

  step('prescriber: a rejection without a reason is refused with an error linked to the field', async () => {
    const page = await as('prescriber');
    const form = decisionForm(page, REJECTED);
    await form.getByLabel('Reject', { exact: true }).check();
    const status = await submit(page, form.getByRole('button', { name: 'Record decision' }));
    assert.equal(status, 422);
    const alert = decisionForm(page, REJECTED).getByRole('alert');
    assert.match(await alert.innerText(), /Reason for not approving/, 'the error summary names the field');
    // The summary links to the field it is about.
    const href = await alert.getByRole('link').first().getAttribute('href');
    assert.match(href, /^#d-.+-reason$/);
    assert.equal(await page.locator(href).evaluate((el) => el.tagName), 'SELECT');
    assert.equal(await decisionForm(page, REJECTED).getByLabel('Reject', { exact: true }).isChecked(), true, 'the choice is kept');
    await checkPage(page, 'practice-order-error');
  });

  step('prescriber: an approval without a security code is refused; with a fresh code it is signed', async () => {
    const page = await as('prescriber');
    await page.goto(`${env.url}/practice/orders/${state.orderId}`);
    let form = decisionForm(page, ORDERED);
    await form.getByLabel('Approve', { exact: true }).check();
    assert.equal(await submit(page, form.getByRole('button', { name: 'Record decision' })), 422);
    assert.match(await decisionForm(page, ORDERED).getByRole('alert').innerText(), /Security code/);
    form = decisionForm(page, ORDERED);
    await form.getByLabel('Approve', { exact: true }).check();
    await form.getByLabel('Security code to sign an approval').fill(await nextCode(ACCOUNTS.prescriber));
    await submit(page, form.getByRole('button', { name: 'Record decision' }));
    assert.match(await page.getByRole('status').innerText(), /The decision has been recorded/);
    const item = page.locator('main ul.item-list > li').filter({ has: page.getByRole('heading', { name: ORDERED }) });
    assert.match(await item.innerText(), /Approved/);
    assert.equal(await decisionForm(page, ORDERED).count(), 0, 'no form for a decided item');
  });

  step('prescriber: rejects the other with a reason and a note', async () => {
    const page = await as('prescriber');
    const form = decisionForm(page, REJECTED);
    await form.getByLabel('Reject', { exact: true }).check();
    await form.getByLabel('Reason for not approving').selectOption({ label: 'Appointment needed' });
    await form.getByLabel('Note').fill(REJECT_NOTE);
    await submit(page, form.getByRole('button', { name: 'Record decision' }));
    assert.match(await page.getByRole('status').innerText(), /The decision has been recorded/);
    const item = page.locator('main ul.item-list > li').filter({ has: page.getByRole('heading', { name: REJECTED }) });
    const text = (await item.innerText()).replace(/\s+/g, ' ');
    assert.match(text, /Not approved/);
    assert.match(text, /Appointment needed/);
    assert.ok(text.includes(REJECT_NOTE));
    assert.match(text, /Please book an appointment with your practice\./, 'the usual next step is given');
    // Nothing is left to decide: the request leaves the list.
    await page.goto(`${env.url}/practice`);
    assert.equal(await page.locator('main table tbody tr', { hasText: 'Ann Jones' }).count(), 0);
  });

  // --- The pharmacy dispenses -----------------------------------------------------------------

  step('pharmacist: marks the approved item ready to collect, then collected', async () => {
    const page = await as('pharmacist');
    await page.goto(`${env.url}/pharmacy/orders/${state.orderId}`);
    assert.match(await mainText(page), /Status Being prepared/);
    const steps = () => page.getByRole('group', { name: /^Next step for Atorvastatin/i });
    assert.equal(
      await page.getByRole('group', { name: /^Next step for Salbutamol/i }).count(),
      0,
      'a rejected item has no dispensing steps',
    );
    await submit(page, steps().getByRole('button', { name: 'Ready to collect', exact: true }));
    assert.match(await page.getByRole('status').innerText(), /The item has been updated/);
    let text = await mainText(page);
    assert.match(text, /Status Ready/);
    assert.match(text, /Ready to collect/);
    await submit(page, steps().getByRole('button', { name: 'Collected', exact: true }));
    text = await mainText(page);
    assert.match(text, /Status Completed/);
    assert.equal(await steps().count(), 0, 'a collected item has no further steps');
    await shot(page, 'pharmacy-order-completed');
    // A finished order leaves the open queue.
    await page.goto(`${env.url}/pharmacy?name=Ann`);
    assert.equal(await page.getByRole('link', { name: 'Open order for Ann Jones' }).count(), 0);
  });

  // --- The patient sees the outcome -----------------------------------------------------------

  step('patient: sees the rejection reason and the completed order', async () => {
    const page = await as('patient');
    await page.goto(`${env.url}/patient/orders`);
    const row = page.locator('main table tbody tr').filter({ has: page.locator(`a[href="/patient/orders/${state.orderId}"]`) });
    assert.match(await row.innerText(), /Completed/);
    await row.getByRole('link').click();
    await page.waitForURL(`**/patient/orders/${state.orderId}`);
    const text = await mainText(page);
    assert.match(text, /Status Completed/);
    assert.match(text, /Collected/);
    assert.match(text, /Not approved/);
    assert.match(text, /Reason Appointment needed/);
    assert.ok(text.includes(REJECT_NOTE), 'the prescriber\'s note is shown');
    assert.match(text, /What to do next Please book an appointment with your practice\./);
    assert.equal(await page.getByRole('button', { name: 'Cancel this order' }).count(), 0);
    await checkPage(page, 'patient-order-completed');
  });

  step('demo outbox: shows the emails sent to the patient about the order', async () => {
    const page = await newPage(env.browser);
    try {
      await page.goto(`${env.url}/demo/outbox`);
      await page.getByRole('heading', { level: 1, name: 'Demo outbox' }).waitFor();
      const emails = page.locator('ol.emails > li').filter({ hasText: ACCOUNTS.patient }).filter({ hasText: state.orderId });
      const subjects = (await emails.locator('h2').allInnerTexts()).map((s) => s.trim());
      for (const subject of [
        'Your repeat prescription order has been accepted',
        'An item on your order was not approved',
        'Your medicine is ready',
      ]) {
        assert.ok(subjects.includes(subject), `an email "${subject}" about the order (saw: ${subjects.join(' | ')})`);
      }
      const rejection = emails.filter({ hasText: 'An item on your order was not approved' });
      const body = await rejection.locator('pre').innerText();
      assert.match(body, /Appointment needed/);
      assert.ok(body.includes(REJECT_NOTE));
      assert.ok(body.includes(`/patient/orders/${state.orderId}`), 'the email links to the order');
      await checkPage(page, 'demo-outbox');
    } finally {
      await page.context().close();
    }
  });
});
