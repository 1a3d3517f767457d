#!/usr/bin/env bash
# bench/replay.sh: bulk replay throughput (issue 10) against the embedded
# broker, next to the broker's own produce rate with kcat, in the same run.
#
#   bench/replay.sh [options]
#     --events N              events seeded into the journal and replayed by
#                             one job (default 200000)
#     --partitions P          partitions of the topic (default 6)
#     --sink-arg=ARG          extra flag for crm-events-sink, repeatable
#                             (e.g. --sink-arg=--jobs-batch-size=5000)
#     --target-topic T        publish the job (and kcat) to topic T, which the
#                             sink does not consume: the publish rate alone,
#                             without the sink ingesting the replays back on
#                             the same 2 cores (step 2 is skipped)
#     --timeout-s S           give up on the job after S seconds (default 900)
#     --build-dir DIR         build directory (default <repo>/build-bench)
#     --no-build              use the binaries in the build directory as they are
#     --keep                  keep the work directory (logs, data)
#     --help
#
# One crm-events-sink with the embedded broker (librdkafka's mock cluster,
# in-process; --kafka-bootstrap-servers=embedded), API auth off, and
# job-rate-per-tenant=0 (unthrottled). N events of ~530 bytes (20 tenants)
# are seeded straight into event_journal (SQL, with payload_raw) under the
# topic bench.replay, which the sink also consumes. Then:
#   1. POST /replays {"filter":{"topic":"bench.replay"},"max_events":N};
#      GET /jobs/{id} every 100 ms until the job ends. replay_eps = done /
#      (finished_at - started_at) from the jobs row; replay_wall_eps = done /
#      (last poll - POST), which includes queueing and the job's planning.
#   2. Waits until the sink has journalled the N replays back (each with
#      replay_job = the job id; checks one per event): journal_back_s.
#   3. kcat -P of the same N payloads (one file, librdkafka defaults, like the
#      job's producer the sink consumes them back meanwhile): kcat_eps = N /
#      kcat's wall time (it exits once every message is acknowledged).
# RESULT line on stdout: events replay_eps replay_wall_eps journal_back_s
# kcat_eps replay_vs_kcat.
#
# Needs the JOBS actor (POST /replays, GET /jobs/{id}): run it on a build that
# has it. Needs psql, curl and kcat. Everything it starts is stopped and the
# work directory removed at the end, on failure and on Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
EVENTS=200000
PARTITIONS=6
SINK_ARGS=()
TIMEOUT_S=900
BUILD_DIR=$ROOT/build-bench
DO_BUILD=1
KEEP=0
TOPIC=bench.replay
TARGET=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "replay.sh: $1 needs a number, got '$2'" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  arg=$1; val=""
  case $arg in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  SHIFT2=0
  case $arg in
    --events|--partitions|--sink-arg|--timeout-s|--build-dir|--target-topic)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || { echo "replay.sh: $arg needs a value" >&2; exit 2; }
        val=$2; SHIFT2=1
      fi ;;
  esac
  case $arg in
    --events) need_num "$arg" "$val"; EVENTS=$val ;;
    --partitions) need_num "$arg" "$val"; PARTITIONS=$val ;;
    --sink-arg) SINK_ARGS+=("$val") ;;
    --timeout-s) need_num "$arg" "$val"; TIMEOUT_S=$val ;;
    --target-topic) TARGET=$val ;;
    --build-dir) BUILD_DIR=$val ;;
    --no-build) DO_BUILD=0 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage 0 ;;
    *) echo "replay.sh: unknown option $1" >&2; usage 2 ;;
  esac
  shift
  [ $SHIFT2 -eq 1 ] && shift
done
[ "$EVENTS" -gt 0 ] && [ "$PARTITIONS" -gt 0 ] || { echo "replay.sh: --events and --partitions must be > 0" >&2; exit 2; }
for t in psql curl kcat; do
  command -v $t >/dev/null || { echo "replay.sh: needs $t (scripts/install-deps.sh)" >&2; exit 2; }
done

SINK=$BUILD_DIR/actors/crm-events-sink
PGTMP=$ROOT/scripts/pg-tmp.sh

log() { printf '[replay-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
f() { awk "BEGIN { printf \"$1\", $2 }"; }

WORK=""
SINK_PID=""
PG_STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ -n "$SINK_PID" ] && kill -0 "$SINK_PID" 2>/dev/null; then
    kill -TERM "$SINK_PID"
    for _ in $(seq 1 200); do kill -0 "$SINK_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SINK_PID" 2>/dev/null && kill -KILL "$SINK_PID"
    wait "$SINK_PID" 2>/dev/null
  fi
  [ $PG_STARTED -eq 1 ] && "$PGTMP" stop "$WORK/pg" >/dev/null 2>&1
  if [ -n "$WORK" ] && [ -d "$WORK" ]; then
    if [ $KEEP -eq 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
  fi
  [ $rc -eq 0 ] || [ $KEEP -eq 1 ] || log "(run with --keep to keep the logs)"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  die "no free port"
}

