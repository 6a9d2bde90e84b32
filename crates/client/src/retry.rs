//! Which failures a request is retried after, and what it reports when
//! every attempt failed (the policy is described in `client.rs`).

use std::time::Duration;

use strata_proto::metadata::{is_from_a_node, is_transport_failure};
use tonic::Code;

/// Whether a request should be retried on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads: idempotent, retried on any unavailability.
    Read,
    /// Writes: retried when no coordinator saw them or none answered.
    Write,
}

/// The failure a request reports if no later attempt succeeds, given the
/// one so far and an attempt's `status` (`lost`: the connection failed or
/// the node said nothing): the latest, unless it is a lost connection and
/// a node answered before. "Only 1 of the key's 3 replicas are up" says
/// more about why than "keep-alive timed out" on the next node does.
pub(crate) fn reported(
    so_far: Option<(tonic::Status, bool)>,
    status: tonic::Status,
    lost: bool,
) -> (tonic::Status, bool) {
    match so_far {
        Some(answered) if lost && !answered.1 => answered,
        _ => (status, lost),
    }
}

/// A failure of the connection to `address` (no node marker) says which
/// node and what the transport saw: tonic's message alone is often just
/// "http2 error". A node's own answer is returned as it is.
pub(crate) fn at_node(status: tonic::Status, address: &str) -> tonic::Status {
    if is_from_a_node(&status) {
        return status;
    }
    let detail = with_causes(&status);
    tonic::Status::with_metadata(
        status.code(),
        format!("{address}: {detail}"),
        status.metadata().clone(),
    )
}

/// A status's message followed by its error's causes.
pub(crate) fn with_causes(status: &tonic::Status) -> String {
    let mut detail = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !detail.contains(&cause_text) {
            detail = format!("{detail}: {cause_text}");
        }
        source = cause.source();
    }
    detail
}

/// Whether a transport failure is the connection's keep-alive giving up:
/// the node accepted the connection and stopped answering.
pub(crate) fn is_silence(detail: &str) -> bool {
    detail.contains("keep-alive timed out")
}

/// The error of an attempt the node never answered.
pub(crate) fn no_answer(address: &str, timeout: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!("no answer from {address} within {timeout:?}"))
}

