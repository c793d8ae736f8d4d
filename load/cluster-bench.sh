#!/usr/bin/env bash
# Cluster benchmark (by hand, not in CI): three nodes behind nginx on each Redis topology
# scanlogin runs on (load/redis-topology.sh: one server; a Redis Cluster of 3 primaries
# and 3 replicas; Sentinel with a primary, a replica and 3 sentinels), and one node
# against three on the single server; all on this machine's loopback, one PostgreSQL
# database. Prints, and writes between the cluster-bench markers of load/REPORT.md:
#   - per topology: full logins/s, and Redis commands per full login: MONITOR on every
#     primary during a login run, counted by load/count-commands.py (a script call is one
#     command sent; what scripts run inside Redis apart; the sandbox's keys, which
#     production does not have, in neither);
#   - on Cluster and Sentinel, the failover error window: while logins run through nginx,
#     kill -9 of a primary (cluster: the one holding most keys; sentinel: the one the
#     sentinels name), and on Sentinel also a graceful `SENTINEL FAILOVER`. A probe
#     creates a QR code through nginx every 50 ms; the window is the last failing probe's
#     start minus the first's (0 when none failed), beside the logins the load tool saw
#     fail. The service must come back by itself: probes succeed again within 20 s of
#     the loss, or the script says so and fails;
#   - on the single server, as before: full logins/s and status polls/s, 1 node vs 3 (on
#     2 cores three nodes show the cost of the shared store, not a gain: they share the
#     same two cores); cross-node wake latency p50/p99 (held polls and scans spread over
#     the nodes by nginx's round robin: most scans land on another node than the poll
#     they wake); compare-and-set conflicts per 1,000 committed transitions under a
#     duplicate-push storm (every push re-sent, as WeChat retries, to whichever node
#     nginx picks).
#
#   bash load/cluster-bench.sh                  # ~5 min after the release build
#   QUICK=1 bash load/cluster-bench.sh          # shorter windows, ~2 min
#   BIN=/some/dir bash load/cluster-bench.sh    # that directory's scanlogin and load, no build
#
# Needs: redis-server and redis-cli, PostgreSQL on 127.0.0.1:5432 with the scanlogin_test
# login (scripts/services.sh makes it), nginx, jq, curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mktemp -d /tmp/scanlogin-cluster-bench.XXXXXX)
if [[ -n "${QUICK:-}" ]]; then SECS=5; HOLD_N=500; COUNT_SECS=3; FAIL_SECS=10
else SECS=15; HOLD_N=2000; COUNT_SECS=6; FAIL_SECS=15; fi
LOGIN_USERS=32; POLL_CONNS=64
# The count and the failover runs: 8 users (a few hundred logins a second, not thousands:
# MONITOR and its client cost Redis time). The primary is lost KILL_AT s into a failover
# run; the service must answer again within RESUME_SECS of that.
FEW_USERS=8; KILL_AT=2; RESUME_SECS=20

if [[ -n "${BIN:-}" ]]; then
  echo "== using $BIN/scanlogin and $BIN/load (BIN set: no build)"
  BUILT=", binaries from \`$BIN\`"
else
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release; BUILT=
  echo "== building release (service, load tool)"
  cargo build --release --workspace --locked >/dev/null
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PATH=$PATH:/usr/sbin   # nginx, where Debian puts it
for c in redis-server redis-cli nginx jq curl psql python3; do command -v $c >/dev/null || { echo "needs $c" >&2; exit 1; }; done

DB=scanlogin_bench_$$
PIDS=()   # everything started: nodes, nginx, Redis servers and sentinels, probes, MONITORs
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PGPASSWORD=scanlogin_test dropdb -h 127.0.0.1 -U scanlogin_test --if-exists --force "$DB" 2>/dev/null || true
}
trap cleanup EXIT
source load/redis-topology.sh
PGPASSWORD=scanlogin_test createdb -h 127.0.0.1 -U scanlogin_test "$DB"

NGINX_PORT=$(free_port)
NODE_PORTS=($(free_port) $(free_port) $(free_port))
NODE_PIDS=()
FRONT=http://127.0.0.1:$NGINX_PORT

