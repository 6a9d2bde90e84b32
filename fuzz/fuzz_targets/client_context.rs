//! The causal context a client sends back with a write: bytes the client
//! holds, so any bytes at all. Decoding is an answer or a specific error;
//! a decoded context is re-issued unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_cluster::Token;
use strata_node::coordinator::{decode_context, encode_context};

fuzz_target!(|input: (u64, &[u8])| {
    let (token, bytes) = input;
    let token = Token(token);
    if let Ok(clock) = decode_context(token, bytes) {
        let again = decode_context(token, &encode_context(token, &clock));
        assert_eq!(again.ok(), Some(clock));
    }
});
