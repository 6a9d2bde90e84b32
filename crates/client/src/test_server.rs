//! A fake node for the client's tests: unary Put only, no `Admin`.

use strata_proto::v1::{
    BatchGetRequest, BatchGetResponse, DeleteRequest, DeleteResponse, GetRequest, GetResponse,
    PutRequest, PutResponse,
};
use tonic::transport::Channel;

use crate::options::endpoint_for;

/// A node of an older version: unary Put works, `Session` is refused
/// as its router or its token policy refuses a method it does not know.
pub(crate) struct NoSessions {
    pub(crate) refusal: fn() -> tonic::Status,
}

#[tonic::async_trait]
impl strata_proto::v1::kv_server::Kv for NoSessions {
    async fn get(
        &self,
        _: tonic::Request<GetRequest>,
    ) -> Result<tonic::Response<GetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    async fn put(
        &self,
        request: tonic::Request<PutRequest>,
    ) -> Result<tonic::Response<PutResponse>, tonic::Status> {
        Ok(tonic::Response::new(PutResponse {
            context: request.into_inner().value,
            replicas_acked: 1,
        }))
    }

    async fn delete(
        &self,
        _: tonic::Request<DeleteRequest>,
    ) -> Result<tonic::Response<DeleteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    async fn batch_get(
        &self,
        _: tonic::Request<BatchGetRequest>,
    ) -> Result<tonic::Response<BatchGetResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    async fn batch_write(
        &self,
        _: tonic::Request<strata_proto::v1::BatchWriteRequest>,
    ) -> Result<tonic::Response<strata_proto::v1::BatchWriteResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this fake"))
    }

    type SessionStream = tokio_stream::wrappers::ReceiverStream<
        Result<strata_proto::v1::SessionReply, tonic::Status>,
    >;

    async fn session(
        &self,
        _: tonic::Request<tonic::Streaming<strata_proto::v1::SessionRequest>>,
    ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
        Err((self.refusal)())
    }
}

/// Serves `kv` on a loopback port until the test's runtime ends.
pub(crate) async fn serve(kv: NoSessions) -> Channel {
    let address = serve_at(kv).await;
    endpoint_for(&address.to_string(), None)
        .expect("endpoint")
        .connect_lazy()
}

/// Serves `kv` alone (no `Admin`) and returns its loopback address.
pub(crate) async fn serve_at(kv: NoSessions) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(strata_proto::v1::kv_server::KvServer::new(kv))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    address
}
