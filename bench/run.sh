#!/usr/bin/env bash
# bench/run.sh: throughput, latency and memory benchmark of crm-events-sink.
# See bench/README.md for what every figure means and how it is measured.
#
#   bench/run.sh [options]
#     --events N              events preloaded for the drain (default 200000)
#     --kafka mock|real       the broker: crm-mock-broker (librdkafka's mock
#                             cluster, default) or Apache Kafka (one node,
#                             scripts/kafka.sh: needs java, mvn and kcat)
#     --sink-arg=ARG          extra flag for every crm-events-sink run, repeatable
#                             (e.g. --sink-arg=--batch-max-records=10000)
#     --copy-runs K           COPY ceiling repetitions, best is kept (default 3)
#     --first-row-runs K      time-to-first-row samples, sink and bare consumer
#                             each (default 3)
#     --skip-copy             no COPY ceiling
#     --skip-first-row        no extra first-row samples and no bare consumer
#     --skip-latency          no latency phase
#     --skip-drain            no preload / COPY ceiling / drain / first-row phase
#     --lat-rate EPS          offered load of the latency phase (default 5000)
#     --lat-seconds S         its duration (default 30)
#     --lat-poll-ms MS        its poll interval (default 2)
#     --backlog M             also run the memory mode: drain a backlog of M
#                             events (e.g. 1000000) and report peak RSS
#     --backlog-only          only the memory mode: --skip-drain --skip-latency
#     --profile               run the drain's sink under `perf record` (call
#                             graphs) and print where its CPU goes; perf's
#                             overhead distorts that run's figures
#     --events-per-partition E  partition sizing (default 6000 = ~3.3 MB of the
#                             mock's ~5 MiB retention per partition)
#     --no-payload-raw        sinks do not write event_journal.payload_raw (the
#                             original bytes; runs them with --journal-keep-raw=0):
#                             run with and without to measure its ingest cost
#     --build-dir DIR         build directory (default <repo>/build-bench)
#     --sink-bin PATH         the crm-events-sink binary to bench (default the
#                             build directory's)
#     --container IMAGE       run every sink as a container of IMAGE
#                             (--network=host, --read-only; podman or docker,
#                             scripts/container-engine.sh) with the same
#                             flags; RSS and CPU are read from /proc of the
#                             container's main process (bench/container.sh
#                             compares it with the bare binary)
#     --journal-rows N        also drain into a journal seeded with N rows
#                             (bench/seed_journal.sql: 2,000 skewed tenants, 90
#                             days) and COPY the same rows into it: the steady
#                             rate at N rows against the empty journal's
#     --journal-interval I    day|month partitions (default day; the sink's
#                             --journal-partition-interval and the seeder's)
#     --index-cost            drain once more with each non-PK event_journal
#                             index dropped in turn, all present first and last
#     --index-runs K          rounds of --index-cost, medians kept (default 1)
#     --no-build              use the binaries in the build directory as they are
#     --keep                  keep the work directory (logs, timelines, data)
#     --help
#
# Everything it starts (PostgreSQL, brokers, sinks, pollers) is stopped and
# the work directory removed at the end, on failure and on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=200000
SINK_ARGS=()
COPY_RUNS=3
FIRST_ROW_RUNS=3
DO_COPY=1
DO_FIRST_ROW=1
DO_LATENCY=1
DO_MAIN=1
LAT_RATE=5000
LAT_SECONDS=30
LAT_POLL_MS=2
BACKLOG=0
EPP=6000
BUILD_DIR=$ROOT/build-bench
DO_BUILD=1
KEEP=0
PROFILE=0
SEED=1
PAYLOAD_RAW=1
SINK_BIN=""
CONTAINER_IMAGE=""
JOURNAL_ROWS=0
JOURNAL_INTERVAL=""
INDEX_COST=0
INDEX_RUNS=1
J_MIN_ID=0
KAFKA_MODE=mock

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "run.sh: $1 needs a number, got '$2'" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  arg=$1; val=""
  case $arg in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  SHIFT2=0
  case $arg in
    --events|--copy-runs|--first-row-runs|--lat-rate|--lat-seconds|--lat-poll-ms|--backlog|--events-per-partition|--build-dir|--sink-arg|--sink-bin|--container|--journal-rows|--journal-interval|--index-runs|--kafka)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || { echo "run.sh: $arg needs a value" >&2; exit 2; }
        val=$2; SHIFT2=1
      fi ;;
  esac
  case $arg in
    --events) need_num "$arg" "$val"; EVENTS=$val ;;
    --kafka)
      case $val in
        mock|real) KAFKA_MODE=$val ;;
        *) echo "run.sh: --kafka is mock or real, got '$val'" >&2; exit 2 ;;
      esac ;;
    --sink-arg) SINK_ARGS+=("$val") ;;
    --copy-runs) need_num "$arg" "$val"; COPY_RUNS=$val ;;
    --first-row-runs) need_num "$arg" "$val"; FIRST_ROW_RUNS=$val ;;
    --skip-copy) DO_COPY=0 ;;
    --skip-first-row) DO_FIRST_ROW=0 ;;
    --skip-latency) DO_LATENCY=0 ;;
    --lat-rate) need_num "$arg" "$val"; LAT_RATE=$val ;;
    --lat-seconds) need_num "$arg" "$val"; LAT_SECONDS=$val ;;
    --lat-poll-ms) need_num "$arg" "$val"; LAT_POLL_MS=$val ;;
    --backlog) need_num "$arg" "$val"; BACKLOG=$val ;;
    --skip-drain) DO_MAIN=0 ;;
    --backlog-only) DO_MAIN=0; DO_LATENCY=0 ;;
    --events-per-partition) need_num "$arg" "$val"; EPP=$val ;;
    --build-dir) BUILD_DIR=$val ;;
    --sink-bin) SINK_BIN=$val ;;
    --container) CONTAINER_IMAGE=$val ;;
    --journal-rows) need_num "$arg" "$val"; JOURNAL_ROWS=$val ;;
    --journal-interval) JOURNAL_INTERVAL=$val ;;
    --index-cost) INDEX_COST=1 ;;
    --index-runs) need_num "$arg" "$val"; INDEX_RUNS=$val ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    --profile) PROFILE=1 ;;
    --no-payload-raw) PAYLOAD_RAW=0 ;;
    -h|--help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage 2 ;;
  esac
  shift
  [ $SHIFT2 -eq 1 ] && shift
