//! Identifiers for connections and transactions that appear in replies and
//! logs, so one grep finds a message's whole story.

use rand::Rng;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Twelve characters from an unambiguous alphabet: about 61 bits, enough that
/// ids never repeat within any log's lifetime.
pub fn connection_id() -> String {
    random_id(12)
}

pub fn random_id(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_have_the_expected_shape_and_differ() {
        let a = super::connection_id();
        let b = super::connection_id();
        assert_eq!(a.len(), 12);
        assert!(a.bytes().all(|c| super::ALPHABET.contains(&c)));
        assert_ne!(a, b);
    }
}
