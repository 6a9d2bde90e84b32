//! Regressions, named after the outside tests that found them.

use bytes::{Buf as _, BufMut as _};
use prost::Message as _;
use strata_cluster::Token;
use strata_proto::v1::{
    self, CausalContext, ClockEntry, Consistency, ConsistencyLevel, GetRequest, PutRequest,
    VectorClock,
};
use strata_tests::Cluster;
use strata_tests::cluster::kv;
use tonic::Code;

const N3: &[&str] = &["--replication-factor", "3"];

fn forged(key: &str, entries: &[(&str, u64)]) -> Vec<u8> {
    CausalContext {
        clock: Some(VectorClock {
            entries: entries
                .iter()
                .map(|(node, counter)| ClockEntry {
                    node_id: (*node).to_owned(),
                    counter: *counter,
                    updated_at_micros: 0,
                })
                .collect(),
        }),
        key_token: Token::of(key.as_bytes()).0,
    }
    .encode_to_vec()
}

fn put(key: &str, value: &str, context: Vec<u8>) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        context: context.into(),
        consistency: Some(Consistency::named(ConsistencyLevel::Quorum)),
        request_id: 0,
    }
}

async fn quorum_values(addr: std::net::SocketAddr, key: &str) -> Vec<String> {
    let got = kv(addr)
        .await
        .get(GetRequest {
            key: key.as_bytes().to_vec().into(),
            consistency: Some(Consistency::named(ConsistencyLevel::Quorum)),
        })
        .await
        .expect("get")
        .into_inner();
    let mut values: Vec<String> = got
        .siblings
        .iter()
        .map(|s| String::from_utf8_lossy(&s.value).into_owned())
        .collect();
    values.sort();
    values
}

/// A fresh write to "k" is acknowledged and read back at quorum.
async fn still_serves(addr: std::net::SocketAddr) {
    kv(addr)
        .await
        .put(put("k", "v", Vec::new()))
        .await
        .expect("the node still serves");
    assert_eq!(quorum_values(addr, "k").await, ["v"]);
}

/// Outside testing: a Put whose context claims counter 2^64-1 for the
/// coordinating node wrapped its dot counter, and its later writes were
/// acknowledged by 3 replicas and never seen by any read. A context read
/// from key A superseded key B's siblings. Both are refused now, and a
/// claim about another node's counter cannot hide that node's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_contexts_lose_no_acknowledged_write() {
    let cluster = Cluster::start(3, N3).await;
    let (a, b) = (cluster.addr(0), cluster.addr(1));

    kv(a)
        .await
        .put(put("k", "first", Vec::new()))
        .await
        .expect("put");
    let err = kv(a)
        .await
        .put(put("k", "forged", forged("k", &[("node-0", u64::MAX)])))
        .await
        .expect_err("a dot node-0 never issued");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    // Node 1's counter claimed at 2^64-1 through node 0: accepted, but it
    // cannot cover node 1's later writes.
    kv(a)
        .await
        .put(put("k", "second", forged("k", &[("node-1", u64::MAX)])))
        .await
        .expect("claims about another node are bounded, not refused");
    for (i, value) in ["third", "fourth"].iter().enumerate() {
        let via = if i == 0 { a } else { b };
        kv(via)
            .await
            .put(put("k", value, Vec::new()))
            .await
            .expect("put");
    }
    for (_, addr) in cluster.running() {
        let values = quorum_values(addr, "k").await;
        for value in ["third", "fourth"] {
            assert!(values.contains(&value.to_owned()), "{addr}: {values:?}");
        }
    }

    // A context bound to another key is refused; B keeps its sibling.
    kv(a)
        .await
        .put(put("b", "b1", Vec::new()))
        .await
        .expect("put");
    let context_of_k = kv(a)
        .await
        .put(put("k", "fifth", Vec::new()))
        .await
        .expect("put")
        .into_inner()
        .context;
    let err = kv(b)
        .await
        .put(put("b", "b2", context_of_k.to_vec()))
        .await
        .expect_err("context of another key");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_eq!(quorum_values(a, "b").await, ["b1"]);
}

