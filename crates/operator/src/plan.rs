//! Scaling as a level-triggered state machine: [`plan`] maps what the
//! KVCluster asks for and what the operator observes to the one next
//! action. Pure: no API calls, no clock; the reconciler observes, calls
//! `plan`, performs the action and records the change in the status, so an
//! operator that restarts mid-change resumes it from the status alone.
//!
//! Rules (learned from cass-operator and scylla-operator, whose worst bugs
//! were removing a pod before its data moved and forgetting a half-done
//! operation across restarts):
//! - one topology change at a time, recorded in `status.topologyChange`
//!   before it starts, cleared only when it is complete;
//! - scale up one node at a time: StatefulSet +1, wait for the pod, ask it
//!   to join, wait until the ring shows it `normal`;
//! - scale down one node at a time, highest ordinal first: decommission it,
//!   wait until it is `left`, only then StatefulSet -1 (and delete its
//!   volume when the retention policy says so);
//! - a target changed mid-change: the current step finishes, then the
//!   operator heads for the new target; a node still joining is never
//!   decommissioned;
//! - never below N nodes: such a scale-down is refused (the spec is left as
//!   it is; the reconciler reports a condition and an event);
//! - a failed pod during a change pauses it (Degraded) until it recovers;
//! - a node that left keeps its volume when the retention policy says
//!   Retain, but a pod added later for the same ordinal must start fresh
//!   (a node that left refuses to start on its old data): that volume is
//!   deleted just before the pod is created;
//! - settings that need a restart roll one pod at a time in ordinal order,
//!   only while no change is in flight and every node is ready and normal;
//!   a pod that is failing on old settings (a bad image, since fixed) is
//!   replaced at once, even during a change, since it serves nothing.

/// A node's state on the ring, as a node's `Admin.GetRing` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingState {
    /// Known, without tokens yet (waiting for `Admin.Join`).
    Waiting,
    /// Streaming its ranges.
    Joining,
    /// An owner.
    Normal,
    /// An owner that the answering node does not hear from (gossip): no
    /// step that needs it up (completing its join, decommissioning it,
    /// restarting the next pod) is taken until it is heard again.
    Down,
    /// Streaming its ranges away.
    Leaving,
    /// Gone.
    Left,
}

/// One storage pod, by its StatefulSet ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodObservation {
    /// The ordinal (the pod and node id is `<cluster>-<ordinal>`).
    pub ordinal: u32,
    /// Ready (gRPC health serving).
    pub ready: bool,
    /// Crash-looping or otherwise failed: a change pauses.
    pub failed: bool,
    /// Runs the settings the spec asks for (its config hash is current).
    pub current_config: bool,
}

/// The change in progress, as recorded in the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Node `ordinal` is being added.
    Join {
        /// Its ordinal.
        ordinal: u32,
    },
    /// Node `ordinal` is being removed.
    Decommission {
        /// Its ordinal.
        ordinal: u32,
    },
}

/// What the operator sees now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The StatefulSet's replicas (`None`: not created yet).
    pub statefulset_replicas: Option<u32>,
    /// The storage pods that exist.
    pub pods: Vec<PodObservation>,
    /// Ring state per ordinal, from a node's `Admin.GetRing` (`None`: no
    /// node answered).
    pub ring: Option<Vec<(u32, RingState)>>,
    /// The change recorded in the status.
    pub change: Option<Change>,
    /// Whether the volume of each ordinal still exists.
    pub volumes: Vec<u32>,
    /// Bytes the ring's members store in all (replicas included).
    pub load_bytes: u64,
}

/// What the KVCluster asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    /// `spec.replicas`.
    pub replicas: u32,
    /// `spec.consistency.replicationFactor`.
    pub replication_factor: u32,
    /// Delete a removed node's volume (`spec.storage.retention: Delete`).
    pub delete_volumes: bool,
    /// Each node's volume, in bytes (`None`: unknown, not checked).
    pub volume_bytes: Option<u64>,
}

/// How full the remaining volumes may be after a scale-down, in percent:
/// compaction needs room to write before it deletes.
pub const MAX_FILL_PERCENT: u64 = 85;

