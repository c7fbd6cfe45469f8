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
    #[error("the data key was wrapped by a master key this server does not have")]
    UnknownMaster,
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
}

/// A sealing key with its AES-256-GCM key schedule, made once when the key is: making the
/// schedule again for every field opened cost as much as decrypting the field (about 200 ns
/// each), and a queue page opens several hundred fields and data keys. The schedule is the key in
/// another form, so it is wiped on drop as the key is (the `aes` crate's `zeroize` feature,
/// enabled in this crate's manifest). The
/// GHASH key beside it (AES of a zero block under the key) is not wiped by `polyval` 0.6; it does
/// not give the key away.
#[derive(Clone)]
struct AeadKey {
    secret: Secret,
    cipher: Aes256Gcm,
}

impl AeadKey {
    fn new(secret: Secret) -> Self {
        // A 32-byte key always fits AES-256.
        let cipher = Aes256Gcm::new((&secret.0).into());
        AeadKey { secret, cipher }
    }

    fn random() -> Self {
        Self::new(Secret::random())
    }

    fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret.0
    }

    /// Seals `plain` binding `aad`: version byte, random nonce, ciphertext and tag.
    fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            // AES-GCM encryption fails only for inputs over 64 GiB, far beyond any field.
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match sealed.split_first() {
            Some((&FORMAT_V1, rest)) if rest.len() > NONCE_LEN => {
                let (nonce, body) = rest.split_at(NONCE_LEN);
                self.cipher
                    .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
                    .map_err(|_| CryptoError::DoesNotOpen)
            }
            Some((&FORMAT_V1, _)) => Err(CryptoError::Malformed("too short")),
            _ => Err(CryptoError::Malformed("unknown format")),
        }
    }
}

/// The key that wraps data keys. Its id (a hash of the key, not the key) is stored beside each
/// wrapped key, so a rotation knows which keys still need re-wrapping.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: AeadKey,
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
        let digest = Sha256::new().chain_update(b"repeatrx master key id:").chain_update(key.0).finalize();
        MasterKey { id: hex::encode(&digest[..8]), key: AeadKey::new(key) }
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
        WrappedKey { master_id: self.id.clone(), sealed: B64.encode(self.key.seal(&Self::aad(patient), key.0.bytes())) }
    }

    pub fn unwrap(&self, wrapped: &WrappedKey, patient: &str) -> Result<DataKey, CryptoError> {
        let bytes = B64.decode(&wrapped.sealed).map_err(|_| CryptoError::Malformed("not base64"))?;
        let plain = Zeroizing::new(self.key.open(&Self::aad(patient), &bytes)?);
        let key: [u8; KEY_LEN] = plain.as_slice().try_into().map_err(|_| CryptoError::Malformed("wrong key length"))?;
        Ok(DataKey(AeadKey::new(Secret(key))))
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
pub struct DataKey(AeadKey);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    pub fn generate() -> Self {
        DataKey(AeadKey::random())
    }

    /// Seals a field's text for its place (base64, for a TEXT column).
    pub fn seal(&self, field: Field<'_>, plain: &str) -> String {
        B64.encode(self.0.seal(&field.aad(), plain.as_bytes()))
    }

    /// Opens a field sealed for exactly this place.
    pub fn open(&self, field: Field<'_>, sealed: &str) -> Result<String, CryptoError> {
        let bytes = B64.decode(sealed).map_err(|_| CryptoError::Malformed("not base64"))?;
        let plain = self.0.open(&field.aad(), &bytes)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed("not text"))
    }

    /// Seals bytes bound to `aad` (version byte, nonce, ciphertext and tag): backup objects.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        self.0.seal(aad, plain)
    }

    /// Opens bytes sealed by [`DataKey::seal_bytes`] with the same `aad`.
    pub fn open_bytes(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.0.open(aad, sealed)
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

/// The keys in use: the current master key (wraps new data keys), earlier master keys kept to
/// unwrap what they wrapped (keys not yet re-wrapped, and backups taken before a rotation), and
/// the index key.
#[derive(Clone)]
pub struct Keys {
    master: MasterKey,
    previous: Vec<MasterKey>,
    index: IndexKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let previous: Vec<&str> = self.previous.iter().map(MasterKey::id).collect();
        f.debug_struct("Keys").field("master", &self.master.id).field("previous", &previous).finish_non_exhaustive()
    }
}

