#!/usr/bin/env bash
# bench/scale.sh: the operator queries on a journal at scale (issue 13,
# bench/README.md "The journal at scale").
#
#   bench/scale.sh [options]
#     --journal-rows N    journal rows seeded (default 10000000)
#     --dlq-rows M        DLQ rows seeded (default 1000000)
#     --interval I        journal-partition-interval: day (default) or month
#     --tenants T         tenants (default 2000, skewed)
#     --days D            days of received_at up to now (default 90)
#     --samples S         timed requests per query (default 200)
#     --seed-jobs J       parallel psql sessions loading the journal (default 3)
#     --sink-arg=ARG      extra flag for the service, repeatable
#     --build-dir DIR     build directory (default <repo>/build)
#     --no-build          use the binary in the build directory as it is
#     --pg-dir DIR        the PostgreSQL cluster lives in DIR and is kept (stopped)
#                         at the end; a database already seeded there is
#                         measured again without seeding (e.g. after a code
#                         change; the service applies newer migrations)
#     --keep              keep the work directory (logs, plans, data)
#     --help
#
# A throwaway PostgreSQL (scripts/pg-tmp.sh); the service's own migrations
# (the service is started once and stopped); bench/seed_journal.sql and
# bench/seed_dlq.sql; ANALYZE; then the service with the embedded broker and
# an admin key, and bench/scale_client.py measures p50/p99 of GET /events
# (large tenant, small tenant, with topic, with a one-day range, page 200 of
# a cursor walk), a bulk-replay dry run over one day of the large tenant, and
# GET /dlq filtered, on one keep-alive connection, then prints EXPLAIN
# (ANALYZE, BUFFERS) of the SQL each query sent. Targets: p99 <= 20 ms, dry
# run <= 1 s, partition pruning and an index path in the plans.
# Everything it starts is stopped and the work directory removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
JOURNAL_ROWS=10000000
DLQ_ROWS=1000000
INTERVAL=day
TENANTS=2000
DAYS=90
SAMPLES=200
SEED_JOBS=3
SINK_ARGS=()
BUILD_DIR=$ROOT/build
DO_BUILD=1
KEEP=0
PG_DIR=""
BENCH_TAG=scale

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }
need_num() { [[ $2 =~ ^[0-9]+$ ]] || { echo "scale.sh: $1 needs a number, got '$2'" >&2; exit 2; }; }

while [ $# -gt 0 ]; do
  arg=$1; val=""
  case $arg in
    --*=*) val=${arg#*=}; arg=${arg%%=*} ;;
  esac
  SHIFT2=0
  case $arg in
    --journal-rows|--dlq-rows|--interval|--tenants|--days|--samples|--seed-jobs|--sink-arg|--build-dir|--pg-dir)
      if [ -z "$val" ]; then
        [ $# -ge 2 ] || { echo "scale.sh: $arg needs a value" >&2; exit 2; }
        val=$2; SHIFT2=1
      fi ;;
  esac
  case $arg in
    --journal-rows) need_num "$arg" "$val"; JOURNAL_ROWS=$val ;;
    --dlq-rows) need_num "$arg" "$val"; DLQ_ROWS=$val ;;
    --interval) INTERVAL=$val ;;
    --tenants) need_num "$arg" "$val"; TENANTS=$val ;;
    --days) need_num "$arg" "$val"; DAYS=$val ;;
    --samples) need_num "$arg" "$val"; SAMPLES=$val ;;
    --seed-jobs) need_num "$arg" "$val"; SEED_JOBS=$val ;;
    --sink-arg) SINK_ARGS+=("$val") ;;
    --build-dir) BUILD_DIR=$val ;;
    --no-build) DO_BUILD=0 ;;
    --pg-dir) mkdir -p "$val"; PG_DIR=$(cd "$val" && pwd) ;;
    --keep) KEEP=1 ;;
    -h|--help) usage 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; usage 2 ;;
  esac
  shift
  [ $SHIFT2 -eq 1 ] && shift
done
case $INTERVAL in day|month) ;; *) echo "scale.sh: --interval is day or month" >&2; exit 2 ;; esac
[ "$JOURNAL_ROWS" -gt 0 ] && [ "$DAYS" -gt 1 ] && [ "$TENANTS" -gt 0 ] &&
  [ "$SEED_JOBS" -gt 0 ] || { echo "scale.sh: rows, days (> 1), tenants and seed jobs must be > 0" >&2; exit 2; }
for t in psql curl openssl; do
  command -v $t >/dev/null || { echo "scale.sh: needs $t (scripts/install-deps.sh)" >&2; exit 2; }
done

SINK=$BUILD_DIR/actors/crm-events-sink
PGTMP=$ROOT/scripts/pg-tmp.sh
CLK_TCK=$(getconf CLK_TCK)
. "$ROOT/bench/lib.sh"

