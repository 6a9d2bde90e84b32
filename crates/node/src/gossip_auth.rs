//! Authenticated gossip: with a shared key (`--gossip-key-file`, from a
//! Secret), every gossip datagram carries an HMAC-SHA256 tag of its bytes
//! and a datagram without a valid tag is dropped unread. A process without
//! the key can neither join the ring nor tell anyone a node is dead: its
//! datagrams never reach chitchat. (A recorded datagram replayed later
//! carries only versions the receivers already have.) Without a key,
//! datagrams are plain chitchat, as before. The file may hold several keys
//! (the first seals, any opens) and is re-read when it changes, so a key
//! rotates without restarts (docs/security.md).
//!
//! chitchat does not expose its wire encoding, only `Socket`s that carry
//! envelopes. So each sealed socket keeps a private codec: a chitchat UDP
//! socket and a plain one, both on 127.0.0.1, that accept datagrams only
//! from each other. An envelope sent from the first arrives at the second
//! as chitchat's own bytes (which are then sealed and sent for real), and
//! opened bytes sent to the first come out as an envelope. Gossip is a
//! few datagrams per round; the loopback hop costs microseconds.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpTransport};
use ring::hmac;

use crate::gossip_health::{GossipHealth, Rejection};

/// Largest UDP payload (IPv4).
const MAX_DATAGRAM: usize = 65_507;
/// Bytes of the tag appended to each datagram.
const TAG_LEN: usize = 32;

/// The shared gossip key: the key that seals this node's datagrams, and
/// every key a datagram may be sealed with (the sealing key first). More
/// than one during a rotation (docs/security.md): each node accepts the old
/// and the new key while some seal with one and some with the other.
#[derive(Clone)]
pub struct GossipKey {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GossipKey(<{} redacted>)", self.keys.len())
    }
}

/// Why a gossip key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GossipKeyError {
    /// It could not be read.
    #[error("reading the gossip key {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It holds no key.
    #[error(
        "the gossip key file {path} is empty; put a key in it (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    Empty {
        /// The file.
        path: String,
    },
    /// Too short to be a secret.
    #[error(
        "the gossip key on line {line} of {path} has {len} bytes; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// The key's line, from 1.
        line: usize,
        /// Its length after trimming whitespace.
        len: usize,
    },
}

/// Fewest bytes of a key.
const MIN_KEY_BYTES: usize = 16;

impl GossipKey {
    /// One key from `secret`'s bytes.
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        Self::ring(secret, &[])
    }

    /// Seals with `seal` and opens what it or any of `also` sealed.
    #[must_use]
    pub fn ring(seal: &[u8], also: &[&[u8]]) -> Self {
        Self {
            keys: std::iter::once(seal)
                .chain(also.iter().copied())
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s))
                .collect(),
        }
    }

    /// Reads the keys from `path`, one per line (surrounding whitespace and
    /// blank lines ignored): the first seals this node's datagrams, and a
    /// datagram sealed with any of them is accepted.
    ///
    /// # Errors
    /// [`GossipKeyError`] when the file cannot be read, holds no key, or
    /// a key is shorter than 16 bytes.
    pub fn load(path: &Path) -> Result<Self, GossipKeyError> {
        let bytes = std::fs::read(path).map_err(|source| GossipKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut secrets = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let secret = line.trim_ascii();
            if secret.is_empty() {
                continue;
            }
            if secret.len() < MIN_KEY_BYTES {
                return Err(GossipKeyError::TooShort {
                    path: path.display().to_string(),
                    line: i + 1,
                    len: secret.len(),
                });
            }
            secrets.push(secret);
        }
        match secrets.split_first() {
            Some((seal, also)) => Ok(Self::ring(seal, also)),
            None => Err(GossipKeyError::Empty {
                path: path.display().to_string(),
            }),
        }
    }

    /// `payload` followed by its tag under the sealing key.
    fn seal(&self, payload: &mut Vec<u8>) {
        let tag = hmac::sign(&self.keys[0], payload);
        payload.extend_from_slice(tag.as_ref());
    }

    /// The payload of `datagram` if its tag is valid under any key.
    fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = datagram.split_at(split);
        self.keys
            .iter()
            .any(|key| hmac::verify(key, payload, tag).is_ok())
            .then_some(payload)
    }
}

