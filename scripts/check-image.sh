#!/usr/bin/env bash
# The image, checked without a Docker engine (scripts/image_checks.py):
# hadolint, every COPY source, and the builder stage's release build run
# here with every binary the runtime stage copies produced.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(./scripts/tools.sh)
exec "$TOOLS/venv/bin/python" scripts/image_checks.py "$TOOLS/venv/bin/hadolint"
