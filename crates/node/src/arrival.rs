//! Admitting client messages as their headers arrive, before their bytes.
//!
//! The write budget (`admission.rs`) bounds the bytes of client writes a
//! node holds, but a service sees a request only once tonic has received
//! and decoded all of it: until then every request in flight holds its
//! bytes unbounded (512 clients sending 2 MB values: a gigabyte before any
//! was admitted), and tonic reserves the length a message's header
//! announces as soon as the header arrives. Every gRPC message starts with
//! a 5-byte header carrying its length, so this layer, on the client port,
//! follows the messages of each request body and admits each by that
//! length as its header passes:
//!
//! - the message of a unary `Put`, `Delete` or `BatchWrite` against the
//!   write budget; the share travels to the service in the request's
//!   extensions ([`AdmittedOnArrival`]) and is held until the write is
//!   answered, as before;
//! - any other message (reads, session operations, admin calls) against a
//!   second budget of the same size for bytes still arriving, released as
//!   the message's last byte passes (what it holds after that is the
//!   service's: a session's writes are admitted once decoded).
//!
//! A message that does not fit is refused then with `RESOURCE_EXHAUSTED`
//! (which ends a session stream: its client opens another), before tonic
//! reserves room for it or its body is received; one longer than the
//! server reads at all, with `INVALID_ARGUMENT` naming the limit (tonic
//! would answer `OUT_OF_RANGE`, which clients do not expect of a request
//! that is too large). The `Replica` service
//! (node to node, on this port only without `--internal-listen`) is left
//! alone: its pipes carry large batches that a refusal would cut.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use crate::admission::{Admitted, WriteBudget};
use crate::byte_budget::{ByteBudget, Share, Spent};
use crate::metrics::Metrics;
use crate::request::RequestError;

/// The unary methods whose message is admitted against the write budget.
const WRITE_METHODS: [&str; 3] = [
    "/strata.v1.KV/Put",
    "/strata.v1.KV/Delete",
    "/strata.v1.KV/BatchWrite",
];

/// Node-to-node methods, left alone.
const REPLICA_SERVICE: &str = "/strata.v1.Replica/";

/// A gRPC message header: a compression flag and a big-endian `u32`
/// length.
const HEADER: usize = 5;

/// The share a unary write was admitted with as its header arrived, in
/// the request's extensions until the service takes it.
#[derive(Debug, Clone, Default)]
pub struct AdmittedOnArrival(Arc<Mutex<Option<Admitted>>>);

impl AdmittedOnArrival {
    /// The share the layer took for the request with these `extensions`,
    /// if it took one (the service admits the others itself).
    #[must_use]
    pub fn take(extensions: &http::Extensions) -> Option<Admitted> {
        extensions
            .get::<Self>()
            .and_then(|slot| slot.0.lock().expect("admission slot").take())
    }
}

/// A message refused because the bytes of messages still arriving are at
/// their bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node overloaded: {arriving} bytes of requests are arriving and this message announces {bytes}; the limit is {limit} (--max-write-bytes-in-flight); retry after a backoff"
)]
pub struct ReceivingOverloaded {
    /// Bytes the refused message announced.
    pub bytes: usize,
    /// Bytes of other messages still arriving.
    pub arriving: usize,
    /// The bound.
    pub limit: usize,
}

impl From<Spent> for ReceivingOverloaded {
    fn from(spent: Spent) -> Self {
        Self {
            bytes: spent.bytes,
            arriving: spent.held,
            limit: spent.limit,
        }
    }
}

/// Admits client messages by their headers (see the module docs).
#[derive(Debug, Clone)]
pub struct AdmitOnArrivalLayer {
    writes: Arc<WriteBudget>,
    arriving: Arc<ByteBudget>,
    metrics: Arc<Metrics>,
    /// The server's largest message: a longer one is refused as invalid.
    max_message: usize,
}

