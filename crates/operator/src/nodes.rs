//! Talking to storage nodes through strata-client's Admin API: the ring,
//! joins, decommissions and their progress. Every call has a deadline, so
//! an unreachable pod costs one timeout, never a stuck reconcile.

use std::time::Duration;

use strata_client::{Client, ClientOptions};
use strata_proto::v1::{Operation, OperationKind, Ring};

/// Most characters of a node's storage failure kept for the status.
const MAX_FAILURE_CHARS: usize = 1000;

/// Why a node call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node answered with an error.
    #[error("node {address}: {source}")]
    Node {
        /// Where.
        address: String,
        /// What it said.
        #[source]
        source: strata_client::Error,
    },
    /// The node did not answer in time.
    #[error("node {address} did not answer within {timeout:?}")]
    Timeout {
        /// Where.
        address: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// The nodes' Admin API, with a deadline per call.
#[derive(Clone)]
pub struct Nodes {
    timeout: Duration,
    token: Option<String>,
    tls: Option<strata_client::TlsOptions>,
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nodes")
            .field("timeout", &self.timeout)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Nodes {
    /// Calls that wait at most `timeout` each, with `token` (an `admin`
    /// token, for clusters with client authentication) and `tls` (for
    /// nodes serving TLS).
    #[must_use]
    pub fn new(
        timeout: Duration,
        token: Option<String>,
        tls: Option<strata_client::TlsOptions>,
    ) -> Self {
        Self {
            timeout,
            token,
            tls,
        }
    }

    async fn call<T, F>(&self, address: &str, f: impl FnOnce(Client) -> F) -> Result<T, NodeError>
    where
        F: Future<Output = Result<T, strata_client::Error>>,
    {
        let options = ClientOptions {
            attempts: 1,
            timeout: self.timeout,
            direct: true,
            token: self.token.clone(),
            tls: self.tls.clone(),
            // Admin calls only, on a client made for each: no stream.
            sessions: false,
        };
        let work = async {
            let client = Client::connect_with(address, options).await?;
            f(client).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result.map_err(|source| NodeError::Node {
                address: address.to_owned(),
                source,
            }),
            Err(_) => Err(NodeError::Timeout {
                address: address.to_owned(),
                timeout: self.timeout,
            }),
        }
    }

    /// `f`'s answer from the first of `addresses` that gives one.
    async fn first_answer<T, F>(
        &self,
        addresses: &[String],
        f: impl Fn(Client) -> F + Copy,
    ) -> Option<T>
    where
        F: Future<Output = Result<T, strata_client::Error>>,
    {
        for address in addresses {
            match self.call(address, f).await {
                Ok(answer) => return Some(answer),
                Err(e) => tracing::debug!(error = %e, "no answer from this node; asking the next"),
            }
        }
        None
    }

    /// The ring as the first of `addresses` that answers sees it.
    pub async fn ring(&self, addresses: &[String]) -> Option<Ring> {
        self.first_answer(addresses, |c| async move { c.ring().await })
            .await
    }

    /// Each node that answered the cluster status of the first of
    /// `addresses` that answers it (which asks every member), with why its
    /// store refuses writes, if it does; empty when no node answers. A node
    /// that did not answer (down, restarting) is not listed: what it
    /// reported last still holds.
    pub async fn storage(&self, addresses: &[String]) -> Vec<(String, Option<String>)> {
        let Some(status) = self
            .first_answer(addresses, |c| async move { c.cluster_status().await })
            .await
        else {
            return Vec::new();
        };
        status
            .nodes
            .into_iter()
            // An empty version: the node did not answer.
            .filter(|n| !n.node_id.is_empty() && !n.version.is_empty())
            .map(|n| {
                let failure = n.engine.map(|e| e.failure).unwrap_or_default();
                // Bounded: it goes into the status and an Event.
                let failure: String = failure.chars().take(MAX_FAILURE_CHARS).collect();
                (n.node_id, (!failure.is_empty()).then_some(failure))
            })
            .collect()
    }

    /// Asks the node at `address` to join.
    ///
    /// # Errors
    /// [`NodeError`] when it refuses or cannot be reached.
    pub async fn join(&self, address: &str) -> Result<Operation, NodeError> {
        self.call(address, |c| async move { c.join().await }).await
    }

    /// Asks `node_id` to decommission itself, through the node at `address`
    /// (itself, or any node, which forwards).
    ///
    /// # Errors
    /// [`NodeError`] when it refuses (e.g. another change is running) or
    /// cannot be reached.
    pub async fn decommission(&self, address: &str, node_id: &str) -> Result<Operation, NodeError> {
        let node = node_id.to_owned();
        self.call(
            address,
            |c| async move { c.decommission(Some(&node)).await },
        )
        .await
    }

    /// The latest join or decommission the node at `address` ran.
    pub async fn change_progress(&self, address: &str) -> Option<Operation> {
        let operations = self
            .call(address, |c| async move { c.progress("").await })
            .await
            .ok()?;
        operations
            .into_iter()
            .filter(|op| {
                matches!(
                    OperationKind::try_from(op.kind),
                    Ok(OperationKind::Join | OperationKind::Decommission)
                )
            })
            .max_by_key(|op| op.started_at_micros)
    }
}