done
[ "$EVENTS" -gt 0 ] || { echo "run.sh: --events must be > 0" >&2; exit 2; }
case ${JOURNAL_INTERVAL:-day} in
  day|month) ;;
  *) echo "run.sh: --journal-interval is day or month, got '$JOURNAL_INTERVAL'" >&2; exit 2 ;;
esac
if [ "$JOURNAL_ROWS" -gt 0 ] || [ $INDEX_COST -eq 1 ]; then
  [ $DO_MAIN -eq 1 ] || { echo "run.sh: --journal-rows and --index-cost need the drain (no --skip-drain)" >&2; exit 2; }
fi
if [ "$JOURNAL_ROWS" -gt 0 ] && [ ! -f "$ROOT/bench/seed_journal.sql" ]; then
  echo "run.sh: --journal-rows needs bench/seed_journal.sql" >&2; exit 2
fi
if [ $DO_MAIN -eq 0 ] && [ $DO_LATENCY -eq 0 ] && [ "$BACKLOG" -eq 0 ]; then
  echo "run.sh: nothing to run (--backlog-only needs --backlog M)" >&2; exit 2
fi

SINK=${SINK_BIN:-$BUILD_DIR/actors/crm-events-sink}
BROKER=$BUILD_DIR/tests/tools/crm-mock-broker
PRODUCE=$BUILD_DIR/tests/tools/crm-produce
PGWATCH=$BUILD_DIR/bench/bench-pgwatch
BARE=$BUILD_DIR/bench/bench-bare-consumer
PGTMP=$ROOT/scripts/pg-tmp.sh
TOPICS=apexflow.leads.created,apexflow.jobs.created
# The columns the sink COPYs (storage/copy_text.hpp, journal_columns and
# journal_columns_no_raw).
JOURNAL_COLUMNS='tenant_id, topic, partition, "offset", key, headers, payload, kafka_timestamp, replay_of, replay_job'
if [ $PAYLOAD_RAW -eq 1 ]; then
  JOURNAL_COLUMNS="$JOURNAL_COLUMNS, payload_raw"
else
  SINK_ARGS+=("--journal-keep-raw=0")
fi
if [ -n "$JOURNAL_INTERVAL" ]; then
  SINK_ARGS+=("--journal-partition-interval=$JOURNAL_INTERVAL")
else
  JOURNAL_INTERVAL=day
fi
CLK_TCK=$(getconf CLK_TCK)

# log, die, f, median, the cleanup trap, processes, /proc accounting and
# PostgreSQL (start_pg, psql_db, fresh_db): bench/lib.sh.
. "$ROOT/bench/lib.sh"

# The mock broker, crm-produce, sinks, drain timelines and verification:
# bench/lib_sink.sh.
. "$ROOT/bench/lib_sink.sh"

# drain_run TAG DB: the main broker's preload drained into DB by a fresh sink
# (group bench-TAG) and verified; a seeded journal's rows (id <= J_MIN_ID) do
# not count. Sets the T_* and D_* figures.
drain_run() {
  local tag=$1 db=$2 t0
  BROKER_BS=$MAIN_BROKER_BS
  psql_db postgres -c "CHECKPOINT"
  start_sink "$tag" "$db" "bench-$tag" "$TOPICS"
  t0=$SINK_T0
  drain_wait "$db" "bench-$tag" "$EVENTS" $((600 + EVENTS / 1000)) "$tag"
  commit_timeline "$db" "$t0" "$EVENTS" "$tag"
  verify "$db" "$EVENTS" "$MAIN_BROKER_DIR/watermarks"
}