# node I PUBLIC_URL: node I of the cluster, on the Redis that redis_up started last, its
# WeChat sandbox reached at PUBLIC_URL.
node() {
  local port=${NODE_PORTS[$1]}
  SCANLOGIN__CLUSTER__ENABLED=true SCANLOGIN__CLUSTER__NODE_ID=node$(($1 + 1)) \
  SCANLOGIN__SERVER__BIND=127.0.0.1:$port SCANLOGIN__SERVER__PUBLIC_URL=$2 \
  SCANLOGIN__SERVER__TRUSTED_PROXIES='["127.0.0.1/32"]' \
  SCANLOGIN__WECHAT__SANDBOX_PUBLIC=true SCANLOGIN__TOKEN__SECRET=cluster-bench-secret-of-at-least-32-bytes \
  SCANLOGIN__STORAGE__SNAPSHOTS=$REDIS_URL \
  SCANLOGIN__STORAGE__DATABASE_URL=postgres://scanlogin_test:scanlogin_test@127.0.0.1:5432/$DB \
  SCANLOGIN__LIMITS__QR_PER_IP_PER_MINUTE=1000000000 SCANLOGIN__LIMITS__QR_PER_IP_PER_DAY=1000000000 \
  SCANLOGIN__LIMITS__QR_PER_NETWORK_PER_DAY=1000000000 SCANLOGIN__LIMITS__CODE_FAILURES_PER_IP_PER_DAY=1000000000 \
  SCANLOGIN__LIMITS__QR_PER_APP_PER_DAY=1000000000 SCANLOGIN__LIMITS__SMS_PER_IP_PER_DAY=1000000000 \
  SCANLOGIN__LIMITS__BIND_PER_IP_PER_DAY=1000000000 SCANLOGIN__LIMITS__LONG_POLLS_PER_IP=1000000 \
  SCANLOGIN__LIMITS__LONG_POLLS_MAX=$(( $(ulimit -n) - 1024 )) SCANLOGIN__LIMITS__CONNECTIONS_PER_IP=1000000000 RUST_LOG=warn \
    "$BIN/scanlogin" >>"$OUT/node$1.log" 2>&1 &
  PIDS+=($!); NODE_PIDS+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && return 0; sleep 0.1; done
  echo "node $1 did not become ready" >&2; cat "$OUT/node$1.log" >&2; exit 1
}
nodes_down() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
}

# nginx stays up from the first three nodes to the end: the nodes of every topology come
# back on the same ports (max_fails=0 in the config: a node that was away is not shunned).
nginx_up() {
  mkdir -p "$OUT/nginx"
  awk -v out="$OUT/nginx" -v listen="$NGINX_PORT" -v ports="${NODE_PORTS[*]}" '
    BEGIN { split(ports, p, " "); n = 0 }
    /# test: node/ { n++; sub(/127\.0\.0\.1:[0-9]+/, "127.0.0.1:" p[n]); print; next }
    /# test: listen/ { print "        listen 127.0.0.1:" listen ";"; next }
    /# test: pid/ { print "pid " out "/nginx.pid;"; next }
    /# test: error_log/ { print "error_log " out "/error.log warn;"; next }
    /# test: temp/ { sub(/\/var\/lib\/nginx/, out); print; next }
    # One load host is every client: the per-address connection cap would stop the volume.
    /limit_conn per_client/ { sub(/[0-9]+;/, "60000;"); print; next }
    # 2,000 held polls are 4,000 connections (client and node side) before any scan: the
    # example'"'"'s 4,096 per worker made nginx close some ("worker_connections are not
    # enough"), 5,000+ transport errors in the hold run.
    /worker_connections/ { sub(/[0-9]+;/, "16384;"); print; next }
    { print }' config/nginx.example.conf >"$OUT/nginx.conf"
  nginx -p "$OUT/nginx" -c "$OUT/nginx.conf" -g 'daemon off;' >"$OUT/nginx.out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do curl -s -o /dev/null "$FRONT/healthz" && return 0; sleep 0.1; done
  echo "nginx did not start" >&2; cat "$OUT/nginx.out" "$OUT/nginx/error.log" >&2 2>/dev/null; exit 1
}