impl Keys {
    /// Fresh keys (tests, and a new key file).
    pub fn generate() -> Self {
        Keys { master: MasterKey::generate(), previous: Vec::new(), index: IndexKey::generate() }
    }

    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    pub fn index(&self) -> &IndexKey {
        &self.index
    }

    /// The master keys that came before the current one, newest first.
    pub fn previous(&self) -> &[MasterKey] {
        &self.previous
    }

    /// These keys with a new master key; the current one joins the previous ones.
    pub fn rotated(&self) -> Keys {
        let mut previous = vec![self.master.clone()];
        previous.extend(self.previous.iter().cloned());
        Keys { master: MasterKey::generate(), previous, index: self.index.clone() }
    }

    /// These keys without the earlier master keys (once no data key or kept backup needs them).
    pub fn without_previous(&self) -> Keys {
        Keys { master: self.master.clone(), previous: Vec::new(), index: self.index.clone() }
    }

    /// The master key with this id, current or previous.
    pub fn master_by_id(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.master).chain(&self.previous).find(|m| m.id == id)
    }

    /// Unwraps a data key under whichever known master key wrapped it.
    pub fn unwrap(&self, wrapped: &WrappedKey, owner: &str) -> Result<DataKey, CryptoError> {
        self.master_by_id(&wrapped.master_id).ok_or(CryptoError::UnknownMaster)?.unwrap(wrapped, owner)
    }

    fn text(&self) -> Zeroizing<String> {
        let mut text = format!("{}\n{}\n", B64.encode(self.master.key.bytes()), B64.encode(self.index.0 .0));
        for m in &self.previous {
            text.push_str(&B64.encode(m.key.bytes()));
            text.push('\n');
        }
        Zeroizing::new(text)
    }
}

/// Where the keys come from. The key file is one source; a KMS can be another.
pub trait KeySource: Send + Sync + std::fmt::Debug {
    /// The keys as last loaded.
    fn keys(&self) -> std::sync::Arc<Keys>;
    /// Loads the keys again (after a rotation by another process); false if nothing changed.
    fn reload(&self) -> Result<bool, CryptoError>;
}

/// Keys held in memory only (tests; a KMS adapter would look much the same).
#[derive(Debug)]
pub struct FixedKeys(std::sync::Arc<Keys>);

impl FixedKeys {
    pub fn new(keys: Keys) -> Self {
        FixedKeys(std::sync::Arc::new(keys))
    }
}

impl KeySource for FixedKeys {
    fn keys(&self) -> std::sync::Arc<Keys> {
        self.0.clone()
    }
    fn reload(&self) -> Result<bool, CryptoError> {
        Ok(false)
    }
}

/// The key file: base64 lines, readable by the service's user only: the current master key, the
/// index key, then earlier master keys (newest first).
#[derive(Debug)]
pub struct KeyFile {
    path: std::path::PathBuf,
    keys: std::sync::RwLock<std::sync::Arc<Keys>>,
}

impl KeySource for KeyFile {
    fn keys(&self) -> std::sync::Arc<Keys> {
        // A poisoned lock still holds the last keys loaded, which are whole.
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn reload(&self) -> Result<bool, CryptoError> {
        let fresh = Self::read(&self.path)?;
        let mut held = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = held.master.id != fresh.master.id || held.previous.len() != fresh.previous.len();
        *held = std::sync::Arc::new(fresh);
        Ok(changed)
    }
}

impl KeyFile {
    fn problem(path: &Path, problem: impl Into<String>) -> CryptoError {
        CryptoError::KeyFile { path: path.display().to_string(), problem: problem.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a new key file with fresh keys, mode 0600; refuses to overwrite one.
    pub fn create(path: &Path) -> Result<KeyFile, CryptoError> {
        let keys = Keys::generate();
        Self::write_new(path, &keys)?;
        Ok(KeyFile { path: path.to_path_buf(), keys: std::sync::RwLock::new(std::sync::Arc::new(keys)) })
    }

    fn write_new(path: &Path, keys: &Keys) -> Result<(), CryptoError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| Self::problem(path, format!("cannot be created: {e}")))?;
        std::io::Write::write_all(&mut file, keys.text().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Self::problem(path, format!("cannot be written: {e}")))
    }

