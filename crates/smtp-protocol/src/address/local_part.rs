//! Local parts (RFC 5321 §4.1.2 `Local-part`, extended by RFC 6531 with
//! UTF-8).
//!
//! TAB is refused even inside quoted strings: RFC 5321's `qtextSMTP` and
//! `quoted-pairSMTP` allow only SP..`~`, and a TAB in an envelope address is
//! more likely an injection attempt than a mailbox.

use super::AddressError;

/// RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_PART_OCTETS: usize = 64;

/// Splits `local@host` into the local part (wire form, validated) and the
/// unparsed host text.
///
/// The `@` that separates them is the first one after the local part; a
/// quoted local part may itself contain `@`.
pub(super) fn split_mailbox(input: &str) -> Result<(&str, &str), AddressError> {
    if input.is_empty() {
        return Err(AddressError::Empty);
    }
    let local_end = if input.starts_with('"') {
        quoted_string_end(input)?
    } else {
        dot_string_end(input)?
    };
    let (local_part, rest) = input.split_at(local_end);
    let host = match rest.strip_prefix('@') {
        Some(host) => host,
        None if rest.is_empty() => return Err(AddressError::MissingAt),
        None => return Err(AddressError::TextAfterQuotedString),
    };
    if host.contains('@') {
        return Err(AddressError::MultipleAt);
    }
    Ok((local_part, host))
}

/// RFC 5321 `atext`, plus any non-ASCII character (RFC 6531
/// `UTF8-non-ascii`) except controls and line separators.
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        is_acceptable_non_ascii(c)
    }
}

/// C1 controls and U+2028/U+2029 can act as line breaks in other software;
/// nothing legitimate needs them in an address.
fn is_acceptable_non_ascii(c: char) -> bool {
    !c.is_control() && !matches!(c, '\u{2028}' | '\u{2029}')
}

/// Returns the byte index just past a `Dot-string` local part, which ends at
/// the first `@`.
fn dot_string_end(input: &str) -> Result<usize, AddressError> {
    let end = input.find('@').unwrap_or(input.len());
    let local = &input[..end];
    if local.is_empty() {
        return Err(AddressError::EmptyLocalPart);
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::MisplacedDot);
    }
    if let Some(found) = local.chars().find(|c| *c != '.' && !is_atext(*c)) {
        return Err(AddressError::InvalidLocalPartCharacter { found });
    }
    Ok(end)
}

/// Returns the byte index just past the closing `"` of a `Quoted-string`
/// that starts at index 0.
fn quoted_string_end(input: &str) -> Result<usize, AddressError> {
    let mut chars = input.char_indices().skip(1);
    let mut content_chars = 0usize;
    while let Some((index, c)) = chars.next() {
        match c {
            '"' if content_chars == 0 => return Err(AddressError::EmptyLocalPart),
            '"' => return Ok(index + 1),
            '\\' => match chars.next() {
                Some((_, escaped)) if (' '..='~').contains(&escaped) => {}
                Some((_, found)) => return Err(AddressError::InvalidQuotedCharacter { found }),
                None => return Err(AddressError::UnterminatedQuotedString),
            },
            ' '..='~' => {}
            _ if !c.is_ascii() && is_acceptable_non_ascii(c) => {}
            found => return Err(AddressError::InvalidQuotedCharacter { found }),
        }
        content_chars += 1;
    }
    Err(AddressError::UnterminatedQuotedString)
}

/// Removes the quoting of a wire-form local part: `"a\ b"` → `a b`.
/// An unquoted local part is returned unchanged.
pub(super) fn unquote(wire: &str) -> String {
    let Some(inner) = wire
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return wire.to_owned();
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                unquoted.push(escaped);
            }
        } else {
            unquoted.push(c);
        }
    }
    unquoted
}
