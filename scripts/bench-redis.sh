#!/usr/bin/env bash
# One Strata node against Redis with the same durability promise, side by
# side in one run (docs/benchmarks.md, "Against Redis").
#
#   ./scripts/bench-redis.sh [ops] [rounds] [in-flight] [value-bytes] [client-threads]
#
# Both servers run on this machine and write to the same disk (a temporary
# directory under $TMPDIR): Redis 7 with `appendonly yes` and
# `appendfsync always` (an acknowledged SET is fsynced, group-committed
# across clients, as Strata's default `SyncEachGroup` does), one Strata
# `strata-node` with N=1. Rounds alternate between the two so that the
# machine's drift hits both alike. Each round measures:
#   strata ping   (Ping on the client's session stream: the node's RPC ceiling)
#   strata put    (`strata bench` load phase: blind Puts of fresh keys)
#   unary ping, unary put  (the same with `--no-sessions`: a gRPC call each)
#   redis set     (`redis-benchmark -t set`, random keys, same value size)
#   redis ping    (`redis-benchmark -t ping_mbulk`)
# with the same number of requests in flight: `strata bench --threads` is
# concurrent workers on `--client-threads` runtime threads, and
# redis-benchmark's `-c` is connections, one request each in flight.
# `redis-server` (Debian package) is installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
OPS=${1:-200000}
ROUNDS=${2:-3}
INFLIGHT=${3:-32}
VALUE=${4:-100}
CLIENT_THREADS=${5:-1}

if ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-server (Debian package)..." >&2
  SUDO=; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

cargo build --release -q -p strata-cli --bin strata -p strata-node --bin strata-node
STRATA=target/release/strata
NODE=target/release/strata-node
. scripts/lib.sh
scratch bench-redis

SPORT=7650
RPORT=7651
# Fresh servers every round: Strata's blind Puts of keys a previous round
# wrote would add siblings, and both should start from an empty disk.
start_strata() {
  rm -rf "$ROOT/strata"
  "$NODE" --node-id bench-0 --data-dir "$ROOT/strata" --listen "127.0.0.1:$SPORT" \
    --metrics-listen 127.0.0.1:0 --replication-factor 1 >"$ROOT/strata.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 100); do
    "$STRATA" -e "127.0.0.1:$SPORT" bench --workload ping --ops 1 --threads 1 >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "strata-node did not start: $(tail -3 "$ROOT/strata.log")" >&2
  exit 1
}
start_redis() {
  rm -rf "$ROOT/redis" && mkdir -p "$ROOT/redis"
  redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$ROOT/redis" --save '' \
    --appendonly yes --appendfsync always --daemonize no >"$ROOT/redis.log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "redis-server did not start: $(tail -3 "$ROOT/redis.log")" >&2
  exit 1
}
stop_server() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
}

echo "# $(date -u +%FT%TZ), $(nproc) cores, ops=$OPS in-flight=$INFLIGHT value=${VALUE}B client-threads=$CLIENT_THREADS"
echo "# redis: $(redis-server --version | cut -d' ' -f3), appendonly yes, appendfsync always"
printf '%-6s %-12s %10s %8s %8s %s\n' round bench ops/s p50_ms p99_ms client_cpu
ROWS="$ROOT/rows"
bench_strata() {
  local round=$1 name=$2; shift 2
  local out
  # shellcheck disable=SC2086 # $FLAGS is empty or one flag
  out=$("$STRATA" -e "127.0.0.1:$SPORT" $FLAGS bench "$@" --threads "$INFLIGHT" \
    --client-threads "$CLIENT_THREADS" --value-bytes "$VALUE" --json)
  python3 - "$round" "$name" "$out" <<'EOF' | tee -a "$ROWS"
import json, sys
round_, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in out.splitlines() if l.strip()]
errors = [r for r in rows if "error" in r]
if errors:
    sys.exit(f"strata bench errors: {errors}")
ops = [r for r in rows if "ops_per_sec" in r and r["op"] in ("insert", "ping")][0]
cpu = [r for r in rows if "client_cpu_cores" in r and r["phase"] == ops["phase"]]
print(f"{round_:<6} {name:<12} {ops['ops_per_sec']:>10.0f} {ops['p50_us']/1000:>8.2f} "
      f"{ops['p99_us']/1000:>8.2f} {cpu[0]['client_cpu_cores'] if cpu else '-'}")
EOF
}
bench_redis() {
  local round=$1 name=$2 test=$3
  local out
  out=$(redis-benchmark -p "$RPORT" -t "$test" -n "$OPS" -c "$INFLIGHT" -d "$VALUE" \
    -r 100000000 --csv 2>/dev/null)
  python3 - "$round" "$name" "$out" <<'EOF' | tee -a "$ROWS"
import csv, io, sys
round_, name, out = sys.argv[1], sys.argv[2], sys.argv[3]
rows = list(csv.DictReader(io.StringIO(out)))
r = rows[-1]
print(f"{round_:<6} {name:<12} {float(r['rps']):>10.0f} {float(r['p50_latency_ms']):>8.2f} "
      f"{float(r['p99_latency_ms']):>8.2f} -")
EOF
}
for round in $(seq "$ROUNDS"); do
  for FLAGS in "" --no-sessions; do
    path=strata; [[ -n "$FLAGS" ]] && path=unary
    start_strata
    bench_strata "$round" "$path ping" --workload ping --ops "$OPS"
    bench_strata "$round" "$path put" --workload a --records "$OPS" --ops 0
    stop_server
  done
  start_redis
  bench_redis "$round" "redis set" set
  bench_redis "$round" "redis ping" ping_mbulk
  stop_server
done
# Per round: Strata's Put against Redis' SET and against its own ping.
python3 - "$ROWS" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], {})[f"{f[1]} {f[2]}"] = float(f[3])
print(f"{'round':<6} {'put/set':>8} {'put/ping':>9} {'unary put/set':>14} {'unary put/ping':>15}")
for r, b in rows.items():
    print(f"{r:<6} {b['strata put']/b['redis set']:>8.2f} {b['strata put']/b['strata ping']:>9.2f} "
          f"{b['unary put']/b['redis set']:>14.2f} {b['unary put']/b['unary ping']:>15.2f}")
EOF