/// The gossip key file, re-read when it changes (Kubernetes updates a
/// mounted Secret in place): a key rotates without restarts. A file that no
/// longer loads keeps the previous keys, logged.
pub struct KeyFile {
    path: std::path::PathBuf,
    current: std::sync::RwLock<Loaded>,
}

/// The keys last loaded, the file's modification time then, and when the
/// file was last looked at.
struct Loaded {
    key: Arc<GossipKey>,
    modified: Option<std::time::SystemTime>,
    checked: std::time::Instant,
}

impl std::fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyFile").field("path", &self.path).finish()
    }
}

/// How often the key file is looked at (a `stat`; it is read only when its
/// modification time changed).
const KEY_FILE_CHECK: Duration = Duration::from_secs(1);

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl KeyFile {
    /// Loads `path` (see [`GossipKey::load`]).
    ///
    /// # Errors
    /// [`GossipKeyError`]: a node with a bad key file does not start.
    pub fn load(path: &Path) -> Result<Self, GossipKeyError> {
        let modified = modified(path);
        let key = GossipKey::load(path)?;
        Ok(Self {
            path: path.to_owned(),
            current: std::sync::RwLock::new(Loaded {
                key: Arc::new(key),
                modified,
                checked: std::time::Instant::now(),
            }),
        })
    }

    /// The current keys, re-read first if the file changed.
    #[must_use]
    pub fn current(&self) -> Arc<GossipKey> {
        self.current_at(std::time::Instant::now())
    }

    /// [`KeyFile::current`] at `now`: the file is looked at once per
    /// [`KEY_FILE_CHECK`].
    fn current_at(&self, now: std::time::Instant) -> Arc<GossipKey> {
        {
            let current = self.current.read().expect("gossip key lock");
            if now.saturating_duration_since(current.checked) < KEY_FILE_CHECK {
                return Arc::clone(&current.key);
            }
        }
        let mut current = self.current.write().expect("gossip key lock");
        current.checked = now;
        let modified = modified(&self.path);
        if modified != current.modified {
            current.modified = modified;
            match GossipKey::load(&self.path) {
                Ok(key) => {
                    tracing::info!(file = %self.path.display(), keys = key.keys.len(), "gossip keys reloaded");
                    current.key = Arc::new(key);
                }
                Err(e) => tracing::error!(
                    error = %e,
                    "the gossip key file changed but does not load; keeping the previous keys"
                ),
            }
        }
        Arc::clone(&current.key)
    }
}

/// Gossip over UDP, sealed with a key when there is one.
#[derive(Debug, Clone)]
pub struct SealedUdp {
    /// The shared key's file (`None`: plain datagrams).
    pub key: Option<Arc<KeyFile>>,
    /// Where a datagram the key does not open is reported.
    pub health: Arc<GossipHealth>,
}

struct SealedSocket {
    socket: tokio::net::UdpSocket,
    key: Option<Arc<KeyFile>>,
    health: Arc<GossipHealth>,
    codec: Codec,
    recv_buf: Box<[u8]>,
}

/// chitchat's encoding, borrowed through a pair of loopback sockets.
struct Codec {
    chitchat: Box<dyn Socket>,
    chitchat_addr: SocketAddr,
    raw: tokio::net::UdpSocket,
    raw_addr: SocketAddr,
    buf: Box<[u8]>,
}

/// How long the loopback hop may take before a datagram is given up.
const CODEC_TIMEOUT: Duration = Duration::from_millis(200);

impl Codec {
    async fn new() -> anyhow::Result<Self> {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let chitchat = UdpTransport.open(loopback).await?;
        let chitchat_addr = chitchat.local_addr()?;
        let raw = tokio::net::UdpSocket::bind(loopback).await?;
        let raw_addr = raw.local_addr()?;
        Ok(Self {
            chitchat,
            chitchat_addr,
            raw,
            raw_addr,
            buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        })
    }

