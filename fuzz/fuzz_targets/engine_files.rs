//! An engine directory with one file replaced by the fuzzer's bytes: the
//! `CURRENT` pointer, the `MANIFEST`, a write-ahead log or an SSTable of a
//! database with data on two levels, in its log and in merge chains.
//! Opening it, reading everything, writing, flushing and compacting answer
//! or fail with an error: no panic, no hang, no allocation the file's
//! size does not justify (libFuzzer's `-rss_limit_mb`, `-timeout`).
//!
//! The first input byte picks the file (its low six bits), whether a log
//! or manifest is taken raw or as records the target frames with valid
//! checksums (bit 7: raw), and the log recovery mode (bit 6). Fuzz builds
//! skip the SSTables' block and footer checksums (`--cfg fuzzing`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use strata_engine::{Db, WalRecovery};
use strata_fuzz::engine::{frame, is_record_file, options, seed};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, content)) = data.split_first() else {
        return;
    };
    let seed = seed();
    let victim = &seed.files[usize::from(selector & 0x3f) % seed.files.len()];
    let raw = selector & 0x80 != 0;
    let recovery = if selector & 0x40 != 0 {
        WalRecovery::TruncateAtCorruption
    } else {
        WalRecovery::Strict
    };
    let dir = tempfile::tempdir().expect("tempdir");
    for file in &seed.files {
        std::fs::copy(seed.dir.path().join(file), dir.path().join(file)).expect("copy");
    }
    let framed = !raw && is_record_file(victim);
    let bytes = if framed {
        frame(content)
    } else {
        content.to_vec()
    };
    std::fs::write(dir.path().join(victim), bytes).expect("write");
    exercise(dir.path(), recovery);
});

/// Everything a node does with a store, each step allowed to fail.
fn exercise(dir: &Path, recovery: WalRecovery) {
    let Ok(db) = Db::open(dir, options(recovery)) else {
        return;
    };
    let keys = scan(&db);
    for key in &keys {
        let _ = db.get(key);
    }
    if let Ok(mut iter) = db.iter(None, None) {
        for key in keys.iter().step_by(7) {
            if iter.seek(key).is_err() {
                break;
            }
            let _ = iter.next();
        }
    }
    let _ = db.put(b"key0003", b"written after the open");
    let _ = db.merge(b"key0005", b"+more");
    let _ = db.delete(b"key0007");
    let _ = db.flush();
    let _ = db.compact_range(None, None);
    scan(&db);
    let _ = db.close();
}

/// Every key, in order, up to the first error.
fn scan(db: &Db) -> Vec<Vec<u8>> {
    let Ok(iter) = db.iter(None, None) else {
        return Vec::new();
    };
    iter.take(100_000)
        .map_while(Result::ok)
        .map(|(key, _)| key)
        .collect()
}