if [ $DO_BUILD -eq 1 ]; then
  log "building crm-events-sink in $BUILD_DIR"
  BUILD_DIR=$BUILD_DIR "$ROOT/scripts/build.sh" --target crm-events-sink >&2 || die "build failed"
fi
[ -x "$SINK" ] || die "missing $SINK (build it, or drop --no-build)"

WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/crm-scale-bench.XXXXXX")
chmod 755 "$WORK"
start_pg
DB=ces
DB_URL=$(url_db "$DB")
PG_LOG=${PG_DIR:-$WORK/pg}/log
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

printf 'ces_%s\n' "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" >"$WORK/admin.key"
chmod 600 "$WORK/admin.key"

# start_service NAME: the service on this database with the embedded broker
# and the admin key; waits until /ready. Sets SVC_PID API.
start_service() {
  local hport mport
  hport=$(free_port); mport=$(free_port)
  while [ "$hport" = "$mport" ]; do mport=$(free_port); done
  API=http://127.0.0.1:$hport
  "$SINK" --database-url="$DB_URL" --kafka-bootstrap-servers=embedded \
    --embedded-bootstrap-file="$WORK/bootstrap-$1" \
    --kafka-topics=apexflow.leads.created,apexflow.jobs.created \
    --kafka-group-id=bench-scale \
    --http-address=127.0.0.1 --http-port="$hport" \
    --metrics-address=127.0.0.1 --metrics-port="$mport" \
    --admin-token-file="$WORK/admin.key" \
    --journal-partition-interval="$INTERVAL" \
    --dlq-auto-retry-classes= --log-level=warn \
    "${SINK_ARGS[@]}" >"$WORK/sink-$1.log" 2>&1 &
  SVC_PID=$!
  track $SVC_PID
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$API/ready")" = 200 ] && return 0
    kill -0 "$SVC_PID" 2>/dev/null || die "crm-events-sink exited: $(tail -n 5 "$WORK/sink-$1.log")"
    sleep 0.1
  done
  die "crm-events-sink is not ready after 120 s: $(tail -n 5 "$WORK/sink-$1.log")"
}

SEEDED=0
if [ -n "$PG_DIR" ] &&
   [ "$(psql_db "$DB" -c "SELECT to_regclass('journal_partitions') IS NOT NULL AND EXISTS (SELECT 1 FROM event_journal)" 2>/dev/null)" = t ]; then
  SEEDED=1
  log "reusing the seeded database in $PG_DIR"
fi
T_SEED_S=na; SEED_RPS=na; DLQ_S=na; ANALYZE_S=na; SEED_LOAD=na
if [ $SEEDED -eq 0 ]; then
# ---- 1. migrations: the service applies them ---------------------------------
log "migrating (the service, journal-partition-interval=$INTERVAL)"
start_service migrate
stop_pid "$SVC_PID" 30 || die "crm-events-sink (migrate) exited with an error: $(tail -n 5 "$WORK/sink-migrate.log")"
psql_db "$DB" -c "SELECT count(*) FROM schema_migrations" >/dev/null || die "no migrations applied"
log "migrated: $(psql_db "$DB" -c "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations")"

# ---- 2. seeding ------------------------------------------------------------------
SEED_LOAD=$(loadavg)
log "seeding $JOURNAL_ROWS journal rows ($TENANTS tenants, $DAYS days, $SEED_JOBS sessions; load $SEED_LOAD)"
seed() { psql_db "$DB" -v rows="$JOURNAL_ROWS" -v tenants="$TENANTS" -v days="$DAYS" -v interval="$INTERVAL" -f "$ROOT/bench/seed_journal.sql" "$@"; }
T_SEED0=$EPOCHREALTIME
seed -v phase=prepare >&2 || die "seed_journal (prepare) failed"
SEED_PIDS=()
for k in $(seq 0 $((SEED_JOBS - 1))); do
  seed -v phase=load -v part="$k" -v parts="$SEED_JOBS" >"$WORK/seed-$k.log" 2>&1 &
  SEED_PIDS+=($!); track $!
done
for p in "${SEED_PIDS[@]}"; do
  wait "$p" || die "seed_journal (load) failed: $(cat "$WORK"/seed-*.log | tail -n 5)"
  untrack "$p"
done
seed -v phase=finish >"$WORK/seed-finish.log" 2>&1 || die "seed_journal (finish) failed: $(tail -n 5 "$WORK/seed-finish.log")"
T_SEED_S=$(f %.1f "$EPOCHREALTIME - $T_SEED0")
cat "$WORK/seed-finish.log" >&2
SEED_RPS=$(f %.0f "$JOURNAL_ROWS / $T_SEED_S")
log "journal seeded: $JOURNAL_ROWS rows in ${T_SEED_S}s ($SEED_RPS rows/s, indexes included; load $(loadavg))"
DLQ_S=0
if [ "$DLQ_ROWS" -gt 0 ]; then
  t0=$EPOCHREALTIME
  psql_db "$DB" -v rows="$DLQ_ROWS" -v tenants="$TENANTS" -v days="$DAYS" -f "$ROOT/bench/seed_dlq.sql" >&2 || die "seed_dlq failed"
  DLQ_S=$(f %.1f "$EPOCHREALTIME - $t0")
