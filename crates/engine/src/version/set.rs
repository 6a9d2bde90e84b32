//! The MANIFEST: a log of [`VersionEdit`]s, and `CURRENT`, which names the
//! live MANIFEST.
//!
//! Every open writes a fresh MANIFEST holding one snapshot edit of the whole
//! file set, then switches `CURRENT` to it atomically (write a temp file,
//! fsync, rename, fsync the directory). An edit is acted on only after its
//! record is fsynced, so a torn last record is an edit that never happened.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Version, VersionEdit};
use crate::record::{self, RecordWriter, Tail, TailPolicy};
use crate::{Error, Result};

/// Files in a database directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    Wal,
    Table,
    Manifest,
}

pub(crate) fn file_path(dir: &Path, kind: FileKind, number: u64) -> PathBuf {
    dir.join(match kind {
        FileKind::Wal => format!("{number:06}.log"),
        FileKind::Table => format!("{number:06}.sst"),
        FileKind::Manifest => format!("MANIFEST-{number:06}"),
    })
}

pub(crate) fn parse_file_name(name: &str) -> Option<(FileKind, u64)> {
    if let Some(n) = name.strip_prefix("MANIFEST-") {
        return Some((FileKind::Manifest, n.parse().ok()?));
    }
    let (stem, ext) = name.split_once('.')?;
    let kind = match ext {
        "log" => FileKind::Wal,
        "sst" => FileKind::Table,
        _ => return None,
    };
    Some((kind, stem.parse().ok()?))
}

/// The MANIFEST named by `CURRENT`, or `None` for a new database.
pub(crate) fn current_manifest(dir: &Path) -> Result<Option<PathBuf>> {
    let current = dir.join("CURRENT");
    let bytes = match std::fs::read(&current) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&current)(e)),
    };
    let Ok(name) = String::from_utf8(bytes) else {
        return Err(Error::corruption(&current, 0, "CURRENT is not UTF-8"));
    };
    let name = name.trim_end_matches('\n');
    match parse_file_name(name) {
        Some((FileKind::Manifest, _)) => Ok(Some(dir.join(name))),
        _ => Err(Error::corruption(
            &current,
            0,
            format!("CURRENT names {name:?}, not a MANIFEST"),
        )),
    }
}

/// State recovered from a MANIFEST.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub(crate) version: Version,
    pub(crate) log_number: u64,
    pub(crate) last_sequence: u64,
    pub(crate) next_file_number: u64,
    /// Where the valid records end; less than the file's length when the
    /// last record was torn.
    pub(crate) valid_len: u64,
}

/// Owns the live MANIFEST and the current version.
#[derive(Debug)]
pub(crate) struct VersionSet {
    dir: PathBuf,
    current: Arc<Version>,
    manifest: RecordWriter,
    next_file: Arc<AtomicU64>,
}

impl VersionSet {
    /// Replays the MANIFEST at `path`.
    pub(crate) fn recover(dir: &Path, path: &Path, num_levels: usize) -> Result<Recovered> {
        let data = std::fs::read(path).map_err(Error::io(path))?;
        let (records, tail) = record::read_records(&data, TailPolicy::TruncationOnly);
        if let Tail::Corrupt { offset, reason } = tail {
            return Err(Error::corruption(path, offset, reason));
        }
        if records.is_empty() {
            // CURRENT only names a MANIFEST whose snapshot record is synced.
            return Err(Error::corruption(
                path,
                0,
                "MANIFEST holds no complete snapshot record",
            ));
        }
        let mut recovered = Recovered {
            version: Version::new(num_levels),
            log_number: 0,
            last_sequence: 0,
            next_file_number: 1,
            valid_len: 0,
        };
        let mut offset = 0u64;
        for payload in records {
            let edit = VersionEdit::decode(payload, dir, num_levels)
                .ok_or_else(|| Error::corruption(path, offset, "malformed version edit"))?;
            recovered.version = recovered.version.apply(&edit);
            recovered.log_number = edit.log_number.unwrap_or(recovered.log_number);
            recovered.last_sequence = edit.last_sequence.unwrap_or(recovered.last_sequence);
            recovered.next_file_number =
                edit.next_file_number.unwrap_or(recovered.next_file_number);
            offset += (record::HEADER_LEN + payload.len()) as u64;
        }
        recovered.valid_len = offset;
        Ok(recovered)
    }

