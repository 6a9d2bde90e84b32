//! A small in-process Kubernetes API server (test infrastructure): enough
//! of the REST API for kube-rs clients, watches and the operator's
//! controller to run against it over plain HTTP on 127.0.0.1.
//!
//! Served: discovery of the version (`/version`); get, list (label and
//! field selectors), watch (replay from a resource version, then live),
//! create, replace (optimistic concurrency), patch (server-side apply as a
//! deep merge, merge patch, JSON patch), delete (finalizers, owner
//! garbage collection) and the `status` subresource, for any
//! `group/version/plural` path. Not served: admission, schema validation,
//! defaulting, field ownership (apply never removes fields).
//!
//! Two listeners: the harness uses one; the other, for the process under
//! test, records every request's verb and resource so a test can check
//! the operator's RBAC covers exactly what it does.

mod routes;
pub mod store;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use store::Store;

/// One audited request: verb (`get`, `list`, `watch`, `create`, `update`,
/// `patch`, `delete`), API group (`""` for core), resource, subresource.
pub type Audit = (String, String, String, String);

/// Shared by both listeners.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) audit: Mutex<BTreeSet<Audit>>,
}

/// A running API server; dropping it stops both listeners.
#[derive(Debug)]
pub struct ApiServer {
    shared: Arc<Shared>,
    harness: SocketAddr,
    audited: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    /// Starts the server on two free loopback ports.
    ///
    /// # Panics
    /// When no port can be bound.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for audit in [false, true] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the API server");
            addrs.push(listener.local_addr().expect("address"));
            let app = routes::router(Arc::clone(&shared), audit);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }));
        }
        Self {
            shared,
            harness: addrs[0],
            audited: addrs[1],
            tasks,
        }
    }

    /// A kube client for the harness (not audited).
    ///
    /// # Panics
    /// Never for a valid address.
    #[must_use]
    pub fn client(&self, namespace: &str) -> kube::Client {
        let url = format!("http://{}", self.harness)
            .parse()
            .expect("http URL");
        let mut config = kube::Config::new(url);
        config.default_namespace = namespace.to_owned();
        kube::Client::try_from(config).expect("kube client")
    }

    /// Writes a kubeconfig for the audited listener to `path` (what the
    /// process under test reads through `KUBECONFIG`).
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: http://{}\n\
             users:\n- name: test\n  user: {{}}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: {namespace}\n\
             current-context: test\n",
            self.audited
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Every distinct request made on the audited listener.
    #[must_use]
    pub fn audit(&self) -> BTreeSet<Audit> {
        self.shared.audit.lock().expect("audit").clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
