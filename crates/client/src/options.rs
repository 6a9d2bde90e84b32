//! A client's settings and how an endpoint string becomes a connection's
//! address.

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::Error;

/// Tunables of a [`Client`](crate::Client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Nodes one request is tried on, at most.
    pub attempts: usize,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Send every request to the endpoint the client was created with
    /// instead of to a replica of its key (any node coordinates). For a
    /// network where only that endpoint is reachable, such as
    /// `kubectl port-forward`; costs one extra hop per request.
    pub direct: bool,
    /// Bearer token sent with every request, for a cluster with client
    /// authentication (`--auth-tokens-file` on the nodes).
    pub token: Option<String>,
    /// TLS, for nodes serving it (`--tls-cert`): `None` is plaintext.
    pub tls: Option<TlsOptions>,
    /// Send Gets, Puts, Deletes and Pings on one long-lived stream per node
    /// (`KV.Session`) instead of a unary call each: less CPU per request on
    /// both ends. Off: every request is its own call. Nodes that do not
    /// serve sessions get unary calls either way.
    pub sessions: bool,
}

/// A client's TLS settings (PEM bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The CA that signed the nodes' certificates.
    pub ca: Vec<u8>,
    /// A client certificate and key, for nodes that require one
    /// (`--tls-client-ca`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_bytes", &self.ca.len())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TlsOptions {
    pub(crate) fn config(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(10),
            direct: false,
            token: None,
            tls: None,
            sessions: true,
        }
    }
}

/// The port a node's gRPC server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7400;

/// `host:port` as given, or `host` with [`DEFAULT_PORT`] (without it the
/// URI's scheme would pick port 80 or 443, where no node listens).
fn with_default_port(bare: &str) -> std::borrow::Cow<'_, str> {
    match format!("http://{bare}").parse::<tonic::transport::Uri>() {
        Ok(uri) if uri.port().is_none() && uri.host().is_some_and(|h| !h.is_empty()) => {
            std::borrow::Cow::Owned(format!("{bare}:{DEFAULT_PORT}"))
        }
        _ => std::borrow::Cow::Borrowed(bare),
    }
}

pub(crate) fn endpoint_for(endpoint: &str, tls: Option<&TlsOptions>) -> Result<Endpoint, Error> {
    let bare = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let with_port = with_default_port(bare);
    let built = Endpoint::from_shared(format!("{scheme}://{with_port}"))
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // A connection whose peer vanished without a reset (a partition,
        // a powered-off host) fails within ~15 s instead of holding a
        // session's requests until each times out.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1));
    match tls {
        Some(tls) => built
            .tls_config(tls.config())
            .map_err(|e| invalid(format!("TLS settings: {e}"))),
        None => Ok(built),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_without_a_port_gets_the_nodes_default() {
        for (given, used) in [
            ("db-0.kv", "db-0.kv:7400"),
            ("127.0.0.1", "127.0.0.1:7400"),
            ("[::1]", "[::1]:7400"),
            ("db-0.kv:9000", "db-0.kv:9000"),
            ("[::1]:9000", "[::1]:9000"),
        ] {
            assert_eq!(with_default_port(given), used);
        }
        let endpoint = endpoint_for("http://127.0.0.1", None).expect("valid");
        assert_eq!(endpoint.uri().port_u16(), Some(7400));
    }
}
