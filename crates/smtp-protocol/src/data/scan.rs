//! Finding line breaks quickly. DATA decoding and dot-stuffing both spend
//! nearly all their time looking for the next CR or LF, so this scans a
//! machine word at a time instead of a byte at a time (no extra dependency).

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// Returns a word whose lowest set bit lies in the first byte of `word` equal
/// to `byte` (higher bits may be spurious; the lowest one never is).
fn mark_byte(word: u64, byte: u8) -> u64 {
    let zeroed = word ^ (ONES * u64::from(byte));
    zeroed.wrapping_sub(ONES) & !zeroed & HIGH_BITS
}

/// Position of the first `\r` or `\n` in `haystack`.
pub(super) fn find_line_break(haystack: &[u8]) -> Option<usize> {
    let (words, tail) = haystack.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        let word = u64::from_le_bytes(*word);
        let marks = mark_byte(word, b'\r') | mark_byte(word, b'\n');
        if marks != 0 {
            return Some(index * 8 + (marks.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&byte| byte == b'\r' || byte == b'\n')
        .map(|offset| words.len() * 8 + offset)
}

#[cfg(test)]
mod tests {
    use super::find_line_break;

    #[test]
    fn agrees_with_a_naive_scan_at_every_position() {
        for length in 0..40 {
            for break_at in 0..=length {
                for break_byte in [b'\r', b'\n'] {
                    // 0x8d and 0x0c are near-misses that would fool a sloppy bit trick.
                    let mut haystack: Vec<u8> = (0..length)
                        .map(|i| [b'x', 0x8d, 0x0c, 0x0b, 0xff, 0][i % 6])
                        .collect();
                    if break_at < length {
                        haystack[break_at] = break_byte;
                        if break_at + 1 < length {
                            haystack[break_at + 1] = b'\n';
                        }
                    }
                    let naive = haystack.iter().position(|&b| b == b'\r' || b == b'\n');
                    assert_eq!(find_line_break(&haystack), naive, "{haystack:?}");
                }
            }
        }
    }
}
