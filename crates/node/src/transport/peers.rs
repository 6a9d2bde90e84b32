//! The pool of peers, one per address, and the gRPC [`ReplicaTransport`].
//!
//! A tonic `Channel` multiplexes concurrent requests over one HTTP/2
//! connection and reconnects by itself, so one per peer address is enough.
//! A peer that is down fails requests fast (connection refused) rather
//! than after the request deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_cluster::{NodeId, Siblings};
use strata_proto::v1::{KeyVersions, ReplicaReadRequest, ReplicaWriteRequest, kv_client::KvClient};
use tonic::transport::Channel;

use super::channel::{connect, kv_client, replica_client};
use super::{Batcher, Pipe, RemoteReplica, ReplicaError, ReplicaTransport};
use crate::faults::Faults;
use crate::storage::{siblings_from_proto, version_to_proto};

/// Channels to peers, by `host:port`.
#[derive(Debug)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    connect_timeout: Duration,
    /// How long a write batch may take.
    batch_timeout: Duration,
    faults: Arc<Faults>,
    tls: Option<crate::tls::TlsConnector>,
}

impl Peers {
    /// A pool whose connection attempts give up after `connect_timeout`
    /// and whose write batches get `batch_timeout` each.
    #[must_use]
    pub fn new(connect_timeout: Duration, batch_timeout: Duration) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            connect_timeout,
            batch_timeout,
            faults: Arc::default(),
            tls: None,
        }
    }

    /// The same pool, dialling peers with TLS (mutual, against the
    /// cluster CA).
    #[must_use]
    pub fn with_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(crate::tls::TlsConnector::new(config));
        self
    }

    /// The same pool, failing requests to peers `faults` cuts off.
    #[must_use]
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// The KV service at `address` (forwarding to a replica coordinator).
    ///
    /// # Errors
    /// As [`Peers::channel`].
    pub fn kv(&self, address: &str) -> Result<KvClient<Channel>, ReplicaError> {
        Ok(kv_client(self.channel(address)?))
    }

    /// What the coordinator uses to reach `address`: its pipe and write
    /// batcher, started on first use.
    ///
    /// # Errors
    /// As [`Peers::channel`].
    pub fn peer(&self, address: &str) -> Result<Arc<Peer>, ReplicaError> {
        if self.faults.is_blocked(address) {
            return Err(cut(address));
        }
        let mut peers = self.peers.lock().expect("peer lock");
        if let Some(peer) = peers.get(address) {
            return Ok(Arc::clone(peer));
        }
        let channel = self.channel(address)?;
        let pipe = Arc::new(Pipe::new(channel.clone()));
        let peer = Arc::new(Peer {
            batcher: Batcher::start(Arc::clone(&pipe), self.batch_timeout),
            pipe,
            channel,
        });
        peers.insert(address.to_owned(), Arc::clone(&peer));
        Ok(peer)
    }

    /// The channel to `address`, created on first use.
    ///
    /// # Errors
    /// [`ReplicaError::Unreachable`] when `address` is not a usable
    /// `host:port` or fault injection cut the link.
    pub fn channel(&self, address: &str) -> Result<Channel, ReplicaError> {
        if self.faults.is_blocked(address) {
            return Err(cut(address));
        }
        let mut channels = self.channels.lock().expect("peer lock");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = connect(address, self.connect_timeout, self.tls.as_ref())?;
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }
}

#[async_trait::async_trait]
impl ReplicaTransport for Peers {
    async fn read(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Siblings, ReplicaError> {
        let peer = self.peer(&replica.address)?;
        let request = ReplicaReadRequest {
            key: key.to_vec().into(),
        };
        let versions = peer.pipe().read(request, timeout).await?.versions;
        siblings_from_proto(versions)
            .map_err(|e| ReplicaError::BadReply(format!("an unreadable version: {e}")))
    }

    async fn write(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        siblings: &Siblings,
        hint_for: Option<&NodeId>,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        let peer = self.peer(&replica.address)?;
        let versions = siblings.versions().iter().map(version_to_proto).collect();
        let Some(hint_for) = hint_for else {
            // Joins the peer's next batch (see `batcher.rs`).
            return peer
                .batcher()
                .write(KeyVersions {
                    key: key.to_vec().into(),
                    versions,
                })
                .await;
        };
        let request = ReplicaWriteRequest {
            key: key.to_vec().into(),
            versions,
            hint_for: hint_for.to_string(),
        };
        let mut client = replica_client(peer.channel());
        match tokio::time::timeout(timeout, client.write(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(ReplicaError::from_status(&status)),
            Err(_) => Err(ReplicaError::Timeout(timeout)),
        }
    }
}

/// One peer as the coordinator reaches it.
#[derive(Debug)]
pub struct Peer {
    channel: Channel,
    pipe: Arc<Pipe>,
    batcher: Batcher,
}

impl Peer {
    /// The peer's channel, for unary calls.
    #[must_use]
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The stream carrying replica reads and write batches.
    #[must_use]
    pub fn pipe(&self) -> &Pipe {
        &self.pipe
    }

    /// The queue coalescing replica writes into batches on the pipe.
    #[must_use]
    pub fn batcher(&self) -> &Batcher {
        &self.batcher
    }
}

fn cut(address: &str) -> ReplicaError {
    ReplicaError::Unreachable(format!("link to {address} cut by fault injection"))
}
