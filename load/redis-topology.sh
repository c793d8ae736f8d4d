# Sourced by load/cluster-bench.sh and load/commands-per-login.sh (not run by itself):
# a private Redis on loopback in one of the three topologies scanlogin runs on, which of
# its servers are primaries now, and the MONITOR window that load/count-commands.py
# counts. The flags are those of the tests' own (tests/support/redis_cluster.rs,
# redis_sentinel.rs). The caller sets OUT (a scratch directory) and PIDS (what its
# cleanup trap kills); every process started here is added to PIDS.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# A cluster node also listens on its bus port, port + 10000: both must be free.
cluster_port() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p > 55535: continue
    try: socket.socket().bind(("127.0.0.1", p + 10000))
    except OSError: continue
    print(p); break'
}

MASTER_NAME=mymaster
declare -A REDIS_PID=()   # port → pid of every redis-server holding data (sentinels not)
REDIS_MODE=; REDIS_PORTS=(); SENTINEL_PORTS=(); SENTINEL_PIDS=(); REDIS_URL=

# redis_server PORT DIR FLAGS…: one data server, no persistence, its files in DIR (a
# cluster node writes nodes.conf where it runs). Replicas sync at once, not after 5 s.
redis_server() {
  local port=$1 dir=$2; shift 2
  mkdir -p "$dir"
  (cd "$dir" && exec redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --repl-diskless-sync-delay 0 "$@") >"$dir/redis.log" 2>&1 &
  PIDS+=($!); REDIS_PID[$port]=$!; REDIS_PORTS+=("$port")
  for _ in $(seq 50); do redis-cli -p "$port" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "redis-server on port $port did not start" >&2; cat "$dir/redis.log" >&2; return 1
}

# redis_up single|cluster|sentinel: starts it, waits until it is settled, sets REDIS_URL
# (what scanlogin's storage.snapshots takes), REDIS_PORTS, SENTINEL_PORTS.
#   cluster: six nodes, three primaries each with a replica, cluster-node-timeout 2 s (a
#     replica takes over ~2-3 s after its primary dies);
#   sentinel: a primary, one replica, three sentinels (quorum 2), the primary down after
#     1 s; failover-timeout 2 s because a sentinel starts no second failover of the same
#     primary within twice that (the graceful failover, then kill -9 of the new primary).
redis_up() {
  local dir=$OUT/redis-$1 p i
  REDIS_MODE=$1; REDIS_PORTS=(); SENTINEL_PORTS=(); SENTINEL_PIDS=()
  case $1 in
    single)
      p=$(free_port); redis_server "$p" "$dir/$p"
      REDIS_URL=redis://127.0.0.1:$p/0 ;;
    cluster)
      for i in 1 2 3 4 5 6; do
        p=$(cluster_port)
        redis_server "$p" "$dir/$p" --cluster-enabled yes --cluster-node-timeout 2000 --cluster-config-file nodes.conf
      done
      redis-cli --cluster create $(printf '127.0.0.1:%s ' "${REDIS_PORTS[@]}") --cluster-replicas 1 --cluster-yes \
        >"$dir/create.log" 2>&1 || { echo "redis-cli --cluster create failed" >&2; cat "$dir/create.log" >&2; return 1; }
      REDIS_URL=redis+cluster://$(printf '127.0.0.1:%s\n' "${REDIS_PORTS[@]}" | paste -sd,) ;;
    sentinel)
      p=$(free_port); redis_server "$p" "$dir/$p"
      local primary=$p
      p=$(free_port); redis_server "$p" "$dir/$p" --replicaof 127.0.0.1 "$primary"
      for i in 1 2 3; do
        p=$(free_port); mkdir -p "$dir/s$p"
        # A sentinel rewrites its config file: each its own, in its own directory.
        printf '%s\n' "port $p" "bind 127.0.0.1" "dir $dir/s$p" \
          "sentinel monitor $MASTER_NAME 127.0.0.1 $primary 2" \
          "sentinel down-after-milliseconds $MASTER_NAME 1000" \
          "sentinel failover-timeout $MASTER_NAME 2000" >"$dir/s$p/sentinel.conf"
        redis-server "$dir/s$p/sentinel.conf" --sentinel >"$dir/s$p/sentinel.log" 2>&1 &
        PIDS+=($!); SENTINEL_PIDS+=($!); SENTINEL_PORTS+=("$p")
      done
      REDIS_URL=redis+sentinel://$(printf '127.0.0.1:%s\n' "${SENTINEL_PORTS[@]}" | paste -sd,)/$MASTER_NAME ;;
    *) echo "topology: single, cluster or sentinel, not '$1'" >&2; return 1 ;;
  esac
  redis_settled 30 || { echo "the $1 Redis did not settle within 30 s" >&2; return 1; }
}

