"""Offline checks of everything Kubernetes users install (run by
scripts/check-k8s.sh with the tools scripts/tools.sh installs):

- `helm lint` and `helm template` of charts/strata with default values, with
  every optional feature on, and namespace-scoped;
- every rendered manifest and every file in examples/ validated against
  Kubernetes' OpenAPI schemas (kubernetes-validate, strict), and every
  KVCluster against the CRD's own schema (check-jsonschema);
- every pod template meets the restricted Pod Security Standard;
- the chart's ClusterRole grants exactly `strata-operator --print-rbac`.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, ".cache", "tools")
HELM = os.path.join(TOOLS, "bin", "helm")
VENV_BIN = os.path.join(TOOLS, "venv", "bin")
CHART = os.path.join(ROOT, "charts", "strata")
KUBERNETES_VERSION = "1.37.0"

VARIANTS = {
    "default": [],
    "everything-on": [
        "--set", "cluster.create=true",
        "--set", "networkPolicy.enabled=true",
        "--set-json", 'networkPolicy.clientsFrom=[{"podSelector":{"matchLabels":{"role":"app"}}}]',
        "--set-json", 'networkPolicy.metricsFrom=[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"monitoring"}}}]',
        "--set", "cluster.storage.storageClassName=fast",
        "--set-json", 'cluster.resources={"requests":{"cpu":"1","memory":"1Gi"}}',
        "--set-json", 'imagePullSecrets=[{"name":"regcred"}]',
        "--set", "operator.nodeTokenSecret.name=strata-operator-token",
        "--set", "operator.nodeCaSecret.name=kv-tls",
    ],
    "namespaced": [
        "--set", "operator.watchNamespace=storage",
        "--set", "cluster.create=true",
        "--set", "networkPolicy.enabled=true",
    ],
}

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL: {message}")


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def crd_schema(directory):
    crd = yaml.safe_load(open(os.path.join(ROOT, "crds", "kvcluster.yaml")))
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    path = os.path.join(directory, "kvcluster.schema.json")
    json.dump(schema, open(path, "w"))
    return path


def validate(doc, label, directory, schema):
    problem = invalid(doc, label, directory, schema)
    if problem:
        fail(problem)


def invalid(doc, label, directory, schema):
    """Why `doc` does not validate, or None."""
    path = os.path.join(directory, "object.yaml")
    yaml.safe_dump(doc, open(path, "w"))
    if doc.get("kind") == "KVCluster":
        result = run([os.path.join(VENV_BIN, "check-jsonschema"), "--schemafile", schema, path])
    else:
        result = run([
            os.path.join(VENV_BIN, "kubernetes-validate"), "--strict", "--quiet",
            "-k", KUBERNETES_VERSION, path,
        ])
    if result.returncode != 0:
        return (f"{label}: {doc.get('kind')} {doc['metadata'].get('name')} is invalid:\n"
                f"{result.stdout}{result.stderr}")
    return None


def pod_specs(doc):
    spec = doc.get("spec", {})
    if doc.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        yield spec["template"]["spec"]
    if doc.get("kind") == "Pod":
        yield spec


def check_restricted(doc, label):
    for pod in pod_specs(doc):
        security = pod.get("securityContext", {})
        name = f"{label}: {doc['kind']} {doc['metadata']['name']}"
        if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(f"{name}: no RuntimeDefault seccomp profile")
        for container in pod["containers"]:
            c = container.get("securityContext", {})
            if c.get("allowPrivilegeEscalation") is not False:
                fail(f"{name}/{container['name']}: privilege escalation allowed")
            if c.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(f"{name}/{container['name']}: capabilities not dropped")
            if not (c.get("runAsNonRoot") or security.get("runAsNonRoot")):
                fail(f"{name}/{container['name']}: may run as root")
            if c.get("readOnlyRootFilesystem") is not True:
                fail(f"{name}/{container['name']}: writable root filesystem")


def normalize(rules):
    return sorted(
        (tuple(r.get("apiGroups", [])), tuple(sorted(r.get("resources", []))), tuple(sorted(r["verbs"])))
        for r in rules
    )


def main():
    operator = sys.argv[1]
    with tempfile.TemporaryDirectory() as directory:
        schema = crd_schema(directory)
        rendered = {}
        for variant, flags in VARIANTS.items():
            lint = run([HELM, "lint", "--strict", CHART] + flags)
            if lint.returncode != 0:
                fail(f"helm lint ({variant}):\n{lint.stdout}{lint.stderr}")
            template = run([HELM, "template", "strata", CHART, "--namespace", "strata-system"] + flags)
            if template.returncode != 0:
                fail(f"helm template ({variant}):\n{template.stderr}")
                continue
            docs = [d for d in yaml.safe_load_all(template.stdout) if d]
            rendered[variant] = docs
            print(f"helm template ({variant}): {len(docs)} objects: "
                  + ", ".join(sorted({d['kind'] for d in docs})))
            for doc in docs:
                validate(doc, f"chart ({variant})", directory, schema)
                check_restricted(doc, f"chart ({variant})")
        examples = sorted(glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True))
        for path in examples:
            for doc in yaml.safe_load_all(open(path)):
                if doc:
                    label = os.path.relpath(path, ROOT)
                    validate(doc, label, directory, schema)
                    check_restricted(doc, label)
        print(f"examples: {len(examples)} files validated")
        # RBAC: the chart grants what the operator says it needs.
        wanted = yaml.safe_load(run([operator, "--print-rbac"], check=True).stdout)["rules"]
        for variant, docs in rendered.items():
            for doc in docs:
                if doc["kind"] in ("ClusterRole", "Role") and normalize(doc["rules"]) != normalize(wanted):
                    fail(f"chart ({variant}): {doc['kind']} rules differ from "
                         f"`strata-operator --print-rbac`:\n{doc['rules']}\nvs\n{wanted}")
        # A broken manifest must be caught (the validators are live).
        broken = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "broken"}, "spec": {"replicas": "three"}}
        bad_cluster = {"apiVersion": "strata.dev/v1alpha1", "kind": "KVCluster",
                       "metadata": {"name": "bad"}, "spec": {"replicas": "many"}}
        for doc in (broken, bad_cluster):
            if invalid(doc, "self-test", directory, schema) is None:
                fail(f"the validators accepted a broken {doc['kind']}")
        print("self-test: broken manifests are rejected")
    if failures:
        print(f"{len(failures)} problem(s)")
        return 1
    print("Kubernetes manifests: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
