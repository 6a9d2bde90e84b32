//! A CLI process the test interrupts with SIGINT (Ctrl-C), killed on drop
//! so a failing test leaves nothing behind.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running child with piped output.
#[derive(Debug)]
pub struct Interruptible(Option<Child>);

impl Interruptible {
    /// Spawns `command` with stdout and stderr piped.
    ///
    /// # Panics
    /// When it cannot be spawned.
    #[must_use]
    pub fn spawn(command: &mut Command) -> Self {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the command");
        Self(Some(child))
    }

    /// Sends SIGINT and waits (bounded) for the process to exit.
    ///
    /// # Panics
    /// When it is still running after `within`.
    pub fn interrupt(&mut self, within: Duration) -> Output {
        let child = self.0.as_mut().expect("running");
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let deadline = Instant::now() + within;
        while child.try_wait().expect("try_wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "still running {within:?} after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.0
            .take()
            .expect("running")
            .wait_with_output()
            .expect("output")
    }
}

impl Drop for Interruptible {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
