//! The `strata` command-line tool against a real node process: the key
//! commands a newcomer types first, their output and their exit codes.

use std::process::Output;

use strata_tests::{NodeProcess, workspace_binary};

/// Runs `strata -e <endpoint> <args>` to completion.
fn strata(endpoint: &str, args: &[&str]) -> Output {
    std::process::Command::new(workspace_binary("strata"))
        .arg("-e")
        .arg(endpoint)
        .args(args)
        .env_remove("STRATA_KEY")
        .env_remove("STRATA_CERT")
        .env_remove("STRATA_CA")
        .output()
        .expect("run strata")
}

/// Stdout of a run that must succeed.
fn ok(endpoint: &str, args: &[&str]) -> String {
    let out = strata(endpoint, args);
    assert!(
        out.status.success(),
        "strata {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// A node of its own (N = 1) in a temp directory, removed with it.
fn one_node() -> (tempfile::TempDir, NodeProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        &dir.path().join("node-0"),
        Some("strata-0"),
        &["--replication-factor", "1"],
    );
    (dir, node)
}

/// The context a `get` printed.
fn context_of(get: &str) -> &str {
    get.lines()
        .find_map(|l| l.strip_prefix("context: "))
        .unwrap_or_else(|| panic!("no context in {get:?}"))
}

#[test]
fn the_cli_puts_gets_and_deletes_with_contexts_and_clear_errors() {
    // The directory lives as long as the node (dropped after it).
    let (_dir, node) = one_node();
    let e = &node.addr().to_string();

    assert!(ok(e, &["put", "k", "v1"]).starts_with("ok (1 replicas)"));
    ok(e, &["put", "k", "v2", "-c", "one"]);
    let got = ok(e, &["get", "k"]);
    assert!(
        got.contains(": v1\n") && got.contains(": v2\n"),
        "two writes without a context are siblings: {got}"
    );
    ok(e, &["put", "k", "v3", "--context", context_of(&got)]);
    let got = ok(e, &["get", "k", "--consistency", "all"]);
    assert_eq!(got.lines().filter(|l| l.starts_with("sibling")).count(), 1);
    assert!(got.contains(": v3\n"), "{got}");
    assert!(ok(e, &["delete", "k", "--context", context_of(&got)]).starts_with("deleted"));
    assert!(ok(e, &["get", "k"]).starts_with("(not found)"));
    // Without --context, delete removes what a get shows now: here two
    // siblings, which a delete without any context would leave in place.
    ok(e, &["put", "k2", "a"]);
    ok(e, &["put", "k2", "b"]);
    assert!(ok(e, &["delete", "k2"]).starts_with("deleted"));
    let got = ok(e, &["get", "k2"]);
    assert!(got.starts_with("(not found)"), "{got}");

    // Bad input: a non-zero exit and a message naming the problem.
    for (args, says) in [
        (&["put", "", "v"][..], "key must not be empty"),
        (&["put", "k", "v", "--context", "zz"], "context is not hex"),
        (&["get", "k", "-c", "seven"], "unknown consistency"),
    ] {
        let out = strata(e, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A reader that stops early (`strata get k | head -1`, a pager quit
/// early) ends the CLI quietly with success, whatever it prints: before,
/// `println!` panicked on the closed pipe.
#[test]
fn a_closed_stdout_ends_the_cli_quietly() {
    let (dir, node) = one_node();
    let e = &node.addr().to_string();
    let file = dir.path().join("big");
    std::fs::write(&file, vec![b'x'; 1 << 20]).expect("write value file");
    ok(e, &["put", "big", "--file", file.to_str().expect("utf-8")]);
    for args in [
        &["get", "big"][..],
        &["get", "big", "--raw"],
        &["ring"],
        &["status"],
    ] {
        let mut child = std::process::Command::new(workspace_binary("strata"))
            .args(["-e", e])
            .args(args)
            .env_remove("STRATA_KEY")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run strata");
        // No reader is left before it writes: its first write fails.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("strata ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

#[test]
fn binary_values_go_in_from_a_file_or_stdin_and_come_out_raw() {
    let (dir, node) = one_node();
    let e = &node.addr().to_string();
    // Every byte value, twice: not UTF-8, with NULs and newlines.
    let value: Vec<u8> = (0..=255u8).chain(0..=255u8).collect();
    let file = dir.path().join("value.bin");
    std::fs::write(&file, &value).expect("write value file");

    ok(
        e,
        &["put", "from-file", "--file", file.to_str().expect("utf-8")],
    );
    let raw = strata(e, &["get", "from-file", "--raw"]);
    assert!(raw.status.success(), "{raw:?}");
    assert_eq!(raw.stdout, value, "--raw writes exactly the bytes");
    let shown = ok(e, &["get", "from-file"]);
    assert!(
        shown.contains("sibling 0: 0x000102"),
        "non-UTF-8 values are shown as hex, not mangled: {shown}"
    );

    let mut put = std::process::Command::new(workspace_binary("strata"))
        .args(["-e", e, "put", "from-stdin", "--file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run strata");
    std::io::Write::write_all(&mut put.stdin.take().expect("stdin"), &value).expect("write stdin");
    assert!(put.wait().expect("put ends").success());
    assert_eq!(strata(e, &["get", "from-stdin", "--raw"]).stdout, value);

    // --raw prints one value or fails saying why.
    ok(e, &["put", "two", "a"]);
    ok(e, &["put", "two", "b"]);
    for (args, says) in [
        (&["get", "two", "--raw"][..], "2 siblings"),
        (&["get", "missing", "--raw"], "not found"),
        (&["put", "k"], "required"),
        (&["put", "k", "v", "--file", "-"], "cannot be used with"),
        (
            &["put", "k", "--file", "/nonexistent/value"],
            "/nonexistent/value",
        ),
    ] {
        let out = strata(e, args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn bench_loads_runs_and_reports_reads_that_found_nothing() {
    // The directory lives as long as the node (dropped after it).
    let (_dir, node) = one_node();
    let e = &node.addr().to_string();
    let bench = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["bench", "--workload", "c", "--threads", "4", "--json"];
        args.extend_from_slice(extra);
        ok(e, &args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{l}: {err}")))
            .collect()
    };
    let field = |lines: &[serde_json::Value], phase: &str, key: &str| {
        lines
            .iter()
            .find(|l| l["phase"] == phase && l.get(key).is_some())
            .map(|l| l[key].clone())
    };

    let lines = bench(&["--records", "50", "--ops", "200"]);
    let count = |phase: &str, op: &str| {
        lines
            .iter()
            .find(|l| l["phase"] == phase && l["op"] == op)
            .map(|l| l["count"].clone())
    };
    assert_eq!(count("load", "insert"), Some(50.into()), "{lines:?}");
    assert_eq!(count("run", "read"), Some(200.into()), "{lines:?}");
    assert_eq!(field(&lines, "run", "missing_reads"), None, "{lines:?}");

    // Twice the key space without loading it: about half the reads miss.
    let lines = bench(&[
        "--records",
        "100",
        "--ops",
        "200",
        "--skip-load",
        "--distribution",
        "uniform",
    ]);
    let missing = field(&lines, "run", "missing_reads")
        .and_then(|m| m.as_u64())
        .unwrap_or_else(|| panic!("no missing reads reported: {lines:?}"));
    assert!((40..=160).contains(&missing), "{missing} of 200: {lines:?}");
}

/// A long bench says how it is going while it runs: a progress line on
/// stderr every `--status-interval` seconds, for each phase, followed by
/// the interval's latency; stdout (the report) stays as it was, and 0
/// turns the lines off.
#[test]
fn a_bench_prints_progress_lines_while_it_runs() {
    let (_dir, node) = one_node();
    let e = &node.addr().to_string();
    let args = [
        "bench",
        "--workload",
        "a",
        "--records",
        "2000",
        "--threads",
        "2",
        "--rate",
        "400",
        "--duration",
        "3.5",
        "--json",
    ];
    let out = strata(e, &[&args[..], &["--status-interval", "1"]].concat());
    assert!(out.status.success(), "{}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("run ") && l.ends_with(" errors"))
        .collect();
    assert!(progress.len() >= 3, "a line a second: {stderr}");
    // About 400 ops/s, each line over the last second.
    let rates: Vec<u64> = progress
        .iter()
        .map(|l| {
            let rate = l.split(" ops, ").nth(1).and_then(|r| r.split(' ').next());
            rate.and_then(|r| r.replace(',', "").parse().ok())
                .unwrap_or_else(|| panic!("no rate in {l:?}"))
        })
        .collect();
    assert!(
        rates.iter().all(|r| (100..=1_000).contains(r)),
        "rates near 400/s: {progress:?}"
    );
    assert!(
        progress
            .iter()
            .all(|l| l.contains("over the last 1 s, 0 errors")),
        "{progress:?}"
    );
    // Each interval's latency on a line of its own: p50 <= p99 <= max.
    let latencies: Vec<Vec<u64>> = stderr
        .lines()
        .filter(|l| l.starts_with("run ") && l.contains(": latency over the last 1 s: "))
        .map(|l| {
            l.rsplit(": ")
                .next()
                .unwrap_or_default()
                .split(", ")
                .map(|part| {
                    let number = part.split(' ').nth(1).unwrap_or_default();
                    number
                        .replace(',', "")
                        .parse()
                        .unwrap_or_else(|_| panic!("no number in {part:?} of {l:?}"))
                })
                .collect()
        })
        .collect();
    assert!(latencies.len() >= 3, "a latency line a second: {stderr}");
    assert!(
        latencies
            .iter()
            .all(|l| l.len() == 3 && 0 < l[0] && l[0] <= l[1] && l[1] <= l[2]),
        "p50, p99, max: {latencies:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("stdout is the report only: {line}: {err}"));
    }

    let quiet = strata(
        e,
        &[&args[..], &["--status-interval", "0", "--skip-load"]].concat(),
    );
    assert!(quiet.status.success(), "{}", quiet.status);
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert!(!stderr.contains(" errors"), "no progress lines: {stderr}");
}

#[test]
fn a_bench_cut_short_by_ctrl_c_reports_what_it_measured() {
    let (_dir, node) = one_node();
    let mut bench = strata_tests::interrupt::Interruptible::spawn(
        std::process::Command::new(workspace_binary("strata"))
            .args(["-e", &node.addr().to_string()])
            .args(["bench", "--workload", "ping", "--duration", "120"])
            .args(["--threads", "2", "--rate", "200", "--json"]),
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = bench.interrupt(std::time::Duration::from_secs(20));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}: {stdout}", out.status);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let pings = lines
        .iter()
        .find(|l| l["phase"] == "run" && l["op"] == "ping")
        .and_then(|l| l["count"].as_u64())
        .unwrap_or_else(|| panic!("no ping line: {lines:?}"));
    // About 400 at 200/s for 2 s; far fewer than the 24,000 of the full run.
    assert!((50..5_000).contains(&pings), "{pings} pings: {lines:?}");
    assert!(lines.iter().any(|l| l["interrupted"] == true), "{lines:?}");
}
