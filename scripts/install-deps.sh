#!/usr/bin/env bash
# Installs the Debian 12 packages crm-events-sink needs to build, run and test.
# Idempotent: does nothing when everything is already installed.
#
#   scripts/install-deps.sh               everything: build, run and test
#   scripts/install-deps.sh --build-only  only what building the binaries
#                                         needs (the Dockerfile's build stage)
#   scripts/install-deps.sh --runtime     only the shared libraries the
#                                         binaries load (the runtime image)
#   scripts/install-deps.sh --print build|runtime|all
#                                         print that list, one per line
#
# The one list of package names: the Dockerfile installs through this script.
set -euo pipefail

BUILD_PACKAGES=(
  # toolchain (ccache: the Dockerfile's compile cache; CMAKE_CXX_COMPILER_LAUNCHER)
  cmake ninja-build g++ pkg-config ccache
  # libraries (headers + shared objects)
  libcaf-dev librdkafka-dev libpqxx-dev libpq-dev
  librestinio-dev libasio-dev libhttp-parser-dev libfmt-dev
  prometheus-cpp-dev libspdlog-dev nlohmann-json3-dev catch2
  # security: JWT verification, JWKS over https, hashing and TLS
  libjwt-dev libcurl4-openssl-dev libssl-dev
  # api/openapi.yaml -> JSON at build time (api/CMakeLists.txt)
  python3 python3-yaml
)
# What crm-events-sink and crm-produce load: the packages of their DT_NEEDED
# shared objects (readelf -d | NEEDED, then dpkg -S), without libc6,
# libstdc++6 and libgcc-s1 (in every Debian base image); ca-certificates for
# JWKS over https. The Dockerfile's runtime stage checks with ldd that nothing
# is missing, so a new library shows up as a failed image build.
RUNTIME_PACKAGES=(
  libcaf-core0.17 librdkafka1 librdkafka++1 libpqxx-6.4 libpq5
  libhttp-parser2.9 libfmt9 libspdlog1.10
  libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0
  libjwt0 libcurl4 libssl3 ca-certificates
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}" git openssl
  # real components used by the local run and the tests
  postgresql kcat prometheus curl procps
  # the API fuzzer's virtual environment (scripts/fuzz-api.sh)
  python3-venv
  # the container image test (scripts/container-test.sh; see its header for
  # why runc and debootstrap) and the compose file's check
  podman runc debootstrap uidmap fuse-overlayfs slirp4netns podman-compose
)

mode=${1:-all}
case $mode in
  all) ;;
  --build-only) PACKAGES=("${BUILD_PACKAGES[@]}") ;;
  --runtime) PACKAGES=("${RUNTIME_PACKAGES[@]}") ;;
  --print)
    case ${2:-} in
      build) printf '%s\n' "${BUILD_PACKAGES[@]}" ;;
      runtime) printf '%s\n' "${RUNTIME_PACKAGES[@]}" ;;
      all) printf '%s\n' "${PACKAGES[@]}" ;;
      *) echo "usage: install-deps.sh --print build|runtime|all" >&2; exit 2 ;;
    esac
    exit 0 ;;
  *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
if [ "$mode" = all ]; then
  # The OpenAPI lint (scripts/lint-openapi.sh runs @redocly/cli with npm),
  # unless the machine has its own Node.js and npm (Debian's npm would replace
  # them).
  command -v npm >/dev/null || PACKAGES+=(nodejs npm)
  # Apache Kafka for the real-broker tests (scripts/kafka.sh): a JDK and Maven,
  # unless the machine has its own java/mvn.
  command -v java >/dev/null || PACKAGES+=(default-jdk-headless)
  command -v mvn >/dev/null || PACKAGES+=(maven)
fi

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
