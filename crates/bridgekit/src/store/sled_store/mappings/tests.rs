use std::time::Duration;

use ruma::{EventId, OwnedRoomId, room_id};

use super::workers::MAX_SEALING;
use super::*;
use crate::ids::{MessageId, PartId};

/// Opens sled, waiting for the lock a just-dropped handle lets go of only when its
/// background flusher ends.
pub(crate) fn open_sled(dir: &std::path::Path) -> sled::Db {
    for _ in 0..200 {
        match sled::open(dir) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("sled stayed locked")
}

/// Bytes of run directories the tests' tables keep in memory: small, so that their runs go
/// both ways.
const BUDGET: usize = 12 << 10;

fn open(dir: &std::path::Path) -> (sled::Db, MessageTables) {
    let db = open_sled(dir);
    let meta = db.open_tree("meta").unwrap();
    let hasher = Hasher::of_store(&meta).unwrap();
    let tables = MessageTables::open(&db, &meta, hasher, &dir.join("runs"), BUDGET).unwrap();
    (db, tables)
}

fn mapping(room: &RoomId, n: usize) -> MessageMapping {
    MessageMapping::new(
        room.to_owned(),
        MessageId::new(format!("remote{n}")).unwrap(),
        EventId::parse(format!("$event{n}")).unwrap(),
    )
}

fn event(n: usize) -> OwnedEventId {
    EventId::parse(format!("$event{n}")).unwrap()
}

fn settle(tables: &MessageTables) {
    assert!(
        tables.wait_until_idle(Duration::from_secs(30)),
        "background work did not end"
    );
}

#[test]
fn mappings_resolve_both_ways_through_seals_merges_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let room = room_id!("!r:example.org");
    // 40 seals: merges through two size classes.
    let n = SEAL_AT * 40 + 17;
    {
        let (_db, tables) = open(dir.path());
        for i in 0..n {
            tables.insert(&mapping(room, i)).unwrap();
        }
        settle(&tables);
        let (_, runs, _) = tables.resident();
        assert!(runs < 12, "{runs} runs after merging");
        for i in (0..n).step_by(97).chain([0, n - 1]) {
            check(&tables, room, i);
        }
    }
    // Reopened: the runs and the memtable's log tail are all there.
    let (_db, tables) = open(dir.path());
    for i in (0..n).step_by(89).chain([n - 1, n - 17]) {
        check(&tables, room, i);
    }
    assert_eq!(tables.by_event(&event(n)).unwrap(), None);
    assert_eq!(
        tables.by_remote(room, &format!("remote{n}"), "").unwrap(),
        None
    );
    // The largest runs leave their directories in their files: memory holds what fits the
    // budget, though all of them would take more.
    let (bytes, _, all) = tables.resident();
    assert!(
        bytes <= BUDGET && all > 2 * BUDGET,
        "{bytes} resident bytes of {all} for {n} mappings"
    );
    assert!(bytes > BUDGET / 4, "small runs stay in memory: {bytes}");
}

fn check(tables: &MessageTables, room: &RoomId, i: usize) {
    let by_event = tables.by_event(&event(i)).unwrap().unwrap();
    assert_eq!(by_event.remote_id.as_str(), format!("remote{i}"));
    let by_remote = tables.by_remote(room, &format!("remote{i}"), "").unwrap();
    assert_eq!(by_remote.unwrap().event_id, event(i), "mapping {i}");
    assert_eq!(tables.parts(room, &format!("remote{i}")).unwrap().len(), 1);
}

#[test]
fn both_sides_stay_unique_in_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tables) = open(dir.path());
    let room = room_id!("!r:example.org");
    tables.insert(&mapping(room, 0)).unwrap();
    // Push the first mapping out of memory into a run.
    for i in 1..SEAL_AT * 2 {
        tables.insert(&mapping(room, i)).unwrap();
    }
    settle(&tables);
    // The same mapping again: a no-op.
    tables.insert(&mapping(room, 0)).unwrap();
    // remote0 to another event; event0 to another remote message.
    let mut other_event = mapping(room, 0);
    other_event.event_id = event(999_999);
    let err = tables.insert(&other_event).unwrap_err();
    assert!(
        err.to_string().contains("already mapped to $event0"),
        "{err}"
    );
    let mut other_remote = mapping(room, 0);
    other_remote.remote_id = MessageId::from_static("elsewhere");
    let err = tables.insert(&other_remote).unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    assert_eq!(tables.by_event(&event(999_999)).unwrap(), None);
    assert_eq!(tables.by_remote(room, "elsewhere", "").unwrap(), None);
    // A second part of remote0 is a different mapping.
    let mut caption = mapping(room, 0);
    caption.part = PartId::new("caption").unwrap();
    caption.event_id = event(777_777);
    tables.insert(&caption).unwrap();
    let parts = tables.parts(room, "remote0").unwrap();
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0].part.as_str(), "");
}

#[test]
fn a_deletion_hides_the_mapping_through_merges_and_frees_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let room = room_id!("!r:example.org");
    let n = SEAL_AT * 20;
    {
        let (_db, tables) = open(dir.path());
        for i in 0..n {
            tables.insert(&mapping(room, i)).unwrap();
        }
        settle(&tables);
        for i in (0..n).step_by(10) {
            assert_eq!(tables.delete(&event(i)).unwrap(), Some(mapping(room, i)));
        }
        assert_eq!(tables.delete(&event(0)).unwrap(), None);
        // Enough more to seal the deletions and merge them down to the oldest run.
        for i in n..n * 2 {
            tables.insert(&mapping(room, i)).unwrap();
        }
        settle(&tables);
    }
    let (_db, tables) = open(dir.path());
    for i in (0..n).step_by(10) {
        assert_eq!(tables.by_event(&event(i)).unwrap(), None);
        assert_eq!(
            tables.by_remote(room, &format!("remote{i}"), "").unwrap(),
            None
        );
        assert!(
            tables
                .parts(room, &format!("remote{i}"))
                .unwrap()
                .is_empty()
        );
    }
    check(&tables, room, 11);
    // Both sides are free again: remote0 can go to a new event, event10 to a new message.
    let mut again = mapping(room, 0);
    again.event_id = event(10);
    tables.insert(&again).unwrap();
    assert_eq!(
        tables.by_remote(room, "remote0", "").unwrap(),
        Some(again.clone())
    );
    assert_eq!(tables.by_event(&event(10)).unwrap(), Some(again));
    assert_eq!(tables.by_remote(room, "remote10", "").unwrap(), None);
}

