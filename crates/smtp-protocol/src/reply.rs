//! SMTP replies: the one type every server answer and every parsed remote
//! answer goes through, so formatting and sanitising happen in one place.

use std::borrow::Cow;
use std::fmt;

/// An RFC 3463 enhanced status code (`class.subject.detail`).
///
/// Kept apart from the text so that it can be checked, rewritten (a backend's
/// `4.x.x` becomes `5.x.x` when retries run out) and written on every line of a
/// multi-line reply, as RFC 2034 asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// Parses `2.1.5`; `None` for anything that is not three dot-separated
    /// numbers with a class of 2, 4 or 5.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let class: u8 = parse_digits(parts.next()?, 1)?;
        let subject: u16 = parse_digits(parts.next()?, 3)?;
        let detail: u16 = parse_digits(parts.next()?, 3)?;
        matches!(class, 2 | 4 | 5).then_some(Self::new(class, subject, detail))
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str, max_len: usize) -> Option<T> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// An SMTP reply: a three-digit code, an optional enhanced code, and one or
/// more lines of text.
///
/// Text that came from elsewhere (a backend's reply, a client's address) is
/// sanitised on the way in, so that no reply can carry a CR, LF or other
/// control character and split itself into two replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedCode>,
    /// The first line. Most replies have no other, and then need no vector:
    /// a relay makes and parses a dozen replies per message (BENCHMARKS.md,
    /// issue 19).
    first: Cow<'static, str>,
    /// The lines after the first, of a multi-line reply.
    rest: Vec<Cow<'static, str>>,
}

impl Reply {
    /// A one-line reply. `code` must be 200..=599.
    pub fn new(
        code: u16,
        enhanced: Option<EnhancedCode>,
        text: impl Into<Cow<'static, str>>,
    ) -> Self {
        debug_assert!((200..600).contains(&code), "reply code {code}");
        Self {
            code,
            enhanced,
            first: sanitize(text.into()),
            rest: Vec::new(),
        }
    }

    /// A multi-line reply (EHLO, a custom banner, a backend's multi-line answer).
    pub fn multiline<I, S>(code: u16, enhanced: Option<EnhancedCode>, lines: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        let mut lines = lines.into_iter().map(|l| sanitize(l.into()));
        let first = lines.next().unwrap_or(Cow::Borrowed(""));
        Self {
            code,
            enhanced,
            first,
            rest: lines.collect(),
        }
    }

    pub fn code(&self) -> u16 {
        self.code
    }

    pub fn enhanced(&self) -> Option<EnhancedCode> {
        self.enhanced
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.first.as_ref()).chain(self.rest.iter().map(|l| l.as_ref()))
    }

    /// All lines joined with a space, for logs and for quoting in another reply.
    pub fn text(&self) -> String {
        let mut text = String::with_capacity(
            self.first.len() + self.rest.iter().map(|l| l.len() + 1).sum::<usize>(),
        );
        self.write_text(&mut text)
            .expect("writing to a String cannot fail");
        text
    }

    /// Writes [`Self::text`] without making a `String` of it.
    fn write_text(&self, out: &mut impl fmt::Write) -> fmt::Result {
        out.write_str(&self.first)?;
        for line in &self.rest {
            out.write_char(' ')?;
            out.write_str(line)?;
        }
        Ok(())
    }

    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// Appends the wire form (`250-…\r\n250 …\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.rest.len();
        for (i, line) in self.lines().enumerate() {
            let sep = if i == last { b' ' } else { b'-' };
            // Digits pushed by hand: replies are written for every command,
            // and `write!` cost hundreds of instructions a line.
            push_decimal(out, self.code);
            out.push(sep);
            if let Some(enhanced) = self.enhanced {
                push_decimal(out, u16::from(enhanced.class));
                out.push(b'.');
                push_decimal(out, enhanced.subject);
                out.push(b'.');
                push_decimal(out, enhanced.detail);
                if !line.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a `String`, mainly for tests and logs.
    pub fn to_wire(&self) -> String {
        let mut out = Vec::new();
        self.write_to(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.enhanced {
            Some(e) => write!(f, "{} {} ", self.code, e)?,
            None => write!(f, "{} ", self.code)?,
        }
        self.write_text(f)
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Replaces control characters, so a reply line is always one line. Text is
/// also capped: RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets.
fn sanitize(text: Cow<'static, str>) -> Cow<'static, str> {
    const MAX_TEXT: usize = 480;
    // Control characters are C0 and DEL (single octets) or C1 (U+0080 to
    // U+009F, encoded 0xC2 0x80..0x9F): text without such octets, nearly
    // all of it, is passed without decoding a character.
    let may_have_control = text.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2);
    let needs_change =
        text.len() > MAX_TEXT || (may_have_control && text.chars().any(|c| c.is_control()));
    if !needs_change {
        return text;
    }
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    Cow::Owned(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_written_as_display_writes_them() {
        for (code, class, subject, detail) in [
            (250, 2, 0, 0),
            (554, 5, 7, 1),
            (421, 4, 10, 999),
            (599, 5, 65535, 0),
        ] {
            let r = Reply::new(code, Some(EnhancedCode::new(class, subject, detail)), "x");
            assert_eq!(
                r.to_wire(),
                format!("{code} {class}.{subject}.{detail} x\r\n")
            );
        }
        let mut out = Vec::new();
        for n in [0, 7, 10, 99, 100, 12345, u16::MAX] {
            out.clear();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn c1_and_c0_controls_are_replaced_but_other_text_is_not() {
        let r = Reply::new(250, None, "caf\u{e9} \u{85}x\u{1b}y\u{7f}");
        assert_eq!(r.to_wire(), "250 caf\u{e9} ?x?y?\r\n");
    }

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, Some(EnhancedCode::new(2, 1, 5)), "Recipient OK");
        assert_eq!(r.to_wire(), "250 2.1.5 Recipient OK\r\n");
    }

    #[test]
    fn multiline_puts_dash_on_all_but_last() {
        let r = Reply::multiline(250, None, ["mx.example Hello", "PIPELINING", "SIZE 10"]);
        assert_eq!(
            r.to_wire(),
            "250-mx.example Hello\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn control_characters_cannot_split_a_reply() {
        let r = Reply::new(550, None, "bad\r\n250 smuggled");
        assert_eq!(r.to_wire(), "550 bad??250 smuggled\r\n");
    }

    #[test]
    fn long_text_is_capped() {
        let r = Reply::new(250, None, "é".repeat(400));
        assert!(r.to_wire().len() <= 512);
    }

    #[test]
    fn enhanced_code_parse() {
        assert_eq!(
            EnhancedCode::parse("5.7.1"),
            Some(EnhancedCode::new(5, 7, 1))
        );
        assert_eq!(
            EnhancedCode::parse("4.4.10"),
            Some(EnhancedCode::new(4, 4, 10))
        );
        for bad in ["", "3.0.0", "5.7", "5.7.1.2", "a.b.c", "5.1000.1", "5..1"] {
            assert_eq!(EnhancedCode::parse(bad), None, "{bad}");
        }
    }
}
