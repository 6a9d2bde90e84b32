use proptest::prelude::*;

use super::*;

fn desired(replicas: u32) -> Desired {
    Desired {
        replicas,
        replication_factor: 3,
        delete_volumes: false,
        volume_bytes: None,
    }
}

fn settled(n: u32) -> Observed {
    Observed::settled(n)
}

#[test]
fn a_new_cluster_is_created_with_its_founding_members() {
    assert_eq!(
        plan(&desired(3), &Observed::default()),
        Action::Create { replicas: 3 }
    );
    assert_eq!(plan(&desired(3), &settled(3)), Action::Steady);
    // Steady means every pod ready and every node normal, not just the
    // right count.
    let mut o = settled(3);
    o.pods[2].ready = false;
    assert_eq!(
        plan(&desired(3), &o),
        Action::Wait("waiting for pod 2 to be ready".into())
    );
    let mut o = settled(3);
    o.ring = None;
    assert!(matches!(plan(&desired(3), &o), Action::Wait(m) if m.contains("ring")));
}

#[test]
fn scaling_up_adds_one_node_at_a_time_and_waits_for_it_to_be_normal() {
    let d = desired(5);
    let mut o = settled(3);
    let join = Change::Join { ordinal: 3 };
    assert_eq!(plan(&d, &o), Action::Record(join));
    o.change = Some(join);
    assert_eq!(plan(&d, &o), Action::Scale { replicas: 4 });
    o.statefulset_replicas = Some(4);
    assert!(matches!(plan(&d, &o), Action::Wait(_)), "pod not ready");
    o.pods.push(PodObservation {
        ordinal: 3,
        ready: true,
        failed: false,
        current_config: true,
    });
    assert_eq!(plan(&d, &o), Action::Join { ordinal: 3 });
    o.ring.as_mut().expect("ring").push((3, RingState::Joining));
    assert!(matches!(plan(&d, &o), Action::Wait(_)));
    o.ring.as_mut().expect("ring")[3].1 = RingState::Normal;
    assert_eq!(plan(&d, &o), Action::Complete(join));
    o.change = None;
    assert_eq!(plan(&d, &o), Action::Record(Change::Join { ordinal: 4 }));
}

#[test]
fn scaling_down_decommissions_the_highest_ordinal_before_removing_its_pod() {
    let d = Desired {
        delete_volumes: true,
        ..desired(3)
    };
    let mut o = settled(4);
    let leave = Change::Decommission { ordinal: 3 };
    assert_eq!(plan(&d, &o), Action::Record(leave));
    o.change = Some(leave);
    assert_eq!(plan(&d, &o), Action::Decommission { ordinal: 3 });
    o.ring.as_mut().expect("ring")[3].1 = RingState::Leaving;
    assert!(
        matches!(plan(&d, &o), Action::Wait(_)),
        "not before it left"
    );
    o.ring.as_mut().expect("ring")[3].1 = RingState::Left;
    assert_eq!(plan(&d, &o), Action::Scale { replicas: 3 });
    o.statefulset_replicas = Some(3);
    o.pods.pop();
    assert_eq!(plan(&d, &o), Action::DeleteVolume { ordinal: 3 });
    o.volumes.pop();
    assert_eq!(plan(&d, &o), Action::Complete(leave));
    o.change = None;
    assert_eq!(plan(&d, &o), Action::Steady);
}

#[test]
fn a_scale_down_the_remaining_volumes_cannot_hold_is_refused() {
    let d = Desired {
        volume_bytes: Some(100),
        ..desired(4)
    };
    let mut o = settled(5);
    // 4 nodes of 100 bytes hold 340 at 85%: 340 fits, 341 does not.
    o.load_bytes = 340;
    assert_eq!(
        plan(&d, &o),
        Action::Record(Change::Decommission { ordinal: 4 })
    );
    o.load_bytes = 341;
    assert!(matches!(plan(&d, &o), Action::Refuse(m) if m.contains("grow storage.size")));
}

