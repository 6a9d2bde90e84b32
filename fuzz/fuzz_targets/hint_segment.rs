//! A hint segment file, read back after a restart to deliver the hints it
//! holds. The fuzzer picks each record's payload and the target frames it
//! (length and checksum, as the writer does), then adds raw tail bytes:
//! parsing returns exactly the records before the first one whose payload
//! is not a hint, and says where it stopped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use strata_node::hints::parse;
use strata_proto::v1::KeyVersions;

const MAGIC: &[u8] = b"STRHINT1";

fuzz_target!(|input: (Vec<(u64, &[u8])>, &[u8])| {
    let (records, tail) = input;
    let _ = parse(tail);
    let mut file = MAGIC.to_vec();
    let mut expected = Vec::new();
    let mut damaged = false;
    for (stored_at, entry) in &records {
        let mut payload = stored_at.to_le_bytes().to_vec();
        payload.extend_from_slice(entry);
        file.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        file.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        file.extend_from_slice(&payload);
        match KeyVersions::decode(*entry) {
            Ok(decoded) if !damaged => expected.push((*stored_at, decoded)),
            _ => damaged = true,
        }
    }
    let whole = file.len();
    file.extend_from_slice(tail);
    let (parsed, damage) = parse(&file);
    let parsed: Vec<_> = parsed
        .into_iter()
        .map(|r| (r.stored_at_micros, r.entry))
        .collect();
    if damaged {
        assert_eq!(parsed, expected);
        assert!(damage.is_some(), "a record that is not a hint is damage");
    } else {
        // The tail may hold more records, never fewer.
        assert_eq!(parsed[..expected.len()], expected[..]);
        if tail.is_empty() {
            assert_eq!(damage, None);
        }
    }
    if let Some(damage) = damage {
        assert!(damage.offset <= file.len());
        if !damaged {
            assert!(
                damage.offset >= whole,
                "damage reported inside good records"
            );
        }
    }
});
