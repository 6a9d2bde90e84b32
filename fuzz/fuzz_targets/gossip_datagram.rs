//! A gossip datagram: without `--gossip-key-file`, anyone who reaches the
//! gossip port (UDP) sends bytes that chitchat deserializes (in the task
//! that runs the node's gossip: a panic there would stop it). chitchat
//! exposes its decoder only behind its sockets, so the target sends each
//! input to a chitchat UDP socket on 127.0.0.1, then a valid envelope as
//! a marker, and receives until the marker arrives: the input is either
//! dropped or decoded, never a panic.
#![no_main]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Mutex, OnceLock};

use chitchat::transport::{Socket, Transport as _, UdpTransport};
use chitchat::{ChitchatEnvelope, ChitchatMessage, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

struct Sockets {
    runtime: tokio::runtime::Runtime,
    receiver: Box<dyn Socket>,
    receiver_addr: SocketAddr,
    marker: Box<dyn Socket>,
    marker_addr: SocketAddr,
    raw: UdpSocket,
}

fn sockets() -> &'static Mutex<Sockets> {
    static SOCKETS: OnceLock<Mutex<Sockets>> = OnceLock::new();
    SOCKETS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let (receiver, marker) = runtime.block_on(async {
            let open = || UdpTransport.open(loopback);
            (
                open().await.expect("receiver"),
                open().await.expect("marker"),
            )
        });
        Mutex::new(Sockets {
            receiver_addr: receiver.local_addr().expect("receiver address"),
            marker_addr: marker.local_addr().expect("marker address"),
            receiver,
            marker,
            raw: UdpSocket::bind(loopback).expect("raw socket"),
            runtime,
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = sockets().lock().expect("sockets");
    let s = &mut *guard;
    s.raw.send_to(data, s.receiver_addr).expect("send input");
    s.runtime.block_on(async {
        let marker = ChitchatEnvelope {
            version: ProtocolVersion::V1,
            message: ChitchatMessage::BadCluster,
        };
        s.marker
            .send(s.receiver_addr, marker)
            .await
            .expect("send marker");
        loop {
            let outcome = s.receiver.recv().await.expect("receive");
            if outcome.from_addr == s.marker_addr {
                assert_eq!(outcome.envelope.message, ChitchatMessage::BadCluster);
                break;
            }
        }
    });
});
