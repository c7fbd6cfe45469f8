//! The audit trail's tamper evidence: each entry's hash covers its own content, its position and
//! the previous entry's hash, so changing, removing or reordering any entry breaks every hash
//! after it. Pure functions: the store appends, `repeatrx audit verify` checks.
use crate::access::Role;
use crate::ids::{PatientId, UserId};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

/// The hash the first entry chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, as written to the trail (never a password, code or token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: Timestamp,
    /// Who did it, when known (sign-in failures for unknown accounts have nobody).
    pub actor: Option<UserId>,
    pub actor_role: Option<Role>,
    /// "pharmacy:<id>", "practice:<id>", "platform" or "patient".
    pub organisation: String,
    /// Dotted name of the act, e.g. "sign_in.locked" or "patient.viewed".
    pub action: String,
    /// The patient whose data was touched (internal id only).
    pub patient: Option<PatientId>,
    /// The client address.
    pub address: String,
    /// The stated purpose, where one is required.
    pub purpose: Option<String>,
    pub detail: String,
}

/// A stored entry: its place in the chain and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub record: AuditRecord,
    pub prev_hash: String,
    pub hash: String,
}

fn field(h: &mut Sha256, value: &str) {
    // Length-prefixed, so no choice of field values can make two different records hash alike.
    h.update(value.len().to_string().as_bytes());
    h.update(b":");
    h.update(value.as_bytes());
    h.update(b";");
}

/// The hash of the entry at `seq` with this content, chained to `prev_hash`.
pub fn chain_hash(prev_hash: &str, seq: i64, r: &AuditRecord) -> String {
    let mut h = Sha256::new();
    field(&mut h, "repeatrx-audit-v1");
    field(&mut h, prev_hash);
    field(&mut h, &seq.to_string());
    field(&mut h, &r.at.as_microsecond().to_string());
    field(&mut h, &r.actor.map(|u| u.to_string()).unwrap_or_default());
    field(&mut h, r.actor_role.map(Role::as_str).unwrap_or(""));
    field(&mut h, &r.organisation);
    field(&mut h, &r.action);
    field(&mut h, &r.patient.map(|p| p.to_string()).unwrap_or_default());
    field(&mut h, &r.address);
    field(&mut h, r.purpose.as_deref().unwrap_or("\u{0}none"));
    field(&mut h, &r.detail);
    let digest = h.finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why an entry does not fit the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// An entry is missing before this one (its number skips).
    Gap { expected: i64 },
    /// It does not point at the previous entry's hash (one before it was changed or removed).
    Unlinked,
    /// Its content no longer matches its hash (it was changed).
    Altered,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Gap { expected } => write!(f, "entry #{expected} is missing before it"),
            ChainBreak::Unlinked => {
                f.write_str("it does not follow the entry before it (that entry was changed or removed)")
            }
            ChainBreak::Altered => f.write_str("its content does not match its hash (it was changed)"),
        }
    }
}

/// Checks one entry against the one before it (`None` for the first entry of the trail).
pub fn check_link(previous: Option<&AuditEntry>, entry: &AuditEntry) -> Result<(), ChainBreak> {
    let (expected_seq, expected_prev) = match previous {
        Some(p) => (p.seq + 1, p.hash.as_str()),
        None => (1, GENESIS),
    };
    if entry.seq != expected_seq {
        return Err(ChainBreak::Gap { expected: expected_seq });
    }
    if entry.prev_hash != expected_prev {
        return Err(ChainBreak::Unlinked);
    }
    if chain_hash(&entry.prev_hash, entry.seq, &entry.record) != entry.hash {
        return Err(ChainBreak::Altered);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(action: &str) -> AuditRecord {
        AuditRecord {
            at: Timestamp::from_second(1_800_000_000).unwrap(),
            actor: Some(UserId::new()),
            actor_role: Some(Role::Pharmacist),
            organisation: "pharmacy:x".into(),
            action: action.into(),
            patient: Some(PatientId::new()),
            address: "192.0.2.1".into(),
            purpose: None,
            detail: String::new(),
        }
    }

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|e| e.hash.clone()).unwrap_or_else(|| GENESIS.into());
            let seq = i as i64 + 1;
            let r = record(&format!("act.{i}"));
            out.push(AuditEntry { seq, hash: chain_hash(&prev, seq, &r), prev_hash: prev, record: r });
        }
        out
    }

    #[test]
    fn an_intact_chain_verifies() {
        let c = chain(4);
        assert_eq!(check_link(None, &c[0]), Ok(()));
        for w in c.windows(2) {
            assert_eq!(check_link(Some(&w[0]), &w[1]), Ok(()));
        }
    }

    #[test]
    fn changes_removals_and_reorders_are_caught() {
        let mut c = chain(4);
        c[1].record.detail = "edited".into();
        assert_eq!(check_link(Some(&c[0]), &c[1]), Err(ChainBreak::Altered));
        let c = chain(4);
        assert_eq!(check_link(Some(&c[0]), &c[2]), Err(ChainBreak::Gap { expected: 2 }));
        let mut c = chain(4);
        // A forger who rehashes an edited entry still breaks the link to the next one.
        c[1].record.detail = "edited".into();
        c[1].hash = chain_hash(&c[1].prev_hash, 2, &c[1].record);
        assert_eq!(check_link(Some(&c[0]), &c[1]), Ok(()));
        assert_eq!(check_link(Some(&c[1]), &c[2]), Err(ChainBreak::Unlinked));
    }

    #[test]
    fn fields_cannot_bleed_into_each_other() {
        let mut a = record("x");
        let mut b = a.clone();
        a.address = "1".into();
        a.detail = "23".into();
        b.address = "12".into();
        b.detail = "3".into();
        assert_ne!(chain_hash(GENESIS, 1, &a), chain_hash(GENESIS, 1, &b));
        let mut c = a.clone();
        c.purpose = Some(String::new());
        assert_ne!(chain_hash(GENESIS, 1, &a), chain_hash(GENESIS, 1, &c), "no purpose differs from an empty one");
    }
}
