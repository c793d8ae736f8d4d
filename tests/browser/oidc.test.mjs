// The OpenID Connect provider's login page in headless Chromium: a relying party sends
// the browser to /oidc/authorize, the page shows the attempt's QR code (drawn in the
// browser), the sandbox phone scans it, the new user binds a phone number, and the page
// itself goes on to the continue URL, which sends the browser back to the relying party
// with a code — no token ever reaches the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { startServer, launchBrowser, openPage, assertNoProblems, shot, readQr, tickets } from './harness.mjs';

const STEP_TIMEOUT = 15000;

let chrome;
before(async () => {
  chrome = await launchBrowser();
});
after(async () => {
  await chrome?.close();
});

/** The relying party's callback: a real HTTP server on a free port. */
async function relyingParty() {
  const srv = createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>rp</title><p>relying party</p>');
  });
  await new Promise((ok) => srv.listen(0, '127.0.0.1', ok));
  return { callback: `http://127.0.0.1:${srv.address().port}/callback`, close: () => srv.close() };
}

test('authorize → scan → phone bind → back to the relying party with a code', async () => {
  const rp = await relyingParty();
  const CALLBACK = rp.callback;
  // The shipped demo client, registered for this test's relying party.
  const server = await startServer({ SCANLOGIN__OIDC__CLIENTS__0__REDIRECT_URIS: JSON.stringify([CALLBACK]) });
  const context = await chrome.browser.newContext({ viewport: { width: 460, height: 760 }, locale: 'zh-CN' });
  context.setDefaultTimeout(STEP_TIMEOUT);
  try {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const authorize = new URL(`${server.url}/oidc/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code', client_id: 'demo', redirect_uri: CALLBACK, scope: 'openid phone',
      state: 'st-browser', nonce: 'n-browser', code_challenge: challenge, code_challenge_method: 'S256',
    })) authorize.searchParams.set(k, v);
    const page = await openPage(context, authorize.toString());
    await page.locator('#view-qr').waitFor({ state: 'visible' });
    const qrText = await readQr(page, '#qr-canvas');
    assert.ok(qrText, 'the QR code drawn in the browser decodes');
    assert.ok(await page.locator('#link-layout').isHidden(), 'no link leaves the relying party\'s flow');
    await shot(page, 'o1-provider-qr');

    // The sandbox plays the phone: the ticket of the code the page shows, a new follower.
    const ticket = (await tickets(server)).find((t) => t.url === qrText).ticket;
    const scanned = await server.post('/_sandbox/scan', { ticket, openid: 'o_browser_oidc', subscribed: false });
    assert.equal(scanned.status, 200);

    await page.locator('#view-phone').waitFor({ state: 'visible' });
    await page.fill('#phone', '13800138077');
    await page.keyboard.press('Enter');
    await page.locator('#code:enabled').waitFor();
    const { body: outbox } = await server.json('/_sandbox/sms?phone=13800138077');
    const code = outbox.messages.at(-1).code;
    await page.fill('#code', code);
    const back = page.waitForURL((u) => u.toString().startsWith(CALLBACK));
    await page.keyboard.press('Enter');
    await back;
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('state'), 'st-browser');
    assert.equal(url.searchParams.get('iss'), server.url);
    assert.match(url.searchParams.get('code'), /^[A-Za-z0-9_-]{43}$/);
    await shot(page, 'o2-provider-back-at-rp');

    // The code is good at the token endpoint (a public client with its verifier).
    const res = await fetch(`${server.url}/oidc/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code: url.searchParams.get('code'), redirect_uri: CALLBACK,
        client_id: 'demo', code_verifier: verifier,
      }),
    });
    const tokens = await res.json();
    assert.equal(res.status, 200, JSON.stringify(tokens));
    assert.ok(tokens.id_token && tokens.access_token);
    assertNoProblems(page);
  } catch (e) {
    e.message += `\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
    throw e;
  } finally {
    await context.close();
    await server.stop();
    rp.close();
  }
});
