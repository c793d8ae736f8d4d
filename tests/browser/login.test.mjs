// The login page and the sandbox phone, end to end in headless Chromium against the real
// server binary: what a newcomer sees after `cargo run`. Each test has its own server
// and database; screenshots of every step land in test-artifacts/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer, launchBrowser, openPage, assertNoProblems, shot, readQr, tickets, registerViaApi,
} from './harness.mjs';

const PHONE_VIEWPORT = { width: 460, height: 760 };
const STEP_TIMEOUT = 15000;

let chrome;
before(async () => {
  chrome = await launchBrowser();
});
after(async () => {
  await chrome?.close();
});

/** A server and a browser context for one test, both torn down after it. */
async function session(env, viewport, body) {
  const server = await startServer(env);
  const context = await chrome.browser.newContext({ viewport, locale: 'zh-CN' });
  context.setDefaultTimeout(STEP_TIMEOUT);
  try {
    await body(server, context);
  } catch (e) {
    e.message += `\n--- server log (tail) ---\n${server.log().slice(-4000)}`;
    throw e;
  } finally {
    await context.close();
    await server.stop();
  }
}

/** Records every state the login page shows (`<body data-state>`), in order. */
async function recordStates(page) {
  await page.evaluate(() => {
    window.seenStates = [document.body.getAttribute('data-state')];
    new MutationObserver(() => window.seenStates.push(document.body.getAttribute('data-state')))
      .observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
  });
}

/** Waits until the login page shows the QR code, and returns what the code says. */
async function visibleQr(page, selector) {
  await page.locator('#view-qr').waitFor({ state: 'visible' });
  const qr = page.locator(selector);
  await qr.waitFor({ state: 'visible' });
  const box = await qr.boundingBox();
  assert.ok(box.width >= 150 && box.height >= 150, `the QR picture is too small to scan: ${JSON.stringify(box)}`);
  const text = await readQr(page, selector);
  assert.ok(text, 'the QR picture decodes');
  return text;
}

/**
 * Turns to `page`, as a person turns from one device to the other (a tab left in the
 * background gets no animation frames, so clicks there would wait for them).
 */
async function lookAt(page) {
  await page.bringToFront();
  return page;
}

/** "Scans" the ticket whose URL is `qrText` on the sandbox phone page. */
async function scanOnPhone(phone, qrText, openid, { subscribed }) {
  await lookAt(phone);
  await phone.locator(`#tickets input[data-url="${qrText}"]`).check();
  await phone.fill('#openid', openid);
  await phone.check(subscribed ? '#as-follower' : '#as-new');
  await phone.click('#scan');
  await phone.locator('#scan-result.ok').waitFor();
  return (await phone.locator('#scan-result').textContent()).trim();
}

/** Polls `check` until it holds (or fails the test after STEP_TIMEOUT). */
async function until(check, what) {
  const end = Date.now() + STEP_TIMEOUT;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((ok) => setTimeout(ok, 100));
  }
}

