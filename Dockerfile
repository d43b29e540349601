# syntax=docker/dockerfile:1
# The landlord image: one binary for every role (worker, scheduler, api, serve)
# and every operator command, with the PostgreSQL client programs backups and
# restores run.
#
#   docker build -t landlord:dev .
#   docker run --rm landlord:dev --help
#
# tests/it/deploy.rs checks this file against the code (stages, the programs
# the code runs, the health route and port, the non-root user); ops/deploy/check
# lints it with hadolint. It was not built on the machine that wrote it (no
# Docker engine there); see README, "Deploying".

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------- build
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The sqlx query macros read the committed .sqlx/ query data: no database at build time.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY .sqlx .sqlx
COPY migrations migrations
COPY openapi.json openapi.json
COPY src src
COPY workers workers
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin landlord \
    && install -m 0755 target/release/landlord /usr/local/bin/landlord

# -------------------------------------------------------------- runtime
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG DEBIAN_RELEASE
# The PostgreSQL client majors shipped side by side (PGDG packages): pg_dump
# must not be older than a tenant server, so the newest is the default
# (LANDLORD_PG_BIN_DIR below); a worker for older servers can point
# LANDLORD_PG_BIN_DIR at /usr/lib/postgresql/<major>/bin.
ARG PG_MAJORS="14 15 16 17"
ARG PG_DEFAULT=17
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# ca-certificates: TLS to PostgreSQL, RabbitMQ, S3 and SMTP against the system
# roots; curl: the HEALTHCHECK (and the PGDG key); procps: kill(1), which ends
# the client programs of a stopped attempt; age: age-keygen for the catalog key.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl procps age \
    && install -d /usr/share/postgresql-common/pgdg \
    && curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc \
    && echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list \
    && apt-get update \
    && read -ra majors <<<"${PG_MAJORS}" \
    && apt-get install -y --no-install-recommends "${majors[@]/#/postgresql-client-}" \
    && test -x "/usr/lib/postgresql/${PG_DEFAULT}/bin/pg_dump" \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 landlord \
    && useradd --system --uid 10001 --gid landlord --home-dir /var/lib/landlord \
        --shell /usr/sbin/nologin landlord \
    && install -d -o landlord -g landlord -m 0750 /var/lib/landlord /var/lib/landlord/keys
COPY --from=build /usr/local/bin/landlord /usr/local/bin/landlord
# Listen beyond loopback inside the container (the code's defaults are
# 127.0.0.1:9464 and 127.0.0.1:8080); the ports stay the defaults.
ENV LANDLORD_LISTEN=0.0.0.0:9464 \
    LANDLORD_API_LISTEN=0.0.0.0:8080 \
    LANDLORD_PG_BIN_DIR=/usr/lib/postgresql/${PG_DEFAULT}/bin
WORKDIR /var/lib/landlord
USER 10001:10001
EXPOSE 9464 8080
# /healthz of the metrics listener (worker, scheduler, serve). `landlord api`
# has no metrics listener: its own /healthz is on LANDLORD_API_LISTEN (compose
# and the Kubernetes manifests say so for the api).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${LANDLORD_LISTEN##*:}/healthz\" >/dev/null"]
ENTRYPOINT ["landlord"]
CMD ["worker"]
