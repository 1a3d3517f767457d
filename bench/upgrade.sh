#!/usr/bin/env bash
# bench/upgrade.sh: how long migration 0008 (the partitioned journal) takes on
# an existing installation, per million journal rows.
#
#   bench/upgrade.sh [--rows N] [--intervals "day month"] [--keep]
#     --rows N        journal rows of the pre-0008 database (default 1000000)
#     --intervals L   partition intervals to time, each on its own copy of the
#                     same database (default "day month")
#     --check-seconds S  how long pgbench runs the ingest path's partition
#                     check (default 5; 0: skip)
#     --keep          keep the work directory
#
# A throwaway PostgreSQL 15 (scripts/pg-tmp.sh, as `nobody` when root), the
# migrations up to 0007 applied as the service applied them (each in its own
# transaction, recorded in schema_migrations), N realistic rows (JSON
# payloads of about 400 bytes with payload_raw, 2,000 tenants skewed: a few
# large ones and many small ones, received_at spread over 90 days, 12 Kafka
# partitions of 3 topics) and their journal_offsets; then migration 0008
# alone, timed, in one transaction as storage::migrate runs it.
#
# While 0008 runs, ingestion waits: its transaction holds an ACCESS
# EXCLUSIVE lock on event_journal from its first statement to its commit, and
# the service applies migrations before it starts consuming (instances
# starting together wait on the migrations' advisory lock). Readers of the
# journal (the operator API of an instance already running the old release)
# wait too.
#
# Then the ingest path's partition check (the statement every batch runs
# first: SELECT ces_journal_ensure_partitions(now(), now(), interval)) is run
# by pgbench on one connection for --check-seconds: its mean latency is the
# cost it adds to each batch.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGTMP=$ROOT/scripts/pg-tmp.sh
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
ROWS=1000000
INTERVALS="day month"
CHECK_SECONDS=5
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --intervals) INTERVALS=$2; shift 2 ;;
    --check-seconds) CHECK_SECONDS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "upgrade.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ $ROWS =~ ^[0-9]+$ ]] && [ "$ROWS" -gt 0 ] || { echo "--rows: a positive integer" >&2; exit 2; }