async function metric(server, name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

test('a new user scans on the sandbox phone, binds a phone number with the SMS code and is logged in', async () => {
  await session({}, PHONE_VIEWPORT, async (server, context) => {
    const page = await openPage(context, `${server.url}/`);
    const qrText = await visibleQr(page, '#qr-img');
    const live = await tickets(server);
    assert.deepEqual(live.map((t) => t.url), [qrText], 'the page shows the one live ticket');
    await shot(page, 'a1-login-qr', 'login-qr');
    assert.equal(await page.getAttribute('body', 'data-transport'), 'events', 'the page listens to the event stream');

    const phone = await openPage(context, `${server.url}/_sandbox/`);
    const reply = await scanOnPhone(phone, qrText, 'o_alice', { subscribed: false });
    assert.match(reply, /绑定手机号/, 'the account answers a new follower with the bind-phone reply');
    await shot(phone, 'a2-sandbox-scanned', 'sandbox-phone');
    await lookAt(page);

    // The login page moves to the phone step by itself, focus in the number field.
    await page.locator('#view-phone').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'phone');
    await page.keyboard.type('138 0013 8000');
    await page.keyboard.press('Enter');
    await page.locator('#code:enabled').waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), 'code');
    const send = page.locator('#send-code');
    assert.ok(await send.isDisabled(), 'no second code during the resend countdown');
    assert.match(await send.textContent(), /Resend in \d+ s/);
    await shot(page, 'a3-login-phone', 'login-phone');

    // The code arrives in the sandbox phone's SMS outbox.
    await lookAt(phone);
    await phone.fill('#sms-phone', '13800138000');
    await phone.click('#sms-show');
    const code = (await phone.locator('.sms-code').first().textContent()).trim();
    assert.match(code, /^[0-9]{6}$/);
    await shot(phone, 'a4-sandbox-sms');

    // A wrong code first: the page says how many tries are left.
    await lookAt(page);
    const wrong = String((Number(code) + 1) % 1000000).padStart(6, '0');
    await page.fill('#code', wrong);
    await page.keyboard.press('Enter');
    await page.locator('#code-msg', { hasText: '4 attempts left' }).waitFor();
    assert.equal(await page.getAttribute('#code', 'aria-invalid'), 'true');
    await shot(page, 'a5-login-wrong-code');

    await page.fill('#code', code);
    await page.keyboard.press('Enter');
    await page.locator('#view-done').waitFor({ state: 'visible' });
    assert.match(await page.locator('#done-who').textContent(), /Logged in as 138\*\*\*\*8000/);
    await shot(page, 'a6-login-done', 'login-done');

    // Logging out revokes the token and offers a new code.
    const token = await page.evaluate(() => sessionStorage.getItem('scanlogin.token'));
    assert.ok(token, 'the token is kept for this tab');
    await page.click('#logout');
    await visibleQr(page, '#qr-img');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('scanlogin.token')), null);
    const me = await server.json('/api/v1/me', { headers: { authorization: `Bearer ${token}` } });
    assert.equal(me.status, 401, 'the token is refused after logout');
    assertNoProblems(page);
    assertNoProblems(phone);
  });
});

test('a returning user logs in by scanning alone (QR drawn in the browser)', async () => {
  await session({}, PHONE_VIEWPORT, async (server, context) => {
    await registerViaApi(server, 'o_bob', '13900139000');
    const page = await openPage(context, `${server.url}/?image=false`);
    await recordStates(page);
    const qrText = await visibleQr(page, '#qr-canvas');
    assert.ok(await page.locator('#qr-img').isHidden(), 'no server picture was asked for');
    assert.ok((await tickets(server)).some((t) => t.url === qrText), 'the drawn code is a live ticket');
    await shot(page, 'b1-login-qr-drawn');

    const phone = await openPage(context, `${server.url}/_sandbox/`);
    const reply = await scanOnPhone(phone, qrText, 'o_bob', { subscribed: true });
    assert.match(reply, /登录成功/);
    await lookAt(page);

    await page.locator('#view-done').waitFor({ state: 'visible' });
    assert.match(await page.locator('#done-who').textContent(), /Logged in as 139\*\*\*\*9000/);
    await shot(page, 'b2-login-done-returning');
    const states = await page.evaluate(() => window.seenStates);
    assert.ok(!states.includes('phone'), `no phone step for a known user: ${states}`);

    // A reload keeps the tab logged in (the token is in sessionStorage).
    await page.reload();
    await page.locator('#view-done').waitFor({ state: 'visible' });
    assertNoProblems(page);
    assertNoProblems(phone);
  });
});

/**
 * A returning user's scan-to-login on a page that cannot use the event stream: it must
 * fall back to long polling (`<body data-transport="poll">`) and still log in.
 */
