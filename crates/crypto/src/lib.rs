//! Encryption at rest for patient data (P2): envelope encryption with one data key per patient.
//!
//! - A **master key** lives outside the database (the key file, or a KMS behind [`KeySource`]).
//!   It only wraps data keys; it never encrypts data itself, so rotating it re-wraps small keys
//!   and rewrites no patient data.
//! - Each patient has a **data key**, stored only wrapped (AES-256-GCM under the master key, bound
//!   to the patient's id). Destroying it makes every copy of that patient's data, in backups and
//!   replicas too, unreadable (crypto-shredding, P13).
//! - Each **field** is sealed with AES-256-GCM under the patient's data key, with associated data
//!   naming its table, column and row, so a ciphertext moved to another row or column fails to
//!   open instead of being read as someone else's data.
//! - Lookups that need equality (an email at sign-in, an NHS number) use a **blind index**: an
//!   HMAC-SHA-256 of the normalised value under a separate index key, per purpose.
//!
//! Written on the RustCrypto `aes-gcm` and `hmac` crates; only the framing (a version byte and
//! the nonce in front of the ciphertext, base64 in a TEXT column) is ours.
#![forbid(unsafe_code)]

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Why something could not be decrypted or loaded. Decryption failures say nothing about why
/// (wrong key, tampering, moved ciphertext): all are "does not open".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the data does not open with this key here: it was changed, moved, or sealed with another key")]
    DoesNotOpen,
    #[error("this is not sealed data RepeatRx wrote: {0}")]
    Malformed(&'static str),
    #[error("the key file {path}: {problem}")]
    KeyFile { path: String, problem: String },
}

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// The first byte of every sealed value: the format, so it can change later.
const FORMAT_V1: u8 = 1;

/// 32 random bytes, wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Secret([u8; KEY_LEN]);

impl Secret {
    fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Secret(k)
    }

    fn cipher(&self) -> Aes256Gcm {
        // A 32-byte key always fits AES-256.
        Aes256Gcm::new((&self.0).into())
    }
}

/// Seals `plain` with `key`, binding `aad`: version byte, random nonce, ciphertext and tag.
fn seal(key: &Secret, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let sealed = key
        .cipher()
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
        // AES-GCM encryption fails only for inputs over 64 GiB, far beyond any field.
        .unwrap_or_default();
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

fn open(key: &Secret, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    match sealed.split_first() {
        Some((&FORMAT_V1, rest)) if rest.len() > NONCE_LEN => {
            let (nonce, body) = rest.split_at(NONCE_LEN);
            key.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
                .map_err(|_| CryptoError::DoesNotOpen)
        }
        Some((&FORMAT_V1, _)) => Err(CryptoError::Malformed("too short")),
        _ => Err(CryptoError::Malformed("unknown format")),
    }
}

/// The key that wraps data keys. Its id (a hash of the key, not the key) is stored beside each
/// wrapped key, so a rotation knows which keys still need re-wrapping.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: Secret,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self::from_secret(Secret::random())
    }

    fn from_secret(key: Secret) -> Self {
        let digest = Sha256::digest([b"repeatrx master key id:".as_slice(), &key.0].concat());
        MasterKey { id: hex::encode(&digest[..8]), key }
    }

    /// A short public name for the key (16 hex digits).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(patient: &str) -> Vec<u8> {
        format!("repeatrx/data-key/v1/{patient}").into_bytes()
    }

    /// Wraps a patient's data key; only this master key, for this patient, unwraps it.
    pub fn wrap(&self, key: &DataKey, patient: &str) -> WrappedKey {
        WrappedKey { master_id: self.id.clone(), sealed: B64.encode(seal(&self.key, &Self::aad(patient), &key.0 .0)) }
    }

    pub fn unwrap(&self, wrapped: &WrappedKey, patient: &str) -> Result<DataKey, CryptoError> {
        let bytes = B64.decode(&wrapped.sealed).map_err(|_| CryptoError::Malformed("not base64"))?;
        let plain = Zeroizing::new(open(&self.key, &Self::aad(patient), &bytes)?);
        let key: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| CryptoError::Malformed("wrong key length"))?;
        Ok(DataKey(Secret(key)))
    }

    /// Re-wraps a data key from `old` under `self` (master-key rotation), never exposing it.
    pub fn rewrap(&self, old: &MasterKey, wrapped: &WrappedKey, patient: &str) -> Result<WrappedKey, CryptoError> {
        Ok(self.wrap(&old.unwrap(wrapped, patient)?, patient))
    }
}

