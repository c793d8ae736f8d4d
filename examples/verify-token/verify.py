"""Verify a scanlogin login token in your backend, with PyJWT and our public keys.

    python3 -m pip install "pyjwt[crypto]"
    python3 examples/verify-token/verify.py http://127.0.0.1:8080 "$TOKEN"

Prints the token's claims when its signature, issuer, audience and expiry hold; exits 1
otherwise. PyJWKClient fetches /.well-known/jwks.json (and caches it), picks the key the
token's `kid` names; no secret of scanlogin's is needed. A logged-out token still
verifies until it expires: ask GET /api/v1/me with it when revocation matters.
"""

import json
import sys

import jwt

base, token = sys.argv[1].rstrip("/"), sys.argv[2]
keys = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
try:
    key = keys.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "EdDSA", "RS256"],  # what token.algorithm may be; never HS256 or none
        issuer="scanlogin",  # token.issuer
        audience="scanlogin",  # token.audience
        options={"require": ["exp", "iat", "sub", "jti"]},
    )
except jwt.PyJWTError as e:
    sys.exit(f"invalid token: {e}")
print(json.dumps(claims))
