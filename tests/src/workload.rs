//! Client tasks for fault-injection scenarios: each reads a key and
//! writes a value unique to the run with the context it read, recording
//! every operation in a [`History`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::v1::{
    Consistency, ConsistencyLevel, GetRequest, PutRequest, kv_client::KvClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::history::{History, Outcome, Read, Write};

/// Nodes a client may send to; a scenario updates it as nodes move.
pub type Endpoints = Arc<Mutex<Vec<SocketAddr>>>;

/// What a client does.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Keys `key-0 .. key-{keys-1}`.
    pub keys: u64,
    /// Consistency of the read before each write.
    pub read: ConsistencyLevel,
    /// Consistency of each write.
    pub write: ConsistencyLevel,
    /// Pause between operations.
    pub pause: Duration,
}

/// Starts client `id`; it runs until `stop` is set.
#[must_use]
pub fn spawn_client(
    id: usize,
    endpoints: Endpoints,
    history: Arc<History>,
    workload: Workload,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut clients: HashMap<SocketAddr, KvClient<Channel>> = HashMap::new();
        let mut seq: u64 = 0;
        // A small LCG: deterministic per client, no extra dependency.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15 ^ (id as u64);
        while !stop.load(Ordering::Relaxed) {
            seq += 1;
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let key = format!("key-{}", (state >> 33) % workload.keys);
            let addr = {
                let list = endpoints.lock().expect("endpoints");
                if list.is_empty() {
                    None
                } else {
                    Some(list[usize::try_from(seq).unwrap_or(0) % list.len()])
                }
            };
            let Some(addr) = addr else {
                tokio::time::sleep(workload.pause).await;
                continue;
            };
            let client = clients.entry(addr).or_insert_with(|| {
                KvClient::new(
                    Endpoint::from_shared(format!("http://{addr}"))
                        .expect("endpoint")
                        .connect_timeout(Duration::from_secs(1))
                        .connect_lazy(),
                )
            });
            let mut get = tonic::Request::new(GetRequest {
                key: key.clone().into_bytes().into(),
                consistency: Some(Consistency::named(workload.read)),
            });
            get.set_timeout(Duration::from_secs(5));
            let started = std::time::Instant::now();
            let (saw, context) = match client.get(get).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let saw: Vec<String> = r
                        .siblings
                        .iter()
                        .map(|s| String::from_utf8_lossy(&s.value).into_owned())
                        .collect();
                    history.read(Read {
                        key: key.clone(),
                        values: Some(saw.clone()),
                        started,
                    });
                    (saw, r.context)
                }
                Err(_) => {
                    history.read(Read {
                        key: key.clone(),
                        values: None,
                        started,
                    });
                    (Vec::new(), Vec::new().into())
                }
            };
            let value = format!("c{id}-{seq}");
            let mut put = tonic::Request::new(PutRequest {
                key: key.clone().into_bytes().into(),
                value: value.clone().into_bytes().into(),
                context,
                request_id: 0,
                consistency: Some(Consistency::named(workload.write)),
            });
            put.set_timeout(Duration::from_secs(5));
            let outcome = match client.put(put).await {
                Ok(_) => Outcome::Acked,
                Err(_) => Outcome::Failed,
            };
            history.write(Write {
                key,
                value,
                saw,
                outcome,
                ended: std::time::Instant::now(),
            });
            tokio::time::sleep(workload.pause).await;
        }
    })
}
