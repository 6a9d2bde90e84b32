# syntax=docker/dockerfile:1
#
# Strata's image: strata-node (the entrypoint), strata-operator, the
# `strata` CLI and strata-example-client, on a distroless base with no
# shell, running as UID 10001 (the operator's pods run as that user too).
#
#   docker build -t strata:0.1.0 .
#
# The dependency graph is built in its own layer (cargo-chef), so a change
# to our sources rebuilds only our crates. The release profile is the one
# the benchmarks use (docs/benchmarks.md). scripts/check-image.sh runs the
# builder's cargo command on the host and checks every COPY against it.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
# The slim image has gcc and libc6-dev only; tikv-jemalloc-sys builds
# jemalloc with make.
RUN apt-get update \
 && apt-get install -y --no-install-recommends make=4.3-4.1 \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The build flags (tokio_unstable) apply to the dependencies too.
COPY .cargo .cargo
# Dependencies only: cached until Cargo.lock or a manifest changes.
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin strata-node --bin strata-operator --bin strata --bin strata-example-client

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="strata" \
      org.opencontainers.image.description="Strata: a write-optimized, leaderless key-value store (node, operator, CLI)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/strata-db/strata" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /src/target/release/strata-node /usr/local/bin/strata-node
COPY --from=builder /src/target/release/strata-operator /usr/local/bin/strata-operator
COPY --from=builder /src/target/release/strata /usr/local/bin/strata
COPY --from=builder /src/target/release/strata-example-client /usr/local/bin/strata-example-client
USER 10001:10001
# Client gRPC, internal gRPC and gossip (node to node only), metrics.
EXPOSE 7400/tcp 7401/tcp 7401/udp 9400/tcp
ENTRYPOINT ["/usr/local/bin/strata-node"]
