//! The KVCluster's status as a pure function of the planner's decision and
//! what was observed: phase, conditions (Ready, Progressing, Degraded, each
//! with the generation it describes and a reason), members and the change
//! in flight.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{ClusterPhase, KVClusterStatus, RingMember, TopologyChange};
use crate::plan::{Action, Change, Observed, RingState};

/// Condition types.
pub const READY: &str = "Ready";
/// The cluster is changing (creating, scaling, rolling).
pub const PROGRESSING: &str = "Progressing";
/// Something needs attention.
pub const DEGRADED: &str = "Degraded";

/// What the status is computed from.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The status before this reconcile.
    pub previous: &'a KVClusterStatus,
    /// The KVCluster's `metadata.generation`.
    pub generation: Option<i64>,
    /// What the planner decided.
    pub action: &'a Action,
    /// What it decided from.
    pub observed: &'a Observed,
    /// The cluster's name (node ids are `<name>-<ordinal>`).
    pub name: &'a str,
    /// Ring members: id, state, load, alive (from a node).
    pub members: Vec<(String, RingState, u64, bool)>,
    /// Each pod's config hash, by ordinal.
    pub pod_hashes: Vec<(u32, Option<String>)>,
    /// The config hash the spec asks for.
    pub config_hash: Option<String>,
    /// Nodes heard from (a node's cluster status), each with why its
    /// store refuses writes, if it does; a member not listed keeps what
    /// was seen last.
    pub storage: Vec<(String, Option<String>)>,
    /// Problems with the spec (it is not acted on).
    pub spec_problems: Vec<String>,
    /// Now.
    pub now: Timestamp,
}

