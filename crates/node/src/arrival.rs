//! Admitting a unary write when its header arrives, before its bytes.
//!
//! The write budget (`admission.rs`) bounds the bytes of client writes a
//! node holds, but a service sees a request only once tonic has received
//! and decoded all of it: until then every request in flight holds its
//! bytes unbounded (512 clients sending 2 MB values: a gigabyte before any
//! was admitted). A gRPC message starts with a 5-byte header carrying its
//! length, so this layer admits a unary `Put`, `Delete` or `BatchWrite` by
//! that length as soon as the header arrives, and a write that does not
//! fit is refused then (`RESOURCE_EXHAUSTED`, as the service would) while
//! its body is still on the client's side. The admitted share travels to
//! the service in the request's extensions ([`AdmittedOnArrival`]) and is
//! held until the write is answered, as before.
//!
//! Session streams are admitted per operation by the service: a stream
//! holds at most one partly received message at a time.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use crate::admission::{Admitted, WriteBudget};
use crate::metrics::Metrics;

/// The unary methods admitted on arrival: every client write.
const WRITE_METHODS: [&str; 3] = [
    "/strata.v1.KV/Put",
    "/strata.v1.KV/Delete",
    "/strata.v1.KV/BatchWrite",
];

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

/// Admits unary writes by their header (see the module docs).
#[derive(Debug, Clone)]
pub struct AdmitOnArrivalLayer {
    budget: Arc<WriteBudget>,
    metrics: Arc<Metrics>,
    /// The server's largest message: a longer one is refused by tonic
    /// without being read, so it is not admitted.
    max_message: usize,
}

impl AdmitOnArrivalLayer {
    /// Admits against `budget`, the one the KV service uses.
    #[must_use]
    pub fn new(budget: Arc<WriteBudget>, metrics: Arc<Metrics>, max_message: usize) -> Self {
        Self {
            budget,
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
        if !WRITE_METHODS.contains(&request.uri().path()) {
            return self.inner.call(request);
        }
        let slot = AdmittedOnArrival::default();
        request.extensions_mut().insert(slot.clone());
        let layer = self.layer.clone();
        let request = request.map(|body| {
            Body::new(ArrivingWrite {
                inner: body,
                header: [0; HEADER],
                read: 0,
                slot,
                layer,
            })
        });
        self.inner.call(request)
    }
}

/// A unary write's body, admitted once its message header has passed.
struct ArrivingWrite {
    inner: Body,
    header: [u8; HEADER],
    /// Header bytes seen so far; at [`HEADER`] the write was admitted.
    read: usize,
    slot: AdmittedOnArrival,
    layer: AdmitOnArrivalLayer,
}

impl ArrivingWrite {
    /// Takes the header's bytes from `data`; once all are in, admits the
    /// message they announce.
    fn see(&mut self, data: &[u8]) -> Result<(), Status> {
        let n = (HEADER - self.read).min(data.len());
        self.header[self.read..self.read + n].copy_from_slice(&data[..n]);
        self.read += n;
        if self.read < HEADER {
            return Ok(());
        }
        let len = u32::from_be_bytes([
            self.header[1],
            self.header[2],
            self.header[3],
            self.header[4],
        ]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.layer.max_message {
            return Ok(());
        }
        let admitted = self.layer.budget.admit(len).map_err(|e| {
            self.layer.metrics.write_refused_overloaded();
            Status::from(e)
        })?;
        *self.slot.0.lock().expect("admission slot") = Some(admitted);
        Ok(())
    }
}

impl http_body::Body for ArrivingWrite {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if this.read < HEADER
            && let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(refused) = this.see(data)
        {
            return Poll::Ready(Some(Err(refused)));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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

    fn arriving(chunks: &[&[u8]], budget: &Arc<WriteBudget>) -> (ArrivingWrite, AdmittedOnArrival) {
        let slot = AdmittedOnArrival::default();
        let layer = AdmitOnArrivalLayer::new(Arc::clone(budget), Arc::new(Metrics::new()), 1 << 20);
        let write = ArrivingWrite {
            inner: body(chunks),
            header: [0; HEADER],
            read: 0,
            slot: slot.clone(),
            layer,
        };
        (write, slot)
    }

    fn header(len: u32) -> Vec<u8> {
        let mut h = vec![0];
        h.extend(len.to_be_bytes());
        h
    }

    #[tokio::test]
    async fn a_write_is_admitted_by_its_header_even_split_across_frames() {
        let budget = Arc::new(WriteBudget::new(1000));
        let h = header(600);
        let (write, slot) = arriving(&[&h[..2], &h[2..], &[7; 600]], &budget);
        let collected = write.collect().await.expect("admitted").to_bytes();
        assert_eq!(collected.len(), HEADER + 600, "every byte passes through");
        assert_eq!(budget.in_flight(), 600);
        let mut extensions = http::Extensions::new();
        extensions.insert(slot);
        let admitted = AdmittedOnArrival::take(&extensions).expect("a share");
        assert!(AdmittedOnArrival::take(&extensions).is_none(), "taken once");
        drop(admitted);
        assert_eq!(budget.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_write_that_does_not_fit_is_refused_before_its_body() {
        let budget = Arc::new(WriteBudget::new(1000));
        let held = budget.admit(600).expect("room");
        let (mut write, slot) = arriving(&[&header(600), &[7; 600]], &budget);
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
        assert_eq!(budget.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_message_longer_than_the_server_takes_is_left_to_tonic() {
        let budget = Arc::new(WriteBudget::new(1000));
        let (write, slot) = arriving(&[&header(2 << 20), &[7; 10]], &budget);
        write.collect().await.expect("passed through");
        assert!(slot.0.lock().expect("slot").is_none());
        assert_eq!(budget.in_flight(), 0);
    }
}
