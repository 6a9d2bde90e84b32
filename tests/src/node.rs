//! One `strata-node` child process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::workspace_binary;

/// How long a node may take to print its listening address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running node. Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    addr: SocketAddr,
    node_id: String,
    data_dir: PathBuf,
}

impl NodeProcess {
    /// Starts a node with `node_id` (if given) on a free loopback port, its
    /// data in `data_dir` and its log in `data_dir/../<dir name>.log`.
    /// Extra flags (e.g. `--replication-factor 1`) go in `args`.
    ///
    /// # Panics
    /// When the node does not start within 20 seconds or prints an
    /// unexpected first line; the panic message includes its log.
    #[must_use]
    pub fn start(data_dir: &Path, node_id: Option<&str>, args: &[&str]) -> Self {
        Self::spawn(
            Command::new(workspace_binary("strata-node")),
            data_dir,
            node_id,
            args,
        )
    }

    /// [`NodeProcess::start`] under an open-file limit of `open_files`
    /// (soft and hard, set by `ulimit -n` in a shell that then runs the
    /// node in its place).
    ///
    /// # Panics
    /// As [`NodeProcess::start`].
    #[must_use]
    pub fn start_with_open_files(
        data_dir: &Path,
        node_id: Option<&str>,
        args: &[&str],
        open_files: u32,
    ) -> Self {
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("ulimit -n {open_files} && exec \"$0\" \"$@\""))
            .arg(workspace_binary("strata-node"));
        Self::spawn(command, data_dir, node_id, args)
    }

    fn spawn(mut command: Command, data_dir: &Path, node_id: Option<&str>, args: &[&str]) -> Self {
        let log_path = data_dir.with_extension("log");
        let log = std::fs::File::create(&log_path).expect("create node log");
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(id) = node_id {
            command.arg("--node-id").arg(id);
        }
        let mut child = command.spawn().expect("spawn strata-node");

        // The first stdout line is `strata-node <id> listening on <addr>`.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let Some((id, addr)) = parse_banner(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("strata-node did not start: first line {line:?}; log:\n{log}");
        };
        Self {
            child,
            addr,
            node_id: id,
            data_dir: data_dir.to_owned(),
        }
    }

    /// The node's gRPC address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most memory the process has held resident so far (`VmHWM`),
    /// in bytes.
    ///
    /// # Panics
    /// When `/proc/<pid>/status` cannot be read or has no such line
    /// (Linux only).
    #[must_use]
    pub fn peak_resident_bytes(&self) -> u64 {
        self.status_bytes("VmHWM:")
    }

    /// The process's address space (`VmSize`), in bytes: memory reserved,
    /// resident or not.
    ///
    /// # Panics
    /// As [`peak_resident_bytes`](Self::peak_resident_bytes).
    #[must_use]
    pub fn virtual_bytes(&self) -> u64 {
        self.status_bytes("VmSize:")
    }

    fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("a {field} line"));
        kib * 1024
    }

    /// The id the node reported.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Stops the process (SIGSTOP) without killing it.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Sends SIGTERM (what Kubernetes sends a pod it stops) and waits up
    /// to `within` for the process to exit; its status, or `None` if it
    /// is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        self.signal("-TERM");
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The exit status, once the process has ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// What the node logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// The value of the metric sample `name` (the whole series, labels
    /// included: `strata_cleanups_completed_total`) on the node's metrics
    /// port, which its log's start line gives; `None` when the port is not
    /// in the log yet, does not answer, or has no such sample.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let log = self.log();
        let at = log.rfind("metrics=http://")? + "metrics=http://".len();
        let addr: SocketAddr = log[at..].split('/').next()?.parse().ok()?;
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut body = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut body))
            .await
            .ok()?
            .ok()?;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// The node's data directory.
    #[must_use]
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_banner(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.trim().strip_prefix("strata-node ")?;
    let (id, addr) = rest.split_once(" listening on ")?;
    Some((id.to_owned(), addr.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_node_banner() {
        assert_eq!(
            super::parse_banner("strata-node strata-0 listening on 127.0.0.1:4242\n"),
            Some((
                "strata-0".to_owned(),
                "127.0.0.1:4242".parse().expect("addr")
            ))
        );
        assert_eq!(super::parse_banner("something else"), None);
    }
}
