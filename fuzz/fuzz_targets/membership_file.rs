//! A node's `RING` file (every member it knows, `KnownMembers`), read at
//! every start. The fuzzer writes the body and the target appends the
//! checksum line, so mutations reach the parsing behind the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata_cluster::KnownMembers;

fuzz_target!(|body: &[u8]| {
    // As read from disk: a damaged file fails its checksum.
    let _ = KnownMembers::decode(body);
    let mut file = body.to_vec();
    let sum = xxhash_rust::xxh3::xxh3_64(body);
    file.extend_from_slice(format!("checksum {sum:016x}\n").as_bytes());
    if let Ok(known) = KnownMembers::decode(&file) {
        let again = KnownMembers::decode(&known.encode());
        assert_eq!(
            again.ok(),
            Some(known),
            "a decoded file re-encodes to itself"
        );
    }
});
