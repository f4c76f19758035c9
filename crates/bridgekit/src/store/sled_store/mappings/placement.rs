//! Which runs keep their directories in memory: the smallest, while they fit in a budget
//! of an eighth of the store's cache ([`directory_budget`]); the largest runs' directories
//! stay in their files.
//!
//! Every lookup probes every run, whatever its size, and a directory left in its file
//! costs a probe a read from the page cache; a directory's memory grows with its run.
//! So the few largest runs go to disk first: the store's memory stops growing with its
//! history at the budget, and a store under it (at the default 16 MiB cache, about 580,000
//! mappings) reads no directory from disk at all. A larger cache buys fewer reads.

use std::sync::Arc;

use super::Shared;
use super::run::Run;
use crate::store::StoreError;

/// Bytes of run directories kept in memory (about 3.6 per mapping) for a store whose
/// page cache is `cache_bytes`.
pub(crate) fn directory_budget(cache_bytes: u64) -> usize {
    usize::try_from(cache_bytes / 8).unwrap_or(usize::MAX)
}

/// For each of `runs`, whether its directories should be in memory: version-1 runs
/// always (they cannot leave it), then the others smallest first while the total fits in
/// `budget`.
pub(super) fn plan(runs: &[Arc<Run>], budget: usize) -> Vec<bool> {
    let mut resident: Vec<bool> = runs.iter().map(|r| !r.can_leave_memory()).collect();
    let mut used: usize = runs
        .iter()
        .filter(|r| !r.can_leave_memory())
        .map(|r| r.directory_bytes())
        .sum();
    let mut order: Vec<usize> = (0..runs.len())
        .filter(|&n| runs[n].can_leave_memory())
        .collect();
    order.sort_by_key(|&n| runs[n].directory_bytes());
    for n in order {
        let bytes = runs[n].directory_bytes();
        if used + bytes > budget {
            break;
        }
        used += bytes;
        resident[n] = true;
    }
    resident
}

/// Puts every live run's directories where [`plan`] says. Called by the compactor (the
/// only thread that replaces runs, so none is merged away meanwhile) and on open.
pub(super) fn rebalance(shared: &Shared) -> Result<(), StoreError> {
    let runs = shared.layers().runs.clone();
    let mut moved = Vec::new();
    for (run, resident) in runs.iter().zip(plan(&runs, shared.directory_budget)) {
        if run.is_resident() != resident {
            moved.push(Arc::new(run.placed(resident)?));
        }
    }
    if moved.is_empty() {
        return Ok(());
    }
    let mut layers = shared.layers_mut();
    let mut live: Vec<Arc<Run>> = layers.runs.iter().cloned().collect();
    for run in moved {
        if let Some(slot) = live.iter_mut().find(|r| r.id() == run.id()) {
            *slot = run;
        }
    }
    layers.runs = Arc::new(live);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::files::RunDir;
    use super::super::run::RunWriter;
    use super::*;

    fn run(dir: &RunDir, id: u64, entries: u64, version_1: bool) -> Arc<Run> {
        let mut writer = RunWriter::new(dir, id, entries as usize, 1).unwrap();
        if version_1 {
            writer = writer.version_1();
        }
        for n in 0..entries {
            writer.push(n, b"payload").unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn the_smallest_runs_stay_in_memory_while_they_fit_and_version_1_always() {
        let temp = tempfile::tempdir().unwrap();
        let dir = RunDir::open(temp.path()).unwrap();
        let runs = vec![
            run(&dir, 1, 5_000, false),
            run(&dir, 2, 50, false),
            run(&dir, 3, 2_000, true),
            run(&dir, 4, 500, false),
        ];
        let bytes: Vec<usize> = runs.iter().map(|r| r.directory_bytes()).collect();
        assert!(bytes[1] < bytes[3] && bytes[3] < bytes[0]);
        // Room for version 1's and the two smallest others, not the largest.
        let budget = bytes[2] + bytes[1] + bytes[3] + bytes[0] / 2;
        assert_eq!(plan(&runs, budget), [false, true, true, true]);
        assert_eq!(plan(&runs, usize::MAX), [true; 4]);
        // Version 1 stays even over the budget; the others go.
        assert_eq!(plan(&runs, 0), [false, false, true, false]);
        // The smallest first: a budget one byte short of both leaves only the smallest.
        assert_eq!(
            plan(&runs, bytes[2] + bytes[1] + bytes[3] - 1),
            [false, true, true, false]
        );
    }
}