# ---- go -----------------------------------------------------------------------
if [ $DO_BUILD -eq 1 ]; then
  log "building (Release) in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >"${TMPDIR:-/tmp}/crm-bench-cmake.$$.log" 2>&1 ||
    { cat "${TMPDIR:-/tmp}/crm-bench-cmake.$$.log" >&2; rm -f "${TMPDIR:-/tmp}/crm-bench-cmake.$$.log"; die "cmake failed"; }
  rm -f "${TMPDIR:-/tmp}/crm-bench-cmake.$$.log"
  ninja -C "$BUILD_DIR" -j2 crm-events-sink crm-mock-broker crm-produce bench-pgwatch bench-bare-consumer >&2 ||
    die "build failed"
fi
if [ $PROFILE -eq 1 ]; then
  command -v perf >/dev/null || die "--profile needs perf (apt-get install linux-perf)"
  [ $DO_MAIN -eq 1 ] || die "--profile profiles the drain: drop --skip-drain/--backlog-only"
fi
[ -n "$CONTAINER_IMAGE" ] || [ -x "$SINK" ] || die "missing $SINK (build it, or drop --no-build)"
for b in "$BROKER" "$PRODUCE" "$PGWATCH" "$BARE"; do
  [ -x "$b" ] || die "missing $b (build it, or drop --no-build)"
done
BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || echo unknown)
[ -n "$SINK_BIN" ] && BUILD_TYPE="$BUILD_TYPE (tools); sink $SINK_BIN"
if [ -n "$CONTAINER_IMAGE" ]; then
  # shellcheck source=../scripts/container-engine.sh
  . "$ROOT/scripts/container-engine.sh"
  ces_container_engine || die "--container: no container engine (podman or docker)"
  $ENGINE image inspect "$CONTAINER_IMAGE" >/dev/null 2>&1 ||
    die "--container: no image $CONTAINER_IMAGE (scripts/container-test.sh builds one)"
  [ $PROFILE -eq 0 ] || die "--profile and --container do not go together"
  BUILD_TYPE="sink in the container image $CONTAINER_IMAGE ($ENGINE)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-bench.XXXXXX")
chmod 755 "$WORK" # PostgreSQL runs as `nobody` when we are root
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
log "work directory $WORK; load average $LOAD_BEFORE; $(nproc) CPUs"
start_pg

PHASE_LOADS=() # 1-minute load average when each phase started
phase() { PHASE_LOADS+=("$1 $(cut -d' ' -f1 /proc/loadavg)"); log "phase: $1 (load $(cut -d' ' -f1-3 /proc/loadavg))"; }
R_KEYS=()   # RESULT key=value pairs, in order
EXTRA_RESULTS=()
result() { R_KEYS+=("$1=$2"); }
ROWS_TXT=() # table rows: "label|value|note"
row() { ROWS_TXT+=("$1|$2|${3:-}"); }
verdict() { if awk "BEGIN { exit !($1) }"; then echo PASS; else echo FAIL; fi; }

