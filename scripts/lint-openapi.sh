#!/usr/bin/env bash
# Lints api/openapi.yaml with @redocly/cli (its recommended rules; errors
# fail; the document has no warnings either). The pinned version is
# installed once with npm into .tools/redocly-<version>/ (git-ignored). Version 1.34.20 runs on Debian 12's
# Node.js 18 and on Node.js 20; 2.x needs Node.js >= 20.19.
# Exit 77 (ctest: skipped) when npm is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
REDOCLY_VERSION=1.34.20
DIR=${REDOCLY_DIR:-.tools/redocly-$REDOCLY_VERSION}
if ! command -v npm >/dev/null; then
  echo "lint-openapi: npm not found (scripts/install-deps.sh installs it):" \
       "skipped"
  exit 77
fi
BIN=$DIR/node_modules/.bin/redocly
if [ ! -x "$BIN" ]; then
  mkdir -p "$DIR"
  # A lock directory: parallel ctest runs must not install into one folder
  # at the same time.
  exec 9>"$DIR/.lock"
  flock 9
  if [ ! -x "$BIN" ]; then
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
      "@redocly/cli@$REDOCLY_VERSION" >&2
  fi
  flock -u 9
fi
exec "$BIN" lint --max-problems 100 "${@:-api/openapi.yaml}"
