#!/usr/bin/env bash
# bench/instances.sh: do instances add up? 1, 2 and 3 crm-events-sink
# instances in one consumer group drain the same preloaded backlog into one
# PostgreSQL; total and per-instance rows/s, and where the CPU went (each
# sink, all PostgreSQL processes, the mock broker, the rest of the machine,
# idle), so that what stops the scaling is shown with figures.
# See bench/README.md, "Ingest at scale and instances".
#
#   bench/instances.sh [options]
#     --instances "1 2 3"     group sizes to run, in order (default "1 2 3")
#     --partitions P          partitions per topic, 2 topics (default 12)
#     --events N              events preloaded once, drained by every group
#                             (default 8000 per partition: 192000 for 12; the
#                             mock broker keeps ~5 MiB per partition)
#     --runs K                drains per group size, medians reported (default 1)
#     --sink-arg=ARG          extra flag for every sink, repeatable
#     --sample-ms MS          CPU sampling period (default 100)
#     --build-dir DIR         build directory (default <repo>/build-bench)
#     --no-build              use the binaries in the build directory as they are
#     --keep                  keep the work directory (logs, samples)
#     --help
#
# The broker is crm-mock-broker (librdkafka's mock cluster, one process on
# the same machine), not Kafka: its CPU is reported apart. Everything it
# starts is stopped and the work directory removed at the end, on failure
# and on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INSTANCES="1 2 3"
PARTS=12
EVENTS=0
RUNS=1
SAMPLE_MS=100
SINK_ARGS=()
BUILD_DIR=$ROOT/build-bench
DO_BUILD=1
KEEP=0
SEED=1
COPY_RUNS=1
EPP=8000
CONTAINER_IMAGE=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "instances.sh: $1 needs a number, got '$2'" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  arg=$1; val=""
  case $arg in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  SHIFT2=0
  case $arg in
    --instances|--partitions|--events|--runs|--sink-arg|--sample-ms|--build-dir)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || { echo "instances.sh: $arg needs a value" >&2; exit 2; }
        val=$2; SHIFT2=1
      fi ;;
  esac
  case $arg in
    --instances) INSTANCES=$val
      for n in $INSTANCES; do need_num "$arg" "$n"; [ "$n" -gt 0 ] || { echo "instances.sh: --instances needs counts > 0" >&2; exit 2; }; done ;;
    --partitions) need_num "$arg" "$val"; PARTS=$val ;;
    --events) need_num "$arg" "$val"; EVENTS=$val ;;
    --runs) need_num "$arg" "$val"; RUNS=$val ;;
    --sink-arg) SINK_ARGS+=("$val") ;;
    --sample-ms) need_num "$arg" "$val"; SAMPLE_MS=$val ;;
    --build-dir) BUILD_DIR=$val ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage 0 ;;
    *) echo "instances.sh: unknown option $1" >&2; usage 2 ;;
  esac
  shift
  [ $SHIFT2 -eq 1 ] && shift
done
[ "$PARTS" -gt 0 ] && [ "$RUNS" -gt 0 ] && [ "$SAMPLE_MS" -gt 0 ] ||
  { echo "instances.sh: --partitions, --runs and --sample-ms must be > 0" >&2; exit 2; }
[ "$EVENTS" -gt 0 ] || EVENTS=$((2 * PARTS * EPP))

SINK=$BUILD_DIR/actors/crm-events-sink
BROKER=$BUILD_DIR/tests/tools/crm-mock-broker
PRODUCE=$BUILD_DIR/tests/tools/crm-produce
PGWATCH=$BUILD_DIR/bench/bench-pgwatch
PGTMP=$ROOT/scripts/pg-tmp.sh
TOPICS=apexflow.leads.created,apexflow.jobs.created
CLK_TCK=$(getconf CLK_TCK)
. "$ROOT/bench/lib.sh"
. "$ROOT/bench/lib_sink.sh"

