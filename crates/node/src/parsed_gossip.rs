//! Each gossip participant's state, parsed once per change.
//!
//! A node rebuilds its cluster view several times per gossip round, and
//! parsing a member's state means parsing its tokens (hundreds of hex
//! numbers each): in a cluster of 20 nodes of 256 tokens, the parsing alone
//! kept idle nodes busy. A chitchat node state only changes with a higher
//! `max_version`, so a participant's parsed gossip is kept until it does.

use std::collections::{BTreeMap, HashMap};

use chitchat::{ChitchatId, NodeState, Version};
use strata_cluster::NodeGossip;

/// Parsed gossip by participant (a node id and gossip generation).
#[derive(Debug, Default)]
pub(crate) struct ParsedGossip {
    entries: HashMap<ChitchatId, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// What the state was parsed at: its version and how many keys it had.
    stamp: (Version, usize),
    /// `None`: the state is not a complete member's (yet).
    gossip: Option<NodeGossip>,
}

fn stamp(state: &NodeState) -> (Version, usize) {
    (state.max_version(), state.num_key_values())
}

impl ParsedGossip {
    /// Every participant in `states` with its parsed gossip (its gossip
    /// address taken from the participant's id); participants whose state
    /// is incomplete are left out. Only states that changed since the last
    /// call are parsed; participants no longer in `states` are forgotten.
    pub(crate) fn parse<'a>(
        &mut self,
        states: &'a BTreeMap<ChitchatId, NodeState>,
    ) -> Vec<(&'a ChitchatId, NodeGossip)> {
        self.entries.retain(|id, _| states.contains_key(id));
        states
            .iter()
            .filter_map(|(id, state)| {
                let stamp = stamp(state);
                let entry = match self.entries.get(id) {
                    Some(entry) if entry.stamp == stamp => entry,
                    _ => {
                        let gossip = match NodeGossip::from_key_values(state.key_values()) {
                            Ok(mut gossip) => {
                                gossip.gossip_address = id.gossip_advertise_addr.to_string();
                                Some(gossip)
                            }
                            Err(e) => {
                                tracing::debug!(node = %id.node_id, error = %e, "ignoring incomplete gossip state");
                                None
                            }
                        };
                        self.entries
                            .entry(id.clone())
                            .insert_entry(Entry { stamp, gossip })
                            .into_mut()
                    }
                };
                entry.gossip.clone().map(|gossip| (id, gossip))
            })
            .collect()
    }

    /// How many participants are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::{NodeId, tokens_for};

    use super::*;

    fn member(node: &str, generation: u64) -> (ChitchatId, NodeState) {
        let addr = ([10, 0, 0, 1], 7401).into();
        let id = ChitchatId::new(node.to_owned(), generation, addr);
        let mut state = NodeState::for_test();
        let gossip = NodeGossip {
            grpc_address: "10.0.0.1:7400".to_owned(),
            internal_address: String::new(),
            gossip_address: String::new(),
            tokens: tokens_for(&NodeId::new(node).expect("id"), 4),
            state: strata_cluster::NodeState::Normal,
            load_bytes: 0,
            incarnation: 0,
            departures: Vec::new(),
            rejoin: strata_cluster::Rejoin::None,
        };
        for (key, value) in gossip.to_key_values() {
            state.set(key, value);
        }
        (id, state)
    }

    #[test]
    fn a_state_is_parsed_again_only_once_it_changes() {
        let (a, mut a_state) = member("a", 1);
        let (b, b_state) = member("b", 1);
        let mut states = BTreeMap::from([(a.clone(), a_state.clone()), (b.clone(), b_state)]);
        let mut parsed = ParsedGossip::default();
        let first = parsed.parse(&states);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].1.gossip_address, "10.0.0.1:7401", "from the id");
        assert_eq!(first[0].1.load_bytes, 0);

        // A new load: parsed again. The same state: the kept parse.
        a_state.set(strata_cluster::KEY_LOAD, "4096");
        states.insert(a.clone(), a_state.clone());
        let second = parsed.parse(&states);
        assert_eq!(second[0].1.load_bytes, 4096);
        assert_eq!(parsed.parse(&states), second);

        // A kept parse is only as fresh as its stamp: the same version
        // with another content would not be seen (chitchat never does
        // that), which shows the parse was kept.
        let mut forged = a_state.clone();
        forged.set(strata_cluster::KEY_LOAD, "1");
        forged.set_max_version(a_state.max_version());
        states.insert(a.clone(), forged);
        assert_eq!(parsed.parse(&states)[0].1.load_bytes, 4096);

        // An incomplete state is left out; a participant gone is forgotten.
        let (c, mut c_state) = member("c", 1);
        c_state.delete(strata_cluster::KEY_TOKENS);
        states.insert(c, c_state);
        states.remove(&b);
        let ids: Vec<_> = parsed
            .parse(&states)
            .into_iter()
            .map(|(id, _)| id.node_id.to_string())
            .collect();
        assert_eq!(ids, ["a"]);
        assert_eq!(parsed.len(), 2, "a and the incomplete c");
    }
}
