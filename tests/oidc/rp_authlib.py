#!/usr/bin/env python3
"""End-to-end relying party of scanlogin's OpenID Connect provider, written with
the maintained library Authlib (1.x, its ``requests`` integration).

It plays every part against a running scanlogin with the sandbox on: the relying
application (``authlib.integrations.requests_client.OAuth2Session``; ID tokens
checked with ``authlib.oidc.core.CodeIDToken`` against the provider's JWKS), the
person's browser (a ``requests.Session`` that follows no redirect) and the phone
(the sandbox's scan and SMS outbox).

    python3 tests/oidc/rp_authlib.py <base_url> <client_id> <client_secret or ''> \
        <redirect_uri> [post_logout_redirect_uri]

``base_url`` must be the provider's issuer. An empty secret means a public client
(PKCE, ``none`` authentication); otherwise the client authenticates with
``client_secret_post`` (``RP_AUTH=basic`` for ``client_secret_basic``), so that
this script and ``rp.mjs`` (basic by default) cover both methods.
``RP_ID_TOKEN_ALG`` (default RS256) is the client's ``id_token_alg`` on the server.

One line per step; the first failure prints the step and the reason and exits 1.
"""

import os

# The provider is plain http on loopback in these tests; Authlib refuses that unless told.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"

import base64  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import parse_qs, quote, urlsplit  # noqa: E402

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session, OAuthError  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402
from joserfc import jwt  # noqa: E402  (Authlib's own JOSE backend since 1.7)
from joserfc.jwk import KeySet  # noqa: E402

USAGE = "usage: rp_authlib.py <base_url> <client_id> <client_secret or ''> <redirect_uri> [post_logout_redirect_uri]"
SCOPE = "openid profile phone email offline_access"
HTTP_TIMEOUT = 30
POLL_DEADLINE = 60
ASYMMETRIC = {"RS256", "ES256", "EdDSA", "Ed25519"}


class StepFailure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise StepFailure(message)


def step(name, fn):
    """Runs one named step; prints ``ok`` with what it returns, or fails the run."""
    global current_step
    current_step = name
    detail = fn()
    print(f"ok    {name}{': ' + detail if detail else ''}", flush=True)


current_step = "(start)"