    /// Writes a new MANIFEST holding `version` and points `CURRENT` at it.
    pub(crate) fn create(
        dir: &Path,
        version: Version,
        log_number: u64,
        last_sequence: u64,
        next_file: Arc<AtomicU64>,
    ) -> Result<Self> {
        let number = next_file.fetch_add(1, Ordering::SeqCst);
        let path = super::file_path(dir, FileKind::Manifest, number);
        let mut manifest = RecordWriter::create(&path, 0, 0)?;
        let snapshot = VersionEdit {
            log_number: Some(log_number),
            next_file_number: Some(next_file.load(Ordering::SeqCst)),
            last_sequence: Some(last_sequence),
            deleted: Vec::new(),
            added: version
                .all_files()
                .map(|(level, f)| (level, Arc::clone(f)))
                .collect(),
        };
        manifest.append(&snapshot.encode())?;
        manifest.sync()?;
        install_current(dir, &path)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: Arc::new(version),
            manifest,
            next_file,
        })
    }

    pub(crate) fn current(&self) -> Arc<Version> {
        Arc::clone(&self.current)
    }

    pub(crate) fn manifest_path(&self) -> &Path {
        self.manifest.path()
    }

    /// Durably records `edit` and returns the new current version.
    pub(crate) fn log_and_apply(&mut self, mut edit: VersionEdit) -> Result<Arc<Version>> {
        if !edit.added.is_empty() {
            // The new tables' directory entries must be durable before an
            // edit names them.
            sync_dir(&self.dir)?;
        }
        edit.next_file_number = Some(self.next_file.load(Ordering::SeqCst));
        self.manifest.append(&edit.encode())?;
        self.manifest.sync()?;
        self.current = Arc::new(self.current.apply(&edit));
        Ok(self.current())
    }
}

/// Points `CURRENT` at `manifest`: temp file, fsync, rename, fsync directory.
fn install_current(dir: &Path, manifest: &Path) -> Result<()> {
    let name = manifest
        .file_name()
        .and_then(|n| n.to_str())
        .expect("manifest paths are built from ASCII names");
    let tmp = dir.join("CURRENT.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
    file.write_all(format!("{name}\n").as_bytes())
        .map_err(Error::io(&tmp))?;
    file.sync_all().map_err(Error::io(&tmp))?;
    let current = dir.join("CURRENT");
    std::fs::rename(&tmp, &current).map_err(Error::io(&current))?;
    sync_dir(dir)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        let dir = Path::new("/db");
        for kind in [FileKind::Wal, FileKind::Table, FileKind::Manifest] {
            let path = file_path(dir, kind, 42);
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            assert_eq!(parse_file_name(name), Some((kind, 42)));
        }
        assert_eq!(parse_file_name("CURRENT"), None);
        assert_eq!(parse_file_name("x.sst"), None);
    }

    #[test]
    fn manifest_survives_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let next = Arc::new(AtomicU64::new(1));
        let mut set = VersionSet::create(dir.path(), Version::new(7), 0, 0, Arc::clone(&next))
            .expect("create");
        set.log_and_apply(VersionEdit {
            log_number: Some(5),
            last_sequence: Some(77),
            ..VersionEdit::default()
        })
        .expect("apply");
        let manifest = set.manifest_path().to_owned();
        drop(set);
        // A torn record at the end is ignored.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&manifest)
            .expect("open");
        f.write_all(&[9, 0, 0]).expect("write");

        let path = current_manifest(dir.path()).expect("read").expect("exists");
        assert_eq!(path, manifest);
        let r = VersionSet::recover(dir.path(), &path, 7).expect("recover");
        assert_eq!((r.log_number, r.last_sequence), (5, 77));
        assert!(r.next_file_number >= 2);
    }
}
