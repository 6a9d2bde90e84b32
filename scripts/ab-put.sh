#!/usr/bin/env bash
# Side-by-side durable Puts of two or more strata-node builds: a fresh
# node per round, binaries alternating so that the machine's drift hits
# them alike (docs/benchmarks.md, "What changed, measured side by side").
#
#   ./scripts/ab-put.sh ROUNDS RECORDS NODE_BINARY...
#
# Each round: `strata bench --workload a --records RECORDS --ops 0
# --threads 32` (the load phase: blind Puts of fresh keys, 100-byte values)
# against the node, then the node's CPU per Put from /proc/PID/stat.
# STRATA_FLAGS adds client flags, e.g. STRATA_FLAGS=--no-sessions for
# unary calls instead of one session stream per connection.
# Build an older commit's binary with e.g.
#   git worktree add /tmp/old <commit> && cargo build --release \
#     --manifest-path /tmp/old/Cargo.toml -p strata-node --bin strata-node
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:?usage: ab-put.sh ROUNDS RECORDS NODE_BINARY...}
RECORDS=${2:?usage: ab-put.sh ROUNDS RECORDS NODE_BINARY...}
shift 2
[[ $# -ge 1 ]] || { echo "usage: ab-put.sh ROUNDS RECORDS NODE_BINARY..." >&2; exit 2; }
cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/strata-ab.XXXXXX")
NODE=
cleanup() {
  [[ -n "$NODE" ]] && kill "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null
  rm -rf "$ROOT"
}
trap cleanup EXIT
TICK=$(getconf CLK_TCK)

printf '%-6s %-40s %10s %8s %8s %14s\n' round binary puts/s p50_us p99_us node_cpu_us/put
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "$ROOT/data"
    "$bin" --node-id ab-0 --data-dir "$ROOT/data" --listen 127.0.0.1:7670 \
      --metrics-listen 127.0.0.1:0 --replication-factor 1 >"$ROOT/node.log" 2>&1 &
    NODE=$!
    for _ in $(seq 100); do
      "$STRATA" -e 127.0.0.1:7670 bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1 && break
      sleep 0.1
    done
    # shellcheck disable=SC2086 # STRATA_FLAGS is a list of flags
    line=$("$STRATA" -e 127.0.0.1:7670 ${STRATA_FLAGS:-} bench --workload a --records "$RECORDS" --ops 0 --threads 32 |
      awk '$1 == "load" && $2 == "insert" { print $4, $5, $7 }')
    ticks=$(awk '{ print $14 + $15 }' "/proc/$NODE/stat")
    kill "$NODE" && wait "$NODE" 2>/dev/null || true
    NODE=
    read -r puts p50 p99 <<<"$line"
    printf '%-6s %-40s %10s %8s %8s %14.1f\n' "$round" "$bin" "$puts" "$p50" "$p99" \
      "$(awk -v t="$ticks" -v hz="$TICK" -v n="$RECORDS" 'BEGIN { print t * 1e6 / hz / n }')"
  done
done
