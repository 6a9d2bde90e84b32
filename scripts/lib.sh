# Sourced by the benchmark scripts: `scratch NAME` makes a temporary
# directory ($ROOT) and an empty list of started processes ($PIDS); on exit,
# however the script ends, the processes are killed and the directory is
# removed.

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
