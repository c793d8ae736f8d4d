#!/usr/bin/env bash
# Makes sure the servers the tests talk to are installed, running and answering:
# Redis on 6379, PostgreSQL on 5432, MariaDB on 3306, each with the `scanlogin_test`
# login the repository tests use (password `scanlogin_test`; PostgreSQL may create
# databases, MariaDB may create `scanlogin_test_*` databases). Installs a missing server
# with apt-get, starts a stopped one, and waits until each answers. Idempotent; needs root
# for installing and starting. Called by scripts/test.sh (and so by .ci/run).
set -euo pipefail

log() { echo "== services: $*"; }

wait_for() { # what, command...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "services: $what does not answer after 30 s" >&2
  return 1
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v pg_isready >/dev/null 2>&1 || missing+=(postgresql-client)
[[ -x /usr/sbin/mariadbd ]] || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Redis: the shared one on 6379 (tests that kill or pause Redis run their own).
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
wait_for redis redis-cli -h 127.0.0.1 -p 6379 ping

# PostgreSQL: the newest installed cluster.
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  log "starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
fi
wait_for postgresql pg_isready -h 127.0.0.1 -p 5432 -q
runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'scanlogin_test') THEN
    CREATE ROLE scanlogin_test LOGIN CREATEDB PASSWORD 'scanlogin_test';
  END IF;
END $$;
SQL

# MariaDB.
if ! mariadb-admin --protocol=socket ping >/dev/null 2>&1; then
  log "starting mariadb"
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
wait_for mariadb mariadb-admin --protocol=socket ping
mariadb --protocol=socket <<'SQL'
CREATE USER IF NOT EXISTS 'scanlogin_test'@'localhost' IDENTIFIED BY 'scanlogin_test';
CREATE USER IF NOT EXISTS 'scanlogin_test'@'127.0.0.1' IDENTIFIED BY 'scanlogin_test';
GRANT ALL PRIVILEGES ON `scanlogin\_test\_%`.* TO 'scanlogin_test'@'localhost';
GRANT ALL PRIVILEGES ON `scanlogin\_test\_%`.* TO 'scanlogin_test'@'127.0.0.1';
SQL
wait_for "mariadb over TCP" mariadb -h 127.0.0.1 -P 3306 -u scanlogin_test -pscanlogin_test -e 'SELECT 1'
log "redis, postgresql and mariadb answer"