if [ $DO_MAIN -eq 1 ]; then
  # -- 1. preload ---------------------------------------------------------------
  phase preload
  PPT=$(partitions_for "$EVENTS")
  start_broker main "$TOPICS" "$PPT"
  MAIN_BROKER_DIR=$BROKER_DIR MAIN_BROKER_BS=$BROKER_BS MAIN_BROKER_PID=$BROKER_PID
  preload "$EVENTS" 0
  check_watermarks "$EVENTS"
  row "events preloaded" "$EVENTS" "2 topics x $PPT partitions, crm-produce ${PRELOAD_ELAPSED}s; watermarks: ${WM_SUMMARY}"
  result events "$EVENTS"
  result payload_raw "$PAYLOAD_RAW"

  # -- 2. COPY ceiling ------------------------------------------------------------
  COPY_RPS=na
  if [ $DO_COPY -eq 1 ]; then
    phase copy
    out=$("$PRODUCE" --copy-file "$WORK/events.copy" --count "$EVENTS" --seed $SEED --topics "$TOPICS")
    AVG_PAYLOAD=$(echo "$out" | sed -n 's/.* avg_payload=\([0-9]*\).*/\1/p')
    log "COPY file: $out"
    fresh_db copyceil
    copy_best copyceil "(tenant_id text, topic text, payload jsonb)" \
      "tenant_id, topic, payload" "$WORK/events.copy" "$EVENTS"
    COPY_RPS=$(f %.0f "$EVENTS / $COPY_BEST")
    row "COPY ceiling (best of $COPY_RUNS)" "$COPY_RPS rows/s" "one \\copy in one transaction into (tenant_id text, topic text, payload jsonb); runs: ${COPY_TIMES}; avg payload ${AVG_PAYLOAD} B"
    # What the replaced Python service did: one INSERT and one COMMIT per
    # event, on one connection. pgbench replays 1 000 of the same events for
    # 10 s (the service's own Python and Kafka overhead come on top).
    phase per-event-commit
    head -n 1000 "$WORK/events.copy" >"$WORK/sample.copy"
    psql_db copyceil -c "CREATE TABLE sample (i serial, tenant_id text, topic text, payload jsonb)" \
      -c "\\copy sample (tenant_id, topic, payload) from '$WORK/sample.copy'" \
      -c "CREATE TABLE per_event (tenant_id text, topic text, payload jsonb)" -c "CHECKPOINT"
    printf '%s\n' '\set i random(1, 1000)' \
      'INSERT INTO per_event SELECT tenant_id, topic, payload FROM sample WHERE i = :i;' >"$WORK/per_event.sql"
    PER_EVENT_RPS=$("${PG_BINDIR:-/usr/lib/postgresql/15/bin}/pgbench" -n -c 1 -T 10 -f "$WORK/per_event.sql" "$(url_db copyceil)" 2>&1 |
      sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
    [ -n "$PER_EVENT_RPS" ] || die "pgbench gave no rate"
    PER_EVENT_RPS=$(f %.0f "$PER_EVENT_RPS")
    row "one INSERT + COMMIT per event" "$PER_EVENT_RPS rows/s" "pgbench, 1 connection, 10 s: the replaced Python service's write pattern, without its own overhead"
  fi
  result copy_ceiling_rps "$COPY_RPS"
  result per_event_commit_rps "${PER_EVENT_RPS:-na}"

  # -- 3. drain with the sink -----------------------------------------------------
  phase drain
  fresh_db drain
  psql_db postgres -c "CHECKPOINT"
  PG0=$(pg_cpu_ticks)
  BROKER_T0=$(proc_ticks "$MAIN_BROKER_PID")
  log "draining $EVENTS events with crm-events-sink ${SINK_ARGS[*]:-(default settings)}"
  DRAIN_WAL0=$(psql_db postgres -c "SELECT pg_current_wal_lsn()")
  start_sink drain drain bench-drain "$TOPICS"
  DRAIN_T0=$SINK_T0
  if [ $PROFILE -eq 1 ]; then
    # Attach once the process has exec'd and started its threads (the ~3 s
    # group join follows, so nothing of the drain is missed).
    for _ in $(seq 1 100); do
      grep -q 'actor_started actor=consumer' "$SINK_LOG" && break
      sleep 0.05
    done
    perf record -q -F 999 --call-graph dwarf,16384 -p "$SINK_PID" -o "$WORK/perf.data" \
      >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
    track $PERF_PID
  fi
  drain_wait drain bench-drain "$EVENTS" $((600 + EVENTS / 1000)) drain
  sleep 0.3 # let the postmaster reap the sink's backends
  PG1=$(pg_cpu_ticks)
  BROKER_T1=$(proc_ticks "$MAIN_BROKER_PID")
  commit_timeline drain "$DRAIN_T0" "$EVENTS" drain
  verify drain "$EVENTS" "$MAIN_BROKER_DIR/watermarks"
  SINK_CPU=$(f %.2f "$D_SINK_TICKS / $CLK_TCK")
  PG_CPU=$(f %.2f "($PG1 - $PG0) / $CLK_TCK")
  BROKER_CPU=$(f %.2f "($BROKER_T1 - $BROKER_T0) / $CLK_TCK")
  PEAK_RSS=$(f %.1f "$D_HWM_KB / 1024")
  RATIO=na
  [ "$COPY_RPS" != na ] && [ "$T_STEADY_RPS" != na ] && RATIO=$(f %.3f "$T_STEADY_RPS / $COPY_RPS")
  row "sink total rate" "$T_TOTAL_RPS rows/s" "N / (last commit - sink start), includes start-up and the ~3 s group join"
  row "sink steady rate" "$T_STEADY_RPS rows/s" "rows after the first commit / (last commit - first commit) = $((EVENTS - T_FIRST_ROWS)) / ${T_SPAN}s; $T_COMMITS transactions"
  if [ "$RATIO" != na ]; then
    row "steady / 3-column JSONB COPY" "$RATIO" "the old baseline (issue 5's target >= 0.8 was against it): $(verdict "$RATIO >= 0.8")"
  fi
  row "time to first row (this run)" "${T_FIRST_ROW}s" "first commit - sink start"
  row "peak RSS of the sink" "$PEAK_RSS MiB" "VmHWM before SIGTERM (max sampled VmRSS $(f %.1f "$D_RSS_SAMPLED_KB / 1024") MiB)"
  row "sink CPU" "${SINK_CPU}s" "utime+stime, whole process life; $(f %.1f "$D_SINK_TICKS / $CLK_TCK * 1e6 / $EVENTS") us/event; threads: $D_THREADS"
  row "PostgreSQL CPU" "${PG_CPU}s" "whole cluster, sink start -> sink exit; $(f %.1f "($PG1 - $PG0) / $CLK_TCK * 1e6 / $EVENTS") us/event"
  row "broker CPU" "${BROKER_CPU}s" "$(broker_name) process, same interval"
  if [ -n "$D_PERSIST_S" ]; then
    row "persister busy" "$(f %.0f "100 * $D_PERSIST_S / ($T_SPAN + $D_PERSIST_S / $D_BATCHES)")%" "sum of crm_batch_persist_seconds $(f %.2f "$D_PERSIST_S")s over ${D_BATCHES} batches ($(f %.0f "$EVENTS / $D_BATCHES") rows, $(f %.0f "1000 * $D_PERSIST_S / $D_BATCHES") ms each) / (first-to-last commit + one mean batch)"
  fi
  row "verification" "OK" "$V_SUMMARY"
  if [ $PROFILE -eq 1 ]; then
    log "analysing the profile"
    if PROFILE_TXT=$(perf script -i "$WORK/perf.data" -F comm,tid,ip,sym,dso 2>>"$WORK/perf.log" |
      python3 "$ROOT/bench/perf_breakdown.py" --events "$EVENTS" --cpu-seconds "$SINK_CPU" --top 12 2>&1); then
      rm -f "$WORK/perf.data"
    else
      PROFILE_TXT="(perf analysis failed: $PROFILE_TXT; $(tail -n 3 "$WORK/perf.log"); run with --keep to keep perf.data)"
    fi
  fi
  # WAL and disk per journalled row (docs/scaling.md sizes PostgreSQL with
  # them): WAL from the LSN before the sink started to after its last commit
  # (the migrations' few kB included), disk = every partition with its
  # indexes and TOAST.
  WAL_PER_ROW=$(f %.0f "$(psql_db postgres -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$DRAIN_WAL0')") / $EVENTS")
  DISK_PER_ROW=$(f %.0f "$(journal_bytes drain) / $EVENTS")
  row "WAL per journalled row" "$WAL_PER_ROW B" "pg_current_wal_lsn() before the sink started and after the drain / $EVENTS rows (full_page_writes on; after a CHECKPOINT)"
  row "disk per journalled row" "$DISK_PER_ROW B" "pg_total_relation_size of every event_journal partition (heap, TOAST, all indexes) / $EVENTS rows"
  result wal_bytes_per_row "$WAL_PER_ROW"
  result disk_bytes_per_row "$DISK_PER_ROW"
  # The same rows the sink wrote (same columns, same bytes), COPYed by psql
  # straight into the same partitioned, indexed event_journal, emptied first:
  # what COPY can do for this table, to tell schema cost from sink overhead.
  JOURNAL_COPY_RPS=na
  J_RATIO=na
  if [ $DO_COPY -eq 1 ]; then
    phase journal-copy
    psql_db drain -c "\\copy (SELECT ${JOURNAL_COLUMNS} FROM event_journal ORDER BY id) to '$WORK/journal.copy'"
    J_MIN_ID=0 journal_copy_best drain "$WORK/journal.copy" "$EVENTS"
    JOURNAL_COPY_RPS=$(f %.0f "$EVENTS / $COPY_BEST")
    J_RATIO=$(f %.3f "$T_STEADY_RPS / $JOURNAL_COPY_RPS")
    row "COPY into event_journal" "$JOURNAL_COPY_RPS rows/s" "the sink's rows, $(echo "$JOURNAL_COLUMNS" | tr ',' '\n' | wc -l) columns, into the partitioned event_journal with all its indexes, one \\copy, best of $COPY_RUNS (${COPY_TIMES}); $(f %.3f "$JOURNAL_COPY_RPS / $COPY_RPS") x the 3-column JSONB COPY"
    row "steady / COPY into event_journal" "$J_RATIO" "target >= 0.8: $(verdict "$J_RATIO >= 0.8")"
  fi
  result journal_copy_rps "$JOURNAL_COPY_RPS"
  result journal_ratio "$J_RATIO"
  result total_rps "$T_TOTAL_RPS"
  result steady_rps "$T_STEADY_RPS"
  result ratio "$RATIO"
  T_STEADY_EMPTY=$T_STEADY_RPS
  FIRST_ROWS=("$T_FIRST_ROW")

  # -- 3b. the same drain into a journal that already holds N rows -------------
  SEEDED_RPS=na SEEDED_RATIO=na SEEDED_J_RATIO=na
  if [ "$JOURNAL_ROWS" -gt 0 ]; then
    phase seed
    migrate_db seeded
    log "seeding $JOURNAL_ROWS journal rows (bench/seed_journal.sql, $JOURNAL_INTERVAL partitions)"
    t0=$EPOCHREALTIME
    psql_db seeded -v rows="$JOURNAL_ROWS" -v tenants=2000 -v days=90 \
      -v interval="$JOURNAL_INTERVAL" -f "$ROOT/bench/seed_journal.sql" >"$WORK/seed.out" ||
      die "seed_journal.sql failed: $(tail -n 5 "$WORK/seed.out")"
    SEED_S=$(f %.1f "$EPOCHREALTIME - $t0")
    # The seeded rows are not this broker's: no stored offsets may fence the
    # drain. A real journal is vacuumed (insert-only tables are, since
    # PostgreSQL 13): visibility map and statistics as in production.
    t0=$EPOCHREALTIME
    psql_db seeded -c "DELETE FROM journal_offsets" -c "VACUUM (ANALYZE) event_journal"
    VACUUM_S=$(f %.1f "$EPOCHREALTIME - $t0")
    read -r got J_MIN_ID NPART < <(psql_db seeded -F ' ' -c "
      SELECT (SELECT count(*) FROM event_journal), (SELECT coalesce(max(id), 0) FROM event_journal),
             (SELECT count(*) FROM pg_inherits WHERE inhparent = 'event_journal'::regclass)")
    [ "$got" -eq "$JOURNAL_ROWS" ] || die "the seeded journal holds $got rows, expected $JOURNAL_ROWS"
    SEED_BYTES=$(journal_bytes seeded)
    row "seeded journal" "$JOURNAL_ROWS rows" "$NPART $JOURNAL_INTERVAL partitions, $(f %.2f "$SEED_BYTES / 1073741824") GiB ($(f %.0f "$SEED_BYTES / $JOURNAL_ROWS") B/row); seeded in ${SEED_S}s ($(f %.0f "$JOURNAL_ROWS / $SEED_S") rows/s), VACUUM ANALYZE ${VACUUM_S}s"
    phase drain-seeded
    drain_run seeded seeded
    SEEDED_RPS=$T_STEADY_RPS
    SEEDED_RATIO=$(f %.3f "$SEEDED_RPS / $T_STEADY_EMPTY")
    row "steady rate, journal at $JOURNAL_ROWS rows" "$SEEDED_RPS rows/s" "$((EVENTS - T_FIRST_ROWS)) rows / ${T_SPAN}s; / empty journal ($T_STEADY_EMPTY) = $SEEDED_RATIO; target within 10%: $(verdict "$SEEDED_RATIO >= 0.9"); peak RSS $(f %.1f "$D_HWM_KB / 1024") MiB; $V_SUMMARY"
    if [ $DO_COPY -eq 1 ]; then
      journal_copy_best seeded "$WORK/journal.copy" "$EVENTS"
      rps=$(f %.0f "$EVENTS / $COPY_BEST")
      SEEDED_J_RATIO=$(f %.3f "$SEEDED_RPS / $rps")
      row "COPY into event_journal at $JOURNAL_ROWS" "$rps rows/s" "the same rows into the seeded journal, best of $COPY_RUNS (${COPY_TIMES}); steady / this = $SEEDED_J_RATIO: $(verdict "$SEEDED_J_RATIO >= 0.8")"
    fi
    J_MIN_ID=0
    psql_db postgres -c "DROP DATABASE seeded"
  fi
  result journal_rows "$JOURNAL_ROWS"
  result seeded_steady_rps "$SEEDED_RPS"
  result seeded_vs_empty "$SEEDED_RATIO"
  result seeded_journal_ratio "$SEEDED_J_RATIO"

  # -- 3c. what each event_journal index costs the drain --------------------------
  if [ $INDEX_COST -eq 1 ]; then
    phase index-cost
    migrate_db idxtmpl
    mapfile -t IDX < <(psql_db idxtmpl -c "
      SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = 'event_journal'::regclass AND NOT i.indisprimary ORDER BY 1")
    VARIANTS=(all "${IDX[@]}")
    declare -A IRATES=()
    # Round-robin, all indexes present first and last of each round: load
    # drifts on a shared machine hit every variant alike.
    for r in $(seq 1 "$INDEX_RUNS"); do
      k=0
      for v in "${VARIANTS[@]}" all; do
        k=$((k + 1)) # every drain its own consumer group
        psql_db postgres -c "DROP DATABASE IF EXISTS idxrun" -c "CREATE DATABASE idxrun TEMPLATE idxtmpl"
        [ "$v" = all ] || psql_db idxrun -c "DROP INDEX $v"
        drain_run "idx-$r-$k-$v" idxrun
        IRATES[$v]="${IRATES[$v]:-} $T_STEADY_RPS"
        log "index cost round $r, without ${v/#all/nothing}: $T_STEADY_RPS rows/s"
      done
    done
    psql_db postgres -c "DROP DATABASE idxrun" -c "DROP DATABASE idxtmpl"
    IBASE=$(f %.0f "$(echo "${IRATES[all]}" | median)")
    row "index cost: all indexes" "$IBASE rows/s" "median steady rate of ${IRATES[all]} (empty journal, $INDEX_RUNS round(s))"
    for v in "${IDX[@]}"; do
      m=$(f %.0f "$(echo "${IRATES[$v]}" | median)")
      row "index cost: without $v" "$m rows/s" "$(f %+.1f "100 * ($m / $IBASE - 1)")% vs all present; runs:${IRATES[$v]}"
      EXTRA_RESULTS+=("without_$v=$m")
    done
    EXTRA_RESULTS+=("with_all_indexes=$IBASE")
  fi
  rm -f "$WORK/journal.copy"

  # -- 6. time to first row vs a bare librdkafka consumer -------------------------
  BARE_MED=na
  if [ $DO_FIRST_ROW -eq 1 ]; then
    phase first-row
    bare_times=()
    for i in $(seq 1 "$FIRST_ROW_RUNS"); do
      t0=$EPOCHREALTIME
      out=$("$BARE" --bootstrap "$MAIN_BROKER_BS" --group "bench-bare-$i" --topics "$TOPICS" --timeout-s 60) ||
        die "bench-bare-consumer: $out"
      at=$(echo "$out" | sed -n 's/^first_msg_at=\([0-9.]*\).*/\1/p')
      bare_times+=("$(f %.3f "$at - $t0")")
      log "bare consumer run $i: first message after ${bare_times[-1]}s"
      if [ "$i" -ge 2 ]; then
        fresh_db "first$i"
        start_sink "first$i" "first$i" "bench-first-$i" "$TOPICS"
        t0=$SINK_T0
        out=$("$PGWATCH" wait-rows --url "$(url_db "first$i")" --min 1 --interval-ms 5 --timeout-s 60) ||
          die "no first row from the sink: $out"
        first=$(psql_db "first$i" -c "SELECT extract(epoch FROM min(pg_xact_commit_timestamp(xmin))) FROM event_journal")
        stop_sink "first$i"
        FIRST_ROWS+=("$(f %.3f "$first - $t0")")
        log "sink run $i: first row after ${FIRST_ROWS[-1]}s"
      fi
    done
    BARE_MED=$(echo "${bare_times[*]}" | median)
  fi
  FIRST_MED=$(echo "${FIRST_ROWS[*]}" | median)
  row "time to first row (median)" "${FIRST_MED}s" "samples: ${FIRST_ROWS[*]} (fresh database and group each)"
  if [ "$BARE_MED" != na ]; then
    row "bare consumer first message (median)" "${BARE_MED}s" "samples: ${bare_times[*]} (librdkafka defaults, new group each)"
    row "first row - bare first message" "$(f %+.3f "$FIRST_MED - $BARE_MED")s" "target <= 0 (no worse): $(verdict "$FIRST_MED <= $BARE_MED")"
  fi
  result first_row_s "$FIRST_MED"
  result bare_first_msg_s "$BARE_MED"
  result peak_rss_mib "$PEAK_RSS"
  result sink_cpu_s "$SINK_CPU"
  result pg_cpu_s "$PG_CPU"
  stop_pid "$MAIN_BROKER_PID" 10 || true
  rm -f "$WORK/events.copy"
fi

# -- 4. latency at a steady offered load -----------------------------------------
LAT_P50=na LAT_P99=na LAT_MAX=na
if [ $DO_LATENCY -eq 1 ]; then
  LAT_TOPICS=lat.leads.created,lat.jobs.created
  LAT_N=$((LAT_RATE * LAT_SECONDS))
  phase latency
  start_broker lat "$LAT_TOPICS" "$(partitions_for "$LAT_N")"
  LAT_BROKER_PID=$BROKER_PID
  fresh_db lat
  start_sink lat lat bench-lat "$LAT_TOPICS"
  # Joined (the broker's ~3 s group delay is paid here, not in the figures).
  for _ in $(seq 1 300); do
    grep -q 'partitions_assigned' "$SINK_LOG" && break
    kill -0 "$SINK_PID" 2>/dev/null || die "crm-events-sink exited: $(tail -n 5 "$SINK_LOG")"
    sleep 0.1
  done
  grep -q 'partitions_assigned' "$SINK_LOG" || die "the latency sink never got partitions"
  # Warm-up: 200 events end to end, so connections and fetchers are live.
  preload 200 0 "$LAT_TOPICS"
  out=$("$PGWATCH" wait-rows --url "$(url_db lat)" --min 200 --interval-ms 10 --timeout-s 60) ||
    die "warm-up events not journalled: $out"
  "$PGWATCH" latency --url "$(url_db lat)" --expect "$LAT_N" --interval-ms "$LAT_POLL_MS" \
    --timeout-s $((LAT_SECONDS + 60)) --out "$WORK/latency.tsv" >"$WORK/latency.out" 2>&1 &
  LPID=$!
  track $LPID
  sleep 0.5 # the poller has read its baseline max(id)
  log "latency: $LAT_RATE events/s for ${LAT_SECONDS}s, polling every ${LAT_POLL_MS} ms"
  out=$("$PRODUCE" --bootstrap "$BROKER_BS" --topics "$LAT_TOPICS" --count "$LAT_N" \
    --rate "$LAT_RATE" --seed $SEED --start-index 200 --quiet) || die "crm-produce (paced) failed: $out"
  log "paced load: $out"
  rc=0; wait $LPID || rc=$?
  untrack $LPID
  LAT_OUT=$(cat "$WORK/latency.out")
  [ $rc -eq 0 ] || die "latency poller: $LAT_OUT"
  lv() { echo "$LAT_OUT" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  LAT_P50=$(lv p50_ms) LAT_P99=$(lv p99_ms) LAT_MAX=$(lv max_ms)
  [ "$(lv missed)" = 0 ] || log "warning: the poller missed $(lv missed) rows"
  ct=$(psql_db lat -F ' ' -c "
    SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 1),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1),
           round(max(l)::numeric, 1)
    FROM (SELECT 1000 * extract(epoch FROM pg_xact_commit_timestamp(xmin) - kafka_timestamp) AS l
          FROM event_journal WHERE id > 200) s")
  LAT_SINK_CPU=$(f %.2f "$(proc_ticks "$SINK_PID") / $CLK_TCK")
  LAT_RSS=$(f %.1f "$(proc_status_kb "$SINK_PID" VmHWM) / 1024")
  stop_sink lat
  stop_pid "$LAT_BROKER_PID" 10 || true
  rate=$(echo "$out" | sed -n 's/.* rate=\([0-9]*\)\/s.*/\1/p')
  row "latency p50 / p99 / max" "$LAT_P50 / $LAT_P99 / $LAT_MAX ms" "offered $LAT_RATE ev/s x ${LAT_SECONDS}s (achieved $rate/s), $(lv rows) rows; p99 target <= 100 ms: $(verdict "$LAT_P99 <= 100")"
  row "latency method" "poll $(lv mean_poll_period_ms) ms" "seen (end of the first poll that returned the row) - kafka_timestamp (CreateTime, ms); upper bound, resolution ~1 ms + one poll period + query; query mean $(lv mean_query_ms) / max $(lv max_query_ms) ms; p90 $(lv p90_ms), p99.9 $(lv p999_ms), min $(lv min_ms), mean $(lv mean_ms) ms"
  read -r c50 c99 cmax <<<"$ct"
  row "latency to commit (cross-check)" "$c50 / $c99 / $cmax ms" "commit timestamp - kafka_timestamp: excludes the WAL flush and the poll delay"
  row "latency phase sink CPU / peak RSS" "${LAT_SINK_CPU}s / $LAT_RSS MiB" "utime+stime and VmHWM of the sink, start to the end of the paced load"
fi
if [ $DO_MAIN -eq 1 ] || [ $DO_LATENCY -eq 1 ]; then
  result lat_p50_ms "$LAT_P50"
  result lat_p99_ms "$LAT_P99"
  result lat_max_ms "$LAT_MAX"
  result lat_sink_cpu_s "${LAT_SINK_CPU:-na}"
  result lat_peak_rss_mib "${LAT_RSS:-na}"
fi

# -- 5. memory mode: a large backlog ----------------------------------------------
if [ "$BACKLOG" -gt 0 ]; then
  BPPT=$(partitions_for "$BACKLOG")
  phase backlog
  start_broker backlog "$TOPICS" "$BPPT"
  BACKLOG_BROKER_PID=$BROKER_PID
  preload "$BACKLOG" 0
  check_watermarks "$BACKLOG"
  fresh_db backlog
  psql_db postgres -c "CHECKPOINT"
  PG0=$(pg_cpu_ticks)
  log "draining a backlog of $BACKLOG events"
  start_sink backlog backlog bench-backlog "$TOPICS"
  B_T0=$SINK_T0
  drain_wait backlog bench-backlog "$BACKLOG" $((600 + BACKLOG / 500)) backlog
  sleep 0.3
  PG1=$(pg_cpu_ticks)
  commit_timeline backlog "$B_T0" "$BACKLOG" backlog
  verify backlog "$BACKLOG" "$BROKER_DIR/watermarks"
  stop_pid "$BACKLOG_BROKER_PID" 10 || true
  B_RSS=$(f %.1f "$D_HWM_KB / 1024")
  row "backlog events" "$BACKLOG" "2 topics x $BPPT partitions; watermarks: ${WM_SUMMARY}"
  row "backlog peak RSS" "$B_RSS MiB" "VmHWM; target <= 150 MiB: $(verdict "$B_RSS <= 150"); max sampled VmRSS $(f %.1f "$D_RSS_SAMPLED_KB / 1024") MiB"
  row "backlog drain rate" "$T_STEADY_RPS rows/s" "steady; total $T_TOTAL_RPS rows/s, ${T_SPAN}s from first to last commit, first row ${T_FIRST_ROW}s"
  [ -n "$D_PERSIST_S" ] && row "backlog persister busy" "$(f %.0f "100 * $D_PERSIST_S / ($T_SPAN + $D_PERSIST_S / $D_BATCHES)")%" "sum of crm_batch_persist_seconds $(f %.2f "$D_PERSIST_S")s over ${D_BATCHES} batches; $T_COMMITS transactions"
  row "backlog CPU sink / PostgreSQL" "$(f %.2f "$D_SINK_TICKS / $CLK_TCK")s / $(f %.2f "($PG1 - $PG0) / $CLK_TCK")s" "threads: $D_THREADS"
  row "backlog verification" "OK" "$V_SUMMARY"
  result backlog_events "$BACKLOG"
  result backlog_peak_rss_mib "$B_RSS"
  result backlog_drain_rps "$T_STEADY_RPS"
  result backlog_total_rps "$T_TOTAL_RPS"
fi

# ---- report -------------------------------------------------------------------
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo
  if git -C "$ROOT" rev-parse --short HEAD >/dev/null 2>&1; then
    rev="commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- actors storage config api sql 2>/dev/null || echo ' + uncommitted changes')"
  else
    rev="source $ROOT (not a git checkout)"
  fi
  echo "crm-events-sink benchmark  $STARTED_AT  $rev  build $BUILD_TYPE"
  echo "host: $(nproc) CPUs, load average before $LOAD_BEFORE, after $LOAD_AFTER; at phase starts (1 min): ${PHASE_LOADS[*]}; sink args: ${SINK_ARGS[*]:-(defaults)}; payload_raw: $([ $PAYLOAD_RAW -eq 1 ] && echo written || echo "not written (--no-payload-raw)")"
  printf '%s\n' "${ROWS_TXT[@]}" | awk -F'|' '{ printf "  %-38s %-24s %s\n", $1, $2, $3 }'
  if [ -n "${PROFILE_TXT:-}" ]; then
    echo
    echo "profile of the drain (perf, sink CPU ${SINK_CPU}s for $EVENTS events):"
    echo "$PROFILE_TXT"
  fi
  echo
  echo "RESULT ${R_KEYS[*]}${EXTRA_RESULTS:+ ${EXTRA_RESULTS[*]}}"
}