async function loginByLongPoll(server, context, openid, phoneNumber) {
  await registerViaApi(server, openid, phoneNumber);
  const page = await openPage(context, `${server.url}/`);
  const qrText = await visibleQr(page, '#qr-img');
  await until(async () => (await page.getAttribute('body', 'data-transport')) === 'poll', 'the long-poll fallback');
  const phone = await openPage(context, `${server.url}/_sandbox/`);
  assert.match(await scanOnPhone(phone, qrText, openid, { subscribed: true }), /登录成功/);
  await lookAt(page);
  await page.locator('#view-done').waitFor({ state: 'visible' });
  assert.equal(await page.getAttribute('body', 'data-transport'), 'poll');
  assertNoProblems(page);
  assertNoProblems(phone);
  return page;
}

test('without EventSource the page falls back to long polling and still logs in', async () => {
  await session({}, PHONE_VIEWPORT, async (server, context) => {
    // As in a browser that has no EventSource at all.
    await context.addInitScript(() => {
      delete window.EventSource;
    });
    const page = await loginByLongPoll(server, context, 'o_carol', '13700137000');
    assert.equal(await page.evaluate(() => typeof window.EventSource), 'undefined');
  });
});

test('a refused event stream makes the page fall back to long polling', async () => {
  // No held polls or streams for any address: the stream answers 429, polls answer at once.
  await session({ SCANLOGIN__LIMITS__LONG_POLLS_PER_IP: '0' }, PHONE_VIEWPORT, async (server, context) => {
    const page = await loginByLongPoll(server, context, 'o_dave', '13600136000');
    assert.equal(await page.evaluate(() => typeof window.EventSource), 'function');
    assert.ok((await metric(server, 'scanlogin_limits_hit_total{kind="long_polls_per_ip"}')) >= 1, 'the stream was refused');
  });
});

test('an expired QR code is replaced once by itself, then the page offers a refresh', async () => {
  await session({ SCANLOGIN__LOGIN__QR_TTL_SECS: '3' }, PHONE_VIEWPORT, async (server, context) => {
    const page = await openPage(context, `${server.url}/`);
    const first = await visibleQr(page, '#qr-img');
    await recordStates(page);
    const ttl = Number((await page.locator('#qr-ttl').textContent()).match(/Expires in (\d+) s/)[1]);
    assert.ok(ttl >= 0 && ttl <= 3, `the countdown starts from the server's expires_in: ${ttl}`);

    await page.locator('#view-expired').waitFor({ state: 'visible' });
    assert.equal(await metric(server, 'scanlogin_attempts_created_total'), 2, 'exactly one automatic refresh');
    const states = await page.evaluate(() => window.seenStates.filter((s, i, all) => s !== all[i - 1]));
    assert.deepEqual(states, ['qr', 'loading', 'qr', 'expired']);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'expired-title');
    await shot(page, 'c1-login-expired', 'login-expired');

    // The refresh button is reachable by keyboard and brings a new, different code.
    await page.focus('#refresh');
    await page.keyboard.press('Enter');
    const fresh = await visibleQr(page, '#qr-img');
    assert.notEqual(fresh, first);
    assert.equal(await metric(server, 'scanlogin_attempts_created_total'), 3);
    await shot(page, 'c2-login-refreshed');
    assertNoProblems(page);
  });
});

test('the TV layout shows a big code and sends a new user to the phone page', async () => {
  await session({}, { width: 1280, height: 800 }, async (server, context) => {
    const page = await openPage(context, `${server.url}/?layout=tv`);
    const qrText = await visibleQr(page, '#qr-img');
    const box = await page.locator('#qr-img').boundingBox();
    assert.ok(box.width >= 400, `the TV code is big: ${box.width}px`);
    assert.ok(box.y + box.height <= 800, 'the TV code fits the screen');
    await shot(page, 'd1-tv-qr', 'login-tv');

    const phone = await openPage(context, `${server.url}/_sandbox/`);
    await scanOnPhone(phone, qrText, 'o_carol', { subscribed: false });
    await lookAt(page);
    await page.locator('#view-tv-new').waitFor({ state: 'visible' });
    assert.ok(await page.locator('#phone').isHidden(), 'no phone form on a TV');
    assert.equal(await readQr(page, '#tv-page-qr'), `${server.url}/`, 'the TV shows the page address as a code');
    await shot(page, 'd2-tv-new-user');

    await page.click('#tv-again');
    assert.notEqual(await visibleQr(page, '#qr-img'), qrText);
    assertNoProblems(page);
  });
});

