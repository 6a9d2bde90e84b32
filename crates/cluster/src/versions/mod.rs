//! Causality for values: dotted version vectors.
//!
//! Every write creates a [`Version`] with a unique **dot** — the coordinating
//! node and that node's next counter — and the **causal context** the client
//! wrote with (the context a previous `Get` returned; empty when none).
//! Version `a` is obsolete when another version's context covers `a`'s dot.
//! So a write with a context supersedes exactly the siblings the client saw,
//! and a write without context is concurrent with everything: it becomes a
//! sibling, even when the same node coordinated both writes. Plain vector
//! clocks cannot express the latter without reading the key before writing
//! it, which the write path must never do (design invariant 1).
//!
//! [`Siblings::merge`] is commutative, associative and idempotent (a
//! join-semilattice), which is what the engine's merge operator, read repair
//! and anti-entropy rely on: replicas converge whatever order versions
//! arrive in.

mod clock;
mod siblings;

pub use clock::{Dot, PrunePolicy, VersionVector};
pub use siblings::{Siblings, Version, admitted_context, next_counter};
