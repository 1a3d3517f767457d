#!/usr/bin/env bash
# Smoke test of the real broker (ctest label real_kafka): scripts/kafka.sh
# starts Apache Kafka, crm-produce produces N events over both topics, kcat
# consumes them back; the counts per partition must agree between the
# producer's manifest, the broker's high watermarks and what kcat read.
#
#   tests/kafka/smoke.sh CRM_PRODUCE [--nodes 1|3] [--count N]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
produce=$1
shift
nodes=1
count=2000
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    *) echo "usage: $0 CRM_PRODUCE [--nodes 1|3] [--count N]" >&2; exit 2 ;;
  esac
done
topics=apexflow.leads.created,apexflow.jobs.created
partitions=3

dir=$(mktemp -d "${TMPDIR:-/tmp}/ces-kafka-smoke.XXXXXX")
cleanup() {
  "$root/scripts/kafka.sh" stop "$dir/kafka" || true
  if [ -n "${CES_KEEP_TEST_FILES:-}" ]; then
    echo "smoke: files kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
}
trap cleanup EXIT

fail() {
  echo "smoke: FAIL: $*" >&2
  exit 1
}

t0=$SECONDS
bootstrap=$("$root/scripts/kafka.sh" start "$dir/kafka" --nodes "$nodes" \
  --topics "$topics" --partitions "$partitions" --owner $$)
echo "smoke: $nodes node(s) at $bootstrap, up in $((SECONDS - t0)) s"
[ -n "$bootstrap" ] || fail "kafka.sh printed no bootstrap address"
[ "$(tr ',' '\n' <<<"$bootstrap" | wc -l)" -eq "$nodes" ] ||
  fail "expected $nodes addresses in '$bootstrap'"

# acks=all: with 3 nodes every record is on every in-sync replica.
"$produce" --bootstrap "$bootstrap" --topics "$topics" --count "$count" \
  --manifest "$dir/manifest.tsv" --quiet -X acks=all
[ "$(wc -l <"$dir/manifest.tsv")" -eq "$count" ] ||
  fail "manifest has $(wc -l <"$dir/manifest.tsv") lines, not $count"

# Per partition: records in the manifest, the broker's high watermark and
# what kcat consumed; all three must be equal (a fresh topic starts at 0).
IFS=, read -r -a list <<<"$topics"
total=0
for t in "${list[@]}"; do
  for p in $(seq 0 $((partitions - 1))); do
    want=$(awk -F'\t' -v t="$t" -v p="$p" '$1 == t && $2 == p' \
      "$dir/manifest.tsv" | wc -l)
    high=$(kcat -Q -b "$bootstrap" -t "$t:$p:-1" | awk '{print $NF}')
    got=$(kcat -C -b "$bootstrap" -t "$t" -p "$p" -o beginning -e -q \
      -f '%o\n' | wc -l)
    echo "smoke: $t [$p]: manifest $want, high watermark $high, consumed $got"
    [ "$want" -eq "$high" ] && [ "$want" -eq "$got" ] ||
      fail "$t [$p] counts disagree"
    total=$((total + got))
  done
done
[ "$total" -eq "$count" ] || fail "consumed $total records, produced $count"
# Offsets are dense and unique: no duplicates in what was consumed.
for t in "${list[@]}"; do
  dups=$(kcat -C -b "$bootstrap" -t "$t" -o beginning -e -q -f '%p %o\n' |
    sort | uniq -d | wc -l)
  [ "$dups" -eq 0 ] || fail "$t: $dups duplicate coordinates"
done
t1=$SECONDS
"$root/scripts/kafka.sh" stop "$dir/kafka"
echo "smoke: stopped in $((SECONDS - t1)) s"
if pgrep -f "$dir/kafka/node-" >/dev/null; then
  fail "a broker process is left after stop"
fi
echo "smoke: OK, $count records on $nodes node(s)"
