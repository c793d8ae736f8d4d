#!/usr/bin/env bash
# Redis commands per full login, a small run by hand (not CI, not the benchmark): one
# cluster-mode node on $1 = single | cluster | sentinel (load/redis-topology.sh), the load
# tool's login scenario, and `redis-cli MONITOR` on every primary for the measured run,
# counted by load/count-commands.py: commands sent (a script call is one), those run
# inside scripts, the sandbox's own (not in production), and by command and key family.
#   bash load/commands-per-login.sh single|cluster|sentinel
#   BIN=/some/dir bash load/commands-per-login.sh single   # its scanlogin and load, not
#                                                           # the debug build's
# The debug build: `cargo build -p scanlogin -p scanlogin-load`.
set -euo pipefail
MODE=${1:?single, cluster or sentinel}; cd "$(dirname "$0")/.."; ROOT=$PWD
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}; OUT=$(mktemp -d); DB=cpl_$$
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null || true; done; wait 2>/dev/null || true
  PGPASSWORD=scanlogin_test dropdb -h 127.0.0.1 -U scanlogin_test --if-exists --force $DB || true' EXIT
source load/redis-topology.sh
redis_up "$MODE"
PGPASSWORD=scanlogin_test createdb -h 127.0.0.1 -U scanlogin_test $DB
NP=$(free_port)
SCANLOGIN__CLUSTER__ENABLED=true SCANLOGIN__SERVER__BIND=127.0.0.1:$NP SCANLOGIN__SERVER__PUBLIC_URL=http://127.0.0.1:$NP \
SCANLOGIN__TOKEN__SECRET=cluster-bench-secret-of-at-least-32-bytes SCANLOGIN__STORAGE__SNAPSHOTS=$REDIS_URL \
SCANLOGIN__STORAGE__DATABASE_URL=postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432/$DB \
SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE=1000000000 SCANLOGIN__LIMITS__QR_PER_IP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__QR_PER_NETWORK_PER_DAY=1000000000 SCANLOGIN__LIMITS__QR_PER_APP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__SMS_PER_IP_PER_DAY=1000000000 SCANLOGIN__LIMITS__BIND_PER_IP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__CODE_FAILURES_PER_IP_PER_DAY=1000000000 RUST_LOG=warn $BIN/scanlogin >$OUT/node.log 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$NP/readyz && break; sleep 0.1; done
curl -sf -o /dev/null http://127.0.0.1:$NP/readyz || { echo "the node did not become ready" >&2; cat $OUT/node.log >&2; exit 1; }
# Warm up first: the scripts loaded, the connections made, the access token fetched, are
# once per node, not per login.
$BIN/load login --target http://127.0.0.1:$NP --users 4 --duration 2s --quiet >/dev/null
monitor_start
$BIN/load login --target http://127.0.0.1:$NP --users 4 --duration 6s --quiet --json $OUT/l.json >/dev/null
monitor_stop
N=$(jq -r '.steps[] | select(.name == "login total") | .count' $OUT/l.json)
echo "$MODE ($REDIS_URL), 4 users (each one's first login binds a phone):"
count_commands "$N"
