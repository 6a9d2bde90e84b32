# Sourced by the benchmark scripts: `scratch NAME` makes a temporary
# directory ($ROOT) and an empty list of started processes ($PIDS); on exit,
# however the script ends, the processes are killed and the directory is
# removed. `settle PID...` waits for nodes to go idle. `start_dev BINARY
# NODES PORT` starts a `strata dev` cluster in $ROOT and waits until it
# serves. For topology-change benchmarks: `start_member` starts one node
# process and `stop_members` stops them all, `ycsb_b_at_rate` runs a
# fixed-rate foreground load and `latencies` reads its percentiles,
# `wait_change` waits for a join or a decommission to succeed,
# `remove_member` removes a killed node, and `disk_mbs` measures the
# disk's sequential write bandwidth. For the chaos scripts: `check_records`
# reads every loaded record back. Those that call the CLI use $STRATA.

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

# Starts BINARY as node-INDEX (N=3, 64 vnodes, 200 ms gossip) on
# 127.0.0.1:BASE+INDEX, metrics on BASE+2000+INDEX, data in
# $ROOT/node-INDEX, founders node-0 .. node-(FOUNDERS-1) (the first three
# are the seeds), with FLAGS added; adds it to $PIDS. Its output and log
# are appended to $ROOT/node-INDEX.out and .log (a restart keeps the past).
start_member() { # binary, base_port, founders, index, flags...
  local bin=$1 base=$2 founders=$3 i=$4 initial seeds
  shift 4
  initial=$(seq -s, -f "node-%g" 0 $((founders - 1)))
  seeds=$(seq -s, -f "127.0.0.1:%g" "$base" $((base + 2)))
  "$bin" --node-id "node-$i" --data-dir "$ROOT/node-$i" --listen "127.0.0.1:$((base + i))" \
    --metrics-listen "127.0.0.1:$((base + 2000 + i))" --replication-factor 3 --vnodes 64 \
    --initial-cluster "$initial" --seeds "$seeds" \
    --gossip-interval-ms 200 "$@" >>"$ROOT/node-$i.out" 2>>"$ROOT/node-$i.log" &
  PIDS+=($!)
}

# Stops every process in $PIDS, waits for them and deletes their data
# directories ($ROOT/node-*): the next round starts a fresh cluster.
stop_members() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  rm -rf "$ROOT"/node-*
}

# YCSB B through ENDPOINT at RATE operations a second (32 workers, evenly
# spaced) for SECONDS over RECORDS keys of VALUE random bytes, loaded
# before; the bench's output on stdout.
ycsb_b_at_rate() { # endpoint, records, value_bytes, rate, seconds
  "$STRATA" -e "$1" bench --workload b --records "$2" --value-bytes "$3" --random-values \
    --skip-load --rate "$4" --duration "$5" --threads 32
}

# "read P50 / P99   update P50 / P99" (us) of a bench's output in FILE.
latencies() { # file
  awk '$1 == "run" && ($2 == "read" || $2 == "update") {printf "%s %s / %s   ", $2, $5, $7}' "$1"
}

# Waits until NODE's last KIND operation (join, decommission) succeeded,
# asking through ENDPOINT.
wait_change() { # endpoint, node, kind
  until "$STRATA" -e "$1" progress --node "$2" --once 2>/dev/null | grep -q "$3.*succeeded"; do
    sleep 0.5
  done
}

# Removes NODE (already killed) through ENDPOINT, retried while the nodes
# are busy (a cleanup after a join, say); prints the CLI's last line.
remove_member() { # endpoint, node
  for _ in $(seq 60); do
    "$STRATA" -e "$1" removenode "$2" 2>/dev/null | tail -1 && return
    sleep 2
  done
  echo "removenode $2 kept failing" >&2
  return 1
}

# The disk's sequential write bandwidth in MB/s (dd, 1 GiB, O_DIRECT,
# fsync) in $ROOT; dd's own line on stderr.
disk_mbs() {
  local line
  line=$(dd if=/dev/zero of="$ROOT/dd" bs=1M count=1024 oflag=direct conv=fsync 2>&1 | tail -1)
  rm -f "$ROOT/dd"
  echo "$line" >&2
  # dd's last field pair is the rate, e.g. "2.9 GB/s" (decimal units).
  echo "$line" | awk '{r=$(NF-1); u=$NF; if (u=="GB/s") r*=1000; if (u=="kB/s") r/=1000; print r}'
}

# A bench's missing reads, failed requests or own failure (not its
# progress lines' "0 errors").
BENCH_FAILED='^[a-z]+ +(missing|errors) |^[Ee]rror'

# Reads every one of RECORDS loaded records at ALL through ENDPOINTS
# (prints the run's line), then PER of them at ONE through each MEMBER
# alone (`--direct`); prints a FAIL line per failed check and returns
# non-zero when one failed (the chaos scripts' last check).
check_records() { # endpoints, records, per, member...
  local endpoints=$1 records=$2 per=$3 out failed=0 m
  shift 3
  out=$("$STRATA" -e "$endpoints" bench --workload c --distribution uniform --records "$records" \
    --ops "$records" --threads 32 --skip-load --consistency all 2>&1)
  grep -E '^run +read' <<<"$out" || true
  if grep -qE "$BENCH_FAILED" <<<"$out"; then echo "FAIL at ALL: $out"; failed=1; fi
  for m in "$@"; do
    out=$("$STRATA" -e "$m" --direct bench --workload c --distribution uniform \
      --records "$records" --ops "$per" --threads 32 --skip-load --consistency one 2>&1)
    if grep -qE "$BENCH_FAILED" <<<"$out"; then echo "FAIL at ONE through $m: $out"; failed=1; fi
  done
  return "$failed"
}
