#!/usr/bin/env bash
# Join benchmark for docs/benchmarks.md: a 4th node joins a 3-node cluster
# (N=3) holding GIB gibibytes, twice: with the default streaming throttle
# and unthrottled. Reports the streaming rate against the disk's sequential
# write bandwidth (measured in the same run with dd) and the foreground
# p50/p99 of a fixed-rate YCSB-B load before and during each join. Values
# are random bytes (`--random-values`), so the data on disk is as large as
# the values: compression does not shrink what is streamed.
#
#   ./scripts/bench-join.sh [gib] [value_bytes] [rate]
set -euo pipefail
cd "$(dirname "$0")/.."
GIB=${1:-2}
VALUE=${2:-4096}
RATE=${3:-1000}
RECORDS=$((GIB * 1024 * 1024 * 1024 / VALUE))

cargo build --release -q -p strata-node -p strata-cli
NODE=target/release/strata-node
STRATA=target/release/strata
. scripts/lib.sh
scratch bench-join

echo "## disk sequential write (dd, 1 GiB, O_DIRECT, fsync)"
DISK_MBS=$(disk_mbs)

BASE=7800
E=127.0.0.1:$BASE
for i in 0 1 2; do start_member "$NODE" "$BASE" 3 "$i"; done
sleep 3
echo "## loading $RECORDS records of $VALUE bytes ($GIB GiB per replica)"
"$STRATA" -e "$E" bench --workload b --records "$RECORDS" --value-bytes "$VALUE" --random-values --ops 1 --threads 32 | tail -3

latency() { # label, seconds
  echo "### foreground: $1"
  ycsb_b_at_rate "$E" "$RECORDS" "$VALUE" "$RATE" "$2" | grep -E "op|read|update" || true
}

# Prints the join's progress line and its streaming rate against the disk.
report() { # index
  local line
  line=$("$STRATA" -e "$E" progress --node "node-$1" --once | grep join)
  echo "$line"
  echo "$line" | awk -v disk="$DISK_MBS" '{for (i = 1; i <= NF; i++) if ($(i+1) == "MiB/s" && $(i+2) == "over") {
      v = $i; gsub(/[(]/, "", v); mbs = v * 1.048576; printf "streaming: %.1f MB/s = %.1f%% of the disk'"'"'s %.0f MB/s\n", mbs, 100 * mbs / disk, disk }}'
}

remove() { # index
  echo "## removing node-$1 again (stopped + removenode)"
  kill "${PIDS[$1]}"; sleep 5
  remove_member "$E" "node-$1"
}

# Streaming capacity: an unthrottled join into an idle cluster.
settle "${PIDS[@]:0:3}"
echo "## join of node-3 (unthrottled, no foreground load)"
start_member "$NODE" "$BASE" 3 3 --stream-bytes-per-sec 0
started=$SECONDS
wait_change "$E" node-3 join
echo "join took $((SECONDS - started)) s"
report 3
remove 3

join() { # index, label, extra flags...
  local i=$1 label=$2; shift 2
  settle "${PIDS[@]:0:3}"
  echo "## join of node-$i ($label)"
  latency "before the join" 20
  start_member "$NODE" "$BASE" 3 "$i" "$@"
  local started=$SECONDS
  latency "during the join" 30 &
  local bench=$!
  wait_change "$E" "node-$i" join
  wait "$bench" || true
  echo "join took $((SECONDS - started)) s"
  report "$i"
}

join 4 "default throttle, --stream-bytes-per-sec 33554432"
remove 4
join 5 "unthrottled, --stream-bytes-per-sec 0" --stream-bytes-per-sec 0
