#!/usr/bin/env bash
# Installs the Debian packages, builds everything and runs the whole test
# suite (ctest: unit, actors, integration, e2e). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
# Serial on purpose: integration and e2e tests start PostgreSQL clusters,
# brokers and the service; on 2 cores parallel runs only add noise.
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure "$@"