class Run:
    def __init__(self, base, client_id, client_secret, redirect_uri, post_logout):
        self.base = base.rstrip("/")
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.post_logout = post_logout
        self.id_token_alg = os.environ.get("RP_ID_TOKEN_ALG", "RS256")
        if not client_secret:
            self.auth_method = "none"
        elif os.environ.get("RP_AUTH") == "basic":
            self.auth_method = "client_secret_basic"
        else:
            self.auth_method = "client_secret_post"
        self.meta = {}
        self.keys = None
        self.api_http = requests.Session()
        self.api_http.headers["Accept"] = "application/json"

    # -- the relying application -------------------------------------------------

    def client(self):
        """A fresh OAuth2Session, as an application makes one per login."""
        return OAuth2Session(
            client_id=self.client_id,
            client_secret=self.client_secret or None,
            token_endpoint_auth_method=self.auth_method,
            scope=SCOPE,
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint=self.meta["token_endpoint"],
        )

    def new_request(self, **extra):
        """A fresh authorization request with its own PKCE verifier, state and nonce."""
        verifier = generate_token(64)
        nonce = generate_token(32)
        session = self.client()
        url, state = session.create_authorization_url(
            self.meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
        )
        return {"session": session, "url": url, "state": state, "nonce": nonce, "verifier": verifier}

    def exchange(self, req, callback):
        """authorization_code grant; returns (token, validated ID token claims)."""
        token = req["session"].fetch_token(
            authorization_response=callback,
            state=req["state"],
            code_verifier=req["verifier"],
            redirect_uri=self.redirect_uri,
        )
        check("id_token" in token, f"no id_token in the token response: {sorted(token)}")
        return token, self.id_token_claims(token["id_token"], token["access_token"], nonce=req["nonce"])

    def id_token_claims(self, id_token, access_token, nonce=None):
        """Signature (JWKS), iss, aud, exp, iat, nonce, azp and at_hash, as Authlib checks them."""
        algs = [a for a in self.meta.get("id_token_signing_alg_values_supported", []) if a in ASYMMETRIC]
        decoded = jwt.decode(id_token, self.keys, algorithms=algs)
        check(decoded.header.get("alg") == self.id_token_alg, f"ID token header {decoded.header}")
        check(decoded.header.get("kid"), f"ID token header without kid: {decoded.header}")
        options = {
            "iss": {"essential": True, "value": self.meta["issuer"]},
            "aud": {"essential": True, "value": self.client_id},
            "exp": {"essential": True},
            "iat": {"essential": True},
            "sub": {"essential": True},
        }
        params = {"client_id": self.client_id, "access_token": access_token}
        if nonce is not None:
            params["nonce"] = nonce
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        claims.validate(leeway=60)
        return claims

    # -- the browser and the phone -------------------------------------------------

    def browser(self):
        b = requests.Session()
        b.headers["Accept"] = "text/html,application/xhtml+xml"
        return b

    def open_login_page(self, browser, url):
        r = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        if r.status_code == 429:
            wait = int(r.headers.get("Retry-After", "0") or 0)
            check(0 < wait <= 70, f"429 from authorize, Retry-After {r.headers.get('Retry-After')}")
            print(f"..    rate limited: waiting {wait}s as Retry-After says", flush=True)
            time.sleep(wait)
            r = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(
            r.status_code == 200,
            f"authorize answered {r.status_code} {r.headers.get('Location', '')} {r.text[:300]}",
        )
        check("text/html" in r.headers.get("Content-Type", ""), f"authorize page is {r.headers.get('Content-Type')}")
        m = re.search(
            r"<script\b[^>]*\bid\s*=\s*[\"']scanlogin-attempt[\"'][^>]*>(.*?)</script>", r.text, re.S | re.I
        )
        check(m, f'the login page has no <script type="application/json" id="scanlogin-attempt">: {r.text[:300]}')
        try:
            attempt = json.loads(m.group(1))
        except ValueError as e:
            raise StepFailure(f"the embedded attempt is not JSON ({e}): {m.group(1)[:300]}") from e
        check(
            isinstance(attempt.get("uuid"), str) and re.fullmatch(r"[A-Za-z0-9_-]{22,64}", attempt["uuid"]),
            f"attempt uuid {attempt.get('uuid')!r}",
        )
        assert_no_token(attempt, "the login page")
        return attempt

    def api(self, method, path, body=None):
        r = self.api_http.request(method, self.base + path, json=body, timeout=HTTP_TIMEOUT)
        try:
            data = r.json()
        except ValueError:
            data = None
        return r, data

    def play_phone(self, attempt, openid, subscribed):
        if attempt.get("mode") == "code":
            check(isinstance(attempt.get("code"), str), f"code-mode attempt without a code: {attempt}")
            r, _ = self.api("POST", "/_sandbox/message", {"openid": openid, "text": attempt["code"]})
            check(r.status_code == 200, f"/_sandbox/message answered {r.status_code} {r.text}")
            return f"code mode, sent {attempt['code']}: {r.text}"
        check(attempt.get("mode") == "qr", f"attempt mode {attempt.get('mode')!r}")
        check(isinstance(attempt.get("qr_image_url"), str), f"attempt has no qr_image_url: {attempt}")
        ticket = parse_qs(urlsplit(attempt["qr_image_url"]).query).get("ticket", [None])[0]
        check(ticket, f"no ticket in qr_image_url {attempt['qr_image_url']}")
        r, _ = self.api("POST", "/_sandbox/scan", {"ticket": ticket, "openid": openid, "subscribed": subscribed})
        check(r.status_code == 200, f"/_sandbox/scan answered {r.status_code} {r.text}")
        return f"scanned as {openid}: {r.text}"

    def poll_until_scanned(self, uuid):
        deadline = time.monotonic() + POLL_DEADLINE
        while True:
            r, data = self.api("GET", f"/api/v1/login/status?uuid={quote(uuid)}&wait=5")
            check(r.status_code == 200 and isinstance(data, dict), f"status poll answered {r.status_code} {r.text}")
            assert_no_token(data, "the status poll")
            if data.get("state") in ("not_reg", "reg"):
                return data
            check(data.get("state") in ("loop", "scanned"), f"status poll: {r.text}")
            check(time.monotonic() < deadline, f"still {data.get('state')} after {POLL_DEADLINE}s")

    def sms_code(self, phone):
        r = None
        for _ in range(10):
            r, data = self.api("GET", f"/_sandbox/sms?phone={quote(phone)}")
            if r.status_code == 200 and data is not None:
                items = data if isinstance(data, list) else (data.get("messages") or data.get("codes") or [])
                codes = []
                for m in items:
                    text = m if isinstance(m, str) else (m.get("code") or m.get("text") or m.get("body") or "")
                    found = re.search(r"\b(\d{6})\b", str(text))
                    if found:
                        codes.append(found.group(1))
                if codes:
                    return codes[-1]  # newest last
            time.sleep(0.5)
        raise StepFailure(f"no 6-digit code in the SMS outbox: {r.status_code} {r.text}")

    def visit_continue(self, browser, redirect):
        check(
            isinstance(redirect, str) and re.search(r"/oidc/continue/[A-Za-z0-9_-]+$", redirect),
            f"redirect {redirect!r}",
        )
        r = browser.get(redirect, allow_redirects=False, timeout=HTTP_TIMEOUT)
        location = r.headers.get("Location")
        check(r.status_code == 302 and location, f"continue answered {r.status_code} {location or r.text[:300]}")
        set_cookies = r.raw.headers.getlist("Set-Cookie") if hasattr(r.raw.headers, "getlist") else []
        check(
            any(re.search(r";\s*httponly", c, re.I) and re.search(r";\s*samesite=lax", c, re.I) for c in set_cookies),
            f"continue set no HttpOnly SameSite=Lax cookie: {set_cookies}",
        )
        again = browser.get(redirect, allow_redirects=False, timeout=HTTP_TIMEOUT)
        check(again.status_code == 410, f"a second visit of the continue URL answered {again.status_code}, not 410")
        return location

    def check_callback(self, location, state):
        """An authorization response must go to redirect_uri with code, state and iss."""
        check(location.startswith(self.redirect_uri), f"redirected to {location}, not to {self.redirect_uri}")
        q = parse_qs(urlsplit(location).query)
        check("error" not in q, f"authorization error {q.get('error')}: {q.get('error_description', [''])[0]}")
        check(q.get("code"), f"no code in {location}")
        check(q.get("state") == [state], f"state {q.get('state')} != {state}")
        check(q.get("iss") == [self.meta["issuer"]], f"iss {q.get('iss')} != {self.meta['issuer']}")
        return location

    def userinfo_status(self, access_token):
        r = requests.get(
            self.meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT,
        )
        return r.status_code

    # -- the flow -------------------------------------------------------------------

    def run(self):
        browser = self.browser()
        openid = "o_rp_" + secrets.token_urlsafe(12)
        phone = "139" + "".join(secrets.choice("0123456789") for _ in range(8))
        s = {}  # what the steps hand on

        def discovery():
            r = requests.get(self.base + "/.well-known/openid-configuration", timeout=HTTP_TIMEOUT)
            check(r.status_code == 200, f"discovery answered {r.status_code} {r.text[:300]}")
            self.meta = m = r.json()
            check(str(m.get("issuer", "")).rstrip("/") == self.base, f"issuer {m.get('issuer')!r} is not {self.base!r}")
            check("S256" in m.get("code_challenge_methods_supported", []), "S256 not in code_challenge_methods_supported")
            check(m.get("authorization_response_iss_parameter_supported") is True, "no authorization_response_iss_parameter_supported")
            check(self.id_token_alg in m.get("id_token_signing_alg_values_supported", []), f"{self.id_token_alg} not supported")
            check(self.auth_method in m.get("token_endpoint_auth_methods_supported", []), f"{self.auth_method} not supported")
            for k in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "end_session_endpoint"):
                check(isinstance(m.get(k), str), f"no {k} in the discovery document")
            jr = requests.get(m["jwks_uri"], timeout=HTTP_TIMEOUT)
            check(jr.status_code == 200, f"jwks_uri answered {jr.status_code}")
            self.keys = KeySet.import_key_set(jr.json())
            check(all("d" not in k for k in jr.json().get("keys", [])), "the JWKS publishes a private key")
            return f"issuer {m['issuer']}, {len(self.keys.keys)} keys, client {self.client_id} ({self.auth_method})"

        step("discovery", discovery)

        def authorize():
            s["first"] = self.new_request()
            s["attempt"] = self.open_login_page(browser, s["first"]["url"])
            return f"attempt mode {s['attempt'].get('mode')}, expires_in {s['attempt'].get('expires_in')}"

        step("authorize (login page)", authorize)
        step("scan (sandbox phone, new WeChat user)", lambda: self.play_phone(s["attempt"], openid, False))

        def poll():
            answer = self.poll_until_scanned(s["attempt"]["uuid"])
            check(answer.get("state") == "not_reg", f"a fresh openid should be not_reg, got {answer}")
            return json.dumps(answer)

        step("status poll", poll)

        def sms_code():
            r, _ = self.api("POST", "/api/v1/login/sms-code", {"uuid": s["attempt"]["uuid"], "phone": phone})
            check(r.status_code == 200, f"sms-code answered {r.status_code} {r.text}")
            return f"{phone}: {r.text}"

        step("sms-code", sms_code)

        def outbox():
            s["code"] = self.sms_code(phone)
            return f"code {s['code']}"

        step("sandbox SMS outbox", outbox)

        def bind_phone():
            uuid = s["attempt"]["uuid"]
            r, data = self.api("POST", "/api/v1/login/bind-phone", {"uuid": uuid, "phone": phone, "code": s["code"]})
            check(r.status_code == 200 and isinstance(data, dict), f"bind-phone answered {r.status_code} {r.text}")
            assert_no_token(data, "bind-phone")
            check(data.get("status") == 3 and data.get("state") == "reg", f"bind-phone: {r.text}")
            check(isinstance(data.get("redirect"), str), f"bind-phone carries no redirect: {r.text}")
            s["redirect"] = data["redirect"]
            after, after_data = self.api("GET", f"/api/v1/login/status?uuid={quote(uuid)}")
            assert_no_token(after_data, "the status poll after bind-phone")
            return f"redirect {data['redirect']}; a later poll: {after.text}"

        step("bind-phone", bind_phone)

        def continue_():
            location = self.visit_continue(browser, s["redirect"])
            s["callback"] = self.check_callback(location, s["first"]["state"])
            return "302 to the redirect_uri with code, state and iss; a second visit is 410"

        step("continue (browser)", continue_)

        def token():
            tok, claims = self.exchange(s["first"], s["callback"])
            s["token"], s["claims"] = tok, claims
            check(isinstance(claims.get("sub"), str) and claims["sub"], f"sub {claims.get('sub')!r}")
            check(claims["sub"] != openid, "sub is the openid")
            check(isinstance(claims.get("auth_time"), (int, float)), f"auth_time {claims.get('auth_time')!r}")
            amr = claims.get("amr") or []
            check("wechat" in amr and "sms" in amr, f"amr {amr}")
            pn = claims.get("phone_number")
            check(isinstance(pn, str) and pn.startswith("+86"), f"phone_number {pn!r}")
            check(pn == "+86" + phone, f"phone_number {pn} is not +86{phone}")
            check(claims.get("phone_number_verified") is True, f"phone_number_verified {claims.get('phone_number_verified')!r}")
            if "preferred_username" in claims:
                check(phone not in str(claims["preferred_username"]), f"preferred_username {claims['preferred_username']} is not masked")
            check(str(tok.get("token_type", "")).lower() == "bearer", f"token_type {tok.get('token_type')}")
            check(tok.get("refresh_token"), "no refresh_token although offline_access was asked")
            header = json.loads(base64.urlsafe_b64decode(tok["access_token"].split(".")[0] + "=="))
            check(str(header.get("typ", "")).lower() == "at+jwt" and header.get("kid"), f"access token header {header}")
            return f"sub {claims['sub']}, amr {amr}, phone_number {pn}"

        step("token (authorization_code, ID token verified against the JWKS)", token)

        def userinfo():
            session = self.client()
            session.token = s["token"]
            r = session.get(self.meta["userinfo_endpoint"], timeout=HTTP_TIMEOUT)
            check(r.status_code == 200, f"userinfo answered {r.status_code} {r.text}")
            info = r.json()
            check(info.get("sub") == s["claims"]["sub"], f"userinfo sub {info.get('sub')}")
            check(info.get("phone_number") == s["claims"]["phone_number"], f"userinfo phone_number {info.get('phone_number')}")
            me = requests.get(
                self.base + "/api/v1/me",
                headers={"Authorization": f"Bearer {s['token']['access_token']}"},
                timeout=HTTP_TIMEOUT,
            )
            check(me.status_code == 200, f"/api/v1/me refused the access token: {me.status_code} {me.text}")
            check(me.json().get("id") == s["claims"]["sub"], f"/api/v1/me id is not the sub: {me.text}")
            return f"{json.dumps(info)}; /api/v1/me accepts the access token"

        step("userinfo", userinfo)

        def refresh():
            session = self.client()
            raw = {}

            def keep_raw(resp):
                raw["body"] = resp.json() if resp.content else {}
                return resp

            session.register_compliance_hook("refresh_token_response", keep_raw)
            old = s["token"]["refresh_token"]
            new = session.refresh_token(self.meta["token_endpoint"], refresh_token=old)
            check(raw["body"].get("refresh_token"), f"the refresh answer has no new refresh_token: {sorted(raw['body'])}")
            check(raw["body"]["refresh_token"] != old, "the refresh token did not rotate")
            check(new.get("access_token") and new["access_token"] != s["token"]["access_token"], "no new access token")
            if new.get("id_token"):
                c = self.id_token_claims(new["id_token"], new["access_token"])
                check(c["sub"] == s["claims"]["sub"], f"refreshed ID token sub {c['sub']}")
                check(c.get("nonce") in (None, s["claims"].get("nonce")), f"refreshed ID token nonce {c.get('nonce')}")
            s["refreshed"] = dict(new)
            return "new refresh token"

        step("refresh (rotation)", refresh)

        def sso():
            req = self.new_request()
            r = browser.get(req["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
            location = r.headers.get("Location")
            check(r.status_code == 302 and location, f"authorize with a session answered {r.status_code}, not 302 with a code")
            tok, claims = self.exchange(req, self.check_callback(location, req["state"]))
            check(claims["sub"] == s["claims"]["sub"], f"SSO sub {claims['sub']} != {s['claims']['sub']}")
            check(
                claims.get("auth_time") == s["claims"].get("auth_time"),
                f"SSO auth_time {claims.get('auth_time')} != the session's {s['claims'].get('auth_time')}",
            )
            s["sso"] = tok
            return "302 at once; same sub, auth_time kept"

        step("single sign-on (second authorize, session cookie)", sso)

        def prompt_login():
            req = self.new_request(prompt="login")
            a = self.open_login_page(browser, req["url"])
            return f"login page again (attempt mode {a.get('mode')}); left to expire"

        step("prompt=login (a session does not skip the scan)", prompt_login)

        def second_browser():
            other = self.browser()
            req = self.new_request()
            a = self.open_login_page(other, req["url"])
            self.play_phone(a, openid, True)
            answer = self.poll_until_scanned(a["uuid"])
            check(
                answer.get("status") == 3 and answer.get("state") == "reg" and isinstance(answer.get("redirect"), str),
                f"a registered user's scan should answer reg with a redirect: {answer}",
            )
            callback = self.check_callback(self.visit_continue(other, answer["redirect"]), req["state"])
            tok, claims = self.exchange(req, callback)
            check(claims["sub"] == s["claims"]["sub"], f"same WeChat user, another sub: {claims['sub']}")
            check("wechat" in (claims.get("amr") or []), f"amr {claims.get('amr')}")
            # The same code again: refused, and what it gave is revoked.
            expect_invalid_grant(lambda: self.exchange(req, callback))
            status = self.userinfo_status(tok["access_token"])
            check(status == 401, f"an access token from a replayed code still answers {status} at userinfo")
            return f"poll answered reg + redirect (no token); same sub, amr {claims.get('amr')}; a replayed code is invalid_grant and revokes its tokens"

        step("second browser: the registered user scans again", second_browser)

        def reuse():
            endpoint = self.meta["token_endpoint"]
            expect_invalid_grant(lambda: self.client().refresh_token(endpoint, refresh_token=s["token"]["refresh_token"]))
            expect_invalid_grant(lambda: self.client().refresh_token(endpoint, refresh_token=s["refreshed"]["refresh_token"]))
            return "the used refresh token is invalid_grant, and so is its successor (the family is revoked)"

        step("refresh token reuse", reuse)

        def logout():
            params = {"client_id": self.client_id, "id_token_hint": s["sso"]["id_token"]}
            logout_state = generate_token(20)
            if self.post_logout:
                params["post_logout_redirect_uri"] = self.post_logout
                params["state"] = logout_state
            r = browser.get(self.meta["end_session_endpoint"], params=params, allow_redirects=False, timeout=HTTP_TIMEOUT)
            location = r.headers.get("Location")
            check(r.status_code in (200, 302), f"end session answered {r.status_code}")
            if self.post_logout:
                check(
                    r.status_code == 302 and location and location.startswith(self.post_logout),
                    f"end session answered {r.status_code} {location}, not a redirect to {self.post_logout}",
                )
                check(parse_qs(urlsplit(location).query).get("state") == [logout_state], f"post-logout redirect {location} lost the state")
            return f"{r.status_code}{' to ' + location if location else ''}"

        step("logout (end session)", logout)

        def after_logout():
            req = self.new_request(prompt="none")
            r = browser.get(req["url"], allow_redirects=False, timeout=HTTP_TIMEOUT)
            location = r.headers.get("Location")
            check(r.status_code == 302 and location, f"authorize prompt=none after logout answered {r.status_code}")
            q = parse_qs(urlsplit(location).query)
            check(q.get("error") == ["login_required"], f"prompt=none after logout: {location}")
            check(q.get("state") == [req["state"]], f"login_required without the state: {location}")
            for name, tok in (("first", s["token"]), ("refreshed", s["refreshed"]), ("SSO", s["sso"])):
                status = self.userinfo_status(tok["access_token"])
                check(status == 401, f"userinfo with the {name} access token answered {status} after logout, not 401")
            return "prompt=none is login_required; userinfo is 401 for every access token of the session"

        step("after logout", after_logout)
        print(f"PASS  authlib {self.client_id} against {self.meta['issuer']}", flush=True)


def assert_no_token(answer, where):
    check(
        not (isinstance(answer, dict) and "token" in answer),
        f"{where} handed out a login token to an OIDC attempt: {answer}",
    )


def expect_invalid_grant(fn):
    try:
        fn()
    except OAuthError as e:
        check(e.error == "invalid_grant", f"expected invalid_grant, got {e.error}: {e.description}")
        return
    raise StepFailure("expected invalid_grant, the token endpoint answered with tokens")


def main(argv):
    if not 4 <= len(argv) <= 5 or not argv[0] or not argv[1] or not argv[3]:
        print(USAGE, file=sys.stderr)
        return 2
    base, client_id, secret, redirect_uri = argv[:4]
    post_logout = argv[4] if len(argv) == 5 else ""
    run = Run(base, client_id, secret, redirect_uri, post_logout)
    try:
        run.run()
    except Exception as e:  # one line for any failure, naming the step
        hint = ""
        if current_step == "discovery":
            hint = f" (is scanlogin running at {run.base} with oidc.enabled = true?)"
        kind = "" if isinstance(e, StepFailure) else f"{type(e).__name__}: "
        if isinstance(e, OAuthError):
            kind = f"OAuthError {e.error}: "
        print(f"FAIL  {current_step}: {kind}{e}{hint}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
