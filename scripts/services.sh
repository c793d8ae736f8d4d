#!/usr/bin/env bash
# Makes sure the services the tests talk to exist and run: Redis, PostgreSQL, MariaDB.
# Installs a missing one from Debian's packages, starts a stopped one, waits until each
# answers. Idempotent; safe to run on a machine where they already run.
set -euo pipefail

need_install=()
command -v redis-server >/dev/null || need_install+=(redis-server)
command -v pg_ctlcluster >/dev/null || need_install+=(postgresql)
command -v mariadbd >/dev/null || [[ -x /usr/sbin/mariadbd ]] || need_install+=(mariadb-server)
if ((${#need_install[@]})); then
  echo "services: installing ${need_install[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

wait_for() { # name, command
  for _ in $(seq 1 60); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $1 did not come up" >&2
  return 1
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "services: starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for redis "redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG"

if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  echo "services: starting postgresql"
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
fi
wait_for postgresql "pg_isready -h 127.0.0.1 -p 5432"

if ! mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; then
  echo "services: starting mariadb"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for mariadb "mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping"
echo "services: redis, postgresql, mariadb up"
