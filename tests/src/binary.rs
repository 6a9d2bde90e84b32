//! Locating the workspace's binaries from a test executable.

use std::path::PathBuf;

/// Path of a workspace binary built with the same profile as the running test
/// (`target/<profile>/<name>`).
///
/// # Panics
/// When the binary has not been built; the message says how to build it.
#[must_use]
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}
