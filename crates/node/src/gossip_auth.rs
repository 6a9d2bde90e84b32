//! Authenticated gossip: with a shared key (`--gossip-key-file`, from a
//! Secret), every gossip datagram carries an HMAC-SHA256 tag of its bytes
//! and a datagram without a valid tag is dropped unread. A process without
//! the key can neither join the ring nor tell anyone a node is dead: its
//! datagrams never reach chitchat. (A recorded datagram replayed later
//! carries only versions the receivers already have.) Without a key,
//! datagrams are plain chitchat, as before.
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

/// The shared gossip key.
#[derive(Clone)]
pub struct GossipKey(hmac::Key);

impl std::fmt::Debug for GossipKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipKey(<redacted>)")
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
    /// Too short to be a secret.
    #[error(
        "the gossip key in {path} has {len} bytes; use at least 16 (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    TooShort {
        /// The file.
        path: String,
        /// Its length after trimming whitespace.
        len: usize,
    },
}

impl GossipKey {
    /// A key from `secret`'s bytes.
    #[must_use]
    pub fn new(secret: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Reads the key from `path` (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`GossipKeyError`].
    pub fn load(path: &Path) -> Result<Self, GossipKeyError> {
        let bytes = std::fs::read(path).map_err(|source| GossipKeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let secret = bytes.trim_ascii();
        if secret.len() < 16 {
            return Err(GossipKeyError::TooShort {
                path: path.display().to_string(),
                len: secret.len(),
            });
        }
        Ok(Self::new(secret))
    }

    /// `payload` followed by its tag.
    fn seal(&self, payload: &mut Vec<u8>) {
        let tag = hmac::sign(&self.0, payload);
        payload.extend_from_slice(tag.as_ref());
    }

    /// The payload of `datagram` if its tag is valid.
    fn open<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let split = datagram.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = datagram.split_at(split);
        hmac::verify(&self.0, payload, tag).ok()?;
        Some(payload)
    }
}

/// Gossip over UDP, sealed with a key when there is one.
#[derive(Debug, Clone)]
pub struct SealedUdp {
    /// The shared key (`None`: plain datagrams).
    pub key: Option<GossipKey>,
    /// Where a datagram the key does not open is reported.
    pub health: Arc<GossipHealth>,
}

struct SealedSocket {
    socket: tokio::net::UdpSocket,
    key: Option<GossipKey>,
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
            key.seal(&mut datagram);
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
            let Some(payload) = self.key.as_ref().and_then(|k| k.open(datagram)) else {
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
