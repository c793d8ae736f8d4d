// Confirm on the phone in headless Chromium against the real server binary, with
// `confirm = "always"`: the login page in `scanned`, the confirm page opened from the
// scan's reply with its two buttons clicked, and the login page following to logged in,
// or to "denied". Screenshots land in test-artifacts/browser/ (and, with
// UPDATE_DOCS_SCREENSHOTS=1, in docs/screenshots/ for the README).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, openPage, assertNoProblems, shot, tickets, readQr } from './harness.mjs';

const DESKTOP = { width: 900, height: 760 };
const PHONE = { width: 390, height: 720 };
const STEP_TIMEOUT = 15000;
const CONFIRM = { SCANLOGIN__WECHAT__APPS__0__CONFIRM: 'always' };

let chrome;
before(async () => {
  chrome = await launchBrowser();
});
after(async () => {
  await chrome?.close();
});

/** A server asking for confirmation, a desktop browser and a phone browser, for one test. */
async function session(body) {
  const server = await startServer(CONFIRM);
  const desktop = await chrome.browser.newContext({ viewport: DESKTOP, locale: 'zh-CN' });
  const phone = await chrome.browser.newContext({ viewport: PHONE, locale: 'zh-CN', isMobile: true });
  for (const c of [desktop, phone]) c.setDefaultTimeout(STEP_TIMEOUT);
  try {
    await body(server, desktop, phone);
  } catch (e) {
    e.message += `\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
    throw e;
  } finally {
    await desktop.close();
    await phone.close();
    await server.stop();
  }
}

/** The confirm link's path in the text of a scan's reply. */
function linkIn(text) {
  const m = /\/confirm\/[A-Za-z0-9_-]+/.exec(text);
  assert.ok(m, `no confirm link in the reply: ${text}`);
  return m[0];
}

/** Scans the ticket `ticket` as `openid` on the sandbox (WeChat's push); answers the reply text. */
async function scan(server, ticket, openid) {
  const r = await server.post('/_sandbox/scan', { ticket, openid, subscribed: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.reply.content;
}

/** Registers `openid` through the API, confirming its scan with a POST of the link's form. */
async function registerConfirmed(server, openid, phone) {
  const qr = (await server.post('/api/v1/login/qrcode', { image: false })).body;
  const link = linkIn(await scan(server, new URL(qr.qr_image_url).searchParams.get('ticket'), openid));
  const decided = await fetch(server.url + link, { method: 'POST', body: new URLSearchParams({ decision: 'confirm' }) });
  assert.equal(decided.status, 200);
  await server.post('/api/v1/login/sms-code', { uuid: qr.uuid, phone });
  const outbox = (await server.json(`/_sandbox/sms?phone=${phone}`)).body.messages;
  const bound = await server.post('/api/v1/login/bind-phone', { uuid: qr.uuid, phone, code: outbox.at(-1).code });
  assert.equal(bound.status, 200, JSON.stringify(bound.body));
}

/** The QR code the login page shows, as a phone camera reads it. */
async function pageQr(page) {
  await page.locator('#qr-img').waitFor({ state: 'visible' });
  const text = await readQr(page, '#qr-img');
  assert.ok(text, 'the QR picture decodes');
  return text;
}

/** The login page's QR code, scanned as `openid`: answers the confirm link of the reply. */
async function scanThePage(server, page, openid) {
  const qrText = await pageQr(page);
  const live = (await tickets(server)).find((t) => t.url === qrText);
  assert.ok(live, 'the page shows a live ticket');
  const reply = await scan(server, live.ticket, openid);
  assert.match(reply, /Firefox|Chrome|HeadlessChrome|browser/i, reply);
  return linkIn(reply);
}

test('the person confirms on the phone and the login page follows to logged in', async () => {
  await session(async (server, desktop, phoneContext) => {
    await registerConfirmed(server, 'o_carol', '13700137000');
    const page = await openPage(desktop, `${server.url}/`);
    const link = await scanThePage(server, page, 'o_carol');
    await page.locator('#view-scanned').waitFor({ state: 'visible' });
    assert.match(await page.locator('#scanned-title').textContent(), /Scanned — confirm on your phone/);
    await shot(page, 'c1-login-scanned', 'login-scanned');

    const phone = await openPage(phoneContext, server.url + link);
    for (const id of ['#ip', '#browser', '#time']) assert.ok((await phone.locator(id).textContent()).trim().length > 0, id);
    assert.match(await phone.locator('#ip').textContent(), /127\.0\.0\.1/);
    await shot(phone, 'c2-confirm-page', 'confirm-page');
    await phone.click('#confirm');
    await phone.locator('h1', { hasText: 'Confirmed' }).waitFor();
    await shot(phone, 'c3-confirmed');

    await page.bringToFront();
    await page.locator('#view-done').waitFor({ state: 'visible' });
    assert.match(await page.locator('#done-who').textContent(), /137\*\*\*\*7000/);
    await shot(page, 'c4-login-done-confirmed');
    // The link is spent.
    await phone.goto(server.url + link);
    assert.match(await phone.locator('h1').textContent(), /no longer valid/);
    assertNoProblems(page);
  });
});

test('the person denies on the phone (opened from the sandbox phone) and the login page says so', async () => {
  await session(async (server, desktop, phoneContext) => {
    const page = await openPage(desktop, `${server.url}/`);
    const qrText = await pageQr(page);
    const sandbox = await openPage(phoneContext, `${server.url}/_sandbox/`);
    await sandbox.locator(`#tickets input[data-url="${qrText}"]`).check();
    await sandbox.fill('#openid', 'o_dave');
    await sandbox.check('#as-new');
    await sandbox.click('#scan');
    await sandbox.locator('#scan-result.ok').waitFor();
    assert.match(await sandbox.locator('#scan-result').textContent(), /登录请求 Login request/);
    // The link the reply carries, opened as the phone would (a tap on it in WeChat).
    const href = await sandbox.locator('#confirm-link').getAttribute('href');
    const phone = await openPage(phoneContext, server.url + href);
    await page.bringToFront();
    await page.locator('#view-scanned').waitFor({ state: 'visible' });
    await phone.bringToFront();
    await phone.click('#deny');
    await phone.locator('h1', { hasText: 'Denied' }).waitFor();
    await shot(phone, 'd1-denied-on-phone');
    await page.bringToFront();
    await page.locator('#view-denied').waitFor({ state: 'visible' });
    assert.match(await page.locator('#denied-title').textContent(), /Denied on the phone/);
    await shot(page, 'd2-login-denied', 'login-denied');
    // A new code on request, not by itself.
    await page.click('#denied-again');
    await page.locator('#view-qr').waitFor({ state: 'visible' });
    assertNoProblems(page);
    assertNoProblems(sandbox);
  });
});