/// The one next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the StatefulSet with `replicas` founding members.
    Create {
        /// Its replicas; these pods form the initial cluster.
        replicas: u32,
    },
    /// Record `change` in the status before acting on it.
    Record(Change),
    /// Set the StatefulSet's replicas.
    Scale {
        /// The new count.
        replicas: u32,
    },
    /// Ask node `ordinal` to join (`Admin.Join`).
    Join {
        /// The node.
        ordinal: u32,
    },
    /// Ask node `ordinal` to decommission itself (`Admin.Decommission`).
    Decommission {
        /// The node.
        ordinal: u32,
    },
    /// Delete node `ordinal`'s volume (retention `Delete`, or the stale
    /// volume of a node that left, before its ordinal is reused).
    DeleteVolume {
        /// The node.
        ordinal: u32,
    },
    /// Restart pod `ordinal` so it picks up new settings (delete it; the
    /// StatefulSet recreates it from the current template).
    Restart {
        /// The pod.
        ordinal: u32,
    },
    /// The change is complete: clear it from the status.
    Complete(Change),
    /// Nothing to do until something changes (the reason, for status).
    Wait(String),
    /// The spec asks for something unsafe; it is not done (condition and
    /// event carry the reason).
    Refuse(String),
    /// A change is paused by a failure (Degraded, with the reason).
    Degraded(String),
    /// Everything is as asked.
    Steady,
}

/// The next action; see the module docs for the rules.
#[must_use]
pub fn plan(desired: &Desired, observed: &Observed) -> Action {
    let Some(current) = observed.statefulset_replicas else {
        return Action::Create {
            replicas: desired.replicas.max(1),
        };
    };
    let ring = |ordinal: u32| {
        observed
            .ring
            .as_ref()
            .and_then(|r| r.iter().find(|(o, _)| *o == ordinal).map(|(_, s)| *s))
    };
    let pod = |ordinal: u32| observed.pods.iter().find(|p| p.ordinal == ordinal);
    if let Some(change) = observed.change {
        let ordinal = match change {
            Change::Join { ordinal } | Change::Decommission { ordinal } => ordinal,
        };
        if let Some(failed) = observed.pods.iter().find(|p| p.failed) {
            // A pod failing on old settings (a bad image since fixed in
            // the spec) is replaced: it is down already.
            if !failed.current_config {
                return Action::Restart {
                    ordinal: failed.ordinal,
                };
            }
            return Action::Degraded(format!(
                "pod {} failed during the {} of node {ordinal}; the change resumes once it recovers",
                failed.ordinal,
                change_name(change)
            ));
        }
        return match change {
            Change::Join { ordinal } => {
                if current <= ordinal
                    && ring(ordinal) == Some(RingState::Left)
                    && observed.volumes.contains(&ordinal)
                {
                    Action::DeleteVolume { ordinal }
                } else if current <= ordinal {
                    Action::Scale {
                        replicas: ordinal + 1,
                    }
                } else if !pod(ordinal).is_some_and(|p| p.ready) {
                    Action::Wait(format!("waiting for pod {ordinal} to be ready"))
                } else {
                    match ring(ordinal) {
                        Some(RingState::Normal) => Action::Complete(change),
                        Some(RingState::Down) => {
                            Action::Wait(format!("node {ordinal} is normal but not heard from"))
                        }
                        Some(RingState::Joining) => {
                            Action::Wait(format!("node {ordinal} is streaming its ranges"))
                        }
                        None if observed.ring.is_none() => {
                            Action::Wait("no node answered for the ring".into())
                        }
                        _ => Action::Join { ordinal },
                    }
                }
            }
            Change::Decommission { ordinal } => match ring(ordinal) {
                Some(RingState::Left) | None if observed.ring.is_some() => {
                    if current > ordinal {
                        Action::Scale { replicas: ordinal }
                    } else if desired.delete_volumes && observed.volumes.contains(&ordinal) {
                        Action::DeleteVolume { ordinal }
                    } else {
                        Action::Complete(change)
                    }
                }
                Some(RingState::Leaving) => {
                    Action::Wait(format!("node {ordinal} is streaming its ranges away"))
                }
                Some(RingState::Down) => Action::Wait(format!(
                    "node {ordinal} is down; it is decommissioned once it is heard from again"
                )),
                Some(_) => Action::Decommission { ordinal },
                None => Action::Wait("no node answered for the ring".into()),
            },
        };
    }
    if desired.replicas > current {
        return Action::Record(Change::Join { ordinal: current });
    }
    if desired.replicas < current {
        if current <= desired.replication_factor {
            // A settings roll still proceeds; the refusal is reported once
            // nothing else is left to do.
            if observed.pods.iter().any(|p| !p.current_config) {
                return rolling_restart(current, observed);
            }
            return Action::Refuse(format!(
                "replicas {} is below the replication factor {}: every key needs {} nodes; \
                 staying at {current}",
                desired.replicas, desired.replication_factor, desired.replication_factor
            ));
        }
        if let Some(problem) = room_problem(desired, observed, current - 1) {
            return Action::Refuse(problem);
        }
        let highest = current - 1;
        return match ring(highest) {
            Some(RingState::Normal) => Action::Record(Change::Decommission { ordinal: highest }),
            Some(state) => Action::Wait(format!(
                "node {highest} is {state:?}; it is decommissioned once it is normal"
            )),
            None => Action::Wait(format!("node {highest} is not on the ring yet")),
        };
    }
    rolling_restart(current, observed)
}

