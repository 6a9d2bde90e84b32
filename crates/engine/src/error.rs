//! The engine's error type.

use std::path::PathBuf;

/// Result alias for engine operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the engine can fail with. Corruption is always reported with
/// the file and offset; the engine never returns data it could not verify.
///
/// Cloneable (the IO error is shared), so one failure can be handed to every
/// writer of a group as the same typed error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An operating-system IO error, with the file it concerned.
    #[error("io error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// An option outside its valid range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option's field name.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A WAL record in the middle of the log failed verification: records
    /// after it exist, so this is not a torn tail from a crash.
    ///
    /// To recover everything before the damage, reopen with
    /// [`WalRecovery::TruncateAtCorruption`](crate::WalRecovery): the records
    /// before `offset` are kept and the damaged log is renamed to
    /// `<name>.corrupt` for inspection.
    #[error("WAL {path} is corrupt at offset {offset}: {reason}")]
    WalCorruption {
        /// The log file.
        path: PathBuf,
        /// Byte offset of the first bad record.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// An SSTable or MANIFEST failed verification (checksum, magic, bounds).
    #[error("{path} is corrupt at offset {offset}: {reason}")]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What failed.
        reason: String,
    },
    /// A file written by an unknown format version.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// Another process (or another `Db` in this one) has the directory open.
    #[error("database {path} is locked by another process")]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// [`Db::close`](crate::Db::close) stopped the database, but snapshots or
    /// iterators still read its files: the directory stays locked (a reopen
    /// answers [`Error::Locked`]) until they are dropped.
    #[error(
        "database {path} is closed but {handles} snapshot(s) or iterator(s) still use it; \
         its directory stays locked until they are dropped"
    )]
    InUse {
        /// The database directory.
        path: PathBuf,
        /// Live snapshots and iterators.
        handles: usize,
    },
    /// A merge was written or read without a merge operator configured.
    #[error("merge operand for a key, but no merge operator is configured")]
    NoMergeOperator,
    /// A background flush or compaction failed; the database refuses writes
    /// until it is reopened, so nothing is acknowledged that cannot be kept.
    #[error("background work failed, database is read-only until reopened: {0}")]
    Background(String),
    /// A single write (key plus value) larger than the engine accepts.
    /// The keys given to `ingest_behind` are not strictly ascending.
    #[error("ingested keys must be strictly ascending; entry {index} is not above the one before")]
    IngestUnsorted {
        /// Position of the first entry out of order.
        index: usize,
    },
    /// A table on the last level overlaps the key range to ingest.
    #[error("cannot ingest behind: table {table} on level {level} overlaps the key range")]
    IngestOverlap {
        /// Number of the overlapping table.
        table: u64,
        /// The last level.
        level: usize,
    },
    /// A put or delete of an ingested key was written during the ingest.
    #[error(
        "cannot ingest behind: a put or delete of an ingested key ({key_len} bytes) was written meanwhile"
    )]
    IngestConflict {
        /// Length of the key (keys are not logged).
        key_len: usize,
    },
    #[error("write of {size} bytes exceeds the limit of {limit} bytes")]
    WriteTooLarge {
        /// Size of the write.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

impl Error {
    /// Whether this is a damaged file: an SSTable, MANIFEST or WAL record
    /// that failed its checksum or bounds checks. Reading the same bytes
    /// again fails the same way; unlike an IO error or a full disk, only
    /// rebuilding the data (or WAL recovery, for a log) clears it.
    #[must_use]
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Corruption { .. } | Self::WalCorruption { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            path,
            source: std::sync::Arc::new(source),
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
