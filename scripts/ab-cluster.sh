#!/usr/bin/env bash
# Side-by-side clusters of two or more `strata` builds: `strata dev
# --nodes $NODES` (default 3: N=3, W=2, R=2; the nodes are tasks of one
# process), a fresh
# cluster per round, builds alternating so that the machine's drift hits
# them alike (docs/benchmarks.md).
#
#   ./scripts/ab-cluster.sh ROUNDS WORKLOAD OPS STRATA_BINARY...
#
# Each round loads 20,000 records (100-byte values), runs YCSB WORKLOAD
# (a or b) for OPS operations at 32 in flight, and reports ops/s and the
# cluster process's CPU per operation (load excluded) from /proc/PID/stat.
# Build an older commit's binary with e.g.
#   git worktree add /tmp/old <commit> && cargo build --release \
#     --manifest-path /tmp/old/Cargo.toml -p strata-cli --bin strata
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: ab-cluster.sh ROUNDS WORKLOAD OPS STRATA_BINARY..."
ROUNDS=${1:?$USAGE}
WORKLOAD=${2:?$USAGE}
OPS=${3:?$USAGE}
shift 3
[[ $# -ge 1 ]] || { echo "$USAGE" >&2; exit 2; }
cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
. scripts/lib.sh
scratch ab-cluster
TICK=$(getconf CLK_TCK)
E=127.0.0.1:7940
NODES=${NODES:-3}

printf '%-6s %-40s %10s %10s %16s\n' round binary ops/s read_p50 cluster_cpu_us/op
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    rm -rf "$ROOT/data"
    start_dev "$bin" "$NODES" 7940
    "$STRATA" -e "$E" bench --workload "$WORKLOAD" --records 20000 --ops 0 --threads 32 >/dev/null
    before=$(awk '{ print $14 + $15 }' "/proc/$DEV/stat")
    out=$("$STRATA" -e "$E" bench --workload "$WORKLOAD" --records 20000 --ops "$OPS" \
      --threads 32 --skip-load)
    after=$(awk '{ print $14 + $15 }' "/proc/$DEV/stat")
    kill -INT "$DEV" && wait "$DEV" 2>/dev/null || true
    ops=$(awk '$1 == "run" && ($2 == "read" || $2 == "update") { s += $4 } END { print s }' <<<"$out")
    p50=$(awk '$1 == "run" && $2 == "read" { print $5 }' <<<"$out")
    printf '%-6s %-40s %10s %10s %16.1f\n' "$round" "$bin" "$ops" "$p50" \
      "$(awk -v t="$((after - before))" -v hz="$TICK" -v n="$OPS" 'BEGIN { print t * 1e6 / hz / n }')"
  done
done
