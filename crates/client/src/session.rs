//! The client's side of `KV.Session`: one long-lived stream per node that
//! carries its Gets, Puts, Deletes and Pings, answered by id in any order.
//!
//! A unary call per request costs both ends an HTTP/2 stream, HEADERS and
//! trailers, and (on the node) a task from the HTTP stack; on the session
//! a request is one message each way and replies ready together share a
//! socket write. The stream opens on first use and again after it ended.
//! What a caller sees is what the unary call would have returned: the
//! node's status with its metadata (the node marker, acks), or, when the
//! stream broke or the node ended it before answering, a status without
//! the marker (`UNAVAILABLE` when the node ended it), which the retry
//! rules treat as a connection lost mid-request. A node without the method
//! (an older version) refuses to open it (`refused_as_unknown`); the
//! session then says [`Failed::Unsupported`] and stays off, and callers
//! use unary calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use strata_proto::metadata::is_from_a_node;
use strata_proto::outstanding::{Forget, Outstanding};
use strata_proto::v1::{SessionRequest, kv_client::KvClient, session_reply};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

pub(crate) use strata_proto::v1::session_reply::Result as Reply;
pub(crate) use strata_proto::v1::session_request::Op;

use crate::credentials::Conn;

/// Requests queued for the stream at most; callers wait beyond.
const QUEUE: usize = 4096;

/// Requests larger than this go as unary calls: one large value would hold
/// up every reply behind it on the shared stream, and the stream gains
/// nothing on a request that large.
pub(crate) const MAX_REQUEST_BYTES: usize = 64 << 10;

/// Why a session gave no reply.
#[derive(Debug, Clone)]
pub(crate) enum Failed {
    /// The node does not serve sessions: nothing was sent to a handler;
    /// send the request as a unary call.
    Unsupported,
    /// The node's error, or why the stream ended.
    Status(Status),
}

/// The sessions to one node: the open stream, if any.
#[derive(Debug)]
pub(crate) struct Session {
    kv: KvClient<Conn>,
    current: Mutex<Option<Arc<Stream>>>,
    unsupported: AtomicBool,
}

/// One open stream: its request queue and the requests awaiting replies.
#[derive(Debug)]
struct Stream {
    requests: mpsc::Sender<SessionRequest>,
    calls: Outstanding<Reply, Failed>,
}

