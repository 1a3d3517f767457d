#!/usr/bin/env bash
# Installs the Debian 12 packages crm-events-sink needs to build, run and test.
# Idempotent: does nothing when everything is already installed.
set -euo pipefail

PACKAGES=(
  # toolchain
  cmake ninja-build g++ pkg-config git
  # libraries (headers + shared objects)
  libcaf-dev librdkafka-dev libpqxx-dev libpq-dev
  librestinio-dev libasio-dev libhttp-parser-dev libfmt-dev
  prometheus-cpp-dev libspdlog-dev nlohmann-json3-dev catch2
  # security: JWT verification, JWKS over https, hashing and TLS
  libjwt-dev libcurl4-openssl-dev libssl-dev openssl
  # real components used by the local run and the tests
  postgresql kcat prometheus curl procps
  # api/openapi.yaml -> JSON at build time (api/CMakeLists.txt)
  python3 python3-yaml
  # the container image test (scripts/container-test.sh; see its header for
  # why runc and debootstrap) and the compose file's check
  podman runc debootstrap uidmap fuse-overlayfs slirp4netns podman-compose
)
# The OpenAPI lint (scripts/lint-openapi.sh runs @redocly/cli with npm),
# unless the machine has its own Node.js and npm (Debian's npm would replace
# them).
command -v npm >/dev/null || PACKAGES+=(nodejs npm)
# Apache Kafka for the real-broker tests (scripts/kafka.sh): a JDK and Maven,
# unless the machine has its own java/mvn.
command -v java >/dev/null || PACKAGES+=(default-jdk-headless)
command -v mvn >/dev/null || PACKAGES+=(maven)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
SUDO=()
[ "$(id -u)" -ne 0 ] && SUDO=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