#[test]
fn below_n_is_refused_and_a_failed_pod_pauses_a_change() {
    assert!(
        matches!(plan(&desired(2), &settled(3)), Action::Refuse(m) if m.contains("replication factor"))
    );
    let mut o = settled(4);
    o.change = Some(Change::Join { ordinal: 3 });
    o.pods[1].failed = true;
    assert!(matches!(plan(&desired(4), &o), Action::Degraded(_)));
}

#[test]
fn a_retained_volume_of_a_node_that_left_is_deleted_before_its_ordinal_is_reused() {
    // 4 -> 3 with retention Retain left volume 3 behind; now 3 -> 4 again.
    let mut o = settled(3);
    o.ring.as_mut().expect("ring").push((3, RingState::Left));
    o.volumes.push(3);
    o.change = Some(Change::Join { ordinal: 3 });
    assert_eq!(plan(&desired(4), &o), Action::DeleteVolume { ordinal: 3 });
    o.volumes.retain(|&v| v != 3);
    assert_eq!(plan(&desired(4), &o), Action::Scale { replicas: 4 });
    // The pod exists with a fresh volume while the ring still shows the old
    // incarnation as left: the new volume is kept, the node asked to join.
    o.statefulset_replicas = Some(4);
    o.volumes.push(3);
    o.pods.push(PodObservation {
        ordinal: 3,
        ready: true,
        failed: false,
        current_config: true,
    });
    assert_eq!(plan(&desired(4), &o), Action::Join { ordinal: 3 });
}

#[test]
fn new_settings_roll_one_ready_normal_pod_at_a_time_in_ordinal_order() {
    let mut o = settled(3);
    for pod in &mut o.pods {
        pod.current_config = false;
    }
    assert_eq!(plan(&desired(3), &o), Action::Restart { ordinal: 0 });
    // Pod 0 is recreated and not ready yet: nothing else restarts.
    o.pods[0] = PodObservation {
        ordinal: 0,
        ready: false,
        failed: false,
        current_config: true,
    };
    assert!(matches!(plan(&desired(3), &o), Action::Wait(m) if m.contains("pod 0")));
    o.pods[0].ready = true;
    o.ring.as_mut().expect("ring")[0].1 = RingState::Joining;
    assert!(matches!(plan(&desired(3), &o), Action::Wait(m) if m.contains("node 0")));
    o.ring.as_mut().expect("ring")[0].1 = RingState::Normal;
    assert_eq!(plan(&desired(3), &o), Action::Restart { ordinal: 1 });
    // A scale-up goes first; the restart resumes afterwards.
    assert_eq!(
        plan(&desired(4), &o),
        Action::Record(Change::Join { ordinal: 3 })
    );
}

#[test]
fn a_pod_failing_on_old_settings_is_replaced_even_mid_change() {
    let mut o = settled(4);
    o.change = Some(Change::Join { ordinal: 3 });
    o.pods[3].failed = true;
    assert!(matches!(plan(&desired(4), &o), Action::Degraded(m) if m.contains("pod 3")));
    // The user fixes the image: the failing pod is on old settings now.
    o.pods[3].current_config = false;
    assert_eq!(plan(&desired(4), &o), Action::Restart { ordinal: 3 });
    // Without a change in flight too, ahead of healthy stale pods.
    let mut o = settled(3);
    for pod in &mut o.pods {
        pod.current_config = false;
    }
    o.pods[2].failed = true;
    o.pods[2].ready = false;
    assert_eq!(plan(&desired(3), &o), Action::Restart { ordinal: 2 });
}

