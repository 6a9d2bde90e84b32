//! The node's TCP listeners, and the UDP port gossip will take.
//!
//! Gossip listens on the internal port (else the gRPC port) over UDP. When
//! that TCP port is one the OS picked (`:0`, as tests and `strata dev`
//! ask), nothing reserved the UDP port of the same number: another
//! process's ephemeral UDP socket could take it before gossip starts, and
//! the node would fail to start. So the UDP port is bound here too, held
//! until gossip is about to bind it ([`Listeners::gossip_port`], dropped
//! then), and a TCP port whose UDP twin is taken is given back for another.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Tries for a TCP port whose UDP twin is free before giving up.
const ATTEMPTS: usize = 16;

/// The bound listeners of a node.
#[derive(Debug)]
pub struct Listeners {
    /// The client (gRPC) listener and its address.
    pub grpc: (TcpListener, SocketAddr),
    /// The internal listener and its address, when configured.
    pub internal: Option<(TcpListener, SocketAddr)>,
    /// Where gossip listens (UDP).
    pub gossip: SocketAddr,
    /// Gossip's UDP port when the OS picked it, held until dropped just
    /// before gossip binds it.
    pub gossip_port: Option<std::net::UdpSocket>,
}

impl Listeners {
    /// Binds `grpc` and `internal` (if any); gossip goes to `gossip`, else
    /// to the internal listener's port, else to the gRPC listener's.
    ///
    /// # Errors
    /// The address that could not be bound, and why.
    pub async fn bind(
        grpc: SocketAddr,
        internal: Option<SocketAddr>,
        gossip: Option<SocketAddr>,
    ) -> Result<Self, (SocketAddr, std::io::Error)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let grpc_listener = bind_tcp(grpc).await?;
            let internal_listener = match internal {
                Some(at) => Some(bind_tcp(at).await?),
                None => None,
            };
            // Gossip rides on a TCP port the OS picked: hold its UDP twin.
            let (gossip_listen, picked) = match (gossip, &internal_listener) {
                (Some(at), _) => (at, false),
                (None, Some((_, local))) => (*local, internal.is_some_and(|at| at.port() == 0)),
                (None, None) => (grpc_listener.1, grpc.port() == 0),
            };
            let gossip_port = if picked {
                match std::net::UdpSocket::bind(gossip_listen) {
                    Ok(reserved) => Some(reserved),
                    Err(e) if attempt >= ATTEMPTS => return Err((gossip_listen, e)),
                    // Taken: drop these listeners and let the OS pick again.
                    Err(_) => continue,
                }
            } else {
                None
            };
            return Ok(Self {
                grpc: grpc_listener,
                internal: internal_listener,
                gossip: gossip_listen,
                gossip_port,
            });
        }
    }
}

async fn bind_tcp(
    at: SocketAddr,
) -> Result<(TcpListener, SocketAddr), (SocketAddr, std::io::Error)> {
    let listener = TcpListener::bind(at).await.map_err(|e| (at, e))?;
    let local = listener.local_addr().map_err(|e| (at, e))?;
    Ok((listener, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback(port: u16) -> SocketAddr {
        ([127, 0, 0, 1], port).into()
    }

    #[tokio::test]
    async fn a_picked_port_s_udp_twin_is_held_until_released() {
        let mut listeners = Listeners::bind(loopback(0), None, None)
            .await
            .expect("binds");
        assert_eq!(listeners.gossip, listeners.grpc.1);
        assert!(
            std::net::UdpSocket::bind(listeners.gossip).is_err(),
            "held for gossip"
        );
        drop(listeners.gossip_port.take());
        std::net::UdpSocket::bind(listeners.gossip).expect("free for gossip now");
    }

    #[tokio::test]
    async fn gossip_follows_the_internal_port_and_an_explicit_one_is_not_held() {
        let listeners = Listeners::bind(loopback(0), Some(loopback(0)), None)
            .await
            .expect("binds");
        let internal = listeners.internal.as_ref().expect("internal").1;
        assert_eq!(listeners.gossip, internal);
        assert!(std::net::UdpSocket::bind(internal).is_err(), "held");
        // An explicit gossip address is the operator's to keep free.
        let free = std::net::UdpSocket::bind(loopback(0)).expect("a port");
        let port = free.local_addr().expect("addr").port();
        drop(free);
        let explicit = Listeners::bind(loopback(0), None, Some(loopback(port)))
            .await
            .expect("binds");
        assert_eq!(explicit.gossip, loopback(port));
        std::net::UdpSocket::bind(loopback(port)).expect("not held");
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_it() {
        let taken = std::net::TcpListener::bind(loopback(0)).expect("a port");
        let at = taken.local_addr().expect("addr");
        let (addr, _) = Listeners::bind(at, None, None).await.expect_err("in use");
        assert_eq!(addr, at);
    }
}
