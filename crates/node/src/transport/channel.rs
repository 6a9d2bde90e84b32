//! Channels and clients to other nodes.

use std::time::Duration;

use strata_proto::v1::{kv_client::KvClient, replica_client::ReplicaClient};
use tonic::transport::{Channel, Endpoint};

use super::ReplicaError;

/// Largest message between nodes. A sibling set is one engine write, which
/// the engine caps at 64 MiB, so this leaves room for framing.
pub const MAX_MESSAGE_BYTES: usize = 128 << 20;

/// A lazily connecting channel to `address` (`host:port`).
///
/// # Errors
/// [`ReplicaError::Unreachable`] when `address` is not a usable URI.
pub(super) fn connect(
    address: &str,
    connect_timeout: Duration,
    tls: Option<&crate::tls::TlsConnector>,
) -> Result<Channel, ReplicaError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| ReplicaError::Unreachable(format!("peer address {address:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        // Range streaming sends 1 MiB messages: in 1 MiB frames (not
        // h2's default 16 KiB) and with windows that let four streams run
        // without waiting for window updates.
        .max_frame_size(1 << 20)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(32 << 20);
    Ok(match tls {
        // The connector does TLS (mutual, reloading the node's pair).
        Some(tls) => endpoint.connect_with_connector_lazy(tls.clone()),
        None => endpoint.connect_lazy(),
    })
}

/// A replica-service client on `channel`.
#[must_use]
pub fn replica_client(channel: Channel) -> ReplicaClient<Channel> {
    ReplicaClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// A KV-service client on `channel` (forwarding a write to a replica).
#[must_use]
pub(super) fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}
