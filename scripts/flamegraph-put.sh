#!/usr/bin/env bash
# Flame graph (SVG) of one strata-node while `strata bench` sends it blind
# durable Puts (the load phase; 32 in flight, 100-byte values), for
# docs/benchmarks.md. Needs `perf`; installs `inferno` (crates.io) when
# missing. Also prints the bench result and `perf stat` counts per Put.
#
#   ./scripts/flamegraph-put.sh OUT.svg [records]
#
# STRATA_NODE_BIN=path profiles another strata-node build (e.g. an older
# commit's, for a before/after pair).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: flamegraph-put.sh OUT.svg [records]}
RECORDS=${2:-400000}
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install -q --locked inferno

cargo build --release -q -p strata-cli --bin strata -p strata-node --bin strata-node
. scripts/lib.sh
scratch flame

NODE_BIN=${STRATA_NODE_BIN:-target/release/strata-node}
"$NODE_BIN" --node-id flame-0 --data-dir "$ROOT/data" --listen 127.0.0.1:7660 \
  --metrics-listen 127.0.0.1:9660 --replication-factor 1 >"$ROOT/node.log" 2>&1 &
NODE=$!
PIDS+=("$NODE")
for _ in $(seq 100); do
  target/release/strata -e 127.0.0.1:7660 bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1 && break
  sleep 0.1
done
target/release/strata -e 127.0.0.1:7660 bench --workload a --records "$RECORDS" --ops 0 \
  --threads 32 >"$ROOT/bench.out" &
BENCH=$!
PIDS+=("$BENCH")
sleep 2
perf record -F 499 --call-graph dwarf,16384 -p "$NODE" -o "$ROOT/perf.data" -- sleep 4 >/dev/null 2>&1
puts() { curl -s 127.0.0.1:9660/metrics | awk -F' ' '/^strata_requests_total\{rpc="Put",code="Ok"\}/ { print $2 }'; }
BEFORE=$(puts)
perf stat -x, -e task-clock,context-switches,syscalls:sys_enter_fdatasync,syscalls:sys_enter_writev,syscalls:sys_enter_futex \
  -p "$NODE" -o "$ROOT/stat.csv" -- sleep 3
PUTS=$(( $(puts) - BEFORE ))
wait "$BENCH"
cat "$ROOT/bench.out"
OPS=$(awk '$1 == "load" && $2 == "insert" { print $4 }' "$ROOT/bench.out")
echo "perf stat over 3 s ($PUTS Puts, $((PUTS / 3)) Puts/s; the whole run's rate above includes the profiled seconds), per Put:"
awk -F, -v puts="$PUTS" '$3 == "task-clock" { printf "  %-32s %.1f\n", "CPU (us)", $1 * 1000 / puts } $3 != "" && $3 != "task-clock" { printf "  %-32s %.3f\n", $3, $1 / puts }' "$ROOT/stat.csv"
perf script -i "$ROOT/perf.data" 2>/dev/null | inferno-collapse-perf | \
  inferno-flamegraph --title "strata-node: durable Puts, $OPS/s" --minwidth 0.5 >"$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"
