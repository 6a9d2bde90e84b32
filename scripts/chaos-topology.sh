#!/usr/bin/env bash
# Topology changes under faults, with real node processes: 4 founders (N=3,
# QUORUM, streaming throttled to 2 MiB/s so that faults land mid-stream)
# load RECORDS records of 512 random bytes, then YCSB A runs at 1,000 ops/s
# while, in order (victims picked by SEED):
#   1. node-4 joins; a founder is SIGKILLed mid-join and restarted, then
#      the joiner itself is SIGKILLed and restarted (it resumes);
#   2. a founder X decommissions; another member is SIGSTOPped for 6 s
#      meanwhile, then X is SIGKILLed mid-way and restarted (it resumes);
#   3. node-5 joins while a member is SIGKILLed and restarted;
#   4. a member Z is SIGKILLed for good and removed through another member
#      R, meanwhile a third member is SIGKILLed and restarted, then R
#      itself (the removal resumes).
# Afterwards: hints drained, every loaded record read at ALL and at ONE
# through each member alone (`--direct`), every member `normal` in every
# member's ring, no panic and no ERROR line in any log. Exits non-zero
# when a check fails (docs/failures.md, "Topology changes under faults").
#
#   [LOGS=DIR] ./scripts/chaos-topology.sh [RECORDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-200000}
RANDOM=${2:-11}
cargo build --release -q -p strata-cli --bin strata -p strata-node --bin strata-node
STRATA=target/release/strata
NODE=target/release/strata-node
. scripts/lib.sh
scratch chaos-topology
# LOGS=DIR keeps the nodes' logs and the clients' outputs there.
if [[ -n ${LOGS:-} ]]; then
  mkdir -p "$LOGS"
  trap 'cp "$ROOT"/*.log "$ROOT"/*.out "$LOGS"/ 2>/dev/null || true; cleanup' EXIT
fi
BASE=7900
declare -A PID
MEMBERS=(0 1 2 3)
FLAGS=(--memtable-bytes 4194304 --stream-bytes-per-sec 2097152)

