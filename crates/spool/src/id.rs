//! Queue ids: the name of a message in the spool and in every log line.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use super::error::SpoolError;

/// Crockford's base32 in lower case: no `i l o u`, so ids survive being read
/// aloud or copied from a terminal, and its ASCII order equals digit order, so
/// ids sort by arrival time.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 10 characters × 5 bits = 50 bits of milliseconds: enough until the year 37 000.
const TIME_CHARS: usize = 10;
/// 50 random bits (from `rand`'s thread-local generator, seeded by the OS):
/// two ids of the same millisecond collide with negligible probability.
const RANDOM_CHARS: usize = 10;
const ID_LEN: usize = TIME_CHARS + RANDOM_CHARS;

/// The identity of one queued message, `<unix ms><random>` in base32
/// (20 characters of `[0-9a-z]`).
///
/// It exists as its own type because it is turned into file names: a
/// `QueueId` can only be built by [`QueueId::generate`] or by the validating
/// [`QueueId::parse`], so a hostile CLI argument or envelope field can never
/// become a path like `../../etc/passwd`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct QueueId(String);

impl QueueId {
    /// A fresh id for a message arriving now.
    pub fn generate() -> QueueId {
        Self::generate_at(SystemTime::now())
    }

    /// A fresh id for a message arriving at `when` (the clock is a parameter so
    /// tests can check the ordering).
    pub fn generate_at(when: SystemTime) -> QueueId {
        let millis = when
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis())
            .unwrap_or(0);
        let millis = u64::try_from(millis).unwrap_or(u64::MAX);
        let mut id = String::with_capacity(ID_LEN);
        push_base32(&mut id, millis, TIME_CHARS);
        push_base32(&mut id, rand::random::<u64>(), RANDOM_CHARS);
        QueueId(id)
    }

    /// Accepts exactly what [`QueueId::generate`] produces (case-insensitively,
    /// since an operator may type it in capitals).
    pub fn parse(text: &str) -> Result<QueueId, SpoolError> {
        let lower = text.to_ascii_lowercase();
        let well_formed =
            lower.len() == ID_LEN && lower.bytes().all(|byte| ALPHABET.contains(&byte));
        if well_formed {
            Ok(QueueId(lower))
        } else {
            Err(SpoolError::InvalidId(text.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueId {
    type Error = SpoolError;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        QueueId::parse(&text)
    }
}

impl From<QueueId> for String {
    fn from(id: QueueId) -> String {
        id.0
    }
}

/// Writes the low `chars × 5` bits of `value`, most significant first, so
/// that fixed-width output sorts like the number. Written out here rather
/// than taken from a base32 crate because ids need a fixed width, lower
/// case and no padding, which is these four lines, and the exact alphabet
/// is part of the on-disk format (file names) that must never change.
fn push_base32(out: &mut String, value: u64, chars: usize) {
    for position in (0..chars).rev() {
        let digit = (value >> (position * 5)) & 0x1f;
        out.push(char::from(ALPHABET[digit as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn generated_ids_parse_back_and_are_file_name_safe() {
        let id = QueueId::generate();
        assert_eq!(id.as_str().len(), ID_LEN);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
        assert_eq!(QueueId::parse(id.as_str()).ok(), Some(id.clone()));
        assert_eq!(QueueId::parse(&id.as_str().to_uppercase()).ok(), Some(id));
    }

    #[test]
    fn ids_sort_by_arrival() {
        let earlier = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
        let mut previous = QueueId::generate_at(earlier);
        for step in [1u64, 2, 1000, 86_400_000, 10 * 365 * 86_400_000] {
            let next = QueueId::generate_at(earlier + Duration::from_millis(step));
            assert!(previous < next, "{previous} !< {next}");
            previous = next;
        }
    }

    #[test]
    fn ids_of_one_millisecond_are_unique() {
        let when = SystemTime::now();
        let ids: HashSet<QueueId> = (0..10_000).map(|_| QueueId::generate_at(when)).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn hostile_ids_are_refused() {
        for text in [
            "",
            "../../../etc/passwd",
            "0123456789abcdefghj/",
            "0123456789abcdefghj.",
            "0123456789abcdefghji", // `i` is not in the alphabet
            "0123456789abcdefghjkm",
            "0123456789abcdefghj",
            "0123456789abcdefgh\u{e9}",
        ] {
            assert!(QueueId::parse(text).is_err(), "{text:?} accepted");
        }
    }
}
