#!/usr/bin/env bash
# Per-second foreground latency around throttled joins: three nodes (N=3)
# are loaded once with GIB gibibytes of random 4 KiB values, then ROUNDS
# nodes join one after another, each 10 s into a 30 s YCSB B run at 1,000
# ops/s (32 workers, evenly spaced, a latency line per second). Prints,
# per join, the p50 / p99 / max of every operation for seconds 5-20 (the
# join starts between seconds 10 and 11) and the joiner's state changes
# from its log (docs/benchmarks.md, "The join's first second").
#
#   ./scripts/join-timeline.sh [rounds] [gib]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
GIB=${2:-1}
RECORDS=$((GIB * 1024 * 1024 * 1024 / 4096))
cargo build --release -q -p strata-node -p strata-cli
NODE=target/release/strata-node
STRATA=target/release/strata
. scripts/lib.sh
scratch join-timeline
BASE=7880
E=127.0.0.1:$BASE

for i in 0 1 2; do start_member "$NODE" "$BASE" 3 "$i"; done
until "$STRATA" -e "$E" bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1; do sleep 0.2; done
sleep 2
echo "## loading $RECORDS records of 4096 bytes ($GIB GiB per replica)"
"$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes 4096 --random-values \
  --ops 1 --threads 32 >/dev/null 2>&1
for round in $(seq "$ROUNDS"); do
  joiner=$((2 + round))
  settle "${PIDS[@]:0:3}"
  "$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes 4096 --random-values \
    --skip-load --rate 1000 --duration 30 --threads 32 --status-interval 1 >"$ROOT/fg" 2>&1 &
  load=$!
  sleep 10
  echo "## node-$joiner joins at $(date +%T.%N)"
  start_member "$NODE" "$BASE" 3 "$joiner"
  wait "$load" || true
  echo "second  p50 us  p99 us  max us"
  # "run  10 s: latency over the last 1 s: p50 370 us, p99 1,463 us, max 5,043 us"
  awk '/latency over/ {printf "%6s %7s %7s %7s\n", $2, $11, $14, $17}' "$ROOT/fg" | sed -n 5,20p
  wait_change "$E" "node-$joiner" join
  grep -E "node started|announced|joined the ring" "$ROOT/node-$joiner.log" | cut -c1-140
done
