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
E=127.0.0.1:7820

start_node() { # binary, index
  "$1" --node-id "node-$2" --data-dir "$ROOT/node-$2" --listen "127.0.0.1:$((7820 + $2))" \
    --metrics-listen "127.0.0.1:$((9820 + $2))" --replication-factor 3 --vnodes 64 \
    --initial-cluster node-0,node-1,node-2 --seeds 127.0.0.1:7820,127.0.0.1:7821,127.0.0.1:7822 \
    --gossip-interval-ms 200 >"$ROOT/node-$2.out" 2>"$ROOT/node-$2.log" &
  PIDS+=($!)
}

# YCSB B at the fixed rate for SECONDS, its summary lines to FILE.
foreground() { # file, seconds
  "$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes "$VALUE" --random-values \
    --skip-load --rate "$RATE" --duration "$2" --threads 32 >"$1" 2>&1
}

# "reads p50 / p99, updates p50 / p99" of a foreground run.
summary() { # file
  awk '$1 == "run" && ($2 == "read" || $2 == "update") {printf "%s %s / %s   ", $2, $5, $7}' "$1"
}

for i in 0 1 2; do start_node "$OLD" "$i"; done
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
    foreground "$ROOT/before" 20
    start_node "$bin" "$join"
    started=$SECONDS
    foreground "$ROOT/during" 30 &
    load=$!
    until "$STRATA" -e "$E" progress --node "node-$join" --once 2>/dev/null | grep -q "join.*succeeded"; do
      sleep 1
    done
    took=$((SECONDS - started))
    wait "$load" || true
    echo "round $round $build: join $took s"
    echo "  before: $(summary "$ROOT/before")"
    echo "  during: $(summary "$ROOT/during")"
    kill "${PIDS[-1]}"
    sleep 5
    # Retried while a node is still busy with the join's cleanup.
    for _ in $(seq 60); do
      "$STRATA" -e "$E" removenode "node-$join" 2>/dev/null | tail -1 && break
      sleep 2
    done
  done
done