impl Session {
    /// Sessions over `kv`; nothing is sent until the first request.
    pub(crate) fn new(kv: KvClient<Conn>) -> Self {
        Self {
            kv,
            current: Mutex::new(None),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Whether the node is known not to serve sessions.
    pub(crate) fn is_unsupported(&self) -> bool {
        self.unsupported.load(Ordering::Relaxed)
    }

    /// Sends `op` and waits for its reply. The caller bounds the wait; a
    /// call dropped before its reply forgets it.
    pub(crate) async fn call(&self, op: Op) -> Result<Reply, Failed> {
        if self.is_unsupported() {
            return Err(Failed::Unsupported);
        }
        // A stream that ends between lookup and registration is replaced
        // once; a second failure means the node refuses streams.
        let mut attempt = 0;
        let (stream, id, answer) = loop {
            let stream = self.stream();
            match stream.calls.register() {
                Some((id, answer)) => break (stream, id, answer),
                None if attempt == 0 => attempt += 1,
                None => return Err(stream.calls.why().unwrap_or_else(closed)),
            }
        };
        let _forget = Forget::new(&stream.calls, id);
        let request = SessionRequest { id, op: Some(op) };
        let result = if stream.requests.send(request).await.is_err() {
            Err(stream.ended().await)
        } else {
            match answer.await {
                Ok(answer) => answer,
                Err(_) => Err(stream.ended().await),
            }
        };
        if matches!(result, Err(Failed::Unsupported)) {
            self.unsupported.store(true, Ordering::Relaxed);
        }
        result
    }

    /// The open stream, or a new one when there is none or it ended.
    fn stream(&self) -> Arc<Stream> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(stream) = current.as_ref().filter(|s| s.calls.is_open()) {
            return Arc::clone(stream);
        }
        let (requests, outgoing) = mpsc::channel(QUEUE);
        let stream = Arc::new(Stream {
            requests,
            calls: Outstanding::default(),
        });
        tokio::spawn(run(
            self.kv.clone(),
            ReceiverStream::new(outgoing),
            Arc::downgrade(&stream),
        ));
        *current = Some(Arc::clone(&stream));
        stream
    }
}

impl Stream {
    /// Why the stream ended, waiting for the task driving it to say so.
    async fn ended(&self) -> Failed {
        self.calls.ended().await.unwrap_or_else(closed)
    }
}

/// Drives one stream: opens it, hands replies to their callers, and closes
/// it when it ends or fails. Holds the stream weakly: once the session and
/// every caller let go of it, its request queue closes, which ends the
/// request stream, and the node ends the reply stream after answering.
async fn run(
    mut kv: KvClient<Conn>,
    outgoing: ReceiverStream<SessionRequest>,
    stream: Weak<Stream>,
) -> Option<()> {
    let outcome = match kv.session(outgoing).await {
        Ok(replies) => {
            let mut replies = replies.into_inner();
            async {
                while let Some(reply) = replies.message().await? {
                    if let Some(stream) = stream.upgrade() {
                        stream.calls.complete(reply.id, answer(reply.result));
                    }
                }
                Ok::<(), Status>(())
            }
            .await
            .map_err(Failed::Status)
        }
        Err(status) if refused_as_unknown(&status) => Err(Failed::Unsupported),
        Err(status) => Err(Failed::Status(status)),
    };
    let stream = stream.upgrade()?;
    let why = match outcome {
        // Requests sent and not yet read when the node stopped: nothing
        // ran them, and a status without the node marker says so.
        Ok(()) => Failed::Status(Status::unavailable(
            "the node ended the session before answering (shutting down?)",
        )),
        Err(Failed::Status(status)) => {
            tracing::debug!(code = ?status.code(), error = %status.message(), "session stream broke");
            Failed::Status(status)
        }
        Err(unsupported) => unsupported,
    };
    stream.calls.close(&why);
    Some(())
}

/// Whether opening a session was refused because the node does not know
/// the method: `UNIMPLEMENTED`, or, on a node with client authentication,
/// `PERMISSION_DENIED` (its policy asks the admin role of methods it does
/// not know, while any valid token may open a session on a node that has
/// them). Nothing ran: the requests can go as unary calls.
fn refused_as_unknown(status: &Status) -> bool {
    !is_from_a_node(status)
        && matches!(
            status.code(),
            tonic::Code::Unimplemented | tonic::Code::PermissionDenied
        )
}

fn closed() -> Failed {
    Failed::Status(Status::unavailable("the session stream closed"))
}

/// A reply's result as the unary call would have returned it.
fn answer(result: Option<session_reply::Result>) -> Result<Reply, Failed> {
    match result {
        Some(Reply::Error(e)) => {
            let mut metadata = MetadataMap::new();
            for (key, value) in &e.metadata {
                // Only ASCII entries travel; skip anything else a peer sends.
                if key.ends_with("-bin") {
                    continue;
                }
                if let (Ok(key), Ok(value)) = (
                    MetadataKey::from_bytes(key.as_bytes()),
                    MetadataValue::try_from(value.as_str()),
                ) {
                    metadata.insert(key, value);
                }
            }
            Err(Failed::Status(Status::with_metadata(
                tonic::Code::from_i32(e.code),
                e.message,
                metadata,
            )))
        }
        Some(reply) => Ok(reply),
        // A reply without a result is a broken peer: unmarked, so the
        // request counts as unanswered.
        None => Err(Failed::Status(Status::internal(
            "the node sent a session reply without a result",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use strata_proto::v1::SessionError;

    #[test]
    fn a_node_error_comes_back_with_its_code_and_metadata() {
        let mut metadata = HashMap::new();
        metadata.insert(strata_proto::metadata::FROM_NODE.to_owned(), "1".to_owned());
        metadata.insert(strata_proto::metadata::ACKS.to_owned(), "1".to_owned());
        metadata.insert("junk-bin".to_owned(), "AAAA".to_owned());
        metadata.insert("bad key".to_owned(), "x".to_owned());
        metadata.insert("bad-value".to_owned(), "\u{7}".to_owned());
        let failed = answer(Some(Reply::Error(SessionError {
            code: tonic::Code::Unavailable as i32,
            message: "1 of 2 replicas acknowledged".to_owned(),
            metadata,
        })));
        let Err(Failed::Status(status)) = failed else {
            panic!("an error reply is an error: {failed:?}");
        };
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(status.message(), "1 of 2 replicas acknowledged");
        assert!(is_from_a_node(&status), "the node marker survives");
        assert_eq!(
            status.metadata().get(strata_proto::metadata::ACKS),
            Some(&MetadataValue::from_static("1"))
        );
        assert_eq!(status.metadata().len(), 2, "{:?}", status.metadata());
    }

    #[test]
    fn an_empty_reply_is_an_unmarked_failure() {
        let Err(Failed::Status(status)) = answer(None) else {
            panic!("an empty reply is an error");
        };
        assert!(strata_proto::metadata::is_transport_failure(&status));
    }
}