/// The new status.
#[must_use]
pub fn status(inputs: &Inputs<'_>) -> KVClusterStatus {
    let Inputs {
        previous,
        action,
        observed,
        ..
    } = inputs;
    let mut next = (*previous).clone();
    next.observed_generation = inputs.generation;
    next.config_hash.clone_from(&inputs.config_hash);
    let current = observed.statefulset_replicas.unwrap_or(0);
    next.ready_replicas = u32::try_from(
        observed
            .pods
            .iter()
            .filter(|p| p.ready && p.ordinal < current)
            .count(),
    )
    .unwrap_or(u32::MAX);
    if !inputs.members.is_empty() {
        next.members = inputs
            .members
            .iter()
            .map(|(id, state, load, alive)| RingMember {
                node_id: id.clone(),
                state: crate::observe::state_name(*state).to_owned(),
                load_bytes: *load,
                alive: *alive,
                config_hash: crate::observe::ordinal_of(inputs.name, id).and_then(|o| {
                    inputs
                        .pod_hashes
                        .iter()
                        .find(|(p, _)| *p == o)
                        .and_then(|(_, h)| h.clone())
                }),
                // A node that left has no store in the cluster any more.
                storage_failure: match inputs.storage.iter().find(|(node, _)| node == id) {
                    _ if *state == RingState::Left => None,
                    Some((_, failure)) => failure.clone(),
                    None => previous
                        .members
                        .iter()
                        .find(|m| m.node_id == *id)
                        .and_then(|m| m.storage_failure.clone()),
                },
            })
            .collect();
    }
    // The recorded change follows the action (the reconciler writes this
    // status before acting, so a restart resumes from it).
    match action {
        Action::Create { replicas } => next.founders = Some(*replicas),
        Action::Record(change) => {
            next.topology_change = Some(TopologyChange {
                kind: change_kind(*change).to_owned(),
                node_id: format!("{}-{}", inputs.name, change_ordinal(*change)),
                started_at: inputs.now.to_string(),
                ranges_done: 0,
                ranges_total: 0,
                bytes_transferred: 0,
            });
        }
        Action::Complete(_) => next.topology_change = None,
        _ => {}
    }
    let nodes_ready = current > 0
        && next.ready_replicas == current
        && observed
            .ring
            .as_ref()
            .is_some_and(|ring| (0..current).all(|o| ring.contains(&(o, RingState::Normal))));
    let message = message(action, &inputs.spec_problems);
    let changing = next.topology_change.as_ref().map(|c| {
        if c.kind == "Join" {
            "ScalingUp"
        } else {
            "ScalingDown"
        }
    });
    let progressing = match action {
        Action::Create { .. } => Some("Creating"),
        Action::Restart { .. } => Some("RollingRestart"),
        Action::Wait(m) if m.starts_with("rolling restart") => Some("RollingRestart"),
        Action::Record(_)
        | Action::Scale { .. }
        | Action::Join { .. }
        | Action::Decommission { .. }
        | Action::DeleteVolume { .. }
        | Action::Wait(_)
            if changing.is_some() =>
        {
            changing
        }
        Action::Wait(_) if !nodes_ready => Some("WaitingForNodes"),
        _ => None,
    };
    let failed_stores = storage_failed(&next);
    let degraded = if !inputs.spec_problems.is_empty() {
        Some("InvalidSpec")
    } else {
        match action {
            Action::Degraded(_) => Some("PodFailed"),
            _ if !failed_stores.is_empty() => Some(STORAGE_FAILED),
            Action::Refuse(_) => Some("ScaleDownRefused"),
            _ => None,
        }
    };
    let generation = inputs.generation;
    let mut set = |type_: &str, on: bool, reason: &str, text: &str| {
        set_condition(
            &mut next.conditions,
            Condition {
                type_: type_.to_owned(),
                status: if on { "True" } else { "False" }.to_owned(),
                reason: reason.to_owned(),
                message: text.to_owned(),
                observed_generation: generation,
                last_transition_time: Time(inputs.now),
            },
        );
    };
    if nodes_ready {
        set(
            READY,
            true,
            "AllNodesReady",
            &format!("{current} nodes ready and normal"),
        );
    } else {
        set(
            READY,
            false,
            "NodesNotReady",
            &format!("{} of {current} nodes ready", next.ready_replicas),
        );
    }
    match progressing {
        Some(reason) => set(PROGRESSING, true, reason, &message),
        None => set(PROGRESSING, false, "Steady", "nothing in progress"),
    }
    match degraded {
        Some(STORAGE_FAILED) => set(DEGRADED, true, STORAGE_FAILED, &failed_stores),
        Some(reason) => set(DEGRADED, true, reason, &message),
        None => set(DEGRADED, false, "AsExpected", "no problem seen"),
    }
    next.phase = Some(
        if matches!(degraded, Some("PodFailed" | "InvalidSpec" | STORAGE_FAILED)) {
            ClusterPhase::Degraded
        } else if observed.statefulset_replicas.is_none() || founders_forming(&next, current) {
            ClusterPhase::Pending
        } else if progressing.is_some_and(|p| p.starts_with("Scaling")) {
            ClusterPhase::Scaling
        } else {
            ClusterPhase::Running
        },
    );
    next.message = Some(message);
    next
}

/// [`DEGRADED`]'s reason while a node's store refuses writes.
pub const STORAGE_FAILED: &str = "StorageFailed";

/// Each member whose store refuses writes, and why, in words; empty when
/// none does.
#[must_use]
pub fn storage_failed(status: &KVClusterStatus) -> String {
    status
        .members
        .iter()
        .filter_map(|m| {
            let why = m.storage_failure.as_ref()?;
            Some(format!("node {}'s store refuses writes: {why}", m.node_id))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The cluster has never been fully ready since it was created.
fn founders_forming(status: &KVClusterStatus, current: u32) -> bool {
    status.founders == Some(current)
        && !status
            .conditions
            .iter()
            .any(|c| c.type_ == READY && c.status == "True")
}

/// Replaces the condition of the same type, keeping its transition time
/// when its status did not change.
fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        if old.status == condition.status {
            condition.last_transition_time = old.last_transition_time.clone();
        }
        *old = condition;
    } else {
        conditions.push(condition);
    }
}

/// The action in words, for `status.message` and condition messages.
#[must_use]
pub fn message(action: &Action, spec_problems: &[String]) -> String {
    if !spec_problems.is_empty() {
        return format!("the spec is not acted on: {}", spec_problems.join("; "));
    }
    match action {
        Action::Create { replicas } => format!("creating a cluster of {replicas} nodes"),
        Action::Record(change) => format!(
            "starting the {} of node {}",
            change_kind(*change).to_lowercase(),
            change_ordinal(*change)
        ),
        Action::Scale { replicas } => format!("setting the StatefulSet to {replicas} pods"),
        Action::Join { ordinal } => format!("asking node {ordinal} to join"),
        Action::Decommission { ordinal } => format!("asking node {ordinal} to decommission"),
        Action::DeleteVolume { ordinal } => format!("deleting the volume of node {ordinal}"),
        Action::Restart { ordinal } => {
            format!("restarting pod {ordinal} for new settings")
        }
        Action::Complete(change) => format!(
            "the {} of node {} is complete",
            change_kind(*change).to_lowercase(),
            change_ordinal(*change)
        ),
        Action::Wait(m) | Action::Refuse(m) | Action::Degraded(m) => m.clone(),
        Action::Steady => "steady: every node ready and normal".to_owned(),
    }
}

/// `Join` or `Decommission`, as recorded in the status.
#[must_use]
pub fn change_kind(change: Change) -> &'static str {
    match change {
        Change::Join { .. } => "Join",
        Change::Decommission { .. } => "Decommission",
    }
}