test('the phone step shows phone_taken and rate_limited', async () => {
  await session({ SCANLOGIN__LIMITS__SMS_RESEND_SECS: '1' }, PHONE_VIEWPORT, async (server, context) => {
    await registerViaApi(server, 'o_dave', '13700137000');
    // Registering sent this phone a code; the server allows one code per phone per
    // SMS_RESEND_SECS (1 s here) across attempts, so let that window pass first.
    await new Promise((ok) => setTimeout(ok, 1100));
    const page = await openPage(context, `${server.url}/`);
    const qrText = await visibleQr(page, '#qr-img');
    const phone = await openPage(context, `${server.url}/_sandbox/`);
    await scanOnPhone(phone, qrText, 'o_erin', { subscribed: false });
    await lookAt(page);
    await page.locator('#view-phone').waitFor({ state: 'visible' });

    // Three codes per attempt; the fourth request is refused and the page says so.
    await page.fill('#phone', '13700137000');
    const outbox = async () => (await server.json('/_sandbox/sms?phone=13700137000')).body.messages;
    const before = (await outbox()).length;
    for (let i = 1; i <= 3; i++) {
      await page.locator('#send-code:enabled').click();
      await until(async () => (await outbox()).length === before + i, `code ${i} sent`);
    }
    await page.locator('#send-code:enabled').click();
    await page.locator('#phone-msg', { hasText: 'Too many requests' }).waitFor();
    await shot(page, 'e1-login-rate-limited');

    // Dave's number already belongs to Dave's WeChat user: Erin cannot take it.
    await page.fill('#code', (await outbox()).at(-1).code);
    await page.click('#bind');
    await page.locator('#code-msg', { hasText: 'bound to another WeChat user' }).waitFor();
    await shot(page, 'e2-login-phone-taken');
    assertNoProblems(page);
  });
});

test('the sandbox phone on a 1440×900 screen keeps its controls in view and marks the codes it scanned', async () => {
  await session({}, { width: 1440, height: 900 }, async (server, context) => {
    // Several live codes, as after a few visits to the login page.
    for (let i = 0; i < 6; i++) {
      const made = await server.post('/api/v1/login/qrcode', { image: false });
      assert.equal(made.status, 200);
    }
    const phone = await openPage(context, `${server.url}/_sandbox/`);
    await phone.locator('#tickets li').nth(5).waitFor();
    for (const id of ['#openid', '#scan', '#sms-phone', '#sms-show']) {
      const box = await phone.locator(id).boundingBox();
      assert.ok(box && box.y >= 0 && box.y + box.height <= 900, `${id} is above the fold: ${JSON.stringify(box)}`);
    }
    await shot(phone, 'f1-sandbox-wide');

    // The newest code is chosen by itself; once scanned it is marked, and only it.
    const chosen = await phone.locator('#tickets input:checked').getAttribute('value');
    await phone.fill('#openid', 'o_wide');
    await phone.click('#scan');
    await phone.locator('#scan-result.ok').waitFor();
    const item = phone.locator('#tickets li', { has: phone.locator(`input[value="${chosen}"]`) });
    await item.locator('.ticket-badge', { hasText: 'scanned' }).waitFor();
    assert.equal(await phone.locator('#tickets li.scanned').count(), 1);
    await shot(phone, 'f2-sandbox-scanned');

    // The server counts the scans: a fresh page knows too, and offers an unused code.
    const again = await openPage(context, `${server.url}/_sandbox/`);
    await again.locator('#tickets li.scanned').waitFor();
    assert.notEqual(await again.locator('#tickets input:checked').getAttribute('value'), chosen);
    assertNoProblems(phone);
    assertNoProblems(again);
  });
});
