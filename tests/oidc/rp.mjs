#!/usr/bin/env node
// End-to-end relying party of scanlogin's OpenID Connect provider, written with the
// maintained library `openid-client` (v6). It plays every part against a running
// scanlogin with the sandbox on: the relying application (openid-client), the
// person's browser (plain fetch with a cookie jar of its own) and the phone (the
// sandbox's scan and SMS outbox).
//
//   node tests/oidc/rp.mjs <base_url> <client_id> <client_secret or ''> <redirect_uri> [post_logout_redirect_uri]
//
// <base_url> must be the provider's issuer (discovery checks they are equal).
// An empty <client_secret> means a public client (PKCE, `none` authentication);
// otherwise the client authenticates with client_secret_basic, or with
// client_secret_post when RP_AUTH=post.
// RP_ID_TOKEN_ALG (default RS256) is the ID token algorithm the client is
// configured with on the server (its `id_token_alg`).
//
// One line per step; the first failure prints the step and the reason and exits 1.

import * as oidc from 'openid-client';
import { randomBytes, randomInt } from 'node:crypto';

const USAGE =
  "usage: node rp.mjs <base_url> <client_id> <client_secret or ''> <redirect_uri> [post_logout_redirect_uri]";
const SCOPE = 'openid profile phone email offline_access';
const HTTP_TIMEOUT_MS = 30_000;
const POLL_DEADLINE_MS = 60_000;

const args = process.argv.slice(2);
if (args.length < 4 || args.length > 5 || !args[0] || !args[1] || !args[3]) {
  console.error(USAGE);
  process.exit(2);
}
const [baseUrl, clientId, clientSecret, redirectUri, postLogoutRedirectUri] = args;
const base = baseUrl.replace(/\/+$/, '');
const idTokenAlg = process.env.RP_ID_TOKEN_ALG || 'RS256';
const authName = clientSecret === '' ? 'none' : process.env.RP_AUTH === 'post' ? 'client_secret_post' : 'client_secret_basic';

// ---------------------------------------------------------------------------
// Steps and checks

class StepFailure extends Error {}

let currentStep = '(start)';

/** Runs one named step; prints `ok` with what it returns, or fails the whole run. */
async function step(name, fn) {
  currentStep = name;
  const detail = await fn();
  console.log(`ok    ${name}${detail ? `: ${detail}` : ''}`);
}

function check(cond, message) {
  if (!cond) throw new StepFailure(message);
}

