#!/usr/bin/env bash
# A node leaving under load, with two `strata-node` builds side by side:
# per round and build (OLD then NEW), a fresh 4-node cluster (N=3, every
# node running that build) is loaded with GIB gibibytes of random values
# per replica and left to settle, then node-3 leaves at the default
# throttle: decommissioned (HOW=decommission), or killed with SIGKILL and
# removed through node-0 (HOW=removenode). For each: YCSB B at RATE ops/s
# (32 workers, evenly spaced) through node-0 for 20 s before, and for the
# first 30 s from the decommission or the kill; reads and updates p50/p99,
# the change's own summary line (keys, bytes, streaming rate) and how many
# table bytes node-0 loaded behind its data (docs/benchmarks.md,
# "Decommissions load tables").
#
#   ./scripts/ab-leave.sh OLD_NODE NEW_NODE [rounds] [gib] [how] [value_bytes] [rate]
#
# Build an older commit's node with e.g.
#   git worktree add /tmp/old <commit> && cargo build --release \
#     --manifest-path /tmp/old/Cargo.toml -p strata-node --bin strata-node
set -euo pipefail
cd "$(dirname "$0")/.."
USAGE="usage: ab-leave.sh OLD_NODE NEW_NODE [rounds] [gib] [decommission|removenode] [value_bytes] [rate]"
OLD=$(realpath "${1:?$USAGE}")
NEW=$(realpath "${2:?$USAGE}")
ROUNDS=${3:-2}
GIB=${4:-1}
HOW=${5:-decommission}
VALUE=${6:-4096}
RATE=${7:-1000}
case $HOW in decommission | removenode) ;; *) echo "$USAGE" >&2; exit 2 ;; esac
RECORDS=$((GIB * 1024 * 1024 * 1024 / VALUE))
cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
. scripts/lib.sh
scratch ab-leave
BASE=7840
E=127.0.0.1:$BASE

echo "## $RECORDS records of $VALUE bytes ($GIB GiB per replica), 4 nodes, node-3 leaves by $HOW"
for round in $(seq "$ROUNDS"); do
  for build in old new; do
    bin=$OLD; [ "$build" = new ] && bin=$NEW
    for i in 0 1 2 3; do start_member "$bin" "$BASE" 4 "$i"; done
    until "$STRATA" -e "$E" bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1; do sleep 0.2; done
    sleep 2
    "$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes "$VALUE" --random-values \
      --ops 1 --threads 32 >/dev/null 2>&1
    settle "${PIDS[@]}" >/dev/null
    ycsb_b_at_rate "$E" "$RECORDS" "$VALUE" "$RATE" 20 >"$ROOT/before" 2>&1
    ycsb_b_at_rate "$E" "$RECORDS" "$VALUE" "$RATE" 30 >"$ROOT/during" 2>&1 &
    load=$!
    started=$SECONDS
    if [ "$HOW" = decommission ]; then
      "$STRATA" -e "$E" decommission --node node-3 2>&1 | tail -1 >"$ROOT/change"
    else
      kill -9 "${PIDS[3]}"
      wait "${PIDS[3]}" 2>/dev/null || true
      # Retried until the others see node-3 down; follows the removal.
      remove_member "$E" node-3 >"$ROOT/change"
    fi
    took=$((SECONDS - started))
    wait "$load" || true
    ingested=$(curl -s "127.0.0.1:$((BASE + 2000))/metrics" | awk '$1 == "strata_engine_ingested_bytes" {print $2}')
    echo "round $round $build: $took s; node-0 ingested ${ingested:-0} bytes"
    echo "  $(cat "$ROOT/change")"
    echo "  before: $(latencies "$ROOT/before")"
    echo "  during: $(latencies "$ROOT/during")"
    stop_members
  done
done
