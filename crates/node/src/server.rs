//! Assembles the gRPC server for one node.

use std::future::Future;
use std::sync::Arc;

use strata_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, replica_server::ReplicaServer,
};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;

use crate::admission::WriteBudget;
use crate::changes::Changes;
use crate::connections::{ConnectionCap, PEER_ROOM, incoming};
use crate::context::Context;
use crate::coordinator::Coordinator;
use crate::repair::Repairer;
use crate::services::{AdminService, KvService, ReplicaService};
use crate::transport::MAX_MESSAGE_BYTES;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener or a connection failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The listener has no local address.
    #[error("listener: {0}")]
    Listener(std::io::Error),
    /// The reflection service could not be built from the descriptors.
    #[error(transparent)]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// The sockets a node serves gRPC on, and who may call.
#[derive(Debug)]
pub struct Sockets {
    /// Clients: `KV`, `Admin`, health, reflection (and `Replica` when
    /// there is no internal socket).
    pub grpc: TcpListener,
    /// Other nodes: `Replica`, `Admin` and health.
    pub internal: Option<TcpListener>,
    /// Client tokens checked on `grpc` (`None`: no client authentication).
    pub tokens: Option<Arc<crate::auth::TokenStore>>,
    /// TLS for both sockets (`None`: plaintext).
    pub tls: Option<crate::tls::NodeTls>,
    /// Open connections on both sockets together at most.
    pub max_connections: usize,
}

