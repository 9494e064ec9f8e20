#!/usr/bin/env bash
# Run a command with a private PostgreSQL server on 127.0.0.1, then stop that server.
#
# Installs Debian's postgresql when it is missing, creates a throw-away cluster in a
# temporary folder owned by the postgres user (the server refuses to run as root), and
# exports ARSIP_TEST_POSTGRES_URL for the tests. Only the server started here is stopped.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
datadir=$(mktemp -d /tmp/arsip-pg.XXXXXX)
chown postgres:postgres "$datadir"
pg() { runuser -u postgres -- "$@"; }

pg "$bindir/initdb" -D "$datadir/data" -U postgres -A trust --no-sync >/dev/null
pg "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -o \
  "-p $port -k $datadir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
stop() {
  pg "$bindir/pg_ctl" -D "$datadir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$datadir"
}
trap stop EXIT

export ARSIP_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
"$@"
