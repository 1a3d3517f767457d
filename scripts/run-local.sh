#!/usr/bin/env bash
# Runs crm-events-sink locally: installs the Debian packages, builds, starts a
# private PostgreSQL under .run/pg, starts the service with the embedded Kafka
# broker (librdkafka's mock cluster, in-process) and a sample-traffic
# generator (leads and jobs of 20 tenants, a poison record now and then).
# Ctrl-C stops everything cleanly.
#
# Environment: PG_PORT (default 55432), METRICS_PORT (9105), HTTP_PORT (9106),
# RATE (events/s, default 20), any other setting of the service by its
# environment name (see `build/actors/crm-events-sink --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN=$ROOT/.run
mkdir -p "$RUN"

./scripts/install-deps.sh
echo "run-local: building (first build takes a few minutes on 2 cores)..."
./scripts/build.sh --target crm-events-sink crm-produce

# As root, PostgreSQL runs as `nobody` (it refuses root); a checkout that
# `nobody` cannot enter (e.g. under /root) keeps its cluster under /var/tmp.
PG_DIR=$RUN/pg
if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- test -x "$RUN" 2>/dev/null; then
  PG_DIR=/var/tmp/crm-events-sink-$(printf '%s' "$ROOT" | md5sum | cut -c1-8)/pg
  mkdir -p "$(dirname "$PG_DIR")"
  chmod 755 "$(dirname "$PG_DIR")"
  echo "run-local: 'nobody' (PostgreSQL's user as root) cannot enter $RUN:" \
    "the cluster lives in $PG_DIR"
fi
DATABASE_URL=$(./scripts/pg-tmp.sh start "$PG_DIR" "${PG_PORT:-55432}")
export DATABASE_URL
# The embedded broker starts empty on every run, so each run consumes as a
# new consumer group: offsets stored by an earlier run refer to a broker that
# no longer exists.
export KAFKA_GROUP_ID=${KAFKA_GROUP_ID:-local-$(date +%Y%m%d-%H%M%S)}
export METRICS_PORT=${METRICS_PORT:-9105} HTTP_PORT=${HTTP_PORT:-9106}
rm -f "$RUN/bootstrap"
# Auth stays on: an admin key for this checkout, made once and registered by
# the service at start (ADMIN_TOKEN_FILE), printed below with a curl line.
if [ ! -s "$RUN/admin.key" ]; then
  (umask 077; printf 'ces_%s\n' "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" >"$RUN/admin.key")
fi
ADMIN_KEY=$(cat "$RUN/admin.key")

sink_pid= producer_pid=
cleanup() {
  trap - INT TERM EXIT
  # Ctrl-C signals the whole process group: a reader of our output (| tee)
  # may be gone already; finish the cleanup anyway.
  trap '' INT PIPE
  echo
  echo "run-local: stopping..."
  [ -n "$producer_pid" ] && kill -TERM "$producer_pid" 2>/dev/null && wait "$producer_pid" 2>/dev/null
  if [ -n "$sink_pid" ] && kill -TERM "$sink_pid" 2>/dev/null; then
    wait "$sink_pid" 2>/dev/null && echo "run-local: crm-events-sink exited cleanly" \
      || echo "run-local: crm-events-sink exited with status $?"
  fi
  ./scripts/pg-tmp.sh stop "$PG_DIR" >/dev/null 2>&1 || true
  echo "run-local: stopped (data kept in $PG_DIR; remove it to start over)"
  exit 0
}
trap cleanup INT TERM EXIT

./build/actors/crm-events-sink \
  --config-file=config/crm-events-sink.ini \
  --kafka-bootstrap-servers=embedded \
  --embedded-bootstrap-file="$RUN/bootstrap" \
  --kafka-session-timeout-ms=6000 \
  --admin-token-file="$RUN/admin.key" \
  2> >(trap '' INT; exec tee "$RUN/sink.log" >&2) &
sink_pid=$!

for _ in $(seq 1 100); do
  [ -s "$RUN/bootstrap" ] && break
  kill -0 "$sink_pid" 2>/dev/null || { echo "run-local: crm-events-sink did not start (see above)"; exit 1; }
  sleep 0.1
done
BOOTSTRAP=$(cat "$RUN/bootstrap")

./build/tests/tools/crm-produce --bootstrap "$BOOTSTRAP" --count 0 \
  --rate "${RATE:-20}" --tenants 20 --poison-every 500 --quiet >"$RUN/producer.log" 2>&1 &
producer_pid=$!

cat <<INFO

================================================================================
 crm-events-sink is running (group $KAFKA_GROUP_ID)
   embedded Kafka broker : $BOOTSTRAP   (kcat -C -b $BOOTSTRAP -t apexflow.leads.created)
   sample traffic        : ${RATE:-20} events/s, leads and jobs of 20 tenants, 1 in 500 poison
   metrics               : http://localhost:$METRICS_PORT/metrics
   admin API key         : $ADMIN_KEY   (in .run/admin.key; README: Security)
   operator API          : curl -s -H "Authorization: Bearer \$(cat .run/admin.key)" 'localhost:$HTTP_PORT/events/latest?limit=5'
                           (README: every endpoint; more keys: build/actors/crm-events-sink keys create --help)
   journal               : psql "$DATABASE_URL" -c 'select id, tenant_id, topic, received_at from event_journal order by id desc limit 5'
   dead letters          : psql "$DATABASE_URL" -c 'select id, topic, error_class, error from event_dlq order by id desc limit 5'
   logs                  : this terminal, and .run/sink.log
 Ctrl-C stops everything.
================================================================================

INFO
wait "$sink_pid"
sink_pid=
echo "run-local: crm-events-sink ended on its own (see the log above)"
