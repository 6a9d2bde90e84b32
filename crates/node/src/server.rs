//! Assembles the gRPC server for one node.

use std::future::Future;

use strata_cluster::NodeId;
use strata_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, replica_server::ReplicaServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::services::{AdminService, KvService, ReplicaService};

/// Serves every Strata service on `listener` until `shutdown` completes.
///
/// # Errors
/// A transport error from tonic (the listener failed).
pub async fn serve(
    node_id: NodeId,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(KvServer::new(KvService))
        .add_service(AdminServer::new(AdminService::new(node_id)))
        .add_service(ReplicaServer::new(ReplicaService))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use strata_proto::v1::{
        GetRequest, PingRequest, admin_client::AdminClient, kv_client::KvClient,
    };

    use super::*;

    #[tokio::test]
    async fn ping_answers_and_unbuilt_rpcs_say_what_is_missing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let id = NodeId::new("strata-0").expect("id");
        let server = tokio::spawn(serve(id, listener, async {
            let _ = stopped.await;
        }));

        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut admin = AdminClient::new(channel.clone());
        let pong = admin
            .ping(PingRequest {
                payload: b"hello".to_vec().into(),
            })
            .await
            .expect("ping")
            .into_inner();
        assert_eq!(pong.node_id, "strata-0");
        assert_eq!(&pong.payload[..], b"hello");

        let mut kv = KvClient::new(channel);
        let status = kv
            .get(GetRequest::default())
            .await
            .expect_err("Get has no coordinator yet");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(
            status.message().contains("coordinator"),
            "{}",
            status.message()
        );

        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
    }
}
