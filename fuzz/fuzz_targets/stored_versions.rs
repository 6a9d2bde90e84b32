//! A key's stored sibling set, as read from disk or received from a peer
//! (replica writes, streamed ranges, repair): the three decoders agree,
//! a decoded set survives a round trip, and the merge operator's one-call
//! join equals merging one operand at a time, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_engine::{MergeOperator as _, merge_each};
use strata_node::storage::{SiblingsMerge, decode, decode_owned, encode, validate};

fuzz_target!(|values: Vec<&[u8]>| {
    for value in &values {
        let decoded = decode(value);
        assert_eq!(decode_owned(value.to_vec()), decoded, "decode_owned");
        let validated = validate(&prost::bytes::Bytes::copy_from_slice(value));
        assert_eq!(validated.err(), decoded.clone().err(), "validate");
        if let Ok(set) = decoded {
            assert_eq!(decode(&encode(&set)), Ok(set), "round trip");
        }
    }
    // The first value is what the store holds (empty: nothing), the rest
    // are operands (replica writes) in order.
    let Some((existing, operands)) = values.split_first() else {
        return;
    };
    if operands.is_empty() {
        return;
    }
    let existing = (!existing.is_empty()).then_some(*existing);
    let merge = SiblingsMerge;
    assert_eq!(
        merge.merge_all(b"key", existing, operands),
        merge_each(&merge, b"key", existing, operands),
        "merge_all against merge_each"
    );
});