/// A data key as stored: the master key's id and the sealed key (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub master_id: String,
    pub sealed: String,
}

/// Where a field lives: the associated data of its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row: &'a str,
}

impl Field<'_> {
    fn aad(&self) -> Vec<u8> {
        format!("repeatrx/field/v1/{}/{}/{}", self.table, self.column, self.row).into_bytes()
    }
}

/// One patient's data key.
#[derive(Clone)]
pub struct DataKey(Secret);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        DataKey(Secret::random())
    }

    /// Seals a field's text for its place (base64, for a TEXT column).
    pub fn seal(&self, field: Field<'_>, plain: &str) -> String {
        B64.encode(seal(&self.0, &field.aad(), plain.as_bytes()))
    }

    /// Opens a field sealed for exactly this place.
    pub fn open(&self, field: Field<'_>, sealed: &str) -> Result<String, CryptoError> {
        let bytes = B64.decode(sealed).map_err(|_| CryptoError::Malformed("not base64"))?;
        let plain = open(&self.0, &field.aad(), &bytes)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed("not text"))
    }
}

/// The key of the blind indexes, apart from the master key so that neither gives the other away.
#[derive(Clone)]
pub struct IndexKey(Secret);

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexKey(..)")
    }
}

impl IndexKey {
    pub fn generate() -> Self {
        IndexKey(Secret::random())
    }

