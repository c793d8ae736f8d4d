// Code mode in headless Chromium against the real server binary, with a subscription
// account: the login page shows the account's name and the code in large type (also in
// the TV layout), the sandbox phone sends the code as a text, and the page goes on to
// the phone step. Screenshots land in test-artifacts/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { withServer, launchBrowser, openPage, assertNoProblems, shot } from './harness.mjs';

const SUBSCRIPTION = {
  SCANLOGIN__WECHAT__APPS__0__KIND: 'subscription',
  SCANLOGIN__WECHAT__APPS__0__ACCOUNT_NAME: 'Demo 订阅号',
};

let chrome;
before(async () => {
  chrome = await launchBrowser();
});
after(async () => {
  await chrome?.close();
});

test('the page shows the code, the sandbox phone sends it, the page asks for the phone', async () => {
  const screens = [{ width: 900, height: 760 }, { width: 390, height: 720, phone: true }];
  await withServer(chrome, SUBSCRIPTION, screens, async (server, desktop, phone) => {
    const page = await openPage(desktop, `${server.url}/`);
    await page.locator('#view-code').waitFor({ state: 'visible' });
    const code = (await page.locator('#login-code').textContent()).trim();
    assert.match(code, /^[0-9]{6}$/);
    assert.equal((await page.locator('#account-name').textContent()).trim(), 'Demo 订阅号');
    const size = await page.locator('#login-code').evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    assert.ok(size >= 40, `the code is large: ${size}px`);
    await shot(page, 'k1-login-code');

    const sandbox = await openPage(phone, `${server.url}/_sandbox/`);
    await sandbox.fill('#openid', 'o_kate');
    await sandbox.fill('#text', code);
    await sandbox.click('#send-text');
    await sandbox.locator('#text-result.ok').waitFor();
    assert.match(await sandbox.locator('#text-result').textContent(), /bind your phone/);
    await shot(sandbox, 'k2-sandbox-text');

    await page.bringToFront();
    await page.locator('#view-phone').waitFor({ state: 'visible' });
    assertNoProblems(page);

    const tv = await openPage(desktop, `${server.url}/?layout=tv`);
    await tv.locator('#view-code').waitFor({ state: 'visible' });
    const tvSize = await tv.locator('#login-code').evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
    assert.ok(tvSize > size, `larger on a TV: ${tvSize}px`);
    await shot(tv, 'k3-login-code-tv');
    assertNoProblems(tv);
  });
});
