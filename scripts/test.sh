#!/usr/bin/env bash
# Installs the Debian packages, builds everything and runs the whole test
# suite (ctest: unit, actors, integration, e2e, faults, deploy, container,
# real_kafka), then the e2e and fault suites a second time on Apache Kafka
# (CES_TEST_KAFKA=real: scripts/kafka.sh starts one per world). CI runs
# exactly this.
#
#   scripts/test.sh                 everything
#   scripts/test.sh CTEST_ARGS...   only `ctest CTEST_ARGS` (no second pass)
#   CES_TEST_REAL_PASS=0 scripts/test.sh   skip the real-broker pass
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
build=${BUILD_DIR:-build}
# Serial on purpose: integration and e2e tests start PostgreSQL clusters,
# brokers and the service; on 2 cores parallel runs only add noise.
if [ $# -gt 0 ]; then
  exec ctest --test-dir "$build" --output-on-failure "$@"
fi
status=0
echo "== pass 1: every test, e2e and faults on the mock broker"
ctest --test-dir "$build" --output-on-failure || status=1
if [ "${CES_TEST_REAL_PASS:-1}" != 0 ]; then
  echo "== pass 2: e2e and faults on Apache Kafka (CES_TEST_KAFKA=real)"
  CES_TEST_KAFKA=real ctest --test-dir "$build" --output-on-failure \
    -L 'e2e|faults' || status=1
fi
exit $status
