#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests.
# `.ci/run` calls exactly this; so does the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# Services the tests talk to: Redis, PostgreSQL, MariaDB (installed and started by scripts/services.sh).
if [[ -x scripts/services.sh ]]; then
  scripts/services.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
