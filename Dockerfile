# crm-events-sink container image (README: "Run in a container").
#
#   docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) \
#     -t localhost/crm-events-sink:dev .
#   podman build --network=host ... (the same; scripts/container-test.sh)
#
# Two stages: `build` compiles crm-events-sink and crm-produce on Debian 12
# with the -dev packages; the runtime stage is debian:bookworm-slim with only
# the shared libraries they load. Both package lists live in
# scripts/install-deps.sh (--build-only / --runtime), nowhere else.

# ---- build --------------------------------------------------------------------
FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh --build-only \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
COPY . /src
# The git commit baked into --version and crm_build_info (no .git here).
ARG REVISION=unknown
# RelWithDebInfo (-O2 -g, the build type of the tests and bench/) then
# stripped: the same code as the bare binary the bench compares with.
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCES_REVISION="${REVISION}" >/dev/null \
 && cmake --build /build -j "$(nproc)" --target crm-events-sink crm-produce \
 && install -D -s -m 0755 /build/actors/crm-events-sink \
      /out/usr/local/bin/crm-events-sink \
 && install -D -s -m 0755 /build/tests/tools/crm-produce \
      /out/usr/local/bin/crm-produce \
 && /out/usr/local/bin/crm-events-sink --version

# ---- runtime ------------------------------------------------------------------
FROM debian:bookworm-slim
ARG VERSION=0.1.0
ARG REVISION=unknown
# The repository's URL (scripts/container-test.sh passes git's origin).
ARG SOURCE=
LABEL org.opencontainers.image.title="crm-events-sink" \
      org.opencontainers.image.description="CRM events from Kafka into a PostgreSQL journal, exactly once" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"
COPY --from=build /src/scripts/install-deps.sh /tmp/install-deps.sh
# Only the runtime libraries; the apt lists and caches go in the same layer.
# ldd fails the build when a library the binaries need is not installed.
RUN /tmp/install-deps.sh --runtime \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt/* \
      /var/log/dpkg.log /tmp/install-deps.sh \
 && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin ces
COPY --from=build /out/ /
RUN if ldd /usr/local/bin/crm-events-sink /usr/local/bin/crm-produce \
      | grep 'not found'; then exit 1; fi
# Config by environment only (README "Configuration": DATABASE_URL,
# KAFKA_BOOTSTRAP_SERVERS, ADMIN_TOKEN_FILE, ...); no secret is baked in.
# Both listeners already default to 0.0.0.0 (reachable from outside the
# container); set here so that the image says so and an INI file cannot
# narrow them by accident.
ENV HTTP_ADDRESS=0.0.0.0 \
    METRICS_ADDRESS=0.0.0.0 \
    LOG_FORMAT=json
# 9105: Prometheus /metrics; 9106: operator REST API (/health, /ready, ...).
EXPOSE 9105 9106
USER 10001
# The service stops gracefully on SIGTERM (drains, commits, exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/crm-events-sink"]
