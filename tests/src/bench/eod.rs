//! Finding the end of a message's data (`CRLF . CRLF`) across socket reads,
//! for the sink.

/// The end-of-data marker, including the CRLF that ends the last line.
const MARKER: &[u8; 5] = b"\r\n.\r\n";

/// How far into [`MARKER`] the data seen so far ends; `2` right after
/// `DATA\r\n`, so an empty message (`.\r\n` at once) ends too.
///
/// It exists because the sink must find the end of each message at the
/// speed of the wire without copying or decoding it: bytes are skipped a
/// machine word at a time until a CR, and only around a CR does it step
/// byte by byte. Unlike relay-in's decoder it does not check anything; the
/// sink trusts its peers, which are the programs under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndOfData {
    matched: usize,
}

impl Default for EndOfData {
    fn default() -> Self {
        EndOfData { matched: 2 }
    }
}

impl EndOfData {
    /// Scans `input`; returns the number of octets up to and including the
    /// marker once it is complete, `None` when all of `input` is message.
    pub fn feed(&mut self, input: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < input.len() {
            if self.matched == 0 {
                match find_cr(&input[at..]) {
                    Some(offset) => at += offset,
                    None => return None,
                }
            }
            let byte = input[at];
            self.matched = if byte == MARKER[self.matched] {
                self.matched + 1
            } else if byte == b'\r' {
                1
            } else {
                0
            };
            at += 1;
            if self.matched == MARKER.len() {
                *self = EndOfData::default();
                return Some(at);
            }
        }
        None
    }
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// Position of the first CR, a word at a time.
fn find_cr(haystack: &[u8]) -> Option<usize> {
    let (words, tail) = haystack.as_chunks::<8>();
    for (index, word) in words.iter().enumerate() {
        let zeroed = u64::from_le_bytes(*word) ^ (ONES * u64::from(b'\r'));
        let marks = zeroed.wrapping_sub(ONES) & !zeroed & HIGH_BITS;
        if marks != 0 {
            return Some(index * 8 + (marks.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter()
        .position(|&b| b == b'\r')
        .map(|offset| words.len() * 8 + offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end as a naive search over the whole input finds it, with the
    /// CRLF after DATA in front.
    fn naive(data: &[u8]) -> Option<usize> {
        let mut with_prefix = b"\r\n".to_vec();
        with_prefix.extend_from_slice(data);
        with_prefix
            .windows(MARKER.len())
            .position(|w| w == MARKER)
            .map(|p| p + MARKER.len() - 2)
    }

    /// Feeds `data` in pieces of `piece` octets.
    fn in_pieces(data: &[u8], piece: usize) -> Option<usize> {
        let mut scanner = EndOfData::default();
        let mut offset = 0;
        for chunk in data.chunks(piece.max(1)) {
            if let Some(n) = scanner.feed(chunk) {
                return Some(offset + n);
            }
            offset += chunk.len();
        }
        None
    }

    #[test]
    fn agrees_with_a_naive_search_however_the_input_is_split() {
        let cases: &[&[u8]] = &[
            b".\r\n",
            b"a\r\n.\r\n",
            b"a\r\n..\r\n.\r\nNEXT",
            b"a\r\r\n.\r\n",
            b"a\r\n.\r\r\n.\r\n",
            b"a\n.\r\n\r\n.\r\n",
            b"a\r\n.\n\r\n.\r\n",
            b"no end\r\n.",
            b"\r\n\r\n\r\n.\r",
            b"0123456789abcdef0123456789abcdef\r\n.\r\nxyz",
            b"",
        ];
        for data in cases {
            for piece in 1..=data.len().max(1) {
                assert_eq!(in_pieces(data, piece), naive(data), "{data:?} in {piece}s");
            }
        }
    }

    #[test]
    fn finds_cr_like_a_naive_scan() {
        for length in 0..24 {
            for at in 0..=length {
                let mut haystack = vec![b'x'; length];
                if at < length {
                    haystack[at] = b'\r';
                }
                let expected = haystack.iter().position(|&b| b == b'\r');
                assert_eq!(find_cr(&haystack), expected);
            }
        }
    }

    #[test]
    fn resets_for_the_next_message() {
        let mut scanner = EndOfData::default();
        assert_eq!(scanner.feed(b"x\r\n.\r\n"), Some(6));
        assert_eq!(scanner, EndOfData::default());
    }
}