#[test]
fn a_target_changed_mid_join_finishes_the_join_then_heads_back() {
    // 3 -> 5 asked, node 3 joining, then 5 -> 3 asked.
    let mut o = settled(3);
    o.statefulset_replicas = Some(4);
    o.pods.push(PodObservation {
        ordinal: 3,
        ready: true,
        failed: false,
        current_config: true,
    });
    o.ring.as_mut().expect("ring").push((3, RingState::Joining));
    o.change = Some(Change::Join { ordinal: 3 });
    assert!(
        matches!(plan(&desired(3), &o), Action::Wait(_)),
        "the join finishes first; node 3 is never decommissioned while joining"
    );
    o.ring.as_mut().expect("ring")[3].1 = RingState::Normal;
    assert_eq!(
        plan(&desired(3), &o),
        Action::Complete(Change::Join { ordinal: 3 })
    );
    o.change = None;
    assert_eq!(
        plan(&desired(3), &o),
        Action::Record(Change::Decommission { ordinal: 3 })
    );
}

/// A small world the planner acts on: actions take effect, nodes progress
/// through join and decommission on their own, the spec changes at random
/// and the operator may restart (it keeps only the status).
#[derive(Debug, Clone)]
struct World {
    replicas: u32,
    pods: Vec<u32>,
    ring: Vec<(u32, RingState)>,
    change: Option<Change>,
    volumes: Vec<u32>,
    /// Pods running old settings.
    stale: Vec<u32>,
    /// The pod being restarted (not ready until the next tick).
    restarting: Option<u32>,
}

impl World {
    fn observe(&self) -> Observed {
        Observed {
            statefulset_replicas: Some(self.replicas),
            pods: self
                .pods
                .iter()
                .map(|&ordinal| PodObservation {
                    ordinal,
                    ready: self.restarting != Some(ordinal),
                    failed: false,
                    current_config: !self.stale.contains(&ordinal),
                })
                .collect(),
            ring: Some(self.ring.clone()),
            change: self.change,
            volumes: self.volumes.clone(),
            load_bytes: 0,
        }
    }

    fn state(&self, ordinal: u32) -> Option<RingState> {
        self.ring
            .iter()
            .find(|(o, _)| *o == ordinal)
            .map(|(_, s)| *s)
    }

    fn set(&mut self, ordinal: u32, state: RingState) {
        match self.ring.iter_mut().find(|(o, _)| *o == ordinal) {
            Some(entry) => entry.1 = state,
            None => self.ring.push((ordinal, state)),
        }
    }

    fn normal(&self) -> usize {
        self.ring
            .iter()
            .filter(|(_, s)| matches!(s, RingState::Normal | RingState::Down))
            .count()
    }

    fn changing(&self) -> usize {
        self.ring
            .iter()
            .filter(|(_, s)| matches!(s, RingState::Joining | RingState::Leaving))
            .count()
    }

    /// The nodes' own progress: joins and decommissions advance a step.
    fn tick(&mut self) {
        self.restarting = None;
        for entry in &mut self.ring {
            entry.1 = match entry.1 {
                RingState::Joining | RingState::Down => RingState::Normal,
                RingState::Leaving => RingState::Left,
                other => other,
            };
        }
    }

