//! The entry format of the mapping tables' blocks (and of the schema-6 buckets before them):
//! `[hash: u64][length: u32][payload]`, one after another.

use super::corrupt;
use crate::store::StoreError;

const ENTRY_HEADER: usize = 12;

/// Appends one entry, `[hash: u64][length: u32][payload]`, to a bucket or a block.
pub(super) fn push_entry(value: &mut Vec<u8>, hash: u64, payload: &[u8]) {
    value.extend_from_slice(&hash.to_be_bytes());
    value.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    value.extend_from_slice(payload);
}

/// The entries of a block (or of a schema-6 bucket's value), in order: hash and payload.
pub(super) struct Entries<'a> {
    name: &'static str,
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    /// The entries of a schema-6 bucket: a byte of depth, then entries.
    pub(super) fn of_bucket(name: &'static str, value: &'a [u8]) -> Result<Self, StoreError> {
        match value.split_first() {
            Some((_depth, rest)) => Ok(Self { name, rest }),
            None => Err(corrupt(name, "an empty bucket")),
        }
    }

    /// The entries of `bytes`, which holds entries only (a block, without a bucket's depth).
    pub(super) fn of_block(name: &'static str, bytes: &'a [u8]) -> Self {
        Self { name, rest: bytes }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<(u64, &'a [u8]), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, rest)) = self.rest.split_at_checked(ENTRY_HEADER) else {
            self.rest = &[];
            return Some(Err(corrupt(self.name, "a truncated entry")));
        };
        let hash = u64::from_be_bytes(header[..8].try_into().expect("8 bytes"));
        let len = u32::from_be_bytes(header[8..].try_into().expect("4 bytes")) as usize;
        let Some((payload, rest)) = rest.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(corrupt(self.name, "a truncated entry")));
        };
        self.rest = rest;
        Some(Ok((hash, payload)))
    }
}