say() { echo "$(date +%T) $*"; }
start() { start_member "$NODE" "$BASE" 4 "$1" "${FLAGS[@]}"; PID[$1]=${PIDS[-1]}; }
crash() { kill -9 "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; }
endpoints() { local e=() i; for i in "${MEMBERS[@]}"; do e+=("127.0.0.1:$((BASE + i))"); done; (IFS=,; echo "${e[*]}"); }
# Takes NODE out of $MEMBERS.
drop() { # node
  local kept=() i
  for i in "${MEMBERS[@]}"; do [[ $i == "$1" ]] || kept+=("$i"); done
  MEMBERS=("${kept[@]}")
}
# Sets PICKED to a member other than those given, chosen by the seed (not
# in a subshell: $RANDOM is reseeded there).
pick() {
  local others=() i x
  for i in "${MEMBERS[@]}"; do
    for x in "$@"; do [[ $i == "$x" ]] && continue 2; done
    others+=("$i")
  done
  PICKED=${others[$((RANDOM % ${#others[@]}))]}
}
# NODE's state in the ring of the first member that answers ("" when it
# is not listed).
state() { # node
  "$STRATA" -e "$(endpoints)" ring 2>/dev/null | awk -v n="node-$1" '$1 == n {print $3}'
}
# Waits until NODE's operation KIND has streamed something, or NODE is in
# state DONE (the change finished: a restart forgets its operations), at
# most 60 s: the fault that follows lands mid-stream.
streaming() { # node, kind, done
  for _ in $(seq 300); do
    "$STRATA" -e "$(endpoints)" progress --node "node-$1" --once 2>/dev/null |
      grep -E "$2" | grep -qE '[1-9][0-9]* keys|succeeded' && return
    [[ -n ${3:-} && $(state "$1") =~ ^($3)$ ]] && return
    sleep 0.2
  done
}
# Fails at once when the decommission asked in the background was refused
# (its output, FILE), instead of waiting for a state it never takes (the
# removal's client retries refusals itself: lib.sh).
not_refused() { # file
  if grep -q "FailedPrecondition" "$1"; then echo "FAIL: refused: $(cat "$1")"; exit 1; fi
}
# Waits until NODE's state matches WANT (a regex; "" when not listed) in
# the ring of the first member that answers, at most 600 s.
until_state() { # node, want
  for _ in $(seq 1200); do
    [[ $(state "$1") =~ ^($2)$ ]] && { say "node-$1 is $(state "$1")"; return; }
    sleep 0.5
  done
  echo "FAIL: node-$1 is still $(state "$1")"; exit 1
}

for i in "${MEMBERS[@]}"; do start "$i"; done
until "$STRATA" -e "$(endpoints)" bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1; do sleep 0.2; done
sleep 2
say "load $RECORDS records"
"$STRATA" -e "$(endpoints)" bench --workload c --records "$RECORDS" --ops 0 --threads 32 \
  --value-bytes 512 --random-values | grep -E '^load +insert|rror'
"$STRATA" -e "$(endpoints),127.0.0.1:$((BASE + 4)),127.0.0.1:$((BASE + 5))" bench --workload a \
  --records "$RECORDS" --duration 100000 --threads 16 --skip-load --value-bytes 512 \
  --rate 1000 >"$ROOT/load.out" 2>&1 &
LOAD=$!
PIDS+=("$LOAD")

say "1. node-4 joins"
MEMBERS+=(4)
start 4
streaming 4 join normal
pick 4; v=$PICKED; say "kill -9 node-$v mid-join"; crash "$v"; sleep 3; start "$v"; say "node-$v restarted"
streaming 4 join normal
say "kill -9 node-4 (the joiner)"; crash 4; sleep 2; start 4; say "node-4 restarted"
until_state 4 normal

pick; x=$PICKED; say "2. node-$x decommissions"
"$STRATA" -e "127.0.0.1:$((BASE + x))" decommission >"$ROOT/decommission.out" 2>&1 &
DECOMMISSION=$!
PIDS+=("$DECOMMISSION")
streaming "$x" decommission "left|"
not_refused "$ROOT/decommission.out"
pick "$x"; y=$PICKED; say "SIGSTOP node-$y for 6 s"; kill -STOP "${PID[$y]}"; sleep 6; kill -CONT "${PID[$y]}"
streaming "$x" decommission "left|"
say "kill -9 node-$x (the leaver)"; crash "$x"; sleep 2; start "$x"; say "node-$x restarted"
until_state "$x" "left|"
wait "$DECOMMISSION" 2>/dev/null || true
kill "${PID[$x]}" 2>/dev/null || true; wait "${PID[$x]}" 2>/dev/null || true
drop "$x"

say "3. node-5 joins"
MEMBERS+=(5)
start 5
streaming 5 join normal
pick 5; v=$PICKED; say "kill -9 node-$v mid-join"; crash "$v"; sleep 4; start "$v"; say "node-$v restarted"
until_state 5 normal

pick; z=$PICKED; say "4. kill -9 node-$z for good; removed"
crash "$z"
drop "$z"
pick; r=$PICKED
remove_member "127.0.0.1:$((BASE + r))" "node-$z" >"$ROOT/remove.out" &
REMOVE=$!
PIDS+=("$REMOVE")
streaming "$r" remov
pick "$r"; w=$PICKED; say "kill -9 node-$w mid-removal"; crash "$w"; sleep 3; start "$w"; say "node-$w restarted"
streaming "$r" remov "left|"
if [[ $(state "$z") != left ]]; then
  say "kill -9 node-$r (running the removal)"; crash "$r"; sleep 2; start "$r"; say "node-$r restarted"
  # Its client lost the removal it followed and would retry in vain.
  kill "$REMOVE" 2>/dev/null || true
fi
wait "$REMOVE" || true
until_state "$z" "left|"

sleep 10
kill "$LOAD" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
grep -E '^run +[a-z]|^[Ee]rror' "$ROOT/load.out" || true
failed=0
deadline=$((SECONDS + 120))
while :; do
  pending=0
  for i in "${MEMBERS[@]}"; do
    n=$(curl -s "127.0.0.1:$((BASE + 2000 + i))/metrics" | awk '/^strata_hints_pending /{print $2}')
    pending=$((pending + ${n:-1}))
  done
  [[ $pending == 0 ]] && break
  [[ $SECONDS -ge $deadline ]] && { echo "FAIL: $pending hints still pending"; failed=1; break; }
  sleep 1
done
for i in "${MEMBERS[@]}"; do
  ring=$("$STRATA" -e "127.0.0.1:$((BASE + i))" --direct ring 2>&1)
  n=$(grep -c ' normal ' <<<"$ring" || true)
  if [[ $n != "${#MEMBERS[@]}" ]]; then echo "FAIL: node-$i's ring: $ring"; failed=1; fi
done
say "verify at ALL through $(endpoints), at ONE through each"
members=()
for i in "${MEMBERS[@]}"; do members+=("127.0.0.1:$((BASE + i))"); done
check_records "$(endpoints)" "$RECORDS" "$RECORDS" "${members[@]}" || failed=1
if grep -l -i panic "$ROOT"/node-*.log; then echo "FAIL: a node panicked"; failed=1; fi
if grep -h ' ERROR ' "$ROOT"/node-*.log | head -5 | grep .; then echo "FAIL: ERROR lines"; failed=1; fi
[[ $failed == 0 ]] && echo "chaos topology passed"
exit "$failed"