/// Whether a request that failed with `status` on its `attempt`-th node
/// (from 0) goes to the next one, and after what pause. `silent`: the node
/// gave no answer within the attempt's deadline.
///
/// - An overloaded node (`RESOURCE_EXHAUSTED` from a node: its write
///   budget refused the request before doing anything) is retried after a
///   backoff, 50 ms doubling per attempt up to 1 s, for reads and writes:
///   backing off is what relieves it.
/// - A write: after a transport failure (the node unreachable, or its
///   connection lost mid-request, as when the process is killed) or no
///   answer; never after a node's answer, which says what happened. A
///   write whose outcome is unknown goes to the next replica under the
///   same request id: a replica holding that version answers without
///   making another.
/// - A read: after a transport failure, any `UNAVAILABLE`, or a deadline.
pub(crate) fn next_attempt(
    retry: Retry,
    status: &tonic::Status,
    silent: bool,
    attempt: usize,
) -> Option<Duration> {
    let from_node = is_from_a_node(status);
    if from_node && status.code() == Code::ResourceExhausted {
        let doublings = u32::try_from(attempt).unwrap_or(u32::MAX).min(5);
        return Some((Duration::from_millis(50) * 2u32.pow(doublings)).min(Duration::from_secs(1)));
    }
    let again = match retry {
        Retry::Write => silent || is_transport_failure(status),
        Retry::Read => {
            is_transport_failure(status)
                || matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        }
    };
    again.then_some(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::metadata::{FROM_NODE, is_refusal};

    fn from_node(mut status: tonic::Status) -> tonic::Status {
        status
            .metadata_mut()
            .insert(FROM_NODE, tonic::metadata::MetadataValue::from_static("1"));
        status
    }

    #[test]
    fn a_nodes_answer_is_reported_over_a_later_lost_connection() {
        let refusal = {
            let mut status = tonic::Status::unavailable("only 1 of the key's 3 are up");
            status.metadata_mut().insert(
                strata_proto::metadata::REFUSED,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            status
        };
        let lost = || tonic::Status::unavailable("keep-alive timed out");
        let first = reported(None, lost(), true);
        assert_eq!(first.0.message(), "keep-alive timed out");
        let answered = reported(Some(first), refusal.clone(), false);
        assert_eq!(answered.0.message(), refusal.message());
        let kept = reported(Some(answered), lost(), true);
        assert_eq!(kept.0.message(), refusal.message(), "the answer stays");
        let newer = reported(Some(kept), tonic::Status::unavailable("1 of 2"), false);
        assert_eq!(newer.0.message(), "1 of 2", "a later answer replaces it");
    }

    #[test]
    fn a_transport_failure_names_the_node_and_keeps_its_metadata() {
        let mut refusal = tonic::Status::unavailable("not a replica of the key");
        refusal.metadata_mut().insert(
            strata_proto::metadata::REFUSED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let named = at_node(refusal, "10.0.0.7:7400");
        assert_eq!(named.message(), "10.0.0.7:7400: not a replica of the key");
        assert!(is_refusal(&named), "still a refusal: {named:?}");
        assert!(is_transport_failure(&named), "still retried elsewhere");
        let answer = from_node(tonic::Status::unavailable("1 of 2 acknowledged"));
        assert_eq!(at_node(answer, "x").message(), "1 of 2 acknowledged");
    }

    #[test]
    fn an_overloaded_node_is_retried_after_a_growing_backoff() {
        let busy = from_node(tonic::Status::resource_exhausted("node overloaded"));
        for retry in [Retry::Write, Retry::Read] {
            let pauses: Vec<_> = (0..8)
                .map(|n| next_attempt(retry, &busy, false, n).expect("retried"))
                .collect();
            assert_eq!(pauses[0], Duration::from_millis(50));
            assert_eq!(pauses[1], Duration::from_millis(100));
            assert_eq!(pauses[4], Duration::from_millis(800));
            assert_eq!(pauses[7], Duration::from_secs(1), "capped");
        }
        // Not a node's refusal (no marker): not an overload.
        let other = tonic::Status::resource_exhausted("message too large");
        assert_eq!(next_attempt(Retry::Write, &other, false, 0), None);
    }

    #[test]
    fn writes_are_retried_only_when_no_node_answered() {
        let refused = tonic::Status::unavailable("connection refused");
        assert_eq!(
            next_attempt(Retry::Write, &refused, false, 0),
            Some(Duration::ZERO)
        );
        let quorum = from_node(tonic::Status::unavailable("1 of 2 acks"));
        assert_eq!(next_attempt(Retry::Write, &quorum, false, 0), None);
        let silent = tonic::Status::deadline_exceeded("no answer");
        assert_eq!(
            next_attempt(Retry::Write, &silent, true, 0),
            Some(Duration::ZERO)
        );
        let bad = from_node(tonic::Status::invalid_argument("key too long"));
        assert_eq!(next_attempt(Retry::Write, &bad, false, 0), None);
        assert_eq!(
            next_attempt(Retry::Read, &quorum, false, 0),
            Some(Duration::ZERO)
        );
        assert_eq!(next_attempt(Retry::Read, &bad, false, 0), None);
    }

    #[test]
    fn a_connection_lost_mid_request_is_retried_elsewhere() {
        // What tonic reports when the node's process dies with the
        // request in flight.
        let reset = tonic::Status::unknown("transport error");
        let cut = tonic::Status::internal("h2 protocol error");
        for status in [&reset, &cut] {
            for retry in [Retry::Write, Retry::Read] {
                assert_eq!(
                    next_attempt(retry, status, false, 0),
                    Some(Duration::ZERO),
                    "{retry:?} after {status}"
                );
            }
        }
        // The same codes from a node are its answer.
        let failed = from_node(tonic::Status::internal("dot reservation failed"));
        assert_eq!(next_attempt(Retry::Write, &failed, false, 0), None);
        assert_eq!(next_attempt(Retry::Read, &failed, false, 0), None);
    }
}
