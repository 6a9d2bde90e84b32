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

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::oneshot;

/// The nice level of background threads (0 is the default; 19 the least
/// CPU).
const NICE: i32 = 10;

/// Background threads running at once at most, for all the nodes of a
/// process: far above what streaming needs (four ranges at a time per
/// change), low enough that peers asking for many range scans at once
/// cannot make a node start threads without bound. Beyond it, work is
/// refused ([`BackgroundError::Busy`]) and the stream that wanted it fails
/// and is retried.
pub const MAX_THREADS: usize = 64;

/// The threads of [`spawn`] and [`start`].
static THREADS: Threads = Threads::new(MAX_THREADS);

/// Why background work did not finish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackgroundError {
    /// The OS refused a thread (its error).
    #[error("cannot start a background thread: {0}")]
    Spawn(String),
    /// As many background threads as allowed are running.
    #[error("{0} background threads are running already; retry later")]
    Busy(usize),
    /// The work panicked.
    #[error("a background thread panicked")]
    Panicked,
}

/// Counts running background threads against a limit.
#[derive(Debug)]
struct Threads {
    running: AtomicUsize,
    max: usize,
}

/// One running thread's place in [`Threads`], given back when dropped.
struct Place<'a>(&'a Threads);

impl Drop for Place<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Threads {
    const fn new(max: usize) -> Self {
        Self {
            running: AtomicUsize::new(0),
            max,
        }
    }

    /// Runs `work` on a new thread named `name` at the background priority.
    fn spawn(
        &'static self,
        name: &str,
        work: impl FnOnce() + Send + 'static,
    ) -> Result<(), BackgroundError> {
        self.running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .map_err(|_| BackgroundError::Busy(self.max))?;
        let place = Place(self);
        // On failure the closure, and with it the place, is dropped.
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let _place = place;
                lower_priority();
                work();
            })
            .map(drop)
            .map_err(|e| BackgroundError::Spawn(e.to_string()))
    }
}

/// Runs `work` on a new thread named `name` at the background priority.
///
/// # Errors
/// [`BackgroundError::Busy`] at [`MAX_THREADS`]; [`BackgroundError::Spawn`]
/// when the OS refuses the thread.
pub fn spawn(name: &str, work: impl FnOnce() + Send + 'static) -> Result<(), BackgroundError> {
    THREADS.spawn(name, work)
}

/// Starts `work` on a new background thread; its result comes from
/// [`Running::wait`].
///
/// # Errors
/// As [`spawn`].
pub fn start<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<Running<T>, BackgroundError> {
    let (tx, rx) = oneshot::channel();
    spawn(name, move || {
        let _ = tx.send(work());
    })?;
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

    #[test]
    fn threads_beyond_the_limit_are_refused_until_one_ends() {
        static TWO: Threads = Threads::new(2);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = std::sync::Arc::new(std::sync::Mutex::new(hold));
        let (ended_tx, ended) = std::sync::mpsc::channel();
        for _ in 0..2 {
            let (hold, ended_tx) = (std::sync::Arc::clone(&hold), ended_tx.clone());
            TWO.spawn("strata-test-bg", move || {
                let _ = hold.lock().expect("hold").recv();
                let _ = ended_tx.send(());
            })
            .expect("under the limit");
        }
        assert!(
            matches!(
                TWO.spawn("strata-test-bg", || ()),
                Err(BackgroundError::Busy(2))
            ),
            "a third thread is refused"
        );
        release.send(()).expect("release one");
        ended.recv().expect("one ended");
        // Its place is given back as the thread ends, just after it says so.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while TWO.spawn("strata-test-bg", || ()).is_err() {
            assert!(std::time::Instant::now() < deadline, "the place came back");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        release.send(()).expect("release the other");
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
