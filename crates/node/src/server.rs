//! Assembles the gRPC server for one node.

use std::future::Future;
use std::sync::Arc;

use strata_cluster::NodeId;
use strata_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, replica_server::ReplicaServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::coordinator::Coordinator;
use crate::services::{AdminService, KvService, ReplicaService};

/// Serves every Strata service on `listener` until `shutdown` completes.
///
/// # Errors
/// A transport error from tonic (the listener failed).
pub async fn serve(
    node_id: NodeId,
    coordinator: Arc<Coordinator>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(KvServer::new(KvService::new(coordinator)))
        .add_service(AdminServer::new(AdminService::new(node_id)))
        .add_service(ReplicaServer::new(ReplicaService))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use strata_cluster::ConsistencyLevel;
    use strata_proto::v1::{
        self, GetRequest, PingRequest, PutRequest, admin_client::AdminClient, kv_client::KvClient,
    };

    use super::*;
    use crate::coordinator::{Replicas, Replication};
    use crate::dots::DotCounter;
    use crate::storage::Storage;

    #[tokio::test]
    async fn kv_and_ping_over_grpc_with_specific_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = NodeId::new("strata-0").expect("id");
        let storage = Arc::new(
            Storage::open(
                &dir.path().join("engine"),
                strata_engine::Durability::SyncEachGroup,
            )
            .expect("storage"),
        );
        let coordinator = Arc::new(Coordinator::new(
            id.clone(),
            Replicas::local_only(&id, 16, storage),
            DotCounter::open(dir.path(), id.clone()).expect("dots"),
            Replication {
                factor: 1,
                write: ConsistencyLevel::Quorum,
                read: ConsistencyLevel::Quorum,
            },
            1024,
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(id, coordinator, listener, async {
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
        assert_eq!(
            (pong.node_id.as_str(), &pong.payload[..]),
            ("strata-0", &b"hello"[..])
        );

        let mut kv = KvClient::new(channel);
        let put = PutRequest {
            key: b"k".to_vec().into(),
            value: b"v".to_vec().into(),
            ..PutRequest::default()
        };
        kv.put(put.clone()).await.expect("put");
        let got = kv
            .get(GetRequest {
                key: b"k".to_vec().into(),
                consistency: None,
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.siblings.len(), 1);
        assert_eq!(&got.siblings[0].value[..], b"v");
        assert!(!got.context.is_empty());

        let invalid = [
            PutRequest {
                key: Default::default(),
                ..put.clone()
            },
            PutRequest {
                value: vec![0; 2048].into(),
                ..put.clone()
            },
            PutRequest {
                consistency: Some(v1::Consistency {
                    level: Some(v1::consistency::Level::Named(77)),
                }),
                ..put.clone()
            },
        ];
        for request in invalid {
            let status = kv.put(request).await.expect_err("invalid");
            assert_eq!(
                status.code(),
                tonic::Code::InvalidArgument,
                "{}",
                status.message()
            );
        }
        let all = PutRequest {
            consistency: Some(v1::Consistency::replicas(2)),
            ..put
        };
        let status = kv.put(all).await.expect_err("2 replicas of N=1");
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "{}",
            status.message()
        );

        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
    }
}
