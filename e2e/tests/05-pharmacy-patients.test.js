// The pharmacy's patient work: find a patient, register a new one with an online account, add a
// repeat item from the medicines catalogue, order on the patient's behalf; then the new patient
// chooses a password from the emailed invitation and signs in, and the prescriber sees the
// patient's list.
// Steps run in order on one server; once one fails, the rest are skipped.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { useServer, newPage, signIn, checkPage, submit, mainText, ACCOUNTS } from '../lib/harness.js';

const NEW = {
  given: 'Eleri',
  family: 'Vaughan',
  dob: '1961-04-09',
  nhs: '943 476 5919',
  email: 'eleri.vaughan@demo.example',
};

function isoDateInDays(days) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

describe('pharmacy: patients', { timeout: 300_000 }, () => {
  const env = useServer({ before, after });
  let page;
  let broken = '';
  const state = { patientPath: '', password: '', orderId: '' };

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

  before(async () => {
    page = await newPage(env.browser);
    await signIn(page, env.url, ACCOUNTS.pharmacist);
  });
  after(async () => {
    if (page) await page.context().close().catch(() => {});
  });

  step('finds a patient by name', async () => {
    await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Patients' }).click();
    await page.getByRole('heading', { level: 1, name: 'Patients' }).waitFor();
    await checkPage(page, 'pharmacy-patients');
    await page.getByLabel('Name', { exact: true }).fill('Jones');
    await submit(page, page.getByRole('button', { name: 'Search', exact: true }));
    await page.getByRole('heading', { level: 2, name: 'Search results' }).waitFor();
    await page.getByRole('link', { name: 'Ann Jones' }).waitFor();
    for (const t of await page.locator('main table tbody tr').allInnerTexts()) assert.match(t, /Jones/);
  });

  step('refuses an incomplete registration, naming each problem', async () => {
    await page.getByRole('link', { name: 'Register a patient' }).click();
    await page.getByRole('heading', { level: 1, name: 'Register a patient' }).waitFor();
    await checkPage(page, 'pharmacy-patient-new');
    await page.getByLabel('Given name').fill(NEW.given);
    const status = await submit(page, page.getByRole('button', { name: 'Register patient' }));
    assert.equal(status, 422);
    const alert = page.getByRole('alert');
    assert.ok((await alert.getByRole('listitem').count()) >= 1);
    assert.equal(await page.getByLabel('Given name').inputValue(), NEW.given, 'what was typed is kept');
    await checkPage(page, 'pharmacy-patient-new-error');
  });

  // Two checks of the registration form that are not journey steps (a failure here does not
  // skip the steps after it).
  const registrationForm = async (fn) => {
    const own = await newPage(env.browser);
    try {
      await signIn(own, env.url, ACCOUNTS.pharmacist);
      await own.goto(`${env.url}/pharmacy/patients/new`);
      await own.getByRole('heading', { level: 1, name: 'Register a patient' }).waitFor();
      await fn(own);
    } finally {
      await own.context().close();
    }
  };

  it('the registration form lists every problem at once', () =>
    registrationForm(async (own) => {
      await own.getByLabel('Given name').fill(NEW.given);
      assert.equal(await submit(own, own.getByRole('button', { name: 'Register patient' })), 422);
      const summary = (await own.getByRole('alert').innerText()).replace(/\s+/g, ' ');
      const missing = ['Family name', 'Date of birth', 'NHS number', 'GP practice'].filter((f) => !summary.includes(f));
      assert.deepEqual(missing, [], `the error summary names every required field left empty; it said only: ${summary}`);
    }));

  it('the registration form draws every text box the same width', () =>
    registrationForm(async (own) => {
      const widths = await own
        .locator('form[action="/pharmacy/patients"] input:not([type=hidden]):not([type=checkbox])')
        .evaluateAll((els) => els.map((e) => `${e.id}=${Math.round(e.getBoundingClientRect().width)}`));
      const distinct = new Set(widths.map((w) => w.split('=')[1]));
      assert.equal(distinct.size, 1, `the text boxes differ in width: ${widths.join(', ')}`);
    }));

  step('registers a patient with an online account, which is opened by an emailed invitation', async () => {
    await page.getByLabel('Family name').fill(NEW.family);
    await page.getByLabel('Date of birth').fill(NEW.dob);
    await page.getByLabel('NHS number').fill(NEW.nhs);
    await page.getByLabel('GP practice').selectOption({ label: 'Riverside Surgery (Y01001)' });
    await page.getByLabel('Email address (optional)').fill(NEW.email);
    await page.getByLabel('Create an online account for the patient').check();
    await submit(page, page.getByRole('button', { name: 'Register patient' }));
    await page.getByRole('heading', { level: 1, name: 'Patient registered' }).waitFor();
    const text = await mainText(page);
    assert.match(text, /Eleri Vaughan \(born 9 Apr 1961, NHS number 943 476 5919\) has been registered/);
    assert.match(text, new RegExp(`We have emailed ${NEW.email.replace(/\./g, '\\.')} a link to choose a password`));
    assert.equal(await page.locator('code.secret').count(), 0, 'no password is shown to the pharmacy');
    await checkPage(page, 'pharmacy-registered');
    await page.getByRole('link', { name: "Go to Eleri Vaughan's record" }).click();
    await page.waitForURL(/\/pharmacy\/patients\/[^/?#]+$/);
    state.patientPath = new URL(page.url()).pathname;
    await page.getByRole('heading', { level: 1, name: 'Eleri Vaughan' }).waitFor();
    assert.match(await mainText(page), /No repeat medicines yet/);
  });

  step('adds a repeat item chosen from the catalogue', async () => {
    await page.getByLabel('Search the medicines catalogue').fill('ramipril 5');
    await submit(page, page.getByRole('button', { name: 'Search the catalogue' }));
    const choice = page.getByRole('group', { name: 'Medicine', exact: true }).getByRole('radio', { name: /^Ramipril 5/i }).first();
    await choice.check();
    await page.getByLabel('Quantity').fill('28');
    await page.getByLabel('Directions').fill('One to be taken each morning');
    await page.getByLabel('Days between issues').fill('28');
    await page.getByLabel('Number of issues').fill('6');
    await page.getByLabel('Medication review date').fill(isoDateInDays(180));
    await submit(page, page.getByRole('button', { name: 'Add repeat item' }));
    assert.match(await page.getByRole('status').innerText(), /The repeat item has been added/);
    const line = page.locator('li.repeat-line', { hasText: /Ramipril/i });
    assert.equal(await line.count(), 1);
    assert.match(await line.innerText(), /Can be ordered now/);
    await checkPage(page, 'pharmacy-patient-new-item');
  });

  step("orders on the patient's behalf", async () => {
    await page.getByRole('group', { name: 'Medicines to order' }).getByRole('checkbox', { name: /^Ramipril/i }).check();
    await page.getByLabel('Deliver to the patient\'s address').check();
    await submit(page, page.getByRole('button', { name: 'Order selected items' }));
    const m = new URL(page.url()).pathname.match(/^\/pharmacy\/orders\/([^/]+)$/);
    assert.ok(m, `landed on the order, not ${page.url()}`);
    state.orderId = m[1];
    assert.match(await page.getByRole('status').innerText(), /placed on the patient's behalf/);
    const text = await mainText(page);
    assert.match(text, /Placed by The pharmacy, on the patient's behalf/);
    assert.match(text, /Deliver to the patient's address/);
    assert.match(text, /Status Submitted/);
  });

  step('the new patient chooses a password from the invitation, signs in and sees the order', async () => {
    const patient = await newPage(env.browser);
    try {
      await patient.goto(`${env.url}/demo/outbox`);
      const body = await patient
        .locator('li', { hasText: NEW.email })
        .filter({ hasText: 'You are invited to RepeatRx' })
        .first()
        .locator('pre.email-body')
        .innerText();
      assert.match(body, /Riverside Pharmacy has opened a RepeatRx account for you/);
      await patient.goto(body.match(/https:\/\/\S+\/invitation\/\S+/)[0].replace(/^https:\/\/[^/]+/, env.url));
      await patient.getByRole('heading', { level: 1, name: 'Welcome to RepeatRx, Eleri Vaughan' }).waitFor();
      state.password = 'kettle orchard violet 3';
      await patient.locator('#password').fill(state.password);
      await patient.locator('#confirm').fill(state.password);
      assert.equal(await submit(patient, patient.getByRole('button', { name: 'Choose this password' })), 200);
      assert.doesNotMatch(await mainText(patient), /authenticator/, 'patients are not asked to set up an app');
      await signIn(patient, env.url, NEW.email, state.password);
      assert.equal(new URL(patient.url()).pathname, '/patient');
      await patient.getByRole('heading', { level: 1, name: 'My medicines' }).waitFor();
      const line = patient.locator('li.repeat-line', { hasText: /Ramipril/i });
      assert.match(await line.innerText(), /Already on an order that is in progress/);
      await patient.goto(`${env.url}/patient/orders/${state.orderId}`);
      assert.match(await mainText(patient), /Deliver to my address/);
    } finally {
      await patient.context().close();
    }
  });

  step("the prescriber sees the patient's repeat list and the authorisation form", async () => {
    const prescriber = await newPage(env.browser);
    try {
      await signIn(prescriber, env.url, ACCOUNTS.prescriber);
      const id = state.patientPath.split('/').pop();
      const res = await prescriber.goto(`${env.url}/practice/patients/${id}`);
      assert.equal(res.status(), 200);
      await prescriber.getByRole('heading', { level: 1, name: 'Eleri Vaughan' }).waitFor();
      assert.match(await mainText(prescriber), /Ramipril/i);
      await prescriber.getByRole('button', { name: 'Issue authorisation' }).waitFor();
      await checkPage(prescriber, 'practice-patient');
    } finally {
      await prescriber.context().close();
    }
  });
});
