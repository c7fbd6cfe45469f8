// The browser-test harness: starts the real `repeatrx demo` server on a free loopback port with a
// fresh data folder, launches Debian's headless Chromium through playwright-core, and offers the
// helpers every test uses (sign in, accessibility check with axe-core, screenshots).
//
// Environment:
//   REPEATRX_BIN       the repeatrx binary (default: ../target/debug/repeatrx from e2e/)
//   CHROMIUM_PATH      the browser (default: /usr/bin/chromium)
//   E2E_SERVER_LOG=1   copy the server's output to this process's stderr
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

/** The e2e/ folder. */
export const E2E_DIR = path.resolve(here, '..');
/** Where screenshots go. */
export const SCREENSHOT_DIR = path.join(E2E_DIR, 'test-output', 'screenshots');

/** Every demo account's password. */
export const PASSWORD = 'demo-password-2026';

/** The demo accounts. */
export const ACCOUNTS = Object.freeze({
  patient: 'patient@demo.example',
  pharmacist: 'pharmacist@demo.example',
  manager: 'manager@demo.example',
  prescriber: 'prescriber@demo.example',
  receptionist: 'receptionist@demo.example',
  operator: 'operator@demo.example',
});

/** Desktop and phone viewports. */
export const DESKTOP = Object.freeze({ width: 1280, height: 900 });
export const PHONE = Object.freeze({ width: 375, height: 812 });

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

const START_TIMEOUT_MS = 120_000;

/** A free TCP port on 127.0.0.1 (bind to port 0, read the port, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function binaryPath() {
  const bin = process.env.REPEATRX_BIN
    ? path.resolve(process.env.REPEATRX_BIN)
    : path.resolve(E2E_DIR, '..', 'target', 'debug', 'repeatrx');
  if (!fs.existsSync(bin)) {
    throw new Error(`the repeatrx binary is missing at ${bin}: run \`cargo build -p repeatrx\` first (or set REPEATRX_BIN)`);
  }
  return bin;
}

/**
 * Starts `repeatrx demo` on a free port with a fresh data folder and waits (up to 120 s: the first
 * start hashes passwords and seeds data) for its "running at" line.
 * @returns {Promise<{url: string, dataDir: string, output: () => string, stop: () => Promise<void>}>}
 */
export async function startServer(extraArgs = []) {
  try {
    return await startServerOnce(extraArgs);
  } catch (e) {
    // The free port can be taken between finding it and binding it: try once more on another.
    if (/already in use|address in use/i.test(e.message)) return startServerOnce(extraArgs);
    throw e;
  }
}

async function startServerOnce(extraArgs) {
  const bin = binaryPath();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'repeatrx-e2e-'));
  const port = await freePort();
  // REPEATRX_TEST_DATABASE=postgres runs the demo on a fresh PostgreSQL database (the binary
  // creates it) on the server of REPEATRX_TEST_POSTGRES, so the browser tests cover both engines.
  const database = [];
  if (process.env.REPEATRX_TEST_DATABASE === 'postgres') {
    const server = process.env.REPEATRX_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432/postgres';
    const name = `repeatrx_e2e_${crypto.randomUUID().replaceAll('-', '')}`;
    database.push('--database-url', server.replace(/\/[^/]*$/, `/${name}`));
  }
  const child = spawn(bin, ['demo', '--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, ...database, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, REPEATRX_LOG: process.env.REPEATRX_LOG ?? 'warn' },
  });
  let log = '';
  const keep = (chunk) => {
    const s = chunk.toString();
    log = (log + s).slice(-64_000);
    if (process.env.E2E_SERVER_LOG) process.stderr.write(s);
  };
  child.stderr.on('data', keep);

  let stopped = false;
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  // Never leave a server or its data behind, even if the test process ends abruptly.
  const onExit = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  const stop = async () => {
    if (!stopped) {
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
    }
    fs.rmSync(dataDir, { recursive: true, force: true });
    process.removeListener('exit', onExit);
  };

  const expected = new RegExp(`RepeatRx demo running at (https://127\\.0\\.0\\.1:${port})\\s*$`, 'm');
  try {
    const url = await new Promise((resolve, reject) => {
      let out = '';
      const timer = setTimeout(
        () => reject(new Error(`repeatrx demo did not start within ${START_TIMEOUT_MS / 1000} s`)),
        START_TIMEOUT_MS,
      );
      child.stdout.on('data', (chunk) => {
        keep(chunk);
        out += chunk.toString();
        const m = out.match(expected);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`repeatrx demo exited (code ${code}, signal ${signal}) before it was ready`));
      });
    });
    return { url, dataDir, output: () => log, stop };
  } catch (e) {
    await stop();
    e.message += `\n--- server output ---\n${log}`;
    throw e;
  }
}