/// Serves every Strata service, `grpc.health.v1.Health` and server
/// reflection on `sockets` until `shutdown` completes: one server for
/// everything, or, with an internal socket, client services on one and the
/// node-to-node `Replica` service on the other.
///
/// # Errors
/// [`ServeError`].
pub async fn serve(
    ctx: Arc<Context>,
    coordinator: Arc<Coordinator>,
    repairer: Arc<Repairer>,
    changes: Option<Arc<Changes>>,
    sockets: Sockets,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = sockets.grpc.local_addr().map_err(ServeError::Listener)?;
    let admin = Arc::new(AdminService::new(
        ctx.id.clone(),
        addr,
        Arc::clone(&ctx),
        Arc::clone(&repairer),
        changes,
    ));
    // One shutdown for both servers. Pipes are long-lived streams: they
    // end when the server stops (after answering what they already
    // received), or the graceful shutdown would wait for them forever.
    let (stopping, stop_pipes) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let replica = ReplicaServer::new(ReplicaService::new(&ctx, repairer, stop_pipes.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Large enough that an oversized value reaches request validation and
    // gets INVALID_ARGUMENT naming the limit, not a transport error.
    let max_message = ctx
        .settings
        .max_value_bytes
        .saturating_add(2 << 20)
        .max(MAX_MESSAGE_BYTES / 2);
    let (health, health_service) = tonic_health::server::health_reporter();
    // Empty name: the server as a whole, as grpc-health-probe asks.
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(crate::storage_health::LIVENESS, ServingStatus::Serving)
        .await;
    health.set_serving::<KvServer<KvService>>().await;
    health.set_serving::<AdminServer<AdminService>>().await;
    health.set_serving::<ReplicaServer<ReplicaService>>().await;
    let store = Arc::clone(&ctx.storage);
    tokio::spawn(crate::storage_health::watch(
        health.clone(),
        move || {
            store
                .failure()
                .map(|text| crate::storage_health::StoreFailure {
                    text,
                    damaged: store.damaged(),
                })
        },
        stop_pipes.clone(),
    ));
    // Both versions of reflection: v1 for current tools (grpcurl, grpcui),
    // v1alpha for the clients that still ask only it (Python's
    // grpcio-reflection, grpcurl before 1.8.8).
    let reflection = reflection_builder().build_v1()?;
    let reflection_v1alpha = reflection_builder().build_v1alpha()?;
    let budget = Arc::new(WriteBudget::new(ctx.settings.max_write_bytes_in_flight));
    let kv = KvServer::new(KvService::new(
        coordinator,
        Arc::clone(&ctx.metrics),
        Arc::clone(&budget),
        &ctx.id.to_string(),
        stop_pipes.clone(),
    ))
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let client_services = tonic::transport::Server::builder()
        .layer(crate::auth::AuthLayer::new(sockets.tokens))
        .layer(crate::arrival::AdmitOnArrivalLayer::new(
            budget,
            Arc::clone(&ctx.metrics),
            max_message,
        ))
        .add_service(health_service.clone())
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(kv.clone())
        .add_service(AdminServer::from_arc(Arc::clone(&admin)));
    let cap = ConnectionCap::new(sockets.max_connections, Arc::clone(&ctx.metrics));
    match (sockets.internal, sockets.tls) {
        (None, _) => Ok(client_services
            .add_service(replica)
            .serve_with_incoming_shutdown(incoming(sockets.grpc, cap), stopped(stop_pipes))
            .await?),
        (Some(internal), tls) => {
            // Node to node: Replica, Admin, and KV for forwarded writes
            // (past the client port's tokens: only nodes reach this port).
            let internal_services = tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(replica)
                .add_service(AdminServer::from_arc(admin))
                .add_service(kv);
            // Clients leave room under the cap for other nodes.
            let client_cap = cap.leaving(PEER_ROOM);
            let (client, internal) = match tls {
                None => tokio::join!(
                    client_services.serve_with_incoming_shutdown(
                        incoming(sockets.grpc, client_cap),
                        stopped(stop_pipes.clone())
                    ),
                    internal_services
                        .serve_with_incoming_shutdown(incoming(internal, cap), stopped(stop_pipes)),
                ),
                Some(tls) => tokio::join!(
                    client_services.serve_with_incoming_shutdown(
                        crate::tls::incoming(sockets.grpc, tls.client_port, client_cap),
                        stopped(stop_pipes.clone())
                    ),
                    internal_services.serve_with_incoming_shutdown(
                        crate::tls::incoming(internal, tls.internal_port, cap),
                        stopped(stop_pipes)
                    ),
                ),
            };
            client?;
            Ok(internal?)
        }
    }
}

/// Reflection over Strata's and the health service's descriptors.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

#[cfg(test)]
mod tests {
    use strata_proto::v1::{
        self, GetRequest, PingRequest, PutRequest, admin_client::AdminClient, kv_client::KvClient,
    };

    use super::*;
    use crate::dots::DotCounter;
    use crate::testing::ContextBuilder;

    /// Asks reflection version `$pb` (`tonic_reflection::pb::v1` or
    /// `v1alpha`, whose types differ) one question; its one answer.
    macro_rules! reflect {
        ($pb:path, $channel:expr, $request:expr) => {{
            use $pb as pb;
            let request = pb::ServerReflectionRequest {
                host: String::new(),
                message_request: Some($request),
            };
            pb::server_reflection_client::ServerReflectionClient::new($channel)
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .expect("reflection")
                .into_inner()
                .message()
                .await
                .expect("stream")
                .expect("one response")
                .message_response
        }};
    }

    /// Service names reflection version `$pb` lists, sorted, without
    /// reflection's own.
    macro_rules! reflected_services {
        ($pb:path, $channel:expr) => {{
            use $pb as pb;
            let answer = reflect!(
                $pb,
                $channel,
                pb::server_reflection_request::MessageRequest::ListServices(String::new())
            );
            let Some(pb::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
                answer
            else {
                panic!("unexpected reflection response {answer:?}");
            };
            let mut names: Vec<String> = list
                .service
                .into_iter()
                .map(|s| s.name)
                .filter(|n| !n.starts_with("grpc.reflection"))
                .collect();
            names.sort();
            names
        }};
    }

    /// The (lossy) text of the first file descriptor reflection version
    /// `$pb` returns for `$symbol`.
    macro_rules! reflected_file {
        ($pb:path, $channel:expr, $symbol:expr) => {{
            use $pb as pb;
            let answer = reflect!(
                $pb,
                $channel,
                pb::server_reflection_request::MessageRequest::FileContainingSymbol(
                    $symbol.to_owned()
                )
            );
            let Some(pb::server_reflection_response::MessageResponse::FileDescriptorResponse(
                files,
            )) = answer
            else {
                panic!("unexpected reflection response {answer:?}");
            };
            String::from_utf8_lossy(&files.file_descriptor_proto[0]).into_owned()
        }};
    }

    #[tokio::test]
    async fn kv_and_ping_over_grpc_with_specific_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = ContextBuilder::new(dir.path()).build();
        let metrics = Arc::clone(&ctx.metrics);
        let coordinator = Arc::new(Coordinator::new(
            Arc::clone(&ctx),
            DotCounter::open(dir.path(), ctx.id.clone()).expect("dots"),
        ));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let repairer = Arc::new(Repairer::new(
            Arc::clone(&ctx),
            crate::NodeConfig::defaults()
                .expect("defaults")
                .repair_settings(),
        ));
        let sockets = Sockets {
            grpc: listener,
            internal: None,
            tokens: None,
            tls: None,
            max_connections: 64,
        };
        let server = tokio::spawn(serve(ctx, coordinator, repairer, None, sockets, async {
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

        let mut kv = KvClient::new(channel.clone());
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

        let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
        for service in ["", "strata.v1.KV", crate::storage_health::LIVENESS] {
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(
                status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            );
        }
        let services = [
            "grpc.health.v1.Health",
            "strata.v1.Admin",
            "strata.v1.KV",
            "strata.v1.Replica",
        ];
        assert_eq!(
            reflected_services!(tonic_reflection::pb::v1, channel.clone()),
            services
        );
        assert_eq!(
            reflected_services!(tonic_reflection::pb::v1alpha, channel.clone()),
            services
        );
        // A client that knows only the service name can fetch its schema.
        let kv_file = reflected_file!(tonic_reflection::pb::v1alpha, channel, "strata.v1.KV");
        assert!(kv_file.contains("strata/v1/kv.proto"), "{kv_file}");

        let text = metrics.render(&strata_engine::Stats::default());
        assert!(
            text.contains(r#"strata_requests_total{rpc="Put",code="Ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"strata_requests_total{rpc="Put",code="InvalidArgument"} 4"#),
            "{text}"
        );

        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
    }
}
