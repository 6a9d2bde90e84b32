//! The protobuf codec of every generated client and server.
//!
//! tonic-prost's codec answers a request body that is not valid protobuf
//! with `INTERNAL`, which tells a client the server is broken. A malformed
//! body is the caller's input, so here it is `INVALID_ARGUMENT` with the
//! decoder's reason. (A client decoding a malformed *response* sees the
//! same code; only a broken or foreign server sends one.)
//!
//! Before a message is decoded, its repeated fields that a request may
//! fill with millions of tiny elements are counted on the wire
//! ([`crate::wire`]) and a count past the contract's limit is refused
//! with `INVALID_ARGUMENT`: decoded, a 64 MB `BatchWrite` of empty ops
//! would take gigabytes before the service could count its items.

use std::any::TypeId;
use std::marker::PhantomData;

use bytes::Buf as _;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::v1;
use crate::wire;

/// [`ProstCodec`] with decode errors mapped to `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct Codec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Self {
            _types: PhantomData,
        }
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = InvalidArgumentDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        InvalidArgumentDecoder(ProstDecoder::default())
    }
}

/// A [`ProstDecoder`] whose failures are `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct InvalidArgumentDecoder<U>(ProstDecoder<U>);

impl<U: prost::Message + Default + 'static> Decoder for InvalidArgumentDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // The buffer is one contiguous `BytesMut`; a split one (never seen)
        // goes to the decoder unchecked rather than being copied.
        if let Some(bound) = bound_of::<U>()
            && buf.chunk().len() == buf.remaining()
        {
            check(bound, buf.chunk())?;
        }
        self.0.decode(buf).map_err(|status| {
            Status::invalid_argument(format!(
                "message is not valid protobuf: {}",
                status.message()
            ))
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}

/// A repeated field counted on the wire before its message is decoded.
#[derive(Debug, Clone, Copy)]
struct Bound {
    /// The field, as [`wire::count`] takes it.
    path: &'static [u32],
    /// Most elements accepted.
    limit: usize,
}

/// The batch requests' items: `BatchGetRequest.keys`,
/// `BatchWriteRequest.ops` (field 1 of both).
const BATCH_ITEMS: Bound = Bound {
    path: &[1],
    limit: crate::MAX_BATCH_ITEMS,
};

/// The bound checked before decoding a `U`, if any. Only client requests
/// whose decoded form grows past their wire size have one; a context's
/// clock entries are bytes to the codec and counted where they are
/// decoded (`strata_node::coordinator::decode_context`).
fn bound_of<U: 'static>() -> Option<Bound> {
    let t = TypeId::of::<U>();
    (t == TypeId::of::<v1::BatchGetRequest>() || t == TypeId::of::<v1::BatchWriteRequest>())
        .then_some(BATCH_ITEMS)
}

fn check(bound: Bound, bytes: &[u8]) -> Result<(), Status> {
    match wire::count(bytes, bound.path) {
        Ok(items) if items > bound.limit => Err(Status::invalid_argument(format!(
            "batch has {items} items; the limit is {}: split it",
            bound.limit
        ))),
        Ok(_) => Ok(()),
        Err(e) => Err(Status::invalid_argument(format!(
            "message is not valid protobuf: {e}"
        ))),
    }
}
