//! The sled backend's record entries, many to a value: a scope's
//! [`Delivery`](super::Delivery) entries are kept in chunks of up to
//! [`CHUNK_MAX`], each under the record key it starts at. One value per
//! record made a first sync of a page of 100 new records 100 inserts into
//! sled, whose leaves split at 16 entries and copy their parent index node
//! on every split: a fifth of a many-tenant `weft run`'s CPU. A chunk is
//! read and written whole, once per page.
//!
//! This module is the value's format; where chunks live and how they are
//! found is `state::sled`'s. Imports nothing of weft's but the entry.

use anyhow::{Context, bail};
use std::borrow::Cow;

/// The most entries a chunk holds; a fuller one is cut into chunks of
/// half as many.
pub const CHUNK_MAX: usize = 128;

/// One chunk: (record key, stored entry) pairs in key order, borrowed from
/// the stored value until changed (a page that touches one entry of a
/// chunk copies the others once, when the chunk is written). Entries stay
/// encoded until one is read or changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Chunk<'a> {
    entries: Vec<Entry<'a>>,
}

/// A record key and its stored entry.
type Entry<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// The stored entry of `key` in a stored chunk, read in place.
pub fn lookup<'a>(mut b: &'a [u8], key: &[u8]) -> anyhow::Result<Option<&'a [u8]>> {
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        match k.cmp(key) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => return Ok(Some(v)),
            std::cmp::Ordering::Greater => return Ok(None),
        }
    }
    Ok(None)
}

/// The next length-prefixed part of a stored chunk.
fn take<'a>(b: &mut &'a [u8]) -> anyhow::Result<&'a [u8]> {
    let Some((n, rest)) = b.split_first_chunk::<4>() else {
        bail!("a cut chunk of record entries");
    };
    let n = u32::from_be_bytes(*n) as usize;
    if rest.len() < n {
        bail!("a cut chunk of record entries");
    }
    let (part, rest) = rest.split_at(n);
    *b = rest;
    Ok(part)
}

impl<'a> Chunk<'a> {
    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The stored entry of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|i| self.entries[i].1.as_ref())
    }

    /// Sets the stored entry of `key`.
    pub fn put(&mut self, key: &[u8], entry: Vec<u8>) {
        match self.entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)) {
            Ok(i) => self.entries[i].1 = Cow::Owned(entry),
            Err(i) => self
                .entries
                .insert(i, (Cow::Owned(key.to_vec()), Cow::Owned(entry))),
        }
    }

    /// Adds an entry after every other (the caller's keys come in order).
    pub fn push(&mut self, key: Vec<u8>, entry: Vec<u8>) {
        debug_assert!(
            self.entries
                .last()
                .is_none_or(|(k, _)| k.as_ref() < key.as_slice())
        );
        self.entries.push((Cow::Owned(key), Cow::Owned(entry)));
    }

    /// Every (record key, stored entry), in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }

    /// Each stored entry, to change in place.
    pub fn entries_mut(&mut self) -> impl Iterator<Item = &mut Cow<'a, [u8]>> {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Itself if it holds at most [`CHUNK_MAX`] entries, else chunks of
    /// about half as many each, in order. Every chunk after the first
    /// starts at its first entry's key.
    pub fn split(self) -> Vec<Chunk<'a>> {
        if self.entries.len() <= CHUNK_MAX {
            return vec![self];
        }
        let pieces = self.entries.len().div_ceil(CHUNK_MAX / 2);
        let per = self.entries.len().div_ceil(pieces);
        let mut out = Vec::with_capacity(pieces);
        let mut rest = self.entries.into_iter().peekable();
        while rest.peek().is_some() {
            out.push(Chunk {
                entries: rest.by_ref().take(per).collect(),
            });
        }
        out
    }

    /// The key of its first entry (a chunk being stored is never empty
    /// past the first of its scope).
    pub fn first_key(&self) -> Option<&[u8]> {
        self.entries.first().map(|(k, _)| k.as_ref())
    }

    /// The stored form: per entry, the key's length (u32, big endian), the
    /// key, the entry's length (u32) and the entry.
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let size: usize = self
            .entries
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        let mut b = Vec::with_capacity(size);
        for (k, v) in &self.entries {
            for part in [k.as_ref(), v.as_ref()] {
                let n = u32::try_from(part.len()).context("a chunk entry over 4 GiB")?;
                b.extend_from_slice(&n.to_be_bytes());
                b.extend_from_slice(part);
            }
        }
        Ok(b)
    }

    /// Reads [`Chunk::encode`]'s form, borrowing from it.
    pub fn decode(mut b: &'a [u8]) -> anyhow::Result<Chunk<'a>> {
        let mut entries = Vec::new();
        while !b.is_empty() {
            let k = take(&mut b)?;
            let v = take(&mut b)?;
            entries.push((Cow::Borrowed(k), Cow::Borrowed(v)));
        }
        if entries.windows(2).any(|w| w[0].0 >= w[1].0) {
            bail!("a chunk of record entries out of order");
        }
        Ok(Chunk { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is put, a chunk answers the last value of each key,
        /// round-trips through its stored form, and splits into chunks of
        /// at most `CHUNK_MAX` that together hold the same entries in order.
        #[test]
        fn put_get_encode_and_split_agree(
            puts in proptest::collection::vec(("[a-z]{0,6}", any::<u8>()), 0..400)
        ) {
            let mut chunk = Chunk::default();
            let mut model = std::collections::BTreeMap::new();
            for (k, v) in &puts {
                chunk.put(k.as_bytes(), vec![*v]);
                model.insert(k.clone(), vec![*v]);
            }
            for (k, v) in &model {
                prop_assert_eq!(chunk.get(k.as_bytes()), Some(v.as_slice()));
            }
            prop_assert_eq!(chunk.get(b"unknown-key"), None);
            let stored = chunk.encode().unwrap();
            for (k, v) in &model {
                prop_assert_eq!(lookup(&stored, k.as_bytes()).unwrap(), Some(v.as_slice()));
            }
            prop_assert_eq!(lookup(&stored, b"unknown-key").unwrap(), None);
            let back = Chunk::decode(&stored).unwrap();
            prop_assert_eq!(&back, &chunk);
            let pieces = back.split();
            prop_assert!(pieces.iter().all(|p| p.len() <= CHUNK_MAX));
            prop_assert!(pieces.len() == 1 || pieces.iter().all(|p| !p.is_empty()));
            let joined: Vec<(Vec<u8>, Vec<u8>)> = pieces
                .iter()
                .flat_map(|p| p.entries().map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect();
            let expected: Vec<(Vec<u8>, Vec<u8>)> =
                model.into_iter().map(|(k, v)| (k.into_bytes(), v)).collect();
            prop_assert_eq!(joined, expected);
        }
    }

    #[test]
    fn a_cut_or_disordered_chunk_is_refused() {
        let mut chunk = Chunk::default();
        chunk.put(b"a", vec![1]);
        chunk.put(b"b", vec![2]);
        let bytes = chunk.encode().unwrap();
        assert!(Chunk::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut swapped = bytes[bytes.len() / 2..].to_vec();
        swapped.extend_from_slice(&bytes[..bytes.len() / 2]);
        assert!(Chunk::decode(&swapped).is_err());
    }
}
