# Sourced by scripts/container-test.sh and bench/run.sh (--container): picks
# the container engine. `docker` when `docker info` answers (a running Docker
# engine; a docker client alone does not count), else `podman` with
# CONTAINERS_CONF=deploy/podman/containers.conf (runc, no default ulimits:
# what these machines need; /etc/containers is never touched).
# Sets ENGINE; returns 1 when there is no engine.
ces_container_engine() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  if command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v podman >/dev/null; then
    ENGINE=podman
    export CONTAINERS_CONF=$root/deploy/podman/containers.conf
  else
    return 1
  fi
}
