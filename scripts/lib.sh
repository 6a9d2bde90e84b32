# Sourced by the benchmark scripts: `scratch NAME` makes a temporary
# directory ($ROOT) and an empty list of started processes ($PIDS); on exit,
# however the script ends, the processes are killed and the directory is
# removed. `settle PID...` waits for nodes to go idle. `start_dev BINARY
# NODES PORT` starts a `strata dev` cluster in $ROOT and waits until it
# serves.

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$ROOT"
}

scratch() {
  ROOT=$(mktemp -d "${TMPDIR:-/tmp}/strata-$1.XXXXXX")
  PIDS=()
  trap cleanup EXIT
}

# Waits until the processes PID... are idle (together under 5% of a core
# for 3 s in a row: a load's or the last change's flushes and compactions
# are done), at most 300 s, and says how long it took.
settle() {
  local waited=0 idle=0 last now stats=()
  for pid in "$@"; do stats+=("/proc/$pid/stat"); done
  cpu() { awk '{s += $14 + $15} END {print s}' "${stats[@]}"; }
  last=$(cpu)
  while [ "$idle" -lt 3 ] && [ "$waited" -lt 300 ]; do
    sleep 1; waited=$((waited + 1))
    now=$(cpu)
    if [ $((now - last)) -lt 5 ]; then idle=$((idle + 1)); else idle=0; fi
    last=$now
  done
  echo "(nodes idle after ${waited} s)"
}

# Starts `BINARY dev --nodes NODES --base-port PORT` with its data in
# $ROOT/data and its log in $ROOT/dev.log, adds it to $PIDS, sets $DEV to
# its PID and waits until it serves (at most 20 s).
start_dev() {
  "$1" dev --nodes "$2" --base-port "$3" --data-dir "$ROOT/data" >"$ROOT/dev.log" 2>&1 &
  DEV=$!
  PIDS+=("$DEV")
  for _ in $(seq 100); do
    grep -q "Ctrl-C stops" "$ROOT/dev.log" 2>/dev/null && break
    sleep 0.2
  done
}
