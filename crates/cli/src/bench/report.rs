//! Printing benchmark results.

use super::workload::Workload;
use super::{BenchArgs, PhaseStats};

/// The shortest phase whose client CPU is reported: the process's CPU
/// time counts in 10 ms ticks, so one tick in a phase of a few
/// milliseconds would read as several cores.
const MIN_CPU_PHASE: std::time::Duration = std::time::Duration::from_secs(1);

/// Results of a benchmark, phase by phase.
#[derive(Debug)]
pub(crate) struct Report {
    workload: Workload,
    threads: u64,
    client_threads: u64,
    phases: Vec<(&'static str, PhaseStats)>,
    /// A signal cut the last phase short.
    interrupted: bool,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Line {
    /// `load` or `run`.
    pub(crate) phase: &'static str,
    /// Operation name.
    pub(crate) op: &'static str,
    /// Successful operations.
    pub(crate) count: u64,
    /// Successful operations per second over the phase.
    pub(crate) ops_per_sec: f64,
    /// Latency percentiles in microseconds: p50, p95, p99, p99.9.
    pub(crate) percentiles_us: [u64; 4],
}

impl Report {
    pub(super) fn new(args: &BenchArgs) -> Self {
        Self {
            workload: args.workload,
            threads: args.threads,
            client_threads: args.client_threads,
            phases: Vec::new(),
            interrupted: false,
        }
    }

    /// Marks the last phase as cut short by a signal.
    pub(super) fn interrupted(&mut self) {
        self.interrupted = true;
    }

    pub(super) fn add(&mut self, phase: &'static str, stats: PhaseStats) {
        self.phases.push((phase, stats));
    }

    /// Every line of the report.
    #[must_use]
    pub(crate) fn lines(&self) -> Vec<Line> {
        let mut out = Vec::new();
        for (phase, stats) in &self.phases {
            let secs = stats.elapsed.as_secs_f64().max(1e-9);
            for (op, h) in &stats.latencies {
                out.push(Line {
                    phase,
                    op: op.name(),
                    count: h.len(),
                    ops_per_sec: h.len() as f64 / secs,
                    percentiles_us: [0.50, 0.95, 0.99, 0.999].map(|q| h.value_at_quantile(q)),
                });
            }
        }
        out
    }

    /// Errors by code, over all phases: phase, code, count and the first
    /// error's message.
    #[must_use]
    pub(crate) fn errors(&self) -> Vec<(&'static str, &str, u64, &str)> {
        self.phases
            .iter()
            .flat_map(|(phase, s)| {
                s.errors.iter().map(move |(code, tally)| {
                    (*phase, code.as_str(), tally.count, tally.first.as_str())
                })
            })
            .collect()
    }

    /// The report as a table, or as JSON lines.
    #[must_use]
    pub(crate) fn render(&self, json: bool) -> String {
        let mut out = String::new();
        let workload = format!("{:?}", self.workload).to_lowercase();
        if !json {
            out.push_str(&format!(
                "workload {workload}, {} workers{}\n{:<6} {:<7} {:>10} {:>11} {:>8} {:>8} {:>8} {:>8}\n",
                self.threads,
                if self.interrupted {
                    " (interrupted: the last phase was cut short)"
                } else {
                    ""
                },
                "phase", "op", "count", "ops/sec", "p50 us", "p95 us", "p99 us", "p99.9 us"
            ));
        }
        for l in self.lines() {
            let [p50, p95, p99, p999] = l.percentiles_us;
            if json {
                out.push_str(&format!(
                    "{{\"workload\": \"{workload}\", \"phase\": \"{}\", \"op\": \"{}\", \"count\": {}, \"ops_per_sec\": {:.0}, \"p50_us\": {p50}, \"p95_us\": {p95}, \"p99_us\": {p99}, \"p999_us\": {p999}}}\n",
                    l.phase, l.op, l.count, l.ops_per_sec
                ));
            } else {
                out.push_str(&format!(
                    "{:<6} {:<7} {:>10} {:>11.0} {:>8} {:>8} {:>8} {:>8}\n",
                    l.phase, l.op, l.count, l.ops_per_sec, p50, p95, p99, p999
                ));
            }
        }
        for (phase, stats) in &self.phases {
            let ran = stats.latencies.values().any(|h| !h.is_empty()) || !stats.errors.is_empty();
            let long_enough = stats.elapsed >= MIN_CPU_PHASE;
            let Some(cpu) = stats.client_cpu.filter(|_| ran && long_enough) else {
                continue;
            };
            let cores = cpu.as_secs_f64() / stats.elapsed.as_secs_f64().max(1e-9);
            if json {
                out.push_str(&format!("{{\"workload\": \"{workload}\", \"phase\": \"{phase}\", \"client_cpu_cores\": {cores:.2}, \"client_threads\": {}}}\n", self.client_threads));
            } else {
                out.push_str(&format!(
                    "{phase:<6} client  CPU {cores:.2} cores ({} runtime thread{})\n",
                    self.client_threads,
                    if self.client_threads == 1 { "" } else { "s" }
                ));
            }
        }
        for (phase, stats) in self.phases.iter().filter(|(_, s)| s.missing > 0) {
            let n = stats.missing;
            if json {
                out.push_str(&format!("{{\"workload\": \"{workload}\", \"phase\": \"{phase}\", \"missing_reads\": {n}}}\n"));
            } else {
                out.push_str(&format!(
                    "{phase:<6} missing {n} reads of loaded records found no value\n"
                ));
            }
        }
        for (phase, code, n, first) in self.errors() {
            if json {
                out.push_str(&format!(
                    "{{\"workload\": \"{workload}\", \"phase\": \"{phase}\", \"error\": {}, \"count\": {n}, \"first_message\": {}}}\n",
                    json_string(code),
                    json_string(first)
                ));
            } else if first.is_empty() {
                out.push_str(&format!("{phase:<6} errors  {code}: {n}\n"));
            } else {
                out.push_str(&format!(
                    "{phase:<6} errors  {code}: {n} (first: {first})\n"
                ));
            }
        }
        if json && self.interrupted {
            let phase = self.phases.last().map_or("load", |(p, _)| *p);
            out.push_str(&format!(
                "{{\"workload\": \"{workload}\", \"phase\": \"{phase}\", \"interrupted\": true}}\n"
            ));
        }
        out
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::ErrorTally;
    use super::*;

    fn with_errors() -> Report {
        let mut stats = PhaseStats::default();
        stats.errors.insert(
            "Unknown".to_owned(),
            ErrorTally {
                count: 8,
                first: "transport error: \"reset\"\n".to_owned(),
            },
        );
        Report {
            workload: Workload::A,
            threads: 16,
            client_threads: 1,
            phases: vec![("run", stats)],
            interrupted: false,
        }
    }

    #[test]
    fn a_run_cut_short_says_so() {
        let mut report = with_errors();
        assert!(!report.render(false).contains("interrupted"));
        assert!(!report.render(true).contains("interrupted"));
        report.interrupted();
        assert!(
            report.render(false).starts_with(
                "workload a, 16 workers (interrupted: the last phase was cut short)\n"
            ),
            "{}",
            report.render(false)
        );
        assert!(
            report
                .render(true)
                .ends_with("{\"workload\": \"a\", \"phase\": \"run\", \"interrupted\": true}\n")
        );
    }

    #[test]
    fn client_cpu_is_reported_only_for_a_phase_the_tick_clock_can_measure() {
        let phase = |millis, cpu_millis| {
            let mut stats = with_errors().phases.remove(0).1;
            stats.elapsed = std::time::Duration::from_millis(millis);
            stats.client_cpu = Some(std::time::Duration::from_millis(cpu_millis));
            stats
        };
        let mut report = with_errors();
        report.phases = vec![("load", phase(4_000, 1_000)), ("run", phase(2, 10))];
        let text = report.render(false);
        assert!(text.contains("load   client  CPU 0.25 cores"), "{text}");
        assert!(!text.contains("run    client  CPU"), "{text}");
        let json = report.render(true);
        assert!(
            json.contains(r#""phase": "load", "client_cpu_cores": 0.25"#),
            "{json}"
        );
        assert!(
            !json.contains(r#""phase": "run", "client_cpu_cores""#),
            "{json}"
        );
    }

    #[test]
    fn errors_show_their_count_and_the_first_message() {
        let text = with_errors().render(false);
        assert!(
            text.contains("run    errors  Unknown: 8 (first: transport error: \"reset\"\n)"),
            "{text}"
        );
        let json = with_errors().render(true);
        assert!(
            json.contains(
                r#""error": "Unknown", "count": 8, "first_message": "transport error: \"reset\"\u000a"}"#
            ),
            "{json}"
        );
    }
}
