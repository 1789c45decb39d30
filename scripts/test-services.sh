#!/usr/bin/env bash
# Starts the real servers the tests use (PostgreSQL on loopback) and prints the environment
# variables that point the tests at them:   eval "$(scripts/test-services.sh)"
# Idempotent: a server already running on the port is reused.
set -euo pipefail
PORT="${UMBRA_TEST_PG_PORT:-55432}"
DIR="${UMBRA_TEST_PG_DIR:-/tmp/umbra-test-pg}"
BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$BIN" ]; then
  echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2
  exit 1
fi
as_pg() {
  # PostgreSQL refuses to run as root; use the postgres system user when we are root.
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if ! as_pg "$BIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  if [ ! -f "$DIR/PG_VERSION" ]; then
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR" -U postgres -A trust --no-sync >/dev/null
  fi
  as_pg "$BIN/pg_ctl" -D "$DIR" -l "$DIR/server.log" -w -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
echo "export UMBRA_TEST_PG_URL=postgres://postgres@127.0.0.1:$PORT/postgres"
