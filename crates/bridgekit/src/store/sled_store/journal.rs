//! The intake journal: what makes a new transaction durable before it is acknowledged.
//!
//! sled makes a write durable with its `flush`: the log buffer is handed to sled's thread
//! pool (which wakes every idle IO thread), written, and waited for with
//! `sync_file_range`, and the store then needs an `fdatasync` of its own (see the `flusher`
//! module): two waits on the disk per acknowledgement. Measured with one transaction in
//! flight, as Synapse sends them, that capped intake at ~38,000 events/s with an ack p50 of
//! 1.1 ms (70,000 and 0.6 ms on tmpfs, where the disk costs nothing).
//!
//! So a new transaction is first appended here, one record per transaction, and the group is
//! synced with one `fdatasync` of this small file; only then is it written to sled's trees,
//! unflushed, and acknowledged. sled writes it out on its own soon after (its flusher runs
//! every half second, and any outbox flush covers it). When the store opens, every record
//! whose transaction sled does not have is written to the trees again, with the numbers it
//! had. The journal is emptied after a durable flush of sled ([`Journal::reset`]), which the
//! store does before pruning transaction records and whenever the journal grows past
//! [`RESET_PAST`]; so it never holds a transaction whose record was pruned.
//!
//! A record is `[payload length u32][SipHash-1-3 of the payload u64][payload]`. A record cut
//! short by a crash, or one whose hash does not match, ends the journal: it was never
//! acknowledged. After a failed write the file may hold such a record in the middle, so
//! nothing more is appended until a reset: in the meantime the store falls back to flushing
//! sled.

use std::fs::{File, OpenOptions};
use std::hash::Hasher as _;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use siphasher::sip::SipHasher13;

/// The journal is emptied (after a durable flush of sled) once it is this long.
pub(super) const RESET_PAST: u64 = 8 << 20;
const HEADER: usize = 4 + 8;

/// One journaled transaction: what `record_transactions` writes to sled's trees for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JournalRecord {
    /// Its number in `txn_order`.
    pub(super) record_seq: u64,
    /// The transaction's key in `txns`.
    pub(super) key: Vec<u8>,
    /// `(batch number, encoded batch)` for `inbox_batches`.
    pub(super) batches: Vec<(u64, Vec<u8>)>,
}

/// The open journal file.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    len: u64,
    /// A write or sync failed: the file may end in a torn record, so it takes no appends
    /// until [`Journal::reset`].
    broken: bool,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads the records it holds.
    pub(super) fn open(path: &Path) -> io::Result<(Self, Vec<JournalRecord>)> {
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        if !existed {
            file.sync_all()?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let records = decode_all(&bytes);
        let journal = Self {
            file,
            path: path.to_owned(),
            len: bytes.len() as u64,
            broken: false,
        };
        Ok((journal, records))
    }

    /// False after a failed append, until the next successful reset.
    pub(super) fn is_usable(&self) -> bool {
        !self.broken
    }

    /// True when the journal should be emptied before the next append.
    pub(super) fn wants_reset(&self) -> bool {
        self.broken || self.len >= RESET_PAST
    }

    /// Appends `records` and waits until they are on disk.
    pub(super) fn append(&mut self, records: &[JournalRecord]) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("the intake journal needs a reset"));
        }
        let mut bytes = Vec::new();
        for record in records {
            encode(record, &mut bytes);
        }
        let result = self
            .file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                self.broken = true;
                Err(error)
            }
        }
    }

    /// Takes no appends until the next reset (sled refused what the last one journaled).
    pub(super) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Empties the journal. Only after everything it holds is durable in sled.
    pub(super) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.len = 0;
        self.broken = false;
        Ok(())
    }

    /// Where the journal is, for error messages.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

fn checksum(payload: &[u8]) -> u64 {
    let mut hasher = SipHasher13::new_with_keys(0x6272_6964_6765_6b69, 0x746a_6f75_726e_616c);
    hasher.write(payload);
    hasher.finish()
}

fn encode(record: &JournalRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&record.record_seq.to_be_bytes());
    out.extend_from_slice(&(record.key.len() as u32).to_be_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&(record.batches.len() as u32).to_be_bytes());
    for (number, batch) in &record.batches {
        out.extend_from_slice(&number.to_be_bytes());
        out.extend_from_slice(&(batch.len() as u32).to_be_bytes());
        out.extend_from_slice(batch);
    }
    let payload_len = (out.len() - start - HEADER) as u32;
    let sum = checksum(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&payload_len.to_be_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&sum.to_be_bytes());
}

/// Every whole, intact record from the start; stops at the first that is not.
fn decode_all(bytes: &[u8]) -> Vec<JournalRecord> {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, next)) = decode_at(bytes, at) {
        records.push(record);
        at = next;
    }
    records
}

fn decode_at(bytes: &[u8], at: usize) -> Option<(JournalRecord, usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
    let sum = u64::from_be_bytes(header[4..].try_into().ok()?);
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if checksum(payload) != sum {
        return None;
    }
    let mut reader = Reader(payload);
    let record_seq = reader.u64()?;
    let key_len = reader.u32()? as usize;
    let key = reader.take(key_len)?.to_vec();
    let count = reader.u32()? as usize;
    let mut batches = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let number = reader.u64()?;
        let len = reader.u32()? as usize;
        batches.push((number, reader.take(len)?.to_vec()));
    }
    if !reader.0.is_empty() {
        return None;
    }
    let record = JournalRecord {
        record_seq,
        key,
        batches,
    };
    Some((record, at + HEADER + len))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> JournalRecord {
        JournalRecord {
            record_seq: n,
            key: format!("txn-{n}").into_bytes(),
            batches: vec![(n * 10, vec![n as u8; 40]), (n * 10 + 1, vec![7; 3])],
        }
    }

    #[test]
    fn records_come_back_after_reopen_and_a_reset_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.journal");
        let (mut journal, found) = Journal::open(&path).unwrap();
        assert!(found.is_empty());
        journal.append(&[record(1), record(2)]).unwrap();
        journal.append(&[record(3)]).unwrap();
        drop(journal);
        let (mut journal, found) = Journal::open(&path).unwrap();
        assert_eq!(found, vec![record(1), record(2), record(3)]);
        journal.reset().unwrap();
        journal.append(&[record(4)]).unwrap();
        drop(journal);
        assert_eq!(Journal::open(&path).unwrap().1, vec![record(4)]);
    }

    #[test]
    fn a_torn_or_damaged_record_ends_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.journal");
        let (mut journal, _) = Journal::open(&path).unwrap();
        journal.append(&[record(1), record(2)]).unwrap();
        drop(journal);
        let whole = std::fs::read(&path).unwrap();
        let first_len = whole.len() / 2;
        // Cut anywhere inside the second record: only the first survives.
        for cut in [first_len + 1, first_len + HEADER, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            assert_eq!(
                Journal::open(&path).unwrap().1,
                vec![record(1)],
                "cut {cut}"
            );
        }
        // A flipped byte in the first record's payload ends it there.
        let mut damaged = whole.clone();
        damaged[HEADER + 3] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        assert!(Journal::open(&path).unwrap().1.is_empty());
    }

    #[test]
    fn it_wants_a_reset_when_long() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(&dir.path().join("j")).unwrap();
        assert!(!journal.wants_reset());
        let big = JournalRecord {
            record_seq: 1,
            key: b"k".to_vec(),
            batches: vec![(1, vec![0; RESET_PAST as usize])],
        };
        journal.append(&[big]).unwrap();
        assert!(journal.wants_reset() && journal.is_usable());
        journal.reset().unwrap();
        assert!(!journal.wants_reset());
    }
}