/** Launches Debian's headless Chromium. */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) {
    throw new Error(`Chromium is missing at ${executablePath}: apt-get install -y chromium`);
  }
  return chromium.launch({ executablePath, args: CHROMIUM_ARGS, headless: true });
}

/**
 * A page in a new browser context. By default the context bypasses the Content-Security-Policy,
 * so that axe-core can be injected; pass `{ bypassCSP: false }` to see the page exactly as a
 * person's browser would. A dialog (the `data-confirm` prompts) is accepted unless
 * `{ acceptDialogs: false }`.
 */
export async function newPage(browser, { viewport = DESKTOP, bypassCSP = true, acceptDialogs = true } = {}) {
  const context = await browser.newContext({
    viewport,
    bypassCSP,
    ignoreHTTPSErrors: true,
    locale: 'en-GB',
    timezoneId: 'Europe/London',
  });
  context.setDefaultTimeout(15_000);
  context.setDefaultNavigationTimeout(30_000);
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (d) => {
    page.dialogs.push(d.message());
    if (acceptDialogs) await d.accept();
    else await d.dismiss();
  });
  return page;
}

/** A page the size of a phone (375 x 812). */
export function newPhonePage(browser, options = {}) {
  return newPage(browser, { ...options, viewport: PHONE });
}

/** The authenticator secret every demo staff account shares (demo databases only). */
export const DEMO_TOTP_SECRET = 'OJSXAZLBORZHQLLEMVWW6LLUN52HAIJB';

/** Authenticator secrets of accounts enrolled during the run, by email. */
const enrolledSecrets = new Map();
/** The last TOTP step whose code each account used: a code works once. */
const usedSteps = new Map();

/** Remembers the secret an account enrolled with, so later sign-ins can answer its codes. */
export function rememberSecret(email, secret) {
  enrolledSecrets.set(email, secret.replace(/\s+/g, ''));
}

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) for a step. */
export function totpAt(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = crypto.createHmac('sha1', base32Decode(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

/**
 * A code the account has not used yet: this step's, else the next step's (the server accepts one
 * step of skew), else it waits for the next step.
 */
export async function nextCode(email, secret = enrolledSecrets.get(email) ?? DEMO_TOTP_SECRET) {
  for (;;) {
    const now = Date.now() / 1000;
    const step = Math.floor(now / 30);
    const candidate = Math.max(step, (usedSteps.get(email) ?? -1) + 1);
    if (candidate <= step + 1) {
      usedSteps.set(email, candidate);
      return totpAt(secret, candidate);
    }
    await new Promise((r) => setTimeout(r, (30 - (now % 30)) * 1000 + 200));
  }
}

/**
 * Signs in through the sign-in form and waits to leave it; staff accounts then answer the
 * security-code page with their authenticator code.
 */
export async function signIn(page, url, email, password = PASSWORD) {
  await page.goto(`${url}/sign-in`);
  await page.locator('#email').fill(email);
  await page.locator('#password').fill(password);
  await Promise.all([
    page.waitForURL((u) => u.pathname !== '/sign-in', { waitUntil: 'load' }),
    page.getByRole('button', { name: 'Sign in', exact: true }).click(),
  ]);
  if (new URL(page.url()).pathname === '/sign-in/code') {
    await page.locator('#code').fill(await nextCode(email));
    await Promise.all([
      page.waitForURL((u) => !u.pathname.startsWith('/sign-in'), { waitUntil: 'load' }),
      page.getByRole('button', { name: 'Continue', exact: true }).click(),
    ]);
  }
}

/** Signs out with the header's button. */
export async function signOut(page) {
  await Promise.all([
    page.waitForURL((u) => u.pathname.startsWith('/sign-in')),
    page.getByRole('button', { name: 'Sign out' }).click(),
  ]);
}

let axeSource;
function axeScript() {
  axeSource ??= fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
  return axeSource;
}

const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22a', 'wcag22aa'];

/** Readable lines for axe violations. */
export function formatViolations(violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes
        .slice(0, 5)
        .map((n) => `    at ${n.target.join(' ')}\n      ${n.html.slice(0, 200)}\n      ${(n.failureSummary || '').replace(/\n/g, '\n      ')}`)
        .join('\n');
      const more = v.nodes.length > 5 ? `\n    … and ${v.nodes.length - 5} more` : '';
      return `  [${v.impact}] ${v.id}: ${v.help}\n    ${v.helpUrl}\n${nodes}${more}`;
    })
    .join('\n');
}

/**
 * Runs axe-core (WCAG 2.0, 2.1, 2.2 at A and AA) on the page and fails on any serious or critical
 * violation. Needs a context made with bypassCSP (the default of newPage). Minor and moderate
 * findings are printed, not failed on.
 */
export async function checkA11y(page, name) {
  const already = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!already) await page.addScriptTag({ content: axeScript() });
  const results = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
    WCAG_TAGS,
  );
  const blocking = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const other = results.violations.filter((v) => !blocking.includes(v));
  if (other.length) {
    console.log(`# axe (${name}, ${page.url()}): ${other.length} minor/moderate finding(s)\n${formatViolations(other)}`);
  }
  assert.equal(
    blocking.length,
    0,
    `accessibility: ${blocking.length} serious/critical WCAG violation(s) on "${name}" (${page.url()}):\n${formatViolations(blocking)}`,
  );
  return results;
}

