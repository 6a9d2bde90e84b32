//! Accepting connections: at most `--max-connections` open at once, so
//! that clients cannot take the file descriptors the store needs (a flush
//! that cannot create its table fails the store until it restarts), and a
//! pause, not a spin, when accepting fails for want of descriptors or
//! memory (tonic's own accept loop retries at once: measured 1.2 cores
//! busy while the process was out of descriptors).
//!
//! Both listeners share one [`ConnectionCap`]; the client port leaves
//! [`PEER_ROOM`] of it to the internal port, so a crowd of clients does
//! not shut other nodes out.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::Metrics;

/// Open files the node keeps besides connections: the engine's table
/// cache (1,000 tables), its logs and MANIFEST, hint logs, streaming
/// files, the metrics socket.
pub const RESERVED_FILES: u64 = 1_536;
/// Connections of the cap the client port leaves to the internal port.
pub const PEER_ROOM: usize = 256;
/// How long accepting pauses after a failure that is not one connection's
/// (out of descriptors, out of memory).
const PAUSE: Duration = Duration::from_millis(100);
/// Refusals and accept failures are logged at most once per interval.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The connection cap a process allowed `open_files` descriptors gets by
/// default: what the store's reserve leaves, and at least a quarter of
/// the limit (a limit that small is warned about at start), at least 16.
#[must_use]
pub fn default_max_connections(open_files: u64) -> usize {
    let left = open_files
        .saturating_sub(RESERVED_FILES)
        .max(open_files / 4)
        .max(16);
    usize::try_from(left).unwrap_or(usize::MAX)
}

/// Raises the soft limit on open files to the hard limit (servers need
/// more than the usual default of 1,024) and returns the limit in force.
///
/// # Errors
/// The OS error of `getrlimit` or `setrlimit`.
pub fn raise_open_file_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// At most a set number of open connections across the listeners that
/// share it.
#[derive(Debug, Clone)]
pub struct ConnectionCap {
    permits: Arc<Semaphore>,
    max: usize,
    /// Permits this listener leaves to the others.
    leave: usize,
    metrics: Arc<Metrics>,
    reported: Arc<Mutex<Option<Instant>>>,
}

impl ConnectionCap {
    /// A cap of `max` connections (at least 1).
    #[must_use]
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Self {
        let max = max.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
            leave: 0,
            metrics,
            reported: Arc::new(Mutex::new(None)),
        }
    }

    /// The same cap for a listener that leaves `room` of it to the others
    /// (never all of it).
    #[must_use]
    pub fn leaving(&self, room: usize) -> Self {
        Self {
            leave: room.min(self.max / 2),
            ..self.clone()
        }
    }

    /// Connections open now on the listeners sharing the cap.
    #[must_use]
    pub fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// A permit for one more connection, unless the cap (less what this
    /// listener leaves to others) is reached.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        if self.permits.available_permits() <= self.leave {
            return None;
        }
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Whether a line should be logged now (one per [`REPORT_EVERY`]).
    fn report_now(&self) -> bool {
        let mut last = self
            .reported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|at| at.elapsed() >= REPORT_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

/// The next connection on `listener` the cap admits, with `TCP_NODELAY`
/// set (small responses would otherwise wait for delayed ACKs: a 40 ms
/// tail measured with `strata bench --workload ping`). One over
/// the cap is closed at once, so its client fails fast and tries another
/// node instead of waiting for a handshake that never comes.
pub async fn accept(listener: &TcpListener, cap: &ConnectionCap) -> (Counted, SocketAddr) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // One connection's trouble (reset before it was accepted).
            Err(e) if one_connections(&e) => continue,
            Err(e) => {
                cap.metrics.accept_failed();
                if cap.report_now() {
                    tracing::warn!(
                        error = %e,
                        open = cap.open(),
                        "cannot accept connections (out of file descriptors? raise the open-file \
                         limit or lower --max-connections); pausing accepts {} ms at a time",
                        PAUSE.as_millis()
                    );
                }
                tokio::time::sleep(PAUSE).await;
                continue;
            }
        };
        let Some(permit) = cap.admit() else {
            cap.metrics.connection_refused();
            if cap.report_now() {
                tracing::warn!(%peer, max = cap.max, "connection refused: --max-connections are open");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let open = cap.metrics.connection_opened();
        return (
            Counted {
                stream,
                _permit: permit,
                _open: open,
            },
            peer,
        );
    }
}

/// Errors of one connection, after which accepting goes on at once.
fn one_connections(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// The connections [`accept`] admits on `listener`, as tonic's incoming
/// stream; the accepting task ends when the server drops the stream.
pub fn incoming(
    listener: TcpListener,
    cap: ConnectionCap,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Counted>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = accept(&listener, &cap) => accepted,
                () = tx.closed() => return,
            };
            if tx.send(Ok(stream)).await.is_err() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// An accepted connection holding its place under the cap until dropped.
#[derive(Debug)]
pub struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    _open: crate::metrics::Open,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt as _;

    use super::*;

    #[test]
    fn the_default_cap_leaves_the_store_its_files() {
        assert_eq!(default_max_connections(1_048_576), 1_048_576 - 1_536);
        assert_eq!(default_max_connections(65_536), 64_000);
        // A small limit: a quarter of it, and the start warns.
        assert_eq!(default_max_connections(1_024), 256);
        assert_eq!(default_max_connections(0), 16);
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_closed_and_a_freed_place_is_reused() {
        let metrics = Arc::new(Metrics::new());
        let cap = ConnectionCap::new(2, Arc::clone(&metrics));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut clients = Vec::new();
        let mut held = Vec::new();
        for _ in 0..2 {
            clients.push(TcpStream::connect(addr).await.expect("connect"));
            held.push(accept(&listener, &cap).await.0);
        }
        assert_eq!(cap.open(), 2);
        // The third is accepted and closed: its client reads end of stream.
        let mut third = TcpStream::connect(addr).await.expect("connect");
        let accepting = tokio::spawn(async move {
            let (counted, _) = accept(&listener, &cap).await;
            (counted, cap)
        });
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), third.read(&mut byte))
            .await
            .expect("closed, not left hanging");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(!accepting.is_finished(), "admitted over the cap");
        // A place frees: the next connection is admitted.
        held.pop();
        let fourth = TcpStream::connect(addr).await.expect("connect");
        let (counted, cap) = tokio::time::timeout(Duration::from_secs(10), accepting)
            .await
            .expect("admitted once a place is free")
            .expect("task");
        assert_eq!(cap.open(), 2);
        drop((counted, fourth, held));
        assert_eq!(cap.open(), 0);
        let text = metrics.render(&strata_engine::Stats::default());
        assert!(
            text.contains("strata_connections_refused_total 1"),
            "{text}"
        );
    }

    #[test]
    fn a_listener_leaving_room_admits_fewer() {
        let cap = ConnectionCap::new(4, Arc::new(Metrics::new()));
        let clients = cap.leaving(2);
        let first = clients.admit().expect("first");
        let second = clients.admit().expect("second");
        assert!(clients.admit().is_none(), "the room left to peers");
        let peer = cap.admit().expect("a peer still gets in");
        drop((first, second, peer));
        // Never all of it: a cap of 2 leaves at most 1.
        let small = ConnectionCap::new(2, Arc::new(Metrics::new())).leaving(256);
        let only = small.admit();
        assert!(only.is_some());
        assert!(small.admit().is_none());
    }
}
