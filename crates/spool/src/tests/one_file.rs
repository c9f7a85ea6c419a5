//! The one-file layout (`<id>.msg`, later `<id>.state`) and its coexistence
//! with the two-file layout of earlier versions, which an upgrade must still
//! deliver.

use std::io::{Read, Seek, SeekFrom};
use std::thread;

use super::*;

#[test]
fn a_message_is_one_file_holding_envelope_and_data() {
    let (_dir, spool) = new_spool();
    let data = b"Subject: one file\r\n\r\nbody\r\n";
    let envelope = stored(&spool, data);
    assert_eq!(names_in(spool.dir()), vec![format!("{}.msg", envelope.id)]);
    assert_eq!(
        spool.read_envelope(&envelope.id).ok(),
        Some(envelope.clone())
    );
    assert_eq!(spool.read_data(&envelope.id).ok(), Some(data.to_vec()));
    let size = spool.data_size(&envelope.id).expect("size");
    assert_eq!(size, data.len() as u64);
    // Written through a temp file (no spares: relay-in's backup spool keeps
    // none), the message is also the file's last `size` bytes (how relay-in's
    // backup delivery reads it).
    let (mut file, _) = spool.open_data(&envelope.id).expect("open");
    file.seek(SeekFrom::End(-(size as i64))).expect("seek");
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).expect("read");
    assert_eq!(tail, data);
    assert_eq!(
        spool
            .read_headers(&envelope.id, MAX_SHOWN_HEADER_BYTES)
            .ok(),
        Some(b"Subject: one file\r\n".to_vec())
    );
}

#[test]
fn a_damaged_message_file_is_set_aside_and_the_others_still_load() {
    let (_dir, spool) = new_spool();
    let good = stored(&spool, b"good");
    let no_header = stored(&spool, b"no header");
    let truncated = stored(&spool, b"truncated");
    fs::write(
        spool.dir().join(format!("{}.msg", no_header.id)),
        b"Subject: no header\r\n\r\n",
    )
    .expect("write");
    let path = spool.dir().join(format!("{}.msg", truncated.id));
    let bytes = fs::read(&path).expect("read");
    fs::write(&path, &bytes[..60]).expect("truncate");

    let report = spool.load().expect("load");
    assert_eq!(loaded_ids(&report), vec![good.id]);
    assert_eq!(report.set_aside.len(), 2, "{:?}", report.set_aside);
    assert!(report.orphan_data_removed.is_empty());
    for bad in [&no_header, &truncated] {
        let aside = spool.dir().join(format!("{}.msg.corrupt", bad.id));
        assert!(aside.exists(), "{} missing", aside.display());
    }
}

#[test]
fn a_state_left_by_an_interrupted_removal_is_deleted_at_load() {
    let (_dir, spool) = new_spool();
    let kept = stored(&spool, b"kept");
    let mut removed = stored(&spool, b"removed");
    removed.recipients[0].attempts = 1;
    spool.update(&removed).expect("update");
    // A crash after the synced unlink of the message file, before the
    // unsynced one of its state.
    fs::remove_file(spool.dir().join(format!("{}.msg", removed.id))).expect("remove");

    let listing = spool.list().expect("list");
    assert_eq!(listing.entries.len(), 1);
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    assert!(
        spool
            .read_entry(&removed.id)
            .is_err_and(|error| error.is_gone())
    );
    let report = spool.load().expect("load");
    assert_eq!(loaded_ids(&report), vec![kept.id.clone()]);
    assert_eq!(report.leftover_states_removed, 1);
    assert!(report.set_aside.is_empty());
    assert_eq!(names_in(spool.dir()), vec![format!("{}.msg", kept.id)]);
}

#[test]
fn the_latest_state_wins_over_the_envelope_written_at_intake() {
    let (_dir, spool) = new_spool();
    let mut envelope = stored(&spool, b"data");
    for attempt in 1..=3 {
        envelope.recipients[0].attempts = attempt;
        spool.update(&envelope).expect("update");
    }
    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(report.messages[0].envelope, envelope);
    assert_eq!(report.messages[0].size, 4);
}

#[test]
fn a_two_file_message_is_updated_delivered_and_removed_in_its_layout() {
    let (_dir, spool) = new_spool();
    let data = b"Subject: from before the upgrade\r\n\r\nbody\r\n";
    let mut old = stored_in_two_files(&spool, data);
    let new = stored(&spool, b"new");
    let report = spool.load().expect("load");
    let mut both = vec![old.id.clone(), new.id.clone()];
    both.sort();
    assert_eq!(loaded_ids(&report), both);
    assert_eq!(spool.data_size(&old.id).ok(), Some(data.len() as u64));

    old.recipients[0].attempts = 1;
    spool.update(&old).expect("update");
    let mut expected = vec![
        format!("{}.eml", old.id),
        format!("{}.json", old.id),
        format!("{}.msg", new.id),
    ];
    expected.sort();
    assert_eq!(names_in(spool.dir()), expected);
    assert_eq!(spool.read_envelope(&old.id).ok(), Some(old.clone()));
    assert_eq!(spool.read_data(&old.id).ok(), Some(data.to_vec()));
    spool.request_bounce(&old.id).expect("bounce request");
    assert!(spool.bounce_requested(&old.id).expect("marker"));

    spool.remove(&old.id).expect("remove");
    assert_eq!(names_in(spool.dir()), vec![format!("{}.msg", new.id)]);
    assert!(
        spool
            .read_envelope(&old.id)
            .is_err_and(|error| error.is_gone())
    );
}

#[test]
fn concurrent_intakes_sharing_directory_syncs_all_land() {
    let (_dir, spool) = new_spool();
    let stored_ids: Vec<QueueId> = thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                let spool = spool.clone();
                scope.spawn(move || {
                    (0..25)
                        .map(|_| stored(&spool, b"concurrent").id)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    });
    let mut expected = stored_ids;
    expected.sort();
    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(loaded_ids(&report), expected);
}
