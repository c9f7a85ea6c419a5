//! Behaviour of the spool on a real (temporary) directory: crash leftovers,
//! corruption, operator actions racing the daemon, storage failures.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::envelope::tests::sample;
use super::*;

mod one_file;
mod spares;

/// The daemon name relay-out opens its spool with (its PID file is
/// `relay-out.pid`).
const DAEMON: &str = "relay-out";

/// Opens a spool as relay-out does.
fn open(dir: &Path) -> Result<Spool, SpoolError> {
    Spool::open(dir, DAEMON)
}

fn new_spool() -> (tempfile::TempDir, Spool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = open(&dir.path().join("queue")).expect("open spool");
    (dir, spool)
}

fn stored(spool: &Spool, data: &[u8]) -> Envelope {
    let envelope = sample(QueueId::generate());
    spool.store(&envelope, data).expect("store");
    envelope
}

/// A message as versions before the one-file layout stored it: `<id>.eml`
/// and `<id>.json` (durability does not matter here).
fn stored_in_two_files(spool: &Spool, data: &[u8]) -> Envelope {
    let envelope = sample(QueueId::generate());
    fs::write(spool.dir().join(format!("{}.eml", envelope.id)), data).expect("write data");
    fs::write(
        spool.dir().join(format!("{}.json", envelope.id)),
        envelope.encode(),
    )
    .expect("write envelope");
    envelope
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

fn loaded_ids(report: &LoadReport) -> Vec<QueueId> {
    report
        .messages
        .iter()
        .map(|entry| entry.envelope.id.clone())
        .collect()
}

#[test]
fn open_creates_a_private_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let queue = dir.path().join("spool/postern/queue");
    open(&queue).expect("open");
    let mode = fs::metadata(&queue).expect("metadata").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    open(&queue).expect("reopening an existing queue");
}

#[test]
fn stored_messages_load_back_in_arrival_order() {
    let (_dir, spool) = new_spool();
    let first = stored(&spool, b"Subject: one\r\n\r\nbody one\r\n");
    std::thread::sleep(Duration::from_millis(2));
    let second = stored(&spool, b"Subject: two\r\n\r\nbody two, longer\r\n");

    let reopened = open(spool.dir()).expect("reopen");
    let report = reopened.load().expect("load");
    assert_eq!(
        loaded_ids(&report),
        vec![first.id.clone(), second.id.clone()]
    );
    assert_eq!(report.messages[0].envelope, first);
    assert_eq!(report.messages[0].size, 26);
    assert!(!report.messages[0].bounce_requested);
    assert!(report.set_aside.is_empty() && report.orphan_data_removed.is_empty());
    assert_eq!(report.temp_files_removed, 0);
    let data = reopened.read_data(&second.id).expect("data");
    assert_eq!(data, b"Subject: two\r\n\r\nbody two, longer\r\n");
    assert_eq!(reopened.read_envelope(&second.id).ok(), Some(second));
}

#[test]
fn store_from_streams_and_reports_the_size() {
    let (_dir, spool) = new_spool();
    let envelope = sample(QueueId::generate());
    let big = vec![b'x'; 300_000];
    let size = spool.store_from(&envelope, &mut &big[..]).expect("store");
    assert_eq!(size, 300_000);
    assert_eq!(spool.data_size(&envelope.id).ok(), Some(300_000));
}

#[test]
fn store_refuses_to_overwrite_an_existing_message() {
    let (_dir, spool) = new_spool();
    let envelope = stored(&spool, b"original");
    let outcome = spool.store(&envelope, b"impostor");
    assert!(matches!(outcome, Err(SpoolError::Io { .. })), "{outcome:?}");
    assert_eq!(
        spool.read_data(&envelope.id).ok(),
        Some(b"original".to_vec())
    );
}

#[test]
fn leftover_temp_files_are_deleted_at_load() {
    let (_dir, spool) = new_spool();
    let kept = stored(&spool, b"kept");
    fs::write(
        spool.dir().join("tmp.01hf0000000000000000.eml.123.0"),
        b"half",
    )
    .expect("write");
    fs::write(
        spool.dir().join("tmp.01hf0000000000000000.json.123.1"),
        b"{",
    )
    .expect("write");
    let report = spool.load().expect("load");
    assert_eq!(report.temp_files_removed, 2);
    assert_eq!(loaded_ids(&report), vec![kept.id.clone()]);
    assert_eq!(names_in(spool.dir()), vec![format!("{}.msg", kept.id)]);
}

