//! `KV.Session`: a client's Gets, Puts, Deletes and Pings on one
//! long-lived stream, answered by id in any order.
//!
//! Why: a unary call costs both sides an HTTP/2 stream (HEADERS with HPACK
//! each way, stream state, a trailers frame), a server task spawned by the
//! HTTP stack and the tower layers, and each reply tends to leave in a
//! socket write of its own. On the session an operation is one
//! length-prefixed message each way, and the replies ready together (a
//! commit group's Puts) leave in one write (docs/benchmarks.md, "One
//! stream per client connection"). Each operation runs exactly the code
//! of its unary call (`KvService::put_request` and so on): admission,
//! validation, metrics and errors are the same.

use std::collections::HashMap;
use std::sync::Arc;

use strata_proto::v1::{
    SessionError, SessionReply, SessionRequest, session_reply, session_request,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::KvService;
use crate::auth::SessionCredentials;

/// Replies not yet written to the stream at most; operations wait beyond.
const REPLIES: usize = 1024;
/// Operations of one session running at once at most; beyond, the node
/// stops reading the stream and HTTP/2 flow control holds the client back.
const RUNNING: usize = 1024;

/// Answers every request arriving on `incoming`, each in a task of its
/// own (a Put waiting for its commit does not hold up the Gets behind it),
/// until the client ends the stream or `stopping` turns true; the reply
/// stream then ends once the requests already read are answered. The
/// client fails the ones it sent and the node never read as it fails a
/// broken connection's: as transport failures, which it retries elsewhere.
///
/// `credentials`: the token the stream was opened with, on a node with
/// client authentication; each operation is checked with it as its unary
/// method would be.
pub(super) fn serve(
    mut incoming: Streaming<SessionRequest>,
    service: Arc<KvService>,
    credentials: Option<SessionCredentials>,
    mut stopping: watch::Receiver<bool>,
) -> ReceiverStream<Result<SessionReply, Status>> {
    let (replies, outgoing) = mpsc::channel(REPLIES);
    let running = Arc::new(Semaphore::new(RUNNING));
    let open = service.metrics().session_opened();
    tokio::spawn(async move {
        let _open = open;
        loop {
            let Ok(permit) = Arc::clone(&running).acquire_owned().await else {
                return;
            };
            let next = tokio::select! {
                next = incoming.message() => next,
                () = stopped(&mut stopping) => return,
            };
            let request = match next {
                Ok(Some(request)) => request,
                Ok(None) => return,
                // A message that does not decode or is over the size
                // limit, or the client's stream broke: the reply stream
                // ends with that status, so a client sees why, after the
                // replies of the requests already running (they may have
                // written; their clients must hear how they ended).
                Err(status) => {
                    tracing::debug!(error = %status, "a client's session stream broke");
                    drop(permit);
                    let all = u32::try_from(RUNNING).unwrap_or(u32::MAX);
                    let _ = running.acquire_many(all).await;
                    let _ = replies.send(Err(status)).await;
                    return;
                }
            };
            let id = request.id;
            let Some(op) = request.op else {
                let status = Status::invalid_argument("a session request needs an operation");
                let _ = replies.send(Ok(reply(id, Err(status)))).await;
                continue;
            };
            if let Some(Err(status)) = credentials.as_ref().map(|c| c.check(method(&op))) {
                let _ = replies.send(Ok(reply(id, Err(status)))).await;
                continue;
            }
            if let session_request::Op::Ping(ping) = op {
                let result = Ok(session_reply::Result::Ping(service.ping(ping)));
                let _ = replies.send(Ok(reply(id, result))).await;
                continue;
            }
            let (replies, service) = (replies.clone(), Arc::clone(&service));
            tokio::spawn(async move {
                let result = answer(&service, op).await;
                let _ = replies.send(Ok(reply(id, result))).await;
                drop(permit);
            });
        }
    });
    ReceiverStream::new(outgoing)
}

/// Completes once `stopping` turns true; never when its sender went away
/// without saying so (nothing can stop the server then).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    if stopping.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The unary method `op` stands for, as the token policy names it.
fn method(op: &session_request::Op) -> &'static str {
    match op {
        session_request::Op::Get(_) => "/strata.v1.KV/Get",
        session_request::Op::Put(_) => "/strata.v1.KV/Put",
        session_request::Op::Delete(_) => "/strata.v1.KV/Delete",
        session_request::Op::Ping(_) => "/strata.v1.Admin/Ping",
    }
}

/// Runs `op` as its unary call does.
async fn answer(
    service: &KvService,
    op: session_request::Op,
) -> Result<session_reply::Result, Status> {
    use session_reply::Result as Reply;
    match op {
        session_request::Op::Get(get) => service.get_request(get).await.map(Reply::Get),
        session_request::Op::Put(put) => {
            service.put_request(put, false, None).await.map(Reply::Put)
        }
        session_request::Op::Delete(delete) => service
            .delete_request(delete, false, None)
            .await
            .map(Reply::Delete),
        session_request::Op::Ping(ping) => Ok(Reply::Ping(service.ping(ping))),
    }
}

fn reply(id: u64, result: Result<session_reply::Result, Status>) -> SessionReply {
    SessionReply {
        id,
        result: Some(result.unwrap_or_else(|status| session_reply::Result::Error(error(&status)))),
    }
}

/// `status` as a session carries it: code, message and the ASCII metadata
/// a client reads (the node marker, acks and required replicas).
fn error(status: &Status) -> SessionError {
    let metadata: HashMap<String, String> = status
        .metadata()
        .iter()
        .filter_map(|entry| match entry {
            tonic::metadata::KeyAndValueRef::Ascii(key, value) => value
                .to_str()
                .ok()
                .map(|v| (key.as_str().to_owned(), v.to_owned())),
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    SessionError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_code_message_and_metadata() {
        let mut status = Status::unavailable("2 of 3 replicas acknowledged");
        status.metadata_mut().insert(
            strata_proto::metadata::FROM_NODE,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        status.metadata_mut().insert(
            strata_proto::metadata::ACKS,
            tonic::metadata::MetadataValue::from_static("2"),
        );
        let carried = error(&status);
        assert_eq!(carried.code, tonic::Code::Unavailable as i32);
        assert_eq!(carried.message, "2 of 3 replicas acknowledged");
        assert_eq!(
            carried.metadata.get(strata_proto::metadata::FROM_NODE),
            Some(&"1".to_owned())
        );
        assert_eq!(
            carried.metadata.get(strata_proto::metadata::ACKS),
            Some(&"2".to_owned())
        );
    }
}
