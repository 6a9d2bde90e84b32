//! What one attempt of a request goes through: the connection to a node
//! and its session stream, or a unary call.

use std::sync::Arc;

use strata_proto::v1::{
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, PingRequest, PingResponse, PutRequest,
    PutResponse, admin_client::AdminClient, kv_client::KvClient,
};
use tonic::transport::Channel;

use crate::credentials::{Conn, Credentials};
use crate::session::{self, Failed, Session};

/// Largest message the client sends or accepts.
const MAX_MESSAGE_BYTES: usize = 128 << 20;

/// The connection to one node and the session stream on it.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) channel: Channel,
    pub(crate) session: Arc<Session>,
}

/// What one attempt of a key's request goes through: a node's session, or
/// a unary call when sessions are off, the node has none, or the request
/// is too large for one.
#[derive(Debug)]
pub(crate) struct Lane {
    pub(crate) link: Link,
    pub(crate) credentials: Credentials,
    /// Whether the client uses sessions at all.
    pub(crate) sessions: bool,
}

impl Link {
    pub(crate) fn new(channel: Channel, credentials: &Credentials) -> Self {
        let session = Session::new(kv_client(channel.clone(), credentials.clone()));
        Self {
            channel,
            session: Arc::new(session),
        }
    }
}

/// A KV client over `channel` with the client's credentials and limits.
pub(crate) fn kv_client(channel: Channel, credentials: Credentials) -> KvClient<Conn> {
    KvClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl Lane {
    pub(crate) async fn get(self, request: GetRequest) -> Result<GetResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Get(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Get(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .get(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    pub(crate) async fn put(self, request: PutRequest) -> Result<PutResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Put(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Put(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .put(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    pub(crate) async fn delete(
        self,
        request: DeleteRequest,
    ) -> Result<DeleteResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Delete(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Delete(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .delete(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    pub(crate) async fn ping(self, request: PingRequest) -> Result<PingResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Ping(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Ping(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => AdminClient::with_interceptor(self.link.channel, self.credentials)
                .ping(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    /// The session's answer to the request `op` makes, or `None` when it
    /// goes as a unary call (sessions off or unsupported, or `size` over
    /// the session's limit).
    async fn on_session(
        &self,
        size: usize,
        op: impl FnOnce() -> session::Op,
    ) -> Option<Result<session::Reply, tonic::Status>> {
        if !self.sessions {
            return None;
        }
        let session = &self.link.session;
        if size > session::MAX_REQUEST_BYTES || session.is_unsupported() {
            return None;
        }
        match session.call(op()).await {
            Ok(reply) => Some(Ok(reply)),
            Err(Failed::Status(status)) => Some(Err(status)),
            Err(Failed::Unsupported) => None,
        }
    }

    /// A unary KV client on the lane's connection: built only when the
    /// session does not carry the request.
    pub(crate) fn unary(self) -> KvClient<Conn> {
        kv_client(self.link.channel, self.credentials)
    }
}

/// A session reply of another kind than the request's: a broken node, so
/// the status carries no node marker (the request counts as unanswered).
fn wrong_reply(reply: &session::Reply) -> tonic::Status {
    tonic::Status::internal(format!(
        "the node answered with the wrong kind of reply: {reply:?}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{NoSessions, serve};

    #[tokio::test]
    async fn a_node_without_sessions_gets_unary_calls() {
        let refusals: [fn() -> tonic::Status; 2] = [
            || tonic::Status::unimplemented(""),
            || tonic::Status::permission_denied("/strata.v1.KV/Session needs the admin role"),
        ];
        for refusal in refusals {
            let channel = serve(NoSessions { refusal }).await;
            let credentials = Credentials::new(None).expect("no token");
            let link = Link::new(channel, &credentials);
            let session = Arc::clone(&link.session);
            let put = |value: &'static [u8]| PutRequest {
                key: b"k".to_vec().into(),
                value: value.to_vec().into(),
                ..PutRequest::default()
            };
            let lane = || Lane {
                link: link.clone(),
                credentials: credentials.clone(),
                sessions: true,
            };
            let first = lane()
                .put(put(b"first"))
                .await
                .expect("falls back to unary");
            assert_eq!(&first.context[..], b"first");
            assert!(session.is_unsupported(), "the session stays off");
            let second = lane()
                .put(put(b"second"))
                .await
                .expect("unary from the start");
            assert_eq!(&second.context[..], b"second");
        }
    }
}