#[test]
fn data_without_envelope_is_an_unacknowledged_intake_and_is_deleted() {
    let (_dir, spool) = new_spool();
    let kept = stored(&spool, b"kept");
    let orphan = QueueId::generate();
    fs::write(spool.dir().join(format!("{orphan}.eml")), b"never got 250").expect("write");
    let report = spool.load().expect("load");
    assert_eq!(report.orphan_data_removed, vec![orphan.clone()]);
    assert_eq!(loaded_ids(&report), vec![kept.id]);
    assert!(matches!(spool.read_data(&orphan), Err(SpoolError::Gone(_))));
}

#[test]
fn corrupt_envelopes_are_set_aside_and_the_others_still_load() {
    let (_dir, spool) = new_spool();
    let good = stored_in_two_files(&spool, b"good");
    let truncated = stored_in_two_files(&spool, b"truncated");
    let garbage = stored_in_two_files(&spool, b"garbage");
    let wrong_id = stored_in_two_files(&spool, b"wrong id");
    let truncated_path = spool.dir().join(format!("{}.json", truncated.id));
    let bytes = fs::read(&truncated_path).expect("read");
    fs::write(&truncated_path, &bytes[..bytes.len() / 3]).expect("truncate");
    fs::write(
        spool.dir().join(format!("{}.json", garbage.id)),
        b"\x00\xff\x13garbage",
    )
    .expect("write");
    // A copy of another message's envelope under this name.
    fs::copy(
        spool.dir().join(format!("{}.json", good.id)),
        spool.dir().join(format!("{}.json", wrong_id.id)),
    )
    .expect("copy");

    let report = spool.load().expect("a corrupt file must not stop the load");
    assert_eq!(loaded_ids(&report), vec![good.id.clone()]);
    assert_eq!(report.set_aside.len(), 6, "{:?}", report.set_aside);
    assert!(
        report.orphan_data_removed.is_empty(),
        "accepted data must never be deleted"
    );
    for bad in [&truncated, &garbage, &wrong_id] {
        for suffix in ["json", "eml"] {
            let aside = spool.dir().join(format!("{}.{suffix}.corrupt", bad.id));
            assert!(aside.exists(), "{} missing", aside.display());
        }
    }
    // Set-aside files are left alone by the next start.
    let again = spool.load().expect("second load");
    assert_eq!(loaded_ids(&again), vec![good.id]);
    assert!(again.set_aside.is_empty() && again.orphan_data_removed.is_empty());
}

#[test]
fn envelope_without_data_is_set_aside() {
    let (_dir, spool) = new_spool();
    let good = stored_in_two_files(&spool, b"good");
    let broken = stored_in_two_files(&spool, b"lost");
    fs::remove_file(spool.dir().join(format!("{}.eml", broken.id))).expect("remove data");
    let report = spool.load().expect("load");
    assert_eq!(loaded_ids(&report), vec![good.id]);
    assert_eq!(report.set_aside.len(), 1);
    assert!(report.set_aside[0].reason.contains("without message data"));
    assert!(
        spool
            .dir()
            .join(format!("{}.json.corrupt", broken.id))
            .exists()
    );
}

#[test]
fn update_persists_across_a_restart() {
    let (_dir, spool) = new_spool();
    let mut envelope = stored(&spool, b"data");
    let later = envelope.arrival + Duration::from_secs(128);
    envelope.recipients[0].attempts = 1;
    envelope.recipients[0].next_attempt = Some(later);
    envelope.recipients[0].last_reply = Some("451 4.7.1 greylisted, try later".to_string());
    envelope.recipients[0].last_mx = Some("mx1.example.net".to_string());
    spool.update(&envelope).expect("update");

    let report = open(spool.dir()).expect("reopen").load().expect("load");
    assert_eq!(report.messages.len(), 1);
    assert_eq!(report.messages[0].envelope, envelope);
    assert_eq!(report.messages[0].envelope.next_attempt(), Some(later));
    assert_eq!(
        names_in(spool.dir()),
        vec![
            format!("{}.msg", envelope.id),
            format!("{}.state", envelope.id)
        ],
        "no temp file may remain"
    );
}

#[test]
fn remove_deletes_everything_and_is_idempotent() {
    let (_dir, spool) = new_spool();
    let kept = stored(&spool, b"kept");
    let removed = stored(&spool, b"removed");
    spool.request_bounce(&removed.id).expect("bounce");
    spool.remove(&removed.id).expect("remove");
    spool.remove(&removed.id).expect("removing twice");
    assert!(matches!(
        spool.read_envelope(&removed.id),
        Err(SpoolError::Gone(_))
    ));
    assert_eq!(names_in(spool.dir()), vec![format!("{}.msg", kept.id)]);
}

