//! Runs as schema 7 kept them, as values of the `msg_runs` sled tree: read once, when such
//! a store opens, and rewritten as run files (schema 8).
//!
//! Schema 7 keys: `[run: u64][section: u8][block: u32]` for blocks, `[run: u64][0xFF]` for
//! the directory (per section: entry count, block count, first hashes, filter).

use super::super::entries::Entries;
use super::bloom::{Bloom, Layout};
use super::corrupt_run;
use super::files::RunDir;
use super::run::{RunWriter, Section};
use crate::store::StoreError;

/// The schema-7 tree of runs.
pub(super) const TREE: &str = "msg_runs";

fn block_key(id: u64, section: Section, block: u32) -> [u8; 13] {
    let mut key = [0u8; 13];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8] = section as u8;
    key[9..].copy_from_slice(&block.to_be_bytes());
    key
}

fn directory_key(id: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[..8].copy_from_slice(&id.to_be_bytes());
    key[8] = 0xFF;
    key
}

/// Entry and block counts of one section of a schema-7 directory, and what follows it.
fn section_counts(bytes: &[u8]) -> Result<(u64, u64, &[u8]), StoreError> {
    let bad = || corrupt_run("a truncated schema-7 run directory");
    let word = |at: usize| -> Result<u64, StoreError> {
        let w = bytes.get(at..at + 8).ok_or_else(bad)?;
        Ok(u64::from_le_bytes(w.try_into().expect("8 bytes")))
    };
    let (entries, blocks) = (word(0)?, word(8)?);
    let firsts_end = usize::try_from(blocks)
        .ok()
        .and_then(|b| b.checked_mul(8)?.checked_add(16))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(bad)?;
    let (_, rest) = Bloom::measure(&bytes[firsts_end..], Layout::Spread)?;
    Ok((entries, blocks, rest))
}

/// Rewrites every run of `live` still in the `msg_runs` tree as a file of `dir`, then drops
/// the tree. Each file is finished (synced and named) before the tree goes, and a run that
/// already has its file is skipped, so an interrupted move is simply done again.
pub(super) fn move_to_files(db: &sled::Db, dir: &RunDir, live: &[u64]) -> Result<(), StoreError> {
    let tree = db.open_tree(TREE)?;
    for &id in live {
        if dir.finished(id).exists() {
            continue;
        }
        let directory = tree
            .get(directory_key(id))?
            .ok_or_else(|| corrupt_run(format!("run {id} has no directory")))?;
        let (events, event_blocks, rest) = section_counts(&directory)?;
        let (remotes, remote_blocks, _) = section_counts(rest)?;
        let mut writer = RunWriter::new(dir, id, events as usize, remotes as usize)?;
        for (section, blocks) in [
            (Section::ByEvent, event_blocks),
            (Section::ByRemote, remote_blocks),
        ] {
            if section == Section::ByRemote {
                writer.start_remote_section()?;
            }
            for n in 0..blocks {
                let block = tree
                    .get(block_key(id, section, n as u32))?
                    .ok_or_else(|| corrupt_run(format!("run {id}: block {n} is missing")))?;
                for entry in Entries::of_block(TREE, &block) {
                    let (hash, payload) = entry?;
                    writer.push(hash, payload)?;
                }
            }
        }
        writer.finish()?;
    }
    drop(tree);
    db.drop_tree(TREE)?;
    db.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::run::Run;
    use super::*;

    /// Writes a schema-7 run the way schema 7 did.
    fn write_tree_run(tree: &sled::Tree, id: u64, sections: [&[(u64, &[u8])]; 2]) {
        let mut directory = Vec::new();
        for (n, entries) in sections.iter().enumerate() {
            let section = if n == 0 {
                Section::ByEvent
            } else {
                Section::ByRemote
            };
            let mut bloom = Bloom::with_capacity(entries.len());
            let mut block = Vec::new();
            for (hash, payload) in entries.iter() {
                bloom.insert(*hash);
                super::super::super::entries::push_entry(&mut block, *hash, payload);
            }
            let blocks: u64 = u64::from(!entries.is_empty());
            if blocks == 1 {
                tree.insert(block_key(id, section, 0), block).unwrap();
            }
            directory.extend_from_slice(&(entries.len() as u64).to_le_bytes());
            directory.extend_from_slice(&blocks.to_le_bytes());
            if let Some((first, _)) = entries.first() {
                directory.extend_from_slice(&first.to_le_bytes());
            }
            bloom.encode(&mut directory);
        }
        tree.insert(directory_key(id), directory).unwrap();
    }

    #[test]
    fn schema_7_runs_become_files_with_the_same_entries_and_the_tree_goes() {
        let temp = tempfile::tempdir().unwrap();
        let db = sled::open(temp.path().join("db")).unwrap();
        let tree = db.open_tree(TREE).unwrap();
        write_tree_run(&tree, 4, [&[(5, b"a"), (9, b"b")], &[(7, b"r")]]);
        write_tree_run(&tree, 2, [&[(1, b"c")], &[]]);
        let dir = RunDir::open(&temp.path().join("runs")).unwrap();
        move_to_files(&db, &dir, &[4, 2]).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|n| n.as_ref() == TREE.as_bytes())
        );

        let found = |run: &Run, section, hash| {
            let mut found = Vec::new();
            run.find(section, hash, |p| {
                found.push(p.to_vec());
                Ok(false)
            })
            .unwrap();
            found
        };
        let four = Run::load(&dir, 4).unwrap();
        assert_eq!((four.events(), four.remotes()), (2, 1));
        assert_eq!(found(&four, Section::ByEvent, 9), vec![b"b".to_vec()]);
        assert_eq!(found(&four, Section::ByRemote, 7), vec![b"r".to_vec()]);
        let two = Run::load(&dir, 2).unwrap();
        assert_eq!(found(&two, Section::ByEvent, 1), vec![b"c".to_vec()]);
        assert_eq!(two.remotes(), 0);
        // Done again (an interrupted move): nothing to do, nothing lost.
        move_to_files(&db, &dir, &[4, 2]).unwrap();
        assert_eq!(Run::load(&dir, 4).unwrap().events(), 2);
    }
}
