//! Every RPC a client or a peer can call, with any protobuf the fuzzer
//! writes, against one node running in this process (N = 1, its own
//! temporary directory, loopback ports). The first byte picks the call;
//! the rest is its request message (streaming calls: length-delimited
//! messages). Any answer or status is fine; a panic anywhere in the node
//! (libFuzzer's panic hook aborts) or a call that does not finish within
//! 20 s is a finding.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use strata_node::config::NodeConfig;
use strata_node::run::RunningNode;
use strata_proto::v1::admin_client::AdminClient;
use strata_proto::v1::kv_client::KvClient;
use strata_proto::v1::replica_client::ReplicaClient;
use strata_proto::v1::*;
use tonic::transport::Channel;

struct Node {
    runtime: tokio::runtime::Runtime,
    channel: Channel,
    _node: RunningNode,
    _dir: tempfile::TempDir,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = NodeConfig {
            node_id: Some("fuzz-0".to_owned()),
            listen: ([127, 0, 0, 1], 0).into(),
            metrics_listen: ([127, 0, 0, 1], 0).into(),
            gossip_listen: Some(([127, 0, 0, 1], 0).into()),
            data_dir: dir.path().to_path_buf(),
            replication_factor: 1,
            initial_cluster: vec!["fuzz-0".to_owned()],
            ..NodeConfig::defaults().expect("defaults")
        };
        let (node, channel) = runtime.block_on(async {
            let node = strata_node::run::start(config).await.expect("node starts");
            let channel = Channel::from_shared(format!("http://{}", node.grpc_address))
                .expect("uri")
                .connect()
                .await
                .expect("connect");
            (node, channel)
        });
        Node {
            runtime,
            channel,
            _node: node,
            _dir: dir,
        }
    })
}

/// Length-delimited messages, up to the first that does not decode.
fn messages<M: Message + Default>(mut body: &[u8]) -> Vec<M> {
    let mut out = Vec::new();
    while !body.is_empty() {
        match M::decode_length_delimited(&mut body) {
            Ok(m) => out.push(m),
            Err(_) => break,
        }
    }
    out
}

/// Calls `$method` of `$client` with `$body` decoded as `$request`.
macro_rules! unary {
    ($client:expr, $method:ident, $request:ty, $body:expr) => {
        if let Ok(request) = <$request>::decode($body) {
            let _ = $client.$method(request).await;
        }
    };
}

async fn call(which: u8, body: &[u8], channel: Channel) {
    let mut kv = KvClient::new(channel.clone());
    let mut replica = ReplicaClient::new(channel.clone());
    let mut admin = AdminClient::new(channel);
    match which % 20 {
        0 => unary!(kv, get, GetRequest, body),
        1 => unary!(kv, put, PutRequest, body),
        2 => unary!(kv, delete, DeleteRequest, body),
        3 => unary!(kv, batch_get, BatchGetRequest, body),
        4 => unary!(kv, batch_write, BatchWriteRequest, body),
        5 => {
            let requests = messages::<SessionRequest>(body);
            if let Ok(replies) = kv.session(futures::stream::iter(requests)).await {
                let mut replies = replies.into_inner();
                while let Ok(Some(_)) = replies.message().await {}
            }
        }
        6 => unary!(replica, write, ReplicaWriteRequest, body),
        7 => unary!(replica, read, ReplicaReadRequest, body),
        8 => unary!(replica, deliver_hints, DeliverHintsRequest, body),
        9 => unary!(replica, merkle_nodes, MerkleNodesRequest, body),
        10 => {
            if let Ok(request) = StreamRangeRequest::decode(body)
                && let Ok(batches) = replica.stream_range(request).await
            {
                let mut batches = batches.into_inner();
                while let Ok(Some(_)) = batches.message().await {}
            }
        }
        11 => unary!(replica, apply_batch, KeyVersionsBatch, body),
        12 => {
            let requests = messages::<PipeRequest>(body);
            if let Ok(replies) = replica.pipe(futures::stream::iter(requests)).await {
                let mut replies = replies.into_inner();
                while let Ok(Some(_)) = replies.message().await {}
            }
        }
        13 => unary!(admin, get_ring, GetRingRequest, body),
        14 => unary!(admin, get_cluster_status, GetClusterStatusRequest, body),
        15 => unary!(admin, remove_node, RemoveNodeRequest, body),
        16 => unary!(admin, repair, RepairRequest, body),
        17 => unary!(admin, get_progress, GetProgressRequest, body),
        18 => unary!(admin, decommission, DecommissionRequest, body),
        _ => unary!(admin, ping, PingRequest, body),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let node = node();
    let channel = node.channel.clone();
    node.runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), call(which, body, channel))
            .await
            .expect("every call finishes within 20 s");
    });
});