#[test]
fn an_operator_deletion_is_seen_as_gone_by_the_daemon() {
    let (_dir, daemon) = new_spool();
    let held = stored(&daemon, b"in flight");
    let operator = open(daemon.dir()).expect("CLI opens the same queue");
    operator.remove(&held.id).expect("delete");

    assert!(
        daemon
            .read_data(&held.id)
            .is_err_and(|error| error.is_gone())
    );
    assert!(
        daemon
            .open_data(&held.id)
            .is_err_and(|error| error.is_gone())
    );
    let outcome = daemon.update(&held);
    assert!(outcome.is_err_and(|error| error.is_gone()));
    assert!(
        names_in(daemon.dir()).is_empty(),
        "update must not resurrect a deleted message"
    );
}

#[test]
fn update_after_the_data_vanished_removes_what_it_wrote() {
    // The operator's delete interleaved between the daemon's existence check
    // and its rename: the envelope was still there, the data no longer is.
    let (_dir, spool) = new_spool();
    let held = stored_in_two_files(&spool, b"data");
    fs::remove_file(spool.dir().join(format!("{}.eml", held.id))).expect("remove data");
    assert!(spool.update(&held).is_err_and(|error| error.is_gone()));
    assert!(names_in(spool.dir()).is_empty());
}

#[test]
fn an_open_data_file_survives_deletion() {
    let (_dir, spool) = new_spool();
    let held = stored(&spool, b"still readable");
    let (file, len) = spool.open_data(&held.id).expect("open");
    spool.remove(&held.id).expect("delete");
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, len), &mut bytes).expect("read");
    assert_eq!(bytes, b"still readable");
}

#[test]
fn a_queue_path_that_cannot_hold_files_gives_a_typed_error() {
    // Tests run as root, so permissions would not stop us: make the queue
    // directory a regular file instead (writes then fail with ENOTDIR).
    let (_dir, spool) = new_spool();
    fs::remove_dir(spool.dir()).expect("rmdir");
    fs::write(spool.dir(), b"not a directory").expect("write");
    let outcome = spool.store(&sample(QueueId::generate()), b"data");
    assert!(matches!(outcome, Err(SpoolError::Io { .. })), "{outcome:?}");
    let envelope = sample(QueueId::generate());
    assert!(matches!(
        spool.update(&envelope),
        Err(SpoolError::Io { .. })
    ));
    assert!(matches!(open(spool.dir()), Err(SpoolError::Io { .. })));
    assert!(matches!(
        open(&spool.dir().join("queue")),
        Err(SpoolError::Io { .. })
    ));
    assert!(matches!(spool.load(), Err(SpoolError::Io { .. })));
}

/// A message source that fails part-way, like a disk filling up mid-write.
struct FailingAfter(usize);

impl std::io::Read for FailingAfter {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.0 == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        let count = self.0.min(buffer.len());
        buffer[..count].fill(b'x');
        self.0 -= count;
        Ok(count)
    }
}

#[test]
fn a_write_failing_midway_is_typed_and_leaves_nothing_behind() {
    let (_dir, spool) = new_spool();
    let envelope = sample(QueueId::generate());
    let outcome = spool.store_from(&envelope, &mut FailingAfter(100_000));
    assert!(
        matches!(outcome, Err(SpoolError::StorageFull { .. })),
        "{outcome:?}"
    );
    assert!(
        names_in(spool.dir()).is_empty(),
        "{:?}",
        names_in(spool.dir())
    );
    assert!(
        spool
            .read_envelope(&envelope.id)
            .is_err_and(|error| error.is_gone())
    );
}

#[test]
fn list_is_read_only_and_reports_problems_beside_good_entries() {
    let (_dir, spool) = new_spool();
    let good = stored(&spool, b"Subject: hi\r\n\r\nbody");
    let broken = stored(&spool, b"broken");
    fs::write(
        spool.dir().join(format!("{}.state", broken.id)),
        b"{\"version\":",
    )
    .expect("write");
    let lonely = stored_in_two_files(&spool, b"lonely");
    fs::remove_file(spool.dir().join(format!("{}.eml", lonely.id))).expect("remove data");
    // The daemon's intake in progress: must stay untouched.
    let in_progress = format!("{}.eml", QueueId::generate());
    fs::write(spool.dir().join(&in_progress), b"arriving").expect("write");
    fs::write(spool.dir().join("tmp.x.eml.1.0"), b"arriving").expect("write");
    spool.request_bounce(&good.id).expect("bounce");
    let before = names_in(spool.dir());

    let listing = spool.list().expect("list");
    assert_eq!(names_in(spool.dir()), before, "list must change nothing");
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].envelope.id, good.id);
    assert_eq!(listing.entries[0].size, 19);
    assert!(listing.entries[0].bounce_requested);
    assert_eq!(listing.problems.len(), 2, "{:?}", listing.problems);
    assert!(
        listing
            .problems
            .iter()
            .all(|problem| matches!(problem, SpoolError::Corrupt { .. }))
    );
}