    /// chitchat's bytes for `envelope`.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Vec<u8>> {
        self.chitchat.send(self.raw_addr, envelope).await?;
        let receive = async {
            loop {
                let (n, from) = self.raw.recv_from(&mut self.buf).await?;
                if from == self.chitchat_addr {
                    return Ok::<_, std::io::Error>(self.buf[..n].to_vec());
                }
            }
        };
        Ok(tokio::time::timeout(CODEC_TIMEOUT, receive).await??)
    }

    /// The envelope in chitchat's `bytes` (`None`: not a valid message).
    async fn decode(&mut self, bytes: &[u8]) -> anyhow::Result<Option<ChitchatEnvelope>> {
        self.raw.send_to(bytes, self.chitchat_addr).await?;
        let receive = async {
            loop {
                let outcome = self.chitchat.recv().await?;
                if outcome.from_addr == self.raw_addr {
                    return Ok::<_, anyhow::Error>(outcome.envelope);
                }
            }
        };
        // chitchat skips bytes it cannot read; then nothing comes out.
        match tokio::time::timeout(CODEC_TIMEOUT, receive).await {
            Ok(envelope) => Ok(Some(envelope?)),
            Err(_) => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl Transport for SealedUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        if self.key.is_none() {
            return UdpTransport.open(listen_addr).await;
        }
        let socket = tokio::net::UdpSocket::bind(listen_addr)
            .await
            .map_err(|e| anyhow::anyhow!("failed to bind to {listen_addr}/UDP for gossip: {e}"))?;
        Ok(Box::new(SealedSocket {
            socket,
            key: self.key.clone(),
            health: Arc::clone(&self.health),
            codec: Codec::new().await?,
            recv_buf: vec![0; MAX_DATAGRAM].into_boxed_slice(),
        }))
    }
}

