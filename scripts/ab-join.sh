#!/usr/bin/env bash
# Side-by-side streaming capacity of two or more strata-node builds: per
# round and binary, a fresh 3-node cluster (N=3) is loaded with GIB
# gibibytes of random 4 KiB values per replica, left to settle, and a 4th
# node joins unthrottled; binaries alternate so that the machine's drift
# hits them alike (docs/benchmarks.md, "Joining a node").
#
#   ./scripts/ab-join.sh ROUNDS GIB NODE_BINARY...
#
# Prints the disk's sequential write bandwidth (dd, O_DIRECT) measured
# right before each join and the join's streaming rate. Build an older
# commit's binary with e.g.
#   git worktree add /tmp/old <commit> && CARGO_TARGET_DIR=/tmp/old-target \
#     cargo build --release --manifest-path /tmp/old/Cargo.toml -p strata-node
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: ab-join.sh ROUNDS GIB NODE_BINARY..."
ROUNDS=${1:?$usage}
GIB=${2:?$usage}
shift 2
[[ $# -ge 1 ]] || { echo "$usage" >&2; exit 2; }
VALUE=4096
RECORDS=$((GIB * 1024 * 1024 * 1024 / VALUE))
cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
. scripts/lib.sh
scratch ab-join
BASE=7800
E=127.0.0.1:$BASE



printf '%-6s %-40s %8s %12s %8s\n' round binary disk stream_MiB/s share
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    for i in 0 1 2; do start_member "$bin" "$BASE" 3 "$i"; done
    until "$STRATA" -e "$E" bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1; do sleep 0.2; done
    sleep 2
    "$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes "$VALUE" --random-values \
      --ops 1 --threads 32 >/dev/null 2>&1
    settle "${PIDS[@]:0:3}" >/dev/null
    disk=$(disk_mbs 2>/dev/null)
    start_member "$bin" "$BASE" 3 3 --stream-bytes-per-sec 0
    wait_change "$E" node-3 join
    rate=$("$STRATA" -e "$E" progress --node node-3 --once | grep join |
      awk '{for (i = 1; i <= NF; i++) if ($(i+1) == "MiB/s" && $(i+2) == "over") {v = $i; gsub(/[(]/, "", v); print v}}')
    printf '%-6s %-40s %8s %12s %7.1f%%\n' "$round" "$bin" "${disk}MB/s" "$rate" \
      "$(awk -v r="$rate" -v d="$disk" 'BEGIN { print 100 * r * 1.048576 / d }')"
    stop_members
  done
done