function describeError(err) {
  if (err instanceof oidc.ResponseBodyError) {
    return `${err.status} ${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
  }
  if (err instanceof oidc.WWWAuthenticateChallengeError) {
    return `${err.status} WWW-Authenticate ${JSON.stringify(err.cause)}`;
  }
  if (err instanceof oidc.AuthorizationResponseError) {
    return `authorization response error=${err.error}${err.error_description ? ` (${err.error_description})` : ''}`;
  }
  let text = err && err.message ? err.message : String(err);
  // fetch's "fetch failed" hides the reason (ECONNREFUSED, …) in its cause.
  for (let c = err && err.cause, depth = 0; c && depth < 4; c = c.cause, depth++) {
    if (c instanceof Response) text += ` <- HTTP ${c.status} from ${c.url}`;
    else if (c.message || c.code) text += ` <- ${c.code ? `${c.code} ` : ''}${c.message || ''}`;
    else text += ` <- ${JSON.stringify(c, (k, v) => (v instanceof Uint8Array || k === 'key' ? undefined : v)).slice(0, 400)}`;
  }
  if (err && err.code && !(err instanceof StepFailure)) text += ` [${err.code}]`;
  return text;
}

/** Expects `fn` to be refused by the token endpoint with `invalid_grant`. */
async function expectInvalidGrant(fn) {
  try {
    await fn();
  } catch (err) {
    check(
      err instanceof oidc.ResponseBodyError && err.error === 'invalid_grant',
      `expected invalid_grant, got ${describeError(err)}`,
    );
    return;
  }
  throw new StepFailure('expected invalid_grant, the token endpoint answered with tokens');
}

// ---------------------------------------------------------------------------
// The browser: fetch with redirects off and a cookie jar kept here

class Browser {
  constructor(name) {
    this.name = name;
    this.cookies = new Map(); // `${hostname}\t${name}` -> value (one host in these tests)
    this.lastSetCookie = [];
  }

  header(url) {
    const host = new URL(url).hostname;
    const pairs = [];
    for (const [key, value] of this.cookies) {
      const [h, name] = key.split('\t');
      if (h === host) pairs.push(`${name}=${value}`);
    }
    return pairs.join('; ');
  }

  keep(url, res) {
    const host = new URL(url).hostname;
    this.lastSetCookie = res.headers.getSetCookie();
    for (const line of this.lastSetCookie) {
      const [pair, ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      let gone = value === '';
      for (const attr of attrs) {
        const [k, v = ''] = attr.split('=').map((s) => s.trim());
        if (k.toLowerCase() === 'max-age' && Number(v) <= 0) gone = true;
        if (k.toLowerCase() === 'expires' && Date.parse(v) <= Date.now()) gone = true;
      }
      if (gone) this.cookies.delete(`${host}\t${name}`);
      else this.cookies.set(`${host}\t${name}`, value);
    }
  }

  async get(url) {
    const headers = { accept: 'text/html,application/xhtml+xml' };
    const cookie = this.header(url);
    if (cookie) headers.cookie = cookie;
    const res = await fetch(url, { redirect: 'manual', headers, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) });
    this.keep(url, res);
    return res;
  }
}

/** The attempt the login page embeds for its script. */
function embeddedAttempt(html) {
  const m = /<script\b[^>]*\bid\s*=\s*["']scanlogin-attempt["'][^>]*>([\s\S]*?)<\/script>/i.exec(html);
  check(m, `the login page has no <script type="application/json" id="scanlogin-attempt">: ${html.slice(0, 300)}`);
  try {
    return JSON.parse(m[1]);
  } catch (err) {
    throw new StepFailure(`the embedded attempt is not JSON (${err.message}): ${m[1].slice(0, 300)}`);
  }
}

/** Opens an authorize URL that must show the login page; returns its attempt. */
async function openLoginPage(browser, url) {
  let res = await browser.get(url);
  if (res.status === 429) {
    // The authorize page counts as a QR create for the per-address limit.
    const wait = Number(res.headers.get('retry-after') || '0');
    check(wait > 0 && wait <= 70, `429 from authorize, Retry-After ${res.headers.get('retry-after')}`);
    console.log(`..    rate limited: waiting ${wait}s as Retry-After says`);
    await new Promise((r) => setTimeout(r, wait * 1000));
    res = await browser.get(url);
  }
  const body = await res.text();
  check(res.status === 200, `authorize answered ${res.status} ${res.headers.get('location') || ''} ${body.slice(0, 300)}`);
  check(/text\/html/i.test(res.headers.get('content-type') || ''), `authorize page is ${res.headers.get('content-type')}`);
  const attempt = embeddedAttempt(body);
  check(typeof attempt.uuid === 'string' && /^[A-Za-z0-9_-]{22,64}$/.test(attempt.uuid), `attempt uuid ${attempt.uuid}`);
  assertNoToken(attempt, 'the login page');
  return attempt;
}

// ---------------------------------------------------------------------------
// The JSON API and the sandbox (no Origin header: a non-browser caller)

async function api(method, path, body) {
  const init = { method, headers: { accept: 'application/json' }, signal: AbortSignal.timeout(HTTP_TIMEOUT_MS) };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text };
}

function assertNoToken(answer, where) {
  check(
    !(answer && typeof answer === 'object' && 'token' in answer),
    `${where} handed out a login token to an OIDC attempt: ${JSON.stringify(answer)}`,
  );
}

/** The phone: scans the attempt's QR code (or sends its code in code mode). */
async function playPhone(attempt, openid, subscribed) {
  if (attempt.mode === 'code') {
    check(typeof attempt.code === 'string', `code-mode attempt without a code: ${JSON.stringify(attempt)}`);
    const r = await api('POST', '/_sandbox/message', { openid, text: attempt.code });
    check(r.status === 200, `/_sandbox/message answered ${r.status} ${r.text}`);
    return `code mode, sent ${attempt.code}: ${r.text}`;
  }
  check(attempt.mode === 'qr', `attempt mode ${attempt.mode}`);
  check(typeof attempt.qr_image_url === 'string', `attempt has no qr_image_url: ${JSON.stringify(attempt)}`);
  const ticket = new URL(attempt.qr_image_url, base).searchParams.get('ticket');
  check(ticket, `no ticket in qr_image_url ${attempt.qr_image_url}`);
  const r = await api('POST', '/_sandbox/scan', { ticket, openid, subscribed });
  check(r.status === 200, `/_sandbox/scan answered ${r.status} ${r.text}`);
  return `scanned as ${openid}: ${r.text}`;
}

/** Long-polls the attempt until it leaves `loop`/`scanned`; returns that answer. */
async function pollUntilScanned(uuid) {
  const deadline = Date.now() + POLL_DEADLINE_MS;
  for (;;) {
    const r = await api('GET', `/api/v1/login/status?uuid=${encodeURIComponent(uuid)}&wait=5`);
    check(r.status === 200 && r.json, `status poll answered ${r.status} ${r.text}`);
    assertNoToken(r.json, 'the status poll');
    if (r.json.state === 'not_reg' || r.json.state === 'reg') return r.json;
    check(r.json.state === 'loop' || r.json.state === 'scanned', `status poll: ${r.text}`);
    check(Date.now() < deadline, `still ${r.json.state} after ${POLL_DEADLINE_MS / 1000}s`);
  }
}

/** The latest code the sandbox SMS outbox holds for `phone`. */
async function smsCode(phone) {
  let last;
  for (let i = 0; i < 10; i++) {
    const r = await api('GET', `/_sandbox/sms?phone=${encodeURIComponent(phone)}`);
    last = r;
    if (r.status === 200 && r.json) {
      const list = Array.isArray(r.json) ? r.json : r.json.messages || r.json.codes || [];
      const codes = list
        .map((m) => (typeof m === 'string' ? m : m && (m.code ?? m.text ?? m.body)))
        .map((s) => (typeof s === 'string' ? (/\b(\d{6})\b/.exec(s) || [])[1] : undefined))
        .filter(Boolean);
      if (codes.length) return codes[codes.length - 1];
    }
    await new Promise((res) => setTimeout(res, 500));
  }
  throw new StepFailure(`no 6-digit code in the SMS outbox: ${last.status} ${last.text}`);
}

/** Follows a `redirect` of a `reg` answer: must set the session cookie and 302 to the client. */
async function visitContinue(browser, redirect) {
  check(typeof redirect === 'string' && /\/oidc\/continue\/[A-Za-z0-9_-]+$/.test(redirect), `redirect ${redirect}`);
  const res = await browser.get(redirect);
  const location = res.headers.get('location');
  check(res.status === 302 && location, `continue answered ${res.status} ${location || (await res.text()).slice(0, 300)}`);
  const session = browser.lastSetCookie.find((c) => /;\s*httponly/i.test(c) && /;\s*samesite=lax/i.test(c));
  check(session, `continue set no HttpOnly SameSite=Lax cookie: ${JSON.stringify(browser.lastSetCookie)}`);
  const again = await browser.get(redirect);
  check(again.status === 410, `a second visit of the continue URL answered ${again.status}, not 410`);
  return location;
}

/** Checks an authorization response (a Location) and returns it as a URL. */
function callbackUrl(location, expectedState, issuer) {
  const url = new URL(location);
  check(`${url.origin}${url.pathname}` === new URL(redirectUri).origin + new URL(redirectUri).pathname,
    `redirected to ${location}, not to ${redirectUri}`);
  check(location.startsWith(redirectUri), `redirect ${location} does not start with ${redirectUri}`);
  const p = url.searchParams;
  check(!p.has('error'), `authorization error ${p.get('error')}: ${p.get('error_description') || ''}`);
  check(p.get('code'), `no code in ${location}`);
  check(p.get('state') === expectedState, `state ${p.get('state')} != ${expectedState}`);
  check(p.get('iss') === issuer, `iss ${p.get('iss')} != ${issuer}`);
  return url;
}

function jwtHeader(jwt) {
  const [h] = String(jwt).split('.');
  return JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
}

function randomPhone() {
  return `139${String(randomInt(0, 100_000_000)).padStart(8, '0')}`;
}

/** A fresh authorization request (its own PKCE verifier, state and nonce). */
async function newRequest(config, extra = {}) {
  const verifier = oidc.randomPKCECodeVerifier();
  const state = oidc.randomState();
  const nonce = oidc.randomNonce();
  const url = oidc.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: SCOPE,
    code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, verifier, state, nonce };
}

function grant(config, callback, request) {
  return oidc.authorizationCodeGrant(
    config,
    callback,
    { pkceCodeVerifier: request.verifier, expectedState: request.state, expectedNonce: request.nonce },
    undefined,
    { redirectUri },
  );
}

/** A raw userinfo call: its HTTP status (the library turns a refusal into an error). */
async function userinfoStatus(endpoint, accessToken) {
  const res = await fetch(endpoint, {
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
    signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
  });
  await res.arrayBuffer();
  return res.status;
}

// ---------------------------------------------------------------------------
// The flow

async function main() {
  let config;
  let issuer;
  const browser = new Browser('A');
  const openid = `o_rp_${randomBytes(12).toString('base64url')}`;
  const phone = randomPhone();
  let first; // the first authorization request
  let attempt;
  let callback;
  let tokens; // first token response
  let claims;
  let refreshed;
  let ssoTokens;

  await step('discovery', async () => {
    const metadata = { id_token_signed_response_alg: idTokenAlg };
    if (clientSecret !== '') metadata.client_secret = clientSecret;
    const auth =
      authName === 'none' ? oidc.None() : authName === 'client_secret_post' ? oidc.ClientSecretPost(clientSecret) : oidc.ClientSecretBasic(clientSecret);
    config = await oidc.discovery(new URL(base), clientId, metadata, auth, {
      // http on loopback; and verify ID token signatures against the JWKS, which
      // openid-client skips by default for tokens from the token endpoint.
      execute: [oidc.allowInsecureRequests, oidc.enableNonRepudiationChecks],
      timeout: HTTP_TIMEOUT_MS / 1000,
    });
    const m = config.serverMetadata();
    issuer = m.issuer;
    check((m.code_challenge_methods_supported || []).includes('S256'), 'S256 not in code_challenge_methods_supported');
    check(m.authorization_response_iss_parameter_supported === true, 'authorization_response_iss_parameter_supported is not true');
    check((m.id_token_signing_alg_values_supported || []).includes(idTokenAlg), `${idTokenAlg} not in id_token_signing_alg_values_supported`);
    check((m.token_endpoint_auth_methods_supported || []).includes(authName), `${authName} not in token_endpoint_auth_methods_supported`);
    for (const k of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
      check(typeof m[k] === 'string', `no ${k} in the discovery document`);
    }
    return `issuer ${issuer}, client ${clientId} (${authName}, ID tokens ${idTokenAlg})`;
  });

  await step('authorize (login page)', async () => {
    first = await newRequest(config);
    attempt = await openLoginPage(browser, first.url);
    return `attempt mode ${attempt.mode}, expires_in ${attempt.expires_in}`;
  });

  await step('scan (sandbox phone, new WeChat user)', async () => playPhone(attempt, openid, false));

  await step('status poll', async () => {
    const answer = await pollUntilScanned(attempt.uuid);
    check(answer.state === 'not_reg', `a fresh openid should be not_reg, got ${JSON.stringify(answer)}`);
    return JSON.stringify(answer);
  });

  await step('sms-code', async () => {
    const r = await api('POST', '/api/v1/login/sms-code', { uuid: attempt.uuid, phone });
    check(r.status === 200, `sms-code answered ${r.status} ${r.text}`);
    return `${phone}: ${r.text}`;
  });

  let code;
  await step('sandbox SMS outbox', async () => {
    code = await smsCode(phone);
    return `code ${code}`;
  });

  let redirect;
  await step('bind-phone', async () => {
    const r = await api('POST', '/api/v1/login/bind-phone', { uuid: attempt.uuid, phone, code });
    check(r.status === 200 && r.json, `bind-phone answered ${r.status} ${r.text}`);
    assertNoToken(r.json, 'bind-phone');
    check(r.json.status === 3 && r.json.state === 'reg', `bind-phone: ${r.text}`);
    redirect = r.json.redirect;
    check(typeof redirect === 'string', `bind-phone carries no redirect: ${r.text}`);
    const after = await api('GET', `/api/v1/login/status?uuid=${encodeURIComponent(attempt.uuid)}`);
    assertNoToken(after.json, 'the status poll after bind-phone');
    return `redirect ${redirect}; a later poll: ${after.text}`;
  });

  await step('continue (browser)', async () => {
    const location = await visitContinue(browser, redirect);
    callback = callbackUrl(location, first.state, issuer);
    return `302 to ${callback.origin}${callback.pathname}?code=…&state=…&iss=…; a second visit is 410`;
  });

  await step('token (authorization_code, ID token verified against the JWKS)', async () => {
    tokens = await grant(config, callback, first);
    claims = tokens.claims();
    check(claims, 'no ID token in the token response');
    check(typeof claims.sub === 'string' && claims.sub.length > 0, `sub ${claims.sub}`);
    check(claims.sub !== openid, 'sub is the openid');
    check(claims.azp === undefined || claims.azp === clientId, `azp ${claims.azp}`);
    check(typeof claims.auth_time === 'number', `auth_time ${claims.auth_time}`);
    const amr = claims.amr || [];
    check(amr.includes('wechat') && amr.includes('sms'), `amr ${JSON.stringify(claims.amr)}`);
    check(typeof claims.phone_number === 'string' && claims.phone_number.startsWith('+86'), `phone_number ${claims.phone_number}`);
    check(claims.phone_number === `+86${phone}`, `phone_number ${claims.phone_number} is not +86${phone}`);
    check(claims.phone_number_verified === true, `phone_number_verified ${claims.phone_number_verified}`);
    if (claims.preferred_username !== undefined) {
      check(!String(claims.preferred_username).includes(phone), `preferred_username ${claims.preferred_username} is not masked`);
    }
    check(String(tokens.token_type).toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
    check(typeof tokens.refresh_token === 'string' && tokens.refresh_token, 'no refresh_token although offline_access was asked');
    const idh = jwtHeader(tokens.id_token);
    check(idh.alg === idTokenAlg && idh.kid, `ID token header ${JSON.stringify(idh)}`);
    const ath = jwtHeader(tokens.access_token);
    check(String(ath.typ).toLowerCase() === 'at+jwt' && ath.kid, `access token header ${JSON.stringify(ath)}`);
    return `sub ${claims.sub}, amr ${JSON.stringify(claims.amr)}, phone_number ${claims.phone_number}, id token ${idh.alg}`;
  });

  await step('userinfo', async () => {
    const info = await oidc.fetchUserInfo(config, tokens.access_token, claims.sub);
    check(info.sub === claims.sub, `userinfo sub ${info.sub}`);
    check(info.phone_number === claims.phone_number, `userinfo phone_number ${info.phone_number}`);
    const me = await fetch(`${base}/api/v1/me`, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
      signal: AbortSignal.timeout(HTTP_TIMEOUT_MS),
    });
    const meBody = await me.text();
    check(me.status === 200, `/api/v1/me refused the access token: ${me.status} ${meBody}`);
    check(JSON.parse(meBody).id === claims.sub, `/api/v1/me id is not the sub: ${meBody}`);
    return `${JSON.stringify(info)}; /api/v1/me accepts the access token`;
  });

  await step('refresh (rotation)', async () => {
    refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
    check(typeof refreshed.refresh_token === 'string' && refreshed.refresh_token, 'the refresh answer has no new refresh_token');
    check(refreshed.refresh_token !== tokens.refresh_token, 'the refresh token did not rotate');
    check(refreshed.access_token && refreshed.access_token !== tokens.access_token, 'no new access token');
    const c = refreshed.claims();
    if (c) check(c.sub === claims.sub, `refreshed ID token sub ${c.sub}`);
    const info = await oidc.fetchUserInfo(config, refreshed.access_token, claims.sub);
    return `new refresh token; userinfo with the new access token: sub ${info.sub}`;
  });

  let sso;
  await step('single sign-on (second authorize, session cookie)', async () => {
    sso = await newRequest(config);
    const res = await browser.get(sso.url);
    const location = res.headers.get('location');
    check(res.status === 302 && location, `authorize with a session answered ${res.status}, not 302 with a code`);
    const cb = callbackUrl(location, sso.state, issuer);
    ssoTokens = await grant(config, cb, sso);
    const c = ssoTokens.claims();
    check(c.sub === claims.sub, `SSO sub ${c.sub} != ${claims.sub}`);
    check(c.auth_time === claims.auth_time, `SSO auth_time ${c.auth_time} != the session's ${claims.auth_time}`);
    return `302 at once; same sub, auth_time kept`;
  });

  await step('prompt=login (a session does not skip the scan)', async () => {
    const r = await newRequest(config, { prompt: 'login' });
    const a = await openLoginPage(browser, r.url);
    return `login page again (attempt mode ${a.mode}); left to expire`;
  });

  await step('second browser: the registered user scans again', async () => {
    const other = new Browser('B');
    const req = await newRequest(config);
    const a = await openLoginPage(other, req.url);
    await playPhone(a, openid, true);
    const answer = await pollUntilScanned(a.uuid);
    check(answer.status === 3 && answer.state === 'reg' && typeof answer.redirect === 'string',
      `a registered user's scan should answer reg with a redirect: ${JSON.stringify(answer)}`);
    const cb = callbackUrl(await visitContinue(other, answer.redirect), req.state, issuer);
    const t = await grant(config, cb, req);
    const c = t.claims();
    check(c.sub === claims.sub, `same WeChat user, another sub: ${c.sub}`);
    check((c.amr || []).includes('wechat'), `amr ${JSON.stringify(c.amr)}`);
    // The same code again: refused, and what it gave is revoked.
    await expectInvalidGrant(() => grant(config, cb, req));
    const s = await userinfoStatus(config.serverMetadata().userinfo_endpoint, t.access_token);
    check(s === 401, `an access token from a replayed code still answers ${s} at userinfo`);
    return `poll answered reg + redirect (no token); same sub, amr ${JSON.stringify(c.amr)}; a replayed code is invalid_grant and revokes its tokens`;
  });

  await step('refresh token reuse', async () => {
    await expectInvalidGrant(() => oidc.refreshTokenGrant(config, tokens.refresh_token));
    await expectInvalidGrant(() => oidc.refreshTokenGrant(config, refreshed.refresh_token));
    return 'the used refresh token is invalid_grant, and so is its successor (the family is revoked)';
  });

  await step('logout (end session)', async () => {
    const params = { id_token_hint: ssoTokens.id_token };
    const logoutState = oidc.randomState();
    if (postLogoutRedirectUri) {
      params.post_logout_redirect_uri = postLogoutRedirectUri;
      params.state = logoutState;
    }
    const url = oidc.buildEndSessionUrl(config, params);
    const res = await browser.get(url.href);
    const location = res.headers.get('location');
    await res.arrayBuffer();
    check(res.status === 302 || res.status === 200, `end session answered ${res.status}`);
    if (postLogoutRedirectUri) {
      check(res.status === 302 && location && location.startsWith(postLogoutRedirectUri),
        `end session answered ${res.status} ${location}, not a redirect to ${postLogoutRedirectUri}`);
      check(new URL(location).searchParams.get('state') === logoutState, `post-logout redirect ${location} lost the state`);
    }
    return `${res.status}${location ? ` to ${location}` : ''}`;
  });

  await step('after logout', async () => {
    const r = await newRequest(config, { prompt: 'none' });
    const res = await browser.get(r.url);
    const location = res.headers.get('location');
    check(res.status === 302 && location, `authorize prompt=none after logout answered ${res.status}`);
    const p = new URL(location).searchParams;
    check(p.get('error') === 'login_required', `prompt=none after logout: ${location}`);
    check(p.get('state') === r.state, `login_required without the state: ${location}`);
    const endpoint = config.serverMetadata().userinfo_endpoint;
    for (const [name, t] of [['first', tokens], ['refreshed', refreshed], ['SSO', ssoTokens]]) {
      const s = await userinfoStatus(endpoint, t.access_token);
      check(s === 401, `userinfo with the ${name} access token answered ${s} after logout, not 401`);
    }
    let refused = false;
    try {
      await oidc.fetchUserInfo(config, ssoTokens.access_token, claims.sub);
    } catch {
      refused = true;
    }
    check(refused, 'openid-client accepted a userinfo answer after logout');
    return 'prompt=none is login_required; userinfo is 401 for every access token of the session';
  });

  console.log(`PASS  openid-client ${clientId} against ${issuer}`);
}

main().catch((err) => {
  const hint = currentStep === 'discovery' ? ` (is scanlogin running at ${base} with oidc.enabled = true?)` : '';
  console.error(`FAIL  ${currentStep}: ${describeError(err)}${hint}`);
  process.exit(1);
});
