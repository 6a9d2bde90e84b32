//! Writes the starting corpora of `engine_files` (one input per file of its
//! seed database) and `rpc` (a valid request for each call) under
//! `corpus/`: `cargo +nightly run --bin seeds`.

use std::path::Path;

use strata_proto::v1::{
    GetRequest, MerkleNodesRequest, PutRequest, ReplicaReadRequest, SessionRequest,
    StreamRangeRequest, TokenRange, session_request,
};

fn write(target: &str, inputs: &[Vec<u8>]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("create corpus directory");
    for (i, input) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), input).expect("write seed");
    }
    println!("{} seeds in {}", inputs.len(), dir.display());
}

fn call(which: u8, message: &impl prost::Message) -> Vec<u8> {
    [vec![which], message.encode_to_vec()].concat()
}

fn main() {
    write("engine_files", &strata_fuzz::engine::seed_inputs());
    let put = PutRequest {
        key: "key".into(),
        value: "value".into(),
        request_id: 7,
        ..PutRequest::default()
    };
    let get = GetRequest {
        key: "key".into(),
        consistency: None,
    };
    let range = Some(TokenRange {
        start: 5,
        end: 1 << 62,
    });
    let session: Vec<u8> = [
        SessionRequest {
            id: 1,
            op: Some(session_request::Op::Put(put.clone())),
        },
        SessionRequest {
            id: 2,
            op: Some(session_request::Op::Get(get.clone())),
        },
    ]
    .iter()
    .flat_map(prost::Message::encode_length_delimited_to_vec)
    .collect();
    write(
        "rpc",
        &[
            call(0, &get),
            call(1, &put),
            [vec![5], session].concat(),
            call(7, &ReplicaReadRequest { key: "key".into() }),
            call(
                9,
                &MerkleNodesRequest {
                    range,
                    depth: 4,
                    positions: vec![0, 1, 2],
                },
            ),
            call(
                10,
                &StreamRangeRequest {
                    range,
                    start_after: Default::default(),
                    max_batch_bytes: 4096,
                    stored_form: true,
                },
            ),
        ],
    );
}