log() { echo "[upgrade $(date -u +%H:%M:%S)] $*" >&2; }
now_s() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-upgrade.XXXXXX")
chmod 755 "$WORK" # PostgreSQL runs as `nobody` when we are root
cleanup() {
  "$PGTMP" stop "$WORK/pg" >/dev/null 2>&1 || true
  if [ $KEEP -eq 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT

URL=$("$PGTMP" start "$WORK/pg")
BASE=${URL%/*}
psql_db() { local db=$1; shift; PGOPTIONS='-c client_min_messages=warning' psql "$BASE/$db" -X -v ON_ERROR_STOP=1 -Atq "$@"; }
log "work directory $WORK; PostgreSQL $(psql_db postgres -c 'SHOW server_version'); load $(load); $(nproc) CPUs"

# -- 1. a database at version 7 ---------------------------------------------
psql_db postgres -c "CREATE DATABASE upgrade_v7"
psql_db upgrade_v7 -c "CREATE TABLE schema_migrations (version integer
  PRIMARY KEY, name text, applied_at timestamptz DEFAULT now())"
for f in "$ROOT"/sql/000[1-7]_*.sql; do
  name=$(basename "$f")
  ver=$((10#${name:0:4}))
  psql_db upgrade_v7 -1 -f "$f" \
    -c "INSERT INTO schema_migrations (version, name) VALUES ($ver, '$name')"
done
log "migrations 1..7 applied"

# -- 2. N realistic rows -----------------------------------------------------
# Tenant skew: tenant k has weight ~ 1/(k+1) (a few large tenants, a long tail
# of small ones); payloads ~400 bytes; received_at uniform over 90 days, ids
# in received_at order (as ingestion makes them).
t0=$(now_s)
psql_db upgrade_v7 <<EOF
INSERT INTO event_journal (tenant_id, topic, partition, "offset", key,
  headers, payload, kafka_timestamp, received_at, payload_raw)
SELECT tenant, topic, part, g, convert_to('contact-' || (g % 100000), 'UTF8'),
  '[{"key": "source", "value": "crm"}]', p::jsonb, at - interval '20 ms', at,
  p
FROM (
  SELECT g,
    'tenant-' || lpad(floor(exp(random() * ln(2000)))::int::text, 4, '0')
      AS tenant,
    (ARRAY['crm.contacts', 'crm.deals', 'crm.activities'])[1 + g % 3] AS topic,
    (g % 12)::int AS part,
    now() - interval '90 days' + (g::float8 / $ROWS) * interval '90 days'
      AS at
  FROM generate_series(1, $ROWS) g
) s,
LATERAL (SELECT json_build_object(
  'tenant_id', tenant, 'event_type', 'contact.updated', 'event_id',
  md5(g::text), 'occurred_at', to_char(at, 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
  'contact', json_build_object('id', g % 100000,
    'email', 'user' || (g % 100000) || '@example.com',
    'name', 'Contact ' || (g % 100000), 'phone', '+1-555-' || lpad((g % 10000)::text, 4, '0'),
    'company', 'Company ' || (g % 5000), 'stage', 'qualified'),
  'changes', json_build_array(
    json_build_object('field', 'stage', 'from', 'lead', 'to', 'qualified')),
  'source', 'crm-bench')::text AS p) j;
INSERT INTO journal_offsets (cluster_id, topic, partition, next_offset)
SELECT 'bench', t, p, $ROWS + 1
FROM unnest(ARRAY['crm.contacts', 'crm.deals', 'crm.activities']) t,
     generate_series(0, 11) p;
INSERT INTO event_dlq (topic, partition, "offset", payload, tenant_id,
  error_class, error)
VALUES ('crm.contacts', 0, 1, convert_to('{', 'UTF8'), 'tenant-0001',
        'invalid_json', 'unexpected end');
VACUUM ANALYZE event_journal;
CHECKPOINT;
EOF
SEED_S=$(secs "$t0" "$(now_s)")
read -r N BYTES PAYLOAD DAYS < <(psql_db upgrade_v7 -F ' ' -c "
  SELECT count(*), pg_total_relation_size('event_journal'),
    round(avg(octet_length(payload::text))), count(DISTINCT received_at::date)
  FROM event_journal")
log "seeded $N rows in ${SEED_S}s: journal $((BYTES / 1048576)) MiB with indexes, payload ~${PAYLOAD} bytes, $DAYS days"

# -- 3. migration 0008 alone, timed (each interval on its own copy) ----------
MIG=$(ls "$ROOT"/sql/0008_*.sql)
declare -A SECONDS_OF PARTS_OF AFTER_OF
for interval in $INTERVALS; do
  db=upgrade_$interval
  psql_db postgres -c "CREATE DATABASE $db TEMPLATE upgrade_v7"
  psql_db "$db" -c "CHECKPOINT"
  L=$(load)
  t0=$(now_s)
  psql_db "$db" -1 -c "SET ces.journal_partition_interval = '$interval'" \
    -f "$MIG" \
    -c "INSERT INTO schema_migrations (version, name) VALUES (8, '$(basename "$MIG")')"
  s=$(secs "$t0" "$(now_s)")
  read -r n parts after maxid next < <(psql_db "$db" -F ' ' -c "
    SELECT (SELECT count(*) FROM event_journal),
      (SELECT count(*) FROM journal_partitions WHERE state = 'attached'),
      (SELECT sum(pg_total_relation_size(name::regclass))
         FROM journal_partitions WHERE state = 'attached'),
      (SELECT max(id) FROM event_journal),
      nextval(pg_get_serial_sequence('event_journal', 'id'))")
  [ "$n" = "$N" ] || { echo "upgrade.sh: $n rows after the migration, expected $N" >&2; exit 1; }
  [ "$next" -gt "$maxid" ] || { echo "upgrade.sh: next id $next not above $maxid" >&2; exit 1; }
  SECONDS_OF[$interval]=$s PARTS_OF[$interval]=$parts AFTER_OF[$interval]=$after
  log "0008 ($interval): ${s}s for $N rows, $parts partitions (load before: $L)"
done

# -- 4. the ingest path's partition check --------------------------------------
# Beside `SELECT 1` (the round trip alone), on the same connection settings.
CHECK_MS=na ROUNDTRIP_MS=na
pgbench_ms() {
  echo "$2" >"$WORK/pgbench.sql"
  "$PG_BINDIR/pgbench" -n -c 1 -T "$CHECK_SECONDS" -f "$WORK/pgbench.sql" "$BASE/$1" 2>/dev/null |
    awk -F' = ' '/latency average/ { split($2, a, " "); print a[1] }'
}
if [ "$CHECK_SECONDS" -gt 0 ]; then
  first=$(echo "$INTERVALS" | awk '{ print $1 }')
  CHECK_MS=$(pgbench_ms "upgrade_$first" "SELECT ces_journal_ensure_partitions(now(), now(), '$first');")
  ROUNDTRIP_MS=$(pgbench_ms "upgrade_$first" "SELECT 1;")
  log "partition check: ${CHECK_MS} ms per call, SELECT 1: ${ROUNDTRIP_MS} ms (pgbench, 1 connection, ${CHECK_SECONDS}s each; load $(load))"
fi

# -- 5. report -------------------------------------------------------------------
echo
echo "== migration 0008 on $N journal rows ($((BYTES / 1048576)) MiB with indexes, $DAYS days, payload ~${PAYLOAD} B) =="
printf '%-8s %10s %14s %11s %12s\n' interval seconds "s/M rows" partitions "MiB after"
for interval in $INTERVALS; do
  printf '%-8s %10s %14s %11s %12s\n' "$interval" "${SECONDS_OF[$interval]}" \
    "$(awk -v s="${SECONDS_OF[$interval]}" -v n="$N" 'BEGIN { printf "%.2f", s * 1000000 / n }')" \
    "${PARTS_OF[$interval]}" "$((AFTER_OF[$interval] / 1048576))"
done
echo "ingestion waits for the whole migration: its transaction holds an ACCESS"
echo "EXCLUSIVE lock on event_journal, and the service migrates before it consumes."
echo "partition check per batch (SELECT ces_journal_ensure_partitions(now(), now(), ...)): ${CHECK_MS} ms; SELECT 1: ${ROUNDTRIP_MS} ms"
echo "load average at the end: $(load) ($(nproc) CPUs); seeding took ${SEED_S}s"
echo "RESULT rows=$N $(for i in $INTERVALS; do printf 's_%s=%s ' "$i" "${SECONDS_OF[$i]}"; done)check_ms=$CHECK_MS select1_ms=$ROUNDTRIP_MS"
