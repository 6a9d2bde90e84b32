#!/usr/bin/env bash
# What a rolling restart costs clients, for docs/benchmarks.md: three
# release `strata-node` processes (N=3, W=2, R=2) under a fixed-rate YCSB A
# load; after 10 s each node in turn gets SIGNAL (TERM: a graceful stop, as
# Kubernetes sends; KILL: a crash), stays down DOWN seconds, is started
# again, and the next goes once a peer sees it up and GAP seconds have
# passed. Prints the timeline (seconds since the load started) and the
# load's per-second progress and latency lines, then the largest p99 with
# and without a restart in its second, and the errors. Exits non-zero when
# an operation failed.
#
#   ./scripts/bench-rolling-restart.sh [rate] [signal] [down] [gap] [records]
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-2000}
SIGNAL=${2:-TERM}
DOWN=${3:-2}
GAP=${4:-15}
RECORDS=${5:-20000}

cargo build --release -q -p strata-node -p strata-cli
NODE=target/release/strata-node
STRATA=target/release/strata
. scripts/lib.sh
scratch bench-rolling-restart

declare -A NODE_PID
start_node() { # index
  local i=$1
  "$NODE" --node-id "node-$i" --data-dir "$ROOT/node-$i" --listen "127.0.0.1:$((7860 + i))" \
    --metrics-listen "127.0.0.1:$((9860 + i))" --replication-factor 3 \
    --initial-cluster node-0,node-1,node-2 --seeds 127.0.0.1:7860,127.0.0.1:7861 \
    >>"$ROOT/node-$i.log" 2>&1 &
  NODE_PID[$i]=$!
  PIDS+=($!)
}

E=127.0.0.1:7860,127.0.0.1:7861,127.0.0.1:7862
for i in 0 1 2; do start_node "$i"; done
for _ in $(seq 150); do
  [[ $("$STRATA" -e "$E" ring 2>/dev/null | grep normal | grep -c true) == 3 ]] && break
  sleep 0.2
done
echo "## loading $RECORDS records"
"$STRATA" -e "$E" bench --workload a --records "$RECORDS" --ops 0 --threads 32 | grep -E '^load|rror'
settle "${NODE_PID[@]}"

DURATION=$((10 + 3 * (DOWN + GAP + 2) + 10))
echo "## YCSB A at $RATE ops/s for $DURATION s; rolling restart with SIG$SIGNAL, $DOWN s down"
"$STRATA" -e "$E" bench --workload a --records "$RECORDS" --skip-load --rate "$RATE" \
  --duration "$DURATION" --threads 32 --status-interval 1 >"$ROOT/bench.out" 2>"$ROOT/bench.err" &
LOAD=$!
PIDS+=("$LOAD")
T0=$(date +%s.%N)
at() { echo "$(date +%s.%N) $T0" | awk '{printf "%.1f", $1 - $2}'; }
: >"$ROOT/events"
sleep 10
for i in 0 1 2; do
  echo "$(at) stop node-$i" | tee -a "$ROOT/events"
  kill -"$SIGNAL" "${NODE_PID[$i]}"
  wait "${NODE_PID[$i]}" 2>/dev/null || true
  sleep "$DOWN"
  echo "$(at) start node-$i" | tee -a "$ROOT/events"
  start_node "$i"
  peer=$(((i + 1) % 3))
  for _ in $(seq 300); do
    "$STRATA" -e "127.0.0.1:$((7860 + peer))" status 2>/dev/null | grep -q "^node-$i .* UP " && break
    sleep 0.1
  done
  echo "$(at) node-$i seen up by node-$peer" | tee -a "$ROOT/events"
  sleep "$GAP"
done
wait "$LOAD"
echo "## per second (progress, then latency)"
grep -E '^run ' "$ROOT/bench.err" || true
echo "## report"
cat "$ROOT/bench.out"
# Each second's p99, by what happened in it or the second before: a
# start, a stop, or neither.
grep 'latency over' "$ROOT/bench.err" | awk -v events="$ROOT/events" -v root="$ROOT" '
  BEGIN { while ((getline line < events) > 0) { split(line, f, " "); s = int(f[1])
            kind = (f[2] == "start") ? "start" : (f[2] == "stop") ? "stop" : ""
            if (kind != "") { ev[s + 1] = kind; ev[s + 2] = kind } } }
  { p99 = $0; sub(/.*p99 /, "", p99); sub(/ us.*/, "", p99); gsub(/,/, "", p99)
    print p99 > (root "/p99-" (($2 in ev) ? ev[$2] : "calm")) }'
for kind in calm stop start; do
  f="$ROOT/p99-$kind"
  [[ -s "$f" ]] || continue
  sort -n "$f" | awk -v kind="$kind" '{v[NR] = $1}
    END {printf "p99 of the seconds with %s: median %d us, largest %d us (%d s)\n",
      (kind == "calm") ? "neither stop nor start" : "a " kind, v[int((NR + 1) / 2)], v[NR], NR}'
done
errors=$(grep -E '^run ' "$ROOT/bench.err" | grep errors | tail -1 | sed -E 's/.* ([0-9,]+) errors$/\1/' | tr -d ,)
echo "errors: ${errors:-unknown}"
[[ "${errors:-1}" == 0 ]]