#[async_trait::async_trait]
impl Socket for SealedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let mut datagram = match self.codec.encode(envelope).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "encoding a gossip datagram failed; dropped");
                return Ok(SendOutcome { num_bytes_sent: 0 });
            }
        };
        if let Some(key) = &self.key {
            key.current().seal(&mut datagram);
        }
        // (A socket without a key is chitchat's own UDP socket: see `open`.)
        if datagram.len() > MAX_DATAGRAM {
            // Only a huge digest gets here; the next round sends a smaller
            // delta. Dropping beats a broken transport.
            tracing::warn!(bytes = datagram.len(), %to, "gossip datagram too large; dropped");
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        match self.socket.send_to(&datagram, to).await {
            Ok(sent) => Ok(SendOutcome {
                num_bytes_sent: sent,
            }),
            // A peer that is not there yet is not a broken transport.
            Err(e) if is_transient(&e) => Ok(SendOutcome { num_bytes_sent: 0 }),
            Err(e) => Err(e.into()),
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let (received, from_addr) = match self.socket.recv_from(&mut self.recv_buf).await {
                Ok(got) => got,
                Err(e) if is_transient(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            let datagram = &self.recv_buf[..received];
            let key = self.key.as_ref().map(|k| k.current());
            let Some(payload) = key.as_ref().and_then(|k| k.open(datagram)) else {
                self.health.record(Rejection::Unauthenticated, from_addr);
                continue;
            };
            let payload = payload.to_vec();
            match self.codec.decode(&payload).await? {
                Some(envelope) => {
                    return Ok(RecvOutcome {
                        from_addr,
                        envelope,
                        num_bytes_received: received,
                    });
                }
                None => {
                    tracing::debug!(from = %from_addr, "unreadable gossip datagram; dropped");
                }
            }
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::OutOfMemory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_datagram_sealed_with_the_same_key_opens() {
        let key = GossipKey::new(b"0123456789abcdef-shared");
        let other = GossipKey::new(b"0123456789abcdef-other!");
        let mut datagram = b"chitchat bytes".to_vec();
        key.seal(&mut datagram);
        assert_eq!(key.open(&datagram), Some(&b"chitchat bytes"[..]));
        assert_eq!(other.open(&datagram), None, "another key");
        let mut tampered = datagram.clone();
        tampered[3] ^= 1;
        assert_eq!(key.open(&tampered), None, "a changed byte");
        assert_eq!(key.open(b"chitchat bytes"), None, "no tag");
        assert_eq!(key.open(b""), None, "empty");
    }

    #[test]
    fn a_key_ring_seals_with_its_first_key_and_opens_with_any() {
        let (old, new) = (
            &b"0123456789abcdef-old-key"[..],
            &b"0123456789abcdef-new-key"[..],
        );
        let sealed = |key: &GossipKey| {
            let mut datagram = b"chitchat bytes".to_vec();
            key.seal(&mut datagram);
            datagram
        };
        let (only_old, only_new) = (GossipKey::new(old), GossipKey::new(new));
        let (old_first, new_first) = (GossipKey::ring(old, &[new]), GossipKey::ring(new, &[old]));
        // Rotation step 2: nodes sealing with either key hear each other.
        for (a, b) in [(&old_first, &new_first), (&new_first, &old_first)] {
            assert!(b.open(&sealed(a)).is_some());
        }
        // Step 1 (old first) is heard by the nodes not yet changed...
        assert!(only_old.open(&sealed(&old_first)).is_some());
        // ...and step 3 (new only) by the nodes of step 2.
        assert!(new_first.open(&sealed(&only_new)).is_some());
        assert!(old_first.open(&sealed(&only_new)).is_some());
        // A node that never had the new key does not hear it.
        assert!(only_old.open(&sealed(&new_first)).is_none());
    }

    #[test]
    fn a_key_file_holds_one_key_per_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(
            &path,
            "\n0123456789abcdef-new-key\n\n  0123456789abcdef-old-key \n",
        )
        .expect("write");
        let ring = GossipKey::load(&path).expect("two keys");
        let from_new = {
            let mut d = b"x".to_vec();
            GossipKey::new(b"0123456789abcdef-new-key").seal(&mut d);
            d
        };
        let mut from_ring = b"x".to_vec();
        ring.seal(&mut from_ring);
        assert_eq!(from_ring, from_new, "the first key seals");
        assert!(ring.open(&from_new).is_some());
        assert!(
            GossipKey::new(b"0123456789abcdef-old-key")
                .open(&from_ring)
                .is_none()
        );
        std::fs::write(&path, "0123456789abcdef-new-key\nshort\n").expect("write");
        assert!(matches!(
            GossipKey::load(&path),
            Err(GossipKeyError::TooShort {
                line: 2,
                len: 5,
                ..
            })
        ));
        std::fs::write(&path, " \n\n").expect("write");
        assert!(matches!(
            GossipKey::load(&path),
            Err(GossipKeyError::Empty { .. })
        ));
    }

    #[test]
    fn the_key_file_is_re_read_when_it_changes_and_a_bad_one_is_not_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let write = |text: &str, age: u64| {
            std::fs::write(&path, text).expect("write");
            // Set apart from the previous write even on a coarse clock.
            let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + age);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(when))
                .expect("set mtime");
        };
        let seals = |key: &GossipKey| {
            let mut d = b"x".to_vec();
            key.seal(&mut d);
            d
        };
        let (old, new) = ("0123456789abcdef-old-key", "0123456789abcdef-new-key");
        write(old, 0);
        let file = KeyFile::load(&path).expect("load");
        let start = std::time::Instant::now();
        assert_eq!(
            seals(&file.current_at(start)),
            seals(&GossipKey::new(old.as_bytes()))
        );
        write(&format!("{new}\n{old}\n"), 10);
        // Looked at once a second.
        let soon = start + KEY_FILE_CHECK / 2;
        assert_eq!(
            seals(&file.current_at(soon)),
            seals(&GossipKey::new(old.as_bytes()))
        );
        let later = start + KEY_FILE_CHECK * 2;
        let ring = file.current_at(later);
        assert_eq!(seals(&ring), seals(&GossipKey::new(new.as_bytes())));
        assert!(ring.open(&seals(&GossipKey::new(old.as_bytes()))).is_some());
        // A file that does not load keeps the keys in use.
        write("short\n", 20);
        let kept = file.current_at(later + KEY_FILE_CHECK * 2);
        assert_eq!(seals(&kept), seals(&GossipKey::new(new.as_bytes())));
    }

    /// A free loopback UDP port (bound, then let go).
    fn free_udp_port() -> SocketAddr {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
    }

    /// Two chitchat nodes over loopback UDP through [`SealedUdp`] (sealed
    /// with `key` when there is one): `a` gossips `values`, `b` has `a` as
    /// its seed. Returns once `b` holds every one of them; panics after 10 s.
    async fn b_hears_all_of_a(key: Option<&str>, values: Vec<(String, String)>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = key.map(|secret| {
            let path = dir.path().join("key");
            std::fs::write(&path, secret).expect("write key");
            Arc::new(KeyFile::load(&path).expect("key"))
        });
        let (a_addr, b_addr) = (free_udp_port(), free_udp_port());
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let spawn = |name: &str, addr: SocketAddr, seed: SocketAddr, values| {
            let config = chitchat::ChitchatConfig {
                chitchat_id: chitchat::ChitchatId::new(name.to_owned(), 1, addr),
                cluster_id: "sizes".to_owned(),
                gossip_interval: Duration::from_millis(20),
                listen_addr: addr,
                seed_nodes: vec![seed.to_string()],
                failure_detector_config: chitchat::FailureDetectorConfig::default(),
                marked_for_deletion_grace_period: Duration::from_secs(3600),
                catchup_callback: None,
                extra_liveness_predicate: None,
                protocol_version: chitchat::ProtocolVersion::V0,
            };
            let transport = SealedUdp {
                key: key.clone(),
                health: Arc::new(GossipHealth::new(
                    "sizes",
                    &[],
                    Duration::from_millis(20),
                    Arc::clone(&metrics),
                )),
            };
            async move { chitchat::spawn_chitchat(config, values, &transport).await }
        };
        let a = spawn("a", a_addr, b_addr, values.clone()).await.expect("a");
        let b = spawn("b", b_addr, a_addr, Vec::new()).await.expect("b");
        let a_id = chitchat::ChitchatId::new("a".to_owned(), 1, a_addr);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let heard = {
                let chitchat = b.chitchat();
                let chitchat = chitchat.lock().await;
                chitchat.node_state(&a_id).map_or(0, |state| {
                    values
                        .iter()
                        .filter(|(k, v)| state.get(k) == Some(v.as_str()))
                        .count()
                })
            };
            if heard == values.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "b holds {heard} of a's {} values after 10 s",
                values.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for handle in [a, b] {
            handle.shutdown().await.expect("shutdown");
        }
    }

    const SECRET: &str = "0123456789abcdef-shared";

    #[tokio::test]
    async fn the_most_tokens_a_node_may_have_reach_a_peer_sealed_or_not() {
        let id = strata_cluster::NodeId::new("a-node-with-the-most-tokens").expect("id");
        let gossip = strata_cluster::NodeGossip {
            grpc_address: "10.0.0.1:7400".to_owned(),
            internal_address: "10.0.0.1:7401".to_owned(),
            gossip_address: "10.0.0.1:7402".to_owned(),
            tokens: strata_cluster::tokens_for(&id, usize::from(strata_cluster::MAX_VNODES)),
            state: strata_cluster::NodeState::Normal,
            load_bytes: 1 << 40,
            incarnation: 3,
            departures: Vec::new(),
            rejoin: strata_cluster::Rejoin::None,
        };
        let values = gossip.to_key_values();
        for key in [None, Some(SECRET)] {
            b_hears_all_of_a(key, values.clone()).await;
        }
    }

    #[tokio::test]
    async fn thousands_of_departed_members_reach_a_peer_sealed() {
        // 4,000 of the longest ids: some 290 KB of departures, which one
        // value would never have carried (chitchat sends a value whole).
        let departures = (0..4_000_u64)
            .map(|i| strata_cluster::Departure {
                id: strata_cluster::NodeId::new(format!("{i:0>63}")).expect("id"),
                incarnation: u64::MAX - i,
                state: strata_cluster::NodeState::Left,
            })
            .collect();
        let id = strata_cluster::NodeId::new("a-node-that-saw-many-leave").expect("id");
        let gossip = strata_cluster::NodeGossip {
            grpc_address: "10.0.0.1:7400".to_owned(),
            internal_address: String::new(),
            gossip_address: String::new(),
            tokens: strata_cluster::tokens_for(&id, 256),
            state: strata_cluster::NodeState::Normal,
            load_bytes: 0,
            incarnation: 3,
            departures,
            rejoin: strata_cluster::Rejoin::None,
        };
        b_hears_all_of_a(Some(SECRET), gossip.to_key_values()).await;
    }

    #[tokio::test]
    async fn a_delta_that_fills_a_datagram_still_gets_through_sealed() {
        // Far more than one datagram of small values: chitchat fills each
        // delta up to the largest UDP payload, leaving no room for a tag.
        let values = (0..6_000)
            .map(|i| (format!("k{i:05}"), format!("value-{i}")))
            .collect::<Vec<_>>();
        b_hears_all_of_a(Some(SECRET), values).await;
    }

    #[test]
    fn short_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "short\n").expect("write");
        assert!(matches!(
            GossipKey::load(&path),
            Err(GossipKeyError::TooShort { len: 5, .. })
        ));
        std::fs::write(&path, " 0123456789abcdef0123 \n").expect("write");
        assert!(GossipKey::load(&path).is_ok());
    }
}