#[test]
fn bounce_requests_are_markers_the_daemon_can_see() {
    let (_dir, spool) = new_spool();
    let envelope = stored(&spool, b"data");
    assert_eq!(spool.bounce_requested(&envelope.id).ok(), Some(false));
    spool.request_bounce(&envelope.id).expect("bounce");
    assert_eq!(spool.bounce_requested(&envelope.id).ok(), Some(true));
    let report = spool.load().expect("load");
    assert!(report.messages[0].bounce_requested);
    // The envelope itself is untouched, so no race with the daemon's update.
    assert_eq!(spool.read_envelope(&envelope.id).ok(), Some(envelope));

    let missing = QueueId::generate();
    assert!(
        spool
            .request_bounce(&missing)
            .is_err_and(|error| error.is_gone())
    );
    assert_eq!(spool.bounce_requested(&missing).ok(), Some(false));
}

#[test]
fn an_orphan_bounce_marker_is_removed_at_load() {
    let (_dir, spool) = new_spool();
    fs::write(
        spool.dir().join(format!("{}.bounce", QueueId::generate())),
        b"",
    )
    .expect("write");
    let report = spool.load().expect("load");
    assert!(report.messages.is_empty());
    assert!(names_in(spool.dir()).is_empty());
}

#[test]
fn headers_stop_at_the_blank_line_and_at_the_cap() {
    let (_dir, spool) = new_spool();
    let envelope = stored(&spool, b"From: a@b\r\nSubject: x\r\n\r\nsecret body\r\n");
    let headers = spool
        .read_headers(&envelope.id, MAX_SHOWN_HEADER_BYTES)
        .expect("headers");
    assert_eq!(headers, b"From: a@b\r\nSubject: x\r\n");
    let capped = spool.read_headers(&envelope.id, 5).expect("headers");
    assert_eq!(capped, b"From:");
    let bare_lf = stored(&spool, b"From: a@b\n\nbody");
    assert_eq!(
        spool.read_headers(&bare_lf.id, 1000).ok(),
        Some(b"From: a@b\n".to_vec())
    );
}

#[test]
fn pid_file_round_trips() {
    let (_dir, spool) = new_spool();
    assert_eq!(spool.read_pid_file().ok(), Some(None));
    spool.write_pid_file(4242).expect("write");
    assert_eq!(spool.read_pid_file().ok(), Some(Some(4242)));
    spool
        .write_pid_file(std::process::id())
        .expect("overwrite a stale one");
    assert_eq!(spool.read_pid_file().ok(), Some(Some(std::process::id())));
    // The PID file is not a queue entry.
    assert!(spool.load().expect("load").messages.is_empty());
    spool.remove_pid_file().expect("remove");
    spool.remove_pid_file().expect("remove twice");
    assert_eq!(spool.read_pid_file().ok(), Some(None));
    fs::write(spool.dir().join("relay-out.pid"), b"not a pid").expect("write");
    assert!(matches!(
        spool.read_pid_file(),
        Err(SpoolError::BadPidFile { .. })
    ));
}

/// Reproducible "random" damage: a seeded generator, so that a failing round
/// can be replayed.
struct Damage(StdRng);

