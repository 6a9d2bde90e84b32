#!/usr/bin/env bash
# Offline checks of the Helm chart, the example manifests and the RBAC
# (scripts/k8s_checks.py). Needs python3; installs its tools with
# scripts/tools.sh. Run after `cargo build --bins` (it asks the built
# strata-operator for its RBAC rules).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(./scripts/tools.sh)
exec "$TOOLS/venv/bin/python" scripts/k8s_checks.py target/debug/strata-operator
