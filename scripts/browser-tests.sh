#!/usr/bin/env bash
# Browser tests of the login page and the sandbox phone: the real server binary, driven
# by Debian's Chromium (headless) through playwright-core, run by node's test runner.
# Installs what it needs when absent: Debian's chromium, a font with Chinese glyphs (for
# readable screenshots), and the npm packages of tests/browser (from its lockfile).
# Screenshots of every step go to test-artifacts/browser/.
#   UPDATE_DOCS_SCREENSHOTS=1 bash scripts/browser-tests.sh   # also rewrites docs/screenshots/
set -euo pipefail
cd "$(dirname "$0")/.."

apt_missing=()
command -v chromium >/dev/null 2>&1 || apt_missing+=(chromium fonts-liberation)
command -v node >/dev/null 2>&1 || apt_missing+=(nodejs npm)
if ! { command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family | grep -q .; }; then
  apt_missing+=(fontconfig fonts-wqy-microhei)
fi
if ((${#apt_missing[@]})); then
  echo "== installing ${apt_missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >/dev/null
fi

# playwright-core needs Node 20 or newer (the machine image ships it; Debian 12's own
# nodejs, the fallback above, is 18): say so plainly instead of failing obscurely.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "browser tests need Node >= 20 (found $(node --version))" >&2
  exit 1
fi

# npm ci when node_modules is absent or older than the lockfile.
if [[ ! -f tests/browser/node_modules/.package-lock.json ||
      tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
  echo "== npm ci (tests/browser)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== cargo build (the binary the browser tests start)"
cargo build --locked --bin scanlogin
export SCANLOGIN_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/scanlogin"

echo "== browser tests (node --test, headless Chromium)"
cd tests/browser
exec node --test qr.test.mjs login.test.mjs oidc.test.mjs confirm.test.mjs code.test.mjs
