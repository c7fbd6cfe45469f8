//! The sealed form of every backup object (a journal segment or a snapshot): envelope encryption
//! as for patient data. Each object gets a fresh data key, wrapped by the master key and bound to
//! the object's name; the content is sealed in 1 MiB chunks whose associated data names the
//! object, the chunk's place and whether it is the last, so a renamed, reordered, swapped or
//! truncated object fails to open instead of restoring something else.
//!
//! Layout: `RXB1\n`, one JSON line `{"master": .., "key": ..}`, then per chunk a big-endian u32
//! length and the sealed chunk.
use crate::sealing::Sealer;
use crate::{StoreError, StoreResult};
use repeatrx_crypto::WrappedKey;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"RXB1\n";
const CHUNK: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
struct Header {
    master: String,
    key: String,
}

fn owner(name: &str) -> String {
    format!("backup:{name}")
}

fn chunk_aad(name: &str, index: usize, last: bool) -> Vec<u8> {
    format!("repeatrx/backup/v1/{name}/{index}/{}", if last { "last" } else { "more" }).into_bytes()
}

/// Seals `plain` as the object called `name`.
pub fn seal_object(sealer: &Sealer, name: &str, plain: &[u8]) -> Vec<u8> {
    let (key, wrapped) = sealer.new_data_key(&owner(name));
    let header = Header { master: wrapped.master_id, key: wrapped.sealed };
    let mut out = Vec::with_capacity(plain.len() + plain.len() / 32 + 256);
    out.extend_from_slice(MAGIC);
    // Serialising two strings cannot fail.
    out.extend(serde_json::to_vec(&header).unwrap_or_default());
    out.push(b'\n');
    let chunks: Vec<&[u8]> = if plain.is_empty() { vec![&[]] } else { plain.chunks(CHUNK).collect() };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let sealed = key.seal_bytes(&chunk_aad(name, i, i + 1 == count), chunk);
        // A chunk is at most 1 MiB plus the tag: it fits a u32.
        out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed);
    }
    out
}

/// Opens the object called `name`; anything changed, renamed or cut short is refused.
pub fn open_object(sealer: &Sealer, name: &str, bytes: &[u8]) -> StoreResult<Vec<u8>> {
    let bad = |why: &str| StoreError::Corrupt(format!("the backup object {name} {why}"));
    let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| bad("is not a RepeatRx backup object"))?;
    let end = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad("has no header"))?;
    let header: Header = serde_json::from_slice(&rest[..end]).map_err(|_| bad("has an unreadable header"))?;
    let key = sealer.unwrap(&owner(name), &WrappedKey { master_id: header.master, sealed: header.key })?;
    let mut body = &rest[end + 1..];
    let mut plain = Vec::with_capacity(body.len());
    let mut index = 0;
    while !body.is_empty() {
        let (len, tail) = body.split_at_checked(4).ok_or_else(|| bad("is cut short"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (sealed, tail) = tail.split_at_checked(len).ok_or_else(|| bad("is cut short"))?;
        let opened = key
            .open_bytes(&chunk_aad(name, index, tail.is_empty()), sealed)
            .map_err(|_| bad("does not open: it was changed, renamed or cut short, or sealed with other keys"))?;
        plain.extend(opened);
        body = tail;
        index += 1;
    }
    if index == 0 {
        return Err(bad("is cut short"));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use repeatrx_crypto::{FixedKeys, Keys};
    use std::sync::Arc;

    fn sealer() -> Sealer {
        Sealer::new(Arc::new(FixedKeys::new(Keys::generate())))
    }

    #[test]
    fn objects_open_only_whole_under_their_own_name_and_keys() {
        let s = sealer();
        let big: Vec<u8> = (0..(CHUNK * 2 + 17)).map(|i| (i % 251) as u8).collect();
        for plain in [Vec::new(), b"INSERT INTO meta".to_vec(), big] {
            let sealed = seal_object(&s, "g/journal/1-2.rxj", &plain);
            assert_eq!(open_object(&s, "g/journal/1-2.rxj", &sealed).expect("opens"), plain);
            assert!(open_object(&s, "g/journal/3-4.rxj", &sealed).is_err(), "renamed");
            assert!(open_object(&sealer(), "g/journal/1-2.rxj", &sealed).is_err(), "other keys");
            let mut flipped = sealed.clone();
            let last = flipped.len() - 1;
            flipped[last] ^= 1;
            assert!(open_object(&s, "g/journal/1-2.rxj", &flipped).is_err(), "changed");
        }
        let big: Vec<u8> = vec![7; CHUNK + 5];
        let sealed = seal_object(&s, "x", &big);
        // Dropping the last chunk leaves a well-formed object whose last chunk says "more".
        let first_chunk_end = sealed.len() - (4 + 1 + 12 + 5 + 16);
        assert!(open_object(&s, "x", &sealed[..first_chunk_end]).is_err(), "truncated at a chunk boundary");
        assert!(open_object(&s, "x", b"not a backup").is_err());
    }
}
