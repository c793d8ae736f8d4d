#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, the wechatpy
# cross-check, schemathesis against the OpenAPI document, then the browser tests of the
# pages (last, so the run ends with node's test summary).
# `.ci/run` calls exactly this; so does the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# Services the tests talk to (Redis, PostgreSQL, MariaDB): installed and started if needed.
bash scripts/services.sh

# The independent WeChat implementation the cross-check runs against.
if ! python3 -c "import wechatpy, cryptography" >/dev/null 2>&1; then
  echo "== installing wechatpy (PyPI) for the cross-check"
  python3 -m pip install --quiet --disable-pip-version-check wechatpy cryptography
fi

# Redis: the seed-design benchmark baseline is tested against it (load/tests/baselines.rs).
if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
  if ! command -v redis-server >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# openssl (the command): the Redis TLS test makes its CA and certificate with it.
if ! command -v openssl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null
fi

# systemd-analyze (Debian's `systemd` package): the suite checks the unit example
# config/scanlogin.service with `systemd-analyze verify` (tests/api/systemd_unit.rs). Only
# the command is used: nothing is started under systemd.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "== installing systemd (Debian package) for systemd-analyze"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# nginx (Debian's package): the cluster tests (tests/cluster) run their own nginx on the
# shipped config/nginx.example.conf as a child process. Only the binary is needed: the
# system service is never started (policy-rc.d in containers forbids it anyway, and a
# leftover one is left alone; the tests listen on free ports).
if ! command -v nginx >/dev/null 2>&1 && [[ ! -x /usr/sbin/nginx ]]; then
  echo "== installing nginx-light (Debian package)"
  apt-get update -qq
  # policy-rc.d answering 101 keeps the package's postinst from starting the service.
  printf '#!/bin/sh\nexit 101\n' >/tmp/scanlogin-policy-rc.d
  chmod +x /tmp/scanlogin-policy-rc.d
  restore_policy=""
  if [[ -e /usr/sbin/policy-rc.d ]]; then restore_policy=$(mktemp); cp -p /usr/sbin/policy-rc.d "$restore_policy"; fi
  cp /tmp/scanlogin-policy-rc.d /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  if [[ -n $restore_policy ]]; then mv "$restore_policy" /usr/sbin/policy-rc.d; else rm -f /usr/sbin/policy-rc.d; fi
fi
export PATH="$PATH:/usr/sbin"

# Prometheus and promtool (Debian's `prometheus` package): alert-rule unit tests here,
# `promtool check metrics` and the every-panel-has-data proof in tests/observability.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  echo "== installing prometheus (Debian package)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
fi

echo "== promtool check rules / test rules (dashboards/alerts.yml)"
promtool check rules dashboards/alerts.yml
promtool test rules dashboards/alerts_test.yml

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== wechatpy cross-check (safe mode against an independent implementation)"
cargo build --locked --quiet
python3 tests/wechatpy/crosscheck.py "${CARGO_TARGET_DIR:-target}/debug/scanlogin"

echo "== OpenID Connect provider against openid-client (npm) and Authlib (PyPI), every algorithm"
bash scripts/oidc-rp.sh

echo "== schemathesis (the OpenAPI document against the running binary)"
bash scripts/schemathesis.sh

# The README's backend snippets (examples/verify-token): PyJWT, jose (npm), Go's standard
# library (Debian's golang-go).
if ! python3 -c "import jwt, cryptography" >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check "pyjwt[crypto]"
fi
if ! command -v go >/dev/null 2>&1; then
  echo "== installing golang-go (Debian package) for the Go snippet"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi
(cd examples/verify-token && npm ci --silent --no-audit --no-fund)

echo "== README commands, run as written (first screen, curl walk-through, load tool)"
python3 scripts/readme_check.py

echo "== browser tests"
bash scripts/browser-tests.sh
