use super::*;

const DAY: u64 = 24 * 60 * 60;
const TTL: Duration = Duration::from_secs(31 * DAY);

#[test]
fn a_recipient_is_verified_until_its_ttl_runs_out() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("alice@example.com", 1_000);
    assert!(store.is_verified("alice@example.com", 1_000));
    assert!(store.is_verified("alice@example.com", 1_000 + 31 * DAY - 1));
    assert!(!store.is_verified("alice@example.com", 1_000 + 31 * DAY));
    assert!(!store.is_verified("bob@example.com", 1_000));
}

#[test]
fn the_domain_is_case_insensitive_and_the_local_part_is_not() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("Alice@Example.COM", 10);
    assert!(store.is_verified("Alice@example.com", 10));
    assert!(!store.is_verified("alice@example.com", 10));
}

#[test]
fn a_refusal_removes_the_recipient() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("gone@example.com", 10);
    assert!(store.take_changed());
    assert!(store.forget("gone@example.com"));
    assert!(store.take_changed());
    assert!(!store.is_verified("gone@example.com", 10));
    assert!(!store.forget("gone@example.com"));
    assert!(!store.take_changed());
}

#[test]
fn an_acceptance_again_the_same_day_is_not_a_change_to_save() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("a@example.com", 10);
    assert!(store.take_changed());
    store.record("a@example.com", 10 + DAY - 1);
    assert!(!store.take_changed());
    store.record("a@example.com", 10 + DAY);
    assert!(store.take_changed());
    assert!(store.is_verified("a@example.com", 10 + DAY + 31 * DAY - 1));
}

#[test]
fn the_file_round_trips_and_damaged_lines_are_skipped() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("b@example.com", 20);
    store.record("a@example.com", 10);
    let text = store.render();
    assert_eq!(
        text,
        format!("{FILE_HEADER}\n10 a@example.com\n20 b@example.com\n")
    );
    let damaged = format!("{text}garbage\n30 no-at-sign\nx y@z\n40 c@example.com\n");
    let (read, skipped) = VerifiedRecipients::parse(&damaged, TTL, 100);
    assert_eq!(read.len(), 3);
    assert!(read.is_verified("c@example.com", 40));
    let numbers: Vec<usize> = skipped.iter().map(|line| line.line_number).collect();
    assert_eq!(numbers, vec![4, 5, 6]);
}

#[test]
fn capacity_bounds_the_store_dropping_the_oldest() {
    let mut store = VerifiedRecipients::new(TTL, 20);
    for n in 0..20u64 {
        store.record(&format!("user{n}@example.com"), 100 + n);
    }
    assert_eq!(store.len(), 20);
    store.record("new@example.com", 200);
    assert!(store.len() <= 20, "{}", store.len());
    assert!(store.is_verified("new@example.com", 200));
    assert!(
        !store.is_verified("user0@example.com", 200),
        "the oldest goes first"
    );
    assert!(store.is_verified("user19@example.com", 200));
    for n in 0..10_000u64 {
        store.record(&format!("flood{n}@example.com"), 300 + n);
        assert!(store.len() <= 20);
    }
}

#[test]
fn expired_entries_are_dropped_and_that_is_a_change() {
    let mut store = VerifiedRecipients::new(TTL, 100);
    store.record("old@example.com", 0);
    store.record("new@example.com", 31 * DAY);
    store.take_changed();
    assert_eq!(store.expire(31 * DAY), 1);
    assert!(store.take_changed());
    assert_eq!(store.len(), 1);
}

#[test]
fn the_store_survives_a_restart_through_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spool/verified");
    let (store, skipped) = VerifiedStore::open(&path, TTL, 100).expect("open empty");
    assert!(skipped.is_empty());
    assert_eq!(store.len(), 0);
    assert!(!store.save_if_changed().expect("nothing to save"));
    store.record("alice@example.com");
    assert!(store.save_if_changed().expect("save"));
    assert!(!store.save_if_changed().expect("saved already"));

    let (again, _) = VerifiedStore::open(&path, TTL, 100).expect("reopen");
    assert!(again.is_verified("alice@example.com"));
    assert!(again.forget("alice@example.com"));
    assert!(again.save_if_changed().expect("save removal"));
    let (third, _) = VerifiedStore::open(&path, TTL, 100).expect("reopen");
    assert_eq!(third.len(), 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the store names the home server's users"
    );
}
