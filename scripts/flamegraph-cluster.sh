#!/usr/bin/env bash
# Flame graph (SVG) of a 3-node `strata dev` cluster (N=3, W=2, R=2; the
# three nodes are tasks of one process) while `strata bench` runs YCSB
# workload A (WORKLOAD=b: B) against it, for docs/benchmarks.md. Needs `perf`; installs
# `inferno` (crates.io) when missing. Prints the bench result.
#
#   ./scripts/flamegraph-cluster.sh OUT.svg [records] [ops]
#
# STRATA_BIN=path profiles another `strata` build (e.g. an older commit's,
# for a before/after pair). COLLAPSED=path keeps the folded stacks.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: flamegraph-cluster.sh OUT.svg [records] [ops]}
RECORDS=${2:-20000}
OPS=${3:-120000}
WORKLOAD=${WORKLOAD:-a}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install -q --locked inferno

cargo build --release -q -p strata-cli --bin strata
STRATA=${STRATA_BIN:-target/release/strata}
. scripts/lib.sh
scratch flame-cluster

start_dev "$STRATA" 3 7860
E=127.0.0.1:7860
"$STRATA" -e "$E" bench --workload a --records "$RECORDS" --ops 0 --threads 32 >/dev/null
"$STRATA" -e "$E" bench --workload "$WORKLOAD" --records "$RECORDS" --ops "$OPS" --threads 32 --skip-load \
  >"$ROOT/bench.out" &
BENCH=$!
PIDS+=("$BENCH")
sleep 3
perf record -F 299 --call-graph dwarf,16384 -p "$DEV" -o "$ROOT/perf.data" -- sleep 6 >/dev/null 2>&1
wait "$BENCH"
cat "$ROOT/bench.out"
OPS_S=$(awk '$1 == "run" && ($2 == "read" || $2 == "update") { s += $4 } END { print s }' "$ROOT/bench.out")
perf script -i "$ROOT/perf.data" 2>/dev/null | inferno-collapse-perf >"$ROOT/collapsed.txt"
[[ -n "${COLLAPSED:-}" ]] && cp "$ROOT/collapsed.txt" "$COLLAPSED"
# The share of the process's samples under the storage read, for the docs.
awk '{ n = $NF; total += n; if ($0 ~ /strata_node::storage::Storage::read/) reads += n }
  END { printf "Storage::read: %.1f%% of the samples\n", 100 * reads / total }' "$ROOT/collapsed.txt"
inferno-flamegraph --title "strata dev --nodes 3: YCSB A, $OPS_S ops/s while profiled" \
  --minwidth 0.5 <"$ROOT/collapsed.txt" >"$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"
