#!/usr/bin/env bash
# bench/lib.sh: shell functions shared by the benchmark scripts (run.sh,
# scale.sh). Sourced, not run. The caller sets ROOT, PGTMP (scripts/pg-tmp.sh),
# CLK_TCK (getconf CLK_TCK), KEEP (1: keep the work directory) and optionally
# BENCH_TAG (the log prefix, default "bench") before sourcing it; it sets up
# the cleanup trap: every process registered with `track`, the PostgreSQL
# cluster started by start_pg (in PG_DIR, default $WORK/pg) and the work
# directory WORK are stopped and removed on exit, failure and Ctrl-C.

log() { printf '[%s %s] %s\n' "${BENCH_TAG:-bench}" "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
# awk arithmetic: f FORMAT EXPR
f() { awk "BEGIN { printf \"$1\", $2 }"; }
median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "na"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ---- cleanup: everything we start is tracked here ----------------------------
WORK=""
PIDS=()
PG_STARTED=0
CONTAINERS=()
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local pid c
  for c in "${CONTAINERS[@]}"; do $ENGINE rm -f "$c" >/dev/null 2>&1; done
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  [ $PG_STARTED -eq 1 ] && "$PGTMP" stop "${PG_DIR:-$WORK/pg}" >/dev/null 2>&1
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ $KEEP -eq 1 ]; then
      log "work directory kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  [ $rc -eq 0 ] || [ $KEEP -eq 1 ] || log "(run with --keep to keep the logs)"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

track() { PIDS+=("$1"); }
untrack() {
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
# stop_pid PID [timeout_s]: SIGTERM, wait, SIGKILL after the timeout. Returns
# the process's exit status.
stop_pid() {
  local pid=$1 t=${2:-15} rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 $((t * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && { log "pid $pid ignored SIGTERM for ${t}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  wait "$pid" 2>/dev/null || rc=$?
  untrack "$pid"
  return $rc
}

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  die "no free port"
}

# ---- /proc accounting ------------------------------------------------------
# Fields after "pid (comm) ": $12 utime, $13 stime, $14 cutime, $15 cstime.
# A process that is gone reads as 0.
proc_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 0; }
  echo "${s##*) }" | awk '{ print $12 + $13 }'
}
proc_status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU ticks of the whole PostgreSQL cluster so far: the postmaster's own time,
# plus its reaped children's (cutime+cstime: every backend that has exited),
# plus the live children's (backends, checkpointer, walwriter, autovacuum...).
pg_cpu_ticks() {
  local pm total c t
  pm=$(head -1 "${PG_DIR:-$WORK/pg}/data/postmaster.pid")
  total=$(sed 's/^.*) //' "/proc/$pm/stat" | awk '{ print $12 + $13 + $14 + $15 }')
  for c in $(ps -o pid= --ppid "$pm"); do
    t=$(proc_ticks "$c"); total=$((total + ${t:-0}))
  done
  echo "$total"
}
# Per-thread CPU seconds of a process, "name=s" sorted by CPU.
thread_cpu() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s\n' "$(tr ' ' '_' <"$t/comm" 2>/dev/null || echo gone)" "$(proc_ticks "$1/task/${t##*/}")"
  done | awk -v hz="$CLK_TCK" '{ s[$1] += $2; n[$1]++ } END { for (k in s) if (s[k] > 0) printf "%s %.2f %d\n", k, s[k] / hz, n[k] }' |
    sort -k2 -gr | awk '{ printf "%s%s=%ss", (NR > 1 ? " " : ""), ($3 > 1 ? $1 "(x" $3 ")" : $1), $2 }'
}

# ---- PostgreSQL -----------------------------------------------------------
PG_BASE=""
url_db() { echo "$PG_BASE/$1"; }
psql_db() { local db=$1; shift; PGOPTIONS='-c client_min_messages=warning' psql "$(url_db "$db")" -X -v ON_ERROR_STOP=1 -Atq "$@"; }
start_pg() {
  local url
  mkdir -p "${PG_DIR:-$WORK/pg}"
  PG_STARTED=1
  url=$("$PGTMP" start "${PG_DIR:-$WORK/pg}")
  # Commit timestamps give every journal row's commit time after the fact,
  # so throughput needs no fine-grained polling during the run.
  psql "$url" -X -Atqc "ALTER SYSTEM SET track_commit_timestamp = on"
  "$PGTMP" stop "${PG_DIR:-$WORK/pg}" >/dev/null
  url=$("$PGTMP" start "${PG_DIR:-$WORK/pg}")
  PG_BASE=${url%/*}
  [ "$(psql_db postgres -c 'SHOW track_commit_timestamp')" = on ] || die "track_commit_timestamp is off"
  log "PostgreSQL $(psql_db postgres -c 'SHOW server_version') at $PG_BASE (fsync=$(psql_db postgres -c 'SHOW fsync'), synchronous_commit=$(psql_db postgres -c 'SHOW synchronous_commit'))"
}
fresh_db() {
  psql_db postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"
}
