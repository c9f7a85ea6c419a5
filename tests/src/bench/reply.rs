//! Reading SMTP replies out of the load client's input buffer.

/// A complete reply at the front of the buffer: its code and how many
/// octets it spans (all its lines, CRLFs included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyFrame {
    pub code: u16,
    pub len: usize,
}

/// Input that is not an SMTP reply: the peer under test is broken, which
/// the bench reports as an error rather than guessing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply line: {0:?}")]
pub struct MalformedReply(pub String);

/// The first complete reply in `input`, `None` if it is still incomplete.
///
/// Sans-IO so the client can parse several pipelined replies out of one read
/// without copying them, and so hostile or broken input is tested here.
pub fn parse_reply(input: &[u8]) -> Result<Option<ReplyFrame>, MalformedReply> {
    let mut at = 0;
    let mut code = None;
    while let Some(lf) = input[at..].iter().position(|&b| b == b'\n') {
        let line = &input[at..at + lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at += lf + 1;
        let malformed = || MalformedReply(String::from_utf8_lossy(line).into_owned());
        let digits = line.get(..3).ok_or_else(malformed)?;
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(malformed());
        }
        let this = digits
            .iter()
            .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
        if *code.get_or_insert(this) != this {
            return Err(malformed());
        }
        match line.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => {
                return Ok(Some(ReplyFrame {
                    code: this,
                    len: at,
                }));
            }
            Some(_) => return Err(malformed()),
        }
    }
    Ok(None)
}

/// Whether an EHLO reply advertises `keyword` (as the first word of a line).
pub fn has_extension(reply: &[u8], keyword: &str) -> bool {
    reply
        .split(|&b| b == b'\n')
        .filter_map(|line| line.get(4..))
        .any(|rest| {
            let word = rest
                .split(|&b| b == b' ' || b == b'\r')
                .next()
                .unwrap_or_default();
            word.eq_ignore_ascii_case(keyword.as_bytes())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parse of one input: a frame, incomplete (`None`), or malformed.
    type Expected = Result<Option<ReplyFrame>, ()>;

    #[test]
    fn parses_single_multiline_and_partial_replies() {
        let table: &[(&[u8], Expected)] = &[
            (b"250 ok\r\n", Ok(Some(ReplyFrame { code: 250, len: 8 }))),
            (
                b"250 ok\r\n354 go\r\n",
                Ok(Some(ReplyFrame { code: 250, len: 8 })),
            ),
            (
                b"250-a\r\n250 b\r\n",
                Ok(Some(ReplyFrame { code: 250, len: 14 })),
            ),
            (b"250\r\n", Ok(Some(ReplyFrame { code: 250, len: 5 }))),
            (
                b"220 bare lf\n",
                Ok(Some(ReplyFrame { code: 220, len: 12 })),
            ),
            (b"250-a\r\n250 b", Ok(None)),
            (b"25", Ok(None)),
            (b"", Ok(None)),
            (b"2x0 no\r\n", Err(())),
            (b"25\r\n", Err(())),
            (b"250-a\r\n251 b\r\n", Err(())),
            (b"250x\r\n", Err(())),
        ];
        for (input, expected) in table {
            let got = parse_reply(input).map_err(|_| ());
            assert_eq!(&got, expected, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn finds_ehlo_keywords() {
        let ehlo = b"250-sink.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
        assert!(has_extension(ehlo, "pipelining"));
        assert!(has_extension(ehlo, "SIZE"));
        assert!(has_extension(ehlo, "STARTTLS"));
        assert!(!has_extension(ehlo, "XCLIENT"));
        assert!(!has_extension(b"250 PIPELININGX\r\n", "PIPELINING"));
    }
}