    /// Replaces the file's keys by `keys` atomically (a private file written beside it, then
    /// renamed over it), so a reader sees the old keys or the new ones, never half of either.
    pub fn replace(&self, keys: Keys) -> Result<(), CryptoError> {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let next = self.path.with_file_name(format!(".{name}.next"));
        let _ = std::fs::remove_file(&next);
        Self::write_new(&next, &keys)?;
        std::fs::rename(&next, &self.path)
            .map_err(|e| Self::problem(&self.path, format!("cannot be replaced: {e}")))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Makes the rename itself durable.
            let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
        }
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(keys);
        Ok(())
    }

    /// Loads the key file at `path`, first creating it with fresh keys if there is none (the demo,
    /// and tests; production insists on an existing file).
    pub fn open_or_create(path: &Path) -> Result<KeyFile, CryptoError> {
        if path.exists() {
            Self::load(path)
        } else {
            Self::create(path)
        }
    }

    /// Reads the key file, refusing one that others can read or that does not hold the keys.
    pub fn load(path: &Path) -> Result<KeyFile, CryptoError> {
        let keys = Self::read(path)?;
        Ok(KeyFile { path: path.to_path_buf(), keys: std::sync::RwLock::new(std::sync::Arc::new(keys)) })
    }

    fn read(path: &Path) -> Result<Keys, CryptoError> {
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
        let mut keys = text
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
            .collect::<Result<Vec<_>, CryptoError>>()?
            .into_iter();
        match (keys.next(), keys.next()) {
            (Some(master), Some(index)) => Ok(Keys {
                master: MasterKey::from_secret(master),
                previous: keys.map(MasterKey::from_secret).collect(),
                index: IndexKey(index),
            }),
            _ => Err(Self::problem(path, "must hold at least two keys (master, then index)")),
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
    fn the_key_schedules_kept_with_the_keys_are_wiped_on_drop() {
        // Compiles only while the `aes` crate's `zeroize` feature is on: without it the AES round
        // keys each DataKey and MasterKey keeps (the key in another form) stay in freed memory.
        fn wiped_on_drop<T: ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
        wiped_on_drop::<Secret>();
    }

    #[test]
    fn a_cloned_data_key_opens_what_the_original_sealed() {
        let key = DataKey::generate();
        let sealed = key.seal(field("p1"), "Smith");
        let copy = key.clone();
        drop(key);
        assert_eq!(copy.open(field("p1"), &sealed).unwrap(), "Smith");
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
        let made = KeyFile::create(&path).unwrap().keys();
        let loaded = KeyFile::load(&path).unwrap().keys();
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
        assert!(KeyFile::load(&path).unwrap_err().to_string().contains("at least two keys"));
    }

    #[test]
    fn a_rotation_keeps_earlier_master_keys_for_what_they_wrapped_and_other_readers_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let writer = KeyFile::create(&path).unwrap();
        let reader = KeyFile::load(&path).unwrap();
        let dek = DataKey::generate();
        let old_wrap = writer.keys().master().wrap(&dek, "p1");

        let rotated = writer.keys().rotated();
        let new_wrap = rotated.master().rewrap(writer.keys().master(), &old_wrap, "p1").unwrap();
        writer.replace(rotated).unwrap();
        assert_eq!(writer.keys().previous().len(), 1);
        assert!(writer.keys().unwrap(&old_wrap, "p1").is_ok(), "keys not yet re-wrapped still open");
        assert_eq!(reader.keys().unwrap(&new_wrap, "p1").unwrap_err(), CryptoError::UnknownMaster);
        assert!(reader.reload().unwrap(), "the reader sees the rotation");
        assert!(reader.keys().unwrap(&new_wrap, "p1").is_ok());
        assert!(!reader.reload().unwrap(), "nothing changed since");
        assert_eq!(reader.keys().index().blind_index("e", "x"), writer.keys().index().blind_index("e", "x"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn keys_do_not_show_in_debug_output() {
        let keys = Keys::generate();
        let shown = format!("{keys:?} {:?}", DataKey::generate());
        assert!(!shown.contains(&B64.encode(keys.master.key.bytes())));
        assert!(shown.contains(keys.master.id()));
    }
}