/** Saves a full-page screenshot to e2e/test-output/screenshots/NAME.png and returns its path. */
export async function shot(page, name) {
  fs.mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Checks a page as a person would see it: accessibility, then a screenshot. */
export async function checkPage(page, name) {
  await shot(page, name);
  await checkA11y(page, name);
}

/** The main element's text, whitespace collapsed. */
export async function mainText(page) {
  const t = await page.locator('main').innerText();
  return t.replace(/\s+/g, ' ');
}

/**
 * Clicks a button that submits a form and waits until the page it leads to has loaded (forms post
 * and are redirected, or the page is shown again with errors). Returns the response status of the
 * final page.
 */
export async function submit(page, locator) {
  const [resp] = await Promise.all([
    page.waitForResponse(
      (r) =>
        r.request().isNavigationRequest() &&
        r.request().frame() === page.mainFrame() &&
        !(r.status() >= 300 && r.status() < 400),
    ),
    locator.click(),
  ]);
  await page.waitForLoadState('load');
  return resp.status();
}

/**
 * One server and one browser for a test file: call in the file's top level;
 * `env.url`, `env.browser` are set in `before`, torn down in `after`.
 */
export function useServer({ before, after }, { args = () => [] } = {}) {
  const env = { url: '', browser: null, server: null };
  before(async () => {
    env.server = await startServer(await args());
    env.url = env.server.url;
    env.browser = await launchBrowser();
  });
  after(async () => {
    if (env.browser) await env.browser.close().catch(() => {});
    if (env.server) await env.server.stop();
  });
  return env;
}

/**
 * `useServer` for a demo that sends its emails to a real SMTP sink: `mail.sink` is the sink
 * (set in `before`), `extraArgs` more demo flags.
 */
export function useServerWithMail(hooks, extraArgs = []) {
  const mail = { sink: null };
  const env = useServer(hooks, {
    args: async () => {
      mail.sink = await startSmtpSink();
      return ['--smtp', `127.0.0.1:${mail.sink.port}`, ...extraArgs];
    },
  });
  hooks.after(async () => {
    if (mail.sink) await mail.sink.close();
  });
  return { env, mail };
}

/**
 * A real SMTP server on a free loopback port that keeps every message it receives (the demo's
 * `--smtp` sends there). `waitFor` resolves with the first parsed message matching a predicate.
 * @returns {Promise<{port: number, messages: object[], waitFor: (pred: (m: object) => boolean, ms?: number) => Promise<object>, close: () => Promise<void>}>}
 */
export async function startSmtpSink() {
  const { SMTPServer } = await import('smtp-server');
  const { simpleParser } = await import('mailparser');
  const messages = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, _session, callback) {
      simpleParser(stream)
        .then((mail) => {
          messages.push({ to: mail.to?.text ?? '', subject: mail.subject ?? '', text: mail.text ?? '' });
          callback();
        })
        .catch(callback);
    },
  });
  const port = await freePort();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const waitFor = async (pred, ms = 30_000) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const found = messages.find(pred);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`no matching email within ${ms / 1000} s; received: ${messages.map((m) => `${m.to}: ${m.subject}`).join('; ')}`);
  };
  return { port, messages, waitFor, close: () => new Promise((r) => server.close(r)) };
}
