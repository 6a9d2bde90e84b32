//! The Dockerfile, the Helm chart, the examples and the operator agree:
//! one source of truth for ports, the non-root user, binary names and
//! paths, versions, and the CRD. (The chart's rendering, schemas and RBAC
//! are checked by scripts/check-k8s.sh; the image build by
//! scripts/check-image.sh.)

use std::path::PathBuf;

use strata_operator::objects::{
    GRPC_PORT, INTERNAL_PORT, METRICS_PORT, RUN_AS_USER, config_map, statefulset,
};
use strata_operator::{KVCluster, KVClusterSpec};

fn repo(path: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Logical lines of the Dockerfile's `instruction`s (continuations joined).
fn dockerfile(instruction: &str) -> Vec<String> {
    repo("Dockerfile")
        .replace("\\\n", " ")
        .lines()
        .filter_map(|l| {
            l.strip_prefix(&format!("{instruction} "))
                .map(str::to_owned)
        })
        .collect()
}

/// Where the runtime stage puts each binary.
fn image_binaries() -> Vec<String> {
    dockerfile("COPY")
        .iter()
        .filter(|c| c.contains("/target/release/"))
        .filter_map(|c| c.split_whitespace().last().map(str::to_owned))
        .collect()
}

fn node_statefulset() -> k8s_openapi::api::apps::v1::StatefulSet {
    let spec: KVClusterSpec =
        serde_json::from_value(serde_json::json!({ "image": "strata:test" })).expect("spec");
    let cluster = KVCluster::new("kv", spec);
    statefulset(
        &cluster,
        3,
        &strata_operator::objects::config_map(&cluster, 3),
    )
}

#[test]
fn ports_are_the_same_in_the_operator_the_chart_and_the_image() {
    let values = yaml("charts/strata/values.yaml");
    assert_eq!(
        values["nodePorts"]["grpc"].as_i64(),
        Some(i64::from(GRPC_PORT))
    );
    assert_eq!(
        values["nodePorts"]["metrics"].as_i64(),
        Some(i64::from(METRICS_PORT))
    );
    assert_eq!(
        values["nodePorts"]["internal"].as_i64(),
        Some(i64::from(INTERNAL_PORT))
    );
    let schema: serde_json::Value =
        serde_json::from_str(&repo("charts/strata/values.schema.json")).expect("schema");
    let ports = &schema["properties"]["nodePorts"]["properties"];
    assert_eq!(ports["grpc"]["const"], GRPC_PORT);
    assert_eq!(ports["metrics"]["const"], METRICS_PORT);
    assert_eq!(ports["internal"]["const"], INTERNAL_PORT);
    let exposed: Vec<String> = dockerfile("EXPOSE")
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(exposed.len(), 4, "exactly these ports: {exposed:?}");
    for port in [
        format!("{GRPC_PORT}/tcp"),
        format!("{INTERNAL_PORT}/tcp"),
        format!("{INTERNAL_PORT}/udp"),
        format!("{METRICS_PORT}/tcp"),
    ] {
        assert!(
            exposed.contains(&port),
            "Dockerfile does not EXPOSE {port}: {exposed:?}"
        );
    }
    let sts = node_statefulset();
    let container = &sts
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0];
    let declared: Vec<i32> = container
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(
        declared,
        [GRPC_PORT, INTERNAL_PORT, INTERNAL_PORT, METRICS_PORT]
    );
    // Gossip is UDP on the internal port: the node's default for gossip
    // when it has an internal listener, and where the seeds point.
    let spec: KVClusterSpec =
        serde_json::from_value(serde_json::json!({ "image": "s" })).expect("spec");
    let config = config_map(&KVCluster::new("kv", spec), 3)
        .data
        .expect("data");
    assert_eq!(
        config["STRATA_INTERNAL_LISTEN"],
        format!("0.0.0.0:{INTERNAL_PORT}")
    );
    assert!(
        config["STRATA_SEEDS"]
            .split(',')
            .all(|s| s.ends_with(&format!(":{INTERNAL_PORT}")))
    );
}

#[test]
fn every_binary_a_manifest_runs_is_in_the_image_and_built_by_the_workspace() {
    let binaries = image_binaries();
    assert_eq!(
        binaries,
        [
            "/usr/local/bin/strata-node",
            "/usr/local/bin/strata-operator",
            "/usr/local/bin/strata",
            "/usr/local/bin/strata-example-client"
        ]
    );
    for binary in &binaries {
        let name = binary.rsplit('/').next().expect("name");
        // Panics with a clear message when the workspace builds no such binary.
        let _ = strata_tests::workspace_binary(name);
    }
    let sts = node_statefulset();
    let container = &sts
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod")
        .containers[0];
    let node = container.command.as_ref().expect("command")[0].clone();
    assert!(binaries.contains(&node), "the StatefulSet runs {node}");
    assert_eq!(
        dockerfile("ENTRYPOINT"),
        [format!("[\"{node}\"]")],
        "the image's entrypoint is the node"
    );
    let deployment = repo("charts/strata/templates/deployment.yaml");
    assert!(
        deployment.contains(r#"command: ["/usr/local/bin/strata-operator"]"#),
        "the chart runs the operator binary the image has"
    );
    let job = yaml("examples/client/job.yaml");
    let command = job["spec"]["template"]["spec"]["containers"][0]["command"][0]
        .as_str()
        .expect("job command")
        .to_owned();
    assert!(
        binaries.contains(&command),
        "the example Job runs {command}"
    );
}

#[test]
fn the_image_the_chart_and_the_examples_run_as_the_same_non_root_user() {
    assert_eq!(
        dockerfile("USER"),
        [format!("{RUN_AS_USER}:{RUN_AS_USER}")],
        "numeric, non-root"
    );
    let deployment = repo("charts/strata/templates/deployment.yaml");
    assert!(deployment.contains(&format!("runAsUser: {RUN_AS_USER}")));
    let job = yaml("examples/client/job.yaml");
    assert_eq!(
        job["spec"]["template"]["spec"]["securityContext"]["runAsUser"].as_i64(),
        Some(RUN_AS_USER)
    );
}

#[test]
fn versions_follow_the_workspace() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = yaml("charts/strata/Chart.yaml");
    assert_eq!(chart["version"].as_str(), Some(version));
    assert_eq!(chart["appVersion"].as_str(), Some(version));
    assert!(
        dockerfile("ARG").contains(&format!("VERSION={version}")),
        "Dockerfile's VERSION label"
    );
    for example in [
        "examples/kvcluster-minimal.yaml",
        "examples/kvcluster-production.yaml",
    ] {
        let image = yaml(example)["spec"]["image"]
            .as_str()
            .expect("image")
            .to_owned();
        assert!(
            image.ends_with(&format!(":{version}")),
            "{example}: {image}"
        );
    }
}

#[test]
fn the_charts_crd_is_the_generated_one_byte_for_byte() {
    assert!(
        repo("charts/strata/crds/kvcluster.yaml") == repo("crds/kvcluster.yaml"),
        "charts/strata/crds/kvcluster.yaml differs from crds/kvcluster.yaml: copy it"
    );
}

#[test]
fn the_minimal_example_is_ten_lines_at_most() {
    let text = repo("examples/kvcluster-minimal.yaml");
    assert!(text.lines().count() <= 10, "{} lines", text.lines().count());
}