fi
t0=$EPOCHREALTIME
psql_db "$DB" -c "ANALYZE" || die "ANALYZE failed"
ANALYZE_S=$(f %.1f "$EPOCHREALTIME - $t0")
log "ANALYZE in ${ANALYZE_S}s"
fi

PARTS=$(psql_db "$DB" -c "SELECT count(*) FROM journal_partitions WHERE state = 'attached'")
JSIZE=$(psql_db "$DB" -c "SELECT pg_size_pretty(sum(pg_total_relation_size(format('%I', name)::regclass))) FROM journal_partitions WHERE state = 'attached'")
# Rows as ANALYZE counted them (a count(*) of 10 M rows takes a while).
JOURNAL_ROWS=$(psql_db "$DB" -c "SELECT sum(greatest(c.reltuples, 0))::bigint FROM journal_partitions p JOIN pg_class c ON c.oid = format('%I', p.name)::regclass WHERE p.state = 'attached'")
DLQ_ROWS=$(psql_db "$DB" -c "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'event_dlq'::regclass")
BYTES_ROW=$(psql_db "$DB" -c "SELECT round(sum(pg_total_relation_size(format('%I', name)::regclass)) / greatest(($JOURNAL_ROWS)::numeric, 1)) FROM journal_partitions WHERE state = 'attached'")
# The large tenant and a small one (the smallest with at least 50 rows: a
# whole first page).
LARGE=tenant-0000
SMALL=$(psql_db "$DB" -c "SELECT tenant_id FROM event_journal WHERE tenant_id >= 'tenant-1900' GROUP BY tenant_id HAVING count(*) >= 50 ORDER BY count(*), tenant_id LIMIT 1")
[ -n "$SMALL" ] || SMALL=tenant-$(printf %04d $((TENANTS - 1)))
read -r LARGE_N SMALL_N <<<"$(psql_db "$DB" -F ' ' -c "SELECT count(*) FILTER (WHERE tenant_id = '$LARGE'), count(*) FILTER (WHERE tenant_id = '$SMALL') FROM event_journal WHERE tenant_id IN ('$LARGE', '$SMALL')")"
# One whole UTC day in the middle of the span.
DAY0=$(( ($(date +%s) / 86400 - DAYS / 2) * 86400 ))
DAY_FROM=$(date -u -d "@$DAY0" +%Y-%m-%dT%H:%M:%SZ)
DAY_TO=$(date -u -d "@$((DAY0 + 86400))" +%Y-%m-%dT%H:%M:%SZ)
log "journal: $PARTS partitions ($INTERVAL), $JSIZE ($BYTES_ROW bytes/row with indexes); $LARGE $LARGE_N rows, $SMALL $SMALL_N rows; day $DAY_FROM"

# ---- 3. the queries -------------------------------------------------------------
start_service queries
QUERY_LOAD=$(loadavg)
log "service ready at $API (load $QUERY_LOAD): measuring"
/usr/bin/python3 "$ROOT/bench/scale_client.py" --api "$API" \
  --key-file "$WORK/admin.key" --db-url "$DB_URL" --pg-log "$PG_LOG" \
  --large "$LARGE" --small "$SMALL" --day-from "$DAY_FROM" --day-to "$DAY_TO" \
  --samples "$SAMPLES" --out "$WORK" | tee "$WORK/client.out" ||
  die "scale_client failed"
kill -0 "$SVC_PID" 2>/dev/null || die "crm-events-sink exited during the run"
stop_pid "$SVC_PID" 30 || log "warning: crm-events-sink exited with an error"

echo
echo "journal at scale  $(date -u +%FT%TZ)  commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')  host $(nproc) CPUs, load during seed $SEED_LOAD, during queries $QUERY_LOAD"
printf '  %-30s %s\n' \
  "journal" "$JOURNAL_ROWS rows, $TENANTS tenants, $DAYS days, $PARTS partitions ($INTERVAL), $JSIZE ($BYTES_ROW B/row)" \
  "seed (journal)" "${T_SEED_S}s: $SEED_RPS rows/s, $SEED_JOBS sessions, indexes rebuilt (load $SEED_LOAD)" \
  "seed (dlq)" "$DLQ_ROWS rows in ${DLQ_S}s" \
  "ANALYZE" "${ANALYZE_S}s" \
  "tenants" "large $LARGE ($LARGE_N rows), small $SMALL ($SMALL_N rows)"
echo "RESULT interval=$INTERVAL journal_rows=$JOURNAL_ROWS dlq_rows=$DLQ_ROWS partitions=$PARTS seed_s=$T_SEED_S seed_rps=$SEED_RPS bytes_per_row=$BYTES_ROW $(sed -n 's/^RESULT //p' "$WORK/client.out")"
