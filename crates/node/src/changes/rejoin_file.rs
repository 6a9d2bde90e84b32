//! `<data_dir>/REJOIN`: where this data directory stands in getting a
//! lost one's ranges back (`running`, then `done`; no file: it never lost
//! anything). Gossiped as `rejoin` (`strata_cluster::Rejoin`): while it
//! runs, every node keeps this member in its ranges' replica sets but reads
//! from the others; once done, it is a replica like any other. Durable, so
//! a node restarted mid-way resumes the rejoin rather than a plain join,
//! and one restarted after it never streams the ranges back again.

use std::path::Path;

use strata_cluster::{Rejoin, parse_rejoin, rejoin_name};

const FILE: &str = "REJOIN";

/// The recorded state; [`Rejoin::None`] when there is no file.
///
/// # Errors
/// The file cannot be read, or says something else than a state.
pub(crate) fn load(dir: &Path) -> std::io::Result<Rejoin> {
    let path = dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_rejoin(text.trim()).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} says {:?}, not \"running\" or \"done\"",
                    path.display(),
                    text.chars().take(32).collect::<String>()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Rejoin::None),
        Err(e) => Err(e),
    }
}

/// Records `rejoin` durably (written whole, then renamed into place).
///
/// # Errors
/// Writing or syncing the file fails.
pub(crate) fn save(dir: &Path, rejoin: Rejoin) -> std::io::Result<()> {
    let Some(name) = rejoin_name(rejoin) else {
        return Ok(());
    };
    let tmp = dir.join(format!("{FILE}.tmp"));
    super::progress::write_synced(&tmp, format!("{name}\n").as_bytes(), false)?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_survives_a_restart_and_damage_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(dir.path()).expect("no file"), Rejoin::None);
        for state in [Rejoin::Running, Rejoin::Done] {
            save(dir.path(), state).expect("save");
            assert_eq!(load(dir.path()).expect("load"), state);
        }
        std::fs::write(dir.path().join(FILE), "runn").expect("damage");
        let err = load(dir.path()).expect_err("damaged");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("\"runn\""), "{err}");
    }
}
