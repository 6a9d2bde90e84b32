//! Prints the `KVCluster` CRD as YAML: `cargo run -p strata-operator --bin crdgen > crds/kvcluster.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", strata_operator::crd_yaml()?);
    Ok(())
}
