//! TLS with rustls (ring), no OpenSSL. A node's certificate and key are
//! read from files and re-read when they change (Kubernetes rotates a
//! mounted Secret in place): every new handshake, served or made, uses the
//! current pair, so a rotation needs no restart and fails no request. The
//! CA bundles are re-read as well (below).
//!
//! - The internal port requires a client certificate signed by the
//!   cluster CA (mutual TLS): only nodes reach `Replica`.
//! - The client port serves TLS with the same certificate and, with
//!   `--tls-client-ca`, requires client certificates signed by that CA.
//! - Node-to-node calls present the node's certificate and verify the
//!   peer's against the cluster CA and the address dialled.
//!
//! CA bundles are re-read when they change too (`Roots`): the verifiers
//! are rebuilt for the next handshake, so a CA rotation (new bundle with
//! both CAs, then new certificates, then the old CA dropped) needs no
//! restart either.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::UnixTime;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};

/// How long a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA bundle.
///
/// # Errors
/// [`TlsError::File`] when it cannot be read or holds no certificate.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
        roots
            .add(cert.map_err(|e| file_error(path, e))?)
            .map_err(|e| file_error(path, e))?;
    }
    if roots.is_empty() {
        return Err(file_error(path, "no certificate in the CA file"));
    }
    Ok(roots)
}

/// A CA bundle, re-read when its file changes (a bundle that fails to
/// load keeps the previous one, logged).
#[derive(Debug)]
pub struct Roots {
    path: PathBuf,
    current: RwLock<(Arc<RootCertStore>, Option<SystemTime>)>,
}

impl Roots {
    /// Loads `path`.
    ///
    /// # Errors
    /// [`TlsError::File`].
    pub fn load(path: &Path) -> Result<Self, TlsError> {
        let roots = load_roots(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new((Arc::new(roots), modified(path))),
        })
    }

    /// The current bundle, re-read first if the file changed.
    pub fn current(&self) -> Arc<RootCertStore> {
        let now = modified(&self.path);
        {
            let current = self.current.read().expect("roots lock");
            if current.1 == now {
                return Arc::clone(&current.0);
            }
        }
        let mut current = self.current.write().expect("roots lock");
        match load_roots(&self.path) {
            Ok(roots) => {
                tracing::info!(ca = %self.path.display(), "CA bundle reloaded");
                *current = (Arc::new(roots), now);
            }
            Err(e) => {
                tracing::warn!(error = %e, "CA bundle changed but does not load; keeping the previous one");
            }
        }
        Arc::clone(&current.0)
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A verifier rebuilt whenever its CA bundle changes.
#[derive(Debug)]
struct Rebuilt<V: ?Sized> {
    roots: Arc<Roots>,
    built: RwLock<(Arc<RootCertStore>, Arc<V>)>,
    build: fn(Arc<RootCertStore>) -> Result<Arc<V>, TlsError>,
}

impl<V: ?Sized> Rebuilt<V> {
    fn new(
        roots: Arc<Roots>,
        build: fn(Arc<RootCertStore>) -> Result<Arc<V>, TlsError>,
    ) -> Result<Self, TlsError> {
        let store = roots.current();
        let verifier = build(Arc::clone(&store))?;
        Ok(Self {
            roots,
            built: RwLock::new((store, verifier)),
            build,
        })
    }

    fn get(&self) -> Arc<V> {
        let store = self.roots.current();
        {
            let built = self.built.read().expect("verifier lock");
            if Arc::ptr_eq(&built.0, &store) {
                return Arc::clone(&built.1);
            }
        }
        let mut built = self.built.write().expect("verifier lock");
        match (self.build)(Arc::clone(&store)) {
            Ok(verifier) => *built = (store, verifier),
            Err(e) => tracing::warn!(error = %e, "cannot build a verifier from the new CA bundle"),
        }
        Arc::clone(&built.1)
    }
}

fn client_verifier(roots: Arc<RootCertStore>) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

fn server_verifier(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))
}

/// Client certificates: signed by the current CA bundle and, with a
/// pattern, carrying a matching DNS name.
#[derive(Debug)]
struct NodeClientVerifier {
    webpki: Rebuilt<dyn ClientCertVerifier>,
    pattern: Option<String>,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; a client with one certificate needs none.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .webpki
            .get()
            .verify_client_cert(end_entity, intermediates, now)?;
        let Some(pattern) = &self.pattern else {
            return Ok(verified);
        };
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|e| rustls::Error::General(format!("unreadable certificate: {e}")))?;
        if cert
            .valid_dns_names()
            .any(|name| name_matches(pattern, name))
        {
            Ok(verified)
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.get().supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}

/// Server certificates of peers: verified against the current bundle.
#[derive(Debug)]
struct PeerServerVerifier(Rebuilt<WebPkiServerVerifier>);

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.get().supported_verify_schemes()
    }
}

/// The node's certificate chain and key, re-read when either file
/// changes. A pair that fails to load keeps the previous one (logged).
#[derive(Debug)]
pub struct Identity {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

/// Modification times of the two files.
type Stamp = (Option<SystemTime>, Option<SystemTime>);

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (modified(cert), modified(key))
}

fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error(cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert, e))?;
    if chain.is_empty() {
        return Err(file_error(cert, "no certificate"));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| file_error(key, e))?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()
        .map_err(|e| file_error(key, format!("does not match the certificate: {e}")))?;
    Ok(Arc::new(pair))
}

