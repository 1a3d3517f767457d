# bench/lib_sink.sh: the benchmark functions around the sink, shared by
# bench/run.sh and bench/instances.sh (sourced after bench/lib.sh): the mock
# broker, crm-produce preloads, starting and stopping sinks, drain timelines,
# exactly-once verification, COPY ceilings, migrated databases. The caller
# sets SINK, BROKER, PRODUCE, PGWATCH, TOPICS, EPP, SINK_ARGS, COPY_RUNS,
# JOURNAL_COLUMNS and CONTAINER_IMAGE first.
# shellcheck shell=bash

# ---- broker -------------------------------------------------------------------
# KAFKA_MODE (set by the caller, default mock): `mock` runs crm-mock-broker
# (librdkafka's mock cluster), `real` a one-node Apache Kafka started by
# scripts/kafka.sh (the version pinned in tests/kafka/pom.xml).
# start_broker NAME TOPICS PARTITIONS: sets BROKER_DIR BROKER_PID BROKER_BS.
start_broker() {
  local name=$1 topics=$2 parts=$3
  BROKER_DIR=$WORK/broker-$name
  BROKER_TOPICS=$topics BROKER_PARTS=$parts
  mkdir -p "$BROKER_DIR"
  if [ "${KAFKA_MODE:-mock}" = real ]; then
    # --owner: the cluster goes with this script, however it ends.
    BROKER_BS=$("$ROOT/scripts/kafka.sh" start "$BROKER_DIR/kafka" \
      --topics "$topics" --partitions "$parts" --owner $$ \
      2>"$BROKER_DIR/err") ||
      die "scripts/kafka.sh start failed: $(tail -n 20 "$BROKER_DIR/err")"
    BROKER_PID=$(cat "$BROKER_DIR/kafka/node-1/pid")
    track "$BROKER_PID"
    log "broker $name (Apache Kafka) at $BROKER_BS: $topics x $parts partitions"
    return 0
  fi
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
# broker_name: what the figures call the broker process.
broker_name() {
  if [ "${KAFKA_MODE:-mock}" = real ]; then echo "Apache Kafka (JVM)"; else echo "crm-mock-broker"; fi
}
# real_watermarks: the mock's `watermark TOPIC PARTITION LOW HIGH` lines for
# the current Apache Kafka broker, asked with kcat (ListOffsets).
real_watermarks() {
  local t p low high
  for t in ${BROKER_TOPICS//,/ }; do
    for p in $(seq 0 $((BROKER_PARTS - 1))); do
      low=$(kcat -Q -b "$BROKER_BS" -t "$t:$p:-2" 2>/dev/null | awk '{print $NF}')
      high=$(kcat -Q -b "$BROKER_BS" -t "$t:$p:-1" 2>/dev/null | awk '{print $NF}')
      if [[ $low =~ ^[0-9]+$ ]] && [[ $high =~ ^[0-9]+$ ]]; then
        echo "watermark $t $p $low $high"
      else
        echo "watermark-error $t $p kcat -Q failed"
      fi
    done
  done
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
  if [ "${KAFKA_MODE:-mock}" = real ]; then
    wm=$(real_watermarks)
  else
    wm=$(broker_cmd watermarks)
  fi
  echo "$wm" | grep '^watermark ' >"$BROKER_DIR/watermarks"
  summary=$(echo "$wm" | awk '
    $1 == "watermark" { parts++; high += $5; if ($4 != 0) low_nz++; if ($5 > max) max = $5 }
    $1 == "watermark-error" { errs++ }
    END { printf "partitions=%d high_sum=%d nonzero_lows=%d errors=%d max_per_partition=%d", parts, high, low_nz, errs, max }')
  log "watermarks: $summary"
  [[ $summary == *" high_sum=$want nonzero_lows=0 errors=0 "* ]] ||
    die "the broker does not hold exactly $want events from offset 0 ($summary): it dropped data (retention ~5 MiB/partition) or the preload failed"
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
# transaction; rows with an id above J_MIN_ID). Sets T_FIRST_ROW T_TOTAL_RPS T_STEADY_RPS T_COMMITS T_SPAN.
commit_timeline() {
  local db=$1 t0=$2 n=$3 tag=$4
  psql_db "$db" -F ' ' -c "
    SELECT extract(epoch FROM pg_xact_commit_timestamp(x)), n
    FROM (SELECT xmin AS x, count(*) AS n FROM event_journal
          WHERE id > ${J_MIN_ID:-0} GROUP BY xmin) s
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

# verify DB N: exactly N rows (with an id above J_MIN_ID, the rows a drain
# added to a seeded journal), no duplicate (topic, partition, offset), every
# partition's offsets 0..high-1 (against the broker's watermarks), empty DLQ.
verify() {
  local db=$1 n=$2 wmfile=$3 rows distinct dlq bad
  read -r rows distinct < <(psql_db "$db" -F ' ' -c \
    "SELECT count(*), count(DISTINCT (topic, partition, \"offset\"))
     FROM event_journal WHERE id > ${J_MIN_ID:-0}")
  dlq=$(psql_db "$db" -c "SELECT count(*) FROM event_dlq")
  psql_db "$db" -F ' ' -c "SELECT topic, partition, count(*), min(\"offset\"), max(\"offset\")
    FROM event_journal WHERE id > ${J_MIN_ID:-0} GROUP BY 1, 2" >"$WORK/coverage-$db.txt"
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

# migrate_db DB [SINK_FLAG...]: a fresh database with the service's schema. The
# sink applies its migrations at start: it runs against the current broker on
# a topic nobody writes and is stopped once it logs schema_ready.
migrate_db() {
  local db=$1 saved=("${SINK_ARGS[@]}")
  shift
  fresh_db "$db"
  SINK_ARGS+=("$@")
  start_sink "migrate-$db" "$db" "bench-migrate-$db" bench.migrate.none
  SINK_ARGS=("${saved[@]}")
  for _ in $(seq 1 600); do
    grep -q 'schema_ready' "$SINK_LOG" && break
    kill -0 "$SINK_PID" 2>/dev/null ||
      die "crm-events-sink exited while migrating $db: $(tail -n 5 "$SINK_LOG")"
    sleep 0.1
  done
  grep -q 'schema_ready' "$SINK_LOG" || die "no schema_ready from the sink on $db"
  stop_sink "migrate-$db"
}

# journal_bytes DB: bytes on disk of event_journal (every partition, its
# indexes and TOAST included).
journal_bytes() {
  psql_db "$1" -c "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)
    FROM pg_inherits WHERE inhparent = 'event_journal'::regclass"
}

# journal_copy_best DB FILE N: loads FILE (the journal's COPY columns) with one
# \copy in one transaction into DB's own event_journal (partitioned, all its
# indexes), COPY_RUNS times. Before each run the rows above J_MIN_ID go
# (TRUNCATE when the journal was empty, else DELETE + VACUUM of the partitions
# they were in) and a CHECKPOINT. Sets COPY_BEST (s) and COPY_TIMES.
journal_copy_best() {
  local db=$1 file=$2 n=$3 i secs got parts times=()
  for i in $(seq 1 "$COPY_RUNS"); do
    if [ "${J_MIN_ID:-0}" -eq 0 ]; then
      psql_db "$db" -c "TRUNCATE event_journal"
    else
      parts=$(psql_db "$db" -c "SELECT string_agg(DISTINCT tableoid::regclass::text, ', ')
        FROM event_journal WHERE id > $J_MIN_ID")
      psql_db "$db" -c "DELETE FROM event_journal WHERE id > $J_MIN_ID"
      [ -z "$parts" ] || psql_db "$db" -c "VACUUM $parts"
    fi
    secs=$(psql_db "$db" <<EOF
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
BEGIN;
\copy event_journal ($JOURNAL_COLUMNS) from '$file'
COMMIT;
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 4);
EOF
    )
    got=$(psql_db "$db" -c "SELECT count(*) FROM event_journal WHERE id > ${J_MIN_ID:-0}")
    [ "$got" -eq "$n" ] || die "COPY into $db.event_journal loaded $got rows, expected $n"
    times+=("$secs")
    log "COPY into $db.event_journal run $i: ${secs}s = $(f %.0f "$n / $secs") rows/s"
  done
  COPY_BEST=$(printf '%s\n' "${times[@]}" | sort -g | head -1)
  COPY_TIMES="${times[*]/%/s}"
}