if [ $DO_BUILD -eq 1 ]; then
  log "building (Release) in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake failed"
  ninja -C "$BUILD_DIR" -j2 crm-events-sink crm-mock-broker crm-produce bench-pgwatch >&2 ||
    die "build failed"
fi
for b in "$SINK" "$BROKER" "$PRODUCE" "$PGWATCH"; do
  [ -x "$b" ] || die "missing $b (build it, or drop --no-build)"
done
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || echo unknown)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-instances.XXXXXX")
chmod 755 "$WORK" # PostgreSQL runs as `nobody` when we are root
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
NCPU=$(nproc)
log "work directory $WORK; load average $LOAD_BEFORE; $NCPU CPUs"
start_pg
PG_MAXCONN=$(psql_db postgres -c 'SHOW max_connections')

# ---- one backlog for every run ------------------------------------------------
start_broker main "$TOPICS" "$PARTS"
MAIN_BROKER_DIR=$BROKER_DIR MAIN_BROKER_PID=$BROKER_PID
preload "$EVENTS" 0
check_watermarks "$EVENTS"
log "the broker is crm-mock-broker (librdkafka's mock cluster), not Kafka"

ROWS=()      # report lines
RESULTS=()   # RESULT key=value
BASE_RPS=""  # the first group size's median total rate

