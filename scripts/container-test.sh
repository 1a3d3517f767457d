#!/usr/bin/env bash
# scripts/container-test.sh: builds the container image (Dockerfile) and runs
# it for real against a throwaway PostgreSQL and the project's mock broker.
#
#   scripts/container-test.sh [--broker PATH] [--produce PATH]
#     --broker PATH   crm-mock-broker of the host build
#                     (default build/tests/tools/crm-mock-broker)
#     --produce PATH  crm-produce of the host build
#                     (default build/tests/tools/crm-produce)
#
# Engine: `docker` when `docker info` answers (a running Docker engine),
# else `podman` with CONTAINERS_CONF=deploy/podman/containers.conf (runc,
# no default ulimits: what these machines need; /etc is never touched).
# Base images: when debian:bookworm / debian:bookworm-slim are not present
# and no registry answers, they are made locally with debootstrap (Debian
# mirror from /etc/apt/sources.list*; the slim one stripped of docs, man
# pages and locales as the official slim image is) and imported under those
# names: the Dockerfile stays the one a user builds with a registry. The
# engine keeps them, so only the first run pays for it (~1 min).
#
# Checks: 10,000 events produced by the host's crm-produce are journalled
# exactly once; POST /replay/{id} with the admin key (ADMIN_TOKEN_FILE,
# mounted read-only) journals the replayed row; /ready is 200; the process
# is the service itself (no shell) running as uid 10001; `--version` through
# the image prints the version and the revision built; crm_build_info on
# /metrics carries them; `stop -t 10` (SIGTERM) ends it with exit code 0
# within 10 s with nothing lost (journal_offsets cover every row, and a
# second container journals only a new sentinel event, nothing again).
# The container runs with a read-only root filesystem, as in Kubernetes.
# Prints each phase's time and the image size. Everything it starts
# (containers, PostgreSQL, broker) is removed on exit, also on failure; the
# image and the base images are kept (the next run reuses their layers).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BROKER=$ROOT/build/tests/tools/crm-mock-broker
PRODUCE=$ROOT/build/tests/tools/crm-produce
EVENTS=10000
IMAGE=localhost/crm-events-sink:test
while [ $# -gt 0 ]; do
  case $1 in
    --broker) BROKER=$2; shift 2 ;;
    --produce) PRODUCE=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "container-test: unknown option $1" >&2; exit 2 ;;
  esac
done

# Root only: debootstrap, the image's uid 10001 owning the mounted key file,
# and reading the container's /proc as the host sees it (rootless podman maps
# uids). CI runs as root.
if [ "$(id -u)" -ne 0 ]; then
  echo "container-test: needs root (debootstrap, uid 10001 files, rootful" \
    "podman); run it as root or through sudo" >&2
  exit 1
fi