impl Damage {
    fn new(seed: u64) -> Self {
        Damage(StdRng::seed_from_u64(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.random()
    }

    fn below(&mut self, bound: usize) -> usize {
        self.0.random_range(0..bound.max(1))
    }

    /// Flips, overwrites, inserts, deletes bytes or truncates.
    fn mutate(&mut self, bytes: &mut Vec<u8>) {
        for _ in 0..=self.below(4) {
            let at = self.below(bytes.len());
            match self.below(5) {
                0 if !bytes.is_empty() => bytes[at] ^= 1 << self.below(8),
                1 if !bytes.is_empty() => bytes[at] = self.next() as u8,
                2 => {
                    let tokens = b"{}[]\":,0\\\xff";
                    bytes.insert(at, tokens[self.below(tokens.len())]);
                }
                3 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
    }
}

#[test]
fn random_envelope_damage_never_panics() {
    let original = sample(QueueId::generate()).encode();
    let mut damage = Damage::new(0x5eed_1234_abcd_0001);
    for _ in 0..20_000 {
        let mut bytes = original.clone();
        damage.mutate(&mut bytes);
        let _ = Envelope::<NoExtras>::decode(&bytes, Path::new("fuzz.json"));
    }
}

#[test]
fn random_envelope_damage_on_disk_never_stops_the_load() {
    let (_dir, spool) = new_spool();
    let good = stored(&spool, b"good");
    let mut damage = Damage::new(0x0bad_cafe_f00d_0042);
    for round in 0..40 {
        let victim = stored(&spool, b"victim");
        let path = spool.dir().join(format!("{}.msg", victim.id));
        let mut bytes = fs::read(&path).expect("read");
        damage.mutate(&mut bytes);
        fs::write(&path, &bytes).expect("write");
        let report = spool.load().expect("load");
        assert!(loaded_ids(&report).contains(&good.id), "round {round}");
        assert!(report.orphan_data_removed.is_empty(), "round {round}");
        // Whatever survived the damage still parses as a message: clean up.
        spool.remove(&victim.id).expect("remove");
    }
}

#[test]
fn timestamps_survive_the_file_at_second_precision() {
    let (_dir, spool) = new_spool();
    let mut envelope = sample(QueueId::generate());
    envelope.arrival = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    envelope.recipients[0].next_attempt = Some(envelope.arrival + Duration::from_secs(64));
    spool.store(&envelope, b"x").expect("store");
    let text = String::from_utf8_lossy(
        &fs::read(spool.dir().join(format!("{}.msg", envelope.id))).expect("read"),
    )
    .into_owned();
    assert!(
        text.contains("\"arrival\": \"2027-01-15T08:00:00Z\""),
        "{text}"
    );
    assert_eq!(spool.read_envelope(&envelope.id).ok(), Some(envelope));
}

/// A queue directory written by relay-out before the spool was its own
/// crate (and before chrono and rand replaced the hand-written timestamps
/// and id randomness) loads unchanged, and what it wrote is what is written
/// now, byte for byte.
#[test]
fn old_queue_directories_still_load() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/queue-v1");
    let (_dir, spool) = new_spool();
    for entry in fs::read_dir(&fixture).expect("fixture") {
        let entry = entry.expect("fixture entry");
        fs::copy(entry.path(), spool.dir().join(entry.file_name())).expect("copy");
    }
    let at = |seconds: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);

    let report = spool.load().expect("load");
    assert!(report.set_aside.is_empty(), "{:?}", report.set_aside);
    assert!(report.orphan_data_removed.is_empty());
    let ids: Vec<String> = loaded_ids(&report)
        .iter()
        .map(|id| id.to_string())
        .collect();
    assert_eq!(ids, ["01hf7yat00x9rk8yfdn5", "01hf7ydvn0hmasw91ayd"]);

    let written = &report.messages[0];
    assert_eq!(written.envelope.arrival, at(1_700_000_000));
    assert_eq!(written.envelope.sender, "alice@example.org");
    assert_eq!(
        written.envelope.client.as_deref(),
        Some("192.0.2.7 helo=backend.example")
    );
    assert!(written.envelope.eight_bit_mime && !written.envelope.smtputf8);
    let statuses: Vec<RecipientStatus> = written
        .envelope
        .recipients
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        [
            RecipientStatus::Pending,
            RecipientStatus::Delivered,
            RecipientStatus::Failed
        ]
    );
    assert_eq!(written.envelope.recipients[0].attempts, 2);
    assert_eq!(written.envelope.next_attempt(), Some(at(1_700_001_800)));
    assert_eq!(
        written.envelope.recipients[2].dsn_status.as_deref(),
        Some("5.1.1")
    );
    assert!(written.bounce_requested);
    assert_eq!(written.size, 91);
    let old_bytes = fs::read(fixture.join("01hf7yat00x9rk8yfdn5.json")).expect("read");
    assert_eq!(
        String::from_utf8_lossy(&written.envelope.encode()),
        String::from_utf8_lossy(&old_bytes),
        "the envelope is written exactly as the old code wrote it"
    );

    let edited = &report.messages[1];
    assert_eq!(edited.envelope.arrival, at(1_700_000_100));
    assert_eq!(edited.envelope.next_attempt(), Some(at(1_700_000_160)));
    assert_eq!(edited.envelope.sender, "");
    assert!(!edited.bounce_requested);

    assert_eq!(spool.read_pid_file().ok(), Some(Some(4242)));
    assert_eq!(
        spool
            .read_headers(&edited.envelope.id, MAX_SHOWN_HEADER_BYTES)
            .ok(),
        Some(b"Subject: hand-edited envelope\r\n".to_vec())
    );
}