impl AdmitOnArrivalLayer {
    /// Admits unary writes against `writes`, the KV service's budget, and
    /// other messages against a budget of as many bytes still arriving.
    #[must_use]
    pub fn new(writes: Arc<WriteBudget>, metrics: Arc<Metrics>, max_message: usize) -> Self {
        let arriving = Arc::new(ByteBudget::new(writes.limit()));
        Self {
            writes,
            arriving,
            metrics,
            max_message,
        }
    }
}

impl<S> tower::Layer<S> for AdmitOnArrivalLayer {
    type Service = AdmitOnArrival<S>;

    fn layer(&self, inner: S) -> AdmitOnArrival<S> {
        AdmitOnArrival {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AdmitOnArrivalLayer`] wraps around the server's routes.
#[derive(Debug, Clone)]
pub struct AdmitOnArrival<S> {
    inner: S,
    layer: AdmitOnArrivalLayer,
}

impl<S> tower::Service<http::Request<Body>> for AdmitOnArrival<S>
where
    S: tower::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        if path.starts_with(REPLICA_SERVICE) {
            return self.inner.call(request);
        }
        let slot = WRITE_METHODS
            .contains(&path)
            .then(AdmittedOnArrival::default);
        if let Some(slot) = &slot {
            request.extensions_mut().insert(slot.clone());
        }
        let layer = self.layer.clone();
        let request = request.map(|body| {
            Body::new(Arriving {
                inner: body,
                message: Message::header(),
                refused: None,
                slot,
                layer,
            })
        });
        self.inner.call(request)
    }
}

/// Where a request body is in its current message.
enum Message {
    /// Reading a header: its bytes so far.
    Header { bytes: [u8; HEADER], read: usize },
    /// Passing a body: bytes still to come, and the share admitted for
    /// them (none for a unary write, whose share went to the service).
    Body {
        remaining: usize,
        _share: Option<Share>,
    },
}

impl Message {
    fn header() -> Self {
        Self::Header {
            bytes: [0; HEADER],
            read: 0,
        }
    }
}

/// A client request's body, each message admitted as its header passes.
struct Arriving {
    inner: Body,
    message: Message,
    /// A refusal to return once the bytes before the refused message,
    /// which complete earlier messages, have passed: a session answers
    /// those before it ends.
    refused: Option<Status>,
    /// A unary write's: its message's share goes to the service here.
    slot: Option<AdmittedOnArrival>,
    layer: AdmitOnArrivalLayer,
}

impl Arriving {
    /// Follows the messages through `data`, admitting each whose header
    /// completes. A refusal comes with how many of `data`'s bytes precede
    /// the refused message (they end messages admitted before it).
    fn see(&mut self, frame: &[u8]) -> Result<(), (usize, Status)> {
        let mut data = frame;
        // Where in `frame` the message whose header is being read starts.
        let mut message_start = 0;
        while !data.is_empty() {
            match &mut self.message {
                Message::Header { bytes, read } => {
                    if *read == 0 {
                        message_start = frame.len() - data.len();
                    }
                    let n = (HEADER - *read).min(data.len());
                    bytes[*read..*read + n].copy_from_slice(&data[..n]);
                    *read += n;
                    data = &data[n..];
                    if *read == HEADER {
                        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                        let len = usize::try_from(len).unwrap_or(usize::MAX);
                        let share = self.admit(len).map_err(|e| (message_start, e))?;
                        self.message = if len == 0 {
                            Message::header()
                        } else {
                            Message::Body {
                                remaining: len,
                                _share: share,
                            }
                        };
                    }
                }
                Message::Body { remaining, .. } => {
                    let n = (*remaining).min(data.len());
                    *remaining -= n;
                    data = &data[n..];
                    if *remaining == 0 {
                        // Complete: tonic decodes it; the share is returned.
                        self.message = Message::header();
                    }
                }
            }
        }
        Ok(())
    }

    /// Admits a message of `len` bytes: a unary write's into its slot,
    /// any other's as a share held while it arrives.
    fn admit(&mut self, len: usize) -> Result<Option<Share>, Status> {
        if len > self.layer.max_message {
            return Err(RequestError::MessageTooLarge {
                len,
                limit: self.layer.max_message,
            }
            .into());
        }
        if let Some(slot) = self.slot.take() {
            let admitted = self.layer.writes.admit(len).map_err(|e| {
                self.layer.metrics.write_refused_overloaded();
                Status::from(e)
            })?;
            *slot.0.lock().expect("admission slot") = Some(admitted);
            return Ok(None);
        }
        self.layer.arriving.take(len).map(Some).map_err(|spent| {
            self.layer.metrics.message_refused_receiving();
            Status::from(ReceivingOverloaded::from(spent))
        })
    }
}

impl http_body::Body for Arriving {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(refused) = this.refused.take() {
            return Poll::Ready(Some(Err(refused)));
        }
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err((before, refused)) = this.see(data)
        {
            if before == 0 {
                return Poll::Ready(Some(Err(refused)));
            }
            this.refused = Some(refused);
            return Poll::Ready(Some(Ok(Frame::data(data.slice(..before)))));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        // A refusal still to return is one more frame, even when the
        // inner body has given its last.
        self.refused.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// A body of `chunks`, each one data frame.
    fn body(chunks: &[&[u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, Status>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    /// A layer whose budgets hold `limit` bytes each.
    fn layer(limit: usize) -> AdmitOnArrivalLayer {
        AdmitOnArrivalLayer::new(
            Arc::new(WriteBudget::new(limit)),
            Arc::new(Metrics::new()),
            1 << 20,
        )
    }

    /// A body of `chunks` arriving through `layer`, as a unary write's
    /// (with its slot) or as any other request's.
    fn arriving(chunks: &[&[u8]], layer: &AdmitOnArrivalLayer, write: bool) -> Arriving {
        Arriving {
            inner: body(chunks),
            message: Message::header(),
            refused: None,
            slot: write.then(AdmittedOnArrival::default),
            layer: layer.clone(),
        }
    }

    fn header(len: u32) -> Vec<u8> {
        let mut h = vec![0];
        h.extend(len.to_be_bytes());
        h
    }

    #[tokio::test]
    async fn a_write_is_admitted_by_its_header_even_split_across_frames() {
        let layer = layer(1000);
        let h = header(600);
        let mut write = arriving(&[&h[..2], &h[2..], &[7; 600]], &layer, true);
        let slot = write.slot.clone().expect("a write's slot");
        let mut passed = 0;
        while let Some(frame) = write.frame().await {
            passed += frame.expect("admitted").into_data().expect("data").len();
        }
        assert_eq!(passed, HEADER + 600, "every byte passes through");
        assert_eq!(layer.writes.in_flight(), 600);
        assert_eq!(layer.arriving.held(), 0, "a write's bytes count once");
        let mut extensions = http::Extensions::new();
        extensions.insert(slot);
        let admitted = AdmittedOnArrival::take(&extensions).expect("a share");
        assert!(AdmittedOnArrival::take(&extensions).is_none(), "taken once");
        drop(admitted);
        assert_eq!(layer.writes.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_write_that_does_not_fit_is_refused_before_its_body() {
        let layer = layer(1000);
        let held = layer.writes.admit(600).expect("room");
        let mut write = arriving(&[&header(600), &[7; 600]], &layer, true);
        let slot = write.slot.clone().expect("a write's slot");
        let refused = write
            .frame()
            .await
            .expect("a frame")
            .expect_err("no room for 600 more bytes");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("--max-write-bytes-in-flight"),
            "{refused}"
        );
        assert!(slot.0.lock().expect("slot").is_none());
        drop(held);
        assert_eq!(layer.writes.in_flight(), 0);
    }

    #[tokio::test]
    async fn other_messages_hold_their_bytes_only_while_they_arrive() {
        let layer = layer(1000);
        // Two messages of a stream, the second's header in the first's frame.
        let first = [header(300), vec![1; 300], header(400)[..3].to_vec()].concat();
        let second = [header(400)[3..].to_vec(), vec![2; 100]].concat();
        let mut stream = arriving(&[&first, &second, &[2; 300]], &layer, false);
        stream.frame().await.expect("frame").expect("first fits");
        assert_eq!(layer.arriving.held(), 0, "the first is complete");
        stream.frame().await.expect("frame").expect("second fits");
        assert_eq!(layer.arriving.held(), 400, "the second is arriving");
        stream.frame().await.expect("frame").expect("its rest");
        assert_eq!(layer.arriving.held(), 0, "both complete");
        assert_eq!(layer.writes.in_flight(), 0, "not writes");
        // An empty message holds nothing; one that does not fit is refused.
        let held = layer.arriving.take(900).expect("room");
        let mut refused = arriving(&[&[header(0), header(200)].concat()], &layer, false);
        let empty = refused
            .frame()
            .await
            .expect("frame")
            .expect("the empty one");
        assert_eq!(empty.into_data().expect("data").len(), HEADER);
        let status = refused
            .frame()
            .await
            .expect("frame")
            .expect_err("200 bytes beside 900 of 1000");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("announces 200"), "{status}");
        assert!(strata_proto::metadata::is_from_a_node(&status));
        drop(held);
        // A body dropped mid-message returns its share.
        let mut cut = arriving(&[&header(500), &[3; 10]], &layer, false);
        cut.frame().await.expect("frame").expect("fits");
        assert_eq!(layer.arriving.held(), 500);
        drop(cut);
        assert_eq!(layer.arriving.held(), 0);
    }

    #[tokio::test]
    async fn the_messages_before_a_refused_one_pass_before_the_refusal() {
        let layer = layer(4 << 20);
        // One frame: a whole message, then the header of one too long.
        let first = [header(3), vec![1, 2, 3]].concat();
        let frame = [first.clone(), header(2 << 20), vec![9; 10]].concat();
        let mut stream = arriving(&[&frame, &[9; 10]], &layer, false);
        let passed = stream
            .frame()
            .await
            .expect("a frame")
            .expect("the first message passes")
            .into_data()
            .expect("data");
        assert_eq!(&passed[..], &first[..]);
        let status = stream
            .frame()
            .await
            .expect("a frame")
            .expect_err("then the refusal");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        // The same in the body's last frame: the refusal still follows it.
        let mut last = arriving(&[], &layer, false);
        last.inner = Body::new(http_body_util::Full::new(Bytes::from(frame.clone())));
        let passed = last.frame().await.expect("a frame").expect("the first");
        assert_eq!(passed.into_data().expect("data").len(), first.len());
        assert!(
            !http_body::Body::is_end_stream(&last),
            "the refusal is still to come"
        );
        let status = last.frame().await.expect("a frame").expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        // A header split across frames: its first bytes passed with the
        // frame before, so the refusal comes at once.
        let mut split = arriving(
            &[&header(2 << 20)[..2], &header(2 << 20)[2..]],
            &layer,
            false,
        );
        split.frame().await.expect("a frame").expect("two bytes");
        let status = split.frame().await.expect("a frame").expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn a_message_longer_than_the_server_reads_is_invalid() {
        let layer = layer(4 << 20);
        for write in [true, false] {
            let mut long = arriving(&[&header(2 << 20), &[7; 10]], &layer, write);
            let status = long
                .frame()
                .await
                .expect("a frame")
                .expect_err("longer than 1 MiB");
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(
                status.message(),
                "request message is 2097152 bytes; the node reads at most 1048576: split the batch, and keep each value within --max-value-bytes"
            );
            assert_eq!(layer.writes.in_flight(), 0);
            assert_eq!(layer.arriving.held(), 0);
        }
    }
}