/// Sends bytes as they are, so a request body can be malformed.
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[derive(Debug, Clone, Default)]
struct Raw;

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        Ok(Some(bytes.to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

/// Sends `body` as it is to the unary method `path`.
async fn raw_unary(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    path: &'static str,
    body: Vec<u8>,
) -> Result<Vec<u8>, tonic::Status> {
    grpc.ready().await.expect("ready");
    grpc.unary::<Vec<u8>, Vec<u8>, _>(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(tonic::Response::into_inner)
}

/// Outside testing: a request body that is not valid protobuf was answered
/// INTERNAL (tonic's mapping of decode errors), blaming the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_protobuf_is_invalid_argument() {
    let cluster = Cluster::start(1, &["--replication-factor", "1"]).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.addr(0)))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    // Field 1 (length-delimited) claiming 100 bytes, with 1 present.
    for (path, body) in [
        ("/strata.v1.KV/Put", vec![0x0a, 100, 1]),
        ("/strata.v1.KV/Get", vec![0xff, 0xff, 0xff]),
    ] {
        let err = raw_unary(&mut grpc, path, body)
            .await
            .expect_err("malformed body");
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err}");
    }
    // A well-formed request still works on the same connection.
    let ok = v1::GetRequest {
        key: b"k".to_vec().into(),
        consistency: None,
    };
    raw_unary(&mut grpc, "/strata.v1.KV/Get", ok.encode_to_vec())
        .await
        .expect("valid request");
}

/// Fuzzing found that a client context of 160,000 clock entries in reverse
/// order (2.2 MB, in a Put the node accepts up to 64 MB of) cost 18 s of
/// CPU on a thread that serves requests: each entry was inserted into a
/// sorted vector one at a time. Such a context is refused now, naming the
/// limit, and the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_with_more_clock_entries_than_any_cluster_makes_is_refused() {
    let cluster = Cluster::start(1, &["--replication-factor", "1"]).await;
    let addr = cluster.addr(0);
    let names: Vec<String> = (0..100_000).rev().map(|i| format!("n{i:07}")).collect();
    let entries: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    let err = kv(addr)
        .await
        .put(put("k", "v", forged("k", &entries)))
        .await
        .expect_err("100,000 clock entries");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.message().contains("at most 4096"), "{err}");
    still_serves(addr).await;
}

/// `len` bytes of field `field` repeated, each occurrence empty (2 bytes:
/// the key and a zero length): the smallest element a repeated message or
/// bytes field can have on the wire.
fn empty_elements(field: u8, len: usize) -> Vec<u8> {
    [(field << 3) | 2, 0].repeat(len / 2)
}

/// A 60 MB request, under the client port's 64 MB message limit.
const LARGE: usize = 60 << 20;

/// Outside-style probe: decoded, each 2-byte empty element of a request
/// takes dozens to over a hundred bytes, so a 60 MB `BatchWrite` of empty
/// ops, a `BatchGet` of empty keys or a Put whose context holds empty clock
/// entries made the node allocate gigabytes before anything counted the
/// items. Each is refused now, counted on the wire, and the node's peak
/// memory grows by little more than the requests' own bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_millions_of_tiny_elements_are_refused_before_they_are_decoded() {
    let cluster = Cluster::start(1, &["--replication-factor", "1"]).await;
    let addr = cluster.addr(0);
    let before = cluster.process(0).peak_resident_bytes();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 << 20);
    let mut context = vec![0x0a];
    let clock = empty_elements(1, LARGE);
    prost::encoding::encode_varint(clock.len() as u64, &mut context);
    context.extend_from_slice(&clock);
    drop(clock);
    // `key_token` (field 2): the context is for this key.
    context.push(0x11);
    context.extend_from_slice(&Token::of(b"k").0.to_le_bytes());
    let put_body = put("k", "v", context).encode_to_vec();
    for (path, body, says) in [
        (
            "/strata.v1.KV/BatchWrite",
            empty_elements(1, LARGE),
            "the limit is 1000",
        ),
        (
            "/strata.v1.KV/BatchGet",
            empty_elements(1, LARGE),
            "the limit is 1000",
        ),
        ("/strata.v1.KV/Put", put_body, "at most 4096"),
    ] {
        let err = raw_unary(&mut grpc, path, body)
            .await
            .expect_err("millions of elements");
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err}");
        assert!(err.message().contains(says), "{path}: {err}");
    }
    let grown = cluster
        .process(0)
        .peak_resident_bytes()
        .saturating_sub(before);
    println!("peak resident memory grew by {} MiB", grown >> 20);
    assert!(
        grown < 512 << 20,
        "the node's peak memory grew by {} MiB for three 60 MiB requests",
        grown >> 20
    );
    still_serves(addr).await;
}