# one_run N RUN: a fresh database (migrated first, so the members start
# alike), N sinks in group bench-N-RUN started together, the backlog drained,
# verified exactly once; sets R_* figures.
one_run() {
  local n=$1 r=$2 db="inst${1}r${2}" tag i wpid rc=0 pm rss
  local pids=() logs=() metrics=() names=() hwm=()
  migrate_db "$db"
  psql_db postgres -c "CHECKPOINT"
  pm=$(head -1 "${PG_DIR:-$WORK/pg}/data/postmaster.pid")
  local wal0
  wal0=$(psql_db postgres -c "SELECT pg_current_wal_lsn()")
  for i in $(seq 1 "$n"); do
    tag="n$n-r$r-s$i"
    start_sink "$tag" "$db" "bench-$n-$r" "$TOPICS"
    pids+=("$SINK_PID"); logs+=("$SINK_LOG"); metrics+=("$SINK_METRICS"); names+=("s$i")
  done
  local sargs=() k
  for k in "${!pids[@]}"; do sargs+=(--pid "${names[$k]}=${pids[$k]}"); done
  /usr/bin/python3 "$ROOT/bench/sample_cpu.py" --out "$WORK/cpu-$n-$r.tsv" \
    --interval-s "$(f %.3f "$SAMPLE_MS / 1000")" --postmaster "$pm" \
    --pid "broker=$MAIN_BROKER_PID" "${sargs[@]}" &
  local spid=$!
  track $spid
  "$PGWATCH" wait-offsets --url "$(url_db "$db")" --target "$EVENTS" \
    --interval-ms 50 --timeout-s $((600 + EVENTS / 1000)) >"$WORK/wait-$n-$r.out" 2>&1 &
  wpid=$!
  track $wpid
  local maxrss=()
  while kill -0 $wpid 2>/dev/null; do
    for k in "${!pids[@]}"; do
      kill -0 "${pids[$k]}" 2>/dev/null || { tail -n 20 "${logs[$k]}" >&2; die "sink ${names[$k]} of $n exited during the drain"; }
      rss=$(proc_status_kb "${pids[$k]}" VmRSS)
      [ "${rss:-0}" -gt "${maxrss[$k]:-0}" ] && maxrss[$k]=$rss
    done
    sleep 0.5
  done
  wait $wpid || rc=$?
  untrack $wpid
  [ $rc -eq 0 ] || die "not all $EVENTS events journalled by $n instance(s): $(cat "$WORK/wait-$n-$r.out")"
  sleep 0.3 # a sample after the last commit
  kill -TERM $spid; wait $spid || true; untrack $spid
  # Per member: rows it journalled, its persisters' time in PostgreSQL, its
  # rebalances, its peak RSS; then stop them all.
  local per=() persist=() assigned=() skipped=()
  for k in "${!pids[@]}"; do
    curl -fs "${metrics[$k]}" >"$WORK/metrics-$n-$r-$k.txt" || : >"$WORK/metrics-$n-$r-$k.txt"
    per+=("$(awk '$1 ~ /^crm_events_persisted_total/ { s += $2 } END { printf "%d", s }' "$WORK/metrics-$n-$r-$k.txt")")
    skipped+=("$(awk '$1 ~ /^crm_events_skipped_total/ { s += $2 } END { printf "%d", s }' "$WORK/metrics-$n-$r-$k.txt")")
    persist+=("$(metric crm_batch_persist_seconds_sum "$WORK/metrics-$n-$r-$k.txt")")
    assigned+=("$(grep -c 'partitions_assigned' "${logs[$k]}" || true)")
    hwm+=("$(proc_status_kb "${pids[$k]}" VmHWM)")
  done
  # The members' PostgreSQL connections while they are all up.
  R_CONNS=$(psql_db postgres -c "SELECT sum(n) || ' (' || string_agg(a || ' x' || n, ', ') || ')'
    FROM (SELECT coalesce(nullif(application_name, ''), '?') AS a, count(*) AS n
          FROM pg_stat_activity WHERE datname = '$db' GROUP BY 1 ORDER BY 1) s")
  for k in "${!pids[@]}"; do
    SINK_PID=${pids[$k]}
    stop_sink "${names[$k]} of $n"
  done
  J_MIN_ID=0 commit_timeline "$db" "${SINK_T0}" "$EVENTS" "$n-$r"
  verify "$db" "$EVENTS" "$MAIN_BROKER_DIR/watermarks"
  R_WAL=$(psql_db postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0')")
  R_BYTES=$(journal_bytes "$db")
  # CPU over the drain proper: the last sample at or before the first commit
  # to the first sample at or after the last commit.
  read -r R_WIN R_BUSY R_IDLE R_PG R_BROKER R_SINKS R_OTHER < <(awk -F'\t' \
    -v t0="$T_FIRST" -v t1="$T_LAST" -v hz="$CLK_TCK" -v ncpu="$NCPU" '
    function grab(i,   j, kv) { T[i] = $2; I[i] = $3; P[i] = $4; S[i] = 0
      for (j = 5; j <= NF; j++) { split($j, kv, "="); if (kv[1] == "broker") B[i] = kv[2]; else { S[i] += kv[2]; X[i, kv[1]] = kv[2] } } }
    { if ($1 <= t0 || a == "") { a = NR }; if (b == "" && $1 >= t1) b = NR; grab(NR); E[NR] = $1; last = NR }
    END {
      if (b == "") b = last
      # /proc/stat counts jiffies of all CPUs at USER_HZ, as /proc/PID/stat.
      win = E[b] - E[a]; tot = (T[b] - T[a]); idle = I[b] - I[a]
      pg = (P[b] - P[a]) / hz; br = (B[b] - B[a]) / hz; sk = (S[b] - S[a]) / hz
      busy = (tot - idle) / hz
      printf "%.2f %.2f %.2f %.2f %.2f %.2f %.2f\n", win, busy, idle / hz, pg, br, sk, busy - pg - br - sk
    }' "$WORK/cpu-$n-$r.tsv")
  R_RPS=$T_STEADY_RPS R_SPAN=$T_SPAN R_V=$V_SUMMARY
  R_PER="" R_PERSIST="" R_REB="" R_RSS="" R_SKIP=0
  for k in "${!pids[@]}"; do
    R_PER+="${R_PER:+ }$(f %.0f "${per[$k]} / $T_SPAN")"
    R_PERSIST+="${R_PERSIST:+ }$(f %.0f "100 * ${persist[$k]:-0} / $T_SPAN / 2")%"
    R_REB+="${R_REB:+ }${assigned[$k]}"
    R_RSS+="${R_RSS:+ }$(f %.0f "${hwm[$k]:-0} / 1024")"
    R_SKIP=$((R_SKIP + skipped[$k]))
    R_ROWS_EACH+="${R_ROWS_EACH:+ }${per[$k]}"
  done
  psql_db postgres -c "DROP DATABASE $db"
}

for n in $INSTANCES; do
  RATES=() SUMMARY=()
  for r in $(seq 1 "$RUNS"); do
    log "---- $n instance(s), run $r: load $(cut -d' ' -f1-3 /proc/loadavg)"
    LOAD_AT=$(cut -d' ' -f1 /proc/loadavg)
    R_ROWS_EACH=""
    one_run "$n" "$r"
    RATES+=("$R_RPS")
    line=$(printf '%s|%s|%s' "$n x run $r" "$R_RPS rows/s" \
      "per instance (rows / ${R_SPAN}s): $R_PER; rows each: $R_ROWS_EACH; CPU over ${R_WIN}s: PostgreSQL $R_PG s ($(f %.2f "$R_PG / $R_WIN") CPUs), sinks $R_SINKS s, mock broker $R_BROKER s, other processes $R_OTHER s, idle $R_IDLE s of $(f %.2f "$R_WIN * $NCPU") ($(f %.0f "100 * $R_IDLE / ($R_WIN * $NCPU)")%); PostgreSQL $(f %.1f "$R_PG * 1e6 / ($R_RPS * $R_WIN)") us/row; persisters in PostgreSQL: $R_PERSIST of their time; assignments per member: $R_REB; skipped $R_SKIP; PostgreSQL connections: $R_CONNS; peak RSS MiB: $R_RSS; WAL $(f %.0f "$R_WAL / $EVENTS") B/row, disk $(f %.0f "$R_BYTES / $EVENTS") B/row; load at start $LOAD_AT; exactly once: $R_V")
    ROWS+=("$line")
    log "$n instance(s), run $r: $R_RPS rows/s total ($R_PER), PostgreSQL $R_PG s / sinks $R_SINKS s / broker $R_BROKER s / other $R_OTHER s / idle $R_IDLE s over ${R_WIN}s"
    RESULTS+=("rps_${n}_r$r=$R_RPS" "pg_cpus_${n}_r$r=$(f %.2f "$R_PG / $R_WIN")" "idle_pct_${n}_r$r=$(f %.0f "100 * $R_IDLE / ($R_WIN * $NCPU)")")
  done
  med=$(echo "${RATES[*]}" | median)
  [ -n "$BASE_RPS" ] || BASE_RPS=$med
  ROWS+=("$n instance(s): median|$med rows/s|x$(f %.2f "$med / $BASE_RPS") of $(echo "$INSTANCES" | awk '{ print $1 }') instance(s); runs: ${RATES[*]}")
  RESULTS+=("rps_$n=$med")
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo
  rev="commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "crm-events-sink instances benchmark  $STARTED_AT  $rev  build $BUILD_TYPE"
  echo "host: $NCPU CPUs, load average before $LOAD_BEFORE, after $LOAD_AFTER; PostgreSQL $(psql_db postgres -c 'SHOW server_version') (max_connections $PG_MAXCONN, fsync $(psql_db postgres -c 'SHOW fsync'))"
  echo "broker: crm-mock-broker (librdkafka's MOCK cluster, not Kafka), 2 topics x $PARTS partitions, $EVENTS events preloaded once; every run a fresh database, one consumer group, members started together"
  echo "sink args: ${SINK_ARGS[*]:-(defaults)}; CPU sampled every ${SAMPLE_MS} ms from /proc between the first and the last commit"
  printf '%s\n' "${ROWS[@]}" | awk -F'|' '{ printf "  %-22s %-16s %s\n", $1, $2, $3 }'
  echo
  echo "RESULT events=$EVENTS partitions=$PARTS ${RESULTS[*]}"
}
