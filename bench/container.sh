#!/usr/bin/env bash
# bench/container.sh: the bench load (bench/run.sh: backlog drain and steady
# offered rate) once with the bare binary and once with the container image,
# side by side: throughput, latency, peak RSS and CPU seconds of each.
#
#   bench/container.sh [--image IMAGE] [bench/run.sh options]
#     --image IMAGE   default localhost/crm-events-sink:test (built by
#                     scripts/container-test.sh)
#
# The bare run uses the very binary of the image (copied out of it; the host
# has the same Debian libraries), so the container is the only difference.
# The other tools (mock broker, producer, pollers) come from build/ (a full
# ./scripts/build.sh). Default load: --events 200000 --lat-rate 5000
# --lat-seconds 30, without the COPY ceiling and the first-row samples.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE=localhost/crm-events-sink:test
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --image) IMAGE=$2; shift 2 ;;
    --image=*) IMAGE=${1#*=}; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
log() { printf '[bench/container %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# shellcheck source=../scripts/container-engine.sh
. "$ROOT/scripts/container-engine.sh"
ces_container_engine || { log "no container engine"; exit 1; }
$ENGINE image inspect "$IMAGE" >/dev/null 2>&1 ||
  { log "no image $IMAGE: run scripts/container-test.sh first"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/crm-bench-container.XXXXXX")
CID=""
cleanup() {
  [ -n "$CID" ] && $ENGINE rm -f "$CID" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
CID=$($ENGINE create "$IMAGE")
$ENGINE cp "$CID:/usr/local/bin/crm-events-sink" "$WORK/crm-events-sink"
$ENGINE rm -f "$CID" >/dev/null
CID=""

COMMON=(--build-dir "$ROOT/build" --no-build --skip-copy --skip-first-row
        --events 200000 --lat-rate 5000 --lat-seconds 30 "${ARGS[@]}")
log "bare binary (copied from $IMAGE)"
"$ROOT/bench/run.sh" "${COMMON[@]}" --sink-bin "$WORK/crm-events-sink" |
  tee "$WORK/bare.txt"
log "container $IMAGE ($ENGINE, --network=host)"
"$ROOT/bench/run.sh" "${COMMON[@]}" --container "$IMAGE" | tee "$WORK/container.txt"

res() { sed -n 's/^RESULT //p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
echo
echo "bare binary vs container image ($IMAGE, $ENGINE), same binary, same load"
printf '  %-34s %14s %14s\n' "" bare container
for k in steady_rps total_rps peak_rss_mib sink_cpu_s lat_p50_ms lat_p99_ms \
  lat_sink_cpu_s lat_peak_rss_mib; do
  printf '  %-34s %14s %14s\n' "$k" "$(res "$WORK/bare.txt" $k)" \
    "$(res "$WORK/container.txt" $k)"
done