if [ $DO_BUILD -eq 1 ]; then
  log "building (Release) in $BUILD_DIR"
  cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "cmake failed"
  ninja -C "$BUILD_DIR" -j2 crm-events-sink >&2 || die "build failed"
fi
[ -x "$SINK" ] || die "missing $SINK (build it, or drop --no-build)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-replay-bench.XXXXXX")
chmod 755 "$WORK"
mkdir -p "$WORK/pg"
PG_STARTED=1
DB_URL=$("$PGTMP" start "$WORK/pg")
q() { PGOPTIONS='-c client_min_messages=warning' psql "$DB_URL" -X -v ON_ERROR_STOP=1 -Atq "$@"; }
log "PostgreSQL $(q -c 'SHOW server_version') (fsync=$(q -c 'SHOW fsync'))"

HPORT=$(free_port); MPORT=$(free_port)
while [ "$HPORT" = "$MPORT" ]; do MPORT=$(free_port); done
API=http://127.0.0.1:$HPORT
SINK_LOG=$WORK/sink.log
"$SINK" --database-url="$DB_URL" --kafka-bootstrap-servers=embedded \
  --embedded-bootstrap-file="$WORK/bootstrap" \
  --embedded-partitions="$PARTITIONS" --kafka-topics="$TOPIC" \
  --kafka-group-id=bench-replay --kafka-session-timeout-ms=6000 \
  --http-address=127.0.0.1 --http-port="$HPORT" \
  --metrics-address=127.0.0.1 --metrics-port="$MPORT" \
  --api-auth=off --job-rate-per-tenant=0 \
  --jobs-default-max-events="$EVENTS" \
  "${SINK_ARGS[@]}" >"$SINK_LOG" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 600); do
  [ -s "$WORK/bootstrap" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/ready")" = 200 ] && break
  kill -0 "$SINK_PID" 2>/dev/null || die "crm-events-sink exited: $(tail -n 5 "$SINK_LOG")"
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$API/ready")" = 200 ] || die "the sink is not ready: $(tail -n 5 "$SINK_LOG")"
BS=$(head -1 "$WORK/bootstrap")
BS=${BS#bootstrap=}
log "sink ready (embedded broker $BS, topic $TOPIC x $PARTITIONS)"

# -- seed -----------------------------------------------------------------------
# Offsets far beyond what the broker will hold, so seeded rows and consumed
# replays never share coordinates.
log "seeding $EVENTS events into event_journal"
t0=$EPOCHREALTIME
q -c "
  INSERT INTO event_journal (tenant_id, topic, partition, \"offset\", key,
                             payload, payload_raw, kafka_timestamp)
  SELECT 'tenant-' || lpad((i % 20)::text, 2, '0'), '$TOPIC', i % $PARTITIONS,
         1000000000 + i / $PARTITIONS, convert_to('lead-' || i, 'UTF8'),
         p::jsonb, p, now() - interval '1 hour'
  FROM (SELECT i, format('{\"event_type\":\"lead.created\",\"tenant_id\":\"tenant-%s\",\"lead_id\":\"lead-%s\",\"seq\":%s,\"amount\":1.50,\"source\":\"web\",\"contact\":{\"name\":\"Ada Lovelace\",\"email\":\"ada%s@example.com\"},\"note\":\"%s\"}',
                         lpad((i % 20)::text, 2, '0'), i, i, i, repeat('x', 330)) AS p
        FROM generate_series(0, $EVENTS - 1) AS i) s" ||
  die "seeding failed"
q -c "ANALYZE event_journal"
log "seeded in $(f %.1f "$EPOCHREALTIME - $t0")s, avg payload $(q -c "SELECT round(avg(octet_length(payload_raw))) FROM event_journal") B"

# -- 1. the job ---------------------------------------------------------------------
BODY="{\"filter\":{\"topic\":\"$TOPIC\"},\"max_events\":$EVENTS${TARGET:+,\"target_topic\":\"$TARGET\"}}"
T_POST=$EPOCHREALTIME
resp=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/json' -d "$BODY" "$API/replays")
code=${resp##*$'\n'}
body=${resp%$'\n'*}
[ "$code" = 202 ] || die "POST /replays answered $code: $body"
JOB=$(echo "$body" | sed -n 's/.*"job_id": *\([0-9]*\).*/\1/p')
[ -n "$JOB" ] || die "no job_id in $body"
log "job $JOB: $body"
status=queued
deadline=$(( $(date +%s) + TIMEOUT_S ))
while :; do
  job=$(curl -s "$API/jobs/$JOB")
  T_LAST=$EPOCHREALTIME
  status=$(echo "$job" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
  case $status in succeeded|failed|cancelled) break ;; esac
  [ "$(date +%s)" -lt $deadline ] || die "job $JOB still $status after ${TIMEOUT_S}s: $job"
  kill -0 "$SINK_PID" 2>/dev/null || die "crm-events-sink exited: $(tail -n 5 "$SINK_LOG")"
  sleep 0.1
done
log "job $JOB $status: $job"
[ "$status" = succeeded ] || die "job $JOB ended $status"
read -r DONE FAILED SPAN <<<"$(q -F ' ' -c "SELECT done, failed, extract(epoch FROM finished_at - started_at) FROM jobs WHERE id = $JOB")"
[ "$DONE" = "$EVENTS" ] || die "job $JOB did $DONE of $EVENTS events ($FAILED failed)"
REPLAY_EPS=$(f %.0f "$DONE / $SPAN")
REPLAY_WALL_EPS=$(f %.0f "$DONE / ($T_LAST - $T_POST)")
log "replayed $DONE events in ${SPAN}s (started -> finished): $REPLAY_EPS events/s; $REPLAY_WALL_EPS events/s from the POST"

# -- 2. journalled back, once per event ------------------------------------------
if [ -n "$TARGET" ]; then
  BACK_S=-1; same=-1
  log "published to $TARGET (not consumed): nothing journalled back"
else
for _ in $(seq 1 $((TIMEOUT_S * 10))); do
  n=$(q -c "SELECT count(*) FROM event_journal WHERE replay_job = $JOB")
  [ "$n" -ge "$EVENTS" ] && break
  kill -0 "$SINK_PID" 2>/dev/null || die "crm-events-sink exited: $(tail -n 5 "$SINK_LOG")"
  sleep 0.1
done
BACK_S=$(f %.2f "$EPOCHREALTIME - $T_POST")
read -r rows distinct <<<"$(q -F ' ' -c "SELECT count(*), count(DISTINCT replay_of) FROM event_journal WHERE replay_job = $JOB")"
[ "$rows" = "$EVENTS" ] && [ "$distinct" = "$EVENTS" ] ||
  die "journal holds $rows replays of job $JOB ($distinct distinct events), expected $EVENTS"
same=$(q -c "SELECT count(*) FROM event_journal r JOIN event_journal o ON o.id = r.replay_of WHERE r.replay_job = $JOB AND r.payload_raw = o.payload_raw")
log "journalled back: $rows replays of job $JOB, one per event, $same byte-identical, ${BACK_S}s after the POST"
fi

# -- 3. the broker's own produce rate ----------------------------------------------
q -c "\\copy (SELECT payload_raw FROM event_journal WHERE replay_of IS NULL AND topic = '$TOPIC' ORDER BY id) TO '$WORK/payloads.txt'"
t0=$EPOCHREALTIME
kcat -P -b "$BS" -t "${TARGET:-$TOPIC}" -l "$WORK/payloads.txt" 2>"$WORK/kcat.err" || die "kcat: $(tail -n 3 "$WORK/kcat.err")"
KCAT_S=$(f %.3f "$EPOCHREALTIME - $t0")
KCAT_EPS=$(f %.0f "$EVENTS / $KCAT_S")
log "kcat -P: $EVENTS messages in ${KCAT_S}s: $KCAT_EPS events/s"

echo
echo "bulk replay benchmark  $(date -u +%FT%TZ)  commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')  host $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '  %-34s %s\n' "events" "$EVENTS (topic $TOPIC x $PARTITIONS partitions${TARGET:+, published to $TARGET})" \
  "job (started -> finished)" "$REPLAY_EPS events/s (${SPAN}s; target >= 50000: $(awk "BEGIN { print ($REPLAY_EPS >= 50000) ? \"PASS\" : \"FAIL\" }"))" \
  "job (POST -> seen finished)" "$REPLAY_WALL_EPS events/s" \
  "journalled back (POST -> all in)" "${BACK_S}s, one per event, $same byte-identical" \
  "kcat -P, same payloads" "$KCAT_EPS events/s (${KCAT_S}s)" \
  "job / kcat" "$(f %.2f "$REPLAY_EPS / $KCAT_EPS")"
echo "RESULT events=$EVENTS replay_eps=$REPLAY_EPS replay_wall_eps=$REPLAY_WALL_EPS journal_back_s=$BACK_S kcat_eps=$KCAT_EPS replay_vs_kcat=$(f %.2f "$REPLAY_EPS / $KCAT_EPS")"
