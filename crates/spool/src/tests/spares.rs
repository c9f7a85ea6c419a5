//! Messages written into spare files: what the intake, the delivery, the CLI
//! and the start-up load see, and what a crash in the middle leaves.

use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

use super::*;

/// A spool with `count` spares made as the refill thread makes them.
fn spool_with_spares(count: usize) -> (tempfile::TempDir, Spool) {
    let (dir, spool) = new_spool();
    let made = crate::spares::make_spares(spool.dir(), count).expect("make spares");
    spool.spares.adopt(made);
    (dir, spool)
}

/// A message stored the way relay-out's intake does: id from the spool.
fn stored_in_spare(spool: &Spool, data: &[u8]) -> Envelope {
    let id = spool.new_id();
    let path = spool.dir().join(format!("{id}.msg"));
    assert!(is_spare_file(&path), "the id names a spare");
    let envelope = sample(id);
    spool.store(&envelope, data).expect("store");
    assert!(!is_spare_file(&path));
    envelope
}

fn message_path(spool: &Spool, id: &QueueId) -> std::path::PathBuf {
    spool.dir().join(format!("{id}.msg"))
}

#[test]
fn a_message_in_a_spare_reads_back_exactly_with_the_room_behind_it() {
    let (_dir, spool) = spool_with_spares(2);
    let data = b"Subject: in a spare\r\n\r\nbody\r\n";
    let envelope = stored_in_spare(&spool, data);
    let path = message_path(&spool, &envelope.id);
    assert_eq!(
        fs::metadata(&path).expect("stat").len(),
        SPARE_BYTES,
        "written in place: the file kept its size"
    );
    assert_eq!(spool.read_data(&envelope.id).ok(), Some(data.to_vec()));
    assert_eq!(spool.data_size(&envelope.id).ok(), Some(data.len() as u64));
    assert_eq!(
        spool.read_envelope(&envelope.id).ok(),
        Some(envelope.clone())
    );
    assert_eq!(
        spool
            .read_headers(&envelope.id, MAX_SHOWN_HEADER_BYTES)
            .ok(),
        Some(b"Subject: in a spare\r\n".to_vec())
    );
    assert_eq!(
        spool.read_start(&envelope.id, 1 << 20).ok(),
        Some(data.to_vec())
    );
    let (mut file, len) = spool.open_data(&envelope.id).expect("open");
    let mut first = vec![0u8; len as usize];
    file.read_exact(&mut first).expect("read");
    assert_eq!(first, data);
}

#[test]
fn a_message_bigger_than_a_spare_grows_it() {
    let (_dir, spool) = spool_with_spares(1);
    let data: Vec<u8> = (0..300_000u32).map(|n| b'a' + (n % 26) as u8).collect();
    let envelope = stored_in_spare(&spool, &data);
    assert_eq!(spool.read_data(&envelope.id).ok(), Some(data.clone()));
    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(loaded_ids(&report), vec![envelope.id]);
    assert_eq!(report.messages[0].size, data.len() as u64);
}

#[test]
fn spares_are_not_messages_to_list_show_or_load_and_are_kept_for_the_next_run() {
    let (_dir, spool) = spool_with_spares(3);
    let envelope = stored_in_spare(&spool, b"one");
    let listing = spool.list().expect("list");
    let listed: Vec<_> = listing
        .entries
        .iter()
        .map(|e| e.envelope.id.clone())
        .collect();
    assert_eq!(listed, vec![envelope.id.clone()]);
    assert!(listing.problems.is_empty(), "{:?}", listing.problems);
    let spare = spool.new_id();
    assert!(spool.read_entry(&spare).is_err_and(|error| error.is_gone()));
    assert!(spool.open_data(&spare).is_err_and(|error| error.is_gone()));

    let next_run = open(spool.dir()).expect("reopen");
    let report = next_run.load().expect("load");
    assert_eq!(loaded_ids(&report), vec![envelope.id]);
    assert_eq!(
        report.spares_kept, 2,
        "the taken-but-unused spare is one of them"
    );
    assert!(report.set_aside.is_empty() && report.cut_short_removed.is_empty());
    assert_eq!(next_run.spares_ready(), 2);
}

