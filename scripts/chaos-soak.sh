#!/usr/bin/env bash
# A fault soak with real node processes: 5 nodes (N=3, QUORUM), RECORDS
# records of 512 random bytes, then SECONDS of YCSB A at 2,000 ops/s while
# a seeded random schedule SIGKILLs and restarts one node, SIGKILLs two at
# once, or SIGSTOPs one for 2-11 s, every 4-11 s. Afterwards: hints
# drained, every loaded record read at ALL, and at ONE through each node
# alone (`--direct`); no panic and no ERROR line in any node's log.
# Exits non-zero when a check fails (docs/failures.md, "A chaos soak").
#
#   ./scripts/chaos-soak.sh [RECORDS] [SECONDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-100000}
SECONDS_=${2:-480}
RANDOM=${3:-7}
cargo build --release -q -p strata-cli --bin strata -p strata-node --bin strata-node
B=target/release
STRATA=$B/strata
. scripts/lib.sh
ROOT=$(mktemp -d "${TMPDIR:-/tmp}/strata-chaos.XXXXXX")
declare -A PID
cleanup() {
  for p in "${PID[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$ROOT"
}
trap cleanup EXIT
start() {
  local i=$1
  "$B/strata-node" --node-id "n$i" --data-dir "$ROOT/d$i" --listen "127.0.0.1:$((7600 + i))" \
    --internal-listen "127.0.0.1:$((7620 + i))" --gossip-listen "127.0.0.1:$((7640 + i))" \
    --metrics-listen "127.0.0.1:$((7660 + i))" --seeds 127.0.0.1:7641,127.0.0.1:7642 \
    --initial-cluster n1,n2,n3,n4,n5 --memtable-bytes 4194304 >>"$ROOT/n$i.log" 2>&1 &
  PID[$i]=$!
}
for i in 1 2 3 4 5; do start "$i"; done
E=127.0.0.1:7601,127.0.0.1:7602,127.0.0.1:7603,127.0.0.1:7604,127.0.0.1:7605
for _ in $(seq 150); do
  [[ $("$B/strata" -e "$E" ring 2>/dev/null | grep normal | grep -c true) == 5 ]] && break
  sleep 0.2
done
echo "$(date +%T) load $RECORDS records"
"$B/strata" -e "$E" bench --workload c --records "$RECORDS" --ops 0 --threads 32 \
  --value-bytes 512 --random-values | grep -E '^load|rror'
"$B/strata" -e "$E" bench --workload a --records "$RECORDS" --duration "$SECONDS_" --threads 16 \
  --skip-load --value-bytes 512 --rate 2000 >"$ROOT/load.out" 2>&1 &
LOAD=$!
end=$(($(date +%s) + SECONDS_ - 20))
while [[ $(date +%s) -lt $end ]]; do
  i=$((RANDOM % 5 + 1))
  case $((RANDOM % 3)) in
    0)
      echo "$(date +%T) kill -9 n$i"
      kill -9 "${PID[$i]}"; wait "${PID[$i]}" 2>/dev/null || true
      sleep $((RANDOM % 10 + 2)); start "$i"; echo "$(date +%T) n$i restarted" ;;
    1)
      echo "$(date +%T) SIGSTOP n$i"
      kill -STOP "${PID[$i]}"; sleep $((RANDOM % 10 + 2)); kill -CONT "${PID[$i]}"
      echo "$(date +%T) SIGCONT n$i" ;;
    2)
      j=$((i % 5 + 1))
      echo "$(date +%T) kill -9 n$i and n$j"
      kill -9 "${PID[$i]}" "${PID[$j]}"; wait "${PID[$i]}" "${PID[$j]}" 2>/dev/null || true
      sleep 5; start "$i"; start "$j"; echo "$(date +%T) n$i and n$j restarted" ;;
  esac
  sleep $((RANDOM % 8 + 4))
done
wait "$LOAD" || true
grep -E '^run|missing|rror' "$ROOT/load.out" || true
failed=0
deadline=$(($(date +%s) + 60))
while :; do
  pending=0
  for i in 1 2 3 4 5; do
    n=$(curl -s "127.0.0.1:$((7660 + i))/metrics" | awk '/^strata_hints_pending /{print $2}')
    pending=$((pending + ${n:-1}))
  done
  [[ $pending == 0 ]] && break
  [[ $(date +%s) -ge $deadline ]] && { echo "FAIL: $pending hints still pending"; failed=1; break; }
  sleep 1
done
for i in 1 2 3 4 5; do
  echo "n$i rss $(ps -o rss= -p "${PID[$i]}") KiB, $(ls "/proc/${PID[$i]}/fd" | wc -l) fds"
done
echo "$(date +%T) verify"
check_records "$E" "$RECORDS" $((RECORDS / 5)) 127.0.0.1:7601 127.0.0.1:7602 127.0.0.1:7603 \
  127.0.0.1:7604 127.0.0.1:7605 || failed=1
if grep -l -i panic "$ROOT"/n*.log; then echo "FAIL: a node panicked"; failed=1; fi
if grep -h ' ERROR ' "$ROOT"/n*.log | head -5 | grep .; then echo "FAIL: ERROR lines"; failed=1; fi
[[ $failed == 0 ]] && echo "chaos soak passed"
exit "$failed"
