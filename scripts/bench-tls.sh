#!/usr/bin/env bash
# The cost of TLS, for docs/benchmarks.md: `strata bench` workload A on 3
# nodes (N=3, W=2, R=2, an internal port each) without and with TLS
# (client port TLS, mutual TLS between nodes), alternating rounds so both
# see the same machine. Certificates are made here with openssl.
#
#   ./scripts/bench-tls.sh [records] [ops] [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=${1:-20000}
OPS=${2:-40000}
THREADS=${3:-32}
ROUNDS=${4:-2}

cargo build --release -q -p strata-node -p strata-cli
NODE=target/release/strata-node
STRATA=target/release/strata
. scripts/lib.sh
scratch bench-tls

# A CA and one certificate for the three nodes (SAN 127.0.0.1).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj "/CN=strata bench CA" -keyout "$ROOT/ca.key" -out "$ROOT/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node" \
  -keyout "$ROOT/node.key" -out "$ROOT/node.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$ROOT/ext"
openssl x509 -req -in "$ROOT/node.csr" -CA "$ROOT/ca.crt" -CAkey "$ROOT/ca.key" \
  -CAcreateserial -days 2 -extfile "$ROOT/ext" -out "$ROOT/node.crt" 2>/dev/null

run() { # label, base port, extra flags...
  local label=$1 base=$2; shift 2
  local seeds="127.0.0.1:$((base + 10)),127.0.0.1:$((base + 11)),127.0.0.1:$((base + 12))"
  PIDS=()
  for i in 0 1 2; do
    rm -rf "$ROOT/node-$i"
    "$NODE" --node-id "node-$i" --data-dir "$ROOT/node-$i" --listen "127.0.0.1:$((base + i))" \
      --internal-listen "127.0.0.1:$((base + 10 + i))" --metrics-listen "127.0.0.1:0" \
      --replication-factor 3 --initial-cluster node-0,node-1,node-2 --seeds "$seeds" \
      --gossip-interval-ms 200 "$@" >"$ROOT/node-$i.out" 2>"$ROOT/node-$i.log" &
    PIDS+=($!)
  done
  sleep 3
  echo "### $label"
  local client=()
  if [[ $# -gt 0 ]]; then client=(--ca "$ROOT/ca.crt"); fi
  "$STRATA" -e "127.0.0.1:$base" "${client[@]}" bench --workload a --records "$RECORDS" \
    --ops "$OPS" --threads "$THREADS"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

TLS=(--tls-cert "$ROOT/node.crt" --tls-key "$ROOT/node.key" --tls-ca "$ROOT/ca.crt")
for round in $(seq "$ROUNDS"); do
  run "round $round: plaintext" 7900
  run "round $round: TLS (mutual between nodes)" 7950 "${TLS[@]}"
done
