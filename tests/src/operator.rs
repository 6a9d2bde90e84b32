//! One `strata-operator` child process, pointed at an [`ApiServer`]
//! through a kubeconfig. Dropping it kills the process (SIGKILL).
//!
//! [`ApiServer`]: crate::apiserver::ApiServer

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::workspace_binary;

/// A running operator.
#[derive(Debug)]
pub struct OperatorProcess {
    child: Child,
    log: PathBuf,
}

impl OperatorProcess {
    /// Starts the operator for `namespace` with `kubeconfig`, its log in
    /// `log`, as replica `identity`, with a short lease (`lease_seconds`)
    /// so a successor takes over quickly.
    ///
    /// # Panics
    /// When it does not print its banner within 20 seconds.
    #[must_use]
    pub fn start(kubeconfig: &Path, namespace: &str, log: &Path, identity: &str) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("operator log");
        let mut child = Command::new(workspace_binary("strata-operator"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .args(["--namespace", namespace, "--lease-namespace", namespace])
            .args(["--metrics-listen", "127.0.0.1:0", "--lease-seconds", "3"])
            .args(["--identity", identity, "--node-timeout-ms", "2000"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("spawn strata-operator");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        if !line.starts_with("strata-operator ") {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("strata-operator did not start: {line:?}; log:\n{text}");
        }
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// What it logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
