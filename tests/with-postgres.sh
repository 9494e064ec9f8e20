#!/usr/bin/env bash
# Run a command with a private PostgreSQL server on 127.0.0.1, then stop that server.
#
# Installs Debian's postgresql (and its rum extension, for ranked search) when missing,
# creates a throw-away cluster in a temporary folder owned by the postgres user (the server
# refuses to run as root), clones it with pg_basebackup into a streaming replica on another
# loopback port, and exports ARSIP_TEST_POSTGRES_URL and ARSIP_TEST_POSTGRES_REPLICA_URL for
# the tests. Only the servers started here are stopped.
set -euo pipefail

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "installing PostgreSQL (Debian package postgresql)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bindir=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")
major=$(basename "$(dirname "$bindir")")
if [ ! -f "/usr/share/postgresql/$major/extension/rum.control" ]; then
  echo "installing the rum extension (Debian package postgresql-$major-rum)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$major-rum" >/dev/null ||
    echo "postgresql-$major-rum is not available: search ranks without RUM" >&2
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
replica_port=$(free_port)
datadir=$(mktemp -d /tmp/arsip-pg.XXXXXX)
chown postgres:postgres "$datadir"
pg() { runuser -u postgres -- "$@"; }

pg "$bindir/initdb" -D "$datadir/data" -U postgres -A trust --no-sync >/dev/null
pg "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -o \
  "-p $port -k $datadir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
stop() {
  if [ -f "$datadir/replica/postmaster.pid" ]; then
    pg "$bindir/pg_ctl" -D "$datadir/replica" -m fast -w stop >/dev/null 2>&1 || true
  fi
  pg "$bindir/pg_ctl" -D "$datadir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$datadir"
}
trap stop EXIT

# The replica: a base backup with -R (standby.signal and primary_conninfo), streaming
# from the primary over loopback.
pg "$bindir/pg_basebackup" -h 127.0.0.1 -p "$port" -U postgres -D "$datadir/replica" -R -X stream
pg "$bindir/pg_ctl" -D "$datadir/replica" -l "$datadir/replica.log" -w -o \
  "-p $replica_port -k $datadir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400" start >/dev/null
export ARSIP_TEST_POSTGRES_REPLICA_URL="postgresql+psycopg://postgres@127.0.0.1:$replica_port/postgres"

export ARSIP_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/postgres"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, replica on :$replica_port" >&2
"$@"
