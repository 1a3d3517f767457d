#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for local runs and manual tests.
#
#   scripts/pg-tmp.sh start DIR [PORT]  start (initdb first if DIR has no
#                                       cluster); prints the database URL
#   scripts/pg-tmp.sh stop DIR          stop it (fast shutdown)
#   scripts/pg-tmp.sh url DIR           print the URL of a running cluster
#
# The cluster lives in DIR/data, its unix socket in DIR, its log in DIR/log;
# it listens on 127.0.0.1 only, with trust authentication, user `postgres`,
# fsync on. `start` on a running cluster just prints its URL; on a stopped one
# it reuses the data dir (and its port, unless PORT is given). Without PORT a
# free port is chosen. The database PGTMP_DB (default `ces`) is created.
# PostgreSQL refuses to run as root: as root, DIR is given to `nobody` and the
# server runs as `nobody` (via runuser). PG_BINDIR overrides the binaries'
# location (default /usr/lib/postgresql/15/bin).
# Same logic as tests/support/pg_fixture.cpp.
set -euo pipefail

PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
DB=${PGTMP_DB:-ces}

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 2 ] || usage
cmd=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
data=$dir/data

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    # From /: `nobody` may not be allowed into the caller's directory.
    (cd / && runuser -u nobody -- "$@")
  else
    "$@"
  fi
}

running() {
  [ -f "$data/PG_VERSION" ] && as_pg "$PG_BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1
}

url() { echo "postgresql://postgres@127.0.0.1:$(cat "$dir/port")/$DB"; }

port_free() {
  # Free when nothing accepts a connection on it.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() {
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  echo "pg-tmp: no free port found" >&2
  return 1
}

start_server() { # $1 = port; returns pg_ctl's status
  as_pg "$PG_BINDIR/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 \
    -o "-p $1 -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
}

case "$cmd" in
  start)
    if running; then url; exit 0; fi
    if [ ! -f "$data/PG_VERSION" ]; then
      [ "$(id -u)" -eq 0 ] && chown nobody "$dir"
      as_pg "$PG_BINDIR/initdb" -D "$data" -A trust -E UTF8 --locale=C \
        -U postgres >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    [ "$(id -u)" -eq 0 ] && chown -R nobody "$dir"
    if [ $# -ge 3 ]; then
      port=$3
      start_server "$port" || { tail -n 20 "$dir/log" >&2; exit 1; }
    else
      port=""
      [ -f "$dir/port" ] && port_free "$(cat "$dir/port")" && port=$(cat "$dir/port")
      ok=0
      for attempt in 1 2 3 4 5; do
        [ -n "$port" ] || port=$(pick_port)
        if start_server "$port"; then ok=1; break; fi
        port="" # lost a race for the port: try another one
      done
      [ $ok -eq 1 ] || { tail -n 20 "$dir/log" >&2; exit 1; }
    fi
    echo "$port" >"$dir/port"
    if ! as_pg "$PG_BINDIR/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1; then
      as_pg "$PG_BINDIR/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -qc "CREATE DATABASE \"$DB\"" >/dev/null
    fi
    url
    ;;
  stop)
    if running; then
      as_pg "$PG_BINDIR/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    fi
    ;;
  url)
    running || { echo "pg-tmp: no cluster running in $dir" >&2; exit 1; }
    url
    ;;
  *) usage ;;
esac
