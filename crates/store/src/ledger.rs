//! The erasure ledger: an append-only file, outside the database, of the patients erased (ids and
//! times only). A database restored from a backup taken before an erasure would bring the patient
//! back; servers re-apply the ledger when they start, so an erased patient stays erased (P13).
//! Kept beside the key file: like the keys, it must survive what happens to the database.
use crate::{StoreError, StoreResult};
use repeatrx_domain::erasure::LedgerEntry;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ErasureLedger {
    path: PathBuf,
}

impl ErasureLedger {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        ErasureLedger { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn problem(&self, what: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable(format!("the erasure ledger {}: {what}", self.path.display()))
    }

    /// Appends an entry and makes it durable before returning (created, mode 0600, if missing).
    pub fn append(&self, entry: &LedgerEntry) -> StoreResult<()> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // A line left unfinished by a crash during an earlier append is closed first, so this
        // entry starts a line of its own.
        let torn = std::fs::read(&self.path).is_ok_and(|b| b.last().is_some_and(|c| *c != b'\n'));
        let line = if torn { format!("\n{}", entry.to_line()) } else { entry.to_line() };
        let mut file = options.open(&self.path).map_err(|e| self.problem(format!("cannot be opened: {e}")))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| self.problem(format!("cannot be written: {e}")))
    }

    /// Every entry, oldest first; none if the file does not exist yet. A line that does not parse
    /// (one torn by a crash while it was written) is skipped with a warning naming it: refusing
    /// to start over it would help nobody.
    pub fn entries(&self) -> StoreResult<Vec<LedgerEntry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.problem(format!("cannot be read: {e}"))),
        };
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            match LedgerEntry::parse_line(line) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    ledger = %self.path.display(),
                    line = n + 1,
                    problem = %e,
                    "a line of the erasure ledger is not valid and was skipped"
                ),
            }
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use repeatrx_domain::ids::PatientId;

    #[test]
    fn entries_are_appended_durably_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ErasureLedger::new(dir.path().join("erasures"));
        assert!(ledger.entries().unwrap().is_empty(), "no file yet: nothing erased");
        let a = LedgerEntry { patient: PatientId::new(), at: "2026-11-23T10:00:00Z".parse().unwrap() };
        let b = LedgerEntry { patient: PatientId::new(), at: "2026-11-23T11:00:00Z".parse().unwrap() };
        ledger.append(&a).unwrap();
        ledger.append(&b).unwrap();
        assert_eq!(ledger.entries().unwrap(), [a, b]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ledger.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A line torn by a crash is skipped, and the next entry starts a line of its own.
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        std::fs::write(ledger.path(), format!("{text}{}", &a.to_line()[..10])).unwrap();
        assert_eq!(ledger.entries().unwrap(), [a, b]);
        let c = LedgerEntry { patient: PatientId::new(), at: "2026-11-23T12:00:00Z".parse().unwrap() };
        ledger.append(&c).unwrap();
        assert_eq!(ledger.entries().unwrap(), [a, b, c]);
    }
}
