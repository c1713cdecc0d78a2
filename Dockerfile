# syntax=docker/dockerfile:1
#
# The Handsign gateway: one binary on Debian slim, run as a non-root user.
#
#   docker build -t handsign .
#   docker run --rm -p 127.0.0.1:8080:8080 -v handsign-data:/data handsign
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts below.
# The templates and static files are compiled into the binary (askama, include_bytes!), so the
# runtime image needs nothing else from the source tree.

FROM rust:1.95-slim-bookworm AS builder
# make: the gateway's allocator, jemalloc (tikv-jemalloc-sys), is built from C with configure and
# make; the slim image has only gcc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole workspace: cargo reads every member's manifest (and their declared test and bench
# targets) even to build one binary. .dockerignore keeps target/, .git and node_modules out.
COPY . .
# The registry and target directories live in BuildKit cache mounts, so dependencies are
# downloaded and compiled once, not on every source change. Cargo decides whether to rebuild a
# workspace crate by file mtimes, which COPY does not always preserve (builders may normalize
# them), so the workspace's own sources are touched first: they are always recompiled and never
# mixed with a stale build of an earlier tree; dependencies stay cached. The binary is copied out
# of the cache mount in the same step, since cache mounts are not part of the image.
RUN --mount=type=cache,id=handsign-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=handsign-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=handsign-target,target=/src/target,sharing=locked \
    find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} + \
    && cargo build --release --locked --bin handsign \
    && cp target/release/handsign /usr/local/bin/handsign

FROM debian:bookworm-slim
# ca-certificates: outgoing https (Web Push services, webhooks, JWKS URLs) is verified against
# the system's trust roots (reqwest with rustls-platform-verifier, which reads them from
# /etc/ssl/certs on Linux); no roots are compiled into the binary.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed non-root uid, and /data owned by it (owner-only, as the gateway would create it) before
# VOLUME, so that a new named volume starts with this owner.
RUN groupadd --gid 10001 handsign \
    && useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin handsign \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && chmod 0700 /data
COPY --from=builder /usr/local/bin/handsign /usr/local/bin/handsign
WORKDIR /data
USER 10001:10001
# Listen on every interface of the container; keep the store (without --redis-url), the
# signing key and the operator socket in /data.
ENV HANDSIGN_LISTEN=0.0.0.0:8080 \
    HANDSIGN_DATA_DIR=/data
EXPOSE 8080
VOLUME /data
# `handsign health` GETs http://127.0.0.1:8080/readyz (3 s timeout): 0 when the store answers.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["handsign", "health"]
ENTRYPOINT ["handsign"]
CMD ["serve"]