    /// The blind index of an already normalised value for one purpose (e.g. `email`,
    /// `nhs_number`): equal values give equal indexes, and nothing else can be learned from it.
    pub fn blind_index(&self, purpose: &str, normalised: &str) -> String {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0 .0).unwrap_or_else(|_| unreachable!());
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(normalised.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// Where the keys come from. The key file is one source; a KMS can be another.
pub trait KeySource: Send + Sync {
    fn master(&self) -> &MasterKey;
    fn index(&self) -> &IndexKey;
}

/// The key file: two base64 lines (the master key, then the index key), readable by the
/// service's user only.
#[derive(Debug, Clone)]
pub struct KeyFile {
    master: MasterKey,
    index: IndexKey,
}

impl KeySource for KeyFile {
    fn master(&self) -> &MasterKey {
        &self.master
    }
    fn index(&self) -> &IndexKey {
        &self.index
    }
}

impl KeyFile {
    fn problem(path: &Path, problem: impl Into<String>) -> CryptoError {
        CryptoError::KeyFile { path: path.display().to_string(), problem: problem.into() }
    }

    /// Writes a new key file with fresh keys, mode 0600; refuses to overwrite one.
    pub fn create(path: &Path) -> Result<KeyFile, CryptoError> {
        let keys = KeyFile { master: MasterKey::generate(), index: IndexKey::generate() };
        let text = Zeroizing::new(format!("{}\n{}\n", B64.encode(keys.master.key.0), B64.encode(keys.index.0 .0)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| Self::problem(path, format!("cannot be created: {e}")))?;
        std::io::Write::write_all(&mut file, text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Self::problem(path, format!("cannot be written: {e}")))?;
        Ok(keys)
    }

    /// Reads the key file, refusing one that others can read or that is not two keys.
    pub fn load(path: &Path) -> Result<KeyFile, CryptoError> {
        let meta = std::fs::metadata(path).map_err(|e| Self::problem(path, format!("cannot be read: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Self::problem(
                    path,
                    format!("is readable by others (mode {mode:o}); make it readable by the service only (chmod 600)"),
                ));
            }
        }
        let _ = meta;
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| Self::problem(path, format!("cannot be read: {e}")))?,
        );
        let keys: Vec<Secret> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let bytes = Zeroizing::new(
                    B64.decode(l.trim()).map_err(|_| Self::problem(path, "holds a line that is not base64"))?,
                );
                let key: [u8; KEY_LEN] =
                    bytes.as_slice().try_into().map_err(|_| Self::problem(path, "holds a key that is not 32 bytes"))?;
                Ok(Secret(key))
            })
            .collect::<Result<_, CryptoError>>()?;
        match <[Secret; 2]>::try_from(keys) {
            Ok([master, index]) => Ok(KeyFile { master: MasterKey::from_secret(master), index: IndexKey(index) }),
            Err(_) => Err(Self::problem(path, "must hold exactly two keys (master, then index)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(row: &str) -> Field<'_> {
        Field { table: "patients", column: "family_name", row }
    }

    #[test]
    fn a_field_opens_only_in_its_own_place_with_its_own_key() {
        let key = DataKey::generate();
        let sealed = key.seal(field("p1"), "Jones");
        assert!(!sealed.contains("Jones"));
        assert_eq!(key.open(field("p1"), &sealed), Ok("Jones".into()));
        assert_ne!(key.seal(field("p1"), "Jones"), sealed, "a fresh nonce every time");

        assert_eq!(key.open(field("p2"), &sealed), Err(CryptoError::DoesNotOpen), "moved to another row");
        let other_column = Field { column: "given_name", ..field("p1") };
        assert_eq!(key.open(other_column, &sealed), Err(CryptoError::DoesNotOpen), "moved to another column");
        assert_eq!(DataKey::generate().open(field("p1"), &sealed), Err(CryptoError::DoesNotOpen), "another key");

        let mut bytes = B64.decode(&sealed).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(key.open(field("p1"), &B64.encode(&bytes)), Err(CryptoError::DoesNotOpen), "tampered");
        assert!(matches!(key.open(field("p1"), "%%%"), Err(CryptoError::Malformed(_))));
        assert!(matches!(key.open(field("p1"), &B64.encode([9u8, 1, 2])), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn data_keys_are_wrapped_for_one_patient_and_survive_rotation() {
        let master = MasterKey::generate();
        let dek = DataKey::generate();
        let wrapped = master.wrap(&dek, "patient-1");
        assert_eq!(wrapped.master_id, master.id());
        let sealed = dek.seal(field("patient-1"), "943 476 5919");
        let back = master.unwrap(&wrapped, "patient-1").unwrap();
        assert_eq!(back.open(field("patient-1"), &sealed), Ok("943 476 5919".into()));
        assert!(master.unwrap(&wrapped, "patient-2").is_err(), "a wrapped key moved to another patient");
        assert!(MasterKey::generate().unwrap(&wrapped, "patient-1").is_err(), "another master key");

        let next = MasterKey::generate();
        let rewrapped = next.rewrap(&master, &wrapped, "patient-1").unwrap();
        assert_eq!(rewrapped.master_id, next.id());
        assert_ne!(next.id(), master.id());
        let again = next.unwrap(&rewrapped, "patient-1").unwrap();
        assert_eq!(again.open(field("patient-1"), &sealed), Ok("943 476 5919".into()), "no data rewritten");
    }

    #[test]
    fn blind_indexes_match_equal_values_per_purpose_and_key() {
        let key = IndexKey::generate();
        let a = key.blind_index("email", "ann@example.org");
        assert_eq!(a, key.blind_index("email", "ann@example.org"));
        assert_eq!(a.len(), 32);
        assert_ne!(a, key.blind_index("email", "anne@example.org"));
        assert_ne!(a, key.blind_index("nhs_number", "ann@example.org"), "purposes do not collide");
        assert_ne!(a, IndexKey::generate().blind_index("email", "ann@example.org"), "useless without the key");
    }

    #[test]
    fn the_key_file_is_created_private_and_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let made = KeyFile::create(&path).unwrap();
        let loaded = KeyFile::load(&path).unwrap();
        assert_eq!(loaded.master().id(), made.master().id());
        assert_eq!(loaded.index().blind_index("x", "y"), made.index().blind_index("x", "y"));
        assert!(KeyFile::create(&path).is_err(), "an existing key file is never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let refused = KeyFile::load(&path).unwrap_err().to_string();
            assert!(refused.contains("readable by others (mode 644)"), "{refused}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        std::fs::write(&path, "not a key\n").unwrap();
        assert!(KeyFile::load(&path).unwrap_err().to_string().contains("not base64"));
        std::fs::write(&path, format!("{}\n", B64.encode([7u8; 32]))).unwrap();
        assert!(KeyFile::load(&path).unwrap_err().to_string().contains("exactly two keys"));
    }

    #[test]
    fn keys_do_not_show_in_debug_output() {
        let keys = KeyFile { master: MasterKey::generate(), index: IndexKey::generate() };
        let shown = format!("{keys:?} {:?}", DataKey::generate());
        assert!(!shown.contains(&B64.encode(keys.master.key.0)));
        assert!(shown.contains(keys.master.id()));
    }
}
