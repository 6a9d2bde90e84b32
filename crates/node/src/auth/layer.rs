//! The one place client credentials are checked: a tower layer on the
//! client server that reads `authorization: Bearer <token>` and refuses
//! with `UNAUTHENTICATED` or `PERMISSION_DENIED` before any service runs.
//! The tokens file is re-read when it changes (Kubernetes updates a
//! mounted Secret in place), without a restart; a file that no longer
//! parses keeps the previous tokens and is logged.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tonic::Status;

use super::tokens::{Denied, Tokens};
use crate::metrics::Metrics;

/// The accepted tokens, reloaded from their file.
#[derive(Debug)]
pub struct TokenStore {
    path: PathBuf,
    tokens: RwLock<(Tokens, Option<SystemTime>)>,
    metrics: Arc<Metrics>,
}

/// Why the tokens file could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Its contents are wrong.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: super::tokens::TokensFileError,
    },
}

fn read(path: &Path) -> Result<(Tokens, Option<SystemTime>), LoadError> {
    let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let tokens = Tokens::parse(&text).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })?;
    Ok((tokens, modified))
}

impl TokenStore {
    /// Loads `path`.
    ///
    /// # Errors
    /// [`LoadError`]: a node with a bad tokens file does not start.
    pub fn load(path: &Path, metrics: Arc<Metrics>) -> Result<Self, LoadError> {
        let loaded = read(path)?;
        tracing::info!(file = %path.display(), tokens = loaded.0.len(), "client tokens loaded");
        Ok(Self {
            path: path.to_owned(),
            tokens: RwLock::new(loaded),
            metrics,
        })
    }

    /// Re-reads the file if it changed since the last load.
    pub fn reload_if_changed(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.tokens.read().expect("tokens lock").1 {
            return;
        }
        match read(&self.path) {
            Ok(loaded) => {
                tracing::info!(file = %self.path.display(), tokens = loaded.0.len(), "client tokens reloaded");
                *self.tokens.write().expect("tokens lock") = loaded;
            }
            Err(e) => {
                tracing::error!(error = %e, "client tokens file changed but does not load; keeping the previous tokens");
            }
        }
    }

    /// Re-reads the file every `period` until `stop` completes.
    pub async fn watch(self: Arc<Self>, period: Duration, stop: impl Future<Output = ()>) {
        let watch = async {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let store = Arc::clone(&self);
                let _ = tokio::task::spawn_blocking(move || store.reload_if_changed()).await;
            }
        };
        tokio::select! {
            () = watch => {}
            () = stop => {}
        }
    }

    fn check(&self, path: &str, authorization: Option<&[u8]>) -> Result<(), Status> {
        let checked = self
            .tokens
            .read()
            .expect("tokens lock")
            .0
            .check(path, authorization);
        checked.map_err(|denied| {
            self.metrics
                .auth_denied(matches!(denied, Denied::Unauthenticated));
            match denied {
                Denied::Unauthenticated => Status::unauthenticated(
                    "missing or invalid bearer token (send `authorization: Bearer <token>`)",
                ),
                Denied::Forbidden { needs, has } => Status::permission_denied(format!(
                    "{path} needs the {needs} role; this token has {has}"
                )),
            }
        })
    }
}

/// The credentials a `KV.Session` stream was opened with, checked again
/// for each operation on it: one stream carries reads and writes, and a
/// token revoked while it is open must stop working on it too.
#[derive(Debug, Clone)]
pub struct SessionCredentials {
    store: Arc<TokenStore>,
    authorization: Option<http::HeaderValue>,
}

impl SessionCredentials {
    /// The gRPC path of the session's operation methods (`/strata.v1.KV/Session`).
    pub const PATH: &'static str = "/strata.v1.KV/Session";

    /// Checks one operation, named by its unary method's `path`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED`, as the unary call gets.
    pub fn check(&self, path: &str) -> Result<(), Status> {
        self.store.check(
            path,
            self.authorization.as_ref().map(http::HeaderValue::as_bytes),
        )
    }
}

/// Checks every request against a [`TokenStore`] (`None`: lets every
/// request through, for a node without client authentication).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    store: Option<Arc<TokenStore>>,
}

impl AuthLayer {
    /// A layer checking against `store`, if any.
    #[must_use]
    pub fn new(store: Option<Arc<TokenStore>>) -> Self {
        Self { store }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            store: self.store.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    store: Option<Arc<TokenStore>>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(store) = &self.store else {
            return Box::pin(self.inner.call(request));
        };
        let authorization = request.headers().get(http::header::AUTHORIZATION);
        match store.check(
            request.uri().path(),
            authorization.map(http::HeaderValue::as_bytes),
        ) {
            Ok(()) => {
                if request.uri().path() == SessionCredentials::PATH {
                    let credentials = SessionCredentials {
                        store: Arc::clone(store),
                        authorization: authorization.cloned(),
                    };
                    request.extensions_mut().insert(credentials);
                }
                Box::pin(self.inner.call(request))
            }
            Err(status) => {
                let response = status.into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
