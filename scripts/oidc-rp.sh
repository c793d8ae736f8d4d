#!/usr/bin/env bash
# The OpenID Connect provider against maintained relying-party libraries (npm
# openid-client v6, PyPI Authlib): for every signing algorithm we offer, a server on the
# shipped config (sandbox, demo client) is started and both clients log in through it
# end to end — discovery, authorize, the sandbox scan, a phone bind, code + PKCE, ID token
# checked against the JWKS, userinfo, refresh rotation and reuse, single sign-on, logout.
# Called by scripts/test.sh; needs the debug binary built, node/npm and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${SCANLOGIN_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/scanlogin}

(cd tests/oidc && npm ci --silent --no-audit --no-fund)
if ! python3 -c "import authlib, requests, joserfc" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/oidc/requirements.txt
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# id_token_alg of the client · token.algorithm (login and access tokens) · client secret
# ('' = public client with PKCE) · how a confidential client authenticates.
MATRIX=(
  "RS256 ES256 - -"
  "ES256 EdDSA rp-secret-0123456789-0123456789-abcd basic"
  "EdDSA RS256 rp-secret-0123456789-0123456789-abcd post"
)
for row in "${MATRIX[@]}"; do
  read -r id_alg token_alg secret auth <<<"$row"
  [[ $secret == - ]] && secret=''
  port=$(free_port)
  dir=$(mktemp -d /tmp/scanlogin-oidc.XXXXXX)
  base="http://127.0.0.1:$port"
  kind="public (PKCE)"
  [[ -n $secret ]] && kind="confidential ($auth)"
  echo "== relying parties: ID tokens $id_alg, access tokens $token_alg, client $kind"
  (
    cd "$dir"
    SCANLOGIN__SERVER__BIND="127.0.0.1:$port" SCANLOGIN__SERVER__PUBLIC_URL="$base" \
    SCANLOGIN__STORAGE__DATABASE_URL="sqlite://$dir/rp.db?mode=rwc" \
    SCANLOGIN__TOKEN__ALGORITHM="$token_alg" \
    SCANLOGIN__OIDC__CLIENTS__0__ID_TOKEN_ALG="$id_alg" \
    SCANLOGIN__OIDC__CLIENTS__0__CLIENT_SECRET="$secret" \
    SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE=100 \
    exec "$BIN" serve --config "$ROOT/config/default.toml"
  ) >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  status=0
  RP_ID_TOKEN_ALG=$id_alg RP_AUTH=$auth node tests/oidc/rp.mjs "$base" demo "$secret" \
    http://127.0.0.1:8090/callback http://127.0.0.1:8090/ || status=$?
  if (( status == 0 )); then
    RP_ID_TOKEN_ALG=$id_alg RP_AUTH=$auth python3 tests/oidc/rp_authlib.py "$base" demo "$secret" \
      http://127.0.0.1:8090/callback http://127.0.0.1:8090/ || status=$?
  fi
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if (( status != 0 )); then
    echo "-- server log ($dir/server.log), last lines:"
    tail -20 "$dir/server.log"
    exit "$status"
  fi
  rm -rf "$dir"
done
echo "== relying parties: openid-client and Authlib passed with every algorithm"