#[test]
fn a_write_into_a_spare_cut_short_by_a_crash_is_removed_at_load() {
    let (_dir, spool) = spool_with_spares(3);
    let kept = stored_in_spare(&spool, b"complete");
    // A crash after the header reached the disk but before the rest did:
    // the checksum no longer matches.
    let torn = stored_in_spare(&spool, b"Subject: torn\r\n\r\nthis part was lost\r\n");
    let path = message_path(&spool, &torn.id);
    let mut bytes = fs::read(&path).expect("read");
    let end = bytes.iter().rposition(|&byte| byte != 0).expect("content");
    bytes[end - 5..=end].fill(0);
    fs::write(&path, &bytes).expect("write");
    // A crash before the header: zeros in front, some message behind, and a
    // message bigger than the spare so the size changed too.
    let grown = spool.new_id();
    let grown_path = message_path(&spool, &grown);
    let mut partial = vec![0u8; SPARE_BYTES as usize + 100];
    partial[200..300].fill(b'x');
    fs::write(&grown_path, &partial).expect("write");

    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(loaded_ids(&report), vec![kept.id]);
    let mut removed = report.cut_short_removed.clone();
    removed.sort();
    let mut expected = vec![torn.id, grown];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(report.set_aside.is_empty(), "{:?}", report.set_aside);
    assert!(!path.exists() && !grown_path.exists());
    assert_eq!(report.spares_kept, 0);
}

#[test]
fn a_message_in_a_spare_is_updated_and_removed_like_any_other() {
    let (_dir, spool) = spool_with_spares(1);
    let mut envelope = stored_in_spare(&spool, b"data");
    envelope.recipients[0].attempts = 2;
    spool.update(&envelope).expect("update");
    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(report.messages[0].envelope.recipients[0].attempts, 2);
    spool.remove(&envelope.id).expect("remove");
    assert!(
        names_in(spool.dir()).is_empty(),
        "{:?}",
        names_in(spool.dir())
    );
}

#[test]
fn without_spares_the_intake_writes_a_new_file() {
    let (_dir, spool) = new_spool();
    let id = spool.new_id();
    assert!(!message_path(&spool, &id).exists(), "no spare was made");
    let envelope = sample(id);
    spool.store(&envelope, b"plain").expect("store");
    assert_eq!(spool.read_data(&envelope.id).ok(), Some(b"plain".to_vec()));
    assert_eq!(
        fs::metadata(message_path(&spool, &envelope.id))
            .expect("stat")
            .len() as usize,
        fs::read(message_path(&spool, &envelope.id))
            .expect("read")
            .len()
    );
}

#[test]
fn the_refill_thread_keeps_the_pool_topped_up() {
    let (_dir, spool) = new_spool();
    spool.keep_spares().expect("start");
    let deadline = Instant::now() + Duration::from_secs(20);
    let wait_for = |wanted: usize| {
        while spool.spares_ready() < wanted {
            assert!(
                Instant::now() < deadline,
                "only {} spares",
                spool.spares_ready()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(SPARES_KEPT);
    let taken: Vec<_> = (0..SPARES_KEPT / 2 + 1).map(|_| spool.new_id()).collect();
    assert!(
        taken.windows(2).all(|pair| pair[0] < pair[1]),
        "ids in order"
    );
    // Below half: the thread makes more.
    wait_for(SPARES_KEPT);
    let spares = names_in(spool.dir()).len();
    assert_eq!(spares, SPARES_KEPT + taken.len());
}

#[test]
fn a_spare_deleted_before_its_message_came_gets_a_new_file() {
    let (_dir, spool) = spool_with_spares(1);
    let id = spool.new_id();
    fs::remove_file(message_path(&spool, &id)).expect("operator deletes it");
    let envelope = sample(id);
    spool.store(&envelope, b"still queued").expect("store");
    assert_eq!(
        spool.read_data(&envelope.id).ok(),
        Some(b"still queued".to_vec())
    );
}

#[test]
fn random_damage_to_a_message_in_a_spare_never_stops_the_load() {
    let (_dir, spool) = spool_with_spares(41);
    let good = stored_in_spare(&spool, b"good");
    let mut damage = super::Damage::new(0x5a4e_5a4e_0000_0019);
    for round in 0..40 {
        let victim = stored_in_spare(&spool, b"Subject: victim\r\n\r\nbody\r\n");
        let path = message_path(&spool, &victim.id);
        let mut bytes = fs::read(&path).expect("read");
        // Damage where it matters: header, envelope and message.
        let content_end = bytes.iter().rposition(|&byte| byte != 0).unwrap_or(0) + 1;
        let mut content = bytes[..content_end].to_vec();
        damage.mutate(&mut content);
        bytes.splice(..content_end, content);
        fs::write(&path, &bytes).expect("write");
        let report = spool.load().expect("load");
        assert!(loaded_ids(&report).contains(&good.id), "round {round}");
        spool.remove(&victim.id).expect("remove");
    }
}

#[test]
fn an_empty_message_file_left_by_a_crash_while_making_spares_is_removed() {
    let (_dir, spool) = new_spool();
    let id = QueueId::generate();
    let path = message_path(&spool, &id);
    fs::write(&path, b"").expect("create");
    let report = spool.load().expect("load");
    assert_eq!(report.cut_short_removed, vec![id]);
    assert!(report.set_aside.is_empty(), "{:?}", report.set_aside);
    assert!(!path.exists());
}
