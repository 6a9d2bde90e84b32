//! Checksummed record framing for the WAL and the MANIFEST.
//!
//! A record is a 12-byte header, `len (u32 LE) | crc32c(len) | crc32c(payload)`,
//! followed by `len` payload bytes. The separate length checksum means a
//! damaged length field is detected as damage instead of being trusted.
//!
//! Reading classifies how the log ends:
//! - a record cut short by the end of the file, or damage confined to the last
//!   record, or a zero-filled tail, is a **torn tail**: the crash happened
//!   while it was being written, it was never acknowledged, and the log ends
//!   just before it;
//! - under [`TailPolicy::ChecksumTornOk`], a damaged record followed only by
//!   zeros is torn too: WALs are preallocated with zeros, and a `pwrite` cut
//!   short by a crash (Linux stops at a page boundary) leaves part of a
//!   record and then the preallocated zeros, never data after them;
//! - a damaged record followed by more data is **corruption** in the middle.

use std::path::Path;

use crate::Result;
use crate::fs::AppendFile;

pub(crate) const HEADER_LEN: usize = 12;

/// Appends framed records to a file.
#[derive(Debug)]
pub(crate) struct RecordWriter {
    file: AppendFile,
}

impl RecordWriter {
    /// Creates a log, reserving `preallocate` bytes (see [`AppendFile`]).
    /// With `buffer` 0 every record goes to the OS as it is written.
    pub(crate) fn create(path: &Path, buffer: usize, preallocate: u64) -> Result<Self> {
        Ok(Self {
            file: AppendFile::create(path, buffer, preallocate)?,
        })
    }

    /// Hands buffered records to the OS.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.file.flush()
    }

    /// Frames `payload` into `buf`; several framed records can then be
    /// written with one [`write_framed`](Self::write_framed) call.
    pub(crate) fn frame(buf: &mut Vec<u8>, payload: &[u8]) {
        Self::frame_with(buf, |out| out.extend_from_slice(payload));
    }

    /// Frames the payload that `write` appends to `buf`, without copying it.
    pub(crate) fn frame_with(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
        let start = buf.len();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        write(buf);
        let payload = &buf[start + HEADER_LEN..];
        let len = u32::try_from(payload.len()).expect("records are bounded well below 4 GiB");
        let payload_crc = crc32c::crc32c(payload);
        let len_bytes = len.to_le_bytes();
        buf[start..start + 4].copy_from_slice(&len_bytes);
        buf[start + 4..start + 8].copy_from_slice(&crc32c::crc32c(&len_bytes).to_le_bytes());
        buf[start + 8..start + 12].copy_from_slice(&payload_crc.to_le_bytes());
    }

    /// A second handle on the file, for syncing without the writer's lock.
    pub(crate) fn sync_handle(&self) -> Result<std::fs::File> {
        self.file.try_clone_file()
    }

    pub(crate) fn write_framed(&mut self, framed: &[u8]) -> Result<()> {
        self.file.write_all(framed)
    }

    pub(crate) fn append(&mut self, payload: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
        Self::frame(&mut buf, payload);
        self.write_framed(&buf)
    }

    pub(crate) fn sync(&mut self) -> Result<()> {
        self.file.sync(false)
    }

    pub(crate) fn path(&self) -> &Path {
        self.file.path()
    }
}

/// How a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Every byte belonged to a valid record.
    Clean,
    /// An incomplete or damaged last record starting at `offset`.
    Torn { offset: u64 },
    /// A damaged record at `offset` with more data after it.
    Corrupt { offset: u64, reason: String },
}

/// How lenient reading is about damage in the last record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailPolicy {
    /// A checksum failure in the last record is a torn write (the WAL: a
    /// crash can leave a partly written record).
    ChecksumTornOk,
    /// Only a record cut short by the end of the file, or a zero-filled
    /// tail, is torn; a checksum failure is corruption (the MANIFEST, whose
    /// records are small and fsynced before use: a bad one is damage).
    TruncationOnly,
}

/// Every valid record of `data` up to the first damage, and how it ended.
pub(crate) fn read_records(data: &[u8], policy: TailPolicy) -> (Vec<&[u8]>, Tail) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let torn = |pos: usize| Tail::Torn { offset: pos as u64 };
    let corrupt = |pos: usize, reason: &str| Tail::Corrupt {
        offset: pos as u64,
        reason: reason.to_owned(),
    };
    while pos < data.len() {
        let rest = &data[pos..];
        let Some(header) = rest.get(..HEADER_LEN) else {
            return (records, torn(pos));
        };
        let field = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (len, len_crc, payload_crc) = (field(0), field(4), field(8));
        let lenient = policy == TailPolicy::ChecksumTornOk;
        if crc32c::crc32c(&header[..4]) != len_crc {
            // A header cut by the crash: whatever was written of it, then
            // zeros to the end (the length is unknown, so nothing after the
            // header may be data).
            if rest.iter().all(|&b| b == 0) || (lenient && all_zero(&rest[HEADER_LEN..])) {
                return (records, torn(pos));
            }
            return (records, corrupt(pos, "record length checksum mismatch"));
        }
        let end = HEADER_LEN + len as usize;
        let Some(payload) = rest.get(HEADER_LEN..end) else {
            return (records, torn(pos));
        };
        if crc32c::crc32c(payload) != payload_crc {
            if lenient && all_zero(&rest[end..]) {
                return (records, torn(pos));
            }
            return (records, corrupt(pos, "record payload checksum mismatch"));
        }
        records.push(payload);
        pos += end;
    }
    (records, Tail::Clean)
}

