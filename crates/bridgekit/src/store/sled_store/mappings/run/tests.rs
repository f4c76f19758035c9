use super::*;

/// Writes run 3 with `events` by-event entries (hashes 0, 10, 20, …, two payloads at
/// every 100th) and one by-remote entry, in file version `version`, and checks that the
/// run as written, as loaded and placed either way finds every entry and no absent one,
/// and streams them in order; returns the loaded run.
fn write_and_check(dir: &RunDir, events: u64, version: u8) -> Run {
    let mut writer = RunWriter::new(dir, 3, events as usize, 10).unwrap();
    if version == 1 {
        writer = writer.version_1();
    }
    for n in 0..events {
        writer.push(n * 10, format!("e{n}").as_bytes()).unwrap();
        if n % 100 == 0 {
            writer.push(n * 10, format!("e{n}b").as_bytes()).unwrap();
        }
    }
    writer.start_remote_section().unwrap();
    writer.push(7, b"r7").unwrap();
    let written = writer.finish().unwrap();
    assert_eq!(written.is_resident(), version == 1);
    let run = Run::load(dir, 3).unwrap();
    assert!(run.blocks(Section::ByEvent) > 1);
    assert_eq!(run.events(), written.events());
    let flipped = [run.placed(true).unwrap(), written.placed(true).unwrap()];
    for run in [&run, &written, &flipped[0], &flipped[1]] {
        for n in (0..events).step_by(37).chain([events - 1, events / 2]) {
            let mut found = Vec::new();
            run.find(Section::ByEvent, n * 10, |p| {
                found.push(p.to_vec());
                Ok(false)
            })
            .unwrap();
            let mut want = vec![format!("e{n}").into_bytes()];
            if n % 100 == 0 {
                want.push(format!("e{n}b").into_bytes());
            }
            assert_eq!(found, want, "hash {}", n * 10);
        }
        let mut none = 0;
        for absent in [15, events * 10 + 5, u64::MAX] {
            run.find(Section::ByEvent, absent, |_| {
                none += 1;
                Ok(false)
            })
            .unwrap();
        }
        run.find(Section::ByRemote, 10, |_| {
            none += 1;
            Ok(false)
        })
        .unwrap();
        assert_eq!(none, 0);
        let mut remote = Vec::new();
        run.find(Section::ByRemote, 7, |p| {
            remote.push(p.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(remote, [b"r7".to_vec()]);
        let all: Vec<_> = SectionEntries::new(
            Arc::new(run.placed(run.is_resident()).unwrap()),
            Section::ByEvent,
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(all.len() as u64, events + events.div_ceil(100));
        assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));
    }
    assert_eq!(flipped[1].resident_bytes(), flipped[1].directory_bytes());
    run
}

#[test]
fn a_run_finds_every_entry_wherever_its_directory_is() {
    let temp = tempfile::tempdir().unwrap();
    let dir = RunDir::open(temp.path()).unwrap();
    let run = write_and_check(&dir, 5_000, 2);
    assert!(run.can_leave_memory() && !run.is_resident());
    assert!(run.placed(true).unwrap().is_resident());
    assert!(run.blocks(Section::ByEvent) > GROUP * 3);
    // What stays in memory: a first hash per group, not a filter and a directory.
    let Index::OnDisk { sparse, .. } = &run.sections[0].index else {
        unreachable!("on disk")
    };
    assert_eq!(sparse.len(), run.blocks(Section::ByEvent).div_ceil(GROUP));
    assert!(run.resident_bytes() * 20 < run.directory_bytes());

    dir.remove(3).unwrap();
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
    assert!(Run::load(&dir, 3).is_err());
}

#[test]
fn a_version_1_run_reads_as_written_and_stays_in_memory() {
    let temp = tempfile::tempdir().unwrap();
    let dir = RunDir::open(temp.path()).unwrap();
    let run = write_and_check(&dir, 2_000, 1);
    // Its spread filter cannot be checked from one line.
    assert!(!run.can_leave_memory());
    assert!(run.is_resident() && run.placed(false).unwrap().is_resident());
    let mut bytes = std::fs::read(dir.finished(3)).unwrap();
    let n = bytes.len();
    bytes[n - 1] = 9;
    std::fs::write(dir.finished(3), &bytes).unwrap();
    assert!(Run::load(&dir, 3).is_err(), "an unknown version");
}