/// Why `remaining` nodes could not hold the data, if they could not.
fn room_problem(desired: &Desired, observed: &Observed, remaining: u32) -> Option<String> {
    let volume = desired.volume_bytes?;
    let room = u128::from(volume) * u128::from(remaining) * u128::from(MAX_FILL_PERCENT) / 100;
    (u128::from(observed.load_bytes) > room).then(|| {
        format!(
            "the cluster stores {} bytes; {remaining} nodes with {volume}-byte volumes hold at \
             most {room} at {MAX_FILL_PERCENT}% full; staying at {} (grow storage.size first)",
            observed.load_bytes,
            remaining + 1
        )
    })
}

/// With the node count as asked: the next pod to restart for new
/// settings (lowest ordinal first, once every pod is ready and every node
/// normal), a wait for pods or nodes that are not, or steady.
fn rolling_restart(current: u32, observed: &Observed) -> Action {
    // A failing pod on old settings goes first: it serves nothing now.
    if let Some(failed) = observed
        .pods
        .iter()
        .find(|p| p.failed && !p.current_config && p.ordinal < current)
    {
        return Action::Restart {
            ordinal: failed.ordinal,
        };
    }
    let stale = (0..current).find(|&ordinal| {
        observed
            .pods
            .iter()
            .any(|p| p.ordinal == ordinal && !p.current_config)
    });
    let why = |what: String| match stale {
        Some(ordinal) => format!("rolling restart: {what} before restarting pod {ordinal}"),
        None => what,
    };
    for other in 0..current {
        if !observed.pods.iter().any(|p| p.ordinal == other && p.ready) {
            return Action::Wait(why(format!("waiting for pod {other} to be ready")));
        }
        let Some(ring) = &observed.ring else {
            return Action::Wait(why("no node answered for the ring".to_owned()));
        };
        if !ring.contains(&(other, RingState::Normal)) {
            return Action::Wait(why(format!("waiting for node {other} to be normal")));
        }
    }
    match stale {
        Some(ordinal) => Action::Restart { ordinal },
        None => Action::Steady,
    }
}

fn change_name(change: Change) -> &'static str {
    match change {
        Change::Join { .. } => "join",
        Change::Decommission { .. } => "decommission",
    }
}

impl Observed {
    /// A settled cluster of `n` ready pods and normal nodes (for tests).
    #[cfg(test)]
    pub(crate) fn settled(n: u32) -> Self {
        Self {
            statefulset_replicas: Some(n),
            pods: (0..n)
                .map(|ordinal| PodObservation {
                    ordinal,
                    ready: true,
                    failed: false,
                    current_config: true,
                })
                .collect(),
            ring: Some((0..n).map(|o| (o, RingState::Normal)).collect()),
            change: None,
            volumes: (0..n).collect(),
            load_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests;