fn all_zero(data: &[u8]) -> bool {
    data.iter().all(|&b| b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for p in payloads {
            RecordWriter::frame(&mut buf, p);
        }
        buf
    }

    #[test]
    fn frame_with_matches_frame() {
        let mut a = Vec::new();
        RecordWriter::frame(&mut a, b"payload");
        let mut b = Vec::new();
        RecordWriter::frame_with(&mut b, |buf| buf.extend_from_slice(b"payload"));
        assert_eq!(a, b);
    }

    #[test]
    fn clean_log_reads_back_every_record() {
        let data = log(&[b"one", b"", b"three"]);
        let (records, tail) = read_records(&data, TailPolicy::ChecksumTornOk);
        assert_eq!(records, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(tail, Tail::Clean);
    }

    #[test]
    fn every_truncation_is_a_torn_tail_that_keeps_the_complete_records() {
        let data = log(&[b"first", b"second record"]);
        let first_len = HEADER_LEN + 5;
        for cut in 0..data.len() {
            let (records, tail) = read_records(&data[..cut], TailPolicy::ChecksumTornOk);
            let expected = usize::from(cut >= first_len);
            assert_eq!(records.len(), expected, "cut at {cut}");
            if cut != 0 && cut != first_len {
                assert!(matches!(tail, Tail::Torn { .. }), "cut at {cut}: {tail:?}");
            }
        }
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut data = log(&[b"a"]);
        data.extend_from_slice(&[0; 100]);
        let (records, tail) = read_records(&data, TailPolicy::ChecksumTornOk);
        assert_eq!(records.len(), 1);
        assert_eq!(
            tail,
            Tail::Torn {
                offset: (HEADER_LEN + 1) as u64
            }
        );
    }

    #[test]
    fn damage_with_data_after_it_is_corruption_not_a_tail() {
        let data = log(&[b"first", b"second", b"third"]);
        let second = HEADER_LEN + 5;
        // Flip a byte in the second record's payload, then in its length.
        for flip in [second + HEADER_LEN + 2, second + 1] {
            let mut bad = data.clone();
            bad[flip] ^= 0x40;
            let (records, tail) = read_records(&bad, TailPolicy::ChecksumTornOk);
            assert_eq!(records, vec![&b"first"[..]]);
            assert!(
                matches!(tail, Tail::Corrupt { offset, .. } if offset == second as u64),
                "flip at {flip}: {tail:?}"
            );
        }
        // Damage in the last record is a torn tail.
        let mut bad = data.clone();
        let last = data.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            read_records(&bad, TailPolicy::ChecksumTornOk).1,
            Tail::Torn { .. }
        ));
        // ... unless the policy only accepts truncation.
        assert!(matches!(
            read_records(&bad, TailPolicy::TruncationOnly).1,
            Tail::Corrupt { .. }
        ));
    }

    #[test]
    fn damaged_record_followed_only_by_zeros_is_torn() {
        let data = log(&[b"first", &[7u8; 10_000]]);
        let second = HEADER_LEN + 5;
        // A crash stopped the write of the second record at `cut`; the
        // preallocated zeros follow. Cuts inside the header and inside the
        // payload are all torn tails that keep the first record.
        let mut cuts: Vec<usize> = (second + 1..second + HEADER_LEN).collect();
        cuts.extend((4096..data.len()).step_by(4096));
        for cut in cuts {
            let mut torn = data[..cut].to_vec();
            torn.resize(data.len() + 8192, 0);
            let (records, tail) = read_records(&torn, TailPolicy::ChecksumTornOk);
            assert_eq!(records, vec![&b"first"[..]], "cut at {cut}");
            assert_eq!(
                tail,
                Tail::Torn {
                    offset: second as u64
                },
                "cut at {cut}"
            );
            // The MANIFEST's policy does not guess: damage is corruption.
            let (_, strict) = read_records(&torn, TailPolicy::TruncationOnly);
            assert!(matches!(strict, Tail::Corrupt { .. }), "cut at {cut}");
        }
        // Damage followed by zeros and then data is corruption.
        let mut bad = data[..4096].to_vec();
        bad.resize(data.len() + 100, 0);
        let len = bad.len();
        bad[len - 1] = 1;
        assert!(matches!(
            read_records(&bad, TailPolicy::ChecksumTornOk).1,
            Tail::Corrupt { .. }
        ));
    }
}
