//! Bulk background work (scanning a range to stream it out, loading a
//! streamed run in) on threads of its own at a lower CPU priority, so that
//! client requests get a core first.
//!
//! Why: a throttled join streams at an average rate, but each piece of it
//! is a burst of full-speed work (a 16 MiB run built into a table, a
//! range scanned batch after batch), and on the tokio blocking pool those
//! bursts had the same scheduler weight as the threads answering clients.
//! With `nice` +10 (about a tenth of the weight) a client request that
//! wakes up preempts them (docs/benchmarks.md, "Paced load sent in
//! bursts"). The priority of a thread can only be lowered without
//! privileges, never raised back, so these are fresh threads rather than
//! the shared blocking pool's.

use tokio::sync::oneshot;

/// The nice level of background threads (0 is the default; 19 the least
/// CPU).
const NICE: i32 = 10;

/// Why background work did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackgroundError {
    /// The OS refused a thread (its error).
    #[error("cannot start a background thread: {0}")]
    Spawn(String),
    /// The work panicked.
    #[error("a background thread panicked")]
    Panicked,
}

/// Runs `work` on a new thread named `name` at the background priority.
///
/// # Errors
/// The OS error when the thread cannot be started.
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            work();
        })
        .map(drop)
}

/// Starts `work` on a new background thread; its result comes from
/// [`Running::wait`].
///
/// # Errors
/// [`BackgroundError::Spawn`] when the thread cannot be started.
pub fn start<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<Running<T>, BackgroundError> {
    let (tx, rx) = oneshot::channel();
    spawn(name, move || {
        let _ = tx.send(work());
    })
    .map_err(|e| BackgroundError::Spawn(e.to_string()))?;
    Ok(Running(rx))
}

/// Background work started by [`start`].
#[derive(Debug)]
pub struct Running<T>(oneshot::Receiver<T>);

impl<T> Running<T> {
    /// Waits for the work's result.
    ///
    /// # Errors
    /// [`BackgroundError::Panicked`] when the work panicked.
    pub async fn wait(self) -> Result<T, BackgroundError> {
        self.0.await.map_err(|_| BackgroundError::Panicked)
    }
}

/// Lowers the calling thread's CPU priority to [`NICE`]; where the OS
/// refuses (or is not Linux), the thread keeps its priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    #[expect(unsafe_code, reason = "setpriority(2) for the calling thread")]
    // SAFETY: `gettid` and `setpriority` take and return plain integers and
    // touch no memory of ours; on Linux, `PRIO_PROCESS` with a thread id
    // sets that thread's nice value only.
    unsafe {
        let tid = libc::gettid();
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid.cast_unsigned(), NICE);
    }
}

/// The calling thread's nice value (Linux), for tests.
#[cfg(all(test, target_os = "linux"))]
fn own_nice() -> i32 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("own stat");
    // Field 19 (nice), counted after the command name's closing paren.
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    rest.split_whitespace()
        .nth(16)
        .and_then(|n| n.parse().ok())
        .expect("nice field")
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_the_background_priority_and_returns_its_result() {
        let before = own_nice();
        let running = start("strata-test-bg", || (own_nice(), 6 * 7)).expect("started");
        let (nice, answer) = running.wait().await.expect("ran");
        assert_eq!(answer, 42);
        // At least NICE: a test run that is itself niced further stays so.
        assert!(nice >= NICE, "the background thread is niced: {nice}");
        assert_eq!(own_nice(), before, "the caller's thread is not");
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_hang() {
        let running = start("strata-test-bg", || -> u32 { panic!("boom") }).expect("started");
        let outcome = running.wait().await;
        assert!(
            matches!(outcome, Err(BackgroundError::Panicked)),
            "{outcome:?}"
        );
    }
}
