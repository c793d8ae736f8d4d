// Test harness for the browser tests: the real scanlogin binary on a free loopback port
// with its own SQLite file, Debian's Chromium driven headless by playwright-core, and
// screenshots saved as test artifacts.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import jsQR from 'jsqr';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = process.env.SCANLOGIN_BIN || join(process.env.CARGO_TARGET_DIR || join(REPO, 'target'), 'debug/scanlogin');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = join(REPO, 'test-artifacts/browser');
/** With UPDATE_DOCS_SCREENSHOTS=1 the README's screenshots under docs/ are rewritten. */
const DOCS = process.env.UPDATE_DOCS_SCREENSHOTS === '1' ? join(REPO, 'docs/screenshots') : null;

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/**
 * Starts `scanlogin serve` with the shipped config plus `env` overrides
 * (SCANLOGIN__SECTION__KEY). Resolves once /healthz answers.
 */
export async function startServer(env = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'scanlogin-browser-'));
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ['serve', '--config', join(REPO, 'config/default.toml')], {
    cwd: dir,
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || 'warn',
      SCANLOGIN__SERVER__BIND: `127.0.0.1:${port}`,
      SCANLOGIN__SERVER__PUBLIC_URL: url,
      SCANLOGIN__SERVER__WORKERS: '2',
      SCANLOGIN__STORAGE__DATABASE_URL: `sqlite://${dir}/test.db?mode=rwc`,
      ...env,
    },
    stdio: ['ignore', 'inherit', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => {
    log = (log + d).slice(-20000);
  });
  const exited = new Promise((ok) => child.once('exit', (code) => ok(code)));
  const deadline = Date.now() + 30000;
  for (;;) {
    const code = await Promise.race([exited, new Promise((ok) => setTimeout(() => ok(undefined), 100))]);
    if (code !== undefined) throw new Error(`scanlogin exited with ${code} before it was ready:\n${log}`);
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`scanlogin did not become ready in 30 s:\n${log}`);
    }
  }
  return {
    url,
    log: () => log,
    async stop() {
      // Held long polls would keep a graceful stop waiting for its full timeout; the
      // test is over, so a short grace is enough.
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 1000);
      await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
    async json(path, init) {
      const res = await fetch(url + path, init);
      return { status: res.status, body: await res.json().catch(() => null) };
    },
    post(path, body) {
      return this.json(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    },
  };
}

/**
 * Debian's Chromium, headless, with the flags this machine and CI need. playwright-core
 * gives every launch a fresh temporary profile (user-data-dir) and removes it at close.
 */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return {
    browser,
    close: () => browser.close(),
  };
}

/**
 * A new page that fails the test on any script error or CSP violation: the pages must
 * work under their own Content-Security-Policy.
 */
export async function openPage(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // An error answer the page handles (a 4xx, or a refused event stream) is not a problem.
    if (m.type() === 'error' && !/status (of )?4\d\d/.test(m.text())) problems.push(`console error: ${m.text()}`);
  });
  page.problems = problems;
  await page.goto(url);
  return page;
}

export function assertNoProblems(page) {
  if (page.problems.length) throw new Error(page.problems.join('\n'));
}

/** Saves a screenshot under test-artifacts/browser/ (and docs/ when asked to). */
export async function shot(page, name, docsName) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  if (DOCS && docsName) {
    mkdirSync(DOCS, { recursive: true });
    copyFileSync(file, join(DOCS, `${docsName}.png`));
  }
  return file;
}

/**
 * Decodes the QR code shown by `selector` (an <img> or a <canvas>) from its pixels,
 * as a phone camera would: proves the picture is a real, readable QR code.
 */
export async function readQr(page, selector) {
  const { width, height, rgba } = await page.$eval(selector, (el) => {
    const w = el.naturalWidth || el.width;
    const h = el.naturalHeight || el.height;
    const c = document.createElement('canvas');
    c.width = w;
    c.height = h;
    const ctx = c.getContext('2d');
    ctx.drawImage(el, 0, 0);
    // One base64 string: the protocol carries it far faster than an array of numbers.
    const bytes = ctx.getImageData(0, 0, w, h).data;
    let bin = '';
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return { width: w, height: h, rgba: btoa(bin) };
  });
  const found = jsQR(new Uint8ClampedArray(Buffer.from(rgba, 'base64')), width, height);
  return found ? found.data : null;
}

/** The live sandbox tickets (newest first). */
export async function tickets(server) {
  return (await server.json('/_sandbox/tickets')).body.tickets;
}

/** Registers `openid` with `phone` through the API alone (no browser). */
export async function registerViaApi(server, openid, phone) {
  const qr = (await server.post('/api/v1/login/qrcode', { image: false })).body;
  const ticket = new URL(qr.qr_image_url).searchParams.get('ticket');
  await server.post('/_sandbox/scan', { ticket, openid, subscribed: false });
  await server.post('/api/v1/login/sms-code', { uuid: qr.uuid, phone });
  const outbox = (await server.json(`/_sandbox/sms?phone=${phone}`)).body.messages;
  const bound = await server.post('/api/v1/login/bind-phone', { uuid: qr.uuid, phone, code: outbox.at(-1).code });
  if (bound.status !== 200) throw new Error(`registration failed: ${JSON.stringify(bound.body)}`);
  return bound.body;
}

/**
 * Runs `body(server, ...contexts)` with a server started with `env` and one browser
 * context of `chrome` per viewport (zh-CN; `phone: true` for a mobile one); a failure
 * carries the tail of the server's log. Everything is closed afterwards.
 */
export async function withServer(chrome, env, viewports, body, stepTimeout = 15000) {
  const server = await startServer(env);
  const contexts = [];
  try {
    for (const v of viewports) {
      const c = await chrome.browser.newContext({ viewport: { width: v.width, height: v.height }, locale: 'zh-CN', isMobile: !!v.phone });
      c.setDefaultTimeout(stepTimeout);
      contexts.push(c);
    }
    await body(server, ...contexts);
  } catch (e) {
    e.message += `\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
    throw e;
  } finally {
    for (const c of contexts) await c.close();
    await server.stop();
  }
}
