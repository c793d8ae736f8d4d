"""A minimal relying party of scanlogin's OpenID Connect provider.

Python's own http.server plus Authlib, no web framework: the home page offers
"Log in with WeChat", which sends the browser to scanlogin's authorize endpoint
(code flow, PKCE S256, state, nonce); scanlogin shows its QR code, and on the
way back /callback exchanges the code and shows the ID token's claims, checked
against the provider's JWKS. Register it as a public client:

    [[oidc.clients]]
    client_id = "demo"
    redirect_uris = ["http://127.0.0.1:8090/callback"]

    python3 examples/oidc-rp/app.py --issuer http://127.0.0.1:8080 --client-id demo --port 8090
"""

import argparse
import html
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # the demo runs on plain http
import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet  # noqa: E402

args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
args.add_argument("--issuer", required=True)
args.add_argument("--client-id", required=True)
args.add_argument("--port", type=int, default=8090)
opts = args.parse_args()
try:
    META = requests.get(opts.issuer.rstrip("/") + "/.well-known/openid-configuration", timeout=10).json()
except (requests.RequestException, ValueError) as e:
    raise SystemExit(f"cannot read {opts.issuer}/.well-known/openid-configuration: {e}") from None
REDIRECT_URI = f"http://127.0.0.1:{opts.port}/callback"
PENDING = {}  # state -> (code_verifier, nonce): the logins under way


def client():
    return OAuth2Session(opts.client_id, scope="openid profile phone", redirect_uri=REDIRECT_URI,
                         code_challenge_method="S256", token_endpoint=META["token_endpoint"])


class Handler(BaseHTTPRequestHandler):
    def page(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(f"<!doctype html><title>scanlogin demo RP</title>{body}".encode())

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/":
            self.page(200, '<p><a href="/login">Log in with WeChat</a></p>')
        elif url.path == "/login":
            verifier, nonce = generate_token(64), generate_token(32)
            target, state = client().create_authorization_url(
                META["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
            PENDING[state] = (verifier, nonce)
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()
        elif url.path == "/callback" and query.get("state") in PENDING:
            verifier, nonce = PENDING.pop(query["state"])
            if "error" in query or query.get("iss") != META["issuer"]:
                return self.page(400, f"<p>Login failed: {html.escape(query.get('error', 'wrong iss'))}</p>")
            try:
                token = client().fetch_token(authorization_response=self.path, state=query["state"],
                                             code_verifier=verifier)
                keys = KeySet.import_key_set(requests.get(META["jwks_uri"], timeout=10).json())
                decoded = jwt.decode(token["id_token"], keys, algorithms=["RS256", "ES256", "EdDSA"])
                claims = CodeIDToken(decoded.claims, decoded.header,
                                     {"iss": {"essential": True, "value": META["issuer"]},
                                      "aud": {"essential": True, "value": opts.client_id}},
                                     {"nonce": nonce, "client_id": opts.client_id,
                                      "access_token": token["access_token"]})
                claims.validate(leeway=60)
            except Exception as e:  # the code exchange or the ID token check failed
                return self.page(502, f"<p>Login failed: {html.escape(repr(e))}</p>")
            shown = html.escape(json.dumps(dict(claims), indent=2, ensure_ascii=False), quote=False)
            self.page(200, f'<p>Logged in. ID token claims:</p><pre>{shown}</pre><p><a href="/">Home</a></p>')
        else:
            self.page(404, "<p>Not found (or this login was already finished).</p>")


print(f"demo relying party on http://127.0.0.1:{opts.port}/ (issuer {META['issuer']})")
ThreadingHTTPServer(("127.0.0.1", opts.port), Handler).serve_forever()
