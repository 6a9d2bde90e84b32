//! `KV.Session` against a real node process: each operation on the stream
//! answers as its unary call does, by id; a client that ends the stream
//! still gets every reply; a node that stops ends its sessions instead of
//! waiting on them.

use std::collections::HashMap;
use std::time::Duration;

use strata_proto::metadata::{ACKS, FROM_NODE, REFUSED, REQUIRED};
use strata_proto::v1::{
    Consistency, ConsistencyLevel, DeleteRequest, GetRequest, PingRequest, PutRequest,
    SessionError, SessionRequest, session_reply, session_request,
};
use strata_tests::NodeProcess;
use strata_tests::cluster::kv;

/// Sends `requests` on one session, ends it, and returns every reply by id
/// (the stream must end by itself once the node has answered them).
async fn exchange(
    node: &NodeProcess,
    requests: Vec<(u64, session_request::Op)>,
) -> HashMap<u64, session_reply::Result> {
    let requests: Vec<SessionRequest> = requests
        .into_iter()
        .map(|(id, op)| SessionRequest { id, op: Some(op) })
        .collect();
    let sent = requests.len();
    let mut replies = kv(node.addr())
        .await
        .session(tokio_stream::iter(requests))
        .await
        .expect("the node opens a session")
        .into_inner();
    let mut by_id = HashMap::new();
    let collect = async {
        while let Some(reply) = replies.message().await.expect("the stream stays whole") {
            let result = reply.result.expect("every reply has a result");
            assert!(by_id.insert(reply.id, result).is_none(), "one reply per id");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("the reply stream ends after the last answer");
    assert_eq!(by_id.len(), sent, "{by_id:?}");
    by_id
}

fn one() -> Option<Consistency> {
    Some(Consistency::named(ConsistencyLevel::One))
}

fn put(key: &[u8], value: &[u8], consistency: Option<Consistency>) -> PutRequest {
    PutRequest {
        key: key.to_vec().into(),
        value: value.to_vec().into(),
        consistency,
        request_id: 7,
        ..PutRequest::default()
    }
}

/// The unary call's status as a session carries it.
fn as_carried(status: &tonic::Status) -> SessionError {
    let metadata = [FROM_NODE, REFUSED, ACKS, REQUIRED]
        .into_iter()
        .filter_map(|key| {
            let value = status.metadata().get(key)?.to_str().ok()?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect();
    SessionError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        metadata,
    }
}

#[tokio::test]
async fn each_operation_answers_as_its_unary_call_by_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Default N = 3 while this node knows only itself: QUORUM is
    // unavailable (with the ack counts in metadata), ONE works.
    let node = NodeProcess::start(&dir.path().join("node"), Some("strata-0"), &[]);
    use session_request::Op;
    let replies = exchange(
        &node,
        vec![
            (10, Op::Put(put(b"a", b"1", one()))),
            (11, Op::Put(put(b"b", b"2", None))),
            (12, Op::Put(put(b"", b"3", one()))),
            (
                13,
                Op::Ping(PingRequest {
                    payload: b"echo".to_vec().into(),
                }),
            ),
        ],
    )
    .await;
    let session_reply::Result::Put(written) = &replies[&10] else {
        panic!("a Put's reply: {:?}", replies[&10]);
    };
    assert_eq!(written.replicas_acked, 1);
    let mut unary = kv(node.addr()).await;
    for (id, request) in [(11, put(b"b", b"2", None)), (12, put(b"", b"3", one()))] {
        let status = unary.put(request).await.expect_err("fails as unary too");
        let session_reply::Result::Error(carried) = &replies[&id] else {
            panic!("request {id} fails: {:?}", replies[&id]);
        };
        assert_eq!(carried, &as_carried(&status), "request {id}");
    }
    // Too few replicas up (one node, N=3): refused unwritten, so without
    // the node marker (a client may try another coordinator) but marked
    // as a refusal (the node is up), with the counts.
    let session_reply::Result::Error(quorum) = &replies[&11] else {
        unreachable!("checked above");
    };
    assert_eq!(quorum.code, tonic::Code::Unavailable as i32);
    assert!(quorum.metadata.contains_key(REQUIRED), "{quorum:?}");
    assert!(!quorum.metadata.contains_key(FROM_NODE), "{quorum:?}");
    assert!(quorum.metadata.contains_key(REFUSED), "{quorum:?}");
    let session_reply::Result::Error(invalid) = &replies[&12] else {
        unreachable!("checked above");
    };
    assert!(invalid.metadata.contains_key(FROM_NODE), "{invalid:?}");
    let session_reply::Result::Ping(pong) = &replies[&13] else {
        panic!("a Ping's reply: {:?}", replies[&13]);
    };
    assert_eq!(
        (&pong.payload[..], &pong.node_id[..]),
        (&b"echo"[..], "strata-0")
    );

    // A request without an operation fails alone; the stream goes on.
    let get = |key: &[u8]| {
        Op::Get(GetRequest {
            key: key.to_vec().into(),
            consistency: one(),
        })
    };
    let mut requests: Vec<(u64, Op)> = vec![(1, get(b"a"))];
    let replies = {
        let mut sent: Vec<SessionRequest> = requests
            .drain(..)
            .map(|(id, op)| SessionRequest { id, op: Some(op) })
            .collect();
        sent.push(SessionRequest { id: 2, op: None });
        let mut stream = kv(node.addr())
            .await
            .session(tokio_stream::iter(sent))
            .await
            .expect("session")
            .into_inner();
        let mut by_id = HashMap::new();
        while let Some(reply) = stream.message().await.expect("stream") {
            by_id.insert(reply.id, reply.result.expect("result"));
        }
        by_id
    };
    let session_reply::Result::Get(got) = &replies[&1] else {
        panic!("a Get's reply: {:?}", replies[&1]);
    };
    assert_eq!(&got.siblings[0].value[..], b"1");
    let session_reply::Result::Error(empty) = &replies[&2] else {
        panic!("an empty request fails: {:?}", replies[&2]);
    };
    assert_eq!(empty.code, tonic::Code::InvalidArgument as i32, "{empty:?}");

    // A Delete with the Get's context removes the value.
    let deleted = exchange(
        &node,
        vec![(
            3,
            Op::Delete(DeleteRequest {
                key: b"a".to_vec().into(),
                context: got.context.clone(),
                consistency: one(),
                request_id: 8,
            }),
        )],
    )
    .await;
    assert!(
        matches!(deleted[&3], session_reply::Result::Delete(_)),
        "{deleted:?}"
    );
    let after = exchange(&node, vec![(4, get(b"a"))]).await;
    let Some(session_reply::Result::Get(gone)) = &after.get(&4) else {
        panic!("a Get's reply: {after:?}");
    };
    assert!(gone.siblings.is_empty(), "deleted: {gone:?}");
}

/// A session is a stream that never ends by itself: a node stopping
/// (SIGTERM, as Kubernetes stops a pod) ends it after answering what it
/// read, and exits in time instead of waiting for the client to hang up.
/// (Two runtime threads: the client's connection answers the server's
/// goodbye while this thread waits for the exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_ends_its_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::start(
        &dir.path().join("node"),
        Some("strata-0"),
        &["--replication-factor", "1"],
    );
    let (requests, outgoing) = tokio::sync::mpsc::channel(16);
    let mut replies = kv(node.addr())
        .await
        .session(tokio_stream::wrappers::ReceiverStream::new(outgoing))
        .await
        .expect("session")
        .into_inner();
    for id in 0..10 {
        let op = session_request::Op::Put(put(format!("k{id}").as_bytes(), b"v", None));
        requests
            .send(SessionRequest { id, op: Some(op) })
            .await
            .expect("queued");
    }
    for _ in 0..10 {
        let reply = replies.message().await.expect("stream").expect("a reply");
        assert!(
            matches!(reply.result, Some(session_reply::Result::Put(_))),
            "{reply:?}"
        );
    }
    let status = node
        .terminate(Duration::from_secs(8))
        .expect("the node exits within 8 s of SIGTERM with a session open");
    assert!(status.success(), "{status}; log:\n{}", node.log());
    let end = tokio::time::timeout(Duration::from_secs(5), replies.message())
        .await
        .expect("the reply stream ends");
    assert!(
        !matches!(end, Ok(Some(_))),
        "no reply without a request: {end:?}"
    );
    drop(requests);
}