T_START=$EPOCHREALTIME
log() { printf '[container-test %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "FAILED: $*"; exit 1; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
PHASES=()
PHASE_NAME="" PHASE_T0=""
phase() { # phase NAME: ends the running phase, starts the next one
  if [ -n "$PHASE_NAME" ]; then
    PHASES+=("$PHASE_NAME $(secs "$PHASE_T0" "$EPOCHREALTIME")")
  fi
  PHASE_NAME=$1 PHASE_T0=$EPOCHREALTIME
  [ -n "$1" ] && log "== $1"
  return 0
}

for b in "$BROKER" "$PRODUCE"; do
  [ -x "$b" ] || die "$b not found: build the host's test tools first" \
    "(./scripts/build.sh --target crm-mock-broker crm-produce)"
done
command -v psql >/dev/null || die "psql not found (scripts/install-deps.sh)"
command -v curl >/dev/null || die "curl not found (scripts/install-deps.sh)"

# ---- engine ---------------------------------------------------------------------
# shellcheck source=container-engine.sh
. "$ROOT/scripts/container-engine.sh"
ces_container_engine || die "no container engine: neither a Docker engine" \
  "answers nor podman is installed (scripts/install-deps.sh installs podman)"
log "engine: $ENGINE ($($ENGINE --version))${CONTAINERS_CONF:+, CONTAINERS_CONF=$CONTAINERS_CONF}"

# ---- cleanup ----------------------------------------------------------------------
WORK=$(mktemp -d /tmp/ces-container-test.XXXXXX)
chmod 755 "$WORK" # PostgreSQL runs as `nobody` when we are root (pg-tmp.sh)
CONTAINERS=()
BROKER_PID=""
PG_STARTED=0
cleanup() {
  local rc=$? c
  trap - EXIT INT TERM
  set +e
  if [ $rc -ne 0 ]; then
    for c in "${CONTAINERS[@]}"; do
      log "logs of container $c (last 30 lines):"
      $ENGINE logs "$c" 2>&1 | tail -n 30
    done
  fi
  for c in "${CONTAINERS[@]}"; do
    $ENGINE rm -f -t 0 "$c" >/dev/null 2>&1 || $ENGINE rm -f "$c" >/dev/null 2>&1
  done
  if [ -n "$BROKER_PID" ]; then
    kill -TERM "$BROKER_PID" 2>/dev/null
    wait "$BROKER_PID" 2>/dev/null
  fi
  [ $PG_STARTED -eq 1 ] && "$ROOT/scripts/pg-tmp.sh" stop "$WORK/pg" >/dev/null 2>&1
  rm -rf "$WORK"
  [ $rc -eq 0 ] || log "FAILED (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---- base images --------------------------------------------------------------------
# debian_mirror: the first Debian mirror apt uses for bookworm itself (not
# -security/-updates), from one-line (.list) or deb822 (.sources) files.
debian_mirror() {
  local f m
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    m=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) break;
           if ($(i + 1) == "bookworm") { print $i; exit } }' "$f")
    [ -n "$m" ] && { echo "$m"; return 0; }
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    m=$(awk 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; deb = 0; suite = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^Types:.*(^|[ \t])deb([ \t]|$)/) deb = 1
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == "bookworm") suite = 1 }
          if ($i ~ /^URIs:/) { split($i, u, /[ \t]+/); uri = u[2] }
        }
        if (deb && suite && uri != "") { print uri; exit } }' "$f")
    [ -n "$m" ] && { echo "$m"; return 0; }
  done
  echo http://deb.debian.org/debian
}
registry_answers() {
  local code
  code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' https://registry-1.docker.io/v2/ 2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != 000 ]
}
make_base_images() {
  local mirror rootfs
  mirror=$(debian_mirror)
  command -v debootstrap >/dev/null ||
    die "no registry answers and debootstrap is not installed (scripts/install-deps.sh)"
  log "no registry answers: making debian:bookworm and debian:bookworm-slim" \
    "locally with debootstrap from $mirror (once; the engine keeps them)"
  rootfs=$WORK/rootfs
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/*
  tar -C "$rootfs" -c . | $ENGINE import -q \
    --change 'CMD ["bash"]' --change 'LABEL ces.base=debootstrap' \
    - docker.io/library/debian:bookworm >/dev/null
  # The slim variant, as the official one: no docs (copyright files stay),
  # man pages, info or locales, and dpkg keeps them out of later installs.
  find "$rootfs"/usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
  find "$rootfs"/usr/share/doc -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/groff/* "$rootfs"/usr/share/lintian/*
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} +
  cat >"$rootfs"/etc/dpkg/dpkg.cfg.d/docker-slim <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  tar -C "$rootfs" -c . | $ENGINE import -q \
    --change 'CMD ["bash"]' --change 'LABEL ces.base=debootstrap' \
    - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$rootfs"
}

phase base-images
BASE_NOTE=""
missing_base=()
for b in debian:bookworm debian:bookworm-slim; do
  $ENGINE image inspect "$b" >/dev/null 2>&1 || missing_base+=("$b")
done
if [ ${#missing_base[@]} -gt 0 ]; then
  pulled=0
  if registry_answers; then
    log "pulling ${missing_base[*]}"
    pulled=1
    for b in "${missing_base[@]}"; do
      timeout 300 $ENGINE pull "docker.io/library/$b" >/dev/null || { pulled=0; break; }
    done
  fi
  [ $pulled -eq 1 ] || make_base_images
fi
for b in debian:bookworm debian:bookworm-slim; do
  if [ "$($ENGINE image inspect -f '{{index .Config.Labels "ces.base"}}' "$b" 2>/dev/null)" = debootstrap ]; then
    BASE_NOTE="made locally with debootstrap (no registry)"
  fi
done
log "base images: ${BASE_NOTE:-from the registry / already present}"

# ---- image ----------------------------------------------------------------------------
phase image-build
VERSION=$(sed -n 's/^project(crm_events_sink VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
# The revision as config/revision.cmake makes it from a checkout.
if REV=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null); then
  [ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ] || REV=$REV-dirty
else
  REV=unknown
fi
SOURCE=$(git -C "$ROOT" remote get-url origin 2>/dev/null || true)
log "building $IMAGE (version $VERSION, revision $REV)"
$ENGINE build --network=host -t "$IMAGE" --build-arg REVISION="$REV" \
  --build-arg VERSION="$VERSION" ${SOURCE:+--build-arg SOURCE="$SOURCE"} \
  -f "$ROOT/Dockerfile" "$ROOT" >"$WORK/build.log" 2>&1 ||
  { tail -n 40 "$WORK/build.log"; die "image build failed"; }
SIZE_B=$($ENGINE image inspect -f '{{.Size}}' "$IMAGE")
SIZE_MB=$(awk -v b="$SIZE_B" 'BEGIN { printf "%.1f", b / 1e6 }')
log "image $IMAGE: $SIZE_MB MB (base debian:bookworm-slim, ${BASE_NOTE:-registry})"
[ "$SIZE_B" -le 150000000 ] || die "the image is $SIZE_MB MB, more than 150 MB"
label() { $ENGINE image inspect -f "{{index .Config.Labels \"org.opencontainers.image.$1\"}}" "$IMAGE"; }
[ "$(label revision)" = "$REV" ] || die "label revision is '$(label revision)', not $REV"
[ "$(label version)" = "$VERSION" ] || die "label version is '$(label version)', not $VERSION"
[ "$($ENGINE image inspect -f '{{.Config.User}}' "$IMAGE")" = 10001 ] ||
  die "the image's USER is not 10001"

out=$($ENGINE run --rm --network=none "$IMAGE" --version) || die "--version failed: $out"
[ "$out" = "crm-events-sink $VERSION (revision $REV)" ] ||
  die "--version printed '$out', not 'crm-events-sink $VERSION (revision $REV)'"
log "--version: $out"

# ---- PostgreSQL and the mock broker ------------------------------------------------------
phase dependencies
PG_STARTED=1
DB_URL=$("$ROOT/scripts/pg-tmp.sh" start "$WORK/pg")
q() { psql "$DB_URL" -X -Atqc "$1"; }
mkdir -p "$WORK/broker"
"$BROKER" --partitions 4 --bootstrap-file "$WORK/broker/bootstrap" \
  >"$WORK/broker/out" 2>"$WORK/broker/err" &
BROKER_PID=$!
for _ in $(seq 1 100); do
  [ -s "$WORK/broker/bootstrap" ] && break
  kill -0 "$BROKER_PID" 2>/dev/null || die "crm-mock-broker exited: $(cat "$WORK/broker/err")"
  sleep 0.1
done
BS=$(sed -n 's/^bootstrap=//p' "$WORK/broker/bootstrap")
[ -n "$BS" ] || die "crm-mock-broker did not start"
log "PostgreSQL at ${DB_URL%/*}, mock broker at $BS"

free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
  done
  die "no free port"
}
HTTP_PORT=$(free_port)
METRICS_PORT=$(free_port)
while [ "$METRICS_PORT" = "$HTTP_PORT" ]; do METRICS_PORT=$(free_port); done
# The admin key, readable by the container's user only, mounted read-only.
(umask 077; printf 'ces_%s\n' "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" >"$WORK/admin.key")
chown 10001:10001 "$WORK/admin.key"
chmod 0400 "$WORK/admin.key"
ADMIN_KEY=$(cat "$WORK/admin.key")

# run_sink NAME: starts the image with the configuration in the environment.
run_sink() {
  $ENGINE run -d --name "$1" --network=host --read-only \
    -e DATABASE_URL="$DB_URL" \
    -e KAFKA_BOOTSTRAP_SERVERS="$BS" \
    -e KAFKA_GROUP_ID=container-test \
    -e KAFKA_SESSION_TIMEOUT_MS=6000 \
    -e HTTP_PORT="$HTTP_PORT" -e METRICS_PORT="$METRICS_PORT" \
    -e ADMIN_TOKEN_FILE=/run/secrets/admin.key \
    -v "$WORK/admin.key:/run/secrets/admin.key:ro" \
    "$IMAGE" >/dev/null
  CONTAINERS+=("$1")
}
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" || true; }
wait_ready() { # wait_ready CONTAINER
  for _ in $(seq 1 240); do
    [ "$(http_code "http://127.0.0.1:$HTTP_PORT/ready")" = 200 ] && return 0
    [ "$($ENGINE inspect -f '{{.State.Running}}' "$1")" = true ] ||
      die "container $1 exited: $($ENGINE logs "$1" 2>&1 | tail -n 20)"
    sleep 0.5
  done
  die "/ready never answered 200"
}
wait_count() { # wait_count SQL N TIMEOUT_S
  local n
  for _ in $(seq 1 $(($3 * 2))); do
    n=$(q "$1")
    [ "$n" = "$2" ] && return 0
    sleep 0.5
  done
  die "'$1' is $n after $3 s, expected $2"
}
# stop_sink CONTAINER: SIGTERM via `stop -t 10` (SIGKILL after 10 s), which
# must end it with exit code 0 within the 10 s.
stop_sink() {
  local t0 t rc
  t0=$EPOCHREALTIME
  $ENGINE stop -t 10 "$1" >/dev/null
  t=$(secs "$t0" "$EPOCHREALTIME")
  rc=$($ENGINE inspect -f '{{.State.ExitCode}}' "$1")
  [ "$rc" = 0 ] || die "container $1 exited with code $rc after SIGTERM (${t}s)"
  awk -v t="$t" 'BEGIN { exit !(t < 10) }' || die "container $1 took ${t}s to stop"
  log "SIGTERM: $1 exited with code 0 in ${t}s"
}

# ---- the service in the container ------------------------------------------------------------
phase start
C1=ces-container-test-$$-1
run_sink "$C1"
wait_ready "$C1"
log "/ready: 200 (http port $HTTP_PORT, metrics port $METRICS_PORT)"
PID=$($ENGINE inspect -f '{{.State.Pid}}' "$C1")
comm=$(cat "/proc/$PID/comm")
[ "$comm" = crm-events-sink ] || die "the container's main process is '$comm', not crm-events-sink"
uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$PID/status")
[ "$uids" = "10001 10001 10001 10001" ] || die "the service runs with uids '$uids', not 10001"
log "main process: pid $PID on the host, $comm, uid 10001 (real, effective, saved, fs)"
metrics=$(curl -fs -m 5 "http://127.0.0.1:$METRICS_PORT/metrics") || die "/metrics did not answer"
echo "$metrics" | grep -E "^crm_build_info\{" | grep -q "revision=\"$REV\"" ||
  die "no crm_build_info with revision $REV on /metrics: $(echo "$metrics" | grep crm_build_info)"
echo "$metrics" | grep -E "^crm_build_info\{" | grep -q "version=\"$VERSION\"" ||
  die "crm_build_info has not version $VERSION"
log "/metrics: $(echo "$metrics" | grep -E '^crm_build_info\{')"

phase journal
out=$("$PRODUCE" --bootstrap "$BS" --count "$EVENTS" --quiet) || die "crm-produce failed: $out"
[[ $out == *" delivered=$EVENTS failed=0 "* ]] || die "crm-produce: $out"
log "produced: $out"
wait_count "SELECT count(*) FROM event_journal" "$EVENTS" 300
sleep 1 # nothing more arrives
[ "$(q "SELECT count(*) FROM event_journal")" = "$EVENTS" ] || die "more than $EVENTS rows"
[ "$(q "SELECT count(DISTINCT (topic, partition, \"offset\")) FROM event_journal")" = "$EVENTS" ] ||
  die "duplicate (topic, partition, offset) in the journal"
[ "$(q "SELECT count(*) FROM event_dlq")" = 0 ] || die "events went to the DLQ"
log "journal: exactly $EVENTS rows, no duplicates, no dead letters"

phase replay
ID=$(q "SELECT min(id) FROM event_journal")
code=$(curl -s -m 10 -o "$WORK/replay.json" -w '%{http_code}' -X POST \
  -H "Authorization: Bearer $ADMIN_KEY" "http://127.0.0.1:$HTTP_PORT/replay/$ID") || true
[ "$code" = 200 ] || die "POST /replay/$ID answered $code: $(cat "$WORK/replay.json")"
grep -q '"replayed"' "$WORK/replay.json" || die "replay answer: $(cat "$WORK/replay.json")"
[ "$(http_code -X POST "http://127.0.0.1:$HTTP_PORT/replay/$ID")" = 401 ] ||
  die "POST /replay without a key was not refused with 401"
wait_count "SELECT count(*) FROM event_journal WHERE replay_of = $ID" 1 60
log "replay: POST /replay/$ID -> 200, the replayed row is journalled (replay_of = $ID)"

phase sigterm
ROWS=$((EVENTS + 1))
stop_sink "$C1"
[ "$(q "SELECT count(*) FROM event_journal")" = "$ROWS" ] || die "journal changed on stop"
# Every journalled record is covered by the committed offsets (all
# partitions start at 0): nothing will be journalled again.
covered=$(q "SELECT coalesce(sum(next_offset), 0) FROM journal_offsets")
[ "$covered" = "$ROWS" ] || die "journal_offsets cover $covered records, the journal holds $ROWS"
log "after stop: $ROWS rows, journal_offsets cover all of them"

phase restart
C2=ces-container-test-$$-2
run_sink "$C2"
wait_ready "$C2"
# A sentinel produced after the restart: once it is journalled, the second
# container has consumed everything before it; exactly one new row means it
# journalled nothing again.
out=$("$PRODUCE" --bootstrap "$BS" --count 1 --start-index "$EVENTS" --quiet) ||
  die "crm-produce failed: $out"
wait_count "SELECT count(*) FROM event_journal" $((ROWS + 1)) 120
sleep 1
[ "$(q "SELECT count(*) FROM event_journal")" = $((ROWS + 1)) ] || die "rows journalled again"
log "second container: journalled the sentinel only (0 rows again)"
stop_sink "$C2"

phase ""
TOTAL=$(secs "$T_START" "$EPOCHREALTIME")
log "PASSED: image $IMAGE $SIZE_MB MB (on debian:bookworm-slim, ${BASE_NOTE:-registry}), engine $ENGINE, total ${TOTAL}s"
log "phases: $(printf '%s s, ' "${PHASES[@]}" | sed 's/, $//')"
