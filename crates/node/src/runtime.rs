//! The async runtime a node runs on (the `strata-node` binary and
//! `strata dev`): tokio's multi-threaded scheduler, one worker per core,
//! without the LIFO slot.
//!
//! Why no LIFO slot: a commit group completes many requests at once (the
//! writer thread wakes each request's task). With the LIFO slot, the task a
//! request's task wakes (its HTTP/2 connection, to send the response) runs
//! next on the same worker, so every response left in a socket write of its
//! own (0.75 `writev` per durable Put). Without it the connection task
//! queues behind the other completed requests and one write carries them
//! all: +12% Puts/s and -12% CPU per Put on one node, +5-8% on YCSB B
//! (docs/benchmarks.md). `disable_lifo_slot` is tokio's unstable API,
//! enabled for the workspace by `.cargo/config.toml`; a build without the
//! flag keeps the slot and is otherwise the same.

/// Builds the runtime.
///
/// # Errors
/// The OS error when its threads cannot be started.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

#[cfg(test)]
mod tests {
    #[test]
    #[expect(
        clippy::assertions_on_constants,
        reason = "a test failure, not a compile error, when the build lacks the flag"
    )]
    fn the_workspace_builds_with_tokio_unstable_so_the_lifo_slot_is_off() {
        // Fails when .cargo/config.toml's flag is lost (or overridden by a
        // RUSTFLAGS without it): nodes would silently run slower.
        assert!(
            cfg!(tokio_unstable),
            "build with --cfg tokio_unstable (.cargo/config.toml)"
        );
        let runtime = super::build().expect("runtime");
        assert_eq!(runtime.block_on(async { 6 * 7 }), 42);
    }
}
