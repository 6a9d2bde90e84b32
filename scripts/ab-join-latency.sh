#!/usr/bin/env bash
# Throttled joins by two `strata-node` builds, side by side: three nodes
# (N=3, OLD binary) are loaded once with GIB gibibytes of random values,
# then ROUNDS x 2 joins alternate the joining node's binary, OLD then NEW,
# each joiner removed again (`removenode`) before the next. For each join:
# YCSB B at RATE ops/s (32 workers, evenly spaced) for 20 s before it and
# for the join's first 30 s, reads and updates p50/p99, and the join's
# length (docs/benchmarks.md, "Smaller batches under a throttle").
# `ab-join.sh` compares builds on unthrottled streaming capacity instead.
#
#   ./scripts/ab-join-latency.sh OLD_NODE NEW_NODE [rounds] [gib] [value_bytes] [rate]
#
# Build an older commit's node with e.g.
#   git worktree add /tmp/old <commit> && cargo build --release \
#     --manifest-path /tmp/old/Cargo.toml -p strata-node --bin strata-node
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: ab-join-latency.sh OLD_NODE NEW_NODE [rounds] [gib] [value_bytes] [rate]"
OLD=$(realpath "${1:?$USAGE}")
NEW=$(realpath "${2:?$USAGE}")
ROUNDS=${3:-4}
GIB=${4:-2}
VALUE=${5:-4096}
RATE=${6:-1000}
RECORDS=$((GIB * 1024 * 1024 * 1024 / VALUE))
cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
. scripts/lib.sh
scratch ab-join-latency
BASE=7820
E=127.0.0.1:$BASE

for i in 0 1 2; do start_member "$OLD" "$BASE" 3 "$i"; done
sleep 3
echo "## loading $RECORDS records of $VALUE bytes ($GIB GiB per replica)"
"$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes "$VALUE" --random-values \
  --ops 1 --threads 32 | tail -1

join=3
for round in $(seq "$ROUNDS"); do
  for build in old new; do
    join=$((join + 1))
    bin=$OLD; [ "$build" = new ] && bin=$NEW
    settle "${PIDS[@]:0:3}"
    ycsb_b_at_rate "$E" "$RECORDS" "$VALUE" "$RATE" 20 >"$ROOT/before" 2>&1
    start_member "$bin" "$BASE" 3 "$join"
    started=$SECONDS
    ycsb_b_at_rate "$E" "$RECORDS" "$VALUE" "$RATE" 30 >"$ROOT/during" 2>&1 &
    load=$!
    wait_change "$E" "node-$join" join
    took=$((SECONDS - started))
    wait "$load" || true
    echo "round $round $build: join $took s"
    echo "  before: $(latencies "$ROOT/before")"
    echo "  during: $(latencies "$ROOT/during")"
    kill "${PIDS[-1]}"
    sleep 5
    remove_member "$E" "node-$join"
  done
done