    fn apply(&mut self, action: &Action) -> Result<(), String> {
        match *action {
            Action::Create { replicas } => self.replicas = replicas,
            Action::Record(change) => self.change = Some(change),
            Action::Complete(_) => self.change = None,
            Action::Scale { replicas } => {
                // Pods above the new count go away: each must have left.
                for ordinal in replicas..self.replicas {
                    if let Some(state) = self.state(ordinal)
                        && state != RingState::Left
                    {
                        return Err(format!("pod {ordinal} removed while {state:?}"));
                    }
                }
                self.pods.retain(|&o| o < replicas);
                self.stale.retain(|&o| o < replicas);
                for ordinal in self.replicas..replicas {
                    if self.volumes.contains(&ordinal)
                        && self.state(ordinal) == Some(RingState::Left)
                    {
                        return Err(format!(
                            "pod {ordinal} started on the volume of a node that left"
                        ));
                    }
                    self.pods.push(ordinal);
                    if !self.volumes.contains(&ordinal) {
                        self.volumes.push(ordinal);
                    }
                    self.set(ordinal, RingState::Waiting);
                }
                self.replicas = replicas;
            }
            Action::Join { ordinal } => self.set(ordinal, RingState::Joining),
            Action::Decommission { ordinal } => {
                if self.state(ordinal) != Some(RingState::Normal) {
                    return Err(format!("decommission of node {ordinal} while not normal"));
                }
                self.set(ordinal, RingState::Leaving);
            }
            Action::DeleteVolume { ordinal } => {
                if self.pods.contains(&ordinal) {
                    return Err(format!("volume {ordinal} deleted under its pod"));
                }
                self.volumes.retain(|&o| o != ordinal);
            }
            Action::Restart { ordinal } => {
                if self.change.is_some() || self.restarting.is_some() {
                    return Err(format!(
                        "restart of {ordinal} during {:?} / {:?}",
                        self.change, self.restarting
                    ));
                }
                if let Some((down, _)) = self.ring.iter().find(|(_, s)| *s == RingState::Down) {
                    return Err(format!("restart of {ordinal} while node {down} is down"));
                }
                self.stale.retain(|&o| o != ordinal);
                self.restarting = Some(ordinal);
                self.set(ordinal, RingState::Down);
            }
            Action::Wait(_) | Action::Refuse(_) | Action::Degraded(_) | Action::Steady => {}
        }
        if self.changing() > 1 {
            return Err(format!("two changes in flight: {:?}", self.ring));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No sequence of spec edits, node progress and operator restarts
    /// leads to two changes in flight, a pod removed before its node left,
    /// a decommission of a node that is not normal, a pod started on a
    /// departed node's volume, two pods restarting at once or a restart
    /// during a change, or fewer than N normal nodes; and once edits stop,
    /// the cluster reaches the spec (or N) with every pod on the new
    /// settings.
    #[test]
    fn the_planner_never_breaks_the_rules(
        targets in proptest::collection::vec(1u32..8, 1..6),
        steps in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 40..120),
        delete_volumes in any::<bool>(),
    ) {
        let n = 3u32;
        let mut world = World {
            replicas: 0,
            pods: Vec::new(),
            ring: Vec::new(),
            change: None,
            volumes: Vec::new(),
            stale: Vec::new(),
            restarting: None,
        };
        // The cluster is created at its first target (at least N).
        let first = targets[0].max(n);
        world.apply(&Action::Create { replicas: first }).expect("create");
        world.pods = (0..first).collect();
        world.volumes = (0..first).collect();
        world.ring = (0..first).map(|o| (o, RingState::Normal)).collect();
        let mut target = first;
        let mut edits = targets.iter().skip(1);
        for (edit, node_progress, settings_edit) in steps {
            if edit && let Some(&next) = edits.next() {
                target = next;
            }
            if settings_edit {
                world.stale.clone_from(&world.pods);
            }
            let desired = Desired { replicas: target, replication_factor: n, delete_volumes, volume_bytes: None };
            let action = plan(&desired, &world.observe());
            if let Err(e) = world.apply(&action) {
                prop_assert!(false, "{e} after {action:?}");
            }
            if node_progress {
                world.tick();
            }
            prop_assert!(world.normal() + world.changing() >= n as usize, "{:?}", world.ring);
        }
        // Edits over: it converges.
        let desired = Desired { replicas: target, replication_factor: n, delete_volumes, volume_bytes: None };
        for _ in 0..200 {
            let action = plan(&desired, &world.observe());
            if action == Action::Steady || matches!(action, Action::Refuse(_)) {
                break;
            }
            if let Err(e) = world.apply(&action) {
                prop_assert!(false, "{e} after {action:?}");
            }
            world.tick();
        }
        prop_assert_eq!(world.replicas, target.max(n));
        prop_assert_eq!(world.normal(), target.max(n) as usize);
        prop_assert!(world.stale.is_empty(), "pods left on old settings: {:?}", world.stale);
    }
}