load() { "$BIN/load" "$@" --quiet; }
step() { jq -r --arg s "$2" ".steps[] | select(.name == \$s) | .$3" "$1"; }
node_metric() { # NAME: summed over the three nodes
  local sum=0
  for p in "${NODE_PORTS[@]}"; do
    v=$(curl -s "http://127.0.0.1:$p/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" { s += $2 } END { print s + 0 }')
    sum=$(python3 -c "print($sum + $v)")
  done
  echo "$sum"
}

# commands TOPO: a login run through nginx with MONITOR on every primary; prints the
# count and keeps "sent inside sandbox" (as printed) in $OUT/cmds-TOPO.
commands() {
  echo "-- Redis commands per login ($1: MONITOR on every primary, ${COUNT_SECS} s of logins)"
  monitor_start
  load login --target "$FRONT" --users $FEW_USERS --duration ${COUNT_SECS}s --json "$OUT/count-$1.json" >"$OUT/count-$1.txt"
  monitor_stop
  count_commands "$(step "$OUT/count-$1.json" "login total" count)" "$OUT/cmds-$1"
}

# probe: a QR code created through nginx every 50 ms, "start-time HTTP-status" a line
# (000: no answer within 2 s), until killed.
probe() {
  local t s
  while :; do
    t=$EPOCHREALTIME
    s=$(curl -s -o /dev/null -m 2 -w '%{http_code}' -X POST -H 'content-type: application/json' \
      -d '{"image":false}' "$FRONT/api/v1/login/qrcode" || true)
    echo "$t $s"
    sleep 0.05
  done
}
# probe_stats LOG: "failed all first last run": the failing probes (not 2xx), all, the
# first and last failing one's start (0 when none), and the successes in a row at the end.
probe_stats() {
  awk 'NF < 2 { next } { n++ } $2 ~ /^2/ { run++; next } { if (!bad) first = $1; bad++; last = $1; run = 0 }
       END { printf "%d %d %s %s %d\n", bad, n, bad ? first : 0, bad ? last : 0, run }' "$1"
}

# failover TOPO kill|graceful: logins (load tool) and probes through nginx; KILL_AT s in,
# kill -9 of the primary, or `SENTINEL FAILOVER`. Waits until the service answers again
# by itself (20 probes in a row succeed) or RESUME_SECS have passed (then fails). Prints
# the window and keeps "window failed-logins logins" in $OUT/fo-TOPO-HOW.
failover() {
  local topo=$1 how=$2 log=$OUT/probe-$1-$2.log json=$OUT/failover-$1-$2.json
  local victim keys p k event probe_pid load_pid what
  if [[ $how == kill && $topo == cluster ]]; then   # the primary holding most keys
    keys=-1
    for p in $(redis_primaries); do k=$(cli "$p" DBSIZE); ((k > keys)) && { keys=$k; victim=$p; }; done
    what="kill -9 of the primary on port $victim ($keys keys)"
  elif [[ $how == kill ]]; then
    victim=$(sentinel_primary); what="kill -9 of the primary on port $victim (the sentinels' choice)"
  else
    what="SENTINEL FAILOVER (primary on port $(sentinel_primary) handed over)"
  fi
  echo "-- failover on $topo: $what, ${KILL_AT} s into ${FAIL_SECS} s of logins by $FEW_USERS users"
  probe >"$log" & probe_pid=$!; PIDS+=($probe_pid)
  # Its stderr too: it explains each 503 it meets, which here are the point.
  load login --target "$FRONT" --users $FEW_USERS --duration ${FAIL_SECS}s --json "$json" >"$OUT/failover-$1-$2.txt" 2>&1 &
  load_pid=$!; PIDS+=($load_pid)
  sleep $KILL_AT
  event=$EPOCHREALTIME
  if [[ $how == kill ]]; then
    # (waited for here, so that bash does not print its "Killed" line)
    { kill -9 "${REDIS_PID[$victim]}"; wait "${REDIS_PID[$victim]}"; } 2>/dev/null || true
  else
    [[ $(cli "${SENTINEL_PORTS[0]}" SENTINEL FAILOVER $MASTER_NAME) == OK ]] || { echo "SENTINEL FAILOVER refused" >&2; exit 1; }
  fi
  wait $load_pid || { echo "FAIL: the load tool stopped:" >&2; cat "$OUT/failover-$1-$2.txt" >&2; exit 1; }
  while (( $(probe_stats "$log" | cut -d' ' -f5) < 20 )); do
    if python3 -c "import sys, time; sys.exit(time.time() < $event + $RESUME_SECS)"; then
      echo "FAIL: $topo did not answer again within $RESUME_SECS s of the $how (probes: $log, nodes: $OUT/node*.log)" >&2
      tail -5 "$log" >&2; exit 1
    fi
    sleep 0.2
  done
  kill $probe_pid; wait $probe_pid 2>/dev/null || true
  local bad all first last run window ok failed kinds codes gap
  read -r bad all first last run < <(probe_stats "$log")
  window=$(python3 -c "print(f'{max($last - $first, 0):.1f}')")
  # One probe at a time: the window is only as fine as the time from one start to the next.
  gap=$(awk 'NF == 2 { if (n++) s += $1 - p; p = $1 } END { printf "%.2f", (n > 1 ? s / (n - 1) : 0) }' "$log")
  ok=$(step "$json" "login total" count); ok=${ok:-0}
  failed=$(jq '[.errors | to_entries[] | select(.key | startswith("setup ") | not) | .value] | add // 0' "$json")
  kinds=$(jq -r '[.errors | to_entries[] | select(.key | startswith("setup ") | not) | "\(.key) ×\(.value)"] | join(", ")' "$json")
  codes=$(awk 'NF == 2 && $2 !~ /^2/ { c[$2]++ } END { for (k in c) printf "%s%s ×%d", (n++ ? ", " : ""), k, c[k] }' "$log")
  if ((bad > 0)); then
    echo "   probes (one every $gap s): $bad of $all failed (${codes}), from $(python3 -c "print(f'{$first - $event:+.1f}')") s to $(python3 -c "print(f'{$last - $event:+.1f}')") s after it: window ${window} s"
  else
    echo "   probes (one every $gap s): none of $all failed: window ${window} s"
  fi
  echo "   load tool: $failed logins failed, $ok succeeded${kinds:+ ($kinds)}"
  echo "   answering again by itself: yes (20 probes in a row succeeded)"
  echo "$window $failed $((ok + failed))" >"$OUT/fo-$topo-$how"
  echo "${kinds:-none}" >"$OUT/fo-$topo-$how.kinds"
}

# ---- single Redis server -------------------------------------------------------------
redis_up single
echo "== single Redis: 1 node (direct)"
ONE=http://127.0.0.1:${NODE_PORTS[0]}
node 0 "$ONE"
load login --target "$ONE" --users $LOGIN_USERS --duration ${SECS}s --json "$OUT/login-1.json"
load poll-storm --target "$ONE" --users $POLL_CONNS --duration ${SECS}s --json "$OUT/poll-1.json"
nodes_down
cli "${REDIS_PORTS[0]}" FLUSHALL >/dev/null

echo "== single Redis: 3 nodes behind nginx"
for i in 0 1 2; do node $i "$FRONT"; done
nginx_up
load login --target "$FRONT" --users $LOGIN_USERS --duration ${SECS}s --json "$OUT/login-single.json"
commands single
load poll-storm --target "$FRONT" --users $POLL_CONNS --duration ${SECS}s --json "$OUT/poll-3.json"
load hold --target "$FRONT" --users $HOLD_N --rate 50 --duration ${SECS}s --json "$OUT/hold-3.json"
T0=$(node_metric scanlogin_transitions_total); C0=$(node_metric scanlogin_cluster_cas_conflicts_total)
load callbacks --target "$FRONT" --users 2000 --rate 1000 --duplicates 1.0 --duration ${SECS}s --json "$OUT/cb-3.json"
T1=$(node_metric scanlogin_transitions_total); C1=$(node_metric scanlogin_cluster_cas_conflicts_total)
nodes_down; redis_down

# ---- Redis Cluster and Sentinel ------------------------------------------------------
for topo in cluster sentinel; do
  redis_up $topo
  echo "== $topo ($REDIS_URL): 3 nodes behind nginx"
  for i in 0 1 2; do node $i "$FRONT"; done
  load login --target "$FRONT" --users $LOGIN_USERS --duration ${SECS}s --json "$OUT/login-$topo.json"
  commands $topo
  if [[ $topo == sentinel ]]; then
    # First the graceful one, both servers up; then kill -9 of the new primary, once the
    # old one follows it and the sentinels know it again.
    failover sentinel graceful
    redis_settled 30 || { echo "FAIL: the sentinel set did not settle after SENTINEL FAILOVER" >&2; exit 1; }
  fi
  failover $topo kill
  nodes_down; redis_down
done

# ---- report --------------------------------------------------------------------------
L1=$(step "$OUT/login-1.json" "login total" per_sec); L3=$(step "$OUT/login-single.json" "login total" per_sec)
P1=$(step "$OUT/poll-1.json" poll per_sec); P3=$(step "$OUT/poll-3.json" poll per_sec)
W50=$(step "$OUT/hold-3.json" wake p50_ms); W99=$(step "$OUT/hold-3.json" wake p99_ms)
CONFLICTS=$(python3 -c "d = $T1 - $T0; print(round(1000 * ($C1 - $C0) / d, 1) if d > 0 else 'n/a')")
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
logins() { printf %.0f "$(step "$OUT/login-$1.json" "login total" per_sec)"; }
cmds() { local s i b; read -r s i b <"$OUT/cmds-$1"; echo "$s / $i"; }
sandbox() { local s i b; read -r s i b <"$OUT/cmds-$1"; echo "$b"; }
window() { local w f n; read -r w f n <"$OUT/fo-$1-$2"; echo "$w s ($f of $n logins failed)"; }
kinds() { cat "$OUT/fo-$1-$2.kinds"; }

report=$(cat <<EOF
Measured $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD) by \`bash load/cluster-bench.sh\`${QUICK:+ (QUICK)}${BUILT},
2 cores, host load at the end: $LOADAVG. Three nodes behind nginx (config/nginx.example.conf),
one PostgreSQL database, each Redis topology private on loopback; load tool on the same cores.

| 3 nodes behind nginx | single Redis | Redis Cluster (3 primaries + 3 replicas) | Sentinel (primary + replica, 3 sentinels) |
|---|---|---|---|
| full logins/s, $LOGIN_USERS users | $(logins single) | $(logins cluster) | $(logins sentinel) |
| Redis commands per full login: sent / inside scripts | $(cmds single) | $(cmds cluster) | $(cmds sentinel) |
| failover error window, kill -9 of a primary | — (no replica) | $(window cluster kill) | $(window sentinel kill) |
| failover error window, \`SENTINEL FAILOVER\` | — | — | $(window sentinel graceful) |

- Commands per login: \`redis-cli MONITOR\` on every primary during ${COUNT_SECS} s of logins by
  $FEW_USERS users (load/count-commands.py; \`bash load/commands-per-login.sh single|cluster|sentinel\`
  prints the breakdown by command and key family). A script call (EVALSHA) counts one sent
  command; the commands scripts run inside Redis are the second figure. In neither: the
  nodes' once-a-second PING, and the sandbox's own keys (\`sl:sbx:*\`, WeChat's stand-in,
  which production does not have): $(sandbox single) / $(sandbox cluster) / $(sandbox sentinel) more per login.
- Failover error window: while $FEW_USERS users log in through nginx, the primary is lost ${KILL_AT} s in
  (Cluster: the primary holding most keys; Sentinel: first \`SENTINEL FAILOVER\`, then kill -9
  of the new primary); a probe creates a QR code through nginx, one at a time 50 ms apart,
  and the window runs from the first failing probe's start to the last's (0 when none
  failed). Each time the service answered again by itself, within ${RESUME_SECS} s (the script
  fails otherwise). The failed logins are the load tool's, by kind: Cluster kill -9:
  $(kinds cluster kill); Sentinel kill -9: $(kinds sentinel kill);
  \`SENTINEL FAILOVER\`: $(kinds sentinel graceful).

Single Redis, one node against three:

| figure | 1 node | 3 nodes | 3 ÷ 1 |
|---|---|---|---|
| full logins/s, $LOGIN_USERS users | $(printf %.0f "$L1") | $(printf %.0f "$L3") | $(python3 -c "print(round($L3 / $L1, 2))") |
| status polls/s, $POLL_CONNS connections | $(printf %.0f "$P1") | $(printf %.0f "$P3") | $(python3 -c "print(round($P3 / $P1, 2))") |

- Cross-node wake, $HOLD_N held polls, 50 scans/s through nginx: p50 **$(printf %.1f "$W50") ms**, p99 **$(printf %.1f "$W99") ms** (goal: p99 ≤ 50 ms).
- Compare-and-set conflicts under a duplicate-push storm (every push sent twice, 1,000/s):
  **$CONFLICTS per 1,000 committed transitions** — the shared dedup lease stops a re-sent
  push before it reaches the engine, so conflicts come only from different events racing
  on one attempt (two scanners, polls racing a scan), which this storm does not make.
- Three nodes on two cores are overhead, not gain: the nodes, nginx, Redis and the load
  tool share the same cores, and every transition is a Redis round trip instead of an
  in-process message. The gain of several nodes is availability (a node can die or be
  restarted without a failed login) and, on separate hosts, capacity.
EOF
)
echo
echo "$report"
python3 - "$report" <<'PY'
import re, sys
path = "load/REPORT.md"
text = open(path).read()
block = "<!-- cluster-bench:start -->\n" + sys.argv[1] + "\n<!-- cluster-bench:end -->"
if "<!-- cluster-bench:start -->" in text:
    text = re.sub(r"<!-- cluster-bench:start -->.*?<!-- cluster-bench:end -->", lambda m: block, text, flags=re.S)
else:
    text = text.rstrip() + "\n\n## Many nodes (load/cluster-bench.sh)\n" + block + "\n"
open(path, "w").write(text)
PY
echo "== load/REPORT.md updated (cluster-bench block); raw reports in $OUT"
