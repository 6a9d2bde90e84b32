#!/usr/bin/env bash
# Scale probe for docs/benchmarks.md: many small records in a 3-node
# cluster (N=3, separate node processes), then the operations whose cost
# grows with the data: a restart, a repair, a join and a decommission.
# Reports each one's wall time, the nodes' resident memory, and checks at
# the end that every sampled record is still found at ALL.
#
#   ./scripts/bench-scale.sh [records] [value_bytes]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-2000000}
VALUE=${2:-100}

cargo build --release -q -p strata-node -p strata-cli
NODE=target/release/strata-node
STRATA=target/release/strata
. scripts/lib.sh
scratch bench-scale

start_node() { # index
  local i=$1
  "$NODE" --node-id "node-$i" --data-dir "$ROOT/node-$i" --listen "127.0.0.1:$((7860 + i))" \
    --metrics-listen "127.0.0.1:$((9860 + i))" --replication-factor 3 \
    --initial-cluster node-0,node-1,node-2 --seeds 127.0.0.1:7860,127.0.0.1:7861,127.0.0.1:7862 \
    >>"$ROOT/node-$i.out" 2>>"$ROOT/node-$i.log" &
  PIDS[i]=$!
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }
rss() { # index...
  local i out=""
  for i in "$@"; do
    out+="node-$i $(awk '/VmRSS/ { printf "%d", $2 / 1024 }' "/proc/${PIDS[i]}/status") MiB  "
  done
  echo "resident memory: $out"
}
# Waits until node-$2 shows the operation of kind $1 finished, at most 900 s.
wait_done() { # kind, index, endpoint
  local line
  for _ in $(seq 900); do
    line=$("$STRATA" -e "$3" progress --node "node-$2" --once 2>/dev/null | grep "^$1" | head -1 || true)
    case "$line" in *succeeded*|*failed*) echo "$line"; return ;; esac
    sleep 1
  done
  echo "$1 of node-$2: not finished within 900 s"
}
# Waits until the node at endpoint $1 sees node-$2 alive.
wait_alive() { # endpoint, index
  until "$STRATA" -e "$1" ring 2>/dev/null | awk -v n="node-$2" '$1 == n && $NF == "true" { ok = 1 } END { exit !ok }'; do
    sleep 0.1
  done
}

E=127.0.0.1:7861
for i in 0 1 2; do start_node "$i"; done
sleep 3
echo "## load: $RECORDS records of $VALUE bytes at QUORUM, 32 in flight"
t=$(now)
"$STRATA" -e "$E" bench --workload c --records "$RECORDS" --value-bytes "$VALUE" --ops 1 --threads 32 \
  | grep -E '^load   insert'
echo "load: $(since "$t")"
settle "${PIDS[@]}"
rss 0 1 2
du -sh "$ROOT"/node-? | sed 's|'"$ROOT"'/||'

echo "## restart of node-2 (SIGTERM, start, until it serves and node-1 sees it)"
kill "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null || true
t=$(now); start_node 2
until "$STRATA" -e 127.0.0.1:7862 ping >/dev/null 2>&1; do sleep 0.05; done
echo "serving after $(since "$t")"
wait_alive "$E" 2
echo "alive at node-1 after $(since "$t")"
rss 2

echo "## repair of node-1's ranges"
t=$(now)
"$STRATA" -e "$E" repair | tail -1 || echo "(repair exited with $?)"
echo "repair: $(since "$t")"

echo "## join of node-3"
t=$(now); start_node 3
wait_done join 3 "$E"
echo "join: $(since "$t")"
settle "${PIDS[@]}"
rss 0 1 2 3

echo "## decommission of node-0"
t=$(now)
"$STRATA" -e "$E" decommission --node node-0 | tail -1 || echo "(decommission exited with $?)"
wait_done decommission 0 "$E" >/dev/null
echo "decommission: $(since "$t")"
settle "${PIDS[@]:1}"
rss 1 2 3

echo "## every sampled record found at ALL (100,000 uniform reads)"
"$STRATA" -e "$E" bench --workload c --records "$RECORDS" --skip-load --ops 100000 --threads 32 \
  --distribution uniform --consistency all | grep -E '^run    (read|missing|errors)'
"$STRATA" -e "$E" status | grep -E 'UP|DOWN'
if grep -qiE 'panicked|ERROR' "$ROOT"/node-*.log; then
  echo "## errors in the node logs:"; grep -hiE 'panicked|ERROR' "$ROOT"/node-*.log | head -20
fi