/// A message the node cannot take (over the size limit) ends the stream
/// with the reason, not silently, after the replies of the requests it
/// already runs: a client sees why, and what was written.
#[tokio::test]
async fn an_oversized_message_ends_the_session_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        &dir.path().join("node"),
        Some("strata-0"),
        &["--replication-factor", "1"],
    );
    // Past the node's message limit (64 MiB at the default value limit).
    let huge = vec![7u8; 65 << 20];
    let requests = [
        SessionRequest {
            id: 0,
            op: Some(session_request::Op::Put(put(b"small", b"v", None))),
        },
        SessionRequest {
            id: 1,
            op: Some(session_request::Op::Put(put(b"k", &huge, None))),
        },
    ];
    let mut replies = kv(node.addr())
        .await
        .max_encoding_message_size(usize::MAX)
        .session(tokio_stream::iter(requests))
        .await
        .expect("the node opens a session")
        .into_inner();
    // The request read before the bad one is answered first: it wrote.
    let first = tokio::time::timeout(Duration::from_secs(20), replies.message())
        .await
        .expect("an answer")
        .expect("the reply before the end")
        .expect("a reply");
    assert_eq!(first.id, 0);
    assert!(
        matches!(first.result, Some(session_reply::Result::Put(_))),
        "{first:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(20), replies.message())
        .await
        .expect("the stream ends");
    let status = end.expect_err("ends with an error, not a reply or a clean end");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("the node reads at most"),
        "{status:?}"
    );
}
