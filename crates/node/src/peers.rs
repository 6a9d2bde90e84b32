//! gRPC channels to other nodes, one per address, connected lazily.
//!
//! A tonic `Channel` multiplexes concurrent requests over one HTTP/2
//! connection and reconnects by itself, so one per peer address is enough.
//! A peer that is down fails requests fast (connection refused) rather
//! than after the request deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::v1::{kv_client::KvClient, replica_client::ReplicaClient};
use tonic::transport::{Channel, Endpoint};

use crate::batcher::Batcher;
use crate::faults::Faults;
use crate::pipe::Pipe;

/// Channels to peers, by `host:port`.
#[derive(Debug)]
pub struct Peers {
    channels: Mutex<HashMap<String, Channel>>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    connect_timeout: Duration,
    faults: Arc<Faults>,
}

impl Peers {
    /// A pool whose connection attempts give up after `connect_timeout`.
    #[must_use]
    pub fn new(connect_timeout: Duration) -> Self {
        Self {
            channels: Mutex::new(HashMap::new()),
            peers: Mutex::new(HashMap::new()),
            connect_timeout,
            faults: Arc::default(),
        }
    }

    /// The same pool, failing requests to peers `faults` cuts off.
    #[must_use]
    pub fn with_faults(mut self, faults: Arc<Faults>) -> Self {
        self.faults = faults;
        self
    }

    /// A replica-service client on `channel`.
    #[must_use]
    pub fn replica_client(channel: Channel) -> ReplicaClient<Channel> {
        ReplicaClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// The KV service at `address` (forwarding to a replica coordinator).
    ///
    /// # Errors
    /// A message when `address` is not a usable `host:port`.
    pub fn kv(&self, address: &str) -> Result<KvClient<Channel>, String> {
        Ok(KvClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// What the coordinator uses to reach `address`: its pipe and write
    /// batcher, started on first use; batches get `timeout` each.
    ///
    /// # Errors
    /// As [`Peers::channel`].
    pub fn peer(&self, address: &str, timeout: Duration) -> Result<Arc<Peer>, String> {
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
            batcher: Batcher::start(Arc::clone(&pipe), timeout),
            pipe,
            channel,
        });
        peers.insert(address.to_owned(), Arc::clone(&peer));
        Ok(peer)
    }

    /// The channel to `address`, created on first use.
    ///
    /// # Errors
    /// A message when `address` is not a usable `host:port`.
    pub fn channel(&self, address: &str) -> Result<Channel, String> {
        if self.faults.is_blocked(address) {
            return Err(cut(address));
        }
        let mut channels = self.channels.lock().expect("peer lock");
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("peer address {address:?}: {e}"))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
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

fn cut(address: &str) -> String {
    format!("link to {address} cut by fault injection")
}

/// Largest message between nodes. A sibling set is one engine write, which
/// the engine caps at 64 MiB, so this leaves room for framing.
pub const MAX_MESSAGE_BYTES: usize = 128 << 20;
