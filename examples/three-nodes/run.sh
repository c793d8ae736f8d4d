#!/usr/bin/env bash
# Three scanlogin nodes on one machine behind nginx, in cluster mode: the recipe of the
# README's "Several nodes". Runs until Ctrl-C (or SIGTERM), then stops everything.
#
#   bash examples/three-nodes/run.sh
#
# Needs Redis on 127.0.0.1:6379, PostgreSQL on 127.0.0.1:5432 with the login of
# cluster.toml (`scripts/services.sh` makes it), nginx (`apt-get install nginx-light`),
# and makes the database `scanlogin_three` if it is missing. Nodes on 8081–8083, nginx on
# 8080 (config/nginx.example.conf, with its pid, log and temp paths moved to a temp dir);
# open http://127.0.0.1:8080/ and the sandbox phone at http://127.0.0.1:8080/_sandbox/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
RUN=$(mktemp -d /tmp/scanlogin-three.XXXXXX)
export PATH="$PATH:/usr/sbin"

command -v nginx >/dev/null || { echo "needs nginx: apt-get install nginx-light" >&2; exit 2; }
redis-cli -p 6379 ping >/dev/null || { echo "needs Redis on 127.0.0.1:6379" >&2; exit 2; }
export PGPASSWORD=scanlogin_test
psql -h 127.0.0.1 -U scanlogin_test -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'scanlogin_three'" \
  | grep -q 1 || createdb -h 127.0.0.1 -U scanlogin_test scanlogin_three

cargo build --release --quiet --bin scanlogin
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/scanlogin

PIDS=()
stop() {
  trap - INT TERM EXIT
  [[ -f $RUN/nginx.pid ]] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped (logs in $RUN)"
}
trap stop INT TERM EXIT

# The nodes one after the other: the first runs the migrations and makes the signing keys.
for i in 1 2 3; do
  SCANLOGIN__SERVER__BIND=127.0.0.1:808$i SCANLOGIN__CLUSTER__NODE_ID=node$i \
    "$BIN" serve --config examples/three-nodes/cluster.toml >"$RUN/node$i.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf http://127.0.0.1:808$i/readyz >/dev/null && break; sleep 0.2; done
  curl -sf http://127.0.0.1:808$i/readyz >/dev/null || { echo "node$i did not start:"; tail "$RUN/node$i.log"; exit 1; }
done

# The shipped nginx.conf, only its pid, error log and temp paths moved into $RUN.
sed -E -e "s|^(\s*)pid .*# test: pid|\1pid $RUN/nginx.pid;|" \
       -e "s|^(\s*)error_log .*# test: error_log|\1error_log $RUN/nginx-error.log warn;|" \
       -e "s|^(\s*)([a-z_]+)_temp_path .*# test: temp|\1\2_temp_path $RUN/\2;|" \
       config/nginx.example.conf >"$RUN/nginx.conf"
nginx -c "$RUN/nginx.conf" -p "$RUN"
for _ in $(seq 50); do curl -sf http://127.0.0.1:8080/readyz >/dev/null && break; sleep 0.1; done
echo "three nodes behind nginx: http://127.0.0.1:8080/ (nodes 8081-8083; logs in $RUN); Ctrl-C stops them"
wait "${PIDS[@]}"