/// The ordinal a change is about.
#[must_use]
pub fn change_ordinal(change: Change) -> u32 {
    match change {
        Change::Join { ordinal } | Change::Decommission { ordinal } => ordinal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled(n: u32) -> Observed {
        Observed::settled(n)
    }

    fn inputs<'a>(
        previous: &'a KVClusterStatus,
        action: &'a Action,
        observed: &'a Observed,
        now: i64,
    ) -> Inputs<'a> {
        Inputs {
            previous,
            generation: Some(2),
            action,
            observed,
            name: "kv",
            members: Vec::new(),
            pod_hashes: Vec::new(),
            config_hash: Some("h".into()),
            storage: Vec::new(),
            spec_problems: Vec::new(),
            now: Timestamp::from_second(now).expect("time"),
        }
    }

    fn condition<'a>(status: &'a KVClusterStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition")
    }

    #[test]
    fn a_steady_cluster_is_ready_running_and_not_progressing() {
        let observed = settled(3);
        let s = status(&inputs(
            &KVClusterStatus::default(),
            &Action::Steady,
            &observed,
            100,
        ));
        assert_eq!(s.ready_replicas, 3);
        assert_eq!(s.phase, Some(ClusterPhase::Running));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(condition(&s, READY).status, "True");
        assert_eq!(condition(&s, READY).observed_generation, Some(2));
        assert_eq!(condition(&s, PROGRESSING).status, "False");
        assert_eq!(condition(&s, DEGRADED).status, "False");
    }

    #[test]
    fn a_recorded_change_shows_as_scaling_and_completing_clears_it() {
        let observed = settled(3);
        let join = Change::Join { ordinal: 3 };
        let record = Action::Record(join);
        let s = status(&inputs(
            &KVClusterStatus::default(),
            &record,
            &observed,
            100,
        ));
        let change = s.topology_change.clone().expect("recorded");
        assert_eq!(
            (change.kind.as_str(), change.node_id.as_str()),
            ("Join", "kv-3")
        );
        assert_eq!(s.phase, Some(ClusterPhase::Scaling));
        assert_eq!(condition(&s, PROGRESSING).reason, "ScalingUp");
        let waiting = Action::Wait("node 3 is streaming its ranges".into());
        let s = status(&inputs(&s, &waiting, &observed, 101));
        assert_eq!(condition(&s, PROGRESSING).reason, "ScalingUp");
        assert_eq!(s.message.as_deref(), Some("node 3 is streaming its ranges"));
        let done = Action::Complete(join);
        let s = status(&inputs(&s, &done, &observed, 102));
        assert_eq!(s.topology_change, None);
    }

    #[test]
    fn a_node_whose_store_failed_is_degraded_named_and_kept_while_unheard() {
        let observed = settled(3);
        let members = || {
            (0..3)
                .map(|o| (format!("kv-{o}"), RingState::Normal, 10, true))
                .collect::<Vec<_>>()
        };
        let damaged = "kv-2.sst is corrupt at offset 9; ... delete its data directory ...";
        let empty = KVClusterStatus::default();
        let mut first = inputs(&empty, &Action::Steady, &observed, 100);
        first.members = members();
        let heard = |failed: Option<&str>| {
            (0..3)
                .map(|o| {
                    let failure = (o == 2).then_some(failed).flatten();
                    (format!("kv-{o}"), failure.map(str::to_owned))
                })
                .collect::<Vec<_>>()
        };
        first.storage = heard(Some(damaged));
        let s = status(&first);
        let degraded = condition(&s, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", STORAGE_FAILED)
        );
        assert_eq!(
            degraded.message,
            format!("node kv-2's store refuses writes: {damaged}")
        );
        assert_eq!(s.phase, Some(ClusterPhase::Degraded));
        assert_eq!(s.members[2].storage_failure.as_deref(), Some(damaged));
        assert_eq!(s.members[0].storage_failure, None);

        // No node answered the cluster status, or kv-2 did not (it is
        // restarting): the failure stays shown.
        let mut unheard = inputs(&s, &Action::Steady, &observed, 200);
        unheard.members = members();
        let s2 = status(&unheard);
        assert_eq!(condition(&s2, DEGRADED).reason, STORAGE_FAILED);
        assert_eq!(s2.members[2].storage_failure.as_deref(), Some(damaged));
        let mut restarting = inputs(&s2, &Action::Steady, &observed, 220);
        restarting.members = members();
        restarting.storage = heard(None)[..2].to_vec();
        let s2 = status(&restarting);
        assert_eq!(condition(&s2, DEGRADED).reason, STORAGE_FAILED);
        assert_eq!(s2.members[2].storage_failure.as_deref(), Some(damaged));

        // A failed pod is the more urgent reason; the member still says it.
        let failed = Action::Degraded("pod kv-1 failed".into());
        let mut both = inputs(&s2, &failed, &observed, 250);
        both.members = members();
        both.storage = heard(Some(damaged));
        let s3 = status(&both);
        assert_eq!(condition(&s3, DEGRADED).reason, "PodFailed");
        assert!(s3.members[2].storage_failure.is_some());

        // Decommissioned instead (a scale-down): nothing to repair.
        let mut left = inputs(&s3, &Action::Steady, &observed, 280);
        left.members = members();
        left.members[2].1 = RingState::Left;
        let gone = status(&left);
        assert_eq!(gone.members[2].storage_failure, None);
        assert_eq!(condition(&gone, DEGRADED).status, "False");

        // Rebuilt: it takes writes again.
        let mut rebuilt = inputs(&s3, &Action::Steady, &observed, 300);
        rebuilt.members = members();
        rebuilt.storage = heard(None);
        let s4 = status(&rebuilt);
        assert_eq!(condition(&s4, DEGRADED).status, "False");
        assert_eq!(s4.phase, Some(ClusterPhase::Running));
        assert!(s4.members.iter().all(|m| m.storage_failure.is_none()));
    }

    #[test]
    fn refusals_and_failures_are_degraded_with_the_reason() {
        let observed = settled(3);
        let refuse = Action::Refuse("replicas 2 is below the replication factor 3".into());
        let s = status(&inputs(
            &KVClusterStatus::default(),
            &refuse,
            &observed,
            100,
        ));
        let degraded = condition(&s, DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "ScaleDownRefused")
        );
        assert!(degraded.message.contains("below the replication factor"));
        let failed = Action::Degraded("pod 1 failed".into());
        let s2 = status(&inputs(&s, &failed, &observed, 200));
        assert_eq!(condition(&s2, DEGRADED).reason, "PodFailed");
        assert_eq!(s2.phase, Some(ClusterPhase::Degraded));
        assert_eq!(
            condition(&s2, DEGRADED).last_transition_time,
            condition(&s, DEGRADED).last_transition_time,
            "still True: the transition time stays"
        );
        let s3 = status(&inputs(&s2, &Action::Steady, &observed, 300));
        assert_eq!(condition(&s3, DEGRADED).status, "False");
        assert_ne!(
            condition(&s3, DEGRADED).last_transition_time,
            condition(&s2, DEGRADED).last_transition_time
        );
    }
}