impl Identity {
    /// Loads `cert` (PEM chain) and `key` (PEM private key).
    ///
    /// # Errors
    /// [`TlsError`]: a node with unusable files does not start.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pair = load_pair(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new((pair, stamp(cert, key))),
        })
    }

    /// The current pair, re-read first if a file changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let now = stamp(&self.cert, &self.key);
        {
            let current = self.current.read().expect("identity lock");
            if current.1 == now {
                return Arc::clone(&current.0);
            }
        }
        let mut current = self.current.write().expect("identity lock");
        match load_pair(&self.cert, &self.key) {
            Ok(pair) => {
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                *current = (pair, now);
            }
            Err(e) => {
                // A half-written pair (the key updated before the
                // certificate) loads on the next try; keep serving.
                tracing::warn!(error = %e, "TLS certificate changed but does not load yet; keeping the previous one");
            }
        }
        Arc::clone(&current.0)
    }
}

impl ResolvesServerCert for Identity {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for Identity {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether a certificate DNS name `name` fits `pattern`: the same name,
/// or for `*.suffix` any single label before `suffix` (or the same
/// wildcard). Case-insensitive.
#[must_use]
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.to_ascii_lowercase(), name.to_ascii_lowercase());
    if pattern == name {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*"),
        None => false,
    }
}

/// A server configuration presenting `identity`, requiring client
/// certificates signed by `client_roots` when given (and, with
/// `peer_name`, carrying a DNS name that matches it).
///
/// # Errors
/// [`TlsError::Config`].
pub fn server_config(
    identity: Arc<Identity>,
    client_roots: Option<Arc<Roots>>,
    peer_name: Option<&str>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_roots {
        Some(roots) => builder.with_client_cert_verifier(Arc::new(NodeClientVerifier {
            webpki: Rebuilt::new(roots, client_verifier)?,
            pattern: peer_name.map(str::to_owned),
        })),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration verifying servers against `roots` (re-read on
/// change) and presenting `identity`.
///
/// # Errors
/// [`TlsError::Config`].
pub fn client_config(
    identity: Arc<Identity>,
    roots: Arc<Roots>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = PeerServerVerifier(Rebuilt::new(roots, server_verifier)?);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(identity);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Connections accepted on `listener` under `cap` that completed a TLS
/// handshake, as tonic's incoming stream. Handshakes run concurrently (a
/// slow one holds up no other); failed ones are logged at debug and
/// dropped.
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    cap: crate::connections::ConnectionCap,
) -> tokio_stream::wrappers::ReceiverStream<
    io::Result<tokio_rustls::server::TlsStream<crate::connections::Counted>>,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = crate::connections::accept(&listener, &cap) => accepted,
                () = tx.closed() => return,
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Dials `host:port` with TLS for tonic (`Endpoint::connect_with_connector`):
/// the certificate is verified against the dialled host (name or IP).
#[derive(Debug, Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    /// A connector using `config`.
    #[must_use]
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = io::Result<
                    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
                >,
            > + Send,
    >,
>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// The TLS pieces a node runs with.
#[derive(Debug, Clone)]
pub struct NodeTls {
    /// The client port's server configuration.
    pub client_port: Arc<ServerConfig>,
    /// The internal port's server configuration (mutual TLS).
    pub internal_port: Arc<ServerConfig>,
    /// Node-to-node calls.
    pub peers: Arc<ClientConfig>,
}

impl NodeTls {
    /// From the node's files: `cert` and `key` (reloaded), the cluster
    /// `ca`, an optional CA for client certificates on the client port, and
    /// an optional DNS-name pattern every node certificate must match.
    ///
    /// # Errors
    /// [`TlsError`].
    pub fn load(
        cert: &Path,
        key: &Path,
        ca: &Path,
        client_ca: Option<&Path>,
        peer_name: Option<&str>,
    ) -> Result<Self, TlsError> {
        let identity = Arc::new(Identity::load(cert, key)?);
        let roots = Arc::new(Roots::load(ca)?);
        let client_roots = client_ca.map(Roots::load).transpose()?.map(Arc::new);
        Ok(Self {
            client_port: server_config(Arc::clone(&identity), client_roots, None)?,
            internal_port: server_config(
                Arc::clone(&identity),
                Some(Arc::clone(&roots)),
                peer_name,
            )?,
            peers: client_config(identity, roots)?,
        })
    }
}

/// `addr` as the URI tonic dials through a [`TlsConnector`] (the scheme
/// is not used for TLS; the connector does it).
#[must_use]
pub fn dial_uri(address: &str) -> String {
    format!("http://{address}")
}

#[cfg(test)]
mod tests {
    use super::name_matches;

    #[test]
    fn peer_name_patterns_match_one_label_or_the_same_name() {
        assert!(name_matches(
            "*.kv-peers.prod.svc",
            "kv-0.kv-peers.prod.svc"
        ));
        assert!(name_matches(
            "*.kv-peers.prod.svc",
            "KV-1.kv-peers.PROD.svc"
        ));
        assert!(name_matches("*.kv-peers.prod.svc", "*.kv-peers.prod.svc"));
        assert!(name_matches("node-0.example", "node-0.example"));
        assert!(!name_matches("*.kv-peers.prod.svc", "kv-peers.prod.svc"));
        assert!(!name_matches(
            "*.kv-peers.prod.svc",
            "a.b.kv-peers.prod.svc"
        ));
        assert!(!name_matches(
            "*.kv-peers.prod.svc",
            "kv-0.kv-peers.other.svc"
        ));
        assert!(!name_matches(
            "*.kv-peers.prod.svc",
            "evilkv-peers.prod.svc"
        ));
        assert!(!name_matches("node-0.example", "node-1.example"));
    }
}
