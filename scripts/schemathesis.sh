#!/usr/bin/env bash
# The OpenAPI contract, proven against the running service: schemathesis (PyPI) generates
# requests from /api/v1/openapi.json, and from the admin API's /admin/v1/openapi.json on
# its own listener with a key of every scope, and checks every answer against the document (status,
# headers, content type, schema), that invalid input is refused, and that wrong methods are
# 405 with Allow. Every check but positive_data_acceptance (valid-looking requests may be
# refused on purpose: an unknown uuid's sms-code is 410). Any finding fails the script.
# The real debug binary, a free port, a temp SQLite file, the built-in sandbox; limits
# raised so that rate limits do not answer most requests (429 is still a documented answer).
set -euo pipefail
cd "$(dirname "$0")/.."

# schemathesis lives in its own virtualenv under target/ (installed from PyPI when absent).
# CPython 3.11 before 3.11.8 trips over its own AST check inside hypothesis ("SystemError:
# AST constructor recursion depth mismatch"), so the newest interpreter >= 3.12 there is
# is preferred (pyenv's too), else python3.
venv="${CARGO_TARGET_DIR:-$PWD/target}/schemathesis-venv"
st="$venv/bin/schemathesis"
if [[ ! -x "$st" ]]; then
  py=(python3)
  for cand in python3.13 python3.12; do
    if "$cand" -c '' >/dev/null 2>&1; then py=("$cand"); break; fi
  done
  if [[ ${py[0]} == python3 ]] && command -v pyenv >/dev/null 2>&1; then
    newer=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[2-9](\.[0-9]+)?$' | sort -V | tail -n 1 || true)
    [[ -n $newer ]] && py=(env "PYENV_VERSION=$newer" python3)
  fi
  echo "== installing schemathesis (PyPI) with $("${py[@]}" --version)"
  "${py[@]}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check schemathesis
fi

cargo build --locked --quiet --bin scanlogin
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/scanlogin"

dir=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin_port=$(free_port)
url="http://127.0.0.1:$port"
admin_url="http://127.0.0.1:$admin_port"
# The admin API: a random key of every scope; the config holds only its SHA-256.
admin_key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
admin_sha=$(printf '%s' "$admin_key" | sha256sum | cut -d' ' -f1)
cat config/default.toml - >"$dir/config.toml" <<EOF

[admin]
bind = "127.0.0.1:$admin_port"
requests_per_minute = 1000000

[[admin.keys]]
name = "schemathesis"
token_sha256 = "$admin_sha"
scopes = ["attempts:read", "attempts:write", "users:read", "users:write", "audit:read"]
EOF
(
  cd "$dir"
  SCANLOGIN__SERVER__BIND="127.0.0.1:$port" \
  SCANLOGIN__SERVER__PUBLIC_URL="$url" \
  SCANLOGIN__SERVER__SHUTDOWN_GRACE_SECS=2 \
  SCANLOGIN__STORAGE__DATABASE_URL="sqlite://$dir/schemathesis.db?mode=rwc" \
  SCANLOGIN__LOGIN__LONG_POLL_MAX_SECS=1 \
  SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE=1000000 \
  SCANLOGIN__LIMITS__SMS_PER_IP_PER_DAY=1000000 \
  SCANLOGIN__LIMITS__SMS_PER_PHONE_PER_DAY=1000000 \
  SCANLOGIN__LIMITS__CODE_FAILURES_PER_PHONE_PER_DAY=1000000 \
  SCANLOGIN__LIMITS__LONG_POLLS_PER_IP=1000 \
  RUST_LOG="${RUST_LOG:-warn}" \
    exec "$bin" serve --config "$dir/config.toml"
) >"$dir/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 100); do
  curl -fsS "$url/healthz" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$dir/server.log"; exit 1; }
  sleep 0.1
done

echo "== schemathesis run $url/api/v1/openapi.json"
status=0
# Run inside the temp dir: schemathesis keeps its own state in ./.schemathesis/.
(cd "$dir" && "$st" run "$url/api/v1/openapi.json" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples 100 --seed "${SCHEMATHESIS_SEED:-20261101}" \
  --generation-database none --no-color --workers 2) || status=$?
echo "== schemathesis run $admin_url/admin/v1/openapi.json (with a key)"
(cd "$dir" && "$st" run "$admin_url/admin/v1/openapi.json" \
  -H "Authorization: Bearer $admin_key" \
  --checks all --exclude-checks positive_data_acceptance \
  --max-examples 100 --seed "${SCHEMATHESIS_SEED:-20261101}" \
  --generation-database none --no-color --workers 2) || status=$?
if ((status != 0)); then
  echo "--- server log (tail) ---"
  tail -n 50 "$dir/server.log"
fi
exit "$status"
