//! Which runs make up the mapping tables, saved as one sled value so that every change to
//! the set (a seal, a merge, a deletion) takes effect in one write.

use sled::Tree;

use super::corrupt_run;
use crate::store::StoreError;

const KEY: &str = "mapping_runs";

/// The saved state of the tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Manifest {
    /// Log records up to this sequence are in runs; the log keeps only later ones.
    pub(super) log_cut: u64,
    /// The next run ID to hand out.
    pub(super) next_run: u64,
    /// The runs lookups read, newest first.
    pub(super) live: Vec<u64>,
    /// Runs being written or merged away: deleted at the next chance (at the latest when
    /// the store opens), never read.
    pub(super) doomed: Vec<u64>,
}

impl Manifest {
    /// The saved manifest, or an empty one for a store that has none yet.
    pub(super) fn load(meta: &Tree) -> Result<Self, StoreError> {
        let Some(bytes) = meta.get(KEY)? else {
            return Ok(Self::default());
        };
        let mut words = bytes
            .chunks(8)
            .map(|w| {
                w.try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| corrupt_run("a manifest of odd length"))
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut next = || {
            words
                .next()
                .ok_or_else(|| corrupt_run("a truncated manifest"))
        };
        let log_cut = next()?;
        let next_run = next()?;
        let list = |next: &mut dyn FnMut() -> Result<u64, StoreError>| {
            let n = next()?;
            (0..n).map(|_| next()).collect::<Result<Vec<_>, _>>()
        };
        let live = list(&mut next)?;
        let doomed = list(&mut next)?;
        Ok(Self {
            log_cut,
            next_run,
            live,
            doomed,
        })
    }

    pub(super) fn save(&self, meta: &Tree) -> Result<(), StoreError> {
        let mut words = vec![self.log_cut, self.next_run, self.live.len() as u64];
        words.extend(&self.live);
        words.push(self.doomed.len() as u64);
        words.extend(&self.doomed);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        meta.insert(KEY, bytes)?;
        Ok(())
    }

    /// Applies `edit` to a copy, saves the copy, and only then takes it, so a failed save
    /// leaves the manifest in memory as it is on disk.
    pub(super) fn update<T>(
        &mut self,
        meta: &Tree,
        edit: impl FnOnce(&mut Self) -> T,
    ) -> Result<T, StoreError> {
        let mut next = self.clone();
        let out = edit(&mut next);
        next.save(meta)?;
        *self = next;
        Ok(out)
    }

    /// Hands out a run ID, recorded as doomed until the run is finished and made live.
    pub(super) fn allocate(&mut self) -> u64 {
        let id = self.next_run;
        self.next_run += 1;
        self.doomed.push(id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_as_saved() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(Manifest::load(&meta).unwrap(), Manifest::default());
        let mut manifest = Manifest {
            log_cut: 99,
            next_run: 5,
            live: vec![4, 2, 1],
            doomed: vec![],
        };
        assert_eq!(manifest.allocate(), 5);
        manifest.save(&meta).unwrap();
        let back = Manifest::load(&meta).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.doomed, [5]);
        meta.insert(KEY, &[1u8; 12][..]).unwrap();
        assert!(Manifest::load(&meta).is_err());
    }
}