# redis_down: stops the servers and sentinels of the topology redis_up started last.
redis_down() {
  local p
  for p in "${REDIS_PORTS[@]}"; do kill "${REDIS_PID[$p]}" 2>/dev/null || true; wait "${REDIS_PID[$p]}" 2>/dev/null || true; done
  for p in "${SENTINEL_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

alive() { kill -0 "${REDIS_PID[$1]}" 2>/dev/null; }
cli() { redis-cli -p "$@" 2>/dev/null || true; }

# redis_primaries: the ports of the running servers that are primaries now.
redis_primaries() {
  local p
  for p in "${REDIS_PORTS[@]}"; do
    alive "$p" && [[ $(cli "$p" ROLE | head -1) == master ]] && echo "$p"
  done
  return 0
}

# redis_settled SECS: waits until every running server is a primary or a replica in sync
# with one; on a cluster every running node also says cluster_state:ok; on sentinel
# every sentinel names the same primary, which says so, knows a replica that is not down
# and the two other sentinels (a failover before that finds no one to promote).
redis_settled() {
  local deadline=$((SECONDS + $1)) p ok named
  while ((SECONDS < deadline)); do
    ok=1
    for p in "${REDIS_PORTS[@]}"; do
      alive "$p" || continue
      cli "$p" INFO replication | grep -Eq 'role:master|master_link_status:up' || ok=
      if [[ $REDIS_MODE == cluster ]]; then cli "$p" CLUSTER INFO | grep -q cluster_state:ok || ok=; fi
    done
    for p in "${SENTINEL_PORTS[@]}"; do
      named=$(cli "$p" SENTINEL get-master-addr-by-name $MASTER_NAME | tail -1)
      [[ -n $named && $named == "$(sentinel_primary)" && $(cli "$named" ROLE | head -1) == master ]] || ok=
      cli "$p" SENTINEL REPLICAS $MASTER_NAME | grep -q '^slave$' || ok=
      ! cli "$p" SENTINEL REPLICAS $MASTER_NAME | grep -q s_down || ok=
      (($(cli "$p" SENTINEL SENTINELS $MASTER_NAME | grep -c '^name$') >= 2)) || ok=
    done
    [[ -n $ok ]] && return 0
    sleep 0.2
  done
  return 1
}

# sentinel_primary: the port of the primary as the first sentinel names it.
sentinel_primary() { cli "${SENTINEL_PORTS[0]}" SENTINEL get-master-addr-by-name $MASTER_NAME | tail -1; }

# monitor_start: MONITOR on every primary into $MON/PORT.log; PORT.skip beside it names
# the sentinels' links to that primary (their INFO, PUBLISH of hellos, are not
# scanlogin's). Call it after every set-up call: from here to monitor_stop the calling
# shell sends nothing to a primary, so every other line is scanlogin's.
monitor_start() {
  local p f primaries
  MON=$(mktemp -d "$OUT/monitor.XXXXXX"); MON_PIDS=()
  primaries=$(redis_primaries)
  for p in $primaries; do
    cli "$p" CLIENT LIST | awk '/ name=sentinel-/ { for (i = 1; i <= NF; i++) if ($i ~ /^addr=/) print substr($i, 6) }' >"$MON/$p.skip"
    redis-cli -p "$p" MONITOR >"$MON/$p.log" 2>&1 &
    MON_PIDS+=($!); PIDS+=($!)
  done
  # MONITOR answers OK once it is on: the window starts when every primary has.
  for p in $primaries; do
    f=$MON/$p.log
    for _ in $(seq 100); do [[ -s $f ]] && break; sleep 0.05; done
  done
}

# monitor_stop: ends the window (a moment first for the last lines to arrive).
monitor_stop() {
  local p
  sleep 0.3
  for p in "${MON_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# count_commands LOGINS [SUMMARY]: prints the count of the last window (SUMMARY gets
# "sent inside sandbox", as printed).
count_commands() { python3 "$ROOT/load/count-commands.py" --logins "$1" ${2:+--summary "$2"} "$MON"/*.log; }
