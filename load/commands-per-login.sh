#!/usr/bin/env bash
# Redis commands per full login, a small run by hand (not CI, not the benchmark): one
# cluster-mode node (the debug build: `cargo build -p scanlogin -p scanlogin-load`) on
# $1 = single | cluster, the load tool's login scenario, INFO commandstats summed
# over the primaries (a replica counts the writes it applies again).
set -euo pipefail
#   bash load/commands-per-login.sh single|cluster
MODE=${1:?single or cluster}; cd "$(dirname "$0")/.."; BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug; OUT=$(mktemp -d)
fp() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=(); trap 'for p in "${PIDS[@]}"; do kill $p 2>/dev/null; done; PGPASSWORD=scanlogin_test dropdb -h 127.0.0.1 -U scanlogin_test --if-exists cpl_$$' EXIT
PORTS=()
if [[ $MODE == single ]]; then
  P=$(fp); redis-server --port $P --bind 127.0.0.1 --save "" --dir $OUT >/dev/null & PIDS+=($!); PORTS=($P); URL=redis://127.0.0.1:$P/0
else
  for i in 1 2 3 4 5 6; do while :; do P=$(fp); [[ $P -le 55535 ]] && break; done; mkdir $OUT/$P
    (cd $OUT/$P && exec redis-server --port $P --bind 127.0.0.1 --save "" --cluster-enabled yes --cluster-node-timeout 2000 --repl-diskless-sync-delay 0) >/dev/null & PIDS+=($!); PORTS+=($P); done
  sleep 0.5; redis-cli --cluster create $(for p in "${PORTS[@]}"; do echo 127.0.0.1:$p; done) --cluster-replicas 1 --cluster-yes >/dev/null; sleep 2
  URL=redis+cluster://127.0.0.1:${PORTS[0]},127.0.0.1:${PORTS[1]}
fi
sleep 0.3
PGPASSWORD=scanlogin_test createdb -h 127.0.0.1 -U scanlogin_test cpl_$$
NP=$(fp)
SCANLOGIN__CLUSTER__ENABLED=true SCANLOGIN__SERVER__BIND=127.0.0.1:$NP SCANLOGIN__SERVER__PUBLIC_URL=http://127.0.0.1:$NP \
SCANLOGIN__TOKEN__SECRET=cluster-bench-secret-of-at-least-32-bytes SCANLOGIN__STORAGE__SNAPSHOTS=$URL \
SCANLOGIN__STORAGE__DATABASE_URL=postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432/cpl_$$ \
SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE=1000000000 SCANLOGIN__LIMITS__QR_PER_IP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__QR_PER_NETWORK_PER_DAY=1000000000 SCANLOGIN__LIMITS__QR_PER_APP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__SMS_PER_IP_PER_DAY=1000000000 SCANLOGIN__LIMITS__BIND_PER_IP_PER_DAY=1000000000 \
SCANLOGIN__LIMITS__CODE_FAILURES_PER_IP_PER_DAY=1000000000 RUST_LOG=warn $BIN/scanlogin >$OUT/node.log 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:$NP/readyz && break; sleep 0.1; done
prim() { for p in "${PORTS[@]}"; do [[ $(redis-cli -p $p ROLE | head -1) == master ]] && echo $p; done; }
calls() { for p in $(prim); do redis-cli -p $p INFO commandstats; done | awk -F'[=,:]' '/^cmdstat_/ { s += $3 } END { print s + 0 }'; }
stats() { for p in $(prim); do redis-cli -p $p INFO commandstats; done | awk -F'[=,:]' '/^cmdstat_/ { c[$1] += $3 } END { for (k in c) print c[k], k }' | sort -rn; }
$BIN/load login --target http://127.0.0.1:$NP --users 4 --duration 3s --quiet >/dev/null   # warm: users registered
for p in "${PORTS[@]}"; do redis-cli -p $p CONFIG RESETSTAT >/dev/null; done
$BIN/load login --target http://127.0.0.1:$NP --users 4 --duration 6s --quiet --json $OUT/l.json >/dev/null
C=$(calls); N=$(jq -r '.steps[] | select(.name == "login total") | .count' $OUT/l.json)
echo "$MODE: $C commands / $N logins = $(python3 -c "print(round($C/$N,1))") per login"; stats | head -14
