#!/usr/bin/env bash
# A throwaway Apache Kafka (KRaft) cluster for tests, benchmarks and local runs.
#
#   scripts/kafka.sh start DIR [--nodes 1|3] [--topics t1,t2] [--partitions N]
#                              [--config key=value]... [--owner PID]
#                              [--sasl USER:PASSWORD|@FILE]...
#       format and start a cluster in DIR; prints the bootstrap address
#   scripts/kafka.sh stop DIR   stop every broker started in DIR
#   scripts/kafka.sh kill DIR --node N [--signal TERM|KILL]
#       signal one node of a running cluster (default TERM) and wait until
#       its process is gone (a TERM not obeyed in 30 s gets a KILL)
#   scripts/kafka.sh start-node DIR --node N
#       start a node again (same ports, config and data) and wait until it
#       answers; prints the bootstrap address
#   scripts/kafka.sh fetch      only fetch the jars (into the cache)
#
# The broker is Apache Kafka's own (org.apache.kafka:kafka_2.13, the version
# pinned in tests/kafka/pom.xml), fetched once through Maven into
# .cache/kafka-VERSION/ (or $CES_KAFKA_CACHE) and run from there with the
# machine's java: offline after the first fetch. Each node is a combined
# broker+controller listening on free ports on 127.0.0.1 (PLAINTEXT), with a
# small heap; DIR/node-N/ holds its config, data, pid and server.log.
# Topics (default apexflow.leads.created,apexflow.jobs.created) get
# --partitions partitions (default 3) and one replica per node. --config adds
# a broker setting (e.g. log.retention.ms=1000) to every node. --owner PID:
# the cluster is stopped when process PID ends (for test harnesses that may
# be killed). `start` on a DIR whose cluster is running fails.
# --sasl USER:PASSWORD (repeatable; @FILE: one USER:PASSWORD a line) adds a
# SASL_PLAINTEXT listener on another free port of every node, with the
# mechanisms PLAIN and SCRAM-SHA-512, and the user to both (SCRAM credentials
# are written at format time). The PLAINTEXT listener stays (admin, kcat,
# producers). Its bootstrap goes to DIR/bootstrap-sasl (stderr says so); a
# user name is [A-Za-z0-9._-]+, a password has none of " ' \ , ; = [ ] or
# blanks. No password is printed; DIR/sasl-*.properties (mode 600) are
# librdkafka/kcat client settings for the first user (kcat -F FILE). Kafka 4
# refuses SCRAM from librdkafka < 2.6.1 (Debian 12 has 2.0.2): librdkafka#4895.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
pom=$root/tests/kafka/pom.xml
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
cache=${CES_KAFKA_CACHE:-$root/.cache/kafka-$version}
START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
# 2 cores shared with the tests: a small heap, the serial GC, the C1 compiler
# only (fast start-up, little CPU), few threads.
JVM_OPTS=${KAFKA_JVM_OPTS:--Xms64m -Xmx512m -XX:+UseSerialGC
  -XX:TieredStopAtLevel=1 -XX:ActiveProcessorCount=2 -Xss512k
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

fetch() {
  [ -f "$cache/.complete" ] && return 0
  command -v java >/dev/null || die "java not found (scripts/install-deps.sh)"
  command -v mvn >/dev/null || die "mvn not found (scripts/install-deps.sh)"
  mkdir -p "$(dirname "$cache")"
  # One fetch at a time (tests may start brokers in parallel).
  exec 8>"$cache.lock"
  flock 8
  if [ ! -f "$cache/.complete" ]; then
    echo "kafka.sh: fetching Apache Kafka $version into $cache" >&2
    rm -rf "$cache.tmp"
    mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$cache.tmp" >&2 ||
      die "fetching Kafka $version with Maven failed"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
    touch "$cache/.complete"
  fi
  exec 8>&-
}

scrub() { # stdin to stdout, every --sasl password replaced by ***
  local text u pw
  text=$(cat)
  for u in "${sasl_users[@]}"; do
    pw=${u#*:}
    text=${text//"$pw"/***}
  done
  printf '%s\n' "$text"
}

sasl_add() { # $1 = USER:PASSWORD or @FILE; the password is never shown
  local line user pw
  if [ "${1:0:1}" = @ ]; then
    [ -r "${1:1}" ] || die "--sasl: cannot read ${1:1}"
    while IFS= read -r line || [ -n "$line" ]; do
      [ -z "$line" ] || sasl_add "$line"
    done <"${1:1}"
    return 0
  fi
  user=${1%%:*}
  pw=${1#*:}
  [ "$user" != "$1" ] || die "--sasl wants USER:PASSWORD (not shown)"
  [[ "$user" =~ ^[A-Za-z0-9._-]+$ ]] ||
    die "--sasl: a user name is [A-Za-z0-9._-]+ (not shown)"
  local bad='["'"'"'\\,;=[:space:]]|\[|\]'
  if [ -z "$pw" ] || [[ "$pw" =~ $bad ]]; then
    die "--sasl: the password of $user is empty or has one of" \
      "\" ' \\ , ; = [ ] or a blank (not shown)"
  fi
  sasl_users+=("$user:$pw")
}

sasl_config() { # the SASL_PLAINTEXT listener's settings (with passwords)
  local u plain=""
  for u in "${sasl_users[@]}"; do
    plain+=" user_${u%%:*}=\"${u#*:}\""
  done
  cat <<EOF
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required$plain;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
}

# DIR/sasl-MECHANISM.properties: client settings of the first --sasl user.
write_sasl_clients() {
  local mech file u=${sasl_users[0]}
  for mech in PLAIN SCRAM-SHA-512; do
    file=$dir/sasl-$(tr 'A-Z' 'a-z' <<<"$mech").properties
    (umask 077 && cat >"$file" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=$mech
sasl.username=${u%%:*}
sasl.password=${u#*:}
EOF
    )
  done
}

# $1 = bootstrap: the first user logs in with PLAIN. Not SCRAM: kcat's
# librdkafka before 2.6.1 (Debian 12 has 2.0.2) sends a client-final nonce
# that Kafka 4 refuses (librdkafka#4895); the credentials were written at
# format time and the broker serves them once it is up (Java clients and
# librdkafka >= 2.6.1 log in).
sasl_up() {
  kcat -F "$dir/sasl-plain.properties" -L -b "$1" -m 3 \
    >"$dir/sasl-check.log" 2>&1
}

kjava() { # runs a class from the Kafka jars
  java $JVM_OPTS -cp "$cache/*" "$@"
}

port_free() {
  # Free when nothing accepts a connection on it.
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pick_port() { # $1.. = ports already taken by this cluster
  local p i
  for i in $(seq 1 50); do
    p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
    case " $* " in *" $p "*) continue ;; esac
    if port_free "$p"; then echo "$p"; return 0; fi
  done
  die "no free port found"
}

pids_of() { # pids of the brokers started in $dir that are still running
  local f p
  for f in "$dir"/node-*/pid; do
    [ -f "$f" ] || continue
    p=$(cat "$f")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$p"; fi
  done
}

stop_nodes() { # SIGTERM, SIGKILL after STOP_TIMEOUT; returns when all are gone
  local pids
  pids=$(pids_of)
  [ -n "$pids" ] || return 0
  kill -TERM $pids 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while [ $SECONDS -lt $deadline ]; do
    pids=$(pids_of)
    [ -n "$pids" ] || break
    sleep 0.2
  done
  pids=$(pids_of)
  if [ -n "$pids" ]; then
    echo "kafka.sh: SIGKILL to $pids after ${STOP_TIMEOUT}s" >&2
    kill -KILL $pids 2>/dev/null || true
    while [ -n "$(pids_of)" ]; do sleep 0.1; done
  fi
  rm -f "$dir"/node-*/pid
}

stop_cluster() { # the watcher (if any, and not us), then the brokers
  local p
  if [ -f "$dir/watch.pid" ]; then
    p=$(cat "$dir/watch.pid")
    if [ "$p" != "$$" ]; then kill "$p" 2>/dev/null || true; fi
    rm -f "$dir/watch.pid"
  fi
  stop_nodes
}

write_config() { # $1 = node id
  local n=$1 voters="" i
  for i in $(seq 1 "$nodes"); do
    voters+="${voters:+,}$i@127.0.0.1:${cport[$i]}"
  done
  local min_isr=$(( nodes > 1 ? 2 : 1 ))
  local listeners="PLAINTEXT://127.0.0.1:${bport[$n]}"
  local protocols=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
  if [ ${#sasl_users[@]} -gt 0 ]; then
    listeners+=",SASL_PLAINTEXT://127.0.0.1:${sport[$n]}"
    protocols+=,SASL_PLAINTEXT:SASL_PLAINTEXT
  fi
  mkdir -p "$dir/node-$n"
  # Mode 600: with --sasl it holds the PLAIN passwords.
  (umask 077 && : >"$dir/node-$n/server.properties")
  cat >"$dir/node-$n/server.properties" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://127.0.0.1:${cport[$n]}
advertised.listeners=$listeners
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/node-$n/data
num.partitions=$partitions
default.replication.factor=$nodes
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$nodes
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=$nodes
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=$nodes
share.coordinator.state.topic.min.isr=$min_isr
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
background.threads=2
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
EOF
  [ ${#sasl_users[@]} -eq 0 ] || sasl_config >>"$dir/node-$n/server.properties"
  local kv
  for kv in "${extra_config[@]}"; do
    echo "$kv" >>"$dir/node-$n/server.properties"
  done
  cat >"$dir/node-$n/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/node-$n/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = info
EOF
}

brokers_up() { # all $nodes brokers are in the metadata of node $1
  local out
  out=$(kcat -L -b "127.0.0.1:${bport[$1]}" -m 3 2>/dev/null) || return 1
  grep -q "^ $nodes brokers:" <<<"$out"
}

bind_failed() {
  grep -qs "Address already in use" "$dir"/node-*/server.log \
    "$dir"/node-*/stdout.log
}

# Formats and starts all nodes; 0 = up, 1 = failed, 3 = lost a port race.
start_nodes() {
  local n taken="" cluster_id
  for n in $(seq 1 "$nodes"); do
    bport[$n]=$(pick_port $taken); taken+=" ${bport[$n]}"
    cport[$n]=$(pick_port $taken); taken+=" ${cport[$n]}"
    if [ ${#sasl_users[@]} -gt 0 ]; then
      sport[$n]=$(pick_port $taken); taken+=" ${sport[$n]}"
    fi
  done
  rm -rf "$dir"/node-*
  # A random 16-byte cluster id, base64url without padding, as Kafka's Uuid;
  # not starting with '-', which the format tool would take for an option.
  cluster_id=-
  while [ "${cluster_id:0:1}" = - ]; do
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
  done
  for n in $(seq 1 "$nodes"); do write_config "$n"; done
  local pids=() p failed=0 scram=() u
  for u in "${sasl_users[@]}"; do
    scram+=(--add-scram "SCRAM-SHA-512=[name=${u%%:*},password=${u#*:}]")
  done
  for n in $(seq 1 "$nodes"); do
    kjava kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$dir/node-$n/server.properties" "${scram[@]}" \
      >"$dir/node-$n/format.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  if [ $failed -ne 0 ]; then
    cat "$dir"/node-*/format.log | scrub >&2
    return 1
  fi
  for n in $(seq 1 "$nodes"); do
    # setsid: the broker does not get the terminal's Ctrl-C; its own session.
    setsid java $JVM_OPTS \
      -Dlog4j2.configurationFile="$dir/node-$n/log4j2.properties" \
      -cp "$cache/*" kafka.Kafka "$dir/node-$n/server.properties" \
      </dev/null >"$dir/node-$n/stdout.log" 2>&1 &
    echo $! >"$dir/node-$n/pid"
  done
  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    for n in $(seq 1 "$nodes"); do
      if ! kill -0 "$(cat "$dir/node-$n/pid")" 2>/dev/null; then
        stop_nodes
        bind_failed && return 3
        echo "kafka.sh: node $n exited during start-up:" >&2
        tail -n 30 "$dir/node-$n/stdout.log" "$dir/node-$n/server.log" |
          scrub >&2 || true
        return 1
      fi
    done
    if brokers_up 1; then
      [ ${#sasl_users[@]} -eq 0 ] && break
      sasl_up "127.0.0.1:${sport[1]}" && break
    fi
    if [ $SECONDS -ge $deadline ]; then
      stop_nodes
      echo "kafka.sh: no answer within ${START_TIMEOUT}s:" >&2
      tail -n 30 "$dir"/node-1/server.log "$dir"/sasl-check.log 2>/dev/null |
        scrub >&2 || true
      return 1
    fi
    sleep 0.5
  done
  return 0
}

create_topics() {
  local t bootstrap=$1 out status=0 pids=()
  IFS=, read -r -a list <<<"$topics"
  if printf '%s\n' "${extra_config[@]}" |
    grep -qx "auto.create.topics.enable *= *false"; then
    # One admin JVM per topic, in parallel (slow: a JVM start each).
    for t in "${list[@]}"; do
      kjava org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$t" --partitions "$partitions" \
        --replication-factor "$nodes" >>"$dir/topics-admin.log" 2>&1 &
      pids+=($!)
    done
    for t in "${pids[@]}"; do wait "$t" || status=1; done
    [ $status -eq 0 ] || { scrub <"$dir/topics-admin.log" >&2; return 1; }
  fi
  # Otherwise a metadata request that allows auto-creation creates each topic
  # with num.partitions and default.replication.factor (set above): no JVM.
  # Wait until every partition has a leader.
  local deadline=$((SECONDS + 60))
  for t in "${list[@]}"; do
    while :; do
      out=$(kcat -L -b "$bootstrap" -t "$t" -m 3 \
        -X allow.auto.create.topics=true 2>&1 || true)
      echo "$out" >"$dir/topics.log"
      if grep -q "with $partitions partitions:" <<<"$out" &&
        ! grep -q "leader -1" <<<"$out"; then
        break
      fi
      if [ $SECONDS -ge $deadline ]; then
        echo "kafka.sh: topic $t not ready:" >&2
        scrub <"$dir/topics.log" >&2
        return 1
      fi
      sleep 0.2
    done
  done
}

node_args() { # --node N [--signal S] -> $node, $signal
  node="" signal=TERM
  while [ $# -gt 0 ]; do
    case "$1" in
      --node) node=$2; shift 2 ;;
      --signal) signal=$2; shift 2 ;;
      *) usage ;;
    esac
  done
  [ -n "$node" ] || die "--node N is required"
  [ -f "$dir/node-$node/server.properties" ] ||
    die "no node $node in $dir"
  case "$signal" in TERM|KILL) ;; *) die "--signal must be TERM or KILL" ;;
  esac
}

node_pid() { # pid of node $1 if it runs
  local p
  [ -f "$dir/node-$1/pid" ] || return 1
  p=$(cat "$dir/node-$1/pid")
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null && echo "$p"
}

kill_node() { # $node, $signal
  local p deadline
  p=$(node_pid "$node") || die "node $node is not running"
  kill -"$signal" "$p" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$p" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "kafka.sh: SIGKILL to node $node after ${STOP_TIMEOUT}s" >&2
      kill -KILL "$p" 2>/dev/null || true
      deadline=$((SECONDS + STOP_TIMEOUT))
    fi
    sleep 0.1
  done
  rm -f "$dir/node-$node/pid"
}

start_node() { # $node: same config, ports and data as before
  local port deadline out
  [ -z "$(node_pid "$node")" ] || die "node $node is already running"
  port=$(sed -n 's/^listeners=PLAINTEXT:\/\/[^:]*:\([0-9]*\),.*/\1/p' \
    "$dir/node-$node/server.properties")
  [ -n "$port" ] || die "no PLAINTEXT port in node $node's config"
  setsid java $JVM_OPTS \
    -Dlog4j2.configurationFile="$dir/node-$node/log4j2.properties" \
    -cp "$cache/*" kafka.Kafka "$dir/node-$node/server.properties" \
    </dev/null >>"$dir/node-$node/stdout.log" 2>&1 &
  echo $! >"$dir/node-$node/pid"
  deadline=$((SECONDS + START_TIMEOUT))
  # Up when it answers a metadata request and lists itself as a broker.
  # (Output captured first: grep -q ending the pipe early would SIGPIPE
  # kcat, which pipefail turns into a failure.)
  until out=$(kcat -L -b "127.0.0.1:$port" -m 3 2>/dev/null) &&
    grep -q "^  broker $node at " <<<"$out"; do
    if ! kill -0 "$(cat "$dir/node-$node/pid")" 2>/dev/null; then
      rm -f "$dir/node-$node/pid"
      tail -n 30 "$dir/node-$node/stdout.log" >&2 || true
      die "node $node exited during start-up"
    fi
    if [ $SECONDS -ge $deadline ]; then
      die "node $node: no answer within ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done
  cat "$dir/bootstrap"
}

[ $# -ge 1 ] || usage
cmd=$1
shift
if [ "$cmd" = fetch ]; then
  fetch
  exit 0
fi
[ $# -ge 1 ] || usage
mkdir -p "$1"
dir=$(cd "$1" && pwd)
shift

case "$cmd" in
  start)
    nodes=1
    topics=apexflow.leads.created,apexflow.jobs.created
    partitions=3
    owner=""
    extra_config=()
    sasl_users=()
    while [ $# -gt 0 ]; do
      case "$1" in
        --nodes) nodes=$2; shift 2 ;;
        --topics) topics=$2; shift 2 ;;
        --partitions) partitions=$2; shift 2 ;;
        --config) extra_config+=("$2"); shift 2 ;;
        --owner) owner=$2; shift 2 ;;
        --sasl) sasl_add "$2"; shift 2 ;;
        *) usage ;;
      esac
    done
    case "$nodes" in 1|3) ;; *) die "--nodes must be 1 or 3" ;; esac
    [ "$partitions" -ge 1 ] 2>/dev/null || die "--partitions must be >= 1"
    [ -z "$(pids_of)" ] || die "a cluster is already running in $dir"
    command -v kcat >/dev/null || die "kcat not found (scripts/install-deps.sh)"
    fetch
    declare -a bport cport sport
    rm -f "$dir/bootstrap-sasl" "$dir"/sasl-*.properties
    [ ${#sasl_users[@]} -eq 0 ] || write_sasl_clients
    if [ -n "$owner" ]; then
      # Stops the cluster when the owner ends, even if it never calls stop
      # (or this script is killed half-way).
      setsid "$0" _watch "$dir" "$owner" </dev/null >/dev/null 2>&1 &
      echo $! >"$dir/watch.pid"
    fi
    rc=3
    for attempt in 1 2 3; do
      set +e
      start_nodes
      rc=$?
      set -e
      [ $rc -eq 3 ] || break # 3: lost a race for a port, try other ports
    done
    if [ $rc -ne 0 ]; then
      stop_cluster
      die "start failed"
    fi
    bootstrap=""
    for n in $(seq 1 "$nodes"); do
      bootstrap+="${bootstrap:+,}127.0.0.1:${bport[$n]}"
    done
    echo "$bootstrap" >"$dir/bootstrap"
    if [ ${#sasl_users[@]} -gt 0 ]; then
      sasl=""
      for n in $(seq 1 "$nodes"); do
        sasl+="${sasl:+,}127.0.0.1:${sport[$n]}"
      done
      echo "$sasl" >"$dir/bootstrap-sasl"
      echo "kafka.sh: SASL_PLAINTEXT (PLAIN, SCRAM-SHA-512) at $sasl" \
        "(DIR/bootstrap-sasl)" >&2
    fi
    if ! create_topics "$bootstrap"; then
      stop_cluster
      die "creating topics failed"
    fi
    echo "$bootstrap"
    ;;
  _watch)
    owner=$1
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    echo $$ >"$dir/watch.pid" # so stop_cluster does not kill us
    stop_cluster
    ;;
  stop)
    stop_cluster
    ;;
  kill)
    node_args "$@"
    kill_node
    ;;
  start-node)
    node_args "$@"
    command -v kcat >/dev/null || die "kcat not found (scripts/install-deps.sh)"
    start_node
    ;;
  *) usage ;;
esac
