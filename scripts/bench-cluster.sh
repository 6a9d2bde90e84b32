#!/usr/bin/env bash
# Cluster benchmark for docs/benchmarks.md: `strata bench` (workloads A and
# B, and ping) against `strata dev --nodes 1` (N=1) and `strata dev --nodes
# 3` (N=3, W=2, R=2), one after the other on this machine.
#
#   ./scripts/bench-cluster.sh [records] [ops] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-20000}
OPS=${2:-40000}
THREADS=${3:-32}

cargo build --release -q -p strata-cli --bin strata
STRATA=target/release/strata
DEV_PID=

stop_dev() {
  if [[ -n "$DEV_PID" ]]; then
    kill -INT "$DEV_PID" 2>/dev/null || true
    wait "$DEV_PID" 2>/dev/null || true
    DEV_PID=
  fi
}
trap stop_dev EXIT

run_cluster() {
  local nodes=$1 port=$2
  "$STRATA" dev --nodes "$nodes" --base-port "$port" >"/tmp/strata-bench-dev-$nodes.log" 2>&1 &
  DEV_PID=$!
  for _ in $(seq 100); do
    grep -q "Ctrl-C stops" "/tmp/strata-bench-dev-$nodes.log" 2>/dev/null && break
    sleep 0.2
  done
  echo "## $nodes node(s): $(head -1 "/tmp/strata-bench-dev-$nodes.log")"
  local e="127.0.0.1:$port"
  "$STRATA" -e "$e" bench --workload ping --ops $((OPS * 2)) --threads "$THREADS"
  "$STRATA" -e "$e" bench --workload a --records "$RECORDS" --ops "$OPS" --threads "$THREADS"
  "$STRATA" -e "$e" bench --workload b --records "$RECORDS" --ops "$OPS" --threads "$THREADS" --skip-load
  stop_dev
}

run_cluster 1 7600
run_cluster 3 7700
