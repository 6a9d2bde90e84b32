//! Generates the `strata.v1` code from `proto/` with protox, a pure-Rust
//! protobuf compiler, so no `protoc` is needed on the machine.

use std::path::PathBuf;

use prost::Message as _;

const FILES: [&str; 4] = [
    "strata/v1/common.proto",
    "strata/v1/kv.proto",
    "strata/v1/admin.proto",
    "strata/v1/replica.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(FILES, [&root])?;

    // The encoded descriptor set backs gRPC server reflection.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("strata_v1_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".strata.v1")
        .codec_path("crate::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
