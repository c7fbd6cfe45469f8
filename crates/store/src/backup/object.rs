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
use repeatrx_crypto::{DataKey, WrappedKey};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8] = b"RXB1\n";
pub const CHUNK: usize = 1 << 20;

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

/// Seals an object a chunk at a time, so a snapshot of any size passes through a bounded buffer.
pub struct ObjectSealer {
    key: DataKey,
    name: String,
    index: usize,
}

impl ObjectSealer {
    /// Starts the object called `name`; returns the sealer and the object's first bytes.
    pub fn begin(sealer: &Sealer, name: &str) -> (ObjectSealer, Vec<u8>) {
        let (key, wrapped) = sealer.new_data_key(&owner(name));
        let header = Header { master: wrapped.master_id, key: wrapped.sealed };
        let mut out = MAGIC.to_vec();
        // Serialising two strings cannot fail.
        out.extend(serde_json::to_vec(&header).unwrap_or_default());
        out.push(b'\n');
        (ObjectSealer { key, name: name.to_string(), index: 0 }, out)
    }

    /// The next chunk (at most [`CHUNK`] bytes; `last` for the final one) in its sealed form.
    pub fn chunk(&mut self, plain: &[u8], last: bool) -> Vec<u8> {
        debug_assert!(plain.len() <= CHUNK);
        let sealed = self.key.seal_bytes(&chunk_aad(&self.name, self.index, last), plain);
        self.index += 1;
        let mut out = Vec::with_capacity(sealed.len() + 4);
        // A chunk is at most 1 MiB plus the tag: it fits a u32.
        out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&sealed);
        out
    }
}

/// Seals `plain` as the object called `name`.
pub fn seal_object(sealer: &Sealer, name: &str, plain: &[u8]) -> Vec<u8> {
    let (mut object, mut out) = ObjectSealer::begin(sealer, name);
    out.reserve(plain.len() + plain.len() / 32 + 64);
    let chunks: Vec<&[u8]> = if plain.is_empty() { vec![&[]] } else { plain.chunks(CHUNK).collect() };
    let count = chunks.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        out.extend(object.chunk(chunk, i + 1 == count));
    }
    out
}

/// Opens an object as its bytes arrive: [`ObjectOpener::push`] returns the plain bytes of every
/// chunk known not to be the last; [`ObjectOpener::finish`] those of the last, and refuses an
/// object cut short. At most two sealed chunks are held at once.
pub struct ObjectOpener<'a> {
    sealer: &'a Sealer,
    name: String,
    key: Option<DataKey>,
    buf: Vec<u8>,
    index: usize,
}

impl<'a> ObjectOpener<'a> {
    pub fn new(sealer: &'a Sealer, name: &str) -> Self {
        ObjectOpener { sealer, name: name.to_string(), key: None, buf: Vec::new(), index: 0 }
    }

    fn bad(&self, why: &str) -> StoreError {
        StoreError::Corrupt(format!("the backup object {} {why}", self.name))
    }

    /// Takes the next bytes; returns the plain text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> StoreResult<Vec<u8>> {
        self.buf.extend_from_slice(bytes);
        let mut plain = Vec::new();
        if self.key.is_none() {
            if self.buf.len() < MAGIC.len() {
                return Ok(plain);
            }
            if !self.buf.starts_with(MAGIC) {
                return Err(self.bad("is not a RepeatRx backup object"));
            }
            let Some(end) = self.buf[MAGIC.len()..].iter().position(|&b| b == b'\n') else {
                if self.buf.len() > 64 * 1024 {
                    return Err(self.bad("has no header"));
                }
                return Ok(plain);
            };
            let header: Header = serde_json::from_slice(&self.buf[MAGIC.len()..MAGIC.len() + end])
                .map_err(|_| self.bad("has an unreadable header"))?;
            let key =
                self.sealer.unwrap(&owner(&self.name), &WrappedKey { master_id: header.master, sealed: header.key })?;
            self.key = Some(key);
            self.buf.drain(..MAGIC.len() + end + 1);
        }
        let mut at = 0;
        // A chunk is opened once a byte follows it: only then is it known not to be the last.
        while let Some(len) = self.chunk_len(at) {
            if self.buf.len() <= at + 4 + len {
                break;
            }
            plain.extend(self.open_chunk(at, len, false)?);
            at += 4 + len;
        }
        self.buf.drain(..at);
        Ok(plain)
    }

    /// The end of the object: the plain text of its last chunk.
    pub fn finish(mut self) -> StoreResult<Vec<u8>> {
        if self.key.is_none() {
            return Err(self.bad("has no header"));
        }
        match self.chunk_len(0) {
            Some(len) if self.buf.len() == 4 + len => self.open_chunk(0, len, true),
            _ => Err(self.bad("is cut short")),
        }
        .inspect(|_| self.buf.clear())
    }

    fn chunk_len(&self, at: usize) -> Option<usize> {
        let len = self.buf.get(at..at + 4)?;
        Some(u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
    }

    fn open_chunk(&mut self, at: usize, len: usize, last: bool) -> StoreResult<Vec<u8>> {
        let key = self.key.as_ref().ok_or_else(|| self.bad("has no header"))?;
        let sealed = &self.buf[at + 4..at + 4 + len];
        let opened = key
            .open_bytes(&chunk_aad(&self.name, self.index, last), sealed)
            .map_err(|_| self.bad("does not open: it was changed, renamed or cut short, or sealed with other keys"))?;
        self.index += 1;
        Ok(opened)
    }
}

/// Opens the object called `name`; anything changed, renamed or cut short is refused.
pub fn open_object(sealer: &Sealer, name: &str, bytes: &[u8]) -> StoreResult<Vec<u8>> {
    let mut opener = ObjectOpener::new(sealer, name);
    let mut plain = opener.push(bytes)?;
    plain.extend(opener.finish()?);
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

    #[test]
    fn an_object_opens_the_same_however_its_bytes_arrive() {
        let s = sealer();
        let plain: Vec<u8> = (0..(CHUNK * 3 + 1000)).map(|i| (i % 253) as u8).collect();
        let (mut object, mut sealed) = ObjectSealer::begin(&s, "g/snapshots/1-2.rxs");
        let chunks: Vec<&[u8]> = plain.chunks(CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            sealed.extend(object.chunk(c, i + 1 == chunks.len()));
        }
        for piece in [1, 7, 4096, CHUNK - 1, CHUNK + 21, sealed.len()] {
            let mut opener = ObjectOpener::new(&s, "g/snapshots/1-2.rxs");
            let mut got = Vec::new();
            for bytes in sealed.chunks(piece) {
                got.extend(opener.push(bytes).expect("opens"));
                assert!(opener.buf.len() <= 2 * (CHUNK + 64) + piece, "holds at most two chunks besides the piece");
            }
            got.extend(opener.finish().expect("ends whole"));
            assert!(got == plain, "pieces of {piece} bytes give the object back");
        }
        let cut = &sealed[..sealed.len() - 1];
        let mut opener = ObjectOpener::new(&s, "g/snapshots/1-2.rxs");
        let opened = opener.push(cut).map(|_| ());
        assert!(opened.and_then(|()| opener.finish().map(|_| ())).is_err(), "a cut object is refused at its end");
    }
}
