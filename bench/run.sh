#!/usr/bin/env bash
# bench/run.sh: throughput, latency and memory benchmark of crm-events-sink.
# See bench/README.md for what every figure means and how it is measured.
#
#   bench/run.sh [options]
#     --events N              events preloaded for the drain (default 200000)
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

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "run.sh: $1 needs a number, got '$2'" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  arg=$1; val=""
  case $arg in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  SHIFT2=0
  case $arg in
    --events|--copy-runs|--first-row-runs|--lat-rate|--lat-seconds|--lat-poll-ms|--backlog|--events-per-partition|--build-dir|--sink-arg|--sink-bin|--container)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || { echo "run.sh: $arg needs a value" >&2; exit 2; }
        val=$2; SHIFT2=1
      fi ;;
  esac
  case $arg in
    --events) need_num "$arg" "$val"; EVENTS=$val ;;
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
CLK_TCK=$(getconf CLK_TCK)

# log, die, f, median, the cleanup trap, processes, /proc accounting and
# PostgreSQL (start_pg, psql_db, fresh_db): bench/lib.sh.
. "$ROOT/bench/lib.sh"

# ---- mock broker ------------------------------------------------------------
# start_broker NAME TOPICS PARTITIONS: sets BROKER_DIR BROKER_PID BROKER_BS.
start_broker() {
  local name=$1 topics=$2 parts=$3
  BROKER_DIR=$WORK/broker-$name
  mkdir -p "$BROKER_DIR"
  mkfifo "$BROKER_DIR/ctl"
  "$BROKER" --topics "$topics" --partitions "$parts" \
    --bootstrap-file "$BROKER_DIR/bootstrap" --control "$BROKER_DIR/ctl" \
    >"$BROKER_DIR/out" 2>"$BROKER_DIR/err" &
  BROKER_PID=$!
  track $BROKER_PID
  for _ in $(seq 1 100); do
    [ -s "$BROKER_DIR/bootstrap" ] && break
    kill -0 $BROKER_PID 2>/dev/null || die "crm-mock-broker exited: $(cat "$BROKER_DIR/err")"
    sleep 0.1
  done
  [ -s "$BROKER_DIR/bootstrap" ] || die "crm-mock-broker did not start"
  BROKER_BS=$(sed -n 's/^bootstrap=//p' "$BROKER_DIR/bootstrap")
  log "broker $name at $BROKER_BS: $topics x $parts partitions"
}
# broker_cmd CMD: sends a control command, prints its answer lines.
broker_cmd() {
  local before n
  before=$(wc -l <"$BROKER_DIR/out")
  echo "$1" >"$BROKER_DIR/ctl"
  for _ in $(seq 1 200); do
    if tail -n +$((before + 1)) "$BROKER_DIR/out" | grep -E '^(ok|error) ' >/dev/null; then
      tail -n +$((before + 1)) "$BROKER_DIR/out"
      return 0
    fi
    sleep 0.05
  done
  die "broker did not answer '$1'"
}
# check_watermarks N: every partition starts at 0 and the highs add up to N.
check_watermarks() {
  local want=$1 wm summary
  wm=$(broker_cmd watermarks)
  echo "$wm" | grep '^watermark ' >"$BROKER_DIR/watermarks"
  summary=$(echo "$wm" | awk '
    $1 == "watermark" { parts++; high += $5; if ($4 != 0) low_nz++; if ($5 > max) max = $5 }
    $1 == "watermark-error" { errs++ }
    END { printf "partitions=%d high_sum=%d nonzero_lows=%d errors=%d max_per_partition=%d", parts, high, low_nz, errs, max }')
  log "watermarks: $summary"
  [[ $summary == *" high_sum=$want nonzero_lows=0 errors=0 "* ]] ||
    die "the mock broker does not hold exactly $want events from offset 0 ($summary): it dropped data (retention ~5 MiB/partition) or the preload failed"
  WM_SUMMARY=$summary
}
# preload N START_INDEX: crm-produce into the current broker, checked.
preload() {
  local n=$1 start=$2 out
  out=$("$PRODUCE" --bootstrap "$BROKER_BS" --topics "${3:-$TOPICS}" --count "$n" \
    --seed $SEED --start-index "$start" --quiet) || die "crm-produce failed: $out"
  [[ $out == *" delivered=$n failed=0 "* ]] || die "crm-produce: $out"
  PRELOAD_ELAPSED=$(echo "$out" | sed -n 's/.* elapsed=\([0-9.]*\)s.*/\1/p')
  log "preloaded: $out"
}
partitions_for() { # events -> partitions per topic (2 topics)
  local p=$(( ($1 + 2 * EPP - 1) / (2 * EPP) ))
  [ $p -lt 4 ] && p=4
  echo $p
}

# ---- sink -------------------------------------------------------------------
# start_sink NAME DB GROUP TOPICS: sets SINK_PID SINK_T0 SINK_LOG SINK_METRICS.
start_sink() {
  local name=$1 db=$2 group=$3 topics=$4 mport hport
  mport=$(free_port); hport=$(free_port)
  while [ "$hport" = "$mport" ]; do hport=$(free_port); done
  SINK_LOG=$WORK/sink-$name.log
  SINK_METRICS=http://127.0.0.1:$mport/metrics
  SINK_T0=$EPOCHREALTIME
  local args=(--kafka-bootstrap-servers="$BROKER_BS" --kafka-topics="$topics"
    --kafka-group-id="$group" --database-url="$(url_db "$db")"
    --metrics-address=127.0.0.1 --metrics-port="$mport"
    --http-address=127.0.0.1 --http-port="$hport" "${SINK_ARGS[@]}")
  if [ -n "$CONTAINER_IMAGE" ]; then
    # The image logs JSON by default; text as the bare binary, so that the
    # container is the only difference.
    SINK_CONTAINER=crm-bench-$$-$name
    CONTAINERS+=("$SINK_CONTAINER")
    $ENGINE run -d --name "$SINK_CONTAINER" --network=host --read-only \
      -e LOG_FORMAT=text "$CONTAINER_IMAGE" "${args[@]}" >/dev/null ||
      die "$ENGINE run $CONTAINER_IMAGE failed"
    SINK_PID=$($ENGINE inspect -f '{{.State.Pid}}' "$SINK_CONTAINER")
    [ "${SINK_PID:-0}" -gt 0 ] || die "container $SINK_CONTAINER has no process"
    $ENGINE logs -f "$SINK_CONTAINER" >"$SINK_LOG" 2>&1 &
    track $!
    return 0
  fi
  "$SINK" "${args[@]}" >"$SINK_LOG" 2>&1 &
  SINK_PID=$!
  track $SINK_PID
}
stop_sink() {
  local rc=0
  if [ -n "$CONTAINER_IMAGE" ]; then
    # SIGTERM, SIGKILL after 20 s; the exit code as the engine saw it.
    $ENGINE stop -t 20 "$SINK_CONTAINER" >/dev/null || rc=$?
    [ $rc -ne 0 ] || rc=$($ENGINE inspect -f '{{.State.ExitCode}}' "$SINK_CONTAINER")
    $ENGINE rm -f "$SINK_CONTAINER" >/dev/null 2>&1 || true
  else
    stop_pid "$SINK_PID" 20 || rc=$?
  fi
  [ $rc -eq 0 ] || log "warning: crm-events-sink ($1) exited with status $rc (log: $SINK_LOG)"
}
metric() { awk -v k="$1" '$1 == k { print $2 }' "$2"; }

# drain_wait DB GROUP N TIMEOUT_S: waits until N records are journalled,
# sampling the sink's RSS every 0.5 s; then takes the sink's figures (before
# SIGTERM) and stops it. Sets D_* variables.
drain_wait() {
  local db=$1 group=$2 n=$3 timeout=$4 tag=$5 wpid rc=0 rss maxrss=0
  "$PGWATCH" wait-offsets --url "$(url_db "$db")" --group "$group" --target "$n" \
    --interval-ms 50 --timeout-s "$timeout" >"$WORK/wait-$tag.out" 2>&1 &
  wpid=$!
  track $wpid
  while kill -0 $wpid 2>/dev/null; do
    if ! kill -0 "$SINK_PID" 2>/dev/null; then
      tail -n 20 "$SINK_LOG" >&2
      die "crm-events-sink exited during the drain"
    fi
    rss=$(proc_status_kb "$SINK_PID" VmRSS)
    echo "$EPOCHREALTIME ${rss:-0}" >>"$WORK/rss-$tag.txt"
    [ "${rss:-0}" -gt "$maxrss" ] && maxrss=$rss
    sleep 0.5
  done
  wait $wpid || rc=$?
  untrack $wpid
  if [ -n "${PERF_PID:-}" ]; then
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    untrack "$PERF_PID"
    PERF_PID=""
  fi
  [ $rc -eq 0 ] || die "not all $n events journalled within ${timeout}s: $(cat "$WORK/wait-$tag.out")"
  D_HWM_KB=$(proc_status_kb "$SINK_PID" VmHWM)
  D_RSS_SAMPLED_KB=$maxrss
  D_SINK_TICKS=$(proc_ticks "$SINK_PID")
  D_THREADS=$(thread_cpu "$SINK_PID")
  curl -fs "$SINK_METRICS" >"$WORK/metrics-$tag.txt" || : >"$WORK/metrics-$tag.txt"
  D_PERSIST_S=$(metric crm_batch_persist_seconds_sum "$WORK/metrics-$tag.txt")
  D_BATCHES=$(metric crm_batch_persist_seconds_count "$WORK/metrics-$tag.txt")
  stop_sink "$tag"
}

# commit_timeline DB T0 N: from the rows' commit timestamps (one per batch
# transaction). Sets T_FIRST_ROW T_TOTAL_RPS T_STEADY_RPS T_COMMITS T_SPAN.
commit_timeline() {
  local db=$1 t0=$2 n=$3 tag=$4
  psql_db "$db" -F ' ' -c "
    SELECT extract(epoch FROM pg_xact_commit_timestamp(x)), n
    FROM (SELECT xmin AS x, count(*) AS n FROM event_journal GROUP BY xmin) s
    ORDER BY 1" >"$WORK/commits-$tag.txt"
  read -r T_FIRST T_LAST T_FIRST_ROWS T_COMMITS T_ROWS < <(awk '
    NR == 1 { first = $1; first_n = $2 } { last = $1; rows += $2 }
    END { printf "%.6f %.6f %d %d %d\n", first, last, first_n, NR, rows }' "$WORK/commits-$tag.txt")
  [ "$T_ROWS" -eq "$n" ] || die "commit timeline holds $T_ROWS rows, expected $n"
  T_FIRST_ROW=$(f %.3f "$T_FIRST - $t0")
  T_TOTAL_RPS=$(f %.0f "$n / ($T_LAST - $t0)")
  T_SPAN=$(f %.3f "$T_LAST - $T_FIRST")
  if [ "$T_COMMITS" -gt 1 ]; then
    T_STEADY_RPS=$(f %.0f "($n - $T_FIRST_ROWS) / ($T_LAST - $T_FIRST)")
  else
    T_STEADY_RPS=na
  fi
}

# verify DB N: exactly N rows, no duplicate (topic, partition, offset), every
# partition's offsets 0..high-1 (against the broker's watermarks), empty DLQ.
verify() {
  local db=$1 n=$2 wmfile=$3 rows distinct dlq bad
  read -r rows distinct < <(psql_db "$db" -F ' ' -c \
    "SELECT count(*), count(DISTINCT (topic, partition, \"offset\")) FROM event_journal")
  dlq=$(psql_db "$db" -c "SELECT count(*) FROM event_dlq")
  psql_db "$db" -F ' ' -c "SELECT topic, partition, count(*), min(\"offset\"), max(\"offset\")
    FROM event_journal GROUP BY 1, 2" >"$WORK/coverage-$db.txt"
  bad=$(awk 'FNR == NR { hi[$2 " " $3] = $5; next }
             { k = $1 " " $2; seen[k] = 1
               if (!(k in hi) || $3 != hi[k] || $4 != 0 || $5 != hi[k] - 1) b++ }
             END { for (k in hi) if (hi[k] > 0 && !(k in seen)) b++; print b + 0 }' \
        "$wmfile" "$WORK/coverage-$db.txt")
  V_SUMMARY="rows=$rows distinct_coordinates=$distinct dlq=$dlq partitions_off=$bad"
  if [ "$rows" -ne "$n" ] || [ "$distinct" -ne "$n" ] || [ "$dlq" -ne 0 ] || [ "$bad" -ne 0 ]; then
    die "verification failed: $V_SUMMARY (expected $n rows, no duplicates, empty DLQ)"
  fi
}

# copy_best DB TABLE_DEF COLUMNS FILE N: loads FILE with one \copy in one
# transaction into a fresh table copy_ceiling, COPY_RUNS times (a CHECKPOINT
# before each, so every run starts alike). Times only BEGIN..COMMIT, inside
# psql. Sets COPY_BEST (s) and COPY_TIMES.
copy_best() {
  local db=$1 def=$2 cols=$3 file=$4 n=$5 i secs got times=()
  for i in $(seq 1 "$COPY_RUNS"); do
    secs=$(psql_db "$db" <<EOF
DROP TABLE IF EXISTS copy_ceiling;
CHECKPOINT;
CREATE TABLE copy_ceiling $def;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
\copy copy_ceiling ($cols) from '$file'
COMMIT;
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 4);
EOF
    )
    got=$(psql_db "$db" -c "SELECT count(*) FROM copy_ceiling")
    [ "$got" -eq "$n" ] || die "COPY loaded $got rows, expected $n"
    times+=("$secs")
    log "COPY into $db.copy_ceiling run $i: ${secs}s = $(f %.0f "$n / $secs") rows/s"
  done
  psql_db "$db" -c "DROP TABLE copy_ceiling" -c "CHECKPOINT"
  COPY_BEST=$(printf '%s\n' "${times[@]}" | sort -g | head -1)
  COPY_TIMES="${times[*]/%/s}"
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
    row "steady / COPY ceiling" "$RATIO" "target >= 0.8 (stretch 0.9): $(verdict "$RATIO >= 0.8")"
  fi
  row "time to first row (this run)" "${T_FIRST_ROW}s" "first commit - sink start"
  row "peak RSS of the sink" "$PEAK_RSS MiB" "VmHWM before SIGTERM (max sampled VmRSS $(f %.1f "$D_RSS_SAMPLED_KB / 1024") MiB)"
  row "sink CPU" "${SINK_CPU}s" "utime+stime, whole process life; $(f %.1f "$D_SINK_TICKS / $CLK_TCK * 1e6 / $EVENTS") us/event; threads: $D_THREADS"
  row "PostgreSQL CPU" "${PG_CPU}s" "whole cluster, sink start -> sink exit; $(f %.1f "($PG1 - $PG0) / $CLK_TCK * 1e6 / $EVENTS") us/event"
  row "mock broker CPU" "${BROKER_CPU}s" "crm-mock-broker process, same interval"
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
  # The same rows the sink wrote, COPYed into the journal's own schema (all
  # nine columns, identity, primary key and received_at index): what COPY
  # can do for this table, to tell schema cost from sink overhead.
  JOURNAL_COPY_RPS=na
  if [ $DO_COPY -eq 1 ]; then
    phase journal-copy
    psql_db drain -c "\\copy (SELECT ${JOURNAL_COLUMNS} FROM event_journal ORDER BY id) to '$WORK/journal.copy'"
    copy_best drain "(LIKE event_journal INCLUDING ALL)" "$JOURNAL_COLUMNS" "$WORK/journal.copy" "$EVENTS"
    rm -f "$WORK/journal.copy"
    JOURNAL_COPY_RPS=$(f %.0f "$EVENTS / $COPY_BEST")
    row "COPY into the journal schema" "$JOURNAL_COPY_RPS rows/s" "the sink's rows, $(echo "$JOURNAL_COLUMNS" | tr ',' '\n' | wc -l) columns + identity + indexes, best of $COPY_RUNS (${COPY_TIMES}); steady / this = $(f %.3f "$T_STEADY_RPS / $JOURNAL_COPY_RPS")"
  fi
  result total_rps "$T_TOTAL_RPS"
  result steady_rps "$T_STEADY_RPS"
  result ratio "$RATIO"
  FIRST_ROWS=("$T_FIRST_ROW")

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
  EXTRA_RESULTS=("journal_copy_rps=$JOURNAL_COPY_RPS")
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
