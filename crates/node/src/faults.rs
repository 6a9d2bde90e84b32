//! Fault injection for tests: cut this node's links to chosen peers.
//!
//! With `--fault-file PATH` the node reads PATH every 50 ms; each line is
//! a peer address (`host:port`, the peer's gRPC address and, by default,
//! its gossip address too). Gossip datagrams to and from those addresses
//! are dropped and gRPC requests to them fail as unreachable, so writing
//! each side's file cuts a link both ways (a partition), and emptying the
//! files heals it. Client traffic to the node is untouched. Without the
//! flag nothing is ever blocked.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};

use crate::gossip_auth::SealedUdp;

/// The set of peer addresses this node cannot reach.
#[derive(Debug, Default)]
pub struct Faults {
    blocked: RwLock<HashSet<String>>,
}

impl Faults {
    /// Whether traffic to or from `address` is cut.
    #[must_use]
    pub fn is_blocked(&self, address: &str) -> bool {
        let blocked = self
            .blocked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !blocked.is_empty() && blocked.contains(address)
    }

    /// Replaces the blocked set.
    pub fn set(&self, addresses: impl IntoIterator<Item = String>) {
        let new: HashSet<String> = addresses.into_iter().collect();
        let mut blocked = self
            .blocked
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *blocked != new {
            tracing::warn!(blocked = ?new, "fault injection: links cut");
            *blocked = new;
        }
    }

    /// Applies `path`'s contents now (a missing file blocks nothing): a
    /// node started behind a cut must not send its first packet across it.
    pub fn load(&self, path: &std::path::Path) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        self.set(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
        );
    }

    /// Applies `path`'s contents every 50 ms until `stop`.
    pub async fn watch(self: Arc<Self>, path: PathBuf, stop: impl Future<Output = ()>) {
        let work = async {
            loop {
                // A few bytes from a local file: cheaper inline than a thread hop.
                self.load(&path);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            () = work => {}
            () = stop => {}
        }
    }
}

/// UDP gossip that drops datagrams to and from blocked addresses.
#[derive(Debug)]
pub struct FaultyTransport {
    /// What is cut.
    pub faults: Arc<Faults>,
    /// The gossip underneath (sealed with the shared key, if any).
    pub inner: SealedUdp,
}

struct FaultySocket {
    inner: Box<dyn Socket>,
    faults: Arc<Faults>,
}

#[async_trait::async_trait]
impl Transport for FaultyTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(FaultySocket {
            inner: self.inner.open(listen_addr).await?,
            faults: Arc::clone(&self.faults),
        }))
    }
}

#[async_trait::async_trait]
impl Socket for FaultySocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: chitchat::ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.faults.is_blocked(&to.to_string()) {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.inner.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let outcome = self.inner.recv().await?;
            if !self.faults.is_blocked(&outcome.from_addr.to_string()) {
                return Ok(outcome);
            }
        }
    }
}
