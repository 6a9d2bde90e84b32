//! Building Merkle trees from the local store, and a short-lived cache so
//! a peer descending level by level does not make this node rescan.

use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_cluster::{MerkleTree, TokenRange, key_hash};

use crate::storage::{Storage, StorageError, encode};

/// A finished tree of `range` over what `storage` holds now.
///
/// # Errors
/// Engine errors while scanning.
pub fn build(storage: &Storage, range: TokenRange, depth: u32) -> Result<MerkleTree, StorageError> {
    let mut tree = MerkleTree::new(range, depth);
    storage.scan(range, &[], |entry| {
        // Re-encoded, not the stored bytes: replicas holding the same
        // versions hash the same whatever merge operands produced them.
        tree.insert(
            entry.token(),
            key_hash(&entry.engine_key, &encode(&entry.siblings)),
        );
        ControlFlow::Continue(())
    })?;
    tree.finish();
    Ok(tree)
}

/// Trees this node built for peers' repair sessions, reused for the
/// deeper levels of the same session.
#[derive(Debug, Default)]
pub struct TreeCache {
    trees: Mutex<Vec<Cached>>,
}

/// A tree, its range and depth, and when it was built.
type Cached = (TokenRange, u32, Instant, Arc<MerkleTree>);

/// Trees kept at most, and for how long.
const CACHED: usize = 32;
const TTL: Duration = Duration::from_secs(30);

impl TreeCache {
    /// The tree of `range` at `depth`. A request for the root starts a
    /// session and always rebuilds (so it reflects every write so far);
    /// deeper requests reuse that session's tree.
    ///
    /// # Errors
    /// Engine errors while scanning.
    pub fn get(
        &self,
        storage: &Storage,
        range: TokenRange,
        depth: u32,
        fresh: bool,
    ) -> Result<Arc<MerkleTree>, StorageError> {
        if !fresh {
            let trees = self.lock();
            if let Some((.., tree)) = trees
                .iter()
                .find(|(r, d, at, _)| *r == range && *d == depth && at.elapsed() < TTL)
            {
                return Ok(Arc::clone(tree));
            }
        }
        let tree = Arc::new(build(storage, range, depth)?);
        let mut trees = self.lock();
        trees.retain(|(r, d, at, _)| !(*r == range && *d == depth) && at.elapsed() < TTL);
        if trees.len() >= CACHED {
            trees.remove(0);
        }
        trees.push((range, depth, Instant::now(), Arc::clone(&tree)));
        Ok(tree)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Cached>> {
        self.trees
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