#[test]
fn export_yields_every_live_mapping_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_db, tables) = open(dir.path());
    let rooms: Vec<OwnedRoomId> = (0..3)
        .map(|r| format!("!r{r}:example.org").try_into().unwrap())
        .collect();
    let n = SEAL_AT * 9 + 5;
    for i in 0..n {
        tables.insert(&mapping(&rooms[i % 3], i)).unwrap();
    }
    settle(&tables);
    // Deleted in a newer layer than the one holding the mapping; one re-mapped after.
    for i in (0..n).step_by(7) {
        tables.delete(&event(i)).unwrap();
    }
    let mut moved = mapping(&rooms[0], 0);
    moved.remote_id = MessageId::from_static("moved");
    tables.insert(&moved).unwrap();
    let mut export = tables.export();
    let mut seen = std::collections::HashMap::new();
    loop {
        let page = export.next_page(1000).unwrap();
        if page.is_empty() {
            break;
        }
        for m in page {
            assert!(
                seen.insert(m.event_id.clone(), m).is_none(),
                "a mapping twice"
            );
        }
    }
    let live = n - n.div_ceil(7) + 1;
    assert_eq!(seen.len(), live);
    assert_eq!(seen[&event(0)], moved);
    assert!(!seen.contains_key(&event(7)));
    assert_eq!(seen[&event(8)], mapping(&rooms[2], 8));
}

#[test]
fn what_an_interrupted_seal_or_trim_left_is_cleaned_up_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let room = room_id!("!r:example.org");
    let n = SEAL_AT * 3 + 3;
    {
        let (_db, tables) = open(dir.path());
        for i in 0..n {
            tables.insert(&mapping(room, i)).unwrap();
        }
        settle(&tables);
        let shared = &tables.shared;
        // A run being written when the process died: allocated (doomed), half written.
        let id = shared.allocate_run().unwrap();
        let mut half = run::RunWriter::new(&shared.runs_dir, id, 10, 10).unwrap();
        half.push(1, b"{}").unwrap();
        std::mem::forget(half); // the process died: nothing removed its partial file
        assert!(shared.runs_dir.partial(id).exists());
        // And a finished file the manifest never named (its seal died before the manifest).
        std::fs::write(shared.runs_dir.finished(id + 100), b"stray").unwrap();
        // And a log record the sealer had not trimmed yet.
        let cut = shared.manifest().log_cut;
        shared
            .log
            .insert(cut.to_be_bytes(), to_json(&mapping(room, 123_456)))
            .unwrap();
    }
    let (_db, tables) = open(dir.path());
    let shared = &tables.shared;
    assert!(shared.manifest().doomed.is_empty());
    let id = shared.manifest().next_run - 1;
    assert!(!shared.runs_dir.partial(id).exists());
    assert!(!shared.runs_dir.finished(id + 100).exists());
    let live = shared.manifest().live.clone();
    assert!(!live.is_empty());
    assert_eq!(
        std::fs::read_dir(dir.path().join("runs")).unwrap().count(),
        live.len(),
        "only the live runs' files are left"
    );
    // The untrimmed record was already in a run: dropped, not replayed.
    assert!(
        shared
            .log
            .iter()
            .keys()
            .all(|k| decode_u64(&k.unwrap()) > shared.manifest().log_cut)
    );
    assert_eq!(tables.by_event(&event(123_456)).unwrap(), None);
    for i in [0, n / 2, n - 1] {
        check(&tables, room, i);
    }
}

#[test]
fn a_failing_sealer_fails_writes_visibly_after_a_bound_and_they_resume_when_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let room = room_id!("!r:example.org");
    let (_db, tables) = open(dir.path());
    tables
        .shared
        .fail_seals
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // Fill the memtables the sealer may fall behind by, then one more write must wait for
    // SEAL_STALL_LIMIT and fail with the sealer's error instead of blocking for ever.
    let mut written = 0;
    let error = loop {
        match tables.insert(&mapping(room, written)) {
            Ok(()) => written += 1,
            Err(error) => break error,
        }
        assert!(
            written <= SEAL_AT * (MAX_SEALING + 2),
            "writes never stalled"
        );
    };
    assert!(
        written >= SEAL_AT * MAX_SEALING,
        "stalled early, after {written}"
    );
    let text = error.to_string();
    assert!(
        text.contains("injected seal failure") && text.contains("not made"),
        "{text}"
    );
    assert_eq!(
        tables.by_event(&event(written)).unwrap(),
        None,
        "the failed write made nothing"
    );
    // The sealer retries on its own; writes go through again.
    tables
        .shared
        .fail_seals
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tables.insert(&mapping(room, written)).unwrap();
    settle(&tables);
    for i in 0..=written {
        assert_eq!(
            tables.by_event(&event(i)).unwrap(),
            Some(mapping(room, i)),
            "{i}"
        );
    }
    assert!(tables.shared.seal_error.lock().unwrap().is_none());
}
