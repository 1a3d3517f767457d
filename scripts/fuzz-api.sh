#!/usr/bin/env bash
# Fuzzes the operator API from its own OpenAPI document (api/openapi.yaml)
# with schemathesis against a live service (tests/fuzz/fuzz_api.py: a
# throwaway PostgreSQL, crm-mock-broker, sample traffic, an admin key and a
# scoped key), every check on: no 5xx, status codes, content types, headers
# and bodies as documented, no request left unanswered.
#
#   scripts/fuzz-api.sh [--examples N] [--seed S]
#                       [--runs admin,scoped,stateful] [--phases LIST]
#                       [--keep] [--build-dir DIR]
#
#   --examples N   test cases per operation and phase (default
#                  $FUZZ_EXAMPLES or 20; ctest api.fuzz: 10; before a
#                  release: 500)
#   --seed S       schemathesis's random seed (to reproduce a run)
#   --runs LIST    admin (admin key), scoped (operator of 2 tenants),
#                  stateful (admin key, linked calls; >= 30 examples);
#                  default all three
#   --phases LIST  only these schemathesis phases (examples, coverage,
#                  fuzzing, stateful)
#   --keep         keep the work directory (reports, sink.log) on success
#   --build-dir    the build with crm-events-sink, crm-mock-broker and
#                  crm-produce (default build/)
#
# The pinned schemathesis is installed once with pip into
# .tools/schemathesis-<version>/ (git-ignored; PyPI on the first run).
# Exit 0 clean, 1 a check failed, 2 setup error, 77 (ctest: skipped) when
# Python's venv module is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
DIR=${SCHEMATHESIS_DIR:-$PWD/.tools/schemathesis-$SCHEMATHESIS_VERSION}
EXAMPLES=${FUZZ_EXAMPLES:-20}
BUILD_DIR=${BUILD_DIR:-build}
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --examples) EXAMPLES=$2; shift 2 ;;
    --seed|--runs|--phases) extra+=("$1" "$2"); shift 2 ;;
    --keep) extra+=("$1"); shift ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz-api: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
done

if ! /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "fuzz-api: python3-venv is missing (scripts/install-deps.sh" \
       "installs it): skipped"
  exit 77
fi
ST=$DIR/bin/st
if ! "$ST" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  mkdir -p "$DIR"
  # A lock: parallel runs must not install into one folder at once.
  exec 9>"$DIR/.lock"
  flock 9
  if ! "$ST" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    /usr/bin/python3 -m venv "$DIR"
    "$DIR/bin/pip" install --quiet --disable-pip-version-check \
      "schemathesis==$SCHEMATHESIS_VERSION" >&2
  fi
  flock -u 9
fi
exec /usr/bin/python3 tests/fuzz/fuzz_api.py --st "$ST" --source . \
  --build "$BUILD_DIR" --examples "$EXAMPLES" "${extra[@]}"
